"""The real-time function: Auth0's log stream, pushed through Amazon EventBridge, delivered in
seconds; the scheduled runs reconcile whatever it missed.

    Auth0 log stream ─► partner event bus ─► rule (the watched users, when WATCHED_USER_IDS
                                              is short enough for the event pattern)
                                              └─► this function, an event per invocation
    (or an SQS batch whose bodies are such events: the local path, tests and `sam local`)

Auth0's stream is at least once, unordered, and drops what it sends while it is paused. So this
path decides nothing alone: each watched user's events go through the user's session with a
RealtimeSpan, against the checkpoint the scheduled reads use (dedupe by log_id, conditional
writes, the same destinations and detections), and are remembered ahead of the reads
(cursor.ReadPosition.ahead). The reads then confirm them, or deliver what the stream dropped
(ReconciledEvents). What this function cannot deliver (a user with no checkpoint yet, one another
run holds, a destination that fails) is left to the next scheduled run, which reads it anyway.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from . import observability
from .app import watched_users
from .chunk import Chunk, RealtimeSpan
from .config import Settings
from .events import LogEvent, Malformed, parse_page
from .report import RunReport, UserReport
from .runtime import Runtime, build_runtime

__all__ = ["Pushed", "lambda_handler", "pushed_entries", "reset_runtime"]

REALTIME_SOURCE = "log_stream_push"
# The watch list table is scanned at most this often per container (WATCHED_USER_IDS costs
# nothing): a user added to it is forwarded in real time within a minute, and by the reads
# from their next run.
WATCH_LIST_TTL_S = 60.0

_runtime: Runtime | None = None
_runtime_clock: Callable[[], float] = time.time
_watch_list: tuple[float, frozenset[str]] | None = None
_lock = threading.Lock()


def reset_runtime(*, clock: Callable[[], float] = time.time) -> None:
    """Forget the container's runtime and watch list (tests and local runs; see app.py)."""
    global _runtime, _runtime_clock, _watch_list
    with _lock:
        _runtime, _runtime_clock, _watch_list = None, clock, None


def _get_runtime() -> tuple[Runtime, frozenset[str]]:
    global _runtime, _watch_list
    with _lock:
        if _runtime is None:
            _runtime = build_runtime(Settings.from_env(), clock=_runtime_clock)
        now = time.monotonic()
        if _watch_list is None or now >= _watch_list[0]:
            _watch_list = (now + WATCH_LIST_TTL_S, frozenset(watched_users(_runtime)))
        return _runtime, _watch_list[1]


def pushed_entries(event: Mapping[str, Any]) -> Iterator[object]:
    """The Auth0 log entries an invocation carries: one EventBridge event of Auth0's stream,
    whose `detail` is `{"log_id", "data": <the log event>}` (a `detail` that is the log event
    itself is taken too), or an SQS batch whose bodies are such events."""
    records = event.get("Records")
    if isinstance(records, list) and records:
        events = [_body(record) for record in records]
    else:
        events = [event]
    for pushed in events:
        detail = pushed.get("detail") if isinstance(pushed, Mapping) else None
        data = detail.get("data") if isinstance(detail, Mapping) else None
        yield data if isinstance(data, Mapping) else detail


def _body(record: object) -> object:
    body = record.get("body") if isinstance(record, Mapping) else None
    try:
        return json.loads(body) if isinstance(body, str) else None
    except (ValueError, RecursionError):
        return None  # not an event: counted as ignored


@dataclass
class Pushed:
    """What one invocation was pushed, by watched user; and what it ignored."""

    chunks: dict[str, Chunk] = field(default_factory=dict)
    ignored: int = 0  # entries of users not watched, or of no user

    @classmethod
    def of(cls, entries: Iterator[object], watched: frozenset[str]) -> Pushed:
        page = parse_page(entries)
        mine: dict[str, tuple[list[LogEvent], list[Malformed]]] = {}
        pushed = cls()
        for event in page.events:
            if event.user_id in watched:
                mine.setdefault(event.user_id, ([], []))[0].append(event)
            else:
                pushed.ignored += 1
        for entry in page.malformed:
            if entry.owner in watched:
                mine.setdefault(entry.owner, ([], []))[1].append(entry)
            else:
                pushed.ignored += 1
        for user, (events, malformed) in mine.items():
            pushed.chunks[user] = Chunk(
                events,
                REALTIME_SOURCE,
                RealtimeSpan(),
                returned=len(events) + len(malformed),
                malformed=malformed,
            )
        return pushed


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result: dict[str, Any] = _instrumented(event, context)
    return result


def _handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime, watched = _get_runtime()
    pushed = Pushed.of(pushed_entries(event), watched)
    report = runtime.forwarder.push(
        pushed.chunks, remaining_ms=context.get_remaining_time_in_millis
    )
    summary = _publish(report, pushed)
    observability.logger().info("Push delivered", extra={"summary": summary})
    # What failed is left to the next scheduled run, which reads these users anyway.
    report.raise_failures("not delivered in real time")
    return summary


def _publish(report: RunReport, pushed: Pushed) -> dict[str, Any]:
    """The invocation's metrics; returns them as its summary."""
    left = [u for u in report.users if not _taken(u)]
    counts = {
        "RealtimeEvents": sum(u.forwarded for u in report.users),
        "RealtimeDuplicates": sum(u.duplicates for u in report.users),
        "RealtimeIgnored": pushed.ignored,
        # Pushed for a watched user this invocation could not deliver (no checkpoint yet,
        # another run holds it, a destination failed): the reads deliver them.
        "RealtimeLeftToReads": sum(pushed.chunks[u.user_id].returned for u in left),
        "Quarantined": sum(u.quarantined for u in report.users),
    }
    metrics = observability.metrics()
    for name, value in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    latencies = [
        max(0.0, (report.finished_ms - date_ms) / 1000)
        for user in report.users
        for date_ms in user.forwarded_dates or ()
    ]
    for seconds in latencies:
        # One value each: CloudWatch keeps them as a distribution (p50, p95 in the dashboard).
        metrics.add_metric(name="RealtimeLatencySeconds", unit=MetricUnit.Seconds, value=seconds)
    findings = sum(sum(u.findings.values()) for u in report.users)
    return {
        **counts,
        "forwarded": counts["RealtimeEvents"],
        "findings": findings,
        "latency_s": sorted(round(s, 3) for s in latencies),
        "users": [u.as_dict() for u in report.users],
    }


def _taken(user: UserReport) -> bool:
    """Whether the push took the user's events (delivered, or known already): not when it had
    no checkpoint, could not go on, or left them to the reads (a pending batch, no room)."""
    cursor = user.cursor
    failed = user.error or user.bug or user.busy or user.deferred
    return not failed and cursor is not None and not cursor.outbox and not cursor.position.full


_instrumented = observability.instrumented(
    _handle, correlation_id_path=correlation_paths.EVENT_BRIDGE
)
