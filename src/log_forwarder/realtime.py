"""The real-time function: Auth0's log stream, pushed through Amazon EventBridge and an SQS
queue, delivered in seconds; the scheduled runs reconcile whatever it missed.

    Auth0 log stream ─► partner event bus ─► rule (the watched users, when WATCHED_USER_IDS
                                              is short enough for the event pattern)
                                              └─► RealtimeQueue ─► this function, in batches
    (or one EventBridge event invoking it directly: the rule's target before the queue)

Auth0's stream is at least once, unordered, and loses events (a pending source, a disabled
stream, a paused one past the retention window). So this path decides nothing alone: each
watched user's events of a batch go through the user's session as one chunk with a
RealtimeSpan, against the checkpoint the scheduled reads use (dedupe by log_id, conditional
writes, the same destinations and detections), and are recorded in the pushed-events table
(pushed.py), not in the checkpoint item. The reads then confirm them, or deliver what the stream
dropped (ReconciledEvents). A user another invocation holds is waited for (Forwarder.push); one
still busy, whose destination fails, or whose pending batch this push holds only part of goes
back to the queue (batchItemFailures), and the push that brings a pending batch back whole
redelivers it; only a user with no checkpoint yet is left to the next scheduled run.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from . import observability
from .chunk import Chunk, RealtimeSpan
from .config import Settings
from .events import LogEvent, Malformed, parse_page
from .forwarder import FINISH_RESERVE_MS
from .report import RunReport, UserReport
from .requeue import HandedBack
from .retry import Deadline
from .runtime import Runtime, build_runtime
from .watch_list import RecentWatchList

__all__ = ["Pushed", "lambda_handler", "pushed_entries", "reset_runtime"]

REALTIME_SOURCE = "log_stream_push"
# The watch list table is scanned at most this often per container (WATCHED_USER_IDS costs
# nothing): a user added to it is forwarded in real time within a minute, and by the reads
# from their next run.
WATCH_LIST_TTL_S = 60.0


@dataclass(frozen=True)
class _Container:
    """What a warm container keeps: the runtime, and who is watched (asked at most every
    WATCH_LIST_TTL_S)."""

    runtime: Runtime
    watched: RecentWatchList

    @classmethod
    def of(cls, runtime: Runtime) -> _Container:
        watched = RecentWatchList(
            runtime.settings, runtime.watch_list, runtime.store, ttl_s=WATCH_LIST_TTL_S
        )
        return cls(runtime, watched)


_container = observability.Lazy(
    lambda clock: _Container.of(build_runtime(Settings.from_env(), clock=clock))
)


def reset_runtime(
    *, clock: Callable[[], float] = time.time, runtime: Runtime | None = None
) -> None:
    """Forget the container's runtime and watch list (observability.Lazy); with `runtime`, use
    that one (built by build_runtime with overrides: tests and the bench)."""
    _container.reset(clock=clock, built=_Container.of(runtime) if runtime is not None else None)


def pushed_entries(event: Mapping[str, Any]) -> Iterator[object]:
    """The Auth0 log entries an invocation carries (see `pushed_messages`)."""
    return (entry for _, entry in pushed_messages(event))


def pushed_messages(event: Mapping[str, Any]) -> Iterator[tuple[str | None, object]]:
    """(SQS message id, Auth0 log entry) of each event an invocation carries: an SQS batch of
    the queue the rule feeds (realtime queue), whose bodies are EventBridge events of Auth0's
    stream, or one such event invoking the function directly (no message id: the shape of the
    rule's Lambda target before the queue, still taken during an upgrade). An event's `detail`
    is `{"log_id", "data": <the log event>}`; a `detail` that is the log event itself is taken
    too. The log event's own `log_id` is its id; one that has none takes the envelope's
    `detail.log_id` (Auth0 names the event there too; nothing says `data` always repeats it)."""
    records = event.get("Records")
    if isinstance(records, list) and records:
        events = [(_message_id(record), _body(record)) for record in records]
    else:
        events = [(None, event)]
    for message_id, pushed in events:
        detail = pushed.get("detail") if isinstance(pushed, Mapping) else None
        data = detail.get("data") if isinstance(detail, Mapping) else None
        if not isinstance(data, Mapping):
            yield message_id, detail
            continue
        log_id = detail.get("log_id") if isinstance(detail, Mapping) else None
        if "log_id" not in data and isinstance(log_id, str) and log_id:
            data = {**data, "log_id": log_id}
        yield message_id, data


def _message_id(record: object) -> str | None:
    message_id = record.get("messageId") if isinstance(record, Mapping) else None
    return message_id if isinstance(message_id, str) else None


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
    # Those entries' events, for the tenant-wide rules (DETECTIONS_TENANT_WIDE); not forwarded.
    others: list[LogEvent] = field(default_factory=list)
    # The SQS messages that carried each user's entries: handed back to the queue when the
    # user could not be delivered now but can be soon (busy, a destination failing).
    messages: dict[str, list[str]] = field(default_factory=dict)
    # The SQS messages of users nobody watches: handed back when the tenant-wide rules failed.
    others_messages: list[str] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        entries: Iterable[object],
        watched: frozenset[str],
        message_ids: Iterable[str | None] = (),
    ) -> Pushed:
        ids = iter(message_ids)
        mine: dict[str, tuple[list[LogEvent], list[Malformed]]] = {}
        pushed = cls()
        for entry in entries:
            message_id = next(ids, None)
            page = parse_page([entry])
            user = page.events[0].user_id if page.events else page.malformed[0].owner
            if user not in watched:
                pushed.ignored += 1
                pushed.others += page.events
                if message_id is not None and page.events:
                    pushed.others_messages.append(message_id)
                continue
            events, malformed = mine.setdefault(user, ([], []))
            events += page.events
            malformed += page.malformed
            if message_id is not None:
                pushed.messages.setdefault(user, []).append(message_id)
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
    container = _container.get()
    runtime, watched = container.runtime, container.watched.users()
    messages = list(pushed_messages(event))
    pushed = Pushed.of((entry for _, entry in messages), watched, (i for i, _ in messages))
    report = runtime.forwarder.push(
        pushed.chunks, remaining_ms=context.get_remaining_time_in_millis, others=pushed.others
    )
    queued = any(message_id is not None for message_id, _ in messages)
    tenant_wide = report.tenant_wide
    tenant_wide_failed = tenant_wide.failure if tenant_wide is not None else None
    summary = _publish(report, pushed, queued=queued)
    observability.logger().info("Push delivered", extra={"summary": summary})
    if not queued:
        # Invoked directly (an event of the rule's old Lambda target): what failed is left to
        # Lambda's retry of the invocation, then to the next scheduled run.
        report.raise_failures("not delivered in real time")
        if tenant_wide_failed is not None:
            raise tenant_wide_failed
        return summary
    if report.bugs:
        raise report.bugs[0]  # the whole batch comes back: delivery is idempotent by log_id
    # Lambda's SQS event source deletes every other message of the batch; these come back once
    # their visibility ends (after maxReceiveCount receives, to the dead-letter queue).
    retried_users = [u for u in report.users if _retried(u)]
    retried = [m for u in retried_users for m in pushed.messages.get(u.user_id, ())]
    if tenant_wide_failed is not None:
        retried += pushed.others_messages
    soon = [m for u in retried_users if not u.error for m in pushed.messages.get(u.user_id, ())]
    if soon and runtime.requeue is not None:
        handed = _handed_back(event, set(soon))
        # The time every other wait keeps for returning and publishing the metrics, kept.
        deadline = Deadline(lambda: context.get_remaining_time_in_millis() - FINISH_RESERVE_MS)
        summary["RealtimeRetriedSoon"] = runtime.requeue.soon(handed, deadline)
    return {**summary, "batchItemFailures": [{"itemIdentifier": m} for m in retried]}


def _handed_back(event: Mapping[str, Any], message_ids: set[str]) -> list[HandedBack]:
    """The receipt handles (and receive counts) of the SQS messages `message_ids` names."""
    handed = []
    for record in event.get("Records") or ():
        if not isinstance(record, Mapping) or _message_id(record) not in message_ids:
            continue
        handle = record.get("receiptHandle")
        attributes = record.get("attributes")
        receives = (
            attributes.get("ApproximateReceiveCount") if isinstance(attributes, Mapping) else None
        )
        if isinstance(handle, str) and handle:
            count = int(receives) if isinstance(receives, str) and receives.isdigit() else 1
            handed.append(HandedBack(handle, count))
    return handed


def _publish(report: RunReport, pushed: Pushed, *, queued: bool) -> dict[str, Any]:
    """The invocation's metrics; returns them as its summary."""
    left = [u for u in report.users if not _taken(u) and not (queued and _retried(u))]
    retried = [u for u in report.users if queued and _retried(u)]
    counts = {
        "RealtimeEvents": sum(u.forwarded for u in report.users),
        "RealtimeDuplicates": sum(u.duplicates for u in report.users),
        "RealtimeIgnored": pushed.ignored,
        # Pushed for a watched user this invocation leaves to the reads: no checkpoint yet (or,
        # invoked directly, a user still busy, a destination failing, a pending batch).
        "RealtimeLeftToReads": sum(pushed.chunks[u.user_id].returned for u in left),
        # Handed back to the queue: the user was still busy after the waits, a destination
        # failed, or a pending batch must go whole first; the queue delivers them again soon.
        "RealtimeRetried": sum(pushed.chunks[u.user_id].returned for u in retried),
        "Quarantined": sum(u.quarantined for u in report.users),
        "SharedBatchesForgotten": sum(u.shared_forgotten for u in report.users),
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
        # The tenant-wide rules' (DETECTIONS_TENANT_WIDE) findings on users nobody watches, as
        # the scheduled run's summary names them; None when they did not run.
        "tenant_wide_findings": dict(report.tenant_wide.findings) if report.tenant_wide else None,
        "latency_s": sorted(round(s, 3) for s in latencies),
        "users": [u.as_dict() for u in report.users],
    }


def _retried(user: UserReport) -> bool:
    """Whether the user's messages go back to the queue: it could not be delivered now but
    can be soon (still busy after the waits, a destination failing, out of time, a pending
    batch this push could not redeliver whole)."""
    pending = user.cursor is not None and bool(user.cursor.outbox)
    return bool(user.busy or user.error or user.deferred or pending)


def _taken(user: UserReport) -> bool:
    """Whether the push took the user's events (delivered, or known already): not when it had
    no checkpoint, could not go on, or left a pending batch."""
    cursor = user.cursor
    failed = user.error or user.bug or user.busy or user.deferred
    return not failed and cursor is not None and not cursor.outbox


# An SQS batch has no id of its own: its first message's stands for it (each message's id is
# in the answer's batchItemFailures); an EventBridge event invoking the function directly, its id.
SQS_BATCH_OR_EVENT = f"Records[0].messageId || {correlation_paths.EVENT_BRIDGE}"

_instrumented = observability.instrumented(_handle, correlation_id_path=SQS_BATCH_OR_EVENT)
