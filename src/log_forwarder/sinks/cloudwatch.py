"""CloudWatch Logs: one stream per watched user, each event stamped with its Auth0 date.

PutLogEvents is not idempotent: sent twice, its events are stored twice. So it is never resent
blindly. When the outcome of a put is unknown (its answer lost, a 5xx), the stream is read over
the batch's span first and only what it lacks is sent again. botocore's own retries must be off
for the client given here (`max_attempts` 1), or they would resend behind this sink's back.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from botocore.exceptions import ClientError

from log_forwarder.aws_errors import (
    AWS_CLIENT_CONFIG,
    AWS_ERRORS,
    ClientFactory,
    call_aws,
    error_code,
    is_transient,
    outcome_unknown,
)
from log_forwarder.convert import record_key
from log_forwarder.exceptions import DeliveryError
from log_forwarder.records import Delivery, DeliveryReport, OutputLine
from log_forwarder.retry import SINK_RETRY, Attempts, Deadline, RetryPolicy, Settled, retry_call
from log_forwarder.sinks.batching import (
    CW_MAX_EVENT_BYTES,
    cloudwatch_batches,
    replace_oversized,
    stream_name_for,
)

if TYPE_CHECKING:
    from mypy_boto3_logs.client import CloudWatchLogsClient
    from mypy_boto3_logs.type_defs import (
        GetLogEventsResponseTypeDef,
        InputLogEventTypeDef,
        RejectedLogEventsInfoTypeDef,
    )

logger = logging.getLogger(__name__)
T = TypeVar("T")

_HOUR_MS = 3600 * 1000
# CloudWatch refuses events older than 14 days or newer than 2 hours; stay an hour inside both
# bounds so that clock skew and the time a batch spends in flight cannot push an event out.
_SAFETY_MARGIN_MS = _HOUR_MS
CW_MAX_AGE_MS = 14 * 24 * _HOUR_MS - _SAFETY_MARGIN_MS
CW_MAX_FUTURE_MS = 2 * _HOUR_MS - _SAFETY_MARGIN_MS


class CloudWatchSink:
    """Writes each user's lines to their own stream in one log group."""

    name = "cloudwatch"

    # Streams are created once per container, not once per run: CreateLogStream is limited to
    # 50 TPS per account. Keyed by endpoint too, so clients aimed at different servers (tests,
    # local runs) do not share entries.
    _created_streams: ClassVar[set[tuple[str, str, str, str]]] = set()

    def __init__(
        self,
        log_group: str,
        client: CloudWatchLogsClient,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        retry: RetryPolicy = SINK_RETRY,
    ) -> None:
        self.log_group = log_group
        self._client = client
        self._clock = clock
        self._sleep = sleep
        self._retry_policy = retry

    def deliver(self, delivery: Delivery) -> DeliveryReport:
        if not delivery.lines:
            return DeliveryReport(destination=self.name, accepted=0)
        stream = stream_name_for(delivery.user_id)
        deadline = delivery.deadline
        lines, oversized = self._fit(stream, delivery)
        self._ensure_stream(stream, deadline)
        already_present = 0
        if delivery.redelivery:
            lines, already_present = self._drop_present(stream, lines, deadline, delivery.since_ms)
        stamped, moved = self._stamp_for_window(lines)
        rejected: list[OutputLine] = []
        for batch in cloudwatch_batches(stamped):
            rejected.extend(self._put(stream, batch, deadline))
        if rejected:
            self._put_again_stamped_now(stream, rejected, delivery)
            moved.update(id(item) for item in rejected)
        return DeliveryReport(
            destination=self.name,
            accepted=len(stamped),
            restamped=len(moved),
            oversized=oversized,
            already_present=already_present,
        )

    def _fit(self, stream: str, delivery: Delivery) -> tuple[list[OutputLine], int]:
        """The lines in timestamp order, those too large for CloudWatch replaced by markers."""
        fitting, oversized_ids = replace_oversized(
            sorted(delivery.lines, key=lambda line: line.timestamp_ms), CW_MAX_EVENT_BYTES
        )
        if oversized_ids:
            logger.warning(
                "Replaced events too large for CloudWatch Logs with marker records",
                extra={
                    "log_group": self.log_group,
                    "stream": stream,
                    "batch_id": delivery.batch_id,
                    "oversized": len(oversized_ids),
                    "log_ids": oversized_ids,
                },
            )
        return fitting, len(oversized_ids)

    def _stamp_for_window(self, lines: list[OutputLine]) -> tuple[list[OutputLine], set[int]]:
        """Lines CloudWatch would refuse for their age are stamped with the delivery time.

        Returns the lines in timestamp order and the id() of those restamped.
        """
        now_ms = int(self._clock() * 1000)
        stamped: list[OutputLine] = []
        moved: set[int] = set()
        for item in lines:
            if not now_ms - CW_MAX_AGE_MS <= item.timestamp_ms <= now_ms + CW_MAX_FUTURE_MS:
                # The event keeps its Auth0 `date` in the line; only the CloudWatch timestamp moves.
                item = replace(item, timestamp_ms=now_ms)
                moved.add(id(item))
            stamped.append(item)
        stamped.sort(key=lambda item: item.timestamp_ms)
        return stamped, moved

    def _put_again_stamped_now(
        self, stream: str, rejected: list[OutputLine], delivery: Delivery
    ) -> None:
        """Rejected for age (or for the group's retention): write them once more, stamped now."""
        retry_ms = int(self._clock() * 1000)
        again = [replace(item, timestamp_ms=retry_ms) for item in rejected]
        for batch in cloudwatch_batches(again):
            still = self._put(stream, batch, delivery.deadline)
            if still:
                raise DeliveryError(
                    f"CloudWatch Logs rejected {len(still)} event(s) in log group "
                    f"{self.log_group!r}, stream {stream!r} even when stamped with the "
                    "current time; check the clock and the group's retention"
                )
        logger.info(
            "Re-put events CloudWatch rejected for their timestamp",
            extra={"stream": stream, "batch_id": delivery.batch_id, "count": len(rejected)},
        )

    def _ensure_stream(self, stream: str, deadline: Deadline) -> None:
        key = self._cache_key(stream)
        if key in self._created_streams:
            return

        def create() -> None:
            try:
                self._client.create_log_stream(logGroupName=self.log_group, logStreamName=stream)
            except ClientError as error:
                if error_code(error) != "ResourceAlreadyExistsException":
                    raise

        self._call("CreateLogStream", stream, create, deadline)
        self._created_streams.add(key)

    def _forget_stream(self, stream: str) -> None:
        """The stream was deleted after this container created it: create it before the next
        put. Without this a warm container would keep failing on it (and every destination
        after it would wait) until a new process started."""
        self._created_streams.discard(self._cache_key(stream))

    def _cache_key(self, stream: str) -> tuple[str, str, str, str]:
        meta = self._client.meta
        return (str(meta.endpoint_url), str(meta.region_name), self.log_group, stream)

    def _put(self, stream: str, batch: list[OutputLine], deadline: Deadline) -> list[OutputLine]:
        """PutLogEvents for one batch; returns the events rejected for their timestamp.

        A put whose outcome is unknown is treated like an interrupted run: before the next
        attempt, the stream is read and what it already holds is left out.
        """
        unsent = batch

        def put() -> list[OutputLine]:
            info = self._send(stream, unsent, deadline)
            if not info:
                return []
            indices = rejected_indices(info, len(unsent))
            logger.warning(
                "CloudWatch Logs rejected events for their timestamp",
                extra={"stream": stream, "rejected": len(indices), "info": dict(info)},
            )
            return [unsent[index] for index in indices]

        def resume(error: Exception) -> Settled[list[OutputLine]] | None:
            nonlocal unsent
            if not outcome_unknown(error):
                return None
            logger.warning(
                "PutLogEvents outcome unknown; reading the stream before sending again",
                extra={"stream": stream, "error": error_code(error), "events": len(unsent)},
            )
            unsent, _ = self._drop_present(stream, unsent, deadline)
            return None if unsent else Settled([])

        return retry_call(
            put,
            attempts=Attempts(self._retry_policy, sleep=self._sleep, deadline=deadline),
            errors=AWS_ERRORS,
            retryable=is_transient,
            fail=lambda error, made: self._failure("PutLogEvents", stream, error, made),
            resume=resume,
        )

    def _send(
        self, stream: str, batch: list[OutputLine], deadline: Deadline
    ) -> RejectedLogEventsInfoTypeDef | None:
        events: list[InputLogEventTypeDef] = [
            {"timestamp": item.timestamp_ms, "message": item.line} for item in batch
        ]
        for _ in range(2):
            try:
                response = self._client.put_log_events(
                    logGroupName=self.log_group, logStreamName=stream, logEvents=events
                )
                return response.get("rejectedLogEventsInfo")
            except ClientError as error:
                if error_code(error) != "ResourceNotFoundException":
                    raise
                self._forget_stream(stream)
                self._ensure_stream(stream, deadline)
        raise DeliveryError(
            f"CloudWatch Logs stream {stream!r} in log group {self.log_group!r} disappeared "
            "twice while it was being written"
        )

    def _drop_present(
        self,
        stream: str,
        lines: list[OutputLine],
        deadline: Deadline,
        since_ms: int | None = None,
    ) -> tuple[list[OutputLine], int]:
        """Redelivery: leave out lines an interrupted earlier run already wrote to the stream.

        Lines are matched by key (an event's log_id, a finding's id), others by their whole text.
        The window runs to now, not just to the newest line, because an earlier run may have
        restamped old events with its own (later) delivery time; and from `since_ms` (when that
        run wrote its intent) if earlier than the oldest line, because it may have restamped
        events dated too far ahead with its own (earlier) delivery time.
        """
        start_ms = (
            lines[0].timestamp_ms if since_ms is None else min(lines[0].timestamp_ms, since_ms)
        )
        end_ms = max(lines[-1].timestamp_ms, int(self._clock() * 1000) + CW_MAX_FUTURE_MS) + 1
        present_ids: set[str] = set()
        present_digests: set[str] = set()
        for message in self._read_stream(stream, start_ms, end_ms, deadline):
            key = record_key(message)
            if key is not None:
                present_ids.add(key)
            present_digests.add(_digest(message))
        missing = [
            item
            for item in lines
            if not (
                (item.key is not None and item.key in present_ids)
                or _digest(item.line) in present_digests
            )
        ]
        skipped = len(lines) - len(missing)
        if skipped:
            logger.info(
                "Redelivery: skipping events already in the stream",
                extra={"stream": stream, "already_present": skipped, "missing": len(missing)},
            )
        return missing, skipped

    def _read_stream(
        self, stream: str, start_ms: int, end_ms: int, deadline: Deadline
    ) -> list[str]:
        """The messages of the stream between the two instants; none if it does not exist."""
        messages: list[str] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "logGroupName": self.log_group,
                "logStreamName": stream,
                "startTime": start_ms,
                "endTime": end_ms,
                "startFromHead": True,
            }
            if token is not None:
                kwargs["nextToken"] = token
            response = self._call(
                "GetLogEvents", stream, functools.partial(self._get_events, kwargs), deadline
            )
            if response is None:
                self._forget_stream(stream)
                return messages
            messages.extend(event.get("message", "") for event in response.get("events", []))
            next_token = response.get("nextForwardToken")
            # GetLogEvents signals the end by returning the token it was given.
            if not next_token or next_token == token:
                return messages
            token = next_token

    def _get_events(self, kwargs: dict[str, Any]) -> GetLogEventsResponseTypeDef | None:
        try:
            return self._client.get_log_events(**kwargs)
        except ClientError as error:
            if error_code(error) == "ResourceNotFoundException":
                return None  # no stream: nothing in it
            raise

    def _call(self, operation: str, stream: str, call: Callable[[], T], deadline: Deadline) -> T:
        return call_aws(
            call,
            what=self._what(operation, stream),
            error=DeliveryError,
            attempts=Attempts(self._retry_policy, sleep=self._sleep, deadline=deadline),
        )

    def _what(self, operation: str, stream: str) -> str:
        return f"CloudWatch Logs {operation} for log group {self.log_group!r}, stream {stream!r}"

    def _failure(self, operation: str, stream: str, error: Exception, attempts: int) -> Exception:
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return DeliveryError(f"{self._what(operation, stream)} failed: {error_code(error)}{tries}")


