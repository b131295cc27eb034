"""Detections end to end: through the handler, the simulator and moto's server.

Each rule gets two watched users: one whose events should trigger it, one whose events come close
and should not. One run forwards them all; then every finding must be a record in both
destinations, an event on the default EventBridge bus (read through a rule that targets an SQS
queue), and a `Findings` metric by rule; and the near-miss users must have none.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools.auth0_simulator import Auth0Simulator, RateLimit
from devtools.aws_fault_proxy import AwsFaultProxy
from devtools.harness import FakeLambdaContext, LocalDeployment, invoke_handler
from devtools.local_aws import LocalAws
from devtools.realtime_stack import RealtimePath, sqs_event
from devtools.traffic import generate_user_events
from tests.e2e.conftest import Clock, deployer, ok
from tests.e2e.test_integration import assert_delivered_once, ids_of

pytestmark = pytest.mark.integration

# (rule, triggering or benign) -> figures, printed by conftest.py after the run.
DETECTION_LEDGER: dict[tuple[str, str], int] = {}


def event(
    user: str, kind: str, when: datetime, rng: random.Random, **fields: Any
) -> dict[str, Any]:
    """A realistic event of `user` made into a `kind` event."""
    (made,) = generate_user_events(user, count=1, start=when, end=when, rng=rng)
    made.update(type=kind, **fields)
    return made


def at(country: str) -> dict[str, Any]:
    return {"location_info": {"country_code": country, "country_name": country}}


def management(user: str, actor: str, when: datetime, rng: random.Random) -> dict[str, Any]:
    request = {
        "method": "delete",
        "path": "/api/v2/users/auth0|someone/authenticators",
        "auth": {"user": {"user_id": actor}, "strategy": "jwt"},
    }
    return event(user, "sapi", when, rng, details={"request": request, "response": {}})


def sequences(start: datetime, rng: random.Random) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Per (rule, case): the events of one user. Times are minutes after `start`."""

    def minutes(m: float) -> datetime:
        return start + timedelta(minutes=m)

    def user(rule: str, case: str) -> str:
        return f"auth0|{rule}-{case}"

    def logins(u: str, country: str, count: int, first: float) -> list[dict[str, Any]]:
        return [event(u, "s", minutes(first + i), rng, **at(country)) for i in range(count)]

    burst, calm = user("failed_login_burst", "fires"), user("failed_login_burst", "quiet")
    fresh, known = user("new_source", "fires"), user("new_source", "quiet")
    admin, watched = user("admin_action", "fires"), user("admin_action", "quiet")
    return {
        ("failed_login_burst", "fires"): [event(burst, "fp", minutes(i), rng) for i in range(10)],
        # 9 failures in the hour, and a tenth 2 hours later: never 10 within 60 minutes
        ("failed_login_burst", "quiet"): [event(calm, "fp", minutes(i), rng) for i in range(9)]
        + [event(calm, "fp", minutes(130), rng)],
        ("brute_force_protection", "fires"): [
            event(user("brute_force_protection", "fires"), "limit_wc", minutes(1), rng)
        ],
        ("brute_force_protection", "quiet"): [
            event(user("brute_force_protection", "quiet"), "fp", minutes(1), rng)
        ],
        ("mfa_weakened", "fires"): [
            event(user("mfa_weakened", "fires"), "gd_unenroll", minutes(1), rng)
        ],
        ("mfa_weakened", "quiet"): [
            event(user("mfa_weakened", "quiet"), "gd_enrollment_complete", minutes(1), rng)
        ],
        ("credential_change", "fires"): [
            event(user("credential_change", "fires"), "scp", minutes(1), rng)
        ],
        ("credential_change", "quiet"): [
            event(user("credential_change", "quiet"), "fcp", minutes(1), rng)
        ],
        # the takeover sequence: a factor removed, then the email changed; the other order is
        # not it (each step is still its own rule's finding)
        ("mfa_removed_then_recovery_changed", "fires"): [
            event(user("mfa_removed_then_recovery_changed", "fires"), kind, minutes(m), rng)
            for kind, m in (("gd_unenroll", 1), ("sce", 20))
        ],
        ("mfa_removed_then_recovery_changed", "quiet"): [
            event(user("mfa_removed_then_recovery_changed", "quiet"), kind, minutes(m), rng)
            for kind, m in (("sce", 1), ("gd_unenroll", 20))
        ],
        # the burst, then a login; the login before the burst is not it
        ("success_after_burst", "fires"): [
            event(user("success_after_burst", "fires"), kind, minutes(m), rng)
            for kind, m in [*(("fp", i) for i in range(10)), ("s", 15)]
        ],
        ("success_after_burst", "quiet"): [
            event(user("success_after_burst", "quiet"), kind, minutes(m), rng)
            for kind, m in [("s", 0), *(("fp", i + 1) for i in range(10))]
        ],
        ("breached_password", "fires"): [
            event(user("breached_password", "fires"), "pwd_leak", minutes(1), rng)
        ],
        ("breached_password", "quiet"): [
            event(user("breached_password", "quiet"), "s", minutes(1), rng)
        ],
        # five logins build the baseline; a sixth from another country is new
        ("new_source", "fires"): logins(fresh, "US", 5, 0) + logins(fresh, "BR", 1, 10),
        ("new_source", "quiet"): logins(known, "US", 6, 0),
        ("admin_action", "fires"): [management(admin, admin, minutes(1), rng)],
        # a Management API call recorded on the user but made by someone else
        ("admin_action", "quiet"): [management(watched, "auth0|another-admin", minutes(1), rng)],
    }


