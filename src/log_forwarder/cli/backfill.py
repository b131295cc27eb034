"""`backfill USER --since T [--until T]`: forward a past range again, into the configured
destinations, without a duplicate and without touching the live checkpoint.

The function's own core does the work (Forwarder, planner, executor), with three changes:

- its cursor is an item of its own in the checkpoint table (`backfill#USER#SINCE#UNTIL`), so a
  backfill resumes where it stopped and the live checkpoint is never written, let alone moved
  backwards; a range backfilled to its end before is read again from its start, so running the
  same command again checks the destinations anew (objects deleted since are written again);
- the range ends at the live checkpoint's floor at the latest: the live forwarder never again
  forwards anything below its floor, and owns everything above it, so the two never deliver the
  same event, even while both run;
- the destinations skip what they already hold: CloudWatch reads the stream over each batch and
  leaves out present log_ids (the sink's own redelivery), and S3 reads the user's objects of the
  batch's days and leaves out present log_ids; a repeated backfill writes the same keys, which
  S3 refuses to overwrite. Each destination's figures are what it was given (checked), and
  what it lacked and was written: the result says no more than what was compared.

It reads through tenant search (oldest first, bounded by the range), which needs read:logs.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from log_forwarder.config import Settings, StartFrom
from log_forwarder.convert import record_key
from log_forwarder.cursor import Cursor
from log_forwarder.events import iso_ms
from log_forwarder.exceptions import CheckpointStateError, ConfigError, DeliveryError
from log_forwarder.records import Delivery, DeliveryReport
from log_forwarder.retry import UNLIMITED, Deadline
from log_forwarder.sinks import Sink
from log_forwarder.sinks.batching import SHARED_FOLDER, day_folder, normalise_prefix, user_slug
from log_forwarder.source import CallScope, LogSource
from log_forwarder.store import CheckpointStore, StoredCheckpoint, SummaryValue

from .progress import Counters
from .status import BACKFILL_PREFIX


@dataclass(frozen=True)
class BackfillRange:
    user_id: str
    since_ms: int
    until_ms: int | None  # as asked; None: up to the live checkpoint

    @property
    def key(self) -> str:
        until = iso_ms(self.until_ms) if self.until_ms is not None else "live"
        return f"{BACKFILL_PREFIX}{self.user_id}#{iso_ms(self.since_ms)}#{until}"

    def summary(self, end_ms: int) -> dict[str, SummaryValue]:
        return {
            "item_type": "backfill",
            "backfill_user": self.user_id,
            "backfill_since": iso_ms(self.since_ms),
            "backfill_until": iso_ms(end_ms),
        }


def effective_end(span: BackfillRange, live: StoredCheckpoint | None, now_ms: int) -> int:
    """The last instant (inclusive) a backfill may forward: what was asked, and below the live
    checkpoint's floor, which the live forwarder never reads below again."""
    end = now_ms if span.until_ms is None else span.until_ms
    if live is not None:
        item = f"the live checkpoint of {span.user_id!r}"
        floor = Cursor.from_state(live.readable_state(), item=item).position.floor_ms
        if floor is not None:
            end = min(end, floor - 1)
    return end


class BoundedSource:
    """Tenant search with the backfill's upper bound in every query. The per-user endpoint
    (newest first) cannot be bounded: a backfill without search stops, saying why."""

    def __init__(self, inner: LogSource, end_ms: int) -> None:
        self._inner = inner
        self._end = iso_ms(end_ms)

    def user_logs(
        self, user_id: str, *, page: int, per_page: int, sort: str, scope: CallScope
    ) -> list[Any]:
        raise ConfigError(
            "backfill reads through tenant search (GET /api/v2/logs), which refused it: grant "
            "the application the read:logs scope"
        )

    def search_logs(
        self, query: str, *, page: int, per_page: int, sort: str, scope: CallScope
    ) -> list[Any]:
        # fetch.search_query writes "… AND date:[lo TO hi]", "*" for an open end.
        if " TO *]" in query:
            query = query.replace(" TO *]", f" TO {self._end}]")
        elif " AND date:[" not in query:
            query += f" AND date:[* TO {self._end}]"
        return self._inner.search_logs(query, page=page, per_page=per_page, sort=sort, scope=scope)

    def tenant_logs(self, after: str, *, take: int, scope: CallScope) -> list[Any]:
        # backfill_settings reads per user; a call here would be a wiring bug.
        raise AssertionError("a backfill never reads the tenant stream")

    def log_event(self, log_id: str, *, scope: CallScope) -> Any:
        return self._inner.log_event(log_id, scope=scope)


