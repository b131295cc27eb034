"""Correlation state no single user's checkpoint can hold: groups that span users (failed logins
from one IP against several watched users), and, tenant-wide, the rules of users nobody watches.
One item of the checkpoint table (key `#detections`: keys starting with "#" are never users),
written as a checkpoint is, conditionally on the version read, with an outbox of its own:

    apply(events)            a user's batch, after every destination took it and before the
                             user's commit; or the tenant's events nobody watches (stream_run.py,
                             realtime.py) before the tenant stream moves past them
      1. load the item; findings an interrupted run left pending (its lease over) are claimed
         with this run's lease, delivered again (the destinations skip what they hold), cleared
      2. the events it applied before are left out, so a redelivered batch counts once:
         a watched user's batch by its batch id (`applied`, below), the tenant's events
         nobody watches by their log_ids (`seen`, bounded)
      3. step (pure): findings, what the rules did not see, the next state
      4. write: the state, what it applied, the findings as pending under this run's lease
         ✗ lost race: load again, from 1 (the step is pure; 2 skips what the winner applied)
         ✗ crash before: the user's batch is not committed; its redelivery applies it again
      5. deliver the findings      ✗ crash here: the next apply, of any run, delivers them (1)
      6. write: pending cleared

A watched user's batch is applied under its batch id, which its redelivery keeps (planner.py:
the destinations skip what they hold by it), so the item remembers batches, not events: a
fresh batch is applied whole, and a later call under its id skips everything (a subset of it
is all a redelivery can hold). A redelivery whose first attempt died before this step (a
destination failed) may come in parts, one chunk each: its events are remembered one by one,
as short digests, under the batch. Every watched user's call prunes that user's entries to the
batches its checkpoint still holds pending (the others are committed and never come again),
and an entry also goes APPLIED_HORIZON_MS after it was written (an hour), or when MAX_APPLIED
newer ones are kept. So the item does not grow with a burst: it held every event's log_id, up
to 2,000, before (about 17 KB of a 19 KB item, rewritten by every batch of every watched user).

Checkpoint table writes: none for events no shared rule takes; one for a batch that only moves
the state; two more for one that finds something. The item is bounded (sigma_step.Limits,
MAX_APPLIED batches, at most MAX_SEEN log_ids of unwatched users' events) and expires: events
leave the state two timespans after the newest, and the item carries `expires_at` (the table's
TTL) for when no run touches it any more.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

from .codec import INT, STR, Key, Record, Schema, items, optional, row
from .detections import Finding, JsonObject, Skipped, sigma_finding, skipped_of, stored_ids
from .events import LogEvent
from .exceptions import CheckpointConflict, CheckpointStateError, NewerStateError
from .records import Delivery, OutputLine, batch_id_for
from .retry import UNLIMITED, Deadline

if TYPE_CHECKING:
    from .sigma_plan import Plan
    from .store import CheckpointStore

logger = logging.getLogger(__name__)

SHARED_KEY: Final = "#detections"
# The destination "user" of tenant-wide findings (a CloudWatch stream and an S3 prefix of their
# own): they name users nobody watches.
TENANT_FINDINGS: Final = "#tenant"
MAX_SEEN: Final = 2_000
SEEN_HORIZON_MS: Final = 2 * 86_400_000  # at least: a redelivery or a window read again
# A batch is applied after every destination took it, moments before its user's commit; only a
# commit lost then brings it back, with the next holder of the user's lease (minutes later).
# An hour covers a lease and several runs besides; a batch redelivered later than that (or
# pushed out by MAX_APPLIED newer ones) counts twice in the shared correlations. Every watched
# user with a batch for them within it keeps an entry (about 30 bytes compressed): 512 users
# make a 15 KB item (review of #25, H3).
APPLIED_HORIZON_MS: Final = 3_600_000
MAX_APPLIED: Final = 512
# A batch's events by digest (a redelivery in parts, the filter's kept-out events): a read's
# batch is one chunk of at most this many events.
MAX_BATCH_DIGESTS: Final = 10_000
# The engine's caps for this item (a user's checkpoint takes sigma_step's defaults): about
# 160 KB of JSON at most, with the log_ids seen.
MAX_GROUPS: Final = 128
MAX_ENTRIES: Final = 2_000
ATTEMPTS: Final = 8  # lost races before the caller's batch waits for its next run


@dataclass(frozen=True, slots=True)
class PendingFindings:
    """Findings written to the item and not yet known delivered: a write-ahead intent."""

    batch_id: str
    user_id: str  # whose destinations (stream, prefix) they go to
    lines: tuple[tuple[int, str, str | None], ...]  # (timestamp, line, record key)
    lease_until_ms: int
    written_ms: int

    def delivery(self, *, redelivery: bool, deadline: Deadline) -> Delivery:
        lines = tuple(OutputLine(ts, text, record_key=key) for ts, text, key in self.lines)
        since = self.written_ms if redelivery else None
        return Delivery(self.user_id, self.batch_id, lines, redelivery, deadline, since)


@dataclass(frozen=True, slots=True)
class AppliedBatch:
    """A watched user's batch the item applied: under its batch id, whole (`events` None), or,
    for a redelivery in parts, the digests of the events it held (event_digest)."""

    user: str  # user_digest of the watched user
    batch_id: str
    written_ms: int
    events: tuple[str, ...] | None = None
    # Digests of its events no intent held (the filter kept them out of the destinations): a
    # read after a lost commit brings them back in a batch of another id.
    kept_out: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SharedState:
    """The tenant-wide correlations' state, as the shared item stores it."""

    correlations: Mapping[str, Any] = field(default_factory=dict)  # CorrelationState, as stored
    # (date, log_id) of the unwatched users' events applied (tenant-wide), sorted
    seen: tuple[tuple[int, str], ...] = ()
    pending: tuple[PendingFindings, ...] = ()
    applied: tuple[AppliedBatch, ...] = ()  # oldest first

    def to_state(self) -> dict[str, Any]:
        return SHARED_STATE.encode(self)