def rejected_indices(info: RejectedLogEventsInfoTypeDef, count: int) -> list[int]:
    """Indices of a PutLogEvents batch that CloudWatch rejected, read defensively.

    AWS documents `tooOldLogEventEndIndex` and `expiredLogEventEndIndex` as exclusive ends and
    `tooNewLogEventStartIndex` as an inclusive start. moto reports the too-old end as the last
    rejected index (one less), so that boundary event is re-put too: at worst one duplicate in
    AWS, where a too-old rejection needs over an hour of clock skew anyway (events are restamped
    before the put), against a silent loss otherwise. Out-of-range values are clamped.
    """

    def clamp(value: object) -> int:
        return max(0, min(count, value)) if isinstance(value, int) else 0

    rejected: set[int] = set()
    if "tooOldLogEventEndIndex" in info:
        rejected.update(range(min(count, clamp(info["tooOldLogEventEndIndex"]) + 1)))
    if "expiredLogEventEndIndex" in info:
        rejected.update(range(clamp(info["expiredLogEventEndIndex"])))
    if "tooNewLogEventStartIndex" in info:
        rejected.update(range(clamp(info["tooNewLogEventStartIndex"]), count))
    return sorted(rejected)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def build(settings: Mapping[str, str], client: ClientFactory) -> CloudWatchSink:
    """The sink DESTINATIONS' `cloudwatch` names (sinks/registry.py), from its settings."""
    return CloudWatchSink(settings["LOG_GROUP_NAME"], client=client("logs", AWS_CLIENT_CONFIG))