class BackfillStore:
    """The backfill's own checkpoint item, in the checkpoint table beside the live ones."""

    def __init__(
        self, inner: CheckpointStore, span: BackfillRange, end_ms: int, counters: Counters
    ) -> None:
        self._inner = inner
        self._span = span
        self._end = end_ms
        self._counters = counters
        self._first_load = True
        # Set by the first load: the range was done before and is read again from its start
        # (again), or an unfinished one continues from here (resumed_from_ms).
        self.again = False
        self.resumed_from_ms: int | None = None

    def load(
        self, user_ids: Sequence[str], *, deadline: Deadline = UNLIMITED
    ) -> dict[str, StoredCheckpoint]:
        found = self._inner.load([self._span.key], deadline=deadline)
        if self._span.key not in found:
            self._first_load = False
            return {}
        stored = found[self._span.key]
        try:
            cursor = Cursor.from_state(stored.readable_state(), item=f"backfill {self._span.key!r}")
        except CheckpointStateError:
            self._first_load = False
            self._progress(stored.state)
            return {self._span.user_id: stored}  # its session says why, and writes nothing
        if self._first_load:
            self._first_load = False
            if not cursor.status.backlog:
                # Done before: what the destinations held then proves nothing now (objects
                # deleted since are the reason to backfill). From the start again, the
                # destinations skipping what they hold; the item's version is kept, so the
                # write that restarts it is as conditional as any.
                self.again = True
                cursor = Cursor.fresh(self._span.since_ms, backlog=True)
            else:
                self.resumed_from_ms = cursor.position.watermark_ms
        self._progress(cursor.to_state())
        # Always read through search, bounded by the range: a backfill resumed (or read again)
        # must not read the newest events, which are the live forwarder's.
        state = replace(cursor, status=replace(cursor.status, backlog=True)).to_state()
        return {self._span.user_id: StoredCheckpoint(self._span.user_id, stored.version, state)}

    def save(
        self,
        user_id: str,
        state: Mapping[str, Any],
        *,
        expected_version: int | None,
        summary: Mapping[str, SummaryValue] = {},
        deadline: Deadline = UNLIMITED,
    ) -> int:
        version = self._inner.save(
            self._span.key,
            state,
            expected_version=expected_version,
            summary={**summary, **self._span.summary(self._end)},
            deadline=deadline,
        )
        self._progress(state)
        return version

    def watched_users(self) -> list[str]:
        return [self._span.user_id]

    def _progress(self, state: Mapping[str, Any]) -> None:
        watermark = state.get("watermark")
        if isinstance(watermark, int):
            self._counters.done = max(0, min(watermark, self._end) - self._span.since_ms)


class Redelivering:
    """A sink told every batch may already be there in part (CloudWatch then reads the stream
    over the batch's span and writes only the log_ids it lacks)."""

    def __init__(self, inner: Sink) -> None:
        self._inner = inner
        self.name = inner.name

    def deliver(self, delivery: Delivery) -> DeliveryReport:
        return self._inner.deliver(replace(delivery, redelivery=True))


