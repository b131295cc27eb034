"""Property tests of the two paths together: Auth0's log stream pushing events (realtime.py,
Forwarder.push) and the scheduled reads, on the same checkpoints and destinations.

Whatever hypothesis draws (pushes late, lost, repeated, in any order; runs in any read mode, so
that users join and leave the tenant stream between pushes; pushes in the middle of a
run's checkpoint writes and deliveries; destinations failing before or after they accept a
batch, on either path), every event reaches every destination exactly once, and the reads never
count more events as confirmed (delivered by a push first) than the pushes delivered.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from log_forwarder.events import parse_date_ms
from log_forwarder.exceptions import CheckpointError
from log_forwarder.filters import EventFilter
from log_forwarder.forwarder import Forwarder
from log_forwarder.planner import OutputPolicy
from log_forwarder.realtime import Pushed
from tests.fakes import (
    FakeAuth0,
    InMemoryPushedLedger,
    InterleavingStore,
    RecordingSink,
    interleave,
)
from tests.property.test_cursor_properties import (
    BASE_MS,
    OVERLAP_MS,
    SCALE,
    USERS,
    assert_exactly_once,
    final_runs,
    make_forwarder,
)
from tests.property.test_stream_properties import MODES, ingested_traffic, watched

HOUR_MS = 3_600_000


@st.composite
def pushes(
    draw: st.DrawFn, events: list[tuple[dict[str, str], int]]
) -> list[tuple[int, list[dict[str, str]]]]:
    """What the stream sends: each event dropped, or pushed once or twice, from its date (the
    stream can be faster than the Management API, which returns it from `visible`) up to a few
    minutes after it becomes visible; pushes grouped into invocations at random instants."""
    sends: list[tuple[int, dict[str, str]]] = []
    for event, visible in events:
        copies = draw(st.sampled_from([0, 1, 1, 1, 1, 2]))
        date = parse_date_ms(event["date"])
        for _ in range(copies):
            sends.append((date + draw(st.integers(0, visible - date + 5 * 60_000)), event))
    sends.sort(key=lambda send: send[0])
    invocations: list[tuple[int, list[dict[str, str]]]] = []
    i = 0
    while i < len(sends):
        size = draw(st.integers(1, 8))
        group = sends[i : i + size]
        order = draw(st.permutations(range(len(group))))
        invocations.append((group[-1][0], [group[j][1] for j in order]))
        i += size
    return invocations


class Concurrent:
    """Runs the next due push, now and then, in the middle of a checkpoint write or a delivery:
    a real-time invocation racing a scheduled run (and, inside a push, another push)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.queue: list[tuple[int, list[dict[str, str]]]] = []
        self.push: Callable[[list[dict[str, str]]], None] | None = None
        self.now = 0
        self.busy = False

    def maybe(self) -> None:
        if self.busy or self.push is None or not self.queue or self.rng.random() > 0.3:
            return
        if self.queue[0][0] > self.now:
            return
        self.busy = True
        try:
            self.push(self.queue.pop(0)[1])
        finally:
            self.busy = False


class LosingStore(InterleavingStore):
    """Loses, now and then, the checkpoint save right after a pushed-events record: a push's
    commit, after every destination took its batch and the table recorded it."""

    def __init__(self, before_save: Callable[[], None], rng: random.Random) -> None:
        super().__init__(before_save)
        self.rng, self.losing, self.after_record = rng, False, False

    def save(self, user_id: str, state: Any, **kwargs: Any) -> int:
        if self.losing and self.after_record:
            self.after_record = False
            if self.rng.random() < 0.3:
                raise CheckpointError("simulated: a push's commit lost")
        return super().save(user_id, state, **kwargs)


class RecordingLedger(InMemoryPushedLedger):
    """Tells the store when a record was written (the next save is that batch's commit)."""

    def __init__(self, store: LosingStore) -> None:
        super().__init__()
        self.store = store

    def record(self, *args: Any, **kwargs: Any) -> None:
        super().record(*args, **kwargs)
        self.store.after_record = True


