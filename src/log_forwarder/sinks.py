"""Destinations: CloudWatch Logs (one stream per user) and S3 (gzipped JSON lines per UTC day).

Both take lines in timestamp order and either accept all of them or raise DeliveryError, so the
caller moves the checkpoint only after every destination has acknowledged the batch. Line
contents are personal data: log messages here carry counts, ids and names, never lines.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from log_forwarder.batching import (
    CW_MAX_EVENT_BYTES,
    S3Object,
    batch_id_for,
    cloudwatch_batches,
    s3_objects,
    stream_name_for,
)
from log_forwarder.exceptions import DeliveryError
from log_forwarder.records import DeliveryReport, OutputLine

if TYPE_CHECKING:
    from mypy_boto3_logs.client import CloudWatchLogsClient
    from mypy_boto3_logs.type_defs import InputLogEventTypeDef, RejectedLogEventsInfoTypeDef
    from mypy_boto3_s3.client import S3Client

logger = logging.getLogger(__name__)

_HOUR_MS = 3600 * 1000
# CloudWatch refuses events older than 14 days or newer than 2 hours; stay an hour inside both
# bounds so that clock skew and the time a batch spends in flight cannot push an event out.
_SAFETY_MARGIN_MS = _HOUR_MS
CW_MAX_AGE_MS = 14 * 24 * _HOUR_MS - _SAFETY_MARGIN_MS
CW_MAX_FUTURE_MS = 2 * _HOUR_MS - _SAFETY_MARGIN_MS

_RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalError",
        "SlowDown",
        "RequestTimeout",
        # S3: another conditional write to the same key is in flight; the loser retries.
        "ConditionalRequestConflict",
    }
)


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _http_status(error: ClientError) -> int | None:
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


class _Backoff:
    """Capped exponential backoff with full jitter, shared by both sinks."""

    def __init__(
        self,
        *,
        attempts: int,
        base_seconds: float,
        cap_seconds: float,
        sleep: Callable[[float], None],
    ) -> None:
        self.attempts = attempts
        self.base_seconds = base_seconds
        self.cap_seconds = cap_seconds
        self.sleep = sleep

    def pause(self, attempt: int) -> None:
        ceiling = min(self.cap_seconds, self.base_seconds * (2**attempt))
        self.sleep(random.uniform(0, ceiling))


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
        client: CloudWatchLogsClient | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 5,
    ) -> None:
        self.log_group = log_group
        self._client: CloudWatchLogsClient = client if client is not None else boto3.client("logs")
        self._clock = clock
        self._backoff = _Backoff(
            attempts=max_attempts, base_seconds=0.2, cap_seconds=5.0, sleep=sleep
        )

    def deliver(
        self,
        user_id: str,
        lines: Sequence[OutputLine],
        *,
        batch_id: str,
        recovering: bool = False,
    ) -> DeliveryReport:
        stream = stream_name_for(user_id)
        if not lines:
            return DeliveryReport(destination=self.name, accepted=0)
        ordered = sorted(lines, key=lambda item: item.timestamp_ms)
        oversized_ids: list[str | None] = []
        fitting: list[OutputLine] = []
        for item in ordered:
            if len(item.line.encode("utf-8")) > CW_MAX_EVENT_BYTES:
                fitting.append(_oversized_marker(item))
                oversized_ids.append(item.log_id)
            else:
                fitting.append(item)
        if oversized_ids:
            logger.warning(
                "Replaced events too large for CloudWatch Logs with marker records",
                extra={
                    "log_group": self.log_group,
                    "stream": stream,
                    "batch_id": batch_id,
                    "oversized": len(oversized_ids),
                    "log_ids": oversized_ids,
                },
            )

        self._ensure_stream(stream)
        already_present = 0
        if recovering:
            fitting, already_present = self._drop_present(stream, fitting)

        now_ms = int(self._clock() * 1000)
        stamped: list[OutputLine] = []
        moved: set[int] = set()  # id() of the restamped lines, so none is counted twice
        for item in fitting:
            if (
                item.timestamp_ms < now_ms - CW_MAX_AGE_MS
                or item.timestamp_ms > now_ms + CW_MAX_FUTURE_MS
            ):
                # The event keeps its Auth0 `date` in the line; only the CloudWatch timestamp moves.
                stamped.append(replace(item, timestamp_ms=now_ms))
                moved.add(id(stamped[-1]))
            else:
                stamped.append(item)
        stamped.sort(key=lambda item: item.timestamp_ms)

        rejected: list[OutputLine] = []
        for batch in cloudwatch_batches(stamped):
            rejected.extend(self._put(stream, batch))
        if rejected:
            # Rejected for age (or for the group's retention): write them once more, stamped now.
            retry_ms = int(self._clock() * 1000)
            again = [replace(item, timestamp_ms=retry_ms) for item in rejected]
            for batch in cloudwatch_batches(again):
                still = self._put(stream, batch)
                if still:
                    raise DeliveryError(
                        f"CloudWatch Logs rejected {len(still)} event(s) in log group "
                        f"{self.log_group!r}, stream {stream!r} even when stamped with the "
                        "current time; check the clock and the group's retention"
                    )
            moved.update(id(item) for item in rejected)
            logger.info(
                "Re-put events CloudWatch rejected for their timestamp",
                extra={"stream": stream, "batch_id": batch_id, "count": len(rejected)},
            )

        return DeliveryReport(
            destination=self.name,
            accepted=len(stamped),
            restamped=len(moved),
            oversized=len(oversized_ids),
            already_present=already_present,
        )

    def _ensure_stream(self, stream: str) -> None:
        key = self._cache_key(stream)
        if key in self._created_streams:
            return
        # Only ResourceAlreadyExistsException gets through, and it means the stream is there.
        with contextlib.suppress(ClientError):
            self._call(
                stream,
                "CreateLogStream",
                lambda: self._client.create_log_stream(
                    logGroupName=self.log_group, logStreamName=stream
                ),
                passthrough={"ResourceAlreadyExistsException"},
            )
        self._created_streams.add(key)

    def _cache_key(self, stream: str) -> tuple[str, str, str, str]:
        meta = self._client.meta
        return (str(meta.endpoint_url), str(meta.region_name), self.log_group, stream)

    def _put(self, stream: str, batch: list[OutputLine]) -> list[OutputLine]:
        """PutLogEvents for one batch; returns the events rejected for their timestamp."""
        events: list[InputLogEventTypeDef] = [
            {"timestamp": item.timestamp_ms, "message": item.line} for item in batch
        ]

        def put() -> RejectedLogEventsInfoTypeDef | None:
            response = self._client.put_log_events(
                logGroupName=self.log_group, logStreamName=stream, logEvents=events
            )
            return response.get("rejectedLogEventsInfo")

        try:
            info = self._call(
                stream, "PutLogEvents", put, passthrough={"ResourceNotFoundException"}
            )
        except ClientError:
            # The stream was deleted after this container created it: create it again, once.
            self._created_streams.discard(self._cache_key(stream))
            self._ensure_stream(stream)
            info = self._call(stream, "PutLogEvents", put)
        if not info:
            return []
        indices = rejected_indices(info, len(batch))
        logger.warning(
            "CloudWatch Logs rejected events for their timestamp",
            extra={"stream": stream, "rejected": len(indices), "info": dict(info)},
        )
        return [batch[index] for index in indices]

    def _drop_present(self, stream: str, lines: list[OutputLine]) -> tuple[list[OutputLine], int]:
        """Recovery: leave out lines a crashed earlier run already wrote to the stream.

        Lines are matched by log_id; lines without one (our own records) by their whole text.
        The window runs to now, not just to the newest line, because an earlier run may have
        restamped old events with its own (later) delivery time.
        """
        start_ms = lines[0].timestamp_ms
        end_ms = max(lines[-1].timestamp_ms, int(self._clock() * 1000) + CW_MAX_FUTURE_MS) + 1
        present_ids: set[str] = set()
        present_digests: set[str] = set()
        for message in self._read_stream(stream, start_ms, end_ms):
            log_id = _log_id_of(message)
            if log_id is not None:
                present_ids.add(log_id)
            present_digests.add(_digest(message))
        missing = [
            item
            for item in lines
            if not (
                (item.log_id is not None and item.log_id in present_ids)
                or _digest(item.line) in present_digests
            )
        ]
        skipped = len(lines) - len(missing)
        if skipped:
            logger.info(
                "Recovery: skipping events already in the stream",
                extra={"stream": stream, "already_present": skipped, "missing": len(missing)},
            )
        return missing, skipped

    def _read_stream(self, stream: str, start_ms: int, end_ms: int) -> list[str]:
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
                stream,
                "GetLogEvents",
                functools.partial(self._client.get_log_events, **kwargs),
            )
            messages.extend(event.get("message", "") for event in response.get("events", []))
            next_token = response.get("nextForwardToken")
            # GetLogEvents signals the end by returning the token it was given.
            if not next_token or next_token == token:
                return messages
            token = next_token

    def _call(
        self,
        stream: str,
        operation: str,
        call: Callable[[], Any],
        *,
        passthrough: Collection[str] = (),
    ) -> Any:
        """Run call with retries; errors become DeliveryError, except codes in passthrough."""
        for attempt in range(self._backoff.attempts):
            try:
                return call()
            except ClientError as error:
                code = _error_code(error)
                if code in passthrough:
                    raise
                if code in _RETRYABLE_CODES and attempt + 1 < self._backoff.attempts:
                    self._backoff.pause(attempt)
                    continue
                raise DeliveryError(
                    f"CloudWatch Logs {operation} failed for log group {self.log_group!r}, "
                    f"stream {stream!r}: {code or 'error'}"
                    + (f" after {attempt + 1} attempts" if code in _RETRYABLE_CODES else "")
                ) from error
            except BotoCoreError as error:
                if attempt + 1 < self._backoff.attempts:
                    self._backoff.pause(attempt)
                    continue
                raise DeliveryError(
                    f"CloudWatch Logs {operation} failed for log group {self.log_group!r}, "
                    f"stream {stream!r}: {type(error).__name__}"
                ) from error
        raise AssertionError("unreachable")  # pragma: no cover


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


def _log_id_of(message: str) -> str | None:
    try:
        record = json.loads(message)
    except ValueError:
        return None
    log_id = record.get("log_id") if isinstance(record, dict) else None
    return log_id if isinstance(log_id, str) else None


def _oversized_marker(item: OutputLine) -> OutputLine:
    """A small stand-in for a line CloudWatch cannot take, naming the event it replaces."""
    raw = item.line.encode("utf-8")
    try:
        original = json.loads(item.line)
    except ValueError:
        original = None
    fields = original if isinstance(original, dict) else {}
    log_id = fields.get("log_id", item.log_id)
    marker = {
        "log_id": log_id if isinstance(log_id, str) else item.log_id,
        "date": fields.get("date") if isinstance(fields.get("date"), str) else None,
        "type": fields.get("type") if isinstance(fields.get("type"), str) else None,
        "_forwarder": {
            "oversized": True,
            "original_bytes": len(raw),
            "sha256": hashlib.sha256(raw).hexdigest(),
        },
    }
    return replace(item, line=json.dumps(marker, separators=(",", ":"), ensure_ascii=False))


class S3Sink:
    """Writes each batch as one gzipped JSON-lines object per UTC day, never overwriting."""

    name = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: S3Client | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        max_attempts: int = 5,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self._client: S3Client = client if client is not None else boto3.client("s3")
        self._backoff = _Backoff(
            attempts=max_attempts, base_seconds=0.2, cap_seconds=5.0, sleep=sleep
        )

    def deliver(
        self,
        user_id: str,
        lines: Sequence[OutputLine],
        *,
        batch_id: str,
        recovering: bool = False,
    ) -> DeliveryReport:
        if not lines:
            return DeliveryReport(destination=self.name, accepted=0)
        ordered = sorted(lines, key=lambda item: item.timestamp_ms)
        accepted = 0
        already_present = 0
        objects = s3_objects(ordered, prefix=self.prefix, user_id=user_id, batch_id=batch_id)
        written: list[str] = []
        for obj in objects:
            if self._put(obj):
                accepted += obj.line_count
                written.append(obj.key)
                continue
            if not recovering:
                # Keys derive from the batch's ids: an existing key holds this very batch.
                already_present += obj.line_count
                continue
            # A crashed run may have written this key with only part of what is redelivered now
            # (or all of it): keep what is there, and write the rest under a key of its own.
            missing = self._missing_from(obj, ordered)
            already_present += obj.line_count - len(missing)
            if missing:
                ids = [line.log_id for line in missing if line.log_id]
                for extra in s3_objects(
                    missing, prefix=self.prefix, user_id=user_id, batch_id=batch_id_for(ids)
                ):
                    if self._put(extra):
                        accepted += extra.line_count
                        written.append(extra.key)
                    else:
                        already_present += extra.line_count
        if already_present:
            logger.info(
                "S3 objects already present (an earlier attempt wrote them)",
                extra={"bucket": self.bucket, "batch_id": batch_id, "lines": already_present},
            )
        return DeliveryReport(
            destination=self.name,
            accepted=accepted,
            already_present=already_present,
            objects=tuple(written) or tuple(obj.key for obj in objects),
        )

    def _missing_from(self, obj: S3Object, lines: Sequence[OutputLine]) -> list[OutputLine]:
        """The lines of `obj` whose log_id the object already stored under its key lacks."""
        try:
            stored = self._client.get_object(Bucket=self.bucket, Key=obj.key)["Body"].read()
        except (ClientError, BotoCoreError) as error:
            raise DeliveryError(
                f"S3 GetObject failed for bucket {self.bucket!r}, key {obj.key!r} during recovery"
            ) from error
        present = {
            _log_id_of(text) for text in gzip.decompress(stored).decode("utf-8").splitlines()
        }
        in_object = set(gzip.decompress(obj.body).decode("utf-8").splitlines())
        return [
            line
            for line in lines
            if line.line in in_object and line.log_id is not None and line.log_id not in present
        ]

    def _put(self, obj: S3Object) -> bool:
        """Write obj unless its key exists; True when written, False when already there."""
        for attempt in range(self._backoff.attempts):
            try:
                # Content-Type describes the stored bytes (a gzip file) and no Content-Encoding
                # is set: with `Content-Encoding: gzip` browsers and some HTTP clients unpack the
                # body on download while the key still says .gz, and Athena decides compression
                # from the .gz extension anyway.
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=obj.key,
                    Body=obj.body,
                    ContentType="application/gzip",
                    IfNoneMatch="*",
                )
                return True
            except ClientError as error:
                code = _error_code(error)
                if code == "PreconditionFailed" or _http_status(error) == 412:
                    return False
                if code in _RETRYABLE_CODES and attempt + 1 < self._backoff.attempts:
                    self._backoff.pause(attempt)
                    continue
                raise DeliveryError(
                    f"S3 PutObject failed for bucket {self.bucket!r}, key {obj.key!r}: "
                    f"{code or 'error'}"
                ) from error
            except BotoCoreError as error:
                if attempt + 1 < self._backoff.attempts:
                    self._backoff.pause(attempt)
                    continue
                raise DeliveryError(
                    f"S3 PutObject failed for bucket {self.bucket!r}, key {obj.key!r}: "
                    f"{type(error).__name__}"
                ) from error
        raise AssertionError("unreachable")  # pragma: no cover