class SkippingPresentInS3:
    """The S3 sink, after leaving out the log_ids the user's objects of those days hold."""

    def __init__(self, inner: Sink, client: Any, bucket: str, prefix: str) -> None:
        self._inner = inner
        self._client = client
        self._bucket = bucket
        self._prefix = normalise_prefix(prefix)
        self._present: dict[str, set[str]] = {}  # by key prefix (day and user)
        self.name = inner.name

    def deliver(self, delivery: Delivery) -> DeliveryReport:
        folders = {self._folder(delivery.user_id, line.timestamp_ms) for line in delivery.lines}
        # And the objects the real-time path shared among the users of a push that day.
        folders |= {self._shared_folder(line.timestamp_ms) for line in delivery.lines}
        present = set().union(*(self._ids_in(folder) for folder in folders))
        lines = tuple(x for x in delivery.lines if x.key is None or x.key not in present)
        skipped = len(delivery.lines) - len(lines)
        report = DeliveryReport(self.name, accepted=0)
        if lines:
            report = self._inner.deliver(replace(delivery, lines=lines))
        for line in lines:
            if line.key is not None:
                self._ids_in(self._folder(delivery.user_id, line.timestamp_ms)).add(line.key)
        return replace(report, already_present=report.already_present + skipped)

    def _folder(self, user_id: str, timestamp_ms: int) -> str:
        return f"{self._prefix}dt={day_folder(timestamp_ms)}/{user_slug(user_id)}/"

    def _shared_folder(self, timestamp_ms: int) -> str:
        return f"{self._prefix}dt={day_folder(timestamp_ms)}/{SHARED_FOLDER}/"

    def _ids_in(self, folder: str) -> set[str]:
        if folder not in self._present:
            found: set[str] = set()
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=folder
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    found.update(self._keys_in(obj["Key"]))
            self._present[folder] = found
        return self._present[folder]

    def _keys_in(self, key: str) -> set[str]:
        body = self._client.get_object(Bucket=self._bucket, Key=key)["Body"].read()
        try:
            text = gzip.decompress(body).decode("utf-8")
        except (OSError, EOFError, zlib.error, UnicodeDecodeError) as error:
            # Which events it holds cannot be told: writing them again could repeat them.
            raise DeliveryError(
                f"s3://{self._bucket}/{key} is not gzipped UTF-8 JSON lines, as the forwarder "
                f"writes ({type(error).__name__}: {error}): S3 was not compared past it. Move "
                "or delete that object, then run the same backfill again"
            ) from None
        return set(filter(None, map(record_key, text.splitlines())))


def backfill_settings(settings: Settings, span: BackfillRange) -> Settings:
    """A fresh backfill cursor starts at `since`, one user at a time, read per user: the
    tenant stream starts from now-ish and has no upper bound to give the range."""
    return replace(
        settings,
        start_from=StartFrom(mode="instant", instant_ms=span.since_ms),
        max_concurrent_users=1,
        read_mode="per-user",
    )


@dataclass
class BackfillOutcome:
    span: BackfillRange
    end_ms: int
    forwarded: int = 0  # events handed to the destinations (each skips what it holds)
    fetched: int = 0  # events Auth0 returned (a failed slice hands none on)
    compared: list[str] = field(default_factory=list)  # the destinations it reads back
    # Auth0 holds nothing dated before this (AUTH0_LOG_RETENTION_HOURS before the start):
    # that part of the range could not be compared with anything.
    retained_from_ms: int | None = None
    retention_hours: int | None = None
    written: dict[str, int] = field(default_factory=dict)  # lines written, per destination
    present: dict[str, int] = field(default_factory=dict)  # lines found already there
    again: bool = False  # the range was done before: read again from its start, to check
    resumed_from_ms: int | None = None  # continued an unfinished backfill from here
    done: bool = False  # the whole range is forwarded
    interrupted: bool = False  # stopped by Ctrl-C before the range was done
    busy_until: str | None = None  # another backfill of this range holds it
    errors: list[str] | None = None
    # Destinations it did not write: they cannot be read back (backfill_run.left_out)
    left_out: list[str] = field(default_factory=list)