SHARED_STATE: Final[Schema[SharedState]] = Schema(
    "shared detection state",
    Record(
        SharedState,
        Key("c", "correlations", JsonObject()),
        Key("seen", "seen", items(row(INT, STR), ordered=True)),
        Key(
            "pending",
            "pending",
            items(
                Record(
                    PendingFindings,
                    Key("batch", "batch_id", STR),
                    Key("user", "user_id", STR),
                    Key("lines", "lines", items(row(INT, STR, optional(STR)))),
                    Key("lease", "lease_until_ms", INT),
                    Key("at", "written_ms", INT),
                )
            ),
        ),
        Key(
            "applied",
            "applied",
            items(
                row(
                    STR,
                    STR,
                    INT,
                    optional(items(STR, most=MAX_BATCH_DIGESTS)),
                    items(STR, most=MAX_BATCH_DIGESTS),
                    into=AppliedBatch,
                ),
                most=MAX_APPLIED,
            ),
        ),
    ),
    # v2 remembers watched users' batches by id (`applied`), no longer their events in `seen`.
    # A v1 reader (a rollback) ignores `applied`: it would count again only a batch whose commit
    # was lost just before the rollback, so it may read the item rather than stop the shared
    # correlations altogether.
    version=2,
    readable_from=1,
    upgrades={1: lambda state: state},
    hint=f"delete the item {SHARED_KEY!r}: the shared correlations start afresh",
)

# (findings, skipped) -> their output lines, as the caller's batch writes records
Render = Callable[[Sequence[Finding], Sequence[Skipped]], list[OutputLine]]
Deliver = Callable[[Delivery], None]


