"""One run: for every watched user, read → plan → execute, chunk by chunk.

fetch reads a chunk, the planner turns it and the committed cursor into batches, the executor
delivers each between its checkpoint writes. The cursor committed last is the only one alive:
it is what the next chunk is planned against.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from .checkpoint_store import CheckpointStore, StoredCheckpoint
from .config import Settings
from .cursor import Cursor, iso_ms
from .exceptions import CheckpointConflict, CheckpointError, ForwarderError, OutOfTime
from .executor import Checkpoint, execute
from .fetch import UserRead, read_user
from .planner import Batch, OutputPolicy, PlanContext, plan_chunk
from .report import RunReport, UserReport
from .retry import Deadline
from .sinks import Sink
from .source import CallScope, CallStats, LogSource

logger = logging.getLogger(__name__)


# Kept back from the invocation's timeout for what comes after the last wait: releasing leases,
# publishing the metrics, returning. Waits and retries end before it.
FINISH_RESERVE_MS = 5_000
# Leases assume the clocks of two invocations agree within this (Lambda's hosts keep NTP time).
LEASE_CLOCK_MARGIN_MS = 30_000
MAX_LEASE_MS = 15 * 60_000


@dataclass(frozen=True, slots=True)
class _Run:
    """What every user of one run shares."""

    scope: CallScope
    remaining_ms: Callable[[], int]
    margin_ms: int
    out_of_time: threading.Event

    def lease_until(self, now_ms: int) -> int:
        """Until when an intent written now is this run's: the invocation's end (a Lambda runs
        15 minutes at most), plus a margin for the clocks of two runs not quite agreeing."""
        return now_ms + min(self.remaining_ms(), MAX_LEASE_MS) + LEASE_CLOCK_MARGIN_MS

    def time_is_up(self) -> bool:
        """No new chunk or user starts: the margin is for finishing what is under way."""
        return self.remaining_ms() < self.margin_ms


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
        stored = self._store.load(user_ids)
        # Start at a random user, so that when the time budget cannot cover every user, the same
        # ones are not always the ones left for later.
        offset = random.randrange(len(user_ids)) if user_ids else 0
        ordered = [*user_ids[offset:], *user_ids[:offset]]
        margin_ms = self._settings.time_margin_ms
        reserve_ms = min(FINISH_RESERVE_MS, margin_ms // 2)
        deadline = Deadline(lambda: remaining_ms() - reserve_ms)
        run = _Run(
            CallScope(CallStats(), deadline),
            remaining_ms,
            margin_ms,
            threading.Event(),
        )
        with ThreadPoolExecutor(max_workers=self._settings.max_concurrent_users) as pool:
            reports = list(pool.map(lambda user: self._user(user, stored.get(user), run), ordered))
        return RunReport(users=reports, calls=run.scope.stats, finished_ms=self._now_ms())

    def _user(self, user_id: str, stored: StoredCheckpoint | None, run: _Run) -> UserReport:
        report = UserReport(user_id)
        if run.out_of_time.is_set() or run.time_is_up():
            run.out_of_time.set()
            report.deferred = True
            return report
        checkpoint: Checkpoint | None = None
        noted = False
        try:
            checkpoint = self._checkpoint(user_id, stored, run)
            report.cursor = checkpoint.cursor
            self._forward_user(report, checkpoint, run)
        except OutOfTime as exc:
            report.deferred = True
            logger.warning(
                "User deferred: out of time", extra={"user_id": user_id, "why": str(exc)}
            )
        except CheckpointConflict as exc:
            # Another run moved this user's checkpoint first: it owns the user now. Conditional
            # writes kept this run from delivering anything twice; nothing failed.
            report.busy = True
            logger.warning("User skipped: " + str(exc), extra={"user_id": user_id})
        except ForwarderError as exc:
            # One user's failure must not cost the others their run.
            report.error = f"{type(exc).__name__}: {exc}"
            logger.error("User not forwarded", extra={"user_id": user_id, "error": report.error})
            # Written on the checkpoint for `status`, unless the table itself is what failed.
            noted = not isinstance(exc, CheckpointError)
        except Exception as exc:
            # A bug. The other users still finish (their deliveries must not be cut in half);
            # then the run fails with this exception, traceback and all.
            report.bug = exc
            logger.exception("User not forwarded: unexpected error", extra={"user_id": user_id})
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
        return report

    def _forward_user(self, report: UserReport, checkpoint: Checkpoint, run: _Run) -> None:
        read_started_ms = self._now_ms()
        cursor = checkpoint.cursor
        leased_until = cursor.leased_until(read_started_ms)
        if leased_until is not None:
            # Another run is still delivering this user's pending batch (or died doing so and
            # its lease has not run out): redelivering it now could write it twice.
            report.busy = True
            logger.warning(
                "User skipped: another run holds its pending events",
                extra={"user_id": report.user_id, "lease_until": iso_ms(leased_until)},
            )
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
        context = PlanContext(
            user_id=report.user_id,
            tenant=self._settings.auth0_domain,
            now_ms=read_started_ms,
            read_started_ms=read_started_ms,
            overlap_ms=self._settings.overlap_window_ms,
            min_retention_ms=self._settings.log_retention_ms,
            lease_until_ms=run.lease_until(read_started_ms),
            output=self._output,
        )
        chunks = read_user(read)
        complete = False
        while not complete and not run.time_is_up():
            chunk = next(chunks, None)
            if chunk is None:
                break
            report.fetched += chunk.returned
            now_ms = self._now_ms()
            planned = replace(context, now_ms=now_ms, lease_until_ms=run.lease_until(now_ms))
            plan = plan_chunk(checkpoint.cursor, chunk, planned)
            report.add_read(plan.selection)
            for batch in plan.batches:
                execute(batch, checkpoint, self._sinks, report.add_delivery)
                report.add_batch(batch)
                _log_batch(report.user_id, batch)
            complete = chunk.complete
        # The read stopped before the newest events (here, or inside fetch between pages).
        report.deferred = not complete and run.time_is_up()
        report.backlog = checkpoint.cursor.backlog
        if checkpoint.cursor.at_capacity:
            logger.warning(
                "Overlap window narrowed: too many recent events to remember",
                extra={"user_id": report.user_id, "floor": iso_ms(checkpoint.cursor.floor_ms)},
            )

    def _checkpoint(self, user_id: str, stored: StoredCheckpoint | None, run: _Run) -> Checkpoint:
        deadline = run.scope.deadline
        if stored is not None:
            cursor = Cursor.from_state(stored.readable_state())
            return Checkpoint(self._store, user_id, cursor, stored.version, deadline)
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
        # Auth0 no longer returns them (expired?): they may or may not have been delivered
        # before the crash. Said, rather than waited for.
        logger.warning(
            "Pending events from an interrupted run are gone from Auth0",
            extra={"user_id": user_id, "count": batch.abandoned},
        )
