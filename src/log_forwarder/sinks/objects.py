"""Destinations that keep objects: S3, and the directory of `run --local` (cli/local.py).

One algorithm over a put-if-absent seam. `s3_objects` decides the keys and bytes (one gzipped
JSON-lines object per user, batch and UTC day); each key is published once and never
overwritten. A key that already exists holds this batch, or the part an interrupted run wrote:
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
from log_forwarder.sinks.batching import S3Object, s3_objects

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
        if not delivery.lines:
            return DeliveryReport(destination=self.name, accepted=0)
        ordered = sorted(delivery.lines, key=lambda item: item.timestamp_ms)
        objects = self._objects(delivery.user_id, ordered, delivery.batch_id)
        deadline = delivery.deadline
        accepted = already_present = 0
        written: list[str] = []
        for obj in objects:
            if self.store.put_if_absent(obj.key, obj.body, deadline):
                accepted += obj.line_count
                written.append(obj.key)
                continue
            missing = self._missing_from(obj, ordered, deadline)
            already_present += obj.line_count - len(missing)
            ids = [line.key for line in missing if line.key]
            for extra in self._objects(delivery.user_id, missing, batch_id_for(ids)):
                if self.store.put_if_absent(extra.key, extra.body, deadline):
                    accepted += extra.line_count
                    written.append(extra.key)
                else:
                    already_present += extra.line_count
        if already_present:
            logger.info(
                "Objects already present (an earlier attempt wrote them)",
                extra={
                    "destination": self.name,
                    "batch_id": delivery.batch_id,
                    "lines": already_present,
                },
            )
        return DeliveryReport(
            destination=self.name,
            accepted=accepted,
            already_present=already_present,
            objects=tuple(written) or tuple(obj.key for obj in objects),
        )

    def _objects(self, user_id: str, lines: Sequence[OutputLine], batch_id: str) -> list[S3Object]:
        return s3_objects(lines, prefix=self.prefix, user_id=user_id, batch_id=batch_id)

    def _missing_from(
        self, obj: S3Object, lines: Sequence[OutputLine], deadline: Deadline
    ) -> list[OutputLine]:
        """The lines of `obj` the stored object lacks: by key (log_id, finding id), or for a
        line with no key (a gap record), by its exact text: a redelivered batch keeps its old
        batch id, so its object may exist with other lines than this delivery's."""
        try:
            stored = gzip.decompress(self.store.get(obj.key, deadline)).decode("utf-8")
        except (OSError, EOFError, UnicodeDecodeError, zlib.error) as error:
            raise DeliveryError(
                f"{self.name}: object {obj.key!r} is unreadable: {error}"
            ) from error
        stored_lines = set(stored.splitlines())
        present = {record_key(line) for line in stored_lines}
        in_object = set(gzip.decompress(obj.body).decode("utf-8").splitlines())
        return [
            line
            for line in lines
            if line.line in in_object
            and (line.line not in stored_lines if line.key is None else line.key not in present)
        ]