@pytest.fixture
def findings_queue(aws: LocalAws) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """An EventBridge rule on the default bus that copies findings into an SQS queue."""
    sqs, events = aws.client("sqs"), aws.client("events")
    name = f"findings-{int(time.time() * 1000)}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    pattern = {
        "source": ["auth0-user-log-forwarder"],
        "detail-type": ["Auth0 watched-user finding"],
    }
    events.put_rule(Name=name, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=name, Targets=[{"Id": "queue", "Arn": arn["QueueArn"]}])

    def received() -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
            messages += [json.loads(m["Body"]) for m in batch]
            for m in batch:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        return messages

    yield received
    events.remove_targets(Rule=name, Ids=["queue"])
    events.delete_rule(Name=name)


def test_each_rule_fires_on_its_sequence_and_not_on_a_near_miss(
    aws: LocalAws, findings_queue: Callable[[], list[dict[str, Any]]]
) -> None:
    # GIVEN, per rule, a user whose events should trigger it and one whose events should not
    start = datetime.now(UTC) - timedelta(hours=4)
    cases = sequences(start, random.Random(42))
    with Auth0Simulator(rate_limit=RateLimit(burst=200, per_second=500)) as sim:
        cases = {case: sim.add_events(events) for case, events in cases.items()}
        users = sorted({e["user_id"] for events in cases.values() for e in events})
        stack = LocalDeployment(
            aws,
            sim,
            stack_name=f"detect-{int(time.time())}",
            watched_user_ids=users,
            AUTH0_RATE_LIMIT_PER_SECOND="400",
        )
        # WHEN the function runs
        invocation = stack.invoke()
        assert invocation.error is None, invocation.error
    # THEN each destination holds the expected findings, EventBridge got the same, by rule
    bus = Counter((m["detail"]["watched_user_id"], m["detail"]["rule"]) for m in findings_queue())
    for (rule, case), events in cases.items():
        user = events[0]["user_id"]
        for records in (stack.cloudwatch_records(user), stack.s3_records(user)):
            found = [
                r["_forwarder"] for r in records if r["_forwarder"].get("record_type") == "finding"
            ]
            ours = [f for f in found if f["rule"] == rule]
            DETECTION_LEDGER[(rule, case)] = len(ours)
            if case == "fires":
                assert len(ours) == 1, (rule, found)
                assert set(ours[0]["log_ids"]) <= {e["log_id"] for e in events}
            else:
                assert ours == [], (rule, case, ours)
        assert bus[(user, rule)] == (1 if case == "fires" else 0), (rule, case, bus)
    # AND the metric counts each rule once
    emitted = [
        json.loads(line)
        for line in invocation.output.splitlines()
        if line.startswith("{") and '"Findings"' in line
    ]
    by_rule = Counter({record["rule"]: record["Findings"] for record in emitted})
    assert set(by_rule) >= {rule for rule, case in cases if case == "fires"}
    assert all(record["service"] == "auth0-user-log-forwarder" for record in emitted)


