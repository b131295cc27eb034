"""Many tenants, end to end: the template's multi-tenant stack on moto's server (SSM, FIFO SQS with
its dead-letter queue, DynamoDB, CloudWatch Logs, S3), one Auth0 simulator per tenant, and the
two handlers the template names, the scheduled one and the worker.

Every test counts, per tenant, user and destination, the events expected and delivered, and fails
on any missing or repeated one; the figures are printed after the run.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from devtools.auth0_simulator import Auth0Simulator, RateLimit
from devtools.fanout_harness import FanoutDeployment, LocalTenant, WorkerRun
from devtools.local_aws import LocalAws
from devtools.traffic import generate_user_events
from tests.e2e.conftest import stack_name

pytestmark = [
    pytest.mark.integration,
    # A worker invocation that only met poison or a removed tenant has no metrics to publish.
    pytest.mark.filterwarnings("ignore:No application metrics"),
]

# (test, tenant, user, destination, expected, delivered, missing, repeated), printed after the run.
FANOUT_LEDGER: list[tuple[str, str, str, str, int, int, int, int]] = []
SHARED_USER = "auth0|5f7c8ec7c33c6c004bbafe82"  # in every tenant: its ids are not global


@pytest.fixture
def simulators() -> Iterator[Callable[[str], Auth0Simulator]]:
    started: list[Auth0Simulator] = []

    def start(name: str) -> Auth0Simulator:
        simulator = Auth0Simulator(
            domain=f"{name}.eu.auth0.com",
            client_id=f"{name}-client",
            client_secret=f"{name}-secret",
            rate_limit=RateLimit(burst=200, per_second=500),
            seed=len(started),
        )
        simulator.start()
        started.append(simulator)
        return simulator

    yield start
    for simulator in started:
        simulator.stop()


def deploy(aws: LocalAws, tenants: Sequence[LocalTenant], **kwargs: Any) -> FanoutDeployment:
    kwargs.setdefault("MAX_CONCURRENT_USERS", "3")
    name = stack_name("fan")
    return FanoutDeployment(aws, tenants, stack_name=name, **kwargs)


def seed(
    sim: Auth0Simulator, user: str, count: int, rng: random.Random, *, fresh: bool = False
) -> list[str]:
    """`count` events of the last two hours, or (`fresh`) of the last few seconds."""
    now = datetime.now(UTC)
    start = now - (timedelta(seconds=5) if fresh else timedelta(hours=2))
    end = now if fresh else now - timedelta(minutes=1)
    events = generate_user_events(user, count=count, start=start, end=end, rng=rng)
    return [e["log_id"] for e in sim.add_events(events)]


def assert_once(
    stack: FanoutDeployment,
    domain: str,
    user: str,
    expected: Sequence[str],
    destinations: Sequence[str] = ("cloudwatch", "s3"),
) -> None:
    test = __import__("os").environ.get("PYTEST_CURRENT_TEST", "?").split("::")[-1].split(" ")[0]
    for destination in destinations:
        records = stack.tenant_records(domain, user, destination)
        assert all(r["_forwarder"]["tenant"] == domain for r in records)
        got = Counter(r["log_id"] for r in records if "log_id" in r)
        missing = set(expected) - set(got)
        repeated = [k for k, v in got.items() if v > 1]
        extra = set(got) - set(expected)
        FANOUT_LEDGER.append(
            (
                test,
                domain,
                user,
                destination,
                len(expected),
                sum(got.values()),
                len(missing),
                len(repeated),
            )
        )
        assert (len(missing), len(repeated), len(extra)) == (0, 0, 0), (
            f"{domain} {user} {destination}: missing {len(missing)}, repeated {len(repeated)}, "
            f"unexpected {len(extra)}"
        )


def by_tenant(runs: Sequence[WorkerRun]) -> dict[str, list[WorkerRun]]:
    found: dict[str, list[WorkerRun]] = {}
    for run in runs:
        for tenant in run.tenants:
            found.setdefault(tenant, []).append(run)
    return found


def test_three_tenants_fan_out_and_one_failing_tenant_does_not_hold_the_others_back(
    aws: LocalAws, simulators: Callable[[str], Auth0Simulator]
) -> None:
    rng = random.Random(17)
    acme, beta, gamma = (simulators(name) for name in ("acme", "beta", "gamma"))
    # GIVEN three tenants that all have a user with the same id; gamma's watch list is the
    # table's items with its prefix
    expected = {
        ("acme", SHARED_USER): seed(acme, SHARED_USER, 40, rng),
        ("acme", "auth0|acme-2"): seed(acme, "auth0|acme-2", 15, rng),
        ("beta", SHARED_USER): seed(beta, SHARED_USER, 25, rng),
        ("gamma", SHARED_USER): seed(gamma, SHARED_USER, 30, rng),
    }
    tenants = [
        LocalTenant(acme, [SHARED_USER, "auth0|acme-2"]),
        LocalTenant(beta, [SHARED_USER]),
        LocalTenant(gamma, None),
    ]
    stack = deploy(aws, tenants)
    aws.client("dynamodb").put_item(
        TableName=stack.resources.table_name,
        Item={"user_id": {"S": f"gamma.eu.auth0.com#{SHARED_USER}"}, "watch": {"BOOL": True}},
    )
    # AND beta's secret holds a client secret Auth0 refuses
    stack.put_secret(tenants[1].secret_name, Auth0Simulator(client_id="beta-client"))
    # WHEN the schedule fires and the worker drains the queue
    tick = stack.tick()
    assert tick.error is None, tick.error
    assert sorted(tick.result["scheduled"]) == [t.domain for t in tenants]  # type: ignore[index]
    runs = by_tenant(stack.drain())
    # THEN acme and gamma are forwarded, each by one invocation, while beta's message failed
    assert {d: len(r) for d, r in runs.items()} == dict.fromkeys([t.domain for t in tenants], 1)
    assert runs["beta.eu.auth0.com"][0].failed and not runs["acme.eu.auth0.com"][0].failed
    assert not runs["gamma.eu.auth0.com"][0].failed
    assert "token request refused with HTTP 401" in runs["beta.eu.auth0.com"][0].invocation.output
    for (name, user), ids in expected.items():
        assert_once(stack, f"{name}.eu.auth0.com", user, ids if name != "beta" else [])
    # AND the shared user has one checkpoint per tenant, each with its own count
    totals = {
        name: (stack.tenant_checkpoint(f"{name}.eu.auth0.com", SHARED_USER) or {})
        for name in ("acme", "beta", "gamma")
    }
    assert totals["acme"] and totals["gamma"] and totals["acme"] != totals["gamma"]
    # AND the worker's metrics say who failed: one tenant's two users forwarded, one failed
    metrics = runs["beta.eu.auth0.com"][0].invocation.metrics()
    assert (metrics["UsersFailed"], metrics["EventsForwarded"]) == (1, 0)

    # WHEN beta keeps failing: SQS hands its message out again after each visibility timeout
    counts = []
    for _ in range(2):
        stack.let_visibility_pass()
        (run,) = stack.drain()
        counts.append(run.receive_counts[0])
    # THEN after its third failed receive the message is in the dead-letter queue
    stack.let_visibility_pass()
    assert stack.drain() == []
    assert counts == [2, 3]
    (dead,) = stack.dead_letters()
    assert json.loads(dead["Body"])["tenant"] == "beta.eu.auth0.com"

    # WHEN beta's secret is fixed and the schedule fires again
    stack.put_secret(tenants[1].secret_name, beta)
    assert stack.tick().error is None
    runs = by_tenant(stack.drain())
    # THEN beta catches up, and the others forward nothing twice
    assert not any(run.failed for tenant_runs in runs.values() for run in tenant_runs)
    for (name, user), ids in expected.items():
        assert_once(stack, f"{name}.eu.auth0.com", user, ids)


def test_poison_messages_and_a_missing_secret_fail_alone(
    aws: LocalAws, simulators: Callable[[str], Auth0Simulator]
) -> None:
    rng = random.Random(5)
    acme, delta = simulators("acme"), simulators("delta")
    ids = seed(acme, SHARED_USER, 20, rng)
    seed(delta, SHARED_USER, 5, rng)
    stack = deploy(aws, [LocalTenant(acme, [SHARED_USER]), LocalTenant(delta, [SHARED_USER])])
    # GIVEN delta's secret does not exist, and two poison messages in the queue: one that is
    # not JSON, one for acme but in delta's group (it could run beside acme's own)
    aws.client("secretsmanager").delete_secret(
        SecretId="auth0-user-log-forwarder/delta.eu.auth0.com", ForceDeleteWithoutRecovery=True
    )
    stack.send_raw("{not json", group="poison")
    wrong_group = json.dumps(
        {"format": 1, "tenant": "acme.eu.auth0.com", "tick": "t", "scheduled_at": "s"}
    )
    stack.send_raw(wrong_group, group="delta.eu.auth0.com")
    assert stack.tick().error is None
    # WHEN the worker drains the queue
    runs = stack.drain()
    # THEN the poison messages go straight to the dead-letter queue, with the reason: retried,
    # the one in delta's group would have held delta's own message back for three receives
    poison = [run for run in runs if "Poison message" in run.invocation.output]
    assert len(poison) == 2 and not any(run.failed for run in poison)
    dead = {m["Body"]: m for m in stack.dead_letters()}
    assert set(dead) == {"{not json", wrong_group}
    assert "is not tenant 'acme.eu.auth0.com''s group" in json.dumps(
        dead[wrong_group]["MessageAttributes"]
    )
    # AND acme is forwarded; delta fails alone, its log naming the missing secret and the fix
    assert_once(stack, "acme.eu.auth0.com", SHARED_USER, ids)
    (delta_run,) = [run for run in runs if run.tenants == ["delta.eu.auth0.com"]]
    assert delta_run.failed
    assert (
        "secret 'auth0-user-log-forwarder/delta.eu.auth0.com' (AUTH0_CREDENTIALS_SECRET) in "
        "region us-east-1 does not exist: create it"
    ) in delta_run.invocation.output
    # AND after its third failed receive delta's message joins them there
    for _ in range(3):
        stack.let_visibility_pass()
        stack.drain()
    bodies = [m["Body"] for m in stack.dead_letters()]
    assert len(bodies) == 3 and sum('"delta.eu.auth0.com"' in body for body in bodies) == 1


def test_a_tick_delivered_twice_and_a_message_processed_twice_forward_nothing_twice(
    aws: LocalAws, simulators: Callable[[str], Auth0Simulator]
) -> None:
    rng = random.Random(9)
    acme = simulators("acme")
    ids = seed(acme, SHARED_USER, 30, rng)
    stack = deploy(aws, [LocalTenant(acme, [SHARED_USER])])
    # GIVEN EventBridge delivers the same tick twice
    assert stack.tick(event_id="tick-1").error is None
    assert stack.tick(event_id="tick-1").error is None
    # THEN the tenant is enqueued once (FIFO deduplication on tick + tenant)
    (run,) = stack.drain()
    assert run.summaries[0]["forwarded"] == 30
    # WHEN the event source hands the same message to the worker twice (at-least-once)
    new_ids = seed(acme, SHARED_USER, 7, rng, fresh=True)
    assert stack.tick(event_id="tick-2").error is None
    sqs = aws.client("sqs")
    url = stack.resources.queue_urls["TenantQueue"]
    (message,) = sqs.receive_message(QueueUrl=url, MessageSystemAttributeNames=["All"])["Messages"]
    for _ in range(2):
        stack.send_raw(message["Body"], group=message["Attributes"]["MessageGroupId"])
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    first, second = stack.drain()
    # THEN the second run finds nothing new: every event is delivered once
    assert (first.summaries[0]["forwarded"], second.summaries[0]["forwarded"]) == (7, 0)
    assert_once(stack, "acme.eu.auth0.com", SHARED_USER, ids + new_ids)


class Killed(BaseException):
    """Lambda ending the process at its timeout: nothing after it runs, no handler sees it."""


def test_a_worker_killed_mid_tenant_is_retried_after_its_timeout_and_loses_nothing(
    aws: LocalAws, simulators: Callable[[str], Auth0Simulator], monkeypatch: pytest.MonkeyPatch
) -> None:
    from log_forwarder.sinks.s3 import S3Sink

    rng = random.Random(13)
    acme = simulators("acme")
    ids = seed(acme, SHARED_USER, 60, rng)
    offset = [0.0]
    stack = deploy(aws, [LocalTenant(acme, [SHARED_USER])], clock=lambda: time.time() + offset[0])
    # GIVEN a worker killed after CloudWatch took a batch and before S3 did
    original = S3Sink.deliver

    def killed(self: S3Sink, delivery: Any) -> Any:
        monkeypatch.setattr(S3Sink, "deliver", original)
        raise Killed

    monkeypatch.setattr(S3Sink, "deliver", killed)
    # (a queue visibility of 1 s: without the worker's extension, the message would be back
    # while the killed worker might still be running)
    sqs = aws.client("sqs")
    url = stack.resources.queue_urls["TenantQueue"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "1"})
    assert stack.tick().error is None
    with pytest.raises(Killed):
        stack.deliver(remaining_ms=240_000)
    # THEN nobody gets the message: the worker had extended its visibility past its own end
    time.sleep(1.5)
    assert sqs.receive_message(QueueUrl=url).get("Messages", []) == []
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "1"
    # WHEN that visibility passes (270 s: the timeout and 30 s) and a new container gets it
    offset[0] = 300
    stack.let_visibility_pass()
    run = stack.deliver(cold=True)
    assert run is not None and run.receive_counts == [2]  # the killed worker's message
    # THEN the interrupted batch is delivered where it was missing, and nothing twice
    assert not run.failed
    assert run.invocation.metrics()["RecoveredEvents"] > 0
    assert_once(stack, "acme.eu.auth0.com", SHARED_USER, ids)


def test_a_worker_out_of_time_defers_and_the_next_tick_finishes(
    aws: LocalAws, simulators: Callable[[str], Auth0Simulator]
) -> None:
    rng = random.Random(21)
    acme = simulators("acme")
    users = [f"auth0|slow-{i}" for i in range(6)]
    expected = {user: seed(acme, user, 20, rng) for user in users}
    # Per user: one call per user makes "a few calls" leave users for the next run.
    stack = deploy(aws, [LocalTenant(acme, users)], MAX_CONCURRENT_USERS="1", READ_MODE="per-user")
    # GIVEN a worker whose time runs out after a few Auth0 calls (the margin is 60 s)
    assert stack.tick().error is None
    calls = acme.stats.calls()
    run = stack.deliver(remaining_ms=lambda: 200_000 if acme.stats.calls() - calls < 3 else 30_000)
    # THEN the message is done with (the tenant is not failed), some users deferred
    assert run is not None and not run.failed
    assert run.invocation.metrics()["UsersDeferred"] > 0
    # AND the next tick forwards the rest, nothing twice
    assert stack.tick().error is None
    assert not any(r.failed for r in stack.drain())
    for user, ids in expected.items():
        assert_once(stack, "acme.eu.auth0.com", user, ids)


def test_a_bad_entry_is_left_out_by_the_scheduler_naming_the_tenant_and_the_field(
    aws: LocalAws, simulators: Callable[[str], Auth0Simulator]
) -> None:
    acme = simulators("acme")
    ids = seed(acme, SHARED_USER, 10, random.Random(2))
    stack = deploy(aws, [LocalTenant(acme, [SHARED_USER])])
    good = LocalTenant(acme, [SHARED_USER]).entry()
    bad = {"domain": "typo.eu.auth0.com", "credentials_secret": "elsewhere/typo"}
    stack.put_tenants({"tenants": [good, bad]})
    # WHEN the schedule fires
    tick = stack.tick()
    # THEN the good tenant is enqueued and forwarded, and the invocation fails naming the bad one
    assert tick.error is not None
    assert "tenants[1] (typo.eu.auth0.com): credentials_secret 'elsewhere/typo'" in str(tick.error)
    (run,) = stack.drain()
    assert run.tenants == ["acme.eu.auth0.com"] and not run.failed
    assert_once(stack, "acme.eu.auth0.com", SHARED_USER, ids)
    # AND a message for a tenant removed from the document since is dropped, not failed (by a
    # new container: a warm one reads the document at most once a minute)
    assert stack.tick().error is not None
    stack.put_tenants({"tenants": [bad]})
    (run,) = stack.drain(cold=True)
    assert not run.failed
    assert "Tenant is not in the tenants document" in run.invocation.output


def test_a_tenant_s_next_tick_waits_until_the_one_in_flight_is_done(
    aws: LocalAws, simulators: Callable[[str], Auth0Simulator]
) -> None:
    acme, beta = simulators("acme"), simulators("beta")
    stack = deploy(aws, [LocalTenant(acme, [SHARED_USER]), LocalTenant(beta, [SHARED_USER])])
    # GIVEN two ticks queued for two tenants
    assert stack.tick(event_id="a").error is None
    assert stack.tick(event_id="b").error is None
    sqs = aws.client("sqs")
    url = stack.resources.queue_urls["TenantQueue"]
    # WHEN three pollers each ask for a batch of the event source's size
    batches = [
        sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=stack.batch_size,
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        for _ in range(3)
    ]
    # THEN two tenants run at once, each in one worker; the third poller gets nothing although
    # both tenants' next ticks are waiting
    groups = [[m["Attributes"]["MessageGroupId"] for m in batch] for batch in batches]
    assert sorted(groups[:2]) == [["acme.eu.auth0.com"], ["beta.eu.auth0.com"]]
    assert groups[2] == []
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "2"


class CaptureServer:
    """A host that is not Auth0, on 127.0.0.1: it records every request it receives (method,
    path, headers, body) and answers 404."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def record(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                capture.requests.append((self.command, self.path, dict(self.headers), body))
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = record

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def capture_servers() -> Iterator[Callable[[], CaptureServer]]:
    started: list[CaptureServer] = []

    def start() -> CaptureServer:
        started.append(CaptureServer())
        return started[-1]

    yield start
    for server in started:
        server.stop()


