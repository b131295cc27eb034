"""The delivery protocol, whole: write the intent, deliver to every sink, commit the cursor.

    execute(batch)
      1. checkpoint ← batch.intent     the batch's log_ids as pending, leased to this run
         ✗ crash here: once the lease ends, the next run redelivers the batch
      2. every sink ← batch.lines      (each accepts all of them or raises)
         ✗ crash here: some sinks hold the batch; the redelivery skips what they hold
         the shared correlations ← batch.shared  (shared_correlations.py: once per event, with
                                          an outbox of their own for what they find)
      3. a push's batch: the pushed-events table ← its events (pushed.py)
         ✗ crash here: the next load finds the batch recorded there: done, not pending
      4. checkpoint ← batch.after      (the cursor past the batch, intent cleared)
         ✗ crash here: nothing to redo

Checkpoint writes: two per batch that hands events over (a redelivery's intent is its claim),
one per batch of records alone or checkpoint-only batch. Each write is conditional on the
version read, so a run that lost a race raises CheckpointConflict before it delivers anything.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from .cursor import Cursor
from .exceptions import ConfigError
from .planner import Batch
from .records import DeliveryReport
from .sinks import Sink
from .store import SummaryValue, VersionedItem


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
    share: Callable[[Batch], None] | None = None,
) -> None:
    """Deliver one batch to every sink between its two checkpoint writes; `accepted` hears of
    each destination that took it, as it does; `share` gives its events to the shared
    correlations, and `record_pushed` records a push's batch in the pushed-events table, once
    they all did."""
    if batch.intent is not None:
        checkpoint.write(batch.intent)
    delivery = batch.delivery(checkpoint.user_id, checkpoint.deadline)
    for sink in sinks if batch.lines else ():
        accepted(sink.deliver(delivery))
    if batch.shared:
        if share is None:
            raise ConfigError("a batch for the shared correlations, and no shared state to use")
        share(batch)
    if batch.pushed:
        if record_pushed is None:
            raise ConfigError("a push's batch, and no pushed-events table (PUSHED_EVENTS_TABLE)")
        record_pushed(batch)
    if batch.after != checkpoint.cursor:
        checkpoint.write(batch.after)
