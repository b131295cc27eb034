"""The delivery protocol, whole: write the intent, deliver to every sink, commit the cursor.

    execute(batch)
      1. checkpoint ← batch.intent     the batch's log_ids as pending, leased to this run
         ✗ crash here: once the lease ends, the next run redelivers the batch
      2. every sink ← batch.lines      (each accepts all of them or raises)
         ✗ crash here: some sinks hold the batch; the redelivery skips what they hold
      3. checkpoint ← batch.after      (the cursor past the batch, intent cleared)
         ✗ crash here: nothing to redo

Checkpoint writes: two per batch that hands events over (a redelivery's intent is its claim),
one per batch of records alone or checkpoint-only batch. Each write is conditional on the
version read, so a run that lost a race raises CheckpointConflict before it delivers anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from .checkpoint_store import CheckpointStore
from .cursor import Cursor
from .exceptions import ForwarderError
from .planner import Batch
from .records import DeliveryReport
from .retry import UNLIMITED, Deadline
from .sinks import Sink

logger = logging.getLogger(__name__)


class Checkpoint:
    """A user's checkpoint as last written, and the conditional writes that move it."""

    def __init__(
        self,
        store: CheckpointStore,
        user_id: str,
        cursor: Cursor,
        version: int | None,
        deadline: Deadline = UNLIMITED,
    ) -> None:
        self._store = store
        self.user_id = user_id
        self._version = version
        self.cursor = cursor
        self.deadline = deadline

    @property
    def version(self) -> int | None:
        """The version last read or written (None: the user has no checkpoint yet)."""
        return self._version

    def write(self, cursor: Cursor) -> None:
        self._version = self._store.save(
            self.user_id,
            cursor.to_state(),
            expected_version=self._version,
            summary=cursor.summary(),
            deadline=self.deadline,
        )
        self.cursor = cursor

    def release(self) -> None:
        """Give up this run's leases after it stopped delivering, so the next run need not wait
        for them to expire. Best effort: if it fails, the leases expire on their own."""
        self._write_best_effort(self.cursor.released())

    def note_error(self, error: str, now_ms: int) -> None:
        """As release(), and say on the checkpoint why this user's run failed (for `status`).
        Best effort: the run reports the error anyway."""
        self._write_best_effort(self.cursor.released().with_error(error, now_ms))

    def _write_best_effort(self, cursor: Cursor) -> None:
        if cursor == self.cursor:
            return
        try:
            self.write(cursor)
        except ForwarderError as error:
            logger.warning(
                "Could not update the checkpoint after the run; a lease expires on its own",
                extra={"user_id": self.user_id, "error": f"{type(error).__name__}: {error}"},
            )


def execute(
    batch: Batch,
    checkpoint: Checkpoint,
    sinks: Sequence[Sink],
    accepted: Callable[[DeliveryReport], None] = lambda _report: None,
) -> None:
    """Deliver one batch to every sink between its two checkpoint writes; `accepted` hears of
    each destination that took it, as it does."""
    if batch.intent is not None:
        checkpoint.write(batch.intent)
    delivery = batch.delivery(checkpoint.user_id, checkpoint.deadline)
    for sink in sinks if batch.lines else ():
        accepted(sink.deliver(delivery))
    if batch.after != checkpoint.cursor:
        checkpoint.write(batch.after)
