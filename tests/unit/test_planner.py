"""The planner (pure) and the executor's checkpoint writes, batch by batch."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from log_forwarder.chunk import Chunk, UserSpan
from log_forwarder.cursor import Cursor, Pending
from log_forwarder.events import LogEvent
from log_forwarder.executor import Checkpoint, execute
from log_forwarder.gaps import ReadFacts
from log_forwarder.planner import Batch, PlanContext, plan_chunk
from tests.cursors import forwarded, with_backlog, with_pending
from tests.fakes import InMemoryCheckpointStore, RecordingSink

T0 = 1_790_000_000_000
# Reads start after every event of these tests: no watermark is capped by them.
LATER = 4_000_000_000_000
OVERLAP = 600_000
DAY = 86_400_000
CONTEXT = PlanContext(
    user_id="auth0|u",
    tenant="t.example.com",
    now_ms=T0 + 3_600_000,
    read_started_ms=T0 + 3_600_000,
    overlap_ms=OVERLAP,
    min_retention_ms=DAY,
    lease_until_ms=T0 + 3_900_000,
)


def ev(log_id: str, date_ms: int) -> LogEvent:
    return LogEvent(date_ms, log_id, {"log_id": log_id, "date": date_ms})


def chunk(events: list[LogEvent], *, complete: bool = True, **facts: Any) -> Chunk:
    return Chunk(events, "user_logs", UserSpan(complete), facts=ReadFacts(**facts))


def ids(batch: Batch) -> list[str]:
    return [e.log_id for e in batch.events]


def test_new_events_are_one_batch_with_an_intent_before_and_none_after() -> None:
    # GIVEN a cursor and a complete read with two new events and one already forwarded
    cursor = forwarded(
        Cursor.fresh(None), [ev("old", T0)], overlap_ms=OVERLAP, read_started_ms=LATER
    )
    # WHEN planned
    plan = plan_chunk(cursor, chunk([ev("b", T0 + 2), ev("old", T0), ev("a", T0 + 1)]), CONTEXT)
    # THEN one batch: the new events in date order, the intent naming them, the cursor after
    # past them with no intent left (the read was complete: the floor rose to the watermark)
    (batch,) = plan.batches
    assert ids(batch) == ["a", "b"] and not batch.redelivery
    assert batch.intent is not None
    assert [p.log_ids for p in batch.intent.outbox.pending] == [frozenset({"a", "b"})]
    assert batch.after.outbox.pending == ()
    assert batch.after.position.watermark_ms == batch.after.position.floor_ms == T0 + 2
    assert batch.after.position.anchor == (T0 + 2, "b") and batch.after.status.forwarded_total == 3
    assert [json.loads(line.line)["log_id"] for line in batch.lines] == ["a", "b"]
    assert plan.selection.duplicates == 1


def test_a_pending_batch_is_redelivered_first_once_claimed_with_this_runs_lease() -> None:
    # GIVEN an interrupted batch {a, b, c} of which this chunk holds a and b, and a new event d
    cursor = with_pending(Cursor.fresh(None), Pending("crashed", frozenset({"a", "b", "c"})))
    events = [ev("a", T0 + 1), ev("b", T0 + 2), ev("d", T0 + 3)]
    # WHEN planned as a chunk that is not the last of the read
    plan = plan_chunk(cursor, chunk(events, complete=False), CONTEXT)
    # THEN the redelivery comes first, under its own id, keeping c pending for a later chunk
    redelivery, fresh = plan.batches
    assert (redelivery.batch_id, ids(redelivery), redelivery.redelivery) == (
        "crashed",
        ["a", "b"],
        True,
    )
    # claimed before delivery: the same intent, now leased to this run until its end
    assert redelivery.intent is not None
    (claimed,) = redelivery.intent.outbox.pending
    assert (claimed.batch_id, claimed.log_ids) == ("crashed", frozenset({"a", "b", "c"}))
    assert claimed.lease_until_ms == CONTEXT.lease_until_ms
    assert [p.log_ids for p in redelivery.after.outbox.pending] == [frozenset({"c"})]
    # AND the new event is a batch of its own whose intent sits beside c's
    assert ids(fresh) == ["d"] and fresh.intent is not None
    assert {p.batch_id for p in fresh.intent.outbox.pending} == {"crashed", fresh.batch_id}
    assert [p.batch_id for p in fresh.after.outbox.pending] == ["crashed"]


def test_pending_events_auth0_no_longer_returns_are_abandoned_and_counted() -> None:
    cursor = with_pending(Cursor.fresh(None), Pending("crashed", frozenset({"gone1", "gone2"})))
    plan = plan_chunk(cursor, chunk([]), CONTEXT)
    (batch,) = plan.batches
    assert batch.abandoned == 2 and batch.events == ()
    assert plan.batches[-1].after.outbox.pending == ()
    # AND they are given up in the destinations too: one gap record naming them, counted on the
    # cursor, which leaves the read where it was (no span of dates is passed over)
    (gap,) = batch.gaps
    assert gap.log_ids == ("gone1", "gone2") and gap.reason.startswith("gone: 2 pending")
    record = json.loads(batch.lines[0].line)["_forwarder"]
    assert (record["record_type"], record["log_ids"]) == ("gap", ["gone1", "gone2"])
    assert batch.after.status.gaps_total == 1
    assert batch.after.position.floor_ms is None  # not moved to the gap's end


def test_a_gap_alone_is_a_batch_of_one_record_with_no_intent() -> None:
    # GIVEN a forwarded anchor that expired unread, and nothing retained at all
    cursor = forwarded(
        Cursor.fresh(None), [ev("anchor", T0)], overlap_ms=OVERLAP, read_started_ms=LATER
    )
    context = PlanContext("auth0|u", "t", T0 + 3 * DAY, T0 + 3 * DAY, OVERLAP, DAY, T0 + 3 * DAY)
    # WHEN a read from the floor plans
    plan = plan_chunk(cursor, chunk([], from_floor=True), context)
    # THEN the gap is one record, delivered without an intent, and the cursor moves past it
    (batch,) = plan.batches
    (gap,) = batch.gaps
    assert batch.intent is None and batch.events == ()
    record = json.loads(batch.lines[0].line)["_forwarder"]
    assert (record["record_type"], record["watched_user_id"]) == ("gap", "auth0|u")
    assert batch.after.position.floor_ms == gap.to_ms and batch.after.status.gaps_total == 1


def test_nothing_new_and_nothing_to_move_plans_no_batch() -> None:
    cursor = forwarded(
        Cursor.fresh(None), [ev("a", T0 + 3_000_000)], overlap_ms=OVERLAP, read_started_ms=LATER
    )
    # As the last complete read left it: its position, and when it read (UserStatus.last_read).
    position = cursor.position.after_complete_read(CONTEXT.read_started_ms, overlap_ms=OVERLAP)
    status = cursor.status.read_at(CONTEXT.read_started_ms)
    cursor = replace(cursor, position=position, status=status)
    assert plan_chunk(cursor, chunk([ev("a", T0 + 3_000_000)]), CONTEXT).batches == ()


def test_the_end_of_a_read_alone_is_a_checkpoint_only_batch() -> None:
    # GIVEN a cursor in backlog mode and a complete read with nothing new
    cursor = with_backlog(Cursor.fresh(None))
    (batch,) = plan_chunk(cursor, chunk([]), CONTEXT).batches
    assert (batch.lines, batch.intent, batch.after.status.backlog) == ((), None, False)


class CountingStore(InMemoryCheckpointStore):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def save(self, user_id: str, state: Any, **kwargs: Any) -> int:
        self.writes += 1
        return super().save(user_id, state, **kwargs)


def test_checkpoint_writes_are_two_per_batch_handing_events_over_redeliveries_included() -> None:
    store = CountingStore()
    sink = RecordingSink()
    checkpoint = Checkpoint(store, "auth0|u", Cursor.fresh(None), None)
    cursor = with_pending(Cursor.fresh(None), Pending("crashed", frozenset({"a"})))
    checkpoint.write(cursor)
    store.writes = 0
    redelivery, fresh = plan_chunk(
        cursor, chunk([ev("a", T0), ev("b", T0 + 1)], complete=False), CONTEXT
    ).batches
    execute(redelivery, checkpoint, [sink])
    assert store.writes == 2  # the claim, then the cursor
    execute(fresh, checkpoint, [sink])
    assert store.writes == 4  # the intent, then the cursor
    assert sink.log_ids() == ["a", "b"] and checkpoint.cursor == fresh.after
