"""The fan-out's pieces without AWS: the tenant message and what counts as poison, the queue's
batching and retries, and the worker's per-message verdicts in a batch."""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from devtools.harness import FakeLambdaContext
from log_forwarder import worker
from log_forwarder.exceptions import FanoutError, PoisonMessage
from log_forwarder.fanout import SEND_ATTEMPTS, TenantQueue
from log_forwarder.tenant_message import TenantMessage, dedup_id, group_id
from log_forwarder.tenants import TenantRules, TenantsConfig, parse_tenants

MESSAGE = TenantMessage("acme.eu.auth0.com", "tick-1", "2026-11-27T10:00:00.000+00:00")


def record(body: str, group: str | None = "acme.eu.auth0.com", message_id: str = "m1") -> dict:
    attributes = {"ApproximateReceiveCount": "1"}
    if group is not None:
        attributes["MessageGroupId"] = group
    return {"messageId": message_id, "receiptHandle": "rh", "body": body, "attributes": attributes}


def test_a_message_round_trips_through_its_record() -> None:
    assert TenantMessage.from_record(record(MESSAGE.body())) == MESSAGE


@pytest.mark.parametrize(
    ("body", "group", "says"),
    [
        ("not json", "acme.eu.auth0.com", "not JSON"),
        ("[" * 100_000 + "]" * 100_000, "acme.eu.auth0.com", "not JSON"),  # past the stack
        ("[1]", "acme.eu.auth0.com", "not a format-1 tenant message"),
        (MESSAGE.body().replace('"format":1', '"format":2'), "acme.eu.auth0.com", "format-1"),
        (json.dumps({"format": 1, "tenant": "acme.eu.auth0.com"}), "acme.eu.auth0.com", "lacks"),
        (json.dumps({"format": 1, "tenant": "", "tick": "t", "scheduled_at": "s"}), "", "empty"),
        # A tenant's message in another group could run beside that tenant's own.
        (MESSAGE.body(), "beta.us.auth0.com", "is not tenant 'acme.eu.auth0.com'"),
        (MESSAGE.body(), None, "MessageGroupId None"),
    ],
)
def test_anything_else_is_poison(body: str, group: str | None, says: str) -> None:
    with pytest.raises(PoisonMessage, match=says):
        TenantMessage.from_record(record(body, group))


def test_ids_fit_sqs_limits_and_tie_a_tick_to_a_tenant() -> None:
    long_domain = ".".join(["a" * 60] * 4) + ".com"
    assert group_id("acme.eu.auth0.com") == "acme.eu.auth0.com"
    assert len(group_id(long_domain)) <= 128 and group_id(long_domain) != long_domain
    assert dedup_id("t1", "a.com") == dedup_id("t1", "a.com") != dedup_id("t2", "a.com")
    assert len(dedup_id("t1", long_domain)) <= 128


class FakeSqs:
    """Refuses the entries named in `refuse` (by tenant) for the first `times` sends."""

    def __init__(self, refuse: Mapping[str, int] | None = None, error: bool = False) -> None:
        self.refuse = dict(refuse or {})
        self.error = error
        self.sent: list[dict[str, Any]] = []
        self.calls = 0

    def send_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict:
        self.calls += 1
        assert len(Entries) <= 10
        if self.error:
            raise ClientError({"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue"}}, "x")
        failed = []
        for entry in Entries:
            tenant = json.loads(entry["MessageBody"])["tenant"]
            if self.refuse.get(tenant, 0) > 0:
                self.refuse[tenant] -= 1
                failed.append({"Id": entry["Id"], "Code": "InternalError", "SenderFault": False})
            else:
                self.sent.append(entry)
        return {"Successful": [], "Failed": failed}


def messages(count: int) -> list[TenantMessage]:
    return [TenantMessage(f"t{i}.auth0.com", "tick", "now") for i in range(count)]


def test_the_queue_sends_in_batches_of_ten_with_a_group_and_a_dedup_id_per_tenant() -> None:
    sqs = FakeSqs()
    TenantQueue("url", sqs).enqueue(messages(23))  # type: ignore[arg-type]
    assert sqs.calls == 3
    assert [e["MessageGroupId"] for e in sqs.sent] == [f"t{i}.auth0.com" for i in range(23)]
    assert len({e["MessageDeduplicationId"] for e in sqs.sent}) == 23