def test_a_finding_redelivered_after_a_crash_is_not_written_twice(aws: LocalAws) -> None:
    # GIVEN a run that writes a burst's finding, then dies before its checkpoint commit
    start = datetime.now(UTC) - timedelta(hours=1)
    rng = random.Random(7)
    user = "auth0|crash-burst"
    with Auth0Simulator(rate_limit=RateLimit(burst=200, per_second=500)) as sim:
        sim.add_events([event(user, "fp", start + timedelta(minutes=i), rng) for i in range(12)])
        stack = LocalDeployment(
            aws,
            sim,
            stack_name=f"detect-crash-{int(time.time())}",
            watched_user_ids=[user],
            FINDINGS_EVENT_BUS="none",
        )
        # The first put to S3 is refused after CloudWatch accepted: the run fails mid-batch.
        with AwsFaultProxy(aws.endpoint_url) as proxy:
            stack.env["AWS_ENDPOINT_URL"] = proxy.url
            proxy.add("S3.PUT", "refuse", times=5)
            assert stack.invoke().error is not None
            # WHEN the next run redelivers the batch
            assert stack.invoke().error is None
    # THEN each destination holds the finding once (the same id both times)
    for records in (stack.cloudwatch_records(user), stack.s3_records(user)):
        ids = [
            r["_forwarder"]["finding_id"]
            for r in records
            if r["_forwarder"].get("record_type") == "finding"
        ]
        assert len(ids) == 1 == len(set(ids))


# A pack of the operator's with a `temporal_ordered` correlation grouped by user: its state
# lives in the user's checkpoint (detections.py: a group-by of data.user_id is per user).
TAKEOVER_PACK = """
title: Second factor removed
id: 6d3e0000-0000-4000-8000-000000000001
name: mfa_removed
logsource: {product: auth0}
detection:
    selection: {data.type: [gd_unenroll, gd_user_delete]}
    condition: selection
---
title: Email changed
id: 6d3e0000-0000-4000-8000-000000000002
name: email_changed
logsource: {product: auth0}
detection:
    selection: {data.type: sce}
    condition: selection
---
title: Second factor removed, then the email changed, within an hour
id: 6d3e0000-0000-4000-8000-000000000003
correlation:
    type: temporal_ordered
    rules: [mfa_removed, email_changed]
    group-by: [data.user_id]
    timespan: 1h
level: high
"""
TAKEOVER_ID = "6d3e0000-0000-4000-8000-000000000003"


def test_a_temporal_ordered_finding_kept_in_the_checkpoint_is_written_once_through_a_crash(
    aws: LocalAws,
) -> None:
    # GIVEN an installed pack whose temporal_ordered correlation is grouped by user, and a run
    # that saw the first of its events (a second factor removed): the correlation's state is
    # in the user's checkpoint
    start = datetime.now(UTC) - timedelta(hours=1)
    rng = random.Random(23)
    user = "auth0|takeover"
    with Auth0Simulator(rate_limit=RateLimit(burst=200, per_second=500)) as sim:
        stack, _ = with_pack_installed(aws, sim, user, "takeover", TAKEOVER_PACK)
        (removed,) = sim.add_events([event(user, "gd_unenroll", start, rng)])
        assert ok(stack.invoke())["rule_packs"] == ["default", "takeover"]
        assert TAKEOVER_ID in json.dumps(stack.checkpoint(user))
        # WHEN the email change comes, and the run that sees it dies before its commit, is
        # redelivered, and one more run reads nothing new
        (changed,) = sim.add_events([event(user, "sce", start + timedelta(minutes=20), rng)])
        crash_before_the_commit_then_redeliver(aws, stack)
    # THEN each destination holds the correlation's finding once, naming both events in order
    for found in findings_in_each_destination(stack, user, TAKEOVER_ID):
        assert [(f["log_ids"], f["level"]) for f in found] == [
            ([removed["log_id"], changed["log_id"]], "high")
        ]
        assert found[0]["details"]["kind"] == "temporal_ordered"


def with_pack_installed(
    aws: LocalAws, sim: Auth0Simulator, user: str, name: str, text: str
) -> tuple[LocalDeployment, dict[str, Any]]:
    """A stack watching `user`, with the Sigma pack `text` compiled and installed as `name`;
    and its plan."""
    from log_forwarder.cli.sigma_compiler import compile_texts
    from log_forwarder.rule_packs import pack_item

    stack = LocalDeployment(
        aws,
        sim,
        stack_name=f"detect-{name}-{int(time.time())}",
        watched_user_ids=[user],
        FINDINGS_EVENT_BUS="none",
    )
    plan = compile_texts([(f"{name}.yml", text)]).plan
    aws.client("dynamodb").put_item(
        TableName=stack.resources.rule_packs_table,
        Item=pack_item(name, plan, installed_at="t"),
    )
    return stack, plan


