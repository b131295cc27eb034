"""The delivery protocol, whole: write the intent, deliver to every sink, commit the cursor.

    execute(batch)
      1. checkpoint ← batch.intent     (if any: the batch's log_ids, as pending)
         ✗ crash here: the next run finds the intent and redelivers the batch
      2. every sink ← batch.lines      (each accepts all of them or raises)
         ✗ crash here: some sinks hold the batch; the redelivery skips what they hold
      3. checkpoint ← batch.after      (the cursor past the batch, intent cleared)
         ✗ crash here: nothing to redo

Checkpoint writes: two per batch of new events, one per redelivery (its intent is already
stored) and one per checkpoint-only batch. Each write is conditional on the version read, so a
run that lost the race raises CheckpointConflict before it delivers anything more.
"""

from __future__ import annotations

from collections.abc import Sequence

from .checkpoint_store import CheckpointStore
from .cursor import Cursor
from .planner import Batch
from .records import DeliveryReport
from .sinks import Sink


class Checkpoint:
    """A user's checkpoint as last written, and the conditional writes that move it."""

    def __init__(
        self, store: CheckpointStore, user_id: str, cursor: Cursor, version: int | None
    ) -> None:
        self._store = store
        self.user_id = user_id
        self._version = version
        self.cursor = cursor

    def write(self, cursor: Cursor) -> None:
        self._version = self._store.save(
            self.user_id,
            cursor.to_state(),
            expected_version=self._version,
            summary=cursor.summary(),
        )
        self.cursor = cursor


def execute(batch: Batch, checkpoint: Checkpoint, sinks: Sequence[Sink]) -> list[DeliveryReport]:
    """Deliver one batch to every sink between its two checkpoint writes."""
    if batch.intent is not None:
        checkpoint.write(batch.intent)
    delivery = batch.delivery(checkpoint.user_id)
    reports = [sink.deliver(delivery) for sink in sinks] if batch.lines else []
    if batch.after != checkpoint.cursor:
        checkpoint.write(batch.after)
    return reports
