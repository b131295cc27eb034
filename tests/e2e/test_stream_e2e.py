"""End to end through the handler, reading the tenant stream: the simulator serves
GET /api/v2/logs?from=&take= with ids that follow ingestion, moto's server holds the template's
resources. Each test counts, per destination, what was expected and delivered (the ledger that
tests/conftest.py prints), and fails on anything missing or repeated.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest

from devtools.auth0_simulator import Auth0Simulator, _ApiError
from devtools.aws_fault_proxy import AwsFaultProxy
from devtools.harness import LocalDeployment
from devtools.local_aws import LocalAws
from devtools.traffic import attack_burst, generate_user_events, iso
from log_forwarder.read_mode import TENANT_KEY, TenantState
from log_forwarder.sinks.batching import user_slug
from tests.e2e.conftest import Clock, deployer, ok, simulator_on
from tests.e2e.test_integration import assert_delivered_once, ids_of

pytestmark = pytest.mark.integration

USERS = ("auth0|5f7c8ec7c33c6c004bbafe82", "google-oauth2|1098/odd id@x=y", "samlp|corp|ana")
OTHERS = ("auth0|someone-else", "auth0|not-watched")


@pytest.fixture
def sim(clock: Clock) -> Iterator[Auth0Simulator]:
    yield from simulator_on(clock)


@pytest.fixture
def deploy(aws: LocalAws, sim: Auth0Simulator, clock: Clock) -> Callable[..., LocalDeployment]:
    return deployer(
        aws, sim, clock, "st",
        watched_user_ids=USERS, READ_MODE="stream", MAX_CONCURRENT_USERS="4",
        AUTH0_RATE_LIMIT_PER_SECOND="400",
    )  # fmt: skip


def history(
    sim: Auth0Simulator,
    users: tuple[str, ...],
    count: int,
    start: datetime,
    end: datetime,
    seed: int,
) -> dict[str, list[str]]:
    rng = random.Random(seed)
    return {
        user: ids_of(
            sim.add_events(generate_user_events(user, count=count, start=start, end=end, rng=rng))
        )
        for user in users
    }


def test_stream_forwards_late_events_and_ties_once_even_past_the_overlap_window(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator, clock: Clock
) -> None:
    # GIVEN an hour of history for three watched users and two others, in stream mode, and a
    # per-user stack beside it on the same tenant
    start = clock.now()
    expected = history(sim, USERS, 40, start - timedelta(hours=1), start - timedelta(minutes=2), 7)
    history(sim, OTHERS, 40, start - timedelta(hours=1), start, 8)
    stack, per_user = deploy(), deploy(READ_MODE="per-user")
    first = ok(stack.invoke())
    ok(per_user.invoke())
    assert (first["read_mode"], first["forwarded"]) == ("stream", 120)
    # WHEN Auth0 makes visible an event dated 20 minutes ago (twice the overlap window) only
    # now, so that it gets a log_id after everything forwarded; and two events share the newest
    # forwarded date of a user, one of them tied with another user's event
    clock.offset += 300
    late_user, tied_user = USERS[1], USERS[2]
    rng = random.Random(3)
    late = generate_user_events(late_user, count=1, start=start, end=start, rng=rng)
    late[0]["date"] = iso(clock.now() - timedelta(minutes=20))
    newest = max(sim.visible_events(tied_user), key=lambda e: e["date"])["date"]
    ties = [
        *generate_user_events(tied_user, count=2, start=start, end=start, rng=rng),
        *generate_user_events(USERS[0], count=1, start=start, end=start, rng=rng),
    ]
    for tie in ties:
        tie["date"] = newest
    forwarded_before = max(e["log_id"] for e in sim.visible_events())
    added = sim.add_events([*late, *ties])
    assert added[0]["log_id"] > forwarded_before
    for event in added:
        expected[event["user_id"]].append(event["log_id"])
    second = ok(stack.invoke())
    # THEN the stream forwards each once: the late one, the ties on both sides of the date
    assert second["forwarded"] == 4
    assert sum(u["late_events"] for u in second["users"]) >= 1
    for user in USERS:
        assert_delivered_once(stack, user, expected[user])
    # AND reading per user, the event late by twice the window is lost (as docs/guarantees.md's Guarantees
    # say for that mode), the others arrive
    lost = ok(per_user.invoke())
    assert lost["forwarded"] == 3
    assert added[0]["log_id"] not in {r.get("log_id") for r in per_user.s3_records(late_user)}
    # AND an idle run costs one call (the end of the log), whatever the number of users
    assert ok(stack.invoke())["api_calls"] == 1


def test_a_burst_of_5000_events_across_50_users(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator, clock: Clock
) -> None:
    # GIVEN 50 watched users, quiet since a first run
    users = tuple(f"auth0|burst-{i:02d}" for i in range(50))
    stack = deploy(watched_user_ids=users, START_FROM="now", DESTINATIONS="cloudwatch,s3")
    for user in users:
        sim.add_user(user)
    ok(stack.invoke())
    # WHEN a credential-stuffing wave brings 100 events to each (5,000) and 1,000 others'
    rng = random.Random(5)
    now = clock.now()
    burst = {
        user: ids_of(sim.add_events(attack_burst(user, count=100, start=now, seconds=120, rng=rng)))
        for user in users
    }
    sim.add_events(attack_burst(OTHERS[0], count=1000, start=now, seconds=120, rng=rng))
    clock.offset += 300
    result = ok(stack.invoke())
    # THEN all 5,000 reach both destinations once, for one call per 100 tenant events, one for
    # the end of the log, and one search for where the stream starts (the log was empty before)
    assert (result["forwarded"], result["stream_events"]) == (5000, 6000)
    assert result["api_calls"] == 6000 // 100 + 1 + 1
    for user in users:
        assert_delivered_once(stack, user, burst[user])


def test_events_that_expired_while_the_stream_was_not_read_are_a_gap(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator, clock: Clock
) -> None:
    # GIVEN a tenant that keeps events an hour, and users forwarded up to 20 minutes ago
    sim.retention_s = 3600
    start = clock.now()
    kept = history(sim, USERS, 2, start - timedelta(minutes=25), start - timedelta(minutes=20), 4)
    stack = deploy(AUTH0_LOG_RETENTION_HOURS="1", DESTINATIONS="s3")
    ok(stack.invoke())
    # WHEN the function does not run for 90 minutes, while events happen 10 to 20 minutes after
    # that run (expired before the next) and 80 to 85 minutes after it (kept)
    rng = random.Random(6)
    lost = {
        user: sim.add_events(
            generate_user_events(
                user, count=3, start=start + timedelta(minutes=10),
                end=start + timedelta(minutes=20), rng=rng,
            ),
            visible_at=clock() + 600,
        )
        for user in USERS
    }  # fmt: skip
    later = {
        user: sim.add_events(
            generate_user_events(
                user, count=4, start=start + timedelta(minutes=80),
                end=start + timedelta(minutes=85), rng=rng,
            ),
            visible_at=clock() + 4800,
        )
        for user in USERS
    }  # fmt: skip
    clock.offset += 90 * 60
    result = ok(stack.invoke())
    # THEN the retained events are forwarded, and each user gets one gap record spanning the
    # expired ones, bounded by what the stream verified and the retention's reach
    assert (result["forwarded"], result["gaps"]) == (12, 3)
    for user in USERS:
        gaps = [r["_forwarder"] for r in stack.s3_records(user)
                if r["_forwarder"].get("record_type") == "gap"]  # fmt: skip
        assert len(gaps) == 1 and gaps[0]["reason"].startswith("expired"), [
            (g["from"], g["to"], g["reason"][:30], g["detected_at"]) for g in gaps
        ]
        assert all(gaps[0]["from"] < e["date"] < gaps[0]["to"] for e in lost[user])
        assert gaps[0]["to"] < min(e["date"] for e in later[user])
        assert_delivered_once(stack, user, kept[user] + ids_of(later[user]), ["s3"])
    # AND the next run reports nothing again
    assert ok(stack.invoke())["gaps"] == 0


def test_switching_modes_between_runs_loses_and_repeats_nothing(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator, clock: Clock
) -> None:
    # GIVEN history, and a stack whose READ_MODE changes from run to run
    start = clock.now()
    expected = history(sim, USERS, 30, start - timedelta(hours=2), start - timedelta(minutes=1), 9)
    stack = deploy()
    rng = random.Random(10)
    modes = ["per-user", "stream", "per-user", "per-user", "stream", "auto", "stream", "per-user"]
    seen = []
    for mode in modes:
        stack.env["READ_MODE"] = mode
        result = ok(stack.invoke())
        seen.append(result["read_mode"])
        # WHEN events arrive between runs, some visible up to 5 minutes late
        clock.offset += 300
        for user in USERS:
            fresh = generate_user_events(
                user, count=rng.randint(0, 12), start=clock.now() - timedelta(minutes=4),
                end=clock.now(), rng=rng,
            )  # fmt: skip
            late = generate_user_events(
                user, count=1, start=clock.now() - timedelta(minutes=5),
                end=clock.now() - timedelta(minutes=5), rng=rng,
            )  # fmt: skip
            expected[user] += ids_of(sim.add_events(fresh))
            expected[user] += ids_of(sim.add_events(late, visible_at=clock() + 120))
    clock.offset += 600
    stack.env["READ_MODE"] = "stream"
    ok(stack.invoke())
    # THEN whatever the order of modes, each event reached each destination once
    assert seen[:5] == ["per-user", "stream", "per-user", "per-user", "stream"]
    for user in USERS:
        assert_delivered_once(stack, user, expected[user])


def test_without_read_logs_the_stream_is_unavailable_and_the_run_says_why(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator, clock: Clock
) -> None:
    # GIVEN a token limited to read:logs_users
    sim.set_scopes(["read:logs_users"])
    start = clock.now()
    expected = history(sim, USERS, 10, start - timedelta(hours=1), start, 11)
    for mode in ("auto", "stream"):
        stack = deploy(READ_MODE=mode)
        # WHEN the function runs, auto or told to read the stream
        invocation = stack.invoke()
        result = ok(invocation)
        # THEN it reads per user, forwards everything, and says why: in the report, the logs
        # and the tenant item
        assert result["read_mode"] == "per-user"
        assert "unavailable" in result["read_mode_reason"]
        assert "read:logs" in (result["stream_unavailable"] or "")
        assert "The tenant stream is unavailable" in invocation.output
        item = stack.aws.client("dynamodb").get_item(
            TableName=stack.resources.table_name, Key={"user_id": {"S": TENANT_KEY}}
        )["Item"]
        assert "read:logs" in item["stream_unavailable"]["S"]
        assert item["read_mode"]["S"] == "per-user"
        for user in USERS:
            assert_delivered_once(stack, user, expected[user])


def test_a_stream_checkpoint_auth0_refuses_is_read_again_from_what_was_verified(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator, clock: Clock
) -> None:
    # GIVEN a tenant that keeps events two hours, with someone else's event every 5 minutes, and
    # a first stream run whose checkpoint ends on a watched user's event 35 minutes old
    sim.retention_s = 7200
    start = clock.now()
    for k in range(-24, 13):
        date = start + timedelta(minutes=5 * k)
        trickle = generate_user_events(
            OTHERS[0], count=1, start=date, end=date, rng=random.Random(k)
        )
        sim.add_events(trickle, visible_at=max(clock(), date.timestamp()))
    expected = history(
        sim, USERS, 5, start - timedelta(minutes=40), start - timedelta(minutes=35), 12
    )
    stack = deploy(AUTH0_LOG_RETENTION_HOURS="2")
    ok(stack.invoke())
    # WHEN that event expires before the next run (95 minutes later: the stream itself was read
    # recently enough, nothing else expired unread), new events come, and the server refuses a
    # `from` it no longer holds (undocumented; the documented answer is the events after it)
    sim.unknown_from_status = 400
    clock.offset += 95 * 60
    fresh = history(sim, USERS, 3, clock.now() - timedelta(minutes=5), clock.now(), 13)
    invocation = stack.invoke()
    result = ok(invocation)
    # THEN the stream is read again from what it had verified (an id the server holds), and
    # every event arrived once: the re-read ones dropped by the users' seats, no gap
    assert "Auth0 refused the stream checkpoint" in invocation.output
    assert (result["forwarded"], result["gaps"]) == (9, 0)
    for user in USERS:
        assert_delivered_once(stack, user, expected[user] + fresh[user])


def test_a_backlog_larger_than_a_run_can_read_continues_across_runs_and_modes(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator, clock: Clock
) -> None:
    # GIVEN 3,000 retained events of three users (and 1,500 others') and runs whose time runs
    # out after ten Auth0 calls, alternating the stream and per-user reads
    start = clock.now()
    expected = history(
        sim, USERS, 1000, start - timedelta(hours=6), start - timedelta(minutes=1), 14
    )
    history(sim, OTHERS, 750, start - timedelta(hours=6), start, 15)
    stack = deploy(TIME_MARGIN_SECONDS="60")
    modes = ["stream", "stream", "per-user", "stream", "per-user", "stream"]
    completes = []
    for run in range(40):
        stack.env["READ_MODE"] = modes[run % len(modes)]
        before = sim.stats.calls()
        result = ok(
            stack.invoke(
                # After ten calls, less than the margin is left (no new read starts) but enough
                # for a delivery under way (an AWS call starts only with 13 s left).
                remaining_ms=lambda b=before: 200_000 if sim.stats.calls() - b < 10 else 59_000
            )
        )
        completes.append(result.get("stream_complete"))
        clock.offset += 300
        done = all(not u["backlog"] and not u["deferred"] for u in result["users"]) and result.get(
            "stream_complete"
        ) in (True, None)
        if done and run >= len(modes):
            break
    # THEN it took several runs, and every event arrived once, in whichever mode read it
    assert False in completes
    for user in USERS:
        assert_delivered_once(stack, user, expected[user])


def test_the_stream_checkpoint_never_moves_past_an_undelivered_event(
    deploy: Callable[..., LocalDeployment], aws: LocalAws, sim: Auth0Simulator, clock: Clock
) -> None:
    # GIVEN a stream run behind a proxy that will refuse every write of the tenant item (the
    # stream checkpoint), after the users' own commits went through
    start = clock.now()
    expected = history(sim, USERS, 20, start - timedelta(hours=1), start, 16)
    with AwsFaultProxy(aws.endpoint_url) as proxy:
        stack = deploy(AWS_ENDPOINT_URL=proxy.url)
        ok(stack.invoke())
        clock.offset += 300
        rng = random.Random(17)
        for user in USERS:
            expected[user] += ids_of(
                sim.add_events(generate_user_events(user, count=15, start=clock.now(),
                                                    end=clock.now(), rng=rng))
            )  # fmt: skip
        proxy.add("DynamoDB_20120810.UpdateItem", "refuse", times=1000,
                  body_contains=TENANT_KEY.encode())  # fmt: skip
        # WHEN the run delivers and commits every user's window, then cannot move the checkpoint
        failed = stack.invoke()
        # THEN it fails loudly, having forwarded the new events once
        assert failed.error is not None and "tenant stream stopped" in str(failed.error)
        for user in USERS:
            held = Counter(r.get("log_id") for r in stack.s3_events(user))
            assert set(held) == set(expected[user]) and max(held.values()) == 1
        # AND the next run reads the window again: every user's seat drops what it holds
        proxy.clear()
        again = ok(stack.invoke())
        assert again["forwarded"] == 0
        assert sum(u["duplicates_dropped"] for u in again["users"]) == 45
    for user in USERS:
        assert_delivered_once(stack, user, expected[user])


def test_an_auth0_outage_in_the_middle_of_the_stream_fails_the_run_after_its_report(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator, clock: Clock
) -> None:
    # GIVEN 250 new events past a first stream run, and Auth0 answering 503 to every tenant
    # log read after the first page, for longer than the client retries
    start = clock.now()
    expected = history(sim, USERS, 10, start - timedelta(hours=1), start, 18)
    stack = deploy()
    ok(stack.invoke())
    clock.offset += 300
    fresh = history(sim, USERS, 250 // 3 + 1, clock.now() - timedelta(minutes=4), clock.now(), 19)
    original = sim._checkpoint
    pages = []

    def failing(query: Any, now: float, link: dict[str, str]) -> Any:
        pages.append(query)
        if len(pages) > 1:
            raise _ApiError(503, "Service Unavailable", "unavailable")
        return original(query, now, link)

    sim._checkpoint = failing  # type: ignore[method-assign]
    # WHEN the run reads the stream
    failed = stack.invoke()
    # THEN it fails loudly, but after publishing its metrics; the window it could not finish
    # reading was not delivered, and the stream checkpoint did not move
    assert failed.error is not None and "reading the tenant stream" in str(failed.error)
    assert failed.metrics()["StreamMode"] == 1
    assert failed.metrics()["EventsForwarded"] == 0
    sim._checkpoint = original  # type: ignore[method-assign]
    # AND the next run carries on: everything once
    again = ok(stack.invoke())
    assert again["stream_complete"] is True
    for user in USERS:
        assert_delivered_once(stack, user, expected[user] + fresh[user])


def test_a_user_taken_off_the_watch_list_and_added_back_gets_what_it_missed_once(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator, clock: Clock
) -> None:
    # GIVEN three users on the stream, all seated by a first run
    start = clock.now()
    expected = history(sim, USERS, 20, start - timedelta(hours=1), start - timedelta(minutes=2), 21)
    stack = deploy()
    assert ok(stack.invoke())["read_mode"] == "stream"
    away = USERS[1]
    rng = random.Random(22)

    def more() -> None:
        for user in USERS:
            batch = generate_user_events(user, count=7, start=clock.now(), end=clock.now(), rng=rng)
            expected[user] += ids_of(sim.add_events(batch))

    # WHEN one user is taken off the watch list for two runs while the stream moves on
    stack.env["WATCHED_USER_IDS"] = ",".join(u for u in USERS if u != away)
    for _ in range(2):
        clock.offset += 300
        more()
        result = ok(stack.invoke())
        assert result["read_mode"] == "stream" and away not in {
            u["user_id"] for u in result["users"]
        }
    # AND is added back, with more events for everyone
    stack.env["WATCHED_USER_IDS"] = ",".join(USERS)
    clock.offset += 300
    more()
    back = ok(stack.invoke())
    # THEN its seat is not trusted: it is read per user from its own cursor, and rejoins
    mine = next(u for u in back["users"] if u["user_id"] == away)
    assert mine["forwarded"] == 21
    clock.offset += 300
    more()
    ok(stack.invoke())
    # AND every event of every user arrived once, those of its runs away included
    for user in USERS:
        assert_delivered_once(stack, user, expected[user])


def test_users_seated_by_a_run_whose_time_ran_out_are_on_the_roster_and_not_read_again(
    deploy: Callable[..., LocalDeployment], aws: LocalAws, sim: Auth0Simulator, clock: Clock
) -> None:
    # GIVEN 12 new users with history, and a first stream run whose every checkpoint write
    # costs 25 s of its 200 s (one join at a time): it can seat only some of them
    users = tuple(f"auth0|seat-{i:02d}" for i in range(12))
    start = clock.now()
    expected = history(sim, users, 3, start - timedelta(hours=2), start - timedelta(hours=1), 31)
    with AwsFaultProxy(aws.endpoint_url) as proxy:
        stack = deploy(
            AWS_ENDPOINT_URL=proxy.url,
            watched_user_ids=users,
            MAX_CONCURRENT_USERS="1",
            TIME_MARGIN_SECONDS="60",
        )

        def budget_ms() -> int:
            writes = proxy.seen.count("DynamoDB_20120810.UpdateItem")
            return max(0, 200_000 - 25_000 * writes)

        # WHEN it runs out of time among the joins
        first = stack.invoke(remaining_ms=budget_ms)
        assert first.result is not None
        seated = {u for u in users if (stack.checkpoint(u) or {}).get("seat")}
        # THEN it seated some, not all, and the tenant item names exactly those as members:
        # before, it went on joining into the time the roster's write needed, and the next run
        # trusted none of the seats
        assert 0 < len(seated) < len(users)
        tenant = TenantState.from_state(stack.checkpoint(TENANT_KEY))
        assert {u for u in users if tenant.moved_for(u)} == seated
    # AND the next run reads only the others per user; every event arrives once
    stack.env["AWS_ENDPOINT_URL"] = aws.endpoint_url
    sim.stats.reset()
    clock.offset += 1200  # past the leases of a delivery the first run may have begun
    ok(stack.invoke(cold=True))
    assert {u for u in users if sim.stats.calls(user_id=u)} == set(users) - seated
    for user in users:
        assert_delivered_once(stack, user, expected[user])


@dataclass
class StaleSeats:
    """Two users whose seats the stream moved past while their events were pending."""

    stack: LocalDeployment
    stuck: tuple[str, str]
    healthy: tuple[str, str]
    expected: dict[str, list[str]]
    lost: dict[str, list[str]]
    seats: dict[str, str]


def stale_seats(
    deploy: Callable[..., LocalDeployment], aws: LocalAws, sim: Auth0Simulator, clock: Clock
) -> StaleSeats:
    # Four users on the stream of a tenant that keeps events an hour
    sim.retention_s = 3600
    stuck, healthy = ("auth0|stuck-a", "auth0|stuck-b"), ("auth0|fine-c", "auth0|fine-d")
    users = (*stuck, *healthy)
    start = clock.now()
    expected = history(
        sim, users, 2, start - timedelta(minutes=30), start - timedelta(minutes=20), 21
    )
    rng = random.Random(22)
    with AwsFaultProxy(aws.endpoint_url) as proxy:
        stack = deploy(AWS_ENDPOINT_URL=proxy.url, watched_user_ids=users, DESTINATIONS="s3")
        ok(stack.invoke())
        # and a window that brings each stuck user 20 events dated 55 minutes ago (visible only
        # now), which S3 refuses: their batches stay pending past their seats
        clock.offset += 300
        lost = {
            user: ids_of(sim.add_events(generate_user_events(
                user, count=20, start=clock.now() - timedelta(minutes=56),
                end=clock.now() - timedelta(minutes=55), rng=rng)))
            for user in stuck
        }  # fmt: skip
        for user in stuck:
            proxy.add("S3.PUT", "refuse", times=1000, path_contains=user_slug(user))
        failed = stack.invoke()
        assert failed.error is not None
        seats = {}
        for user in stuck:
            state = stack.checkpoint(user)
            assert state is not None and state["seat"] is not None
            assert sorted(i for p in state["pending"] for i in p["log_ids"]) == sorted(lost[user])
            seats[user] = state["seat"]["joined"]
        proxy.clear()
    # and the stuck users are off the watch list for one run: the stream moves on without them
    stack.env.update(WATCHED_USER_IDS=",".join(healthy), AWS_ENDPOINT_URL=aws.endpoint_url)
    ok(stack.invoke(cold=True))
    return StaleSeats(stack, stuck, healthy, expected, lost, seats)


def test_pending_events_auth0_no_longer_serves_are_one_gap_and_never_asked_for_again(
    deploy: Callable[..., LocalDeployment], aws: LocalAws, sim: Auth0Simulator, clock: Clock
) -> None:
    # GIVEN four users on the stream, two of them left behind by it with 20 pending events each
    stale = stale_seats(deploy, aws, sim, clock)
    stack, stuck, healthy, expected = stale.stack, stale.stuck, stale.healthy, stale.expected
    lost, seats, users, rng = (
        stale.lost,
        stale.seats,
        (*stale.stuck, *stale.healthy),
        random.Random(23),
    )
    # WHEN they come back once Auth0 no longer has their pending events (past its retention:
    # GET /api/v2/logs/{id} answers 404), while the healthy users have new events
    clock.offset += 600
    for user in healthy:
        expected[user] += ids_of(sim.add_events(generate_user_events(
            user, count=3, start=clock.now(), end=clock.now(), rng=rng)))  # fmt: skip
    stack.env["WATCHED_USER_IDS"] = ",".join(users)
    sim.stats.reset()
    budget_ms = 120_000
    began = time.monotonic()
    run = ok(stack.invoke(cold=True, remaining_ms=budget_ms))
    spent_s = time.monotonic() - began
    # THEN each stuck user's pending events are given up with one gap record naming them
    for user in stuck:
        gaps = [r["_forwarder"] for r in stack.s3_records(user) if "log_id" not in r]
        assert [(g["record_type"], g["log_ids"]) for g in gaps] == [("gap", sorted(lost[user]))]
        assert "404" in gaps[0]["reason"]
        state = stack.checkpoint(user)
        assert state is not None and state["pending"] == []
        assert state["seat"]["joined"] > seats[user]  # the old seat ended; it joined again
    # AND every id was asked for once, the run ended well inside its budget, and the other users
    # were forwarded in the same run
    assert sim.stats.calls("log") == 40
    assert spent_s < budget_ms / 1000 / 4
    assert {u["user_id"]: u["forwarded"] for u in run["users"]}.items() >= {
        user: 3 for user in healthy
    }.items()
    for user in healthy:
        assert_delivered_once(stack, user, expected[user], destinations=("s3",))
    # AND no later run spends a call on them again
    sim.stats.reset()
    assert ok(stack.invoke())["gaps"] == 0
    assert sim.stats.calls("log") == 0


def test_reading_back_left_behind_users_keeps_to_the_share_the_stream_leaves_them(
    deploy: Callable[..., LocalDeployment], aws: LocalAws, sim: Auth0Simulator, clock: Clock
) -> None:
    # GIVEN two users left behind by the stream with 20 pending events each, which Auth0 still
    # serves but slowly (1.6 s a call: 32 s for each user's 20), and new events for the others
    stale = stale_seats(deploy, aws, sim, clock)
    stack, stuck, healthy = stale.stack, stale.stuck, stale.healthy
    rng = random.Random(24)
    for user in healthy:
        stale.expected[user] += ids_of(sim.add_events(generate_user_events(
            user, count=3, start=clock.now(), end=clock.now(), rng=rng)))  # fmt: skip
    stack.env.update(WATCHED_USER_IDS=",".join((*stuck, *healthy)), TIME_MARGIN_SECONDS="1")
    sim.latency_s = 1.6
    sim.stats.reset()

    # WHEN a run with 44 s left reads them back before they join (a destination write needs
    # 13 s left to start: AWS_ATTEMPT_S)
    ends = time.monotonic() + 44
    run = ok(stack.invoke(cold=True, remaining_ms=lambda: int((ends - time.monotonic()) * 1000)))

    # THEN the read-back stopped at the half of the time the stream leaves to per-user reads
    # (before the fix it took the run's time, and nothing could be delivered after it)
    asked = sim.stats.calls("log")
    assert 0 < asked < 40
    # AND the stream had its share: the others' new events were forwarded in the same run
    forwarded = {u["user_id"]: u["forwarded"] for u in run["users"]}
    assert all(forwarded[user] == 3 for user in healthy)
    # AND what was not read back waits on the seats, and arrives with the next runs, once each
    sim.latency_s = 0.0
    for _ in range(3):
        ok(stack.invoke())
    for user in (*stuck, *healthy):
        assert_delivered_once(stack, user, stale.expected[user] + stale.lost.get(user, []),
                              destinations=("s3",))  # fmt: skip
