"""Correlation state no single user's checkpoint can hold: groups that span users (failed logins
from one IP against several watched users), and, tenant-wide, the rules of users nobody watches.
One item of the checkpoint table (key `#detections`: keys starting with "#" are never users),
written as a checkpoint is, conditionally on the version read, with an outbox of its own:

    apply(events)            a user's batch, after every destination took it and before the
                             user's commit; or the tenant's events nobody watches (stream_run.py,
                             realtime.py) before the tenant stream moves past them
      1. load the item; findings an interrupted run left pending (its lease over) are claimed
         with this run's lease, delivered again (the destinations skip what they hold), cleared
      2. the events it applied before are left out (`seen`: their log_ids, bounded), so a
         redelivered batch, a window read again and an event both pushed and read count once
      3. step (pure): findings, what the rules did not see, the next state
      4. write: the state, the events seen, the findings as pending under this run's lease
         ✗ lost race: load again, from 1 (the step is pure; 2 skips what the winner applied)
         ✗ crash before: the user's batch is not committed; its redelivery applies it again
      5. deliver the findings      ✗ crash here: the next apply, of any run, delivers them (1)
      6. write: pending cleared

Checkpoint table writes: none for events no shared rule takes; one for a batch that only moves
the state; two more for one that finds something. The item is bounded (sigma_step.Limits, at
most MAX_SEEN log_ids) and expires: events leave the state two timespans after the newest, and
the item carries `expires_at` (the table's TTL) for when no run touches it any more.
"""

from __future__ import annotations

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
class SharedState:
    correlations: Mapping[str, Any] = field(default_factory=dict)  # CorrelationState, as stored
    seen: tuple[tuple[int, str], ...] = ()  # (date, log_id) of the events applied, sorted
    pending: tuple[PendingFindings, ...] = ()

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
    ),
    version=1,
    readable_from=1,
    upgrades={},
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
    ) -> Applied:
        """Apply `events` to the correlations of `plan` (a part of `plan_whole`, the active
        plan) once, and deliver what they find to `user_id`'s destinations."""
        taken = [e for e in stored_ids(events) if plan.matching(e.raw)]
        if not taken:
            return Applied()
        call = _Call(plan, plan_whole, user_id, render, deliver, lease_until_ms, deadline)
        with self._lock:
            return self._apply(call, taken)

    def _apply(self, call: _Call, events: Sequence[LogEvent]) -> Applied:
        plan, plan_whole, user_id = call.plan, call.plan_whole, call.user_id
        render, deliver = call.render, call.deliver
        lease_until_ms, deadline = call.lease_until_ms, call.deadline
        ours: PendingFindings | None = None  # this apply's findings, once written
        found: tuple[Finding, ...] = ()
        skipped: tuple[Skipped, ...] = ()
        delivered: set[str] = set()
        for _ in range(ATTEMPTS):
            loaded = self._load()
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
                stepped = _stepped(plan, plan_whole, cleared, events, user_id)
                if stepped is None:
                    if (
                        cleared != state
                        and self._write(cleared, version, plan_whole, deadline) is None
                    ):
                        continue
                    return Applied()
                after, found, skipped = stepped
                if found or skipped:
                    lines = render(found, skipped)
                    batch_id = batch_id_for(line.key or line.line for line in lines)
                    rows = tuple((line.timestamp_ms, line.line, line.record_key) for line in lines)
                    ours = PendingFindings(batch_id, user_id, rows, lease_until_ms, now)
                    after = replace(after, pending=(*after.pending, ours))
                version = self._write(after, version, plan_whole, deadline)
                if version is None:
                    ours, found, skipped = None, (), ()
                    continue
                if ours is None:
                    return Applied()
                # 5. Delivered, 6. cleared.
                deliver(ours.delivery(redelivery=False, deadline=deadline))
                delivered.add(ours.batch_id)
                state = after
                cleared = replace(
                    after, pending=tuple(p for p in after.pending if p.batch_id not in delivered)
                )
            if self._write(cleared, version, plan_whole, deadline) is not None:
                return Applied(found, skipped)
        raise CheckpointConflict(
            f"the shared detection state ({SHARED_KEY!r}) kept changing under this run "
            f"({ATTEMPTS} attempts): its batch is delivered again by the next run"
        )

    def _load(self) -> tuple[SharedState, int | None] | str:
        """The item and its version; or why it cannot be used (a newer release's, unreadable:
        then it is left as it is, and the shared correlations do not run)."""
        stored = self._store.load([SHARED_KEY]).get(SHARED_KEY)
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
    plan: Plan, plan_whole: Plan, state: SharedState, events: Sequence[LogEvent], user_id: str
) -> tuple[SharedState, tuple[Finding, ...], tuple[Skipped, ...]] | None:
    """The state after the events it has not applied yet, and what they found; None when it
    applied every one before."""
    from .sigma_step import CorrelationState, Limits, step

    known = {log_id for _, log_id in state.seen}
    fresh = [e for e in events if e.log_id not in known]
    if not fresh:
        return None
    limits = Limits(max_groups=MAX_GROUPS, max_entries=MAX_ENTRIES)
    result = step(plan, CorrelationState.from_state(state.correlations), fresh, limits)
    kept_ids = {c.id for c in plan_whole.correlations}
    groups = {cid: g for cid, g in result.state.groups.items() if cid in kept_ids}
    correlations = CorrelationState(result.state.watermark_ms, groups)
    seen = _bounded_seen(
        [*state.seen, *((e.date_ms, e.log_id) for e in fresh)],
        correlations.watermark_ms,
        _horizon(plan_whole),
    )
    watched = "" if user_id == TENANT_FINDINGS else user_id  # tenant-wide: nobody watched
    findings = tuple(sigma_finding(plan_whole, f, watched) for f in result.findings)
    skipped = skipped_of(plan_whole, result, fresh)
    after = replace(state, correlations=correlations.to_state(), seen=seen)
    return after, findings, skipped


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
