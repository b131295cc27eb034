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
from dataclasses import dataclass

from .checkpoint_store import CheckpointStore, StoredCheckpoint
from .config import Settings
from .cursor import Cursor, iso_ms
from .exceptions import ForwarderError
from .executor import Checkpoint, execute
from .fetch import Chunk, UserRead, read_user
from .planner import PlanContext, plan_chunk
from .records import Gap
from .report import RunReport, UserReport
from .sinks import Sink
from .source import CallStats, LogSource

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Run:
    """What every user of one run shares."""

    stats: CallStats
    remaining_ms: Callable[[], int]
    margin_ms: int
    out_of_time: threading.Event

    def time_is_up(self) -> bool:
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
    ) -> None:
        self._settings = settings
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
        run = _Run(CallStats(), remaining_ms, self._settings.time_margin_ms, threading.Event())
        with ThreadPoolExecutor(max_workers=self._settings.max_concurrent_users) as pool:
            reports = list(pool.map(lambda user: self._user(user, stored.get(user), run), ordered))
        return RunReport(users=reports, calls=run.stats, finished_ms=self._now_ms())

    def _user(self, user_id: str, stored: StoredCheckpoint | None, run: _Run) -> UserReport:
        report = UserReport(user_id)
        if run.out_of_time.is_set() or run.time_is_up():
            run.out_of_time.set()
            report.deferred = True
            return report
        try:
            self._forward_user(report, stored, run)
        except ForwarderError as exc:
            # One user's failure must not cost the others their run.
            report.error = f"{type(exc).__name__}: {exc}"
            logger.error("User not forwarded", extra={"user_id": user_id, "error": report.error})
        except Exception as exc:
            # A bug. The other users still finish (their deliveries must not be cut in half);
            # then the run fails with this exception, traceback and all.
            report.bug = exc
            logger.exception("User not forwarded: unexpected error", extra={"user_id": user_id})
        if report.deferred:
            run.out_of_time.set()
        return report

    def _forward_user(self, report: UserReport, stored: StoredCheckpoint | None, run: _Run) -> None:
        read_started_ms = self._now_ms()
        checkpoint = self._checkpoint(report.user_id, stored, read_started_ms)
        chunks = read_user(
            UserRead(
                self._source,
                report.user_id,
                floor_ms=checkpoint.cursor.floor_ms,
                backlog=checkpoint.cursor.backlog,
                stats=run.stats,
                out_of_time=run.time_is_up,
            )
        )
        complete = False
        while not complete and not run.time_is_up():
            chunk = next(chunks, None)
            if chunk is None:
                break
            self._forward_chunk(report, checkpoint, chunk, read_started_ms)
            complete = chunk.complete
        # The read stopped before the newest events (here, or inside fetch between pages).
        report.deferred = not complete and run.time_is_up()
        report.cursor = checkpoint.cursor
        report.backlog = checkpoint.cursor.backlog
        if checkpoint.cursor.at_capacity:
            logger.warning(
                "Overlap window narrowed: too many recent events to remember",
                extra={"user_id": report.user_id, "floor": iso_ms(checkpoint.cursor.floor_ms)},
            )

    def _checkpoint(self, user_id: str, stored: StoredCheckpoint | None, now_ms: int) -> Checkpoint:
        if stored is not None:
            return Checkpoint(self._store, user_id, Cursor.from_state(stored.state), stored.version)
        # A new user's history is read oldest first by search from the start: with more than
        # 1,000 retained events, ten newest-first pages would be read only to be thrown away.
        # Without the read:logs scope the read falls back to newest first.
        cursor = Cursor.fresh(self._settings.start_from.floor_ms(now_ms)).with_backlog(True)
        checkpoint = Checkpoint(self._store, user_id, cursor, None)
        # Fix the starting point at first sight: with START_FROM=now, a user who stays quiet
        # must not see "now" move forward with every run.
        checkpoint.write(cursor)
        return checkpoint

    def _forward_chunk(
        self, report: UserReport, checkpoint: Checkpoint, chunk: Chunk, read_started_ms: int
    ) -> None:
        report.fetched += chunk.returned
        if chunk.malformed:
            report.malformed += len(chunk.malformed)
            logger.warning(
                "Malformed events rejected",
                extra={
                    "user_id": report.user_id,
                    "count": len(chunk.malformed),
                    "reasons": sorted({entry.reason for entry in chunk.malformed}),
                },
            )
        context = PlanContext(
            user_id=report.user_id,
            tenant=self._settings.auth0_domain,
            now_ms=self._now_ms(),
            read_started_ms=read_started_ms,
            overlap_ms=self._settings.overlap_window_ms,
            min_retention_ms=self._settings.log_retention_ms,
        )
        plan = plan_chunk(checkpoint.cursor, chunk, context)
        report.add_plan(plan)
        _log_plan(report.user_id, plan.gaps, plan.abandoned)
        for batch in plan.batches:
            report.add_batch(batch, execute(batch, checkpoint, self._sinks))

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _log_plan(user_id: str, gaps: Sequence[Gap], abandoned: int) -> None:
    for gap in gaps:
        logger.warning(
            "Gap: events could not be forwarded",
            extra={
                "user_id": user_id,
                "from": iso_ms(gap.from_ms),
                "to": iso_ms(gap.to_ms),
                "reason": gap.reason,
            },
        )
    if abandoned:
        # Auth0 no longer returns them (expired?): they may or may not have been delivered
        # before the crash. Said, rather than waited for.
        logger.warning(
            "Pending events from an interrupted run are gone from Auth0",
            extra={"user_id": user_id, "count": abandoned},
        )