def test_entries_the_queue_refuses_are_sent_again() -> None:
    sqs = FakeSqs(refuse={"t3.auth0.com": 2})
    TenantQueue("url", sqs).enqueue(messages(5))  # type: ignore[arg-type]
    assert sorted(json.loads(e["MessageBody"])["tenant"] for e in sqs.sent) == sorted(
        f"t{i}.auth0.com" for i in range(5)
    )
    assert sqs.calls == 3


def test_tenants_the_queue_keeps_refusing_are_named() -> None:
    sqs = FakeSqs(refuse={"t1.auth0.com": 99})
    with pytest.raises(FanoutError, match=r"1 tenant\(s\).*t1\.auth0\.com: InternalError"):
        TenantQueue("url", sqs).enqueue(messages(3))  # type: ignore[arg-type]
    assert len(sqs.sent) == 2  # the others are on their way
    with pytest.raises(FanoutError, match="NonExistentQueue"):
        TenantQueue("url", FakeSqs(error=True)).enqueue(messages(2))  # type: ignore[arg-type]


def test_a_last_attempt_that_partly_succeeds_names_only_what_it_refused() -> None:
    # GIVEN t2 refused until the last attempt, t1 on every attempt
    sqs = FakeSqs(refuse={"t1.auth0.com": 99, "t2.auth0.com": SEND_ATTEMPTS - 1})
    # WHEN enqueued, THEN only t1 is named: t2 went through on the last attempt
    with pytest.raises(
        FanoutError, match=r"1 tenant\(s\).*t1\.auth0\.com: InternalError"
    ) as raised:
        TenantQueue("url", sqs).enqueue(messages(3))  # type: ignore[arg-type]
    assert "t2.auth0.com" not in str(raised.value)
    assert sorted(json.loads(e["MessageBody"])["tenant"] for e in sqs.sent) == [
        "t0.auth0.com",
        "t2.auth0.com",
    ]


@pytest.mark.filterwarnings("ignore:No application metrics")  # process() is a stand-in
def test_after_a_failed_record_the_rest_of_the_batch_goes_back_unprocessed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN a batch of four where the second record fails
    processed: list[str] = []

    def process(_worker: Any, rec: Mapping[str, Any], _context: Any) -> bool:
        processed.append(rec["messageId"])
        return rec["messageId"] != "m2"

    monkeypatch.setattr(worker._worker, "get", lambda: object())
    monkeypatch.setattr(worker, "_process", process)
    event = {"Records": [record(MESSAGE.body(), message_id=f"m{i}") for i in range(1, 5)]}
    # WHEN the worker handles it
    result = worker.lambda_handler(event, FakeLambdaContext())
    # THEN the failed record and every later one are reported, in order, and not processed
    assert processed == ["m1", "m2"]
    assert result == {"batchItemFailures": [{"itemIdentifier": m} for m in ("m2", "m3", "m4")]}


