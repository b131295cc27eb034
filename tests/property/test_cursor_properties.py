"""Property tests of the cursor and the forwarding loop: nothing lost, nothing repeated.

Random traffic for users whose ids need encoding, equal dates, events that become visible late
(up to the overlap window), runs at random instants, bursts past the 1,000-result cap, crashes
before and after delivery, and runs cut short by the time budget. Whatever hypothesis draws, every
event must reach every destination exactly once, each batch in date order.
"""

from __future__ import annotations

import json
import os
import random
from collections import Counter
from collections.abc import Callable

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from log_forwarder.config import Settings
from log_forwarder.events import iso_ms, parse_date_ms, parse_event
from log_forwarder.forwarder import Forwarder
from log_forwarder.planner import OutputPolicy
from tests.fakes import FakeAuth0, InMemoryCheckpointStore, InMemoryPushedLedger, RecordingSink

# PROPERTY_SCALE=10 multiplies the examples for a longer hunt than `make test` affords.
SCALE = int(os.environ.get("PROPERTY_SCALE", "1"))
BASE_MS = 1_790_000_000_000
OVERLAP_MS = 600_000
USERS = ("auth0|a/b c", "google-oauth2|1@x=y")


def make_settings(**overrides: str) -> Settings:
    env = {
        "AUTH0_DOMAIN": "tenant.example.com",
        "AUTH0_CLIENT_ID": "id",
        "AUTH0_CLIENT_SECRET": "secret",
        "CHECKPOINT_TABLE": "checkpoints",
        "DESTINATIONS": "s3",
        "S3_BUCKET": "bucket",
        "OVERLAP_WINDOW_SECONDS": str(OVERLAP_MS // 1000),
        "MAX_CONCURRENT_USERS": "2",
        # These properties are the per-user reads'; tests/property/test_stream_properties.py has the
        # stream's and the switches'.
        "READ_MODE": "per-user",
    }
    env.update(overrides)
    return Settings.from_env(env)


def make_forwarder(
    fake: FakeAuth0,
    sinks: list[RecordingSink],
    store: InMemoryCheckpointStore,
    pushed: InMemoryPushedLedger | None = None,
    *,
    output: OutputPolicy | None = None,
    **overrides: str,
) -> Forwarder:
    return Forwarder(
        settings=make_settings(**overrides),
        source=fake,
        store=store,
        sinks=sinks,
        clock=lambda: fake.now_ms / 1000,
        output=output,
        pushed=pushed if pushed is not None else InMemoryPushedLedger(),
    )


@st.composite
def traffic(
    draw: st.DrawFn, max_events: int = 250, horizon_ms: int = 3_600_000
) -> list[tuple[dict[str, str], int]]:
    """Events as (event, visible_at_ms); dates on a coarse grid so that ties are frequent."""
    count = draw(st.integers(0, max_events))
    grid = draw(st.sampled_from([1, 1000, 60_000]))
    out = []
    for i in range(count):
        date = BASE_MS + draw(st.integers(0, horizon_ms // grid)) * grid
        late = draw(st.one_of(st.just(0), st.just(0), st.integers(0, OVERLAP_MS - 1000)))
        user = draw(st.sampled_from(USERS))
        event = {"log_id": f"900{i:06d}", "date": iso_ms(date) or "", "type": "s", "user_id": user}
        out.append((event, date + late))
    return out


def run_until_done(
    fake: FakeAuth0,
    forwarder: Forwarder,
    run_times: list[int],
    *,
    remaining: Callable[[], int] | None = None,
) -> None:
    for t in run_times:
        fake.now_ms = t
        forwarder.run(list(USERS), remaining_ms=remaining or (lambda: 10**9))


def assert_exactly_once(sink: RecordingSink, expected: list[str]) -> None:
    delivered = Counter(sink.log_ids())
    repeated = {k: v for k, v in delivered.items() if v > 1}
    missing = set(expected) - set(delivered)
    extra = set(delivered) - set(expected)
    assert not repeated, f"{sink.name}: {len(repeated)} events delivered more than once"
    assert not missing, f"{sink.name}: {len(missing)} events never delivered"
    assert not extra, f"{sink.name}: {len(extra)} unexpected events"
    for batch in sink.batches:
        stamps = [line.timestamp_ms for line in batch]
        assert stamps == sorted(stamps), "a batch was not in date order"


def final_runs(horizon_ms: int = 3_600_000) -> list[int]:
    # Past the last visibility instant, enough runs for recovery and backlog to finish.
    end = BASE_MS + horizon_ms + OVERLAP_MS + 1
    return [end + i * 300_000 for i in range(4)]


@settings(max_examples=150 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=traffic(), run_offsets=st.lists(st.integers(0, 3_600_000 + OVERLAP_MS), max_size=12))
def test_random_arrivals_late_events_and_ties_are_forwarded_exactly_once(
    events: list[tuple[dict[str, str], int]], run_offsets: list[int]
) -> None:
    # GIVEN random traffic for two users, some of it visible late, and runs at random instants
    fake = FakeAuth0.serving(events)
    sink = RecordingSink()
    forwarder = make_forwarder(fake, [sink], InMemoryCheckpointStore())
    # WHEN the schedule runs, then keeps running after the last event became visible
    run_until_done(fake, forwarder, sorted(BASE_MS + o for o in run_offsets) + final_runs())
    # THEN every event was delivered exactly once, each batch in date order
    assert_exactly_once(sink, [e["log_id"] for e, _ in events])


@settings(max_examples=60 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    events=traffic(max_events=200),
    run_offsets=st.lists(st.integers(0, 3_600_000 + OVERLAP_MS), max_size=10),
    seed=st.integers(0, 2**32),
)
def test_crashes_before_or_after_delivery_neither_lose_nor_repeat(
    events: list[tuple[dict[str, str], int]], run_offsets: list[int], seed: int
) -> None:
    # GIVEN two destinations that each fail or die mid-batch now and then
    rng = random.Random(seed)
    crashing = True

    def crash(_index: int) -> str | None:
        return rng.choice([None, None, None, "before", "after"]) if crashing else None

    fake = FakeAuth0.serving(events)
    sinks = [RecordingSink("cloudwatch", crash=crash), RecordingSink("s3", crash=crash)]
    forwarder = make_forwarder(fake, sinks, InMemoryCheckpointStore())
    # WHEN runs crash at random points, and later runs find the destinations healthy again
    run_until_done(fake, forwarder, sorted(BASE_MS + o for o in run_offsets))
    crashing = False
    run_until_done(fake, forwarder, final_runs())
    # THEN each destination holds every event exactly once
    for sink in sinks:
        assert_exactly_once(sink, [e["log_id"] for e, _ in events])


@settings(max_examples=25 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    burst=st.integers(900, 2600),
    before=st.integers(0, 150),
    search_allowed=st.booleans(),
    budget_checks=st.integers(1, 6),
)
def test_bursts_past_the_search_cap_and_time_budget(
    burst: int, before: int, search_allowed: bool, budget_checks: int
) -> None:
    # GIVEN a user with some history, a first run, then a burst of more than 1,000 events
    fake = FakeAuth0(search_allowed=search_allowed)
    user = USERS[0]
    ids = []
    for i in range(before + burst):
        offset = i * 50 if i < before else before * 50 + 60_000 + (i - before) * 7
        event = {
            "log_id": f"900{i:07d}",
            "date": iso_ms(BASE_MS + offset) or "",
            "type": "f",
            "user_id": user,
        }
        fake.add(event, visible_at_ms=BASE_MS if i < before else BASE_MS + 200_000)
        ids.append(event["log_id"])
    sink = RecordingSink()
    forwarder = make_forwarder(fake, [sink], InMemoryCheckpointStore())
    fake.now_ms = BASE_MS + 100_000
    forwarder.run([user], remaining_ms=lambda: 10**9)
    # WHEN the following runs are cut short by the time budget after a few chunks
    for i in range(12):
        fake.now_ms = BASE_MS + 300_000 + i * 300_000
        checks = iter(range(budget_checks, -1, -1))
        forwarder.run([user], remaining_ms=lambda c=checks: 10**9 if next(c, 0) > 0 else 0)
    forwarder.run([user], remaining_ms=lambda: 10**9)
    # THEN with search, everything arrives once and in order; without it, whatever could not be
    # reached lies inside a gap record, never skipped silently
    delivered = sink.log_ids()
    assert len(delivered) == len(set(delivered))
    assert delivered == sorted(delivered), "forwarded out of date order"
    if search_allowed:
        assert_exactly_once(sink, ids)
        assert not [line for line in sink.lines if line.log_id is None]
    else:
        gaps = [json.loads(line.line)["_forwarder"] for line in sink.lines if line.log_id is None]
        dates = {e.log_id: e.date_ms for e, _v in ((parse_event(s.event), 0) for s in fake.events)}
        for missing in set(ids) - set(delivered):
            assert any(
                (g["from"] is None or parse_date_ms(g["from"]) < dates[missing])
                and dates[missing] < parse_date_ms(g["to"])
                for g in gaps
            ), "an unreachable event is not covered by any gap record"
