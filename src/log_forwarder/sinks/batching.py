"""Pure batching and naming for the sinks: PutLogEvents batches, stream names, S3 objects and keys
(a batch's id, which the intent names too, is records.batch_id_for), PutRecordBatch batches.

Nothing here does I/O, so the limits are proven by property tests rather than by a server (moto
does not enforce the CloudWatch batch limits).
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from log_forwarder.convert import oversized_marker
from log_forwarder.records import OutputLine

CW_MAX_BATCH_BYTES = 1_048_576
CW_EVENT_OVERHEAD_BYTES = 26
CW_MAX_BATCH_EVENTS = 10_000
CW_MAX_BATCH_SPAN_MS = 24 * 3600 * 1000
CW_MAX_EVENT_BYTES = CW_MAX_BATCH_BYTES - CW_EVENT_OVERHEAD_BYTES

CW_MAX_STREAM_NAME_CHARS = 512

# PutRecordBatch: at most 500 records and 4 MB a call, a record at most 1,000 KB before base64
# (AWS's API reference; these limits cannot be changed). Read as decimal units, the smaller
# reading, and the call's 4 MB as its base64 (4/3 of the raw bytes) and JSON: 2,990,000 raw
# bytes encode to under 4,000,000 with room for the JSON of 500 records.
FIREHOSE_MAX_BATCH_RECORDS = 500
FIREHOSE_MAX_BATCH_BYTES = 2_990_000
FIREHOSE_MAX_RECORD_BYTES = 1_000_000

DAY_MS = 24 * 3600 * 1000
_HASH_CHARS = 16
# CloudWatch forbids ':' and '*'; control characters are legal but unreadable in the console.
_STREAM_UNSAFE = re.compile(r"[:*\x00-\x1f\x7f]")
# Keys are read by Athena/Hive and by shell tools: keep to characters no one needs to quote.
_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_SLUG_MAX_CHARS = 64
# The day's folder of the objects a push shares among its users (shared_s3_objects).
SHARED_FOLDER = "pushed"


@dataclass(frozen=True, slots=True)
class CloudWatchLimits:
    """PutLogEvents limits; the defaults are AWS's, tests may shrink them to explore edge cases."""

    max_batch_bytes: int = CW_MAX_BATCH_BYTES
    event_overhead_bytes: int = CW_EVENT_OVERHEAD_BYTES
    max_batch_events: int = CW_MAX_BATCH_EVENTS
    max_batch_span_ms: int = CW_MAX_BATCH_SPAN_MS

    @property
    def max_event_bytes(self) -> int:
        return self.max_batch_bytes - self.event_overhead_bytes


CLOUDWATCH_LIMITS = CloudWatchLimits()


def cloudwatch_batches(
    lines: Sequence[OutputLine], *, limits: CloudWatchLimits = CLOUDWATCH_LIMITS
) -> list[list[OutputLine]]:
    """Split lines (sorted by timestamp) into the fewest in-order PutLogEvents batches.

    Every batch holds at most `max_batch_events` events, at most `max_batch_bytes` counting
    `event_overhead_bytes` per event, and spans strictly less than `max_batch_span_ms`.
    Raises ValueError when the input is not sorted or one line alone exceeds the event limit:
    the caller must replace such lines first, since no batching can send them.
    """
    batches: list[list[OutputLine]] = []
    current: list[OutputLine] = []
    current_bytes = 0
    first_ts = 0
    previous_ts: int | None = None
    for index, item in enumerate(lines):
        if previous_ts is not None and item.timestamp_ms < previous_ts:
            raise ValueError(
                f"lines must be sorted by timestamp_ms: index {index} ({item.timestamp_ms}) "
                f"comes after {previous_ts}"
            )
        previous_ts = item.timestamp_ms
        size = len(item.line.encode("utf-8"))
        if size > limits.max_event_bytes:
            raise ValueError(
                f"line {index} (log_id {item.log_id!r}) is {size} bytes, over the "
                f"{limits.max_event_bytes}-byte CloudWatch event limit"
            )
        cost = size + limits.event_overhead_bytes
        if current and (
            current_bytes + cost > limits.max_batch_bytes
            or len(current) >= limits.max_batch_events
            or item.timestamp_ms - first_ts >= limits.max_batch_span_ms
        ):
            batches.append(current)
            current = []
        if not current:
            current_bytes = 0
            first_ts = item.timestamp_ms
        current.append(item)
        current_bytes += cost
    if current:
        batches.append(current)
    return batches


