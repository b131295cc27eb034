"""A run that reads the tenant's log by checkpoint, once, instead of each watched user's.

1. era     a switch to the stream starts one: its start is found (stream.start_position)
           and written to the tenant item before anyone joins it
2. joins   users who may join at once get a seat: new users, and, while the era starts,
           users a complete per-user read verified in the last hours (the era starts before
           what that read could miss). Others are read per user first, then join (at most
           half the run's time)
3. windows the log is read on from the stream checkpoint, up to 1,000 events at a time;
           each joined user's events in a window are one chunk through the planner and the
           executor, exactly as a per-user read's: intent, destinations, commit
4. commit  the stream checkpoint moves past a window only once every user with events in
           it committed them. A user that could not (an error, another run's lease, time)
           is left out for the rest of the run and the checkpoint stays before its events;
           the others go on, and a window read again is deduplicated by their seats
5. end     a read that reached the end of the log with nobody left out is recorded: dates
           before its start (less the overlap window) are verified, and it ends the floor
           zone of the users who joined before it (cursor.StreamSeat)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial

from .checkpoint_store import CheckpointStore, StoredCheckpoint
from .config import Settings
from .cursor import Cursor, StreamSeat
from .events import LogEvent, Malformed
from .exceptions import CheckpointConflict, CheckpointStateError, ForwarderError, OutOfTime
from .executor import Checkpoint
from .fetch import Chunk, StreamSpan
from .gaps import ReadFacts
from .planner import OutputPolicy, PlanContext
from .read_mode import PER_USER, STREAM, TENANT_KEY, Decision, TenantState
from .report import UserReport
from .retry import Deadline
from .roster import digest, pack
from .run_context import RunContext, deliver_chunk, guarded, leased_elsewhere
from .sinks import Sink
from .source import LogSource
from .stream import (
    STREAM_SOURCE,
    CheckpointUnknown,
    StreamRead,
    StreamRefused,
    Window,
    read_windows,
    start_position,
)

logger = logging.getLogger(__name__)

# A user joins without a per-user read only if one verified it this recently (cursor.verified_ms
# moves in steps of an hour): the era then starts that far back, and reads those events again.
JOIN_LOOKBACK_MS = 3 * 3_600_000
# Share of the run's time the per-user reads of joining users may take: the stream needs the rest.
JOIN_SHARE = 0.5

UserOutcome = tuple[UserReport, Checkpoint | None]
ReadUsers = Callable[
    [Sequence[str], Mapping[str, StoredCheckpoint], RunContext, TenantState], list[UserOutcome]
]


@dataclass(frozen=True, slots=True)
class Parts:
    """What a stream run borrows from the forwarder."""

    settings: Settings
    source: LogSource
    store: CheckpointStore
    sinks: Sequence[Sink]
    now_ms: Callable[[], int]
    output: OutputPolicy


class TenantRecord:
    """The tenant item as last read or written, and the conditional writes that move it."""

    def __init__(
        self, store: CheckpointStore, stored: StoredCheckpoint | None, deadline: Deadline
    ) -> None:
        self._store = store
        self._deadline = deadline
        self._version = stored.version if stored else None
        try:
            self.state = TenantState.from_state(stored.state if stored else None)
        except CheckpointStateError as error:
            # Starting over costs a new stream era (every user read per user once), not events.
            logger.error("Tenant item unreadable; starting over", extra={"error": str(error)})
            self.state = TenantState()

    def write(self, state: TenantState, *, users: int) -> None:
        """Conditional on the version read: CheckpointConflict if another run wrote it."""
        self._version = self._store.save(
            TENANT_KEY,
            state.to_state(),
            expected_version=self._version,
            summary=state.summary(users),
            deadline=self._deadline,
        )
        self.state = state

    def save(self, state: TenantState, *, users: int) -> None:
        """Write figures and reasons; losing them to a failure or a race costs nothing."""
        try:
            self.write(state, users=users)
        except ForwarderError as error:
            logger.warning("Tenant item not updated", extra={"error": str(error)})


@dataclass
class Roster:
    """Where each watched user stands at the start of a stream run."""

    members: dict[str, Checkpoint] = field(default_factory=dict)  # on the stream already
    join_now: dict[str, Checkpoint] = field(default_factory=dict)  # may join without a read
    # Read per user, then join: users with no seat to join from, and seated users the stream
    # may have moved without (roster.py) or past their pending events.
    read_first: list[str] = field(default_factory=list)


class StreamRun:
    def __init__(
        self, parts: Parts, run: RunContext, tenant: TenantRecord, read_users: ReadUsers
    ) -> None:
        self._parts = parts
        self._run = run
        self._tenant = tenant
        self._read_users = read_users
        self._members: dict[str, Checkpoint] = {}
        self._reports: dict[str, UserReport] = {}
        self._left_out: set[str] = set()
        self._noted: set[str] = set()  # failed users whose failure goes on their checkpoint
        self._users = 0
        self._started_ms = 0
        self.events_read = 0
        self.complete: bool | None = None  # None: the stream was not read
        self.fallback: Decision | None = None  # set when the run read per user after all
        self.error: str | None = None  # the tenant item could not be written: the run fails

    def run(
        self, user_ids: Sequence[str], loaded: Mapping[str, StoredCheckpoint]
    ) -> list[UserReport]:
        self._users = len(user_ids)
        self._started_ms = self._parts.now_ms()
        self._reports = {user: UserReport(user) for user in user_ids}
        state = self._tenant.state
        starting = state.mode != STREAM or state.position is None
        era = state.new_era(self._started_ms) if starting else state
        roster = self._roster(user_ids, loaded, era)
        try:
            if starting and not self._start_era(roster):
                return [self._reports[user] for user in user_ids]
        except StreamRefused as refused:
            # Nothing was written yet: this run reads every user per user instead.
            return self._refused(str(refused), user_ids, loaded)
        try:
            self._join(roster.join_now)
            self._members.update(roster.members)
            self._read_first(roster.read_first, loaded)
            self._adopt_roster()
            self._read_stream()
        except StreamRefused as refused:
            # Mid-run (a scope withdrawn): what was committed stays; the next run reads per user.
            self._note_refused(str(refused))
        finally:
            self._finish()
        return [self._reports[user] for user in user_ids]

    # -- 1. the era ------------------------------------------------------------------------------

    def _roster(
        self, user_ids: Sequence[str], loaded: Mapping[str, StoredCheckpoint], era: TenantState
    ) -> Roster:
        roster = Roster()
        previous = era.members()
        starting = era.position is None
        settings, now_ms = self._parts.settings, self._parts.now_ms()
        deadline = self._run.scope.deadline
        for user in user_ids:
            stored = loaded.get(user)
            if stored is None:
                # New users join at once while the era starts (it starts before START_FROM) or
                # with START_FROM=now; an earlier start needs their history read per user.
                if starting or settings.start_from.mode == "now":
                    fresh = Cursor.fresh(settings.start_from.floor_ms(now_ms)).with_backlog(True)
                    roster.join_now[user] = Checkpoint(
                        self._parts.store, user, fresh, None, deadline
                    )
                else:
                    roster.read_first.append(user)
                continue
            cursor = _decoded(stored)
            if cursor is not None and cursor.on_stream(era.epoch):
                if _seat_holds(user, cursor, era, previous):
                    roster.members[user] = Checkpoint(
                        self._parts.store, user, cursor, stored.version, deadline
                    )
                else:
                    # Its pending events are read back by id (read_back.py), and nothing the
                    # stream verified counts as its own (forwarder._checkpoint), then it joins.
                    logger.warning("The stream moved without this user: read per user first",
                                   extra={"user_id": user})  # fmt: skip
                    roster.read_first.append(user)
            elif cursor is not None and starting and _joins_at_once(cursor, now_ms):
                seatless = cursor.off_stream(None)
                roster.join_now[user] = Checkpoint(
                    self._parts.store, user, seatless, stored.version, deadline
                )
            else:
                roster.read_first.append(user)
        return roster

    def _adopt_roster(self) -> None:
        """The members go into the tenant item with the stream's next move, in the same
        conditional write: a run whose view of the members is stale cannot move it (roster.py).
        A watched user that is not one (its join failed, another run had it) is left off, so
        that the next run, seeing it seated, reads it per user first."""
        state = self._tenant.state
        members = pack(self._members)
        if state.roster != members:
            self._tenant.state = replace(state, roster=members)

    def _start_era(self, roster: Roster) -> bool:
        """Find where the new era starts and write it down before anyone joins: a seat is only
        ever at a position the tenant item knows."""
        now_ms = self._parts.now_ms()
        since = _since(roster.join_now.values(), now_ms - self._parts.settings.overlap_window_ms)
        try:
            position = start_position(self._parts.source, since, self._run.scope)
        except OutOfTime as late:
            logger.warning("Tenant stream start deferred: out of time", extra={"why": str(late)})
            self._defer_everyone()
            return False
        except ForwarderError as error:
            # Auth0 unavailable (or out of time): nothing started, nobody joined; next run.
            self.error = f"starting the tenant stream: {type(error).__name__}: {error}"
            logger.error("The tenant stream did not start", extra={"error": self.error})
            return False
        if position is None:
            logger.info("The tenant's log is empty; the stream starts once it holds an event")
            self.complete = True
            self._first_sight(roster.join_now)
            return False
        # Dates before `since` were verified by per-user reads, or are before START_FROM; what
        # is past the retention's reach already is not this era's to report (as README's Known
        # limits say of a START_FROM older than the retention).
        cut = self._retention_cut()
        era = replace(
            self._tenant.state.new_era(now_ms),
            position=position,
            verified_ms=cut if since is None else max(since, cut),
        )
        if not self._write_tenant(era, "starting the tenant stream"):
            return False
        logger.info("Tenant stream era started", extra={"epoch": era.epoch, "from": position})
        return True

    def _defer_everyone(self) -> None:
        """Time ran out before the stream could start or move: every user waits for the next
        run, and says so (UsersDeferred), as a per-user read cut short does."""
        for report in self._reports.values():
            report.deferred = True

    def _first_sight(self, checkpoints: Mapping[str, Checkpoint]) -> None:
        """Fix new users' start at first sight, seatless: with START_FROM=now, a user must not
        see "now" move on while the era waits for a first event (they join once it starts)."""
        for user, checkpoint in checkpoints.items():
            if checkpoint.version is None:
                guarded(self._reports[user], partial(checkpoint.write, checkpoint.cursor))

    # -- 2. joins --------------------------------------------------------------------------------

    def _join(self, checkpoints: Mapping[str, Checkpoint]) -> None:
        """Seat each user at the stream checkpoint (a checkpoint write each)."""
        state = self._tenant.state
        assert state.position is not None
        seat = StreamSeat(state.epoch, self._parts.now_ms(), state.position)

        def join(user: str) -> None:
            checkpoint = checkpoints[user]
            report = self._reports[user]
            guarded(report, lambda: checkpoint.write(checkpoint.cursor.with_seat(seat)))
            report.cursor = checkpoint.cursor
            if _clean(report):
                self._members[user] = checkpoint

        with ThreadPoolExecutor(max_workers=self._parts.settings.max_concurrent_users) as pool:
            list(pool.map(join, checkpoints))

    def _read_first(self, user_ids: Sequence[str], loaded: Mapping[str, StoredCheckpoint]) -> None:
        """Per-user reads of users who cannot join at once; those read to their newest event,
        with nothing pending, join. They may use JOIN_SHARE of the time left."""
        if not user_ids:
            return
        run = self._run
        share = int(run.remaining_ms() * JOIN_SHARE)
        budget = replace(run, margin_ms=run.margin_ms + share, out_of_time=threading.Event())
        joining: dict[str, Checkpoint] = {}
        for report, checkpoint in self._read_users(user_ids, loaded, budget, self._tenant.state):
            self._reports[report.user_id] = report
            if checkpoint is None or not _clean(report) or report.backlog:
                continue
            if not checkpoint.cursor.pending:
                joining[report.user_id] = checkpoint
        self._join(joining)

    # -- 3. and 4. windows -----------------------------------------------------------------------

    def _read_stream(self) -> None:
        state = self._tenant.state
        if not self._members or state.position is None:
            return
        started_ms = self._parts.now_ms()
        context = PlanContext(
            user_id="",
            tenant=self._parts.settings.auth0_domain,
            now_ms=started_ms,
            read_started_ms=started_ms,
            overlap_ms=self._parts.settings.overlap_window_ms,
            min_retention_ms=self._parts.settings.log_retention_ms,
            lease_until_ms=self._run.lease_until(started_ms),
            output=self._parts.output,
        )
        self.complete = False
        try:
            hold = self._windows_delivered(context, state.position)
        except OutOfTime as exc:
            # A page would outlast the invocation: what was committed stays, the rest waits.
            logger.warning("Tenant stream deferred: out of time", extra={"why": str(exc)})
            return
        except ForwarderError as error:
            # Auth0 kept failing, or answered what cannot be read: the users' commits stand,
            # and the run fails after its report (the Errors alarm), as a failed user's would.
            self.error = f"reading the tenant stream: {type(error).__name__}: {error}"
            logger.error("The tenant stream stopped", extra={"error": self.error})
            return
        if self.complete and hold is None:
            self._completed(started_ms)

    def _windows_delivered(self, context: PlanContext, position: str) -> str | None:
        """Read and deliver windows until the end of the log or of the time; returns where the
        checkpoint was held back (None: nobody was left out)."""
        read = StreamRead(self._parts.source, self._run.scope, self._run.time_is_up)
        hold: str | None = None  # the checkpoint stays here: a left-out user's events follow
        first = True
        for window in self._windows(read, position):
            self.events_read += window.returned
            unread = self._unread(window) if first else None
            first = False
            if not self._deliver(self._chunks(window, unread), context) and hold is None:
                hold = window.after
            if not self._move(hold or window.to, window.returned):
                self.complete = False
                return hold or window.after
            self.complete = window.complete
        return hold

    def _windows(self, read: StreamRead, position: str) -> Iterator[Window]:
        try:
            yield from read_windows(read, position)
        except CheckpointUnknown as unknown:
            # A `from` Auth0 refused (undocumented; it documents a bound). Start again from what
            # the stream verified: the seats drop what their users already hold.
            since = self._tenant.state.verified_ms
            logger.warning(
                "Auth0 refused the stream checkpoint; reading again from what was verified",
                extra={"reason": str(unknown), "since": since},
            )
            margin = self._parts.settings.overlap_window_ms
            restart = start_position(
                self._parts.source, since, self._run.scope, held_margin_ms=margin
            )
            if restart is None:
                return
            try:
                yield from read_windows(read, restart)
            except CheckpointUnknown as again:
                self.error = f"Auth0 refused the stream checkpoint twice ({again})"
                logger.error("The tenant stream cannot go on", extra={"error": self.error})

    def _unread(self, window: Window) -> tuple[int, int] | None:
        """The span a lapse of the stream may have lost (gaps.ReadFacts.unread_span): dates from
        what was verified up to the retention's reach, and never past an event still returned
        (one is retained, so everything dated after it is)."""
        verified = self._tenant.state.verified_ms
        retention_cut = self._retention_cut()
        if verified is None or verified >= retention_cut:
            return None
        oldest = min((e.date_ms for e in window.events), default=retention_cut)
        return verified, min(retention_cut, oldest)

    def _retention_cut(self) -> int:
        """What AUTH0_LOG_RETENTION_HOURS says may have expired, as of the run's start: one
        instant for the whole run, so that an era started at the retention's edge does not
        see it move between its start and its first window."""
        return self._started_ms - self._parts.settings.log_retention_ms

    def _chunks(self, window: Window, unread: tuple[int, int] | None) -> dict[str, Chunk]:
        active = {u: c for u, c in self._members.items() if u not in self._left_out}
        events = window.by_user(active.__contains__)
        malformed: dict[str, list[Malformed]] = {}
        for entry in window.malformed:
            owner = entry.owner
            if owner in active:
                malformed.setdefault(owner, []).append(entry)
            elif owner is None:
                # Not a user's: no per-user read would have returned it either.
                logger.warning("Log entry naming no user skipped", extra={"reason": entry.reason})
        chunks: dict[str, Chunk] = {}
        for user, checkpoint in active.items():
            mine, bad = events.get(user, []), malformed.get(user, [])
            # The last window also settles pending events it did not return (gone from Auth0).
            closing = window.complete and bool(checkpoint.cursor.pending)
            if mine or bad or unread is not None or closing:
                chunks[user] = self._chunk(window, checkpoint.cursor, (mine, bad), unread)
        return chunks

    def _chunk(
        self,
        window: Window,
        cursor: Cursor,
        found: tuple[list[LogEvent], list[Malformed]],
        unread: tuple[int, int] | None,
    ) -> Chunk:
        assert cursor.seat is not None
        mine, bad = found
        floor_until = self._tenant.state.floor_until(cursor.seat, default=window.to)
        return Chunk(
            mine,
            STREAM_SOURCE,
            complete=False,
            facts=ReadFacts(unread_span=unread),
            returned=len(mine) + len(bad),
            malformed=bad,
            stream=StreamSpan(window.after, window.to, floor_until),
        )

    def _deliver(self, chunks: Mapping[str, Chunk], context: PlanContext) -> bool:
        """Every user's chunk of a window through the planner and the executor; False when a
        user could not commit its own (it is left out for the rest of the run)."""
        with ThreadPoolExecutor(max_workers=self._parts.settings.max_concurrent_users) as pool:
            done = list(pool.map(lambda u: self._deliver_user(u, chunks[u], context), chunks))
        failed = {user for user, ok in zip(chunks, done, strict=True) if not ok}
        self._left_out |= failed
        return not failed

    def _deliver_user(self, user: str, chunk: Chunk, context: PlanContext) -> bool:
        report, checkpoint = self._reports[user], self._members[user]

        def work() -> None:
            now_ms = self._parts.now_ms()
            if leased_elsewhere(report, checkpoint.cursor, now_ms):
                return
            planned = replace(
                context, user_id=user, now_ms=now_ms, lease_until_ms=self._run.lease_until(now_ms)
            )
            deliver_chunk(report, checkpoint, chunk, planned, self._parts.sinks)

        if guarded(report, work):
            self._noted.add(user)
        report.cursor = checkpoint.cursor
        return _clean(report)

    def _move(self, position: str, returned: int) -> bool:
        """Write the stream checkpoint; False if another run moved it first (it owns the
        stream now; everything this run delivered is in its users' seats)."""
        state = self._tenant.state
        moved = replace(
            state, position=position, read_since_complete=state.read_since_complete + returned
        )
        return self._write_tenant(moved, "moving the stream checkpoint")

    def _write_tenant(self, state: TenantState, doing: str) -> bool:
        """A tenant item write; False when it failed, and the stream stops for this run. What
        users committed stays in their seats: a window read again is dropped by them."""
        try:
            self._tenant.write(state, users=self._users)
        except CheckpointConflict:
            # Another run owns the stream now; nothing failed.
            logger.warning(f"Another run wrote the tenant item first ({doing}); leaving it to it")
            return False
        except OutOfTime as late:
            # The next run writes it; what users committed is in their seats.
            logger.warning(f"Tenant item not written ({doing}): out of time",
                           extra={"why": str(late)})  # fmt: skip
            self._defer_everyone()
            return False
        except ForwarderError as error:
            # The users' own commits stand; the run fails so that the alarm says it.
            self.error = f"{doing}: {type(error).__name__}: {error}"
            logger.error("Tenant item not written; the stream stops", extra={"error": self.error})
            return False
        return True

    # -- 5. the end ------------------------------------------------------------------------------

    def _completed(self, started_ms: int) -> None:
        state = self._tenant.state
        done = state.after_complete_read(
            started_ms, overlap_ms=self._parts.settings.overlap_window_ms
        )
        self._write_tenant(done, "recording a complete read")

    def _finish(self) -> None:
        """Each member's checkpoint after the read, a write each where it changed: in parallel,
        as the joins are (a first run settles every user it seated)."""

        def settle(user: str) -> None:
            checkpoint, report = self._members[user], self._reports[user]
            noted = user in self._noted and report.error is not None
            if self.complete is True and _clean(report):
                # Read to the end of the log: its history is complete (no backlog), and the
                # error a past run noted for `status` is over, as after a per-user read.
                settled = replace(
                    checkpoint.cursor.released(), backlog=False, last_error=None, last_error_ms=None
                )
                if settled != checkpoint.cursor:
                    guarded(report, partial(checkpoint.write, settled))
            elif noted and not report.busy:
                checkpoint.note_error(str(report.error), self._parts.now_ms())
            elif not report.busy:
                checkpoint.release()
            report.cursor = checkpoint.cursor
            report.backlog = self.complete is False

        with ThreadPoolExecutor(max_workers=self._parts.settings.max_concurrent_users) as pool:
            list(pool.map(settle, self._members))

    def _refused(
        self, reason: str, user_ids: Sequence[str], loaded: Mapping[str, StoredCheckpoint]
    ) -> list[UserReport]:
        """No read:logs: this run reads per user after all, and the tenant item says why."""
        state = self._note_refused(reason)
        why = f"the tenant stream is unavailable ({reason}); reading per user"
        self.fallback = Decision(PER_USER, why, state.costs(len(user_ids)))
        self.complete = None
        return [report for report, _ in self._read_users(user_ids, loaded, self._run, state)]

    def _note_refused(self, reason: str) -> TenantState:
        logger.warning("The tenant stream is unavailable", extra={"reason": reason})
        state = replace(self._tenant.state, refused=reason, refused_at_ms=self._parts.now_ms())
        self._tenant.state = state  # written with the run's figures (forwarder._record)
        return state


def _decoded(stored: StoredCheckpoint) -> Cursor | None:
    try:
        return Cursor.from_state(stored.readable_state())
    except CheckpointStateError:
        return None  # its per-user read reports it


def _seat_holds(
    user: str, cursor: Cursor, era: TenantState, members: frozenset[bytes] | None
) -> bool:
    """The stream moved with this user (it is on the roster), and nothing it has pending lies at
    or below the stream checkpoint (which the stream would then never read again)."""
    if members is None or digest(user) not in members:
        return False
    position = era.position
    return position is None or all(
        log_id > position for pending in cursor.pending for log_id in pending.log_ids
    )


def _joins_at_once(cursor: Cursor, now_ms: int) -> bool:
    """Nothing of the user is pending, and the era can start before whatever it lacks: a
    complete per-user read verified it recently, or nothing was forwarded yet (its floor, fixed
    at first sight, is all it needs)."""
    if cursor.pending:
        return False
    if _untouched(cursor):
        return True
    recent = cursor.verified_ms is not None and cursor.verified_ms >= now_ms - JOIN_LOOKBACK_MS
    return recent and not cursor.backlog


def _untouched(cursor: Cursor) -> bool:
    return cursor.forwarded_total == 0 and not cursor.recent and cursor.verified_ms is None


def _since(joining: Iterable[Checkpoint], default: int) -> int | None:
    """The date the era starts before: the oldest its joiners need (None: the oldest event)."""
    dates: list[int | None] = [
        checkpoint.cursor.floor_ms
        if checkpoint.version is None or _untouched(checkpoint.cursor)
        else checkpoint.cursor.verified_ms
        for checkpoint in joining
    ]
    if not dates:
        return default
    if any(date is None for date in dates):
        return None
    return min(date for date in dates if date is not None)


def _clean(report: UserReport) -> bool:
    return report.error is None and report.bug is None and not report.busy and not report.deferred