class FakeQueueClient:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _answer(self, name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((name, kwargs))
        if self.fail:
            raise ClientError({"Error": {"Code": "AccessDenied"}}, name)
        return {}

    def change_message_visibility(self, **kwargs: Any) -> dict[str, Any]:
        return self._answer("change_message_visibility", kwargs)

    def send_message(self, **kwargs: Any) -> dict[str, Any]:
        return self._answer("send_message", kwargs)


def fake_worker(sqs: FakeQueueClient) -> worker.Worker:
    return worker.Worker(
        tenants=None,  # type: ignore[arg-type]
        sqs=sqs,  # type: ignore[arg-type]
        queue_url="tenant-queue",
        dead_letter_url="dead-letters",
        session=None,  # type: ignore[arg-type]
        http=None,  # type: ignore[arg-type]
    )


def test_a_message_is_kept_invisible_until_30_s_after_the_invocation_can_end() -> None:
    sqs = FakeQueueClient()
    fake_worker(sqs).hold(record(MESSAGE.body()), FakeLambdaContext(remaining_ms=239_001))
    assert sqs.calls == [
        (
            "change_message_visibility",
            {"QueueUrl": "tenant-queue", "ReceiptHandle": "rh", "VisibilityTimeout": 240 + 30},
        )
    ]
    # Best effort: a refusal is logged, and the queue's own visibility (the timeout) remains.
    fake_worker(FakeQueueClient(fail=True)).hold(record("x"), FakeLambdaContext())


def test_a_poison_record_is_buried_with_its_reason_or_left_to_the_redrive() -> None:
    sqs = FakeQueueClient()
    assert fake_worker(sqs).bury(record("{not json", group="g", message_id="m9"), "not JSON")
    assert sqs.calls == [
        (
            "send_message",
            {
                "QueueUrl": "dead-letters",
                "MessageBody": "{not json",
                "MessageGroupId": "g",
                "MessageDeduplicationId": "m9",
                "MessageAttributes": {"reason": {"DataType": "String", "StringValue": "not JSON"}},
            },
        )
    ]
    assert not fake_worker(FakeQueueClient(fail=True)).bury(record("x"), "why")


def test_the_worker_keeps_a_runtime_per_tenant_shares_one_http_client_and_bounds_the_cache() -> (
    None
):
    import boto3
    import httpx

    from log_forwarder.tenants import Tenant

    # GIVEN a worker and the deployment's variables
    session = boto3.session.Session(
        region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    with httpx.Client() as http:
        shared = worker.Worker(None, None, "q", "d", session, http)  # type: ignore[arg-type]
        env = {"CHECKPOINT_TABLE": "t", "DESTINATIONS": "s3", "S3_BUCKET": "b"}
        tenants = [
            Tenant(f"t{i}.auth0.com", f"p/t{i}") for i in range(worker.MAX_CACHED_TENANTS + 1)
        ]
        # WHEN every tenant runs once, then the second again, then the last with a new watch list
        first = [shared.runtime(tenant, env) for tenant in tenants]
        again = shared.runtime(tenants[1], env)
        changed = shared.runtime(
            Tenant(tenants[-1].domain, tenants[-1].credentials_secret, ("auth0|new",)), env
        )
        # THEN a tenant keeps its runtime (its token, its pacer) until its entry changes
        assert again is first[1]
        assert changed is not first[-1] and changed.settings.watched_user_ids == ("auth0|new",)
        # AND the least recently run tenant was let go past the bound
        assert len(shared.runtimes) == worker.MAX_CACHED_TENANTS
        assert tenants[0].domain not in shared.runtimes
        # AND each has its own key prefix, all one HTTP client
        assert first[3].store.key_prefix == "t3.auth0.com#"
        assert {id(rt.forwarder._env.source._http) for rt in first} == {id(http)}  # type: ignore[attr-defined]


class FakeTenants:
    """The tenants document, already parsed."""

    def __init__(self, text: str) -> None:
        self.config = parse_tenants(
            text, source="doc", rules=TenantRules(secrets_prefix="auth0-user-log-forwarder/")
        )

    def load(self, *, force: bool = False) -> TenantsConfig:
        return self.config


def test_the_worker_forwards_no_tenant_whose_entry_is_refused_and_says_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a document whose entry for acme names another tenant's secret
    thief = {"domain": "acme.eu.auth0.com", "credentials_secret": "auth0-user-log-forwarder/b.com"}
    tenants = FakeTenants(json.dumps({"tenants": [thief]}))
    # WHEN a message for acme comes
    found = worker._tenant(SimpleNamespace(tenants=tenants), "acme.eu.auth0.com")  # type: ignore[arg-type]
    # THEN acme does not run, and the error names the entry and the rule
    assert found is None
    (logged,) = caplog.records
    assert logged.levelname == "ERROR"
    assert "its entry in the tenants document is refused" in logged.getMessage()
    assert "tenants[0] (acme.eu.auth0.com): credentials_secret" in logged.__dict__["error"]
    # AND a refused entry beside acme's valid one does not stop acme (no way to turn it off)
    bad = {"domain": "acme.eu.auth0.com", "auth0_base_url": "https://collector.example.net"}
    tenants = FakeTenants(json.dumps({"tenants": [{"domain": "acme.eu.auth0.com"}, bad]}))
    found = worker._tenant(SimpleNamespace(tenants=tenants), "acme.eu.auth0.com")  # type: ignore[arg-type]
    assert found is not None and found.auth0_base_url is None
