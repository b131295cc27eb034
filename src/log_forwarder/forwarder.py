"""One run: read Auth0 the cheaper way (per user, or the tenant stream), then for every watched
user read → plan → execute, chunk by chunk.

fetch (or stream) reads a chunk, the planner turns it and the committed cursor into batches, the
executor delivers each between its checkpoint writes. The cursor committed last is the only one
alive: it is what the next chunk is planned against. Which way to read is decided per run by
read_mode.py from the tenant item; a stream run is stream_run.py's.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from .checkpoint_store import CheckpointStore, StoredCheckpoint
from .config import Settings
from .cursor import Cursor
from .events import iso_ms
from .exceptions import CheckpointStateError
from .executor import Checkpoint
from .fetch import UserRead, read_user
from .planner import OutputPolicy, PlanContext
from .read_back import read_back
from .read_mode import AUTO, PER_USER, STREAM, TENANT_KEY, Decision, TenantState, decide
from .read_mode import per_user_calls as per_user_calls_for
from .report import ReadReport, RunReport, UserReport
from .retry import Deadline
from .run_context import RunContext, deliver_chunk, guarded, leased_elsewhere
from .sinks import Sink
from .source import CallScope, CallStats, LogSource
from .stream import sample_rate
from .stream_run import Parts, StreamRun, TenantRecord

logger = logging.getLogger(__name__)


# Kept back from the invocation's timeout for what comes after the last wait: releasing leases,
# publishing the metrics, returning. Waits and retries end before it.
FINISH_RESERVE_MS = 5_000

UserOutcome = tuple[UserReport, Checkpoint | None]


class Forwarder:
    def __init__(
        self,
        *,
        settings: Settings,
        source: LogSource,
        store: CheckpointStore,
        sinks: Sequence[Sink],
        clock: Callable[[], float] = time.time,
        output: OutputPolicy | None = None,
    ) -> None:
        self._settings = settings
        self._output = output or OutputPolicy()
        self._source = source
        self._store = store
        self._sinks = list(sinks)
        self._clock = clock

    def run(self, user_ids: Sequence[str], *, remaining_ms: Callable[[], int]) -> RunReport:
        loaded = self._store.load([*user_ids, TENANT_KEY])
        run = self._new_run(remaining_ms)
        tenant = TenantRecord(self._store, loaded.pop(TENANT_KEY, None), run.scope.deadline)
        decision = self._decide(tenant, user_ids, loaded, run)
        logger.info("Read mode", extra={"read_mode": decision.mode, "why": decision.reason})
        stream: StreamRun | None = None
        if decision.mode == STREAM:
            parts = Parts(
                self._settings, self._source, self._store, self._sinks, self._now_ms, self._output
            )
            stream = StreamRun(parts, run, tenant, self.read_users)
            reports = stream.run(user_ids, loaded)
            decision = stream.fallback or decision  # read per user after all (no read:logs)
        else:
            reports = [report for report, _ in self.read_users(user_ids, loaded, run, tenant.state)]
        report = RunReport(users=reports, calls=run.scope.stats, finished_ms=self._now_ms())
        report.read = ReadReport(decision.mode, decision.reason, tenant.state.refused)
        if stream is not None and decision.mode == STREAM:
            report.read.stream_events = stream.events_read
            report.read.stream_complete = stream.complete
            report.read.error = stream.error
        self._record(tenant, decision, report)
        return report

    def read_users(
        self,
        user_ids: Sequence[str],
        loaded: Mapping[str, StoredCheckpoint],
        run: RunContext,
        tenant: TenantState,
    ) -> list[UserOutcome]:
        """Each user read per user, by a bounded pool; the reports in `user_ids` order."""
        # Start at a random user, so that when the time budget cannot cover every user, the same
        # ones are not always the ones left for later.
        offset = random.randrange(len(user_ids)) if user_ids else 0
        ordered = [*user_ids[offset:], *user_ids[:offset]]
        with ThreadPoolExecutor(max_workers=self._settings.max_concurrent_users) as pool:
            outcomes = dict(
                zip(
                    ordered,
                    pool.map(lambda user: self._user(user, loaded.get(user), run, tenant), ordered),
                    strict=True,
                )
            )
        return [outcomes[user] for user in user_ids]

    def _new_run(self, remaining_ms: Callable[[], int]) -> RunContext:
        margin_ms = self._settings.time_margin_ms
        reserve_ms = min(FINISH_RESERVE_MS, margin_ms // 2)
        deadline = Deadline(lambda: remaining_ms() - reserve_ms)
        return RunContext(
            CallScope(CallStats(), deadline),
            remaining_ms,
            margin_ms,
            threading.Event(),
        )

    def _decide(
        self,
        tenant: TenantRecord,
        user_ids: Sequence[str],
        loaded: Mapping[str, StoredCheckpoint],
        run: RunContext,
    ) -> Decision:
        now_ms = self._now_ms()
        setting = self._settings.read_mode
        state = tenant.state
        # In per-user mode nothing else measures the tenant's event rate.
        measure = setting == AUTO and state.mode != STREAM and not state.stream_refused(now_ms)
        if measure and state.probe_due(now_ms):
            tenant.state = sample_rate(self._source, state, now_ms=now_ms, scope=run.scope)
        pending = sum(_has_pending(stored) for stored in loaded.values())
        return decide(setting, tenant.state, users=len(user_ids), pending=pending, now_ms=now_ms)

    def _record(self, tenant: TenantRecord, decision: Decision, report: RunReport) -> None:
        """The tenant item after the run: the mode, why, and the figures the next run decides
        on. READ_MODE=per-user keeps no figures: the item is written only to end a stream era."""
        if self._settings.read_mode == PER_USER and tenant.state.mode == PER_USER:
            return
        forwarded = {u.user_id: u.forwarded for u in report.users}
        state = tenant.state.after_run(
            decision,
            per_user_calls=per_user_calls_for(forwarded, len(report.users)),
            now_ms=self._now_ms(),
        )
        tenant.save(state, users=len(report.users))

    def _user(
        self, user_id: str, stored: StoredCheckpoint | None, run: RunContext, tenant: TenantState
    ) -> UserOutcome:
        report = UserReport(user_id)
        if run.out_of_time.is_set() or run.time_is_up():
            run.out_of_time.set()
            report.deferred = True
            return report, None
        opened: list[Checkpoint] = []

        def work() -> None:
            opened.append(self._checkpoint(report, stored, run, tenant))
            report.cursor = opened[0].cursor
            self._forward_user(report, opened[0], run)

        noted = guarded(report, work)
        checkpoint = opened[0] if opened else None
        if checkpoint is not None and not report.busy:
            # Leases the other run holds, or that a conflict handed to it, are not ours.
            if noted and report.error is not None:
                checkpoint.note_error(report.error, self._now_ms())
            else:
                checkpoint.release()
        if checkpoint is not None:
            report.cursor = checkpoint.cursor
        if report.deferred:
            run.out_of_time.set()
        return report, checkpoint

    def _forward_user(self, report: UserReport, checkpoint: Checkpoint, run: RunContext) -> None:
        read_started_ms = self._now_ms()
        cursor = checkpoint.cursor
        if leased_elsewhere(report, cursor, read_started_ms):
            return
        read = UserRead(
            self._source,
            report.user_id,
            floor_ms=cursor.floor_ms,
            backlog=cursor.backlog,
            scope=run.scope,
            out_of_time=run.time_is_up,
            missing=cursor.missing_since_ms is not None,
        )
        context = self._plan_context(report.user_id, read_started_ms, run)
        chunks = read_user(read)
        complete = False
        while not complete and not run.time_is_up():
            chunk = next(chunks, None)
            if chunk is None:
                break
            now_ms = self._now_ms()
            planned = replace(context, now_ms=now_ms, lease_until_ms=run.lease_until(now_ms))
            deliver_chunk(report, checkpoint, chunk, planned, self._sinks)
            complete = chunk.complete
        # The read stopped before the newest events (here, or inside fetch between pages).
        report.deferred = not complete and run.time_is_up()
        report.backlog = checkpoint.cursor.backlog
        if checkpoint.cursor.at_capacity:
            logger.warning(
                "Overlap window narrowed: too many recent events to remember",
                extra={"user_id": report.user_id, "floor": iso_ms(checkpoint.cursor.floor_ms)},
            )

    def _read_back(self, report: UserReport, checkpoint: Checkpoint, run: RunContext) -> None:
        """A seated user's pending events the per-user read may not see (read_back.py),
        redelivered before its seat goes; not while another run holds them."""
        now_ms = self._now_ms()
        if checkpoint.cursor.leased_until(now_ms) is not None:
            return  # _forward_user says so
        chunk = read_back(self._source, checkpoint.cursor, run.scope)
        if chunk is not None:
            context = self._plan_context(report.user_id, now_ms, run)
            deliver_chunk(report, checkpoint, chunk, context, self._sinks)

    def _plan_context(self, user_id: str, read_started_ms: int, run: RunContext) -> PlanContext:
        return PlanContext(
            user_id=user_id,
            tenant=self._settings.auth0_domain,
            now_ms=read_started_ms,
            read_started_ms=read_started_ms,
            overlap_ms=self._settings.overlap_window_ms,
            min_retention_ms=self._settings.log_retention_ms,
            lease_until_ms=run.lease_until(read_started_ms),
            output=self._output,
        )

    def _checkpoint(
        self,
        report: UserReport,
        stored: StoredCheckpoint | None,
        run: RunContext,
        tenant: TenantState,
    ) -> Checkpoint:
        user_id = report.user_id
        deadline = run.scope.deadline
        if stored is not None:
            cursor = Cursor.from_state(stored.readable_state())
            checkpoint = Checkpoint(self._store, user_id, cursor, stored.version, deadline)
            if cursor.seat is not None:
                self._read_back(report, checkpoint, run)
                # Read per user now: the seat is void. What the stream verified counts as
                # verified for a user it moved with (gaps.expiry_gap reads it); not for one it
                # moved without (off the watch list meanwhile), whose expired events are a gap.
                moved_with = cursor.on_stream(tenant.epoch) and tenant.moved_for(user_id)
                verified = tenant.verified_ms if moved_with else None
                checkpoint.cursor = checkpoint.cursor.off_stream(verified)
            return checkpoint
        # A new user's history is read oldest first by search from the start: with more than
        # 1,000 retained events, ten newest-first pages would be read only to be thrown away.
        # Without the read:logs scope the read falls back to newest first.
        cursor = Cursor.fresh(self._settings.start_from.floor_ms(self._now_ms())).with_backlog(True)
        checkpoint = Checkpoint(self._store, user_id, cursor, None, deadline)
        # Fix the starting point at first sight: with START_FROM=now, a user who stays quiet
        # must not see "now" move forward with every run.
        checkpoint.write(cursor)
        return checkpoint

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _has_pending(stored: StoredCheckpoint) -> bool:
    try:
        return bool(Cursor.from_state(stored.readable_state()).pending)
    except CheckpointStateError:
        return False  # its own read reports it