def test_hostile_entries_get_no_secret_and_the_other_tenants_are_forwarded(
    aws: LocalAws,
    simulators: Callable[[str], Auth0Simulator],
    capture_servers: Callable[[], CaptureServer],
) -> None:
    rng = random.Random(31)
    acme, beta = simulators("acme"), simulators("beta")
    expected = {"acme": seed(acme, SHARED_USER, 20, rng), "beta": seed(beta, SHARED_USER, 12, rng)}
    tenants = [LocalTenant(acme, [SHARED_USER]), LocalTenant(beta, [SHARED_USER])]
    # GIVEN two hosts that are not Auth0 on this machine, one of them even listed by the run
    # as a local base URL (as the simulators are), the other not
    listed, unlisted = capture_servers(), capture_servers()
    local = ",".join([acme.base_url, beta.base_url, listed.base_url])
    stack = deploy(aws, tenants, TENANT_LOCAL_BASE_URLS=local)
    victim_secret = tenants[0].secret_name  # acme's
    # AND three hostile entries beside the tenants': a domain that is not Auth0's, an Auth0
    # domain naming acme's secret, and an entry of its own sending its secret elsewhere
    hostile = [
        {
            "domain": "collector.example.net",
            "credentials_secret": victim_secret,
            "auth0_base_url": listed.base_url,
        },
        {
            "domain": "borrower.eu.auth0.com",
            "credentials_secret": victim_secret,
            "auth0_base_url": listed.base_url,
        },
        {"domain": "elsewhere.eu.auth0.com", "auth0_base_url": unlisted.base_url},
    ]
    aws.client("secretsmanager").create_secret(
        Name="auth0-user-log-forwarder/elsewhere.eu.auth0.com",
        SecretString=json.dumps({"client_id": "elsewhere", "client_secret": "elsewhere-secret"}),
    )
    stack.put_tenants({"tenants": [tenants[0].entry(), *hostile, tenants[1].entry()]})
    # WHEN the schedule fires and the worker drains the queue
    tick = stack.tick()
    # THEN the tick enqueues the two tenants and fails naming each hostile entry and its rule
    assert tick.error is not None
    said = str(tick.error)
    assert said.startswith("3 tenant(s) left out of this tick: ")
    assert "tenants[1] (collector.example.net): domain 'collector.example.net' is not an " in said
    assert (
        f"tenants[2] (borrower.eu.auth0.com): credentials_secret '{victim_secret}' is not this "
        "tenant's secret" in said
    )
    assert (
        f"tenants[3] (elsewhere.eu.auth0.com): auth0_base_url '{unlisted.base_url}' is not one "
        "of TENANT_LOCAL_BASE_URLS" in said
    )
    assert tick.metrics()["TenantsRefused"] == 3 and tick.metrics()["TenantsScheduled"] == 2
    runs = by_tenant(stack.drain())
    assert sorted(runs) == ["acme.eu.auth0.com", "beta.eu.auth0.com"]
    assert not any(run.failed for tenant_runs in runs.values() for run in tenant_runs)
    for name, ids in expected.items():
        assert_once(stack, f"{name}.eu.auth0.com", SHARED_USER, ids)
    # AND a message for a refused entry (enqueued before the entry turned hostile) is dropped by
    # the worker, which vets the document itself, naming the rule
    stack.send_raw(
        json.dumps(
            {"format": 1, "tenant": "borrower.eu.auth0.com", "tick": "t", "scheduled_at": "s"}
        ),
        group="borrower.eu.auth0.com",
    )
    (dropped,) = stack.drain()
    assert not dropped.failed
    assert "its entry in the tenants document is refused" in dropped.invocation.output
    assert "is not this tenant's secret" in dropped.invocation.output
    assert dropped.invocation.metrics()["TenantsRefused"] == 1
    # AND neither host received anything at all: no token request, no secret
    assert listed.requests == [] and unlisted.requests == []
    secrets = [acme.client_secret, beta.client_secret, "elsewhere-secret"]
    outputs = tick.output + "".join(r.invocation.output for rs in runs.values() for r in rs)
    assert not any(secret in outputs + dropped.invocation.output for secret in secrets)


def test_a_batch_the_queue_keeps_refusing_costs_three_requests_and_says_so(
    aws: LocalAws, simulators: Callable[[str], Auth0Simulator]
) -> None:
    # GIVEN a tenant queue that answers every send 503 (issue #21's review: botocore's own 3
    # attempts under the scheduler's 3 cost 9 requests, and the error said 3)
    from devtools.aws_fault_proxy import AwsFaultProxy

    acme = simulators("acme")
    with AwsFaultProxy(aws.endpoint_url) as proxy:
        stack = deploy(aws, [LocalTenant(acme, [SHARED_USER])], AWS_ENDPOINT_URL=proxy.url)
        proxy.add("AmazonSQS.SendMessageBatch", "refuse", times=100)
        # WHEN the schedule fires
        tick = stack.tick()
        # THEN it fails naming the tenant, after the attempts it says, one request each
        sent = [f for f in proxy.faults if f[0] == "AmazonSQS.SendMessageBatch"]
    assert tick.error is not None
    assert "refused the messages of 1 tenant(s) after 3 attempts" in str(tick.error)
    assert "acme" in str(tick.error)
    assert len(sent) == 3, sent
