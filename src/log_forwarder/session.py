"""One user's life in one run, written once, whichever way Auth0 is read.

    session = UserSession(user_id, stored, env, run)
    session.open(opening)      decode the state (or start a new user), check the lease, then
                               what the driver's Opening does (per user: a user leaving the
                               stream has its pending events read back and its seat ends)
    session.deliver(chunk)…    plan the chunk against the committed cursor, execute each batch
                               (intent → every destination → commit), count it in the report
    session.close(settle)      ask Auth0 whether it knows the user when that is due (a new
                               user, then daily: user_lookup.py); give up this run's leases, or
                               note the user's error for `status`, or write what the read settled

Per-user mode drives sessions through the chunks of each user's read (per_user.py); stream mode
through the windows of the tenant log, one chunk per member and window (stream_run.py); a push
through what Auth0's stream pushed (forwarder.py). Each passes the Opening of its read mode;
none repeats any of the above. What goes wrong is the user's alone: every exception the session
meets becomes the user's `Outcome` here (outcome_of, the one place that decides what an error
means), one value in its report, and the other users go on.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .chunk import Chunk, FactsSpan
from .config import Settings
from .convert import ConvertContext
from .cursor import Cursor, Selection, settled_by
from .detections import RuleSet
from .events import LogEvent, iso_ms
from .exceptions import (
    Auth0Error,
    CheckpointConflict,
    CheckpointError,
    CheckpointStateError,
    ForwarderError,
    OutOfTime,
    PushedMemoryMissing,
)
from .executor import Checkpoint, execute
from .gaps import ReadFacts
from .planner import Batch, OutputPolicy, Plan, PlanContext, detection_lines, plan_chunk
from .pushed import PushedLedger, batch_key
from .records import Delivery
from .report import Outcome, TenantFailure, UserReport
from .retry import AWS_ATTEMPT_S, Deadline
from .shared_correlations import TENANT_FINDINGS, Applied, SharedCorrelations, UserBatch
from .sinks import Sink
from .source import CallScope, LogSource, UserDirectory
from .store import CheckpointStore, StoredCheckpoint
from .user_lookup import LookupQuota, look_up, lookup_due

if TYPE_CHECKING:
    from .sigma_plan import Plan as SigmaPlan

logger = logging.getLogger(__name__)

# Leases assume the clocks of two invocations agree within this (Lambda's hosts keep NTP time).
LEASE_CLOCK_MARGIN_MS = 30_000
MAX_LEASE_MS = 15 * 60_000


class TenantOutage:
    """The first failure of a run that is the tenant's (outcome_of: TENANT): once there is one,
    no user's read starts, for each would fail the same way and spend the tenant's limits."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failure: TenantFailure | None = None

    @property
    def failure(self) -> TenantFailure | None:
        return self._failure

    def note(self, failure: TenantFailure) -> bool:
        """True for the first failure noted (the one the run reports)."""
        with self._lock:
            if self._failure is not None:
                return False
            self._failure = failure
            return True


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every user of one run shares: its calls' scope and deadline, its time, and whether
    the tenant failed."""

    scope: CallScope
    remaining_ms: Callable[[], int]
    margin_ms: int
    out_of_time: threading.Event
    tenant: TenantOutage = field(default_factory=TenantOutage)
    lookups: LookupQuota = field(default_factory=LookupQuota)

    def lease_until(self, now_ms: int) -> int:
        """Until when an intent written now is this run's: the invocation's end (a Lambda runs
        15 minutes at most), plus a margin for the clocks of two runs not quite agreeing."""
        return now_ms + min(self.remaining_ms(), MAX_LEASE_MS) + LEASE_CLOCK_MARGIN_MS

    def time_is_up(self) -> bool:
        """No new chunk or user starts: the margin is for finishing what is under way."""
        return self.remaining_ms() < self.margin_ms


@dataclass(frozen=True, slots=True)
class SessionEnv:
    """What the sessions of a deployment share: where they read, write and deliver."""

    settings: Settings
    source: LogSource
    store: CheckpointStore
    sinks: Sequence[Sink]
    output: OutputPolicy
    now_ms: Callable[[], int]
    # Whom to ask whether Auth0 knows a user (None: nobody, e.g. a backfill).
    directory: UserDirectory | None = None
    # What the real-time path delivered (pushed.py): None when it is off.
    pushed: PushedLedger | None = None
    # The detection state no single checkpoint holds (shared_correlations.py).
    shared: SharedCorrelations | None = None

    def rules(self, deadline: Deadline) -> RuleSet | None:
        """The detection rules now (their source may have changed since the last chunk); a
        provider that reads its store does so within `deadline`."""
        detections = self.output.detections
        return detections.rules(deadline) if detections is not None else None


def outcome_of(error: BaseException) -> Outcome:
    """What an exception means for the work it stopped: the one place that decides it."""
    if isinstance(error, OutOfTime):
        return Outcome.DEFERRED
    if isinstance(error, CheckpointConflict):
        return Outcome.BUSY
    if isinstance(error, Auth0Error) and error.tenant_wide:
        return Outcome.TENANT
    if isinstance(error, ForwarderError):
        return Outcome.FAILED
    return Outcome.BUG


@dataclass(frozen=True)
class Opening:
    """How a driver opens its users' sessions: its read mode's rules, which the session runs
    without knowing the modes. As it stands, this one takes the stored cursor and leaves a new
    user's start unwritten (a stream member; a push, which skips new users). Drivers subclass it
    (per_user.PerUser, stream_run.JOIN) or set its flags (forwarder.PUSH)."""

    # Whether close asks Auth0 whether it knows the user, when that is due (user_lookup.py).
    looks_up: bool = True
    # Whether the report keeps each forwarded event's date (a push's latency metric).
    keeps_dates: bool = False

    def new(self, session: UserSession) -> None:
        """A user with no checkpoint yet: its session holds the start cursor, unwritten."""

    def taken(self, session: UserSession, out_of_time: Callable[[], bool]) -> None:
        """The user's stored cursor, taken (nobody else holds its pending events); raises what
        stops the user. `out_of_time`: when to stop reading (the opening's share of the time)."""


# A chunk planned against a checkpoint that another writer moved first (a real-time
# invocation, between this run's read and its write) is planned again this many times against
# the checkpoint as it now is, before the user is left to the next run.
REPLANS = 3


class UserSession:
    def __init__(
        self,
        user_id: str,
        stored: StoredCheckpoint | None,
        env: SessionEnv,
        run: RunContext,
        *,
        pushed_from_ms: int | None = None,
        claimed: set[str] | None = None,
        shared_object: str | None = None,
    ) -> None:
        """`pushed_from_ms`: a push's oldest event, from which it looks up what was pushed
        before (a read looks from its floor). `claimed`: the batches whose intent this
        session's work wrote (kept across a push's attempts: a retry takes over its own
        lease, it never waits for it), filled as it writes more. `shared_object`: the S3
        object its new batches share with the other users' of its push (sinks/gathering.py)."""
        self.env = env
        self._shared_object = shared_object
        self._pushed_from_ms = pushed_from_ms
        self.run = run
        self.report = UserReport(user_id)
        self.checkpoint: Checkpoint | None = None
        self._stored = stored
        self._unreadable: CheckpointStateError | None = None
        self._note_error = False  # the failure goes on the checkpoint too, for `status`
        # Batches whose intent this session (or its push's earlier attempt) wrote: its leases.
        self._claimed = claimed if claimed is not None else set()
        self._recorded = False  # the batch under way is in the pushed-events table
        self._opening: Opening | None = None  # how it was opened (None: not yet)
        self._opened = False  # open went through
        self._rules: RuleSet | None = None  # the detection rules the current chunk is planned with
        self.found: Cursor | None = None  # the stored cursor, decoded
        if stored is not None:
            try:
                self.found = _decoded(stored)
            except CheckpointStateError as error:
                # This user's failure, said when it opens; its item is never written (a newer
                # release's is left as that release wrote it).
                self._unreadable = error

    @property
    def user_id(self) -> str:
        return self.report.user_id

    @property
    def is_new(self) -> bool:
        return self._stored is None

    @property
    def cursor(self) -> Cursor:
        """The committed cursor: what the next chunk is planned against."""
        if self.checkpoint is not None:
            return self.checkpoint.cursor
        return self.found if self.found is not None else self.start_cursor()

    def start_cursor(self) -> Cursor:
        """A new user's cursor: from START_FROM, its history a backlog to read."""
        floor = self.env.settings.start_from.floor_ms(self.env.now_ms())
        return Cursor.fresh(floor, backlog=True)

    @property
    def ok(self) -> bool:
        """Nothing stopped this user's work in this run (yet)."""
        return self.report.outcome is Outcome.DONE

    # -- open ------------------------------------------------------------------------------------

    def open(self, opening: Opening, within: RunContext | None = None) -> bool:
        """Ready to deliver: False when the user cannot be delivered this run (its report says
        why: another run holds it, its state is unreadable, time ran out). `within`: the part of
        the run's time the opening keeps to (the stream's share for the users it reads first)."""
        self._opening = opening
        if opening.keeps_dates:
            self.report.forwarded_dates = []
        out_of_time = (within or self.run).time_is_up
        self._opened = self.guard(lambda: self._open(opening, out_of_time)) and self.ok
        return self._opened

    def _open(self, opening: Opening, out_of_time: Callable[[], bool]) -> None:
        if self._unreadable is not None:
            raise self._unreadable
        stored = self._stored
        if stored is None or self.found is None:
            self.checkpoint = Checkpoint(
                self.env.store, self.user_id, self.start_cursor(), None, self.run.scope.deadline
            )
            opening.new(self)
            return
        self._take(self.found, stored.version)
        opening.taken(self, out_of_time)

    def _take(self, cursor: Cursor, version: int | None) -> Checkpoint:
        """Deliver from this stored cursor, unless another run holds its pending events."""
        found = cursor
        cursor = self._with_pushed(cursor)
        checkpoint = Checkpoint(
            self.env.store, self.user_id, cursor, version, self.run.scope.deadline
        )
        self.checkpoint = checkpoint
        if cursor.position.pushed_until_ms != found.position.pushed_until_ms and not found.outbox:
            # A lost commit the table alone knew of, recovered: written now, or a push with
            # nothing new to deliver would leave it for the reads, which do not look for it.
            checkpoint.write(cursor)
        leased_until = cursor.outbox.leased_until(self.env.now_ms(), ours=self._claimed)
        if leased_until is not None:
            # Another run is still delivering this user's pending batch (or died doing so and
            # its lease has not run out): redelivering it now could write it twice.
            raise CheckpointConflict(
                f"another run holds the pending events of {self.user_id!r} until "
                f"{iso_ms(leased_until)}"
            )
        return checkpoint

    def _with_pushed(self, cursor: Cursor) -> Cursor:
        """The cursor with what the real-time path delivered from its floor (or from a push's
        oldest event) on, when the pushed-events table may hold any."""
        ledger, position = self.env.pushed, cursor.position
        floor = position.floor_ms
        # A pending batch may be one the table recorded, dated before the push's events: then
        # the push looks from the floor, as a read does, to find it done.
        pushed_from = None if cursor.outbox else self._pushed_from_ms
        start = pushed_from if floor is None else max(floor, pushed_from or floor)
        recover = ledger is not None and pushed_from is not None
        if recover:
            # A push also looks from the newest push its checkpoint knows: a batch recorded past
            # it lost its commit, and one without an intent (the filter kept all its events out:
            # a finding was its only line) is known to the table alone. (A read does not: see
            # docs/guarantees.md.)
            known = position.pushed_until_ms
            start = min(start, known) if known is not None and start is not None else floor
        elif not position.pushed_since(start):
            return cursor
        if ledger is None:
            if position.pushed_forgotten(self.env.now_ms()):
                return cursor
            raise PushedMemoryMissing(
                f"checkpoint of {self.user_id!r} says the real-time path recorded events dated "
                f"up to {iso_ms(position.pushed_until_ms)} in the pushed-events table, and this "
                "deployment has none (PUSHED_EVENTS_TABLE is empty): reading the user would "
                "deliver them again. Set PUSHED_EVENTS_TABLE to the table that holds them "
                "(docs/realtime.md, Turning real time off)"
            )
        memory = ledger.since(self.user_id, start, deadline=self.run.scope.deadline)
        loaded = cursor.with_pushed(memory, start, recover_lost=recover)
        if loaded.missing_pushed(start, self.env.now_ms()):
            table = getattr(ledger, "table_name", None)
            raise PushedMemoryMissing(
                f"checkpoint of {self.user_id!r} says the real-time path recorded events dated "
                f"up to {iso_ms(position.pushed_until_ms)} in the pushed-events table"
                f"{f' {table!r}' if table else ''}, which holds none of this user's from "
                f"{iso_ms(start)} on (a new, empty table?): reading the user would deliver them "
                "again. Point PUSHED_EVENTS_TABLE at the table that holds them, or restore it "
                "(docs/realtime.md, Turning real time off)"
            )
        return loaded

    def _confirm(self, selection: Selection) -> None:
        """A read's chunk is committed: what it found pushed first is counted, once over every
        read (RealtimeConfirmedEvents): marked in the pushed-events table, and counted only where
        no read marked it before; those an earlier release kept in the item moved to `recent`."""
        # Only what the push wrote counts: one the output filter kept out was recorded, not
        # forwarded (RealtimeEvents leaves it out too).
        keeps = self.env.output.keep.keeps
        confirmed = [e for e in selection.confirmed if keeps(e.raw)]
        if not confirmed:
            return
        memory = self.cursor.position.pushed
        in_table = [e.log_id for e in confirmed if e.log_id in memory.batches]
        self.report.confirmed += len(confirmed) - len(in_table)
        if not in_table or self.env.pushed is None:
            return
        try:
            deadline = self.run.scope.deadline
            self.report.confirmed += self.env.pushed.confirm(
                self.user_id, memory, in_table, deadline=deadline
            )
        except ForwarderError as error:
            # Delivery is unaffected: the next read returning them counts them instead.
            logger.warning(
                "Confirmations not recorded",
                extra={"user_id": self.user_id, "error": f"{type(error).__name__}: {error}"},
            )

    def _reload(self, conflict: CheckpointConflict) -> None:
        """The checkpoint as another writer left it, to plan the chunk again: only if it still
        holds the same seat (a chunk of the tenant stream is only that seat's to deliver)."""
        stored = self.env.store.load([self.user_id], deadline=self.run.scope.deadline).get(
            self.user_id
        )
        if stored is None:
            raise conflict
        cursor = _decoded(stored)
        if _seat_of(cursor) != _seat_of(self.cursor):
            raise conflict
        self._take(cursor, stored.version)

    # -- deliver ---------------------------------------------------------------------------------

    def deliver(self, chunk: Chunk, read_started_ms: int) -> bool:
        """One chunk through the planner and the executor; False when the user stopped."""
        return self.guard(lambda: self._deliver(chunk, read_started_ms))

    def deliver_all(self, chunks: Iterator[Chunk], read_started_ms: int) -> bool:
        """A read's chunks, each committed before the next is read, until the read ends or the
        run's time is up; True when the read reached the newest event."""
        complete = False

        def work() -> None:
            nonlocal complete
            while not complete and not self.run.time_is_up():
                chunk = next(chunks, None)
                if chunk is None:
                    break
                self._deliver(chunk, read_started_ms)
                complete = chunk.complete

        self.guard(work)
        return complete

    def write(self, cursor: Cursor) -> bool:
        """A checkpoint write outside a chunk (a seat, a start fixed at first sight)."""
        checkpoint = self.checkpoint
        assert checkpoint is not None, "write before open"
        return self.guard(lambda: checkpoint.write(cursor))

    def _deliver(self, chunk: Chunk, read_started_ms: int) -> None:
        assert self.checkpoint is not None, "deliver before open"
        self.report.fetched += chunk.returned
        for replans_left in range(REPLANS, -1, -1):
            plan = plan_chunk(self.checkpoint.cursor, chunk, self._context(read_started_ms))
            if replans_left == REPLANS:
                self.report.add_read(plan.selection)  # what the read returned, counted once
            try:
                self._execute(plan)
                self._confirm(plan.selection)
                return
            except _Untouched as untouched:
                # Nothing of the batch reached a destination: what the other writer delivered
                # is in the checkpoint now, and the plan against it leaves that out.
                if not replans_left:
                    raise untouched.conflict from None
                self._reload(untouched.conflict)

    def _execute(self, plan: Plan) -> None:
        checkpoint, report = self.checkpoint, self.report
        assert checkpoint is not None
        record = self._record if self.env.pushed is not None else None
        share = self._share if self.env.shared is not None else None
        for batch in plan.batches:
            version = checkpoint.version
            claiming = batch.intent is not None and batch.batch_id not in self._claimed
            if claiming:
                self._claimed.add(batch.batch_id)
            self._recorded = False
            try:
                execute(batch, checkpoint, self.env.sinks, report.add_delivery, record, share)
            except Exception as error:
                # Refused at its first write: the intent, or a checkpoint-only batch's cursor.
                first = checkpoint.version == version and (
                    batch.intent is not None or not batch.lines
                )
                if claiming and checkpoint.version == version:
                    # Its intent was not written: a batch of the same events another writer's
                    # intent names (the same id) is that writer's lease, not this session's.
                    self._claimed.discard(batch.batch_id)
                if isinstance(error, CheckpointConflict) and first:
                    raise _Untouched(error) from error
                self._count_recorded(batch)
                raise
            report.add_batch(batch)
            _log_batch(self.user_id, batch)

    def _share(self, batch: Batch) -> None:
        """The batch's events to the correlations whose groups span users, once; what they find
        goes to this user's destinations (shared_correlations.py)."""
        rules, shared = self._rules, self.env.shared
        if rules is None or rules.shared is None or shared is None or batch.convert is None:
            return
        assert self.checkpoint is not None
        # The checkpoint holds the batch's intent by now: what else of the user's is pending.
        pending = frozenset(p.batch_id for p in self.checkpoint.cursor.outbox.pending)
        handed = {e.log_id for e in batch.events}
        kept_out = frozenset(e.log_id for e in batch.shared if e.log_id not in handed)
        which = UserBatch(batch.batch_id, batch.redelivery, pending, kept_out)
        applied = apply_shared(
            self.env, self.run, rules.shared, rules, batch.shared, self.user_id, batch.convert,
            self.report, which,
        )  # fmt: skip
        self.report.add_shared(applied)

    def _record(self, batch: Batch) -> None:
        """A push's batch into the pushed-events table, with what its commit settles (the
        rules' state, the counters, the quarantine memory): a load that finds the batch there
        takes it as done with that state, should the commit be lost (Cursor.with_pushed)."""
        ledger = self.env.pushed
        if ledger is not None:
            deadline = self.run.scope.deadline
            settled = settled_by(batch.after)
            # Refused for time before it is sent, the record is known not to be there: the
            # redelivery counts the batch, this push must not.
            deadline.ensure(AWS_ATTEMPT_S, "recording the pushed batch")
            try:
                ledger.record(
                    self.user_id, batch.batch_id, batch.pushed, deadline=deadline, settled=settled
                )
            except ForwarderError:
                # What was lost may be the answer alone: a batch the table holds is done for
                # the next load, which counts nothing of it, so this push must.
                self._recorded = self._recorded_after_all(batch)
                raise
            self._recorded = True

    def _recorded_after_all(self, batch: Batch) -> bool:
        """Whether the table holds the batch a record failed for; when that cannot be read
        either, taken as held: a push counted twice is an overstatement, a read confirming
        events no push counted would break what RealtimeConfirmedEvents means."""
        assert self.env.pushed is not None
        newest = max(date for date, _ in batch.pushed)
        try:
            memory = self.env.pushed.since(self.user_id, newest, deadline=self.run.scope.deadline)
        except ForwarderError:
            return True
        return batch_key(newest, batch.batch_id) in set(memory.batches.values())

    def _count_recorded(self, batch: Batch) -> None:
        """A push's batch the table recorded is delivered, its commit lost or not: the next load
        takes it as done, so the push counts it (what the reads confirm never exceeds it)."""
        if self._recorded:
            self.report.add_batch(batch)

    def _context(self, read_started_ms: int) -> PlanContext:
        settings, now_ms = self.env.settings, self.env.now_ms()
        self._rules = self.env.rules(self.run.scope.deadline)
        return PlanContext(
            user_id=self.user_id,
            tenant=settings.auth0_domain,
            now_ms=now_ms,
            read_started_ms=read_started_ms,
            overlap_ms=settings.overlap_window_ms,
            min_retention_ms=settings.log_retention_ms,
            lease_until_ms=self.run.lease_until(now_ms),
            output=self.env.output,
            rules=self._rules,
            shared_object=self._shared_object,
        )

    # -- close -----------------------------------------------------------------------------------

    def close(
        self, settle: Callable[[Cursor], Cursor] | None = None, *, behind: bool | None = None
    ) -> UserReport:
        """After the user's last chunk of the run: its leases given up (the next run need not
        wait for them), or its error noted on the checkpoint for `status`, or, when the read
        went well, what `settle` makes of the cursor (the tenant stream read to its end). Leases
        another run holds, or that a conflict handed to it, are not this run's to touch.

        The report's backlog is the cursor's (its history read to the end or not) once the
        session opened; `behind` says it instead where the read is the driver's (a stream
        member: the stream read to its end, or not)."""
        checkpoint, report = self.checkpoint, self.report
        looks_up = self._opening is not None and self._opening.looks_up
        if checkpoint is not None and self.ok and looks_up:
            self._look_up()
        if checkpoint is not None and not report.busy:
            released = checkpoint.cursor.released()
            if self._note_error and report.error is not None:
                status = released.status.with_error(report.error, self.env.now_ms())
                checkpoint.write_best_effort(replace(released, status=status), _NOT_NOTED)
            elif settle is not None and self.ok:
                settled = settle(checkpoint.cursor)
                if settled != checkpoint.cursor:
                    self.guard(lambda: checkpoint.write(settled))
            else:
                checkpoint.write_best_effort(released, _NOT_RELEASED)
        if checkpoint is not None:
            report.cursor = checkpoint.cursor
        if behind is not None:
            report.backlog = behind
        elif self._opened:
            report.backlog = self.cursor.status.backlog
        return report

    def _look_up(self) -> None:
        """Whether Auth0 knows the user, when that is due and the run has a lookup and the time
        to spare; the answer is delivered as a chunk of facts, so the planner records it (and a
        user Auth0 does not know) as it records a read's."""
        directory, now_ms = self.env.directory, self.env.now_ms()
        looked_up_ms = self.cursor.status.looked_up_ms
        if directory is None or not lookup_due(looked_up_ms, now_ms) or self.run.time_is_up():
            return
        if not self.run.lookups.take():
            return
        lookup = look_up(directory, self.user_id, self.run.scope)
        if lookup is not None:
            facts = ReadFacts(user_exists=lookup.exists, user_lookup=lookup)
            self.guard(lambda: self._deliver(Chunk([], "user_lookup", FactsSpan(), facts), now_ms))

    # -- what goes wrong -------------------------------------------------------------------------

    def defer(self, doing: str, *, logged: bool = True) -> None:
        """The run's time is up before this user's work began, or before its read reached the
        newest event: it resumes next run. `logged=False`: the run says it once for all."""
        why = OutOfTime(f"{doing}: the run's time is up; next run")
        if logged:
            self._said(why, Outcome.DEFERRED)
        else:
            self.report.end(Outcome.DEFERRED)

    def block(self, failure: TenantFailure) -> None:
        """This user is not read (further): the tenant failed (said once, for the tenant)."""
        self.report.end(Outcome.TENANT, error=f"the tenant failed: {failure.cause}")

    def guard(self, work: Callable[[], None]) -> bool:
        """Run some of this user's work; what goes wrong is said in its report. True when the
        work went through."""
        try:
            work()
        except Exception as error:
            self._said(error, outcome_of(error))
            return False
        return True

    def _said(self, error: Exception, outcome: Outcome) -> None:
        """The user's outcome, from what stopped it (the first thing that did: later ones, the
        consequences of the first, are not said again)."""
        report, user_id = self.report, self.user_id
        if outcome is Outcome.DEFERRED:
            if report.end(outcome):
                logger.warning(
                    "User deferred: out of time", extra={"user_id": user_id, "why": str(error)}
                )
        elif outcome is Outcome.BUSY:
            # Another run moved this user's checkpoint first, or holds its pending events:
            # conditional writes kept this run from delivering anything twice.
            if report.end(outcome):
                logger.warning("User skipped: " + str(error), extra={"user_id": user_id})
        elif outcome is Outcome.TENANT:
            # Not this user's: said once for the tenant (the run's report, the tenant item), and
            # nothing is noted on the user's checkpoint, whose last read stays what it was.
            failure = TenantFailure.of(error)
            self.block(failure)
            if self.run.tenant.note(failure):
                logger.error(
                    "Tenant failed: no user can be read",
                    extra={"cause": failure.cause, "fix": failure.fix},
                )
        elif outcome is Outcome.FAILED:
            # One user's failure must not cost the others their run. The checkpoint table's own
            # failures cannot be noted on it.
            said = f"{type(error).__name__}: {error}"
            cause = error if isinstance(error, ForwarderError) else None
            if report.end(outcome, error=said, failure=cause):
                self._note_error = not isinstance(error, CheckpointError)
                logger.error("User not forwarded", extra={"user_id": user_id, "error": said})
        elif report.end(outcome, bug=error):
            # A bug. The other users still finish (their deliveries must not be cut in half);
            # then the run fails with this exception, traceback and all.
            logger.exception("User not forwarded: unexpected error", extra={"user_id": user_id})


def apply_shared(
    env: SessionEnv,
    run: RunContext,
    part: SigmaPlan,
    rules: RuleSet,
    events: Sequence[LogEvent],
    user_id: str,
    convert: ConvertContext,
    report: UserReport,
    batch: UserBatch | None = None,
) -> Applied:
    """`events` to the shared item's `part` of the rules; what they find is written to
    `user_id`'s destinations (counted in `report`), exactly once: `batch` names the watched
    user's batch they are (None: the tenant's events nobody watches)."""
    assert env.shared is not None

    def deliver(delivery: Delivery) -> None:
        for sink in env.sinks:
            report.add_delivery(sink.deliver(delivery))

    return env.shared.apply(
        part,
        rules.plan,
        events,
        user_id=user_id,
        render=lambda findings, skipped: detection_lines(findings, skipped, convert),
        deliver=deliver,
        lease_until_ms=run.lease_until(env.now_ms()),
        deadline=run.scope.deadline,
        batch=batch,
    )


def evaluate_tenant_wide(
    env: SessionEnv, run: RunContext, events: Sequence[LogEvent], source: str
) -> UserReport | None:
    """The tenant-wide rules (DETECTIONS_TENANT_WIDE) on events of users nobody watches: their
    findings are written (as the destinations' "#tenant" user), the events are not. None when
    there is nothing to run; a report of what they found otherwise."""
    rules = env.rules(run.scope.deadline)
    if rules is None or rules.tenant is None or env.shared is None or not events:
        return None
    report = UserReport(TENANT_FINDINGS)
    convert = ConvertContext(
        tenant=env.settings.auth0_domain,
        watched_user_id="",
        forwarded_at_ms=env.now_ms(),
        source=source,
        ocsf=env.output.ocsf,
        pseudonymiser=env.output.pseudonymiser,
    )
    applied = apply_shared(env, run, rules.tenant, rules, events, TENANT_FINDINGS, convert, report)
    report.add_shared(applied)
    return report


def _decoded(stored: StoredCheckpoint) -> Cursor:
    return Cursor.from_state(stored.readable_state(), item=f"checkpoint of {stored.user_id!r}")


def _seat_of(cursor: Cursor) -> tuple[int, int] | None:
    seat = cursor.seat
    return None if seat is None else (seat.epoch, seat.joined_ms)


class _Untouched(Exception):
    """A conflict at a batch's first write: nothing of it was delivered."""

    def __init__(self, conflict: CheckpointConflict) -> None:
        super().__init__(str(conflict))
        self.conflict = conflict


_NOT_RELEASED = "its leases expire on their own"
_NOT_NOTED = "the run reports the error anyway"


def _log_batch(user_id: str, batch: Batch) -> None:
    """What a committed batch says that an operator must hear about (the destinations hold it
    too)."""
    for gap in batch.gaps:
        logger.warning(
            "Gap: events could not be forwarded",
            extra={
                "user_id": user_id,
                "from": iso_ms(gap.from_ms),
                "to": iso_ms(gap.to_ms),
                "reason": gap.reason,
                "log_ids": len(gap.log_ids),
            },
        )
    if batch.quarantined:
        logger.warning(
            "Malformed entries quarantined (written to the destinations as records)",
            extra={
                "user_id": user_id,
                "count": len(batch.quarantined),
                "reasons": sorted({entry.reason for entry in batch.quarantined}),
            },
        )
    if batch.future_dated:
        logger.warning(
            "Events dated in the future (a wrong clock upstream); forwarded with their dates",
            extra={"user_id": user_id, "count": batch.future_dated},
        )
    if batch.abandoned:
        logger.warning(
            "Pending events from an interrupted run are gone from Auth0 (a gap record names them)",
            extra={"user_id": user_id, "count": batch.abandoned},
        )