def crash_before_the_commit_then_redeliver(aws: LocalAws, stack: LocalDeployment) -> None:
    """A run that dies before its checkpoint commit (S3 refuses after CloudWatch accepted),
    the next run that redelivers its batch, and one more that reads nothing new."""
    with AwsFaultProxy(aws.endpoint_url) as proxy:
        stack.env["AWS_ENDPOINT_URL"] = proxy.url
        proxy.add("S3.PUT", "refuse", times=5)
        assert stack.invoke().error is not None
        assert stack.invoke().error is None
        assert stack.invoke().error is None


def findings_in_each_destination(
    stack: LocalDeployment, user: str, rule_id: str
) -> list[list[dict[str, Any]]]:
    """The findings of `rule_id` about `user`, in CloudWatch, then in S3."""
    return [
        [
            r["_forwarder"]
            for r in records
            if r["_forwarder"].get("record_type") == "finding"
            and r["_forwarder"].get("rule_id") == rule_id
        ]
        for records in (stack.cloudwatch_records(user), stack.s3_records(user))
    ]


# The same pair of steps as TAKEOVER_PACK, in any order (`temporal`).
EITHER_ORDER_PACK = (
    TAKEOVER_PACK.replace(
        "6d3e0000-0000-4000-8000-00000000000", "6d3e0000-0000-4000-8000-00000000001"
    )
    .replace("type: temporal_ordered", "type: temporal")
    .replace(
        "Second factor removed, then the email changed",
        "Second factor removed and the email changed",
    )
)
EITHER_ORDER_ID = "6d3e0000-0000-4000-8000-000000000013"


def test_a_temporal_finding_kept_in_the_checkpoint_is_written_once_through_a_crash(
    aws: LocalAws,
) -> None:
    # GIVEN an installed pack whose (unordered) temporal correlation is grouped by user, and a
    # run that saw its second rule's event first (the email changed): its state is in the
    # user's checkpoint
    start = datetime.now(UTC) - timedelta(hours=1)
    rng = random.Random(29)
    user = "auth0|either-order"
    with Auth0Simulator(rate_limit=RateLimit(burst=200, per_second=500)) as sim:
        stack, plan = with_pack_installed(aws, sim, user, "either", EITHER_ORDER_PACK)
        assert [c["type"] for c in plan["correlations"]] == ["temporal"]
        (changed,) = sim.add_events([event(user, "sce", start, rng)])
        assert ok(stack.invoke())["rule_packs"] == ["default", "either"]
        assert EITHER_ORDER_ID in json.dumps(stack.checkpoint(user))
        # WHEN the factor's removal comes, and the run that sees it dies before its commit, is
        # redelivered, and one more run reads nothing new
        (removed,) = sim.add_events(
            [event(user, "gd_unenroll", start + timedelta(minutes=20), rng)]
        )
        crash_before_the_commit_then_redeliver(aws, stack)
    # THEN each destination holds the correlation's finding once, naming both events
    for found in findings_in_each_destination(stack, user, EITHER_ORDER_ID):
        assert [(f["log_ids"], f["details"]["kind"]) for f in found] == [
            ([changed["log_id"], removed["log_id"]], "temporal")
        ]


SUCCESS_AFTER_BURST_ID = "8d5e2f47-0b6c-4a1e-9c3d-7a2b1e4f6c58"  # rules/default


