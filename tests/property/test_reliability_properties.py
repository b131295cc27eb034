"""Property tests for the hostile cases: future dates, overlapping runs, lost answers.

Whatever hypothesis draws, every event reaches every destination exactly once.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, cast

from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from log_forwarder.exceptions import DeliveryError
from log_forwarder.forwarder import Forwarder
from log_forwarder.records import Delivery, OutputLine
from log_forwarder.retry import RetryPolicy
from log_forwarder.sinks.cloudwatch import CloudWatchSink
from tests.fakes import (
    FakeAuth0,
    InMemoryCheckpointStore,
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
    run_until_done,
    traffic,
)

HOUR_MS = 3_600_000


@st.composite
def traffic_with_future_dates(draw: st.DrawFn) -> list[tuple[dict[str, str], int]]:
    """Ordinary traffic, some of it dated up to 3 h after it becomes visible (a wrong clock)."""
    events = draw(traffic(max_events=150))
    out = []
    for event, visible in events:
        if draw(st.integers(0, 9)) == 0:
            ahead = draw(st.integers(1, 3 * HOUR_MS))
            out.append((event, max(BASE_MS, visible - ahead)))
        else:
            out.append((event, visible))
    return out


@settings(max_examples=60 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=traffic_with_future_dates(),
    run_offsets=st.lists(st.integers(0, HOUR_MS + OVERLAP_MS), max_size=10),
)
def test_future_dated_events_never_cost_another_event(
    events: list[tuple[dict[str, str], int]], run_offsets: list[int]
) -> None:
    # GIVEN traffic where some events are visible hours before their own date
    fake = FakeAuth0.serving(events)
    sink = RecordingSink()
    forwarder = make_forwarder(fake, [sink], InMemoryCheckpointStore())
    # WHEN the schedule runs at random instants, then after everything became visible
    run_until_done(fake, forwarder, sorted(BASE_MS + o for o in run_offsets) + final_runs())
    # THEN every event was delivered exactly once
    assert_exactly_once(sink, [e["log_id"] for e, _ in events])


class Overlap:
    """Runs a second forwarder once, in the middle of the first one's checkpoint write or
    delivery: the interleavings two concurrent invocations can produce."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.other: Forwarder | None = None
        self.busy = False
        self.skipped = 0

    def maybe(self) -> None:
        if self.other is None or self.busy or self.rng.random() > 0.3:
            return
        self.busy = True
        try:
            report = self.other.run(list(USERS), remaining_ms=lambda: 10**9)
            self.skipped += sum(u.busy for u in report.users)
        finally:
            self.busy = False


@settings(max_examples=40 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=traffic(max_events=150),
    run_offsets=st.lists(st.integers(0, HOUR_MS + OVERLAP_MS), max_size=8),
    seed=st.integers(0, 2**32),
)
def test_overlapping_runs_never_deliver_an_event_twice(
    events: list[tuple[dict[str, str], int]], run_offsets: list[int], seed: int
) -> None:
    # GIVEN two forwarders on the same checkpoints and destinations; the second one runs, now
    # and then, in the middle of the first one's checkpoint writes and deliveries
    overlap = Overlap(seed)
    fake = FakeAuth0.serving(events)
    store = InterleavingStore(overlap.maybe)
    sinks = [RecordingSink("cloudwatch"), RecordingSink("s3")]
    interleave(sinks, overlap.maybe)
    first = make_forwarder(fake, cast(list[RecordingSink], sinks), store)
    overlap.other = make_forwarder(fake, cast(list[RecordingSink], sinks), store)
    # WHEN the schedule runs, with overlaps, and then alone until everything is forwarded
    run_until_done(fake, first, sorted(BASE_MS + o for o in run_offsets))
    overlap.other = None
    run_until_done(fake, first, final_runs())
    # THEN each destination holds every event exactly once
    for sink in sinks:
        assert_exactly_once(sink, [e["log_id"] for e, _ in events])