@dataclass(frozen=True, slots=True)
class Applied:
    """What one apply found (delivered by the time it returns), and whether it could run."""

    findings: tuple[Finding, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    unavailable: str | None = None  # the item is a newer release's, or unreadable: not run
    # Other batches, younger than APPLIED_HORIZON_MS, that MAX_APPLIED pushed out of the item:
    # one redelivered now would count again (SharedBatchesForgotten).
    forgotten: int = 0


@dataclass(frozen=True, slots=True)
class UserBatch:
    """Which of a watched user's batches the events are: its id, whether it redelivers an
    interrupted one, and the batch ids the user's checkpoint holds pending (this one among them)."""

    batch_id: str
    redelivery: bool = False
    pending: frozenset[str] = frozenset()
    kept_out: frozenset[str] = frozenset()  # its events' log_ids no intent holds (filtered)


@dataclass(frozen=True, slots=True)
class _Call:
    """One apply's arguments besides its events."""

    plan: Plan
    plan_whole: Plan
    user_id: str
    render: Render
    deliver: Deliver
    lease_until_ms: int
    deadline: Deadline
    batch: UserBatch | None


class SharedCorrelations:
    """The shared item, through the checkpoint store (any: DynamoDB, the CLI's SQLite file)."""

    def __init__(self, store: CheckpointStore, now_ms: Callable[[], int]) -> None:
        self._store = store
        self._now_ms = now_ms
        # The threads of one run take turns (stream mode delivers members in parallel): they
        # would only lose races to each other. Other runs are kept apart by the versions.
        self._lock = threading.Lock()

    def apply(
        self,
        plan: Plan,
        plan_whole: Plan,
        events: Sequence[LogEvent],
        *,
        user_id: str,
        render: Render,
        deliver: Deliver,
        lease_until_ms: int,
        deadline: Deadline = UNLIMITED,
        batch: UserBatch | None = None,
    ) -> Applied:
        """Apply `events` to the correlations of `plan` (a part of `plan_whole`, the active
        plan) once, and deliver what they find to `user_id`'s destinations. `batch` names a
        watched user's batch (remembered by its id); without it, the events are the tenant's
        nobody watches (remembered by their log_ids)."""
        taken = [e for e in stored_ids(events) if plan.matching(e.raw)]
        if not taken:
            return Applied()
        call = _Call(plan, plan_whole, user_id, render, deliver, lease_until_ms, deadline, batch)
        with self._lock:
            return self._apply(call, taken)

    def _apply(self, call: _Call, events: Sequence[LogEvent]) -> Applied:
        plan_whole, user_id = call.plan_whole, call.user_id
        render, deliver = call.render, call.deliver
        lease_until_ms, deadline = call.lease_until_ms, call.deadline
        ours: PendingFindings | None = None  # this apply's findings, once written
        found: tuple[Finding, ...] = ()
        skipped: tuple[Skipped, ...] = ()
        delivered: set[str] = set()
        forgotten = 0
        for _ in range(ATTEMPTS):
            loaded = self._load(deadline)
            if isinstance(loaded, str):
                return Applied(unavailable=loaded)
            state, version = loaded
            # 1. What an interrupted run left pending, its lease over: claimed, then delivered.
            now = self._now_ms()
            stale = [
                p
                for p in state.pending
                if p.batch_id not in delivered
                and p.lease_until_ms <= now
                and (ours is None or p.batch_id != ours.batch_id)
            ]
            if stale:
                ids = {p.batch_id for p in stale}
                claimed = replace(
                    state,
                    pending=tuple(
                        replace(p, lease_until_ms=lease_until_ms) if p.batch_id in ids else p
                        for p in state.pending
                    ),
                )
                version = self._write(claimed, version, plan_whole, deadline)
                if version is None:
                    continue
                state = claimed
                for pending in stale:
                    logger.warning(
                        "Shared findings of an interrupted run delivered again",
                        extra={"batch_id": pending.batch_id, "user_id": pending.user_id},
                    )
                    deliver(pending.delivery(redelivery=True, deadline=deadline))
                    delivered.add(pending.batch_id)
            cleared = replace(
                state, pending=tuple(p for p in state.pending if p.batch_id not in delivered)
            )
            if ours is None:
                # 2.-4. This apply's events, once.
                stepped = _stepped(call, cleared, events, now)
                if stepped is None:
                    if (
                        cleared != state
                        and self._write(cleared, version, plan_whole, deadline) is None
                    ):
                        continue
                    return Applied()
                after, found, skipped, forgotten = stepped
                if found or skipped:
                    lines = render(found, skipped)
                    batch_id = batch_id_for(line.key or line.line for line in lines)
                    rows = tuple((line.timestamp_ms, line.line, line.record_key) for line in lines)
                    ours = PendingFindings(batch_id, user_id, rows, lease_until_ms, now)
                    after = replace(after, pending=(*after.pending, ours))
                version = self._write(after, version, plan_whole, deadline)
                if version is None:
                    ours, found, skipped, forgotten = None, (), (), 0
                    continue
                if ours is None:
                    return Applied(forgotten=forgotten)
                # 5. Delivered, 6. cleared.
                deliver(ours.delivery(redelivery=False, deadline=deadline))
                delivered.add(ours.batch_id)
                state = after
                cleared = replace(
                    after, pending=tuple(p for p in after.pending if p.batch_id not in delivered)
                )
            if self._write(cleared, version, plan_whole, deadline) is not None:
                return Applied(found, skipped, forgotten=forgotten)
        raise CheckpointConflict(
            f"the shared detection state ({SHARED_KEY!r}) kept changing under this run "
            f"({ATTEMPTS} attempts): its batch is delivered again by the next run"
        )

    def _load(self, deadline: Deadline) -> tuple[SharedState, int | None] | str:
        """The item and its version; or why it cannot be used (a newer release's, unreadable:
        then it is left as it is, and the shared correlations do not run)."""
        stored = self._store.load([SHARED_KEY], deadline=deadline).get(SHARED_KEY)
        if stored is None:
            return SharedState(), None
        try:
            state = SHARED_STATE.decode(stored.readable_state(), item=f"item {SHARED_KEY!r}")
        except (NewerStateError, CheckpointStateError) as error:
            logger.error("Shared correlations not run", extra={"error": str(error)})
            return str(error)
        return state, stored.version

    def _write(
        self, state: SharedState, version: int | None, plan: Plan, deadline: Deadline
    ) -> int | None:
        """The version written; None when another run wrote the item first."""
        try:
            return self._store.save(
                SHARED_KEY,
                state.to_state(),
                expected_version=version,
                summary=_summary(state, plan),
                deadline=deadline,
            )
        except CheckpointConflict:
            return None


def _stepped(
    call: _Call, state: SharedState, events: Sequence[LogEvent], now_ms: int
) -> tuple[SharedState, tuple[Finding, ...], tuple[Skipped, ...], int] | None:
    """The state after the events it has not applied yet, what they found, and how many
    batches the item forgot early to hold them; None when it applied every one before."""
    from .sigma_step import CorrelationState, Limits, step

    plan, plan_whole, user_id = call.plan, call.plan_whole, call.user_id
    applied = state.applied
    forgotten = 0
    if call.batch is None:
        known = {log_id for _, log_id in state.seen}
        fresh = [e for e in events if e.log_id not in known]
        newly_seen = [(e.date_ms, e.log_id) for e in fresh]
    else:
        fresh, applied, forgotten = _unapplied(state.applied, events, user_id, call.batch, now_ms)
        newly_seen = []
    if not fresh:
        return None
    limits = Limits(max_groups=MAX_GROUPS, max_entries=MAX_ENTRIES)
    result = step(plan, CorrelationState.from_state(state.correlations), fresh, limits)
    kept_ids = {c.id for c in plan_whole.correlations}
    groups = {cid: g for cid, g in result.state.groups.items() if cid in kept_ids}
    correlations = CorrelationState(result.state.watermark_ms, groups)
    seen = _bounded_seen(
        [*state.seen, *newly_seen], correlations.watermark_ms, _horizon(plan_whole)
    )
    watched = "" if user_id == TENANT_FINDINGS else user_id  # tenant-wide: nobody watched
    findings = tuple(sigma_finding(plan_whole, f, watched) for f in result.findings)
    skipped = skipped_of(plan_whole, result, fresh)
    after = replace(state, correlations=correlations.to_state(), seen=seen, applied=applied)
    return after, findings, skipped, forgotten


def _unapplied(
    applied: Sequence[AppliedBatch],
    events: Sequence[LogEvent],
    user_id: str,
    batch: UserBatch,
    now_ms: int,
) -> tuple[list[LogEvent], tuple[AppliedBatch, ...], int]:
    """The events of a watched user's batch not applied before, and what the item remembers
    once they are: the batch (whole, or its events' digests for a redelivery, which may hold
    part of it), the user's other batches its checkpoint still holds pending, and the other
    users' entries younger than APPLIED_HORIZON_MS."""
    user = user_digest(user_id)
    entry = next((a for a in applied if a.user == user and a.batch_id == batch.batch_id), None)
    if entry is not None and entry.events is None:
        return [], tuple(applied), 0
    # The user's kept-out events come back under any batch id; a redelivery's under its own.
    own = set(entry.events or ()) if entry is not None else set()
    held = own | {d for a in applied if a.user == user for d in a.kept_out}
    fresh = [e for e in events if event_digest(e.log_id) not in held]
    remembered = None
    if batch.redelivery:
        remembered = tuple(sorted(own | {event_digest(e.log_id) for e in fresh}))
    kept_out = tuple(sorted(event_digest(e.log_id) for e in fresh if e.log_id in batch.kept_out))
    pending = batch.pending | {batch.batch_id}
    kept = [
        a
        for a in applied
        if a is not entry
        and a.written_ms > now_ms - APPLIED_HORIZON_MS
        and (a.user != user or a.batch_id in pending)
    ]
    kept.append(AppliedBatch(user, batch.batch_id, now_ms, remembered, kept_out))
    return fresh, tuple(kept[-MAX_APPLIED:]), max(0, len(kept) - MAX_APPLIED)


def user_digest(user_id: str) -> str:
    """A watched user, as the item names it: 64 bits of a digest (the item needs no more than
    to tell users apart, and is read by whoever reads the table)."""
    return hashlib.sha256(user_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def event_digest(log_id: str) -> str:
    return hashlib.sha256(log_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def _bounded_seen(
    seen: list[tuple[int, str]], watermark: int | None, horizon_ms: int
) -> tuple[tuple[int, str], ...]:
    kept = sorted(set(seen))
    if watermark is not None:
        kept = [entry for entry in kept if entry[0] >= watermark - horizon_ms]
    return tuple(kept[-MAX_SEEN:])


def _horizon(plan: Plan) -> int:
    spans = [c.timespan_ms for c in plan.correlations]
    return max(SEEN_HORIZON_MS, 2 * max(spans, default=0))


def _summary(state: SharedState, plan: Plan) -> dict[str, str | int | None]:
    """What operators read beside the state; `expires_at` is the table's TTL attribute."""
    watermark = state.correlations.get("wm")
    expires = None
    if isinstance(watermark, int) and not state.pending:
        expires = (watermark + _horizon(plan)) // 1000 + 86_400
    groups = state.correlations.get("c")
    return {
        "item_type": "detections",
        "groups": sum(len(g) for g in groups.values()) if isinstance(groups, Mapping) else 0,
        "pending_findings": len(state.pending),
        "expires_at": expires,
    }