def replace_oversized(
    lines: Iterable[OutputLine], max_bytes: int
) -> tuple[list[OutputLine], list[str | None]]:
    """The lines in order, each whose UTF-8 text is over `max_bytes` replaced by its marker
    (convert.oversized_marker), and the log ids of those replaced."""
    fitting: list[OutputLine] = []
    replaced: list[str | None] = []
    for item in lines:
        if len(item.line.encode("utf-8")) > max_bytes:
            fitting.append(oversized_marker(item))
            replaced.append(item.log_id)
        else:
            fitting.append(item)
    return fitting, replaced


def firehose_batches(
    records: Sequence[bytes],
    *,
    max_records: int = FIREHOSE_MAX_BATCH_RECORDS,
    max_bytes: int = FIREHOSE_MAX_BATCH_BYTES,
) -> list[list[bytes]]:
    """Records in order, in the fewest PutRecordBatch calls: each at most `max_records` records
    and `max_bytes` in all. ValueError for a record over `max_bytes` alone: the caller replaces
    such records first (FIREHOSE_MAX_RECORD_BYTES is below it)."""
    batches: list[list[bytes]] = []
    current: list[bytes] = []
    size = 0
    for index, record in enumerate(records):
        if len(record) > max_bytes:
            raise ValueError(f"record {index} is {len(record)} bytes, over {max_bytes} a call")
        if current and (len(current) >= max_records or size + len(record) > max_bytes):
            batches.append(current)
            current, size = [], 0
        current.append(record)
        size += len(record)
    if current:
        batches.append(current)
    return batches


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:_HASH_CHARS]


def stream_name_for(user_id: str) -> str:
    """The user's CloudWatch stream: the id made legal and readable, plus a hash of the raw id.

    The hash keeps names unique when two ids sanitise or truncate to the same text.
    """
    if not user_id:
        raise ValueError("user_id must not be empty")
    suffix = "." + _short_hash(user_id)
    readable = _STREAM_UNSAFE.sub("_", user_id)[: CW_MAX_STREAM_NAME_CHARS - len(suffix)]
    return readable + suffix


def user_slug(user_id: str) -> str:
    """A path segment for S3 keys: letters, digits, '_' and '-' only, unique via a hash."""
    if not user_id:
        raise ValueError("user_id must not be empty")
    readable = _SLUG_UNSAFE.sub("_", user_id).strip("_")[:_SLUG_MAX_CHARS]
    return f"{readable}-{_short_hash(user_id)}" if readable else _short_hash(user_id)


@dataclass(frozen=True, slots=True)
class S3Object:
    """One object to write: gzipped JSON lines of a single UTC day."""

    key: str
    body: bytes
    line_count: int


def normalise_prefix(prefix: str) -> str:
    """'' stays ''; anything else ends with exactly one '/' and has no leading '/'."""
    stripped = prefix.strip("/")
    return f"{stripped}/" if stripped else ""


def s3_objects(
    lines: Sequence[OutputLine], *, prefix: str, user_id: str, batch_id: str
) -> list[S3Object]:
    """One object per UTC day of the lines, under Hive-style `dt=YYYY-MM-DD/` partitions.

    The key depends only on (prefix, day, user, batch_id), and the body is byte-identical for the
    same input (gzip mtime 0), so a retried delivery targets the same keys with the same bytes.
    """
    return _daily_objects(lines, prefix, f"{user_slug(user_id)}/{batch_id}")


def shared_s3_objects(
    lines: Sequence[OutputLine], *, prefix: str, object_id: str
) -> list[S3Object]:
    """The objects of several users' batches a push delivers together: one per UTC day, named
    by `object_id` alone (each batch's intent names it) in the day's `pushed/` folder, which no
    user's folder can be called (a user's slug ends in a hash after a '-', or is a hash)."""
    if not object_id or _SLUG_UNSAFE.search(object_id):
        raise ValueError(f"a shared object's id must be a slug, not {object_id!r}")
    return _daily_objects(lines, prefix, f"{SHARED_FOLDER}/{object_id}")


def _daily_objects(lines: Sequence[OutputLine], prefix: str, name: str) -> list[S3Object]:
    by_day: dict[int, list[str]] = {}
    for item in lines:
        by_day.setdefault(item.timestamp_ms // DAY_MS, []).append(item.line)
    base = normalise_prefix(prefix)
    objects = []
    for day in sorted(by_day):
        day_lines = by_day[day]
        payload = ("\n".join(day_lines) + "\n").encode("utf-8")
        objects.append(
            S3Object(
                key=f"{base}dt={day_folder(day * DAY_MS)}/{name}.jsonl.gz",
                body=gzip.compress(payload, mtime=0),
                line_count=len(day_lines),
            )
        )
    return objects


def day_folder(timestamp_ms: int) -> str:
    """The `dt=` partition value of a line stamped `timestamp_ms`: its UTC day."""
    return datetime.fromtimestamp(timestamp_ms // DAY_MS * DAY_MS / 1000, tz=UTC).strftime(
        "%Y-%m-%d"
    )