@settings(max_examples=50 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    events=ingested_traffic(max_events=120),
    poll_offsets=st.lists(st.integers(0, HOUR_MS + OVERLAP_MS), max_size=10),
    seed=st.integers(0, 2**32),
)
def test_any_interleaving_of_pushes_and_runs_delivers_each_event_once(
    data: st.DataObject,
    events: list[tuple[dict[str, str], int]],
    poll_offsets: list[int],
    seed: int,
) -> None:
    # GIVEN traffic for two watched users among others, some of it failed logins an output
    # filter may keep out, the stream's pushes of it (late, lost,
    # repeated, reordered), destinations that fail before or after accepting a batch, on either
    # path, and runs in read modes drawn at random (per user, the tenant stream, auto): a user
    # can join the stream, or leave it, between pushes
    rng = random.Random(seed)
    crashing = True

    def crash(_index: int) -> str | None:
        return rng.choice([None, None, None, None, "before", "after"]) if crashing else None

    concurrent = Concurrent(seed)
    for event, _ in events:
        event["type"] = data.draw(st.sampled_from(["s", "s", "f"]))
    fake = FakeAuth0.serving(events)
    store = LosingStore(concurrent.maybe, random.Random(seed + 1))
    store.losing = data.draw(st.booleans())
    ledger = RecordingLedger(store)
    sinks = [RecordingSink("cloudwatch", crash=crash), RecordingSink("s3", crash=crash)]
    interleave(sinks, concurrent.maybe)
    modes = data.draw(st.lists(st.sampled_from(MODES), min_size=1, max_size=4))
    keep = data.draw(st.sampled_from([EventFilter(), EventFilter(exclude=frozenset({"f"}))]))

    def forwarder(mode: str) -> Forwarder:
        # One user at a time: the draw alone decides the interleaving, so a failure replays.
        return make_forwarder(
            fake,
            sinks,  # type: ignore[arg-type]
            store,
            ledger,
            output=OutputPolicy(keep=keep),
            MAX_CONCURRENT_USERS="1",
            READ_MODE=mode,
        )

    pusher = forwarder("per-user")
    counted = {"pushed": 0, "confirmed": 0, "runs": 0}

    def push(batch: list[dict[str, str]]) -> None:
        pushed = Pushed.of(iter(batch), frozenset(USERS))
        report = pusher.push(pushed.chunks, remaining_ms=lambda: 30_000)
        counted["pushed"] += sum(u.forwarded for u in report.users)

    def poll() -> None:
        mode = modes[counted["runs"] % len(modes)]
        counted["runs"] += 1
        report = forwarder(mode).run(list(USERS), remaining_ms=lambda: 10**9)
        counted["confirmed"] += sum(u.confirmed for u in report.users)

    concurrent.push = push
    concurrent.queue = data.draw(pushes([(e, v) for e, v in events if e["user_id"] in USERS]))
    timeline = sorted(
        [(BASE_MS + offset, "poll", None) for offset in [0, *poll_offsets]]
        + [(at, "push", index) for index, (at, _) in enumerate(concurrent.queue)],
        key=lambda step: (step[0], step[1]),
    )
    # WHEN runs and pushes happen in time order, pushes also racing the runs' writes
    for at, kind, _ in timeline:
        fake.now_ms = concurrent.now = max(fake.now_ms, at)
        if kind == "poll":
            poll()
        elif concurrent.queue and concurrent.queue[0][0] <= at:
            push(concurrent.queue.pop(0)[1])
    # AND the schedule goes on alone, with healthy destinations
    crashing = store.losing = False
    concurrent.push = None
    for at in final_runs():
        fake.now_ms = at
        poll()
    # THEN each destination holds every watched event the filter keeps exactly once
    kept = [(e, v) for e, v in events if keep.keeps(e)]
    for sink in sinks:
        assert_exactly_once(sink, watched(kept))
    # AND the reads confirmed no more than the pushes delivered (RealtimeConfirmedEvents never
    # counts what a read delivered itself, nor an event twice, nor one the filter kept out, nor
    # one of a push that lost its commit: that push counted it)
    assert counted["confirmed"] <= counted["pushed"], counted
