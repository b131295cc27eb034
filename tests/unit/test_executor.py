"""The executor (executor.py) itself, with the fakes: one batch's protocol, intent → every sink
→ commit, and where each failure leaves the checkpoint."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from log_forwarder.chunk import Chunk, UserSpan
from log_forwarder.cursor import Cursor
from log_forwarder.events import LogEvent
from log_forwarder.exceptions import CheckpointConflict, DeliveryError, NewerStateError
from log_forwarder.executor import Checkpoint, execute
from log_forwarder.planner import Batch, PlanContext, plan_chunk
from log_forwarder.records import Delivery, DeliveryReport
from log_forwarder.store import decode_state
from tests.fakes import InMemoryCheckpointStore, RecordingSink

ROOT = Path(__file__).resolve().parents[2]
USER = "auth0|u"
T0 = 1_790_000_000_000
CONTEXT = PlanContext(
    user_id=USER,
    tenant="t.example.com",
    now_ms=T0 + 3_600_000,
    read_started_ms=T0 + 3_600_000,
    overlap_ms=600_000,
    min_retention_ms=86_400_000,
    lease_until_ms=T0 + 3_900_000,
)


def ev(log_id: str, date_ms: int) -> LogEvent:
    return LogEvent(date_ms, log_id, {"log_id": log_id, "date": date_ms})


def batch_of(cursor: Cursor, *events: LogEvent) -> Batch:
    (batch,) = plan_chunk(cursor, Chunk(list(events), "user_logs", UserSpan(True)), CONTEXT).batches
    return batch


def pending_ids(store: InMemoryCheckpointStore) -> set[str]:
    state = decode_state(USER, store.item(USER)["state"])
    cursor = Cursor.from_state(state)
    return set(cursor.outbox.log_ids)


class Watching(RecordingSink):
    """A destination that notes what the checkpoint held when the batch reached it."""

    def __init__(self, store: InMemoryCheckpointStore) -> None:
        super().__init__("watching")
        self.store = store
        self.pending_at_delivery: list[set[str]] = []

    def deliver(self, delivery: Delivery) -> DeliveryReport:
        self.pending_at_delivery.append(pending_ids(self.store))
        return super().deliver(delivery)


def test_the_intent_is_written_before_any_sink_and_cleared_after_every_one() -> None:
    # GIVEN a new user's checkpoint and a batch of two new events
    store = InMemoryCheckpointStore()
    checkpoint = Checkpoint(store, USER, Cursor.fresh(None), None)
    first, second = Watching(store), Watching(store)
    batch = batch_of(checkpoint.cursor, ev("a", T0 + 1), ev("b", T0 + 2))
    accepted: list[DeliveryReport] = []
    # WHEN it is executed
    execute(batch, checkpoint, [first, second], accepted.append)
    # THEN both sinks saw the batch's ids pending (the write-ahead intent), each took the lines,
    # and the commit cleared the intent: two writes in all
    assert first.pending_at_delivery == second.pending_at_delivery == [{"a", "b"}]
    assert first.log_ids() == second.log_ids() == ["a", "b"]
    assert [(r.destination, r.accepted) for r in accepted] == [("watching", 2), ("watching", 2)]
    assert pending_ids(store) == set()
    assert checkpoint.version == 2


def test_a_sink_that_fails_leaves_the_intent_and_the_next_plan_redelivers_it() -> None:
    # GIVEN two sinks, the second failing after the first took the batch
    store = InMemoryCheckpointStore()
    checkpoint = Checkpoint(store, USER, Cursor.fresh(None), None)
    taken, failing = RecordingSink("taken"), RecordingSink("failing", crash=lambda _i: "before")
    batch = batch_of(checkpoint.cursor, ev("a", T0 + 1))
    # WHEN it is executed
    with pytest.raises(DeliveryError, match="failing"):
        execute(batch, checkpoint, [taken, failing])
    # THEN the checkpoint still holds the intent (nothing moved past the batch), and the plan
    # of the next run against it is the redelivery of that batch, under the same id
    assert pending_ids(store) == {"a"}
    assert taken.log_ids() == ["a"] and failing.log_ids() == []
    again = batch_of(checkpoint.cursor, ev("a", T0 + 1))
    assert again.redelivery and again.batch_id == batch.batch_id


def test_a_checkpoint_only_batch_writes_once_and_calls_no_sink() -> None:
    # GIVEN a read that found nothing new (the floor moves with time)
    store = InMemoryCheckpointStore()
    checkpoint = Checkpoint(store, USER, Cursor.fresh(None, backlog=True), None)
    sink = RecordingSink()
    batch = batch_of(checkpoint.cursor)
    assert not batch.lines and batch.intent is None
    # WHEN executed
    execute(batch, checkpoint, [sink])
    # THEN one checkpoint write, no delivery
    assert (checkpoint.version, sink.deliveries) == (1, 0)


def test_a_lost_race_stops_before_any_sink() -> None:
    # GIVEN another run wrote the checkpoint after this one read it
    store = InMemoryCheckpointStore()
    checkpoint = Checkpoint(store, USER, Cursor.fresh(None), None)
    store.save(USER, Cursor.fresh(None).to_state(), expected_version=None)
    sink = RecordingSink()
    # WHEN a batch is executed against the stale version
    with pytest.raises(CheckpointConflict):
        execute(batch_of(checkpoint.cursor, ev("a", T0 + 1)), checkpoint, [sink])
    # THEN nothing was delivered
    assert sink.deliveries == 0


def test_an_item_a_newer_release_wrote_is_never_written_nor_delivered_from() -> None:
    store = InMemoryCheckpointStore()
    refused = NewerStateError("checkpoint state v9")
    checkpoint = Checkpoint(store, USER, Cursor.fresh(None), 4, refused=refused)
    sink = RecordingSink()
    with pytest.raises(NewerStateError):
        execute(batch_of(checkpoint.cursor, ev("a", T0 + 1)), checkpoint, [sink])
    assert sink.deliveries == 0 and store.item(USER) == {}


PROTOCOL_WITHOUT_IO = textwrap.dedent(
    """
    import sys

    class Blocked:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"httpx", "boto3", "botocore"}:
                raise ImportError(f"{name} is blocked")
            return None

    sys.meta_path.insert(0, Blocked())
    from tests.unit.test_executor import (
        Checkpoint, Cursor, InMemoryCheckpointStore, RecordingSink, T0, USER, batch_of, ev,
        execute, pending_ids,
    )
    store = InMemoryCheckpointStore()
    checkpoint = Checkpoint(store, USER, Cursor.fresh(None), None)
    sink = RecordingSink()
    execute(batch_of(checkpoint.cursor, ev("a", T0 + 1)), checkpoint, [sink])
    assert sink.log_ids() == ["a"] and pending_ids(store) == set()
    print("delivered")
    """
)


def test_the_protocol_runs_over_the_fakes_with_httpx_boto3_and_botocore_blocked() -> None:
    # The executor, the planner and the fakes are the whole of it: no AWS or HTTP library.
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", PROTOCOL_WITHOUT_IO],
        env={"PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "delivered"
