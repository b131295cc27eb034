"""End to end: the handler named by template.yaml, over real HTTP, against the Auth0 simulator and
moto's server, with the resources the template declares.

Every test counts, per destination, the events expected and the events delivered, and fails on any
missing or repeated one.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools.auth0_simulator import Auth0Simulator
from devtools.harness import LocalDeployment
from devtools.local_aws import LocalAws
from devtools.traffic import attack_burst, generate_user_events, iso
from log_forwarder.events import parse_date_ms
from tests.e2e.conftest import stack_name

pytestmark = pytest.mark.integration

# (test, destination, expected, delivered, missing, repeated), printed at the end of the run.
DELIVERY_LEDGER: list[tuple[str, str, int, int, int, int]] = []

USERS = ("auth0|5f7c8ec7c33c6c004bbafe82", "google-oauth2|1098/odd id@x=y", "samlp|corp|ana")


@pytest.fixture
def deploy(aws: LocalAws, sim: Auth0Simulator) -> Callable[..., LocalDeployment]:
    def make(**kwargs: Any) -> LocalDeployment:
        kwargs.setdefault("watched_user_ids", USERS)
        # The per-user reads, call counts included; tests/e2e/test_stream_e2e.py has the stream's.
        kwargs.setdefault("READ_MODE", "per-user")
        kwargs.setdefault("MAX_CONCURRENT_USERS", "3")
        kwargs.setdefault("AUTH0_RATE_LIMIT_PER_SECOND", "400")
        return LocalDeployment(aws, sim, stack_name=stack_name("it"), **kwargs)

    return make


def now() -> datetime:
    return datetime.now(UTC)


def ids_of(events: Sequence[dict[str, Any]]) -> list[str]:
    return [e["log_id"] for e in events]


def assert_delivered_once(
    stack: LocalDeployment,
    user_id: str,
    expected: Sequence[str],
    destinations: Sequence[str] = ("cloudwatch", "s3"),
) -> None:
    for destination in destinations:
        if destination == "cloudwatch":
            records = stack.cloudwatch_records(user_id)
        else:
            records = stack.s3_records(user_id)
        got = Counter(r["log_id"] for r in records if "log_id" in r)
        missing = set(expected) - set(got)
        repeated = [k for k, v in got.items() if v > 1]
        extra = set(got) - set(expected)
        DELIVERY_LEDGER.append(
            (
                os.environ.get("PYTEST_CURRENT_TEST", "?").split("::")[-1].split(" ")[0],
                destination,
                len(expected),
                sum(got.values()),
                len(missing),
                len(repeated),
            )
        )
        assert (len(expected), len(missing), len(repeated), len(extra)) == (
            len(expected),
            0,
            0,
            0,
        ), (
            f"{destination} for {user_id}: expected {len(expected)}, missing {len(missing)}, "
            f"repeated {len(repeated)}, unexpected {len(extra)}"
        )


def ok(invocation: Any) -> dict[str, Any]:
    assert invocation.error is None, f"run failed: {invocation.error!r}"
    assert invocation.result is not None
    return dict(invocation.result)


def test_two_runs_with_late_events_and_ties_reach_both_destinations_once(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    # GIVEN three watched users with an hour of realistic history, equal dates included
    rng = random.Random(7)
    stack = deploy()
    expected: dict[str, list[str]] = {}
    for user in USERS:
        events = generate_user_events(
            user,
            count=60,
            start=now() - timedelta(hours=1),
            end=now() - timedelta(minutes=1),
            rng=rng,
        )
        expected[user] = ids_of(sim.add_events(events))
    # WHEN the function runs
    first = ok(stack.invoke())
    assert first["forwarded"] == 180
    # AND an event dated 5 minutes ago only now becomes visible, older than the newest event
    # already forwarded (late); and two more share the newest forwarded date (ties)
    late_user = USERS[1]
    newest = max(sim.visible_events(late_user), key=lambda e: e["date"])
    late = generate_user_events(
        late_user,
        count=1,
        start=now() - timedelta(minutes=5),
        end=now() - timedelta(minutes=5),
        rng=rng,
    )
    assert late[0]["date"] < newest["date"]
    ties = generate_user_events(late_user, count=2, start=now(), end=now(), rng=rng)
    for tie in ties:
        tie["date"] = newest["date"]
    expected[late_user] += ids_of(sim.add_events([*late, *ties]))
    for user in USERS:
        fresh = generate_user_events(
            user, count=25, start=now(), end=now() + timedelta(seconds=1), rng=rng
        )
        expected[user] += ids_of(sim.add_events(fresh))
    second = ok(stack.invoke())
    # THEN every event reached both destinations exactly once, late and tied ones included
    assert second["forwarded"] == 75 + 3
    late_report = next(u for u in second["users"] if u["user_id"] == late_user)
    assert late_report["late_events"] == 1
    for user in USERS:
        assert_delivered_once(stack, user, expected[user])
    # AND CloudWatch stamps each event with its Auth0 date, not the time it was sent
    for record in stack.cloudwatch_events(late_user):
        date = datetime.fromisoformat(record["date"].replace("Z", "+00:00"))
        assert record["@timestamp"] == int(date.timestamp() * 1000)
    # AND S3 holds gzipped JSON lines under the prefix and a dt= partition
    assert all(key.startswith("auth0-logs/dt=") for key in stack.s3_objects())
    # AND a third run with nothing new forwards nothing and costs one call per user
    third = ok(stack.invoke())
    assert (third["forwarded"], third["api_calls"]) == (0, len(USERS))


def test_idle_run_costs_one_call_per_user(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    # GIVEN 25 watched users, some with history, after a first run
    users = [f"auth0|idle-{i:02d}" for i in range(25)]
    rng = random.Random(3)
    for user in users[::3]:
        sim.add_events(
            generate_user_events(
                user, count=20, start=now() - timedelta(hours=2), end=now(), rng=rng
            )
        )
    stack = deploy(watched_user_ids=users, MAX_CONCURRENT_USERS="4")
    ok(stack.invoke())
    # WHEN the next run finds nothing new
    idle = ok(stack.invoke())
    # THEN it made exactly one call per user and forwarded nothing
    assert idle["forwarded"] == 0
    assert idle["api_calls"] == len(users)


def test_the_real_sample_events_go_through_unchanged(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator, sample_events: list[dict[str, Any]]
) -> None:
    # GIVEN the 150 real events of the public corpus (repeated log_ids, an array scope), served
    # as the history of the users they belong to, dated as they are (2021)
    users = sorted({e["user_id"] for e in sample_events if e.get("user_id")})
    sim.add_events([e for e in sample_events if e.get("user_id")])
    stack = deploy(watched_user_ids=users, DESTINATIONS="s3")
    # WHEN the function runs
    result = ok(stack.invoke())
    # THEN each distinct event reached S3 once, with every Auth0 field exactly as served
    records = stack.s3_events()
    by_id: dict[str, list[dict[str, Any]]] = {}
    for event in sample_events:
        if event.get("user_id"):
            by_id.setdefault(event["log_id"], []).append(event)
    assert sorted(r["log_id"] for r in records) == sorted(by_id)
    for record in records:
        auth0_part = {k: v for k, v in record.items() if k != "_forwarder"}
        assert auth0_part in by_id[record["log_id"]]
    assert result["users"][0]["duplicates_dropped"] >= 0
    assert sum(u["duplicates_dropped"] for u in result["users"]) == sum(
        len(v) - 1 for v in by_id.values()
    )


def test_user_with_more_than_1000_retained_events_gets_every_new_one(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    # GIVEN a user with 1,500 retained events and a checkpoint at the newest of them
    user = USERS[0]
    rng = random.Random(11)
    sim.add_events(
        generate_user_events(
            user,
            count=1500,
            start=now() - timedelta(hours=20),
            end=now() - timedelta(hours=1),
            rng=rng,
        )
    )
    stack = deploy(watched_user_ids=[user], START_FROM="now")
    ok(stack.invoke())  # fixes the start at "now": nothing of the history is forwarded
    # WHEN 150 new events arrive and the function runs
    fresh = ids_of(
        sim.add_events(
            generate_user_events(
                user, count=150, start=now(), end=now() + timedelta(seconds=5), rng=rng
            )
        )
    )
    result = ok(stack.invoke())
    # THEN all 150 are forwarded, with two newest-first calls: ascending paging could not reach them
    assert result["forwarded"] == 150
    assert result["api_calls"] == 2
    assert_delivered_once(stack, user, fresh)


def test_warm_container_whose_token_was_revoked_recovers_with_one_new_token(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    rng = random.Random(5)
    user = USERS[2]
    stack = deploy(watched_user_ids=[user])
    sim.add_events(
        generate_user_events(
            user, count=10, start=now() - timedelta(minutes=30), end=now(), rng=rng
        )
    )
    first = ok(stack.invoke(cold=True))
    assert first["token_requests"] == 1
    # WHEN the token is revoked between two runs of the same (warm) container
    sim.revoke_tokens()
    sim.add_events(generate_user_events(user, count=5, start=now(), end=now(), rng=rng))
    second = ok(stack.invoke())
    # THEN the run gets one new token and completes
    assert (second["token_requests"], second["forwarded"]) == (1, 5)
    third = ok(stack.invoke())
    assert third["token_requests"] == 0  # reused while valid
    assert_delivered_once(stack, user, [e["log_id"] for e in sim.visible_events(user)])


def test_gateway_errors_with_html_bodies_are_retried(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    user = USERS[0]
    sim.add_events(
        generate_user_events(
            user, count=30, start=now() - timedelta(minutes=30), end=now(), rng=random.Random(1)
        )
    )
    stack = deploy(watched_user_ids=[user])
    sim.fail_next(2, status=502, html=True)
    result = ok(stack.invoke())
    assert (result["forwarded"], result["retries"]) == (30, 2)


def test_burst_of_1200_events_between_two_runs(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    # GIVEN a user watched since a quiet first run
    user = USERS[1]
    rng = random.Random(21)
    before = ids_of(
        sim.add_events(
            generate_user_events(
                user,
                count=20,
                start=now() - timedelta(hours=1),
                end=now() - timedelta(minutes=20),
                rng=rng,
            )
        )
    )
    stack = deploy(watched_user_ids=[user])
    ok(stack.invoke())
    # WHEN a credential-stuffing attack produces 1,200 events before the next run
    burst = ids_of(
        sim.add_events(
            attack_burst(user, count=1200, start=now() - timedelta(minutes=4), seconds=200, rng=rng)
        )
    )
    result = ok(stack.invoke())
    # THEN all 1,200 are forwarded once, in date order, to both destinations
    assert result["forwarded"] == 1200
    assert_delivered_once(stack, user, before + burst)
    dates = [r["date"] for r in stack.cloudwatch_events(user)]
    assert dates == sorted(dates)
    s3_dates = [r["date"] for r in stack.s3_events(user)]
    assert sorted(s3_dates) == sorted(dates)
    # AND the cost stayed close to ceil(n / 100): ten newest-first pages plus the search for the rest
    assert result["api_calls"] <= 12 + 2


def test_first_run_over_2500_retained_events_continues_over_runs(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    # GIVEN 2,500 retained events and START_FROM=earliest
    user = USERS[0]
    events = ids_of(
        sim.add_events(
            generate_user_events(
                user,
                count=2500,
                start=now() - timedelta(days=2),
                end=now() - timedelta(minutes=1),
                rng=random.Random(8),
            )
        )
    )
    stack = deploy(watched_user_ids=[user], START_FROM="earliest", TIME_MARGIN_SECONDS="60")
    # WHEN the time budget lets each run read only about ten pages
    forwarded = 0
    runs = 0
    while runs < 15:
        runs += 1
        # About ten pages' worth of time per run: after ten Auth0 calls less than the 60 s
        # margin is left, enough to deliver what was read and too little to read on.
        calls_before = sim.stats.calls()
        result = ok(
            stack.invoke(
                remaining_ms=lambda before=calls_before: (
                    200_000 if sim.stats.calls() - before < 10 else 50_000
                )
            )
        )
        forwarded += result["forwarded"]
        if not result["users"][0]["backlog"] and not result["users"][0]["deferred"]:
            break
    # THEN after several runs everything was forwarded exactly once, oldest first
    assert runs > 1
    assert forwarded == 2500
    assert_delivered_once(stack, user, events)
    dates = [r["date"] for r in stack.cloudwatch_events(user)]
    assert dates == sorted(dates)
    assert stack.checkpoint(user)["backlog"] is False


def test_expired_events_yield_a_gap_record_with_its_bounds(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    # GIVEN a tenant that keeps events one hour, and a user forwarded up to an event 20 minutes
    # old; the tenant and the function share a clock the test can move
    offset = [0.0]
    clock = lambda: time.time() + offset[0]  # noqa: E731
    sim.clock = clock
    sim.retention_s = 3600
    user = USERS[2]
    rng = random.Random(4)
    start = now()
    anchor = sim.add_events(
        generate_user_events(
            user,
            count=1,
            start=start - timedelta(minutes=20),
            end=start - timedelta(minutes=20),
            rng=rng,
        )
    )
    stack = deploy(
        watched_user_ids=[user], DESTINATIONS="s3", AUTH0_LOG_RETENTION_HOURS="1", clock=clock
    )
    ok(stack.invoke())
    # WHEN the function does not run for 90 minutes, while events happen 10 to 20 minutes after
    # that run (they expire before the next one) and 80 minutes after it (they are kept)
    lost = sim.add_events(
        generate_user_events(
            user,
            count=3,
            start=start + timedelta(minutes=10),
            end=start + timedelta(minutes=20),
            rng=rng,
        )
    )
    kept = sim.add_events(
        generate_user_events(
            user,
            count=4,
            start=start + timedelta(minutes=80),
            end=start + timedelta(minutes=85),
            rng=rng,
        )
    )
    offset[0] = 90 * 60
    result = ok(stack.invoke())
    # THEN the retained events are forwarded, and one gap record spans the expired ones: from what
    # the first run verified (its start less the overlap window) to the retention cutoff
    assert (result["forwarded"], result["gaps"]) == (4, 1)
    gaps = [
        r["_forwarder"]
        for r in stack.s3_records(user)
        if r["_forwarder"].get("record_type") == "gap"
    ]
    assert len(gaps) == 1
    assert anchor[0]["date"] < gaps[0]["from"] <= iso(start - timedelta(minutes=9))
    cutoff = datetime.fromisoformat(gaps[0]["to"].replace("Z", "+00:00"))
    assert abs((cutoff - (start + timedelta(minutes=30))).total_seconds()) < 5
    assert all(gaps[0]["from"] < e["date"] < gaps[0]["to"] for e in lost)
    assert gaps[0]["to"] < min(e["date"] for e in kept)
    assert_delivered_once(stack, user, ids_of(anchor) + ids_of(kept), destinations=["s3"])
    # AND the next run reports nothing again
    assert ok(stack.invoke())["gaps"] == 0


def test_without_search_scope_a_burst_yields_a_gap_not_a_failed_run(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    # GIVEN a token limited to read:logs_users, and a first run
    sim.set_scopes(["read:logs_users"])
    user = USERS[0]
    rng = random.Random(9)
    sim.add_events(
        generate_user_events(
            user,
            count=5,
            start=now() - timedelta(hours=1),
            end=now() - timedelta(minutes=30),
            rng=rng,
        )
    )
    stack = deploy(watched_user_ids=[user])
    ok(stack.invoke())
    # WHEN 1,300 events arrive, more than the per-user endpoint can reach
    burst = sim.add_events(
        attack_burst(user, count=1300, start=now() - timedelta(minutes=4), seconds=200, rng=rng)
    )
    result = ok(stack.invoke())
    # THEN the run succeeds, forwards the newest 1,000 and reports the rest as a gap
    assert result["forwarded"] == 1000 and result["gaps"] == 1
    newest = sorted(burst, key=lambda e: e["date"])[-1000:]
    gap = next(
        r["_forwarder"]
        for r in stack.cloudwatch_records(user)
        if r.get("_forwarder", {}).get("record_type") == "gap"
    )
    # The gap runs up to and including the oldest date read: ties cut by the page limit at that
    # very millisecond are inside it too.
    assert parse_date_ms(gap["to"]) == parse_date_ms(newest[0]["date"]) + 1
    assert gap["reason"].startswith("possible") and "read:logs" in gap["reason"]
    # Nothing Auth0 returns can be trusted to count them, so the record claims no count.
    assert "estimated_count" not in gap


@pytest.mark.filterwarnings("ignore:No application metrics")  # the run stops before any
def test_a_time_margin_not_below_the_timeout_fails_loudly(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    # GIVEN a margin of 60 s and a function that starts with 30 s to live
    stack = deploy(watched_user_ids=[USERS[0]], TIME_MARGIN_SECONDS="60")
    invocation = stack.invoke(remaining_ms=30_000)
    # THEN the run fails naming the variable, instead of deferring every user forever
    assert invocation.error is not None
    assert "TIME_MARGIN_SECONDS=60" in str(invocation.error)
    assert sim.stats.calls() == 0
