"""The real-time path end to end: Auth0's log stream (devtools/log_stream.py) onto the partner
event bus on moto's server, the template's rule and event pattern, the real-time handler, and
the scheduled runs reconciling what the stream missed; both write the same destinations."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from devtools.auth0_simulator import Auth0Simulator
from devtools.harness import LocalDeployment
from devtools.local_aws import LocalAws
from devtools.log_stream import eventbridge_event
from devtools.realtime_stack import RealtimePath
from devtools.traffic import attack_burst, generate_user_events
from tests.e2e.conftest import Clock, deployer, ok, simulator_on
from tests.e2e.test_integration import assert_delivered_once, ids_of

pytestmark = pytest.mark.integration

WATCHED = ("auth0|rt-admin-1", "google-oauth2|1098765", "samlp|corp|ops@x.io")
OTHER = "auth0|rt-not-watched"


@pytest.fixture
def sim(clock: Clock) -> Iterator[Auth0Simulator]:
    yield from simulator_on(clock)


@pytest.fixture
def deploy(aws: LocalAws, sim: Auth0Simulator, clock: Clock) -> Callable[..., LocalDeployment]:
    return deployer(
        aws, sim, clock, "rt",
        watched_user_ids=WATCHED, READ_MODE="per-user", AUTH0_RATE_LIMIT_PER_SECOND="400",
    )  # fmt: skip


def test_pushed_events_are_delivered_at_once_and_the_next_run_confirms_them(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator, clock: Clock
) -> None:
    # GIVEN a stack whose scheduled run has started its users, and the real-time path on
    stack = deploy()
    realtime = RealtimePath(stack)
    ok(stack.invoke())
    rng = random.Random(3)
    now = clock.now()
    pushed = {
        user: sim.add_events(
            generate_user_events(user, count=4, start=now - timedelta(seconds=30), end=now, rng=rng)
        )
        for user in (*WATCHED, OTHER)
    }
    # WHEN Auth0's stream pushes them (one of them twice)
    emitter = realtime.emitter()
    emitter.emit([e for events in pushed.values() for e in events])
    emitter.emit(pushed[WATCHED[0]][:1])
    # AND one more event sent with the other `detail` shape (the log event itself)
    (flat,) = sim.add_events(
        generate_user_events(WATCHED[1], count=1, start=now, end=now, rng=rng)[:1]
    )
    pushed[WATCHED[1]].append(flat)
    entry = {**emitter.entry(flat), "Detail": json.dumps(flat)}
    assert realtime.events.put_events(Entries=[entry])["FailedEntryCount"] == 0
    invocations = realtime.deliver_pushed()
    # THEN the watched users' events are in both destinations before any scheduled run
    summaries = [ok(i) for i in invocations]
    assert sum(s["RealtimeEvents"] for s in summaries) == 13
    assert sum(s["RealtimeDuplicates"] for s in summaries) == 1
    # the other user's events never reached the function: the rule's pattern kept them out
    assert sum(s["RealtimeIgnored"] for s in summaries) == 0
    for user in WATCHED:
        assert_delivered_once(stack, user, ids_of(pushed[user]))
    assert stack.cloudwatch_records(OTHER) == []
    # AND the next scheduled run delivers nothing again: it confirms what the stream delivered
    clock.offset += 300
    run = stack.invoke()
    result = ok(run)
    assert result["forwarded"] == 0
    assert sum(u["realtime_confirmed"] for u in result["users"]) == 13
    metrics = run.metrics()
    assert metrics["ReconciledEvents"] == 0
    assert metrics["RealtimeConfirmedEvents"] == 13
    assert metrics["RealtimeStalled"] == 0
    for user in WATCHED:
        assert_delivered_once(stack, user, ids_of(pushed[user]))


def test_a_lossy_stream_and_the_schedule_deliver_every_event_once(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator, clock: Clock
) -> None:
    # GIVEN 50 users, 5 of them watched, whose 1,000 events (and the others' 1,000) arrive over
    # an hour, one of them under a credential-stuffing burst; Auth0's stream drops 5 %, sends
    # 3 % twice, reorders every batch, and is paused for 10 minutes; the schedule runs every 5
    watched = tuple(f"auth0|watched-{i}" for i in range(5))
    others = tuple(f"auth0|other-{i:02d}" for i in range(45))
    stack = deploy(watched_user_ids=watched)
    realtime = RealtimePath(stack)
    emitter = realtime.emitter(seed=7, drop=0.05, duplicate=0.03, reorder=True)
    rng = random.Random(8)
    polls = [ok(stack.invoke())]  # the first run fixes every user's start
    poll_metrics: list[dict[str, float]] = []
    pushes: list[dict[str, Any]] = []
    expected: dict[str, list[str]] = {user: [] for user in watched}
    per_minute = [1000 // 60 + (1 if minute < 1000 % 60 else 0) for minute in range(60)]
    for minute in range(60):
        clock.offset += 60
        now = clock.now()
        start = now - timedelta(seconds=59)
        mine = _traffic(watched, per_minute[minute], start, now, rng)
        if minute == 40:
            mine = attack_burst(watched[0], count=len(mine), start=start, seconds=40, rng=rng)
        theirs = _traffic(others, per_minute[minute], start, now, rng)
        added = sim.add_events(sorted([*mine, *theirs], key=lambda e: e["date"]))
        for event in added:
            if event["user_id"] in expected:
                expected[event["user_id"]].append(event["log_id"])
        emitter.paused = 20 <= minute < 30
        emitter.emit(added)
        pushes += [ok(i) for i in realtime.deliver_pushed()]
        if minute % 5 == 4:
            run = stack.invoke()
            polls.append(ok(run))
            poll_metrics.append(run.metrics())
    for _ in range(2):  # what the last minutes' reads have not verified yet
        clock.offset += 300
        run = stack.invoke()
        polls.append(ok(run))
        poll_metrics.append(run.metrics())
    # THEN every watched event is in both destinations once, and no other user's
    assert sum(len(ids) for ids in expected.values()) == 1000
    for user in watched:
        assert_delivered_once(stack, user, expected[user])
    assert all(stack.cloudwatch_records(user) == [] for user in others[:5])
    # AND the schedule delivered exactly what the stream dropped (the pause included); the
    # stream delivered the rest, once, whatever it repeated
    watched_ids = {i for ids in expected.values() for i in ids}
    dropped = set(emitter.dropped) & watched_ids
    assert len(dropped) > 10 * 60 * 1000 // 60 // 60  # the pause alone lost about 170
    assert sum(m["ReconciledEvents"] for m in poll_metrics) == len(dropped)
    assert sum(p["RealtimeEvents"] for p in pushes) == 1000 - len(dropped)
    assert sum(p["RealtimeDuplicates"] for p in pushes) >= len(
        set(emitter.duplicated) & watched_ids
    )
    # AND the stall alarm's metric is up for the runs in the pause, and only for them
    stalled = [int(m["RealtimeStalled"]) for m in poll_metrics]
    assert stalled[4:6] == [1, 1] and sum(stalled) == 2, stalled
    # AND every finding is in the destinations once (the burst's among them)
    raised = sum(sum(u["findings"].values()) for s in (*pushes, *polls) for u in s["users"])
    found: Counter[str] = Counter()
    for user in watched:
        in_cloudwatch = _finding_ids(stack.cloudwatch_records(user))
        assert in_cloudwatch == _finding_ids(stack.s3_records(user))
        found += in_cloudwatch
    assert set(found.values()) == {1}
    assert sum(found.values()) == raised
    assert any(
        r["_forwarder"].get("rule") == "failed_login_burst"
        for r in stack.cloudwatch_records(watched[0])
        if r.get("_forwarder", {}).get("record_type") == "finding"
    )


def _finding_ids(records: list[dict[str, Any]]) -> Counter[str]:
    return Counter(
        r["_forwarder"]["finding_id"]
        for r in records
        if r.get("_forwarder", {}).get("record_type") == "finding"
    )


def _traffic(
    users: tuple[str, ...], count: int, start: datetime, end: datetime, rng: random.Random
) -> list[dict[str, Any]]:
    """Exactly `count` events of `users`, dated in [start, end)."""
    events: list[dict[str, Any]] = []
    while len(events) < count:
        events += generate_user_events(rng.choice(users), count=1, start=start, end=end, rng=rng)
    return events[:count]


def test_a_push_for_a_user_the_schedule_has_not_started_is_left_to_it(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator, clock: Clock
) -> None:
    # GIVEN a stack whose scheduled function has not run yet (no checkpoint: START_FROM decides
    # where a user starts, and only the reads fix it)
    stack = deploy(START_FROM="now")
    realtime = RealtimePath(stack)
    now = clock.now()
    (event,) = sim.add_events(
        generate_user_events(WATCHED[0], count=1, start=now, end=now, rng=random.Random(4))[:1]
    )
    # WHEN Auth0 pushes a watched user's event (one EventBridge event, as the rule invokes)
    pushed = ok(realtime.invoke(eventbridge_event(event, realtime.source)))
    # THEN nothing is delivered yet, and the invocation says it left the event to the reads
    assert (pushed["RealtimeEvents"], pushed["RealtimeLeftToReads"]) == (0, 1)
    assert stack.cloudwatch_records(WATCHED[0]) == []
    # AND the first scheduled run starts the user where START_FROM says (now: after that
    # event, as without the stream), and from then on pushes are delivered and confirmed
    run = stack.invoke()
    assert ok(run)["forwarded"] == 0
    clock.offset += 60
    (later,) = sim.add_events(
        generate_user_events(
            WATCHED[0], count=1, start=clock.now(), end=clock.now(), rng=random.Random(5)
        )[:1]
    )
    pushed = ok(realtime.invoke(eventbridge_event(later, realtime.source)))
    assert pushed["RealtimeEvents"] == 1
    clock.offset += 300
    run = stack.invoke()
    assert run.metrics()["RealtimeConfirmedEvents"] == 1
    assert_delivered_once(stack, WATCHED[0], [later["log_id"]])


def test_a_push_whose_destination_keeps_failing_ends_in_the_template_s_dead_letter_queue(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator, clock: Clock
) -> None:
    # GIVEN the template's real-time queue and dead-letter queue (its redrive policy, SSE), a
    # watched user started by the schedule, and its S3 bucket gone (every S3 write fails)
    stack = deploy()
    realtime = RealtimePath(stack, visibility_s=0)  # handed-back messages come back at once
    attributes = realtime.sqs.get_queue_attributes(
        QueueUrl=realtime.queue_url, AttributeNames=["All"]
    )["Attributes"]
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == 5
    assert attributes["SqsManagedSseEnabled"] == "true"
    ok(stack.invoke())
    s3 = stack.aws.client("s3")
    bucket = stack.resources.bucket
    assert bucket is not None
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=item["Key"])
    s3.delete_bucket(Bucket=bucket)
    now = clock.now()
    (pushed,) = sim.add_events(
        generate_user_events(WATCHED[0], count=1, start=now, end=now, rng=random.Random(5))
    )
    # WHEN the stream pushes its event and the function is handed it again and again
    realtime.emitter().emit([pushed])
    answers = [i.result for i in realtime.deliver_pushed(batch=1)]
    # THEN each invocation handed it back (RealtimeRetried), and after 5 receives it is in the
    # dead-letter queue, where RealtimeDeadLetterAlarm looks
    assert [a["RealtimeRetried"] for a in answers] == [1] * 5
    assert realtime.dead_letter_url is not None
    dead = realtime.sqs.receive_message(QueueUrl=realtime.dead_letter_url, MaxNumberOfMessages=10)
    bodies = [json.loads(m["Body"]) for m in dead.get("Messages", [])]
    assert [b["detail"]["log_id"] for b in bodies] == [pushed["log_id"]]
