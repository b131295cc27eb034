"""One run: for every watched user, read → select → convert → deliver → commit.

The checkpoint moves only after every destination has accepted the lines. Before a batch is
handed to the destinations, its log_ids are written into the checkpoint as a pending intent; if
the run dies between delivery and commit, the next run redelivers exactly that batch in recovery
mode, and the destinations skip what they already hold. That is what makes a crash cost neither
a lost nor a repeated event.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from .auth0_client import Auth0Client
from .batching import batch_id_for
from .checkpoint_store import CheckpointStore
from .config import Settings
from .convert import ConvertContext, event_line, gap_line
from .cursor import Cursor, Gap, LogEvent, Pending, iso_ms
from .exceptions import ForwarderError
from .fetch import Chunk, read_user
from .records import DeliveryReport, OutputLine

logger = logging.getLogger(__name__)


class Sink(Protocol):
    name: str

    def deliver(
        self, user_id: str, lines: Sequence[OutputLine], *, batch_id: str, recovering: bool = False
    ) -> DeliveryReport: ...


@dataclass
class UserReport:
    user_id: str
    fetched: int = 0
    forwarded: int = 0
    delivered: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    late: int = 0
    max_lateness_ms: int = 0
    malformed: int = 0
    restamped: int = 0
    oversized: int = 0
    recovered: int = 0
    gaps: list[Gap] = field(default_factory=list)
    newest_forwarded_ms: int | None = None
    deferred: bool = False  # stopped by the time budget; resumes next run
    backlog: bool = False
    error: str | None = None
    cursor: Cursor | None = None

    def as_dict(self) -> dict[str, Any]:
        cursor = self.cursor
        return {
            "user_id": self.user_id,
            "fetched": self.fetched,
            "forwarded": self.forwarded,
            "delivered": dict(self.delivered),
            "duplicates_dropped": self.duplicates,
            "late_events": self.late,
            "malformed_rejected": self.malformed,
            "restamped": self.restamped,
            "oversized": self.oversized,
            "recovered": self.recovered,
            "gaps": [
                {"from": iso_ms(g.from_ms), "to": iso_ms(g.to_ms), "reason": g.reason}
                for g in self.gaps
            ],
            "deferred": self.deferred,
            "backlog": self.backlog,
            "error": self.error,
            "checkpoint": cursor.summary() if cursor else None,
        }


@dataclass
class RunReport:
    users: list[UserReport]
    api_calls: int = 0
    rate_limited: int = 0
    retries: int = 0
    token_requests: int = 0
    pacing_wait_s: float = 0.0

    @property
    def failed(self) -> list[UserReport]:
        return [u for u in self.users if u.error is not None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "users": [u.as_dict() for u in self.users],
            "api_calls": self.api_calls,
            "rate_limited": self.rate_limited,
            "retries": self.retries,
            "token_requests": self.token_requests,
            "forwarded": sum(u.forwarded for u in self.users),
            "gaps": sum(len(u.gaps) for u in self.users),
            "failed_users": [u.user_id for u in self.failed],
        }


class Forwarder:
    def __init__(
        self,
        *,
        settings: Settings,
        client: Auth0Client,
        store: CheckpointStore,
        sinks: Sequence[Sink],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._client = client
        self._store = store
        self._sinks = list(sinks)
        self._clock = clock

    def run(self, user_ids: Sequence[str], *, remaining_ms: Callable[[], int]) -> RunReport:
        stored = self._store.load(user_ids)
        # Start at a random user, so that when the time budget cannot cover every user, the same
        # ones are not always the ones left for later.
        offset = random.randrange(len(user_ids)) if user_ids else 0
        ordered = [*user_ids[offset:], *user_ids[:offset]]
        out_of_time = threading.Event()

        def work(user_id: str) -> UserReport:
            report = UserReport(user_id)
            if out_of_time.is_set() or remaining_ms() < self._settings.time_margin_ms:
                out_of_time.set()
                report.deferred = True
                return report
            record = stored.get(user_id)
            try:
                self._forward_user(
                    report,
                    record.state if record else None,
                    record.version if record else None,
                    remaining_ms,
                )
            except (ForwarderError, ValueError) as exc:
                # One user's failure must not cost the others their run.
                report.error = f"{type(exc).__name__}: {exc}"
                logger.error(
                    "User not forwarded", extra={"user_id": user_id, "error": report.error}
                )
            except Exception as exc:
                # Unexpected: keep the type only (a library's message is not ours to vouch for),
                # and still let the other users, the metrics and the report complete.
                report.error = f"unexpected {type(exc).__name__}"
                logger.exception("User not forwarded", extra={"user_id": user_id})
            if report.deferred:
                out_of_time.set()
            return report

        self._client.reset_stats()
        with ThreadPoolExecutor(max_workers=self._settings.max_concurrent_users) as pool:
            reports = list(pool.map(work, ordered))
        stats = self._client.reset_stats()
        return RunReport(
            users=reports,
            api_calls=stats.api_calls,
            rate_limited=stats.rate_limited,
            retries=stats.retries,
            token_requests=stats.token_requests,
        )

    # -- one user --------------------------------------------------------------------------------

    def _forward_user(
        self,
        report: UserReport,
        state: dict[str, Any] | None,
        version: int | None,
        remaining_ms: Callable[[], int],
    ) -> None:
        now_ms = self._now_ms()
        user_id = report.user_id
        if state is None:
            # A new user's history is read oldest first by search from the start: with more than
            # 1,000 retained events, ten newest-first pages would be read only to be thrown away.
            # Without the read:logs scope the read falls back to newest first.
            cursor = Cursor.fresh(self._settings.start_from.floor_ms(now_ms)).with_backlog(True)
        else:
            cursor = Cursor.from_state(state)
        report.cursor = cursor
        committed = _Committer(self._store, user_id, cursor, version)
        if state is None:
            # Fix the starting point at first sight: with START_FROM=now, a user who stays quiet
            # must not see "now" move forward with every run.
            committed.commit(cursor)

        def out_of_time() -> bool:
            return remaining_ms() < self._settings.time_margin_ms

        chunks: Iterator[Chunk] = read_user(
            self._client,
            user_id,
            cursor,
            now_ms=now_ms,
            min_retention_ms=self._settings.log_retention_ms,
            out_of_time=out_of_time,
        )
        complete = False
        while not complete:
            if out_of_time():
                break
            chunk = next(chunks, None)
            if chunk is None:
                break
            self._forward_chunk(report, committed, chunk, read_started_ms=now_ms)
            complete = chunk.complete
        # The read stopped before the newest events (here, or inside fetch between pages).
        report.deferred = not complete and out_of_time()
        report.cursor = committed.cursor
        report.backlog = committed.cursor.backlog
        if committed.cursor.at_capacity:
            logger.warning(
                "Overlap window narrowed: too many recent events to remember",
                extra={"user_id": user_id, "floor": iso_ms(committed.cursor.floor_ms)},
            )

    def _forward_chunk(
        self, report: UserReport, committed: _Committer, chunk: Chunk, *, read_started_ms: int
    ) -> None:
        user_id = report.user_id
        report.fetched += chunk.returned
        if chunk.rejected:
            report.malformed += len(chunk.rejected)
            logger.warning(
                "Malformed events rejected",
                extra={
                    "user_id": user_id,
                    "count": len(chunk.rejected),
                    "reasons": sorted(set(chunk.rejected)),
                },
            )
        cursor = committed.cursor
        selection = cursor.select(chunk.events)
        report.duplicates += selection.duplicates
        report.late += selection.late
        report.max_lateness_ms = max(report.max_lateness_ms, selection.max_lateness_ms)

        new = selection.new
        # Batches a crashed run handed to the destinations but never committed: redeliver what
        # this chunk holds of each, in recovery mode and under its own batch id. The rest of a
        # batch stays pending for the chunks that hold it, beside any new intent.
        for pending in cursor.pending:
            recovering = [e for e in new if e.log_id in pending.log_ids]
            new = [e for e in new if e.log_id not in pending.log_ids]
            left = pending.log_ids - {e.log_id for e in recovering}
            if left and chunk.complete:
                # Auth0 no longer returns them (expired?): they may or may not have been
                # delivered before the crash. Say so rather than keep waiting for them.
                logger.warning(
                    "Pending events from an interrupted run are gone from Auth0",
                    extra={"user_id": user_id, "count": len(left)},
                )
                left = frozenset()
            if recovering or left != pending.log_ids:
                self._deliver(
                    report,
                    committed,
                    recovering,
                    chunk,
                    pending.batch_id,
                    recovering=True,
                    left=left,
                )
                report.recovered += len(recovering)

        gap_lines: list[OutputLine] = []
        if chunk.gap is not None:
            report.gaps.append(chunk.gap)
            gap_lines.append(
                gap_line(
                    chunk.gap, tenant=self._settings.auth0_domain, detected_at_ms=self._now_ms()
                )
            )
            logger.warning(
                "Gap: events could not be forwarded",
                extra={
                    "user_id": user_id,
                    "from": iso_ms(chunk.gap.from_ms),
                    "to": iso_ms(chunk.gap.to_ms),
                    "reason": chunk.gap.reason,
                },
            )

        if new or gap_lines:
            ids = [e.log_id for e in new]
            batch_id = batch_id_for(
                ids or [f"gap:{user_id}:{chunk.gap.to_ms if chunk.gap else ''}"]
            )
            self._deliver(
                report, committed, new, chunk, batch_id, recovering=False, extra=gap_lines
            )

        after = committed.cursor.with_backlog(not chunk.complete)
        if chunk.complete:
            after = after.after_complete_read(
                read_started_ms, overlap_ms=self._settings.overlap_window_ms
            )
        if chunk.gap is not None:
            after = after.after_gap(chunk.gap)
        if after != committed.cursor:
            committed.commit(after)

    def _deliver(
        self,
        report: UserReport,
        committed: _Committer,
        events: list[LogEvent],
        chunk: Chunk,
        batch_id: str,
        *,
        recovering: bool,
        left: frozenset[str] = frozenset(),
        extra: Sequence[OutputLine] = (),
    ) -> None:
        """Deliver `events` (and `extra` lines) to every sink, then commit; `left`: ids of the
        batch still pending afterwards (recovery of a batch spread over several chunks)."""
        context = ConvertContext(
            tenant=self._settings.auth0_domain,
            watched_user_id=report.user_id,
            forwarded_at_ms=self._now_ms(),
            source=chunk.source,
        )
        lines = [event_line(e, context) for e in events]
        lines.extend(extra)
        lines.sort(key=lambda line: line.timestamp_ms)
        if not recovering:
            # The intent goes first: a crash after this point is recovered, not repeated.
            committed.commit(
                committed.cursor.with_pending(
                    Pending(batch_id, frozenset(e.log_id for e in events))
                )
            )
        for sink in self._sinks if lines else ():
            outcome = sink.deliver(report.user_id, lines, batch_id=batch_id, recovering=recovering)
            report.delivered[sink.name] = report.delivered.get(sink.name, 0) + outcome.accepted
            report.restamped += outcome.restamped
            report.oversized += outcome.oversized
        after = committed.cursor.advance(events, overlap_ms=self._settings.overlap_window_ms)
        committed.commit(after.with_pending(Pending(batch_id, left)))
        report.forwarded += len(events)
        if events:
            newest = events[-1].date_ms
            report.newest_forwarded_ms = max(report.newest_forwarded_ms or newest, newest)

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


class _Committer:
    """The user's checkpoint as last written, and conditional writes that move it."""

    def __init__(
        self, store: CheckpointStore, user_id: str, cursor: Cursor, version: int | None
    ) -> None:
        self._store = store
        self._user_id = user_id
        self.cursor = cursor
        self._version = version

    def commit(self, cursor: Cursor) -> None:
        # A CheckpointConflict (another run got there first) propagates: the run's per-user
        # handler logs it once and stops this user.
        self._version = self._store.save(
            self._user_id,
            cursor.to_state(),
            expected_version=self._version,
            summary=cursor.summary(),
        )
        self.cursor = cursor