def test_a_success_after_a_burst_is_one_finding_through_a_crash_and_a_redelivery(
    aws: LocalAws,
) -> None:
    # GIVEN the default pack and a run that saw a user's ten failed logins: failed_login_burst's
    # finding, and the chain's points (each failure at which the count held) in the checkpoint
    start = datetime.now(UTC) - timedelta(hours=1)
    rng = random.Random(31)
    user = "auth0|burst-then-in"
    with Auth0Simulator(rate_limit=RateLimit(burst=200, per_second=500)) as sim:
        stack = LocalDeployment(
            aws,
            sim,
            stack_name=f"detect-chain-{int(time.time())}",
            watched_user_ids=[user],
            FINDINGS_EVENT_BUS="none",
        )
        failures = sim.add_events(
            [event(user, "fp", start + timedelta(minutes=i), rng) for i in range(10)]
        )
        ok(stack.invoke())
        assert SUCCESS_AFTER_BURST_ID in json.dumps(stack.checkpoint(user))
        # WHEN two logins come within the hour, and the run that sees them dies before its
        # commit, is redelivered, and one more run reads nothing new
        logins = sim.add_events(
            [event(user, "s", start + timedelta(minutes=m), rng) for m in (15, 25)]
        )
        crash_before_the_commit_then_redeliver(aws, stack)
    # THEN each destination holds one success_after_burst finding (one per window), naming a
    # failure at which the burst held and the first login, and the burst's own finding once
    burst_id = "191479c0-e3b1-48a1-b2a9-39423d5ebe40"
    for found, bursts in zip(
        findings_in_each_destination(stack, user, SUCCESS_AFTER_BURST_ID),
        findings_in_each_destination(stack, user, burst_id),
        strict=True,
    ):
        assert [(f["rule"], f["level"], f["details"]["kind"]) for f in found] == [
            ("success_after_burst", "critical", "temporal_ordered")
        ]
        assert found[0]["log_ids"][-1] == logins[0]["log_id"]
        assert set(found[0]["log_ids"][:-1]) <= {e["log_id"] for e in failures[9:]}
        assert found[0]["details"]["group"] == {"data.user_id": user}
        assert len(bursts) == 1


# How the first run dies: S3 refuses every put (the batch is never committed, the shared
# item never applied), or the finding's own CloudWatch put is applied and its answer lost (the
# shared item holds it pending: the next run delivers it again, the destination skips it).
CRASHES = {
    "batch-refused": ("S3.PUT", "refuse", None, True),
    "finding-answer-lost": ("Logs_20140328.PutLogEvents", "lose", b"credential_stuffing", False),
}


@pytest.mark.parametrize("crash", sorted(CRASHES))
@pytest.mark.parametrize("read_mode", ["per-user", "stream"])
def test_credential_stuffing_against_two_users_is_one_finding_through_a_crash(
    aws: LocalAws,
    findings_queue: Callable[[], list[dict[str, Any]]],
    read_mode: str,
    crash: str,
) -> None:
    # GIVEN one IP failing to log in as two watched users within the hour (3 failures each:
    # far from a user's own burst), and a third user failing from elsewhere
    start = datetime.now(UTC) - timedelta(hours=1)
    rng = random.Random(11)
    first, second, other = "auth0|stuffed-a", "auth0|stuffed-b", "auth0|elsewhere"
    attacker, elsewhere = "198.51.100.7", "203.0.113.9"
    failures = [
        event(user, "fp", start + timedelta(minutes=2 * i + offset), rng, ip=attacker)
        for i in range(3)
        for user, offset in ((first, 0), (second, 1))
    ] + [event(other, "fp", start + timedelta(minutes=3), rng, ip=elsewhere)]
    with Auth0Simulator(rate_limit=RateLimit(burst=200, per_second=500)) as sim:
        stored = sim.add_events(failures)
        stack = LocalDeployment(
            aws,
            sim,
            stack_name=f"detect-stuffing-{read_mode}-{crash}-{int(time.time())}",
            watched_user_ids=[first, second, other],
            READ_MODE=read_mode,
        )
        # WHEN the first run dies mid-delivery, the next run redelivers what it left, and a
        # third run finds nothing new
        operation, action, body, fails = CRASHES[crash]
        with AwsFaultProxy(aws.endpoint_url) as proxy:
            stack.env["AWS_ENDPOINT_URL"] = proxy.url
            proxy.add(operation, action, times=1000, body_contains=body)
            assert (stack.invoke().error is not None) == fails
            assert proxy.faults, "the fault was never met"
            proxy.clear()
            assert stack.invoke().error is None
            assert stack.invoke().error is None
    # THEN each destination holds one credential_stuffing finding, naming the attacker's
    # failures of both users and only them
    attacked = {e["log_id"] for e in stored if e.get("ip") == attacker}
    for records in (
        [r for user in (first, second, other) for r in stack.cloudwatch_records(user)],
        [r for user in (first, second, other) for r in stack.s3_records(user)],
    ):
        found = [
            r["_forwarder"]
            for r in records
            if r["_forwarder"].get("record_type") == "finding"
            and r["_forwarder"]["rule"] == "credential_stuffing"
        ]
        assert len(found) == 1, found
        (finding,) = found
        assert set(finding["log_ids"]) <= attacked and len(finding["log_ids"]) >= 2
        assert finding["details"]["group"] == {"data.ip": attacker}
        assert finding["level"] == "high" and "attack.t1110.004" in finding["tags"]
        assert finding["rule_id"] == "715e9bdc-3ba0-430e-96a8-31215e69c3d8"
    # AND EventBridge got it once
    bus = [m["detail"] for m in findings_queue() if m["detail"]["rule"] == "credential_stuffing"]
    assert len(bus) == 1, bus


