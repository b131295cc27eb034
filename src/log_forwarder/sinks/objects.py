"""Destinations that keep objects: S3, and the directory of `run --local` (cli/local.py).

One algorithm over a put-if-absent seam. `s3_objects` decides the keys and bytes (one gzipped
JSON-lines object per user, batch and UTC day; `shared_s3_objects`, one per day for the batches
of several users a push delivers together, sinks/gathering.py); each key is published once and
never overwritten. A key that already exists holds this batch, or the part an interrupted run wrote:
what that object lacks is written under a key of its own, so no redelivery mode is needed and
a retry costs a read only when a key exists.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from collections.abc import Sequence
from typing import Protocol

from log_forwarder.convert import record_key
from log_forwarder.exceptions import DeliveryError
from log_forwarder.records import Delivery, DeliveryReport, OutputLine, batch_id_for
from log_forwarder.retry import Deadline
from log_forwarder.sinks.batching import DAY_MS, S3Object, s3_objects, shared_s3_objects

logger = logging.getLogger(__name__)


class ObjectStore(Protocol):
    """Where objects are kept: the whole seam an object sink needs."""

    def put_if_absent(self, key: str, body: bytes, deadline: Deadline) -> bool:
        """Write `body` under `key` unless the key exists: True when written."""
        ...

    def get(self, key: str, deadline: Deadline) -> bytes:
        """The bytes stored under `key`."""
        ...


class ObjectSink:
    def __init__(self, store: ObjectStore, prefix: str, name: str) -> None:
        self.store = store
        self.prefix = prefix
        self.name = name

    def deliver(self, delivery: Delivery) -> DeliveryReport:
        (report,) = self.deliver_together([delivery])
        return report

    def deliver_together(self, deliveries: Sequence[Delivery]) -> list[DeliveryReport]:
        """Batches of several users whose intents name one shared object (a push's, through
        sinks/gathering.py): one object a day holds them all. One delivery naming none gets
        objects of its user's own. A report per delivery, in order."""
        shared = {d.shared_object for d in deliveries}
        if len(shared) != 1 or (None in shared and len(deliveries) != 1):
            raise ValueError("deliveries together must all name one shared object")
        object_id = shared.pop()
        by_day: dict[int, list[tuple[int, OutputLine]]] = {}
        for index, delivery in enumerate(deliveries):
            for line in delivery.lines:
                by_day.setdefault(line.timestamp_ms // DAY_MS, []).append((index, line))
        accepted = [0] * len(deliveries)
        present = [0] * len(deliveries)
        written: list[list[str]] = [[] for _ in deliveries]
        keys: list[list[str]] = [[] for _ in deliveries]
        deadline = deliveries[0].deadline
        for day in sorted(by_day):
            owned = sorted(by_day[day], key=lambda item: item[1].timestamp_ms)
            lines = [line for _, line in owned]
            if object_id is None:
                (obj,) = self._objects(deliveries[0].user_id, lines, deliveries[0].batch_id)
            else:
                (obj,) = shared_s3_objects(lines, prefix=self.prefix, object_id=object_id)
            owners = {index for index, _ in owned}
            for index in owners:
                keys[index].append(obj.key)
            if self.store.put_if_absent(obj.key, obj.body, deadline):
                for index, _ in owned:
                    accepted[index] += 1
                for index in owners:
                    written[index].append(obj.key)
                continue
            stored = self._stored_lines(obj, deadline)
            for index in sorted(owners):
                mine = [line for owner, line in owned if owner == index]
                missing = _missing_from(stored, mine)
                present[index] += len(mine) - len(missing)
                ids = [line.key for line in missing if line.key]
                user_id = deliveries[index].user_id
                for extra in self._objects(user_id, missing, batch_id_for(ids)):
                    if self.store.put_if_absent(extra.key, extra.body, deadline):
                        accepted[index] += extra.line_count
                        written[index].append(extra.key)
                    else:
                        present[index] += extra.line_count
        reports = []
        for index, delivery in enumerate(deliveries):
            if present[index]:
                logger.info(
                    "Objects already present (an earlier attempt wrote them)",
                    extra={
                        "destination": self.name,
                        "batch_id": delivery.batch_id,
                        "lines": present[index],
                    },
                )
            reports.append(
                DeliveryReport(
                    destination=self.name,
                    accepted=accepted[index],
                    already_present=present[index],
                    objects=tuple(written[index] or keys[index]),
                )
            )
        return reports

    def _objects(self, user_id: str, lines: Sequence[OutputLine], batch_id: str) -> list[S3Object]:
        return s3_objects(lines, prefix=self.prefix, user_id=user_id, batch_id=batch_id)

    def _stored_lines(self, obj: S3Object, deadline: Deadline) -> frozenset[str]:
        """The lines the object stored under `obj`'s key holds."""
        try:
            stored = gzip.decompress(self.store.get(obj.key, deadline)).decode("utf-8")
        except (OSError, EOFError, UnicodeDecodeError, zlib.error) as error:
            raise DeliveryError(
                f"{self.name}: object {obj.key!r} is unreadable: {error}"
            ) from error
        return frozenset(stored.splitlines())


def _missing_from(stored_lines: frozenset[str], lines: Sequence[OutputLine]) -> list[OutputLine]:
    """The lines a stored object lacks: by key (log_id, finding id), or for a line with no key
    (a gap record), by its exact text: a redelivered batch keeps its old batch id (and a shared
    object its id), so its object may exist with other lines than this delivery's."""
    present = {record_key(line) for line in stored_lines}
    return [
        line
        for line in lines
        if (line.line not in stored_lines if line.key is None else line.key not in present)
    ]
