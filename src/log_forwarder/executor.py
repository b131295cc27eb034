"""The delivery protocol, whole: write the intent, deliver to every sink, commit the cursor.

    execute(batch)
      1. checkpoint ← batch.intent     the batch's log_ids as pending, leased to this run
         ✗ crash here: once the lease ends, the next run redelivers the batch
      2. every sink ← batch.lines      (each accepts all of them or raises)
         ✗ crash here: some sinks hold the batch; the redelivery skips what they hold
      3. a push's batch: the pushed-events table ← its events (pushed.py)
         ✗ crash here: the next load finds the batch recorded there: done, not pending
      4. checkpoint ← batch.after      (the cursor past the batch, intent cleared)
         ✗ crash here: nothing to redo

Checkpoint writes: two per batch that hands events over (a redelivery's intent is its claim),
one per batch of records alone or checkpoint-only batch. Each write is conditional on the
version read, so a run that lost a race raises CheckpointConflict before it delivers anything.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

from .cursor import Cursor
from .exceptions import ConfigError, ForwarderError, NewerStateError
from .planner import Batch
from .records import DeliveryReport
from .retry import UNLIMITED, Deadline
from .sinks import Sink
from .store import CheckpointStore, SummaryValue

logger = logging.getLogger(__name__)


class Stored(Protocol):
    """A value kept in the checkpoint table."""

    def to_state(self) -> dict[str, Any]: ...


V = TypeVar("V", bound=Stored)


class VersionedItem(Generic[V]):
    """An item of the checkpoint table as last read or written, and the conditional writes that
    move it: a user's checkpoint, or the tenant item. Every write names the version read, so a
    run that lost a race gets CheckpointConflict instead of moving what another run moved.

    `refused`: the item as stored was written by a newer release that this one cannot read
    (`value` is then only a stand-in): every write raises it, so the item is left untouched."""

    def __init__(
        self,
        store: CheckpointStore,
        key: str,
        value: V,
        version: int | None,
        deadline: Deadline = UNLIMITED,
        *,
        refused: NewerStateError | None = None,
    ) -> None:
        self._store = store
        self.key = key
        self._version = version
        self.value = value
        self.deadline = deadline
        self.refused = refused

    @property
    def version(self) -> int | None:
        """The version last read or written (None: the item does not exist yet)."""
        return self._version

    def write(self, value: V) -> None:
        if self.refused is not None:
            raise self.refused
        self._version = self._store.save(
            self.key,
            value.to_state(),
            expected_version=self._version,
            summary=self.summary_of(value),
            deadline=self.deadline,
        )
        self.value = value

    def summary_of(self, value: V) -> Mapping[str, SummaryValue]:
        """What operators read beside the state (attributes of the item)."""
        raise NotImplementedError

    def write_best_effort(self, value: V, what: str) -> None:
        """Write `value` if it differs; losing it to a failure or a race costs nothing but what
        `what` says (logged)."""
        if value == self.value:
            return
        try:
            self.write(value)
        except ForwarderError as error:
            logger.warning(
                f"Could not update the item; {what}",
                extra={"key": self.key, "error": f"{type(error).__name__}: {error}"},
            )


class Checkpoint(VersionedItem[Cursor]):
    """A user's checkpoint."""

    @property
    def user_id(self) -> str:
        return self.key

    @property
    def cursor(self) -> Cursor:
        return self.value

    def summary_of(self, value: Cursor) -> Mapping[str, SummaryValue]:
        return value.summary()


def execute(
    batch: Batch,
    checkpoint: Checkpoint,
    sinks: Sequence[Sink],
    accepted: Callable[[DeliveryReport], None] = lambda _report: None,
    record_pushed: Callable[[Batch], None] | None = None,
) -> None:
    """Deliver one batch to every sink between its two checkpoint writes; `accepted` hears of
    each destination that took it, as it does; `record_pushed` records a push's batch in the
    pushed-events table once they all did."""
    if batch.intent is not None:
        checkpoint.write(batch.intent)
    delivery = batch.delivery(checkpoint.user_id, checkpoint.deadline)
    for sink in sinks if batch.lines else ():
        accepted(sink.deliver(delivery))
    if batch.pushed:
        if record_pushed is None:
            raise ConfigError("a push's batch, and no pushed-events table (PUSHED_EVENTS_TABLE)")
        record_pushed(batch)
    if batch.after != checkpoint.cursor:
        checkpoint.write(batch.after)