def test_credential_stuffing_pushed_in_real_time_is_one_finding_and_the_schedule_adds_none(
    aws: LocalAws, findings_queue: Callable[[], list[dict[str, Any]]]
) -> None:
    # GIVEN the real-time path on, and two watched users the schedule has started
    clock = Clock()
    first, second = "auth0|rt-stuffed-a", "auth0|rt-stuffed-b"
    attacker = "198.51.100.77"
    with Auth0Simulator(rate_limit=RateLimit(burst=200, per_second=500), clock=clock) as sim:
        stack = deployer(aws, sim, clock, "detect-rt", watched_user_ids=[first, second])()
        realtime = RealtimePath(stack)
        ok(stack.invoke())
        rng = random.Random(5)
        now = clock.now()
        failures = sim.add_events(
            [
                event(user, "fp", now - timedelta(seconds=60 - 5 * i), rng, ip=attacker)
                for i in range(3)
                for user in (first, second)
            ]
        )
        # WHEN Auth0's stream pushes the failures, some of them twice, and a run follows
        emitter = realtime.emitter()
        emitter.emit(failures)
        emitter.emit(failures[:3])
        summaries = [ok(invocation) for invocation in realtime.deliver_pushed()]
        assert sum(s["RealtimeEvents"] for s in summaries) == len(failures)

        def stuffing(read: Callable[[str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
            return [
                r["_forwarder"]
                for user in (first, second)
                for r in read(user)
                if r["_forwarder"].get("rule") == "credential_stuffing"
                and r["_forwarder"].get("record_type") == "finding"
            ]

        # THEN the push path wrote the finding, before any scheduled run
        assert len(stuffing(stack.cloudwatch_records)) == 1
        clock.offset += 300
        ok(stack.invoke())
    # AND after the run that confirms the pushed events, the destinations still hold it once,
    # and EventBridge got it once
    for read in (stack.cloudwatch_records, stack.s3_records):
        found = stuffing(read)
        assert len(found) == 1, found
        assert set(found[0]["log_ids"]) <= {e["log_id"] for e in failures}
    bus = [m["detail"] for m in findings_queue() if m["detail"]["rule"] == "credential_stuffing"]
    assert len(bus) == 1, bus


@pytest.mark.parametrize("tenant_wide", ["true", "false"])
def test_tenant_wide_rules_find_an_unwatched_admin_in_stream_mode_and_forward_no_event(
    aws: LocalAws, tenant_wide: str
) -> None:
    # GIVEN an administrator nobody watches changing MFA through the Management API, and a
    # watched user's ordinary traffic, read from the tenant stream
    start = datetime.now(UTC) - timedelta(hours=1)
    rng = random.Random(13)
    watched, admin = "auth0|tw-watched", "auth0|tw-unwatched-admin"
    with Auth0Simulator(rate_limit=RateLimit(burst=200, per_second=500)) as sim:
        sim.add_events(generate_user_events(watched, count=5, start=start, end=start, rng=rng))
        (call,) = sim.add_events([management(admin, admin, start + timedelta(minutes=1), rng)])
        stack = LocalDeployment(
            aws,
            sim,
            stack_name=f"detect-tw-{tenant_wide}-{int(time.time())}",
            watched_user_ids=[watched],
            READ_MODE="stream",
            DETECTIONS_TENANT_WIDE=tenant_wide,
            FINDINGS_EVENT_BUS="none",
        )
        # WHEN the function runs, twice (the second reads nothing new)
        first_run = ok(stack.invoke())
        ok(stack.invoke())
    # THEN with the option on, the admin's call is one admin_action finding of nobody watched
    # (CloudWatch's stream `#tenant`, S3's records without a watched user), naming the call;
    # off, nothing. The call itself is never forwarded.
    assert_one_tenant_finding_or_none(stack, call, admin, on=tenant_wide == "true")
    assert first_run["tenant_wide_findings"] == (
        {"admin_action": 1} if tenant_wide == "true" else None
    )


@pytest.mark.parametrize("tenant_wide", ["true", "false"])
def test_tenant_wide_rules_find_an_unwatched_admin_on_the_real_time_path_once_and_forward_no_event(
    aws: LocalAws, tenant_wide: str
) -> None:
    # GIVEN the real-time path on, a watched user the schedule has started, and an administrator
    # nobody watches changing MFA through the Management API while the user logs in
    clock = Clock()
    rng = random.Random(17)
    watched, admin = "auth0|rtw-watched", "auth0|rtw-unwatched-admin"
    with Auth0Simulator(rate_limit=RateLimit(burst=200, per_second=500), clock=clock) as sim:
        stack = deployer(
            aws,
            sim,
            clock,
            f"detect-rtw-{tenant_wide}",
            watched_user_ids=[watched],
            DETECTIONS_TENANT_WIDE=tenant_wide,
            FINDINGS_EVENT_BUS="none",
        )()
        realtime = RealtimePath(stack)
        ok(stack.invoke())
        now = clock.now()
        mine = sim.add_events(
            generate_user_events(
                watched, count=3, start=now - timedelta(seconds=40), end=now, rng=rng
            )
        )
        (call,) = sim.add_events([management(admin, admin, now - timedelta(seconds=20), rng)])
        # WHEN Auth0's stream pushes them, and the queue delivers the same batch twice (SQS
        # delivers at least once: a second delivery of messages already handled)
        realtime.emitter().emit([*mine, call])
        messages = realtime.receive(10)
        function = realtime.handler()
        context = FakeLambdaContext(function_name="RealtimeFunction")
        first, again = (
            ok(invoke_handler(function, sqs_event(messages), context, cold=False)) for _ in range(2)
        )
        realtime.settle(messages, again)
    # THEN the watched user's events were forwarded once, and the admin's were not; on, the
    # admin's call reached the function (the rule's pattern takes every user) and is ignored
    # for forwarding; off, the pattern kept it out
    assert first["RealtimeEvents"] == len(mine) and again["RealtimeEvents"] == 0
    assert first["RealtimeIgnored"] == (1 if tenant_wide == "true" else 0)
    # the rules ran on both deliveries; the second found nothing it had not found
    assert (first["tenant_wide_findings"], again["tenant_wide_findings"]) == (
        ({"admin_action": 1}, {}) if tenant_wide == "true" else (None, None)
    )
    assert_delivered_once(stack, watched, ids_of(mine))
    # AND on, the call is one admin_action finding of nobody watched (CloudWatch's stream
    # `#tenant`, S3's records without a watched user), once through both deliveries; off, none
    assert_one_tenant_finding_or_none(stack, call, admin, on=tenant_wide == "true")
    assert stack.cloudwatch_records(admin) == []


def assert_one_tenant_finding_or_none(
    stack: LocalDeployment, call: dict[str, Any], admin: str, *, on: bool
) -> None:
    """On: the unwatched admin's call is one admin_action finding of nobody watched (CloudWatch's
    stream `#tenant`, S3's records without a watched user); off: none. Never forwarded."""
    tenant_records = {
        "cloudwatch": stack.cloudwatch_records("#tenant"),
        "s3": [r for r in stack.s3_records() if r["_forwarder"].get("watched_user_id") is None],
    }
    for records in tenant_records.values():
        found = [
            r["_forwarder"]
            for r in records
            if r["_forwarder"].get("record_type") == "finding"
            and call["log_id"] in r["_forwarder"]["log_ids"]
        ]
        if on:
            assert [(f["rule"], f["log_ids"]) for f in found] == [
                ("admin_action", [call["log_id"]])
            ]
            assert found[0]["details"]["group"]["data.user_id"] == admin
        else:
            assert found == []
        assert all(r.get("log_id") != call["log_id"] for r in records)
    forwarded = [r for r in stack.s3_records() if "log_id" in r]
    assert call["log_id"] not in {r["log_id"] for r in forwarded}