class FlakyLogs:
    """A CloudWatch Logs client whose PutLogEvents sometimes applies a batch and loses the answer
    (a 503, as after a lost response), sometimes refuses it (throttled, not applied)."""

    def __init__(self, outcomes: list[str]) -> None:
        self.outcomes = outcomes
        self.stored: list[dict[str, Any]] = []
        self.meta = type("Meta", (), {"endpoint_url": "flaky://", "region_name": "test"})()

    def create_log_stream(self, **_: Any) -> dict[str, Any]:
        return {}

    def put_log_events(self, *, logEvents: list[dict[str, Any]], **_: Any) -> dict[str, Any]:
        outcome = self.outcomes.pop(0) if self.outcomes else "ok"
        if outcome in ("ok", "lost"):
            self.stored.extend(logEvents)
        if outcome == "lost":
            raise ClientError(
                {
                    "Error": {"Code": "ServiceUnavailableException"},
                    "ResponseMetadata": {"HTTPStatusCode": 503},
                },
                "PutLogEvents",
            )
        if outcome == "throttled":
            raise ClientError(
                {
                    "Error": {"Code": "ThrottlingException"},
                    "ResponseMetadata": {"HTTPStatusCode": 400},
                },
                "PutLogEvents",
            )
        return {}

    def get_log_events(self, *, startTime: int, endTime: int, **_: Any) -> dict[str, Any]:
        events = [e for e in self.stored if startTime <= e["timestamp"] < endTime]
        return {"events": events, "nextForwardToken": "end"}


@settings(max_examples=80 * SCALE, deadline=None)
@given(
    count=st.integers(1, 60),
    outcomes=st.lists(st.sampled_from(["ok", "lost", "throttled"]), max_size=12),
)
def test_a_putlogevents_with_a_lost_answer_is_never_stored_twice(
    count: int, outcomes: list[str]
) -> None:
    # GIVEN a stream whose puts succeed, lose their answer after applying, or are refused
    logs = FlakyLogs(list(outcomes))
    now = 1_790_000_000_000
    sink = CloudWatchSink(
        "/group",
        cast(Any, logs),
        clock=lambda: now / 1000,
        sleep=lambda _s: None,
        retry=RetryPolicy(attempts=3),
    )
    lines = tuple(
        OutputLine(now - 1000 + i, f'{{"log_id":"e{i}","date":"x"}}', f"e{i}") for i in range(count)
    )
    # WHEN the batch is delivered, and redelivered by the next run after every failure
    redelivery = False
    for _ in range(20):
        try:
            sink.deliver(Delivery("auth0|u", "b", lines, redelivery=redelivery))
            break
        except DeliveryError:
            redelivery = True
    # THEN every line is in the stream exactly once
    stored = Counter(event["message"] for event in logs.stored)
    assert stored == Counter(line.line for line in lines)


def test_a_redelivered_event_dated_far_ahead_is_found_where_it_was_stamped() -> None:
    # GIVEN an event dated 3 h ahead, which CloudWatch took stamped with its delivery time
    logs = FlakyLogs([])
    now = 1_790_000_000_000
    sink = CloudWatchSink(
        "/group", cast(Any, logs), clock=lambda: now / 1000, sleep=lambda _s: None
    )
    ahead = OutputLine(now + 3 * HOUR_MS, '{"log_id":"ahead","date":"x"}', "ahead")
    sink.deliver(Delivery("auth0|u", "b", (ahead,)))
    # WHEN the interrupted batch is redelivered a minute later
    later = CloudWatchSink(
        "/group", cast(Any, logs), clock=lambda: (now + 60_000) / 1000, sleep=lambda _s: None
    )
    later.deliver(Delivery("auth0|u", "b", (ahead,), redelivery=True, since_ms=now - 1000))
    # THEN the stream still holds it once
    assert [e["message"] for e in logs.stored] == [ahead.line]
