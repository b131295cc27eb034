"""Multi-tenant mode on one machine: the template's stack with TenantsParameterName set, on moto's
server, one Auth0 simulator per tenant, and both handlers the template names.

Lambda's SQS event source is played by `deliver()`: receive a batch from the tenant queue (the
event's BatchSize), invoke the worker with the records as Lambda shapes them, delete the records
it did not report as failed. What SQS does on its own (FIFO groups, deduplication, redrive to
the dead-letter queue) is moto's. Time does not pass here: `let_visibility_pass()` makes the
messages the worker did not finish (failed, or its invocation died) visible again, as their
visibility timeout would.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from devtools.auth0_simulator import Auth0Simulator
from devtools.harness import (
    SCHEDULED_EVENT,
    FakeLambdaContext,
    Invocation,
    LocalFunction,
    StackContents,
    invoke_handler,
)
from devtools.local_aws import (
    FORWARDER,
    WORKER,
    LocalAws,
    deploy_template,
    function_environment,
    handler_from_template,
    load_template,
)

TENANTS_PARAMETER = "/auth0-user-log-forwarder/tenants"
SECRETS_PREFIX = "auth0-user-log-forwarder/"


@dataclass
class LocalTenant:
    simulator: Auth0Simulator
    watched_user_ids: Sequence[str] | None = None

    @property
    def domain(self) -> str:
        return self.simulator.domain

    @property
    def secret_name(self) -> str:
        return f"{SECRETS_PREFIX}{self.domain}"

    def entry(self) -> dict[str, Any]:
        """The tenant's entry in the tenants document."""
        entry: dict[str, Any] = {
            "domain": self.domain,
            "credentials_secret": self.secret_name,
            "auth0_base_url": self.simulator.base_url,
            # The simulators answer fast and allow much: these runs are about correctness.
            "rate_limit_per_second": 400,
        }
        if self.watched_user_ids is not None:
            entry["watched_user_ids"] = list(self.watched_user_ids)
        return entry


@dataclass
class WorkerRun:
    """One invocation of the worker by the emulated event source."""

    message_ids: list[str]
    tenants: list[str]
    receive_counts: list[int]
    failed: list[str]
    invocation: Invocation
    summaries: list[dict[str, Any]] = field(default_factory=list)


class FanoutDeployment(StackContents):
    def __init__(
        self,
        aws: LocalAws,
        tenants: Sequence[LocalTenant],
        *,
        stack_name: str,
        destinations: str = "cloudwatch,s3",
        clock: Callable[[], float] | None = None,
        **overrides: str,
    ) -> None:
        self.aws = aws
        self.tenants = list(tenants)
        self._clock = clock
        self.resources = deploy_template(
            aws,
            stack_name=stack_name,
            destinations=destinations,
            tenants_parameter=TENANTS_PARAMETER,
        )
        for tenant in self.tenants:
            self.put_secret(tenant.secret_name, tenant.simulator)
        self.put_tenants({"tenants": [tenant.entry() for tenant in self.tenants]})
        # A local run: the functions honour the simulators' base URLs, and no other.
        local = {"TENANT_LOCAL_BASE_URLS": ",".join(t.simulator.base_url for t in self.tenants)}
        self.env = {
            name: self._env(name, destinations, {**local, **overrides})
            for name in (FORWARDER, WORKER)
        }
        parameters = {"TenantsParameterName": TENANTS_PARAMETER}
        self._handlers = {
            name: handler_from_template(function=name, parameters=parameters)
            for name in (FORWARDER, WORKER)
        }
        self._tick_event = json.loads(SCHEDULED_EVENT.read_text(encoding="utf-8"))
        self.unsettled: list[str] = []  # receipt handles of messages received, not deleted
        self.batch_size = self._batch_size()

    def _env(
        self, function: str, destinations: str, overrides: Mapping[str, str]
    ) -> dict[str, str]:
        return {
            **self.aws.env(),
            **function_environment(
                self.resources,
                auth0_domain="",
                auth0_base_url="",
                watched_user_ids=None,
                destinations=destinations,
                function=function,
                **{"AWS_ENDPOINT_URL": self.aws.endpoint_url, **overrides},
            ),
        }

    @staticmethod
    def _batch_size() -> int:
        (event,) = load_template()["Resources"][WORKER]["Properties"]["Events"].values()
        return int(event["Properties"]["BatchSize"])

    # -- the operator's side ------------------------------------------------------------------

    def put_tenants(self, document: Mapping[str, Any] | str) -> None:
        text = document if isinstance(document, str) else json.dumps(document)
        self.aws.client("ssm").put_parameter(
            Name=TENANTS_PARAMETER, Value=text, Type="String", Overwrite=True
        )

    def put_secret(self, name: str, simulator: Auth0Simulator) -> None:
        secrets = self.aws.client("secretsmanager")
        value = json.dumps(
            {"client_id": simulator.client_id, "client_secret": simulator.client_secret}
        )
        try:
            secrets.create_secret(Name=name, SecretString=value)
        except secrets.exceptions.ResourceExistsException:
            secrets.put_secret_value(SecretId=name, SecretString=value)

    # -- what Lambda does -----------------------------------------------------------------------

    def tick(self, *, event_id: str | None = None) -> Invocation:
        """The schedule fires: the scheduled function enqueues the tenants."""
        event = {**self._tick_event, "id": event_id or str(uuid.uuid4())}
        context = FakeLambdaContext(function_name=FORWARDER)
        return invoke_handler(self._function(FORWARDER), event, context, cold=False)

    def deliver(
        self, *, remaining_ms: int | Callable[[], int] = 240_000, cold: bool = False
    ) -> WorkerRun | None:
        """One poll of the event source: a batch to the worker, or None when none is visible."""
        sqs = self.aws.client("sqs")
        url = self.resources.queue_urls["TenantQueue"]
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=self.batch_size,
            MessageSystemAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            return None
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        event = {"Records": [_record(m, arn["Attributes"]["QueueArn"]) for m in messages]}
        self.unsettled += [m["ReceiptHandle"] for m in messages]
        context = FakeLambdaContext(remaining_ms=remaining_ms, function_name=WORKER)
        invocation = invoke_handler(self._function(WORKER), event, context, cold=cold)
        return self._settle(messages, invocation)

    def _function(self, name: str) -> LocalFunction:
        return LocalFunction(self._handlers[name], self.env[name], self._clock or time.time)

    def _settle(self, messages: list[dict[str, Any]], invocation: Invocation) -> WorkerRun:
        """Delete what succeeded, as the event source does; keep the failed ones' handles."""
        sqs = self.aws.client("sqs")
        result = invocation.result or {}
        if invocation.error is not None:
            failed = [m["MessageId"] for m in messages]  # a failed invocation fails the batch
        else:
            failed = [item["itemIdentifier"] for item in result.get("batchItemFailures", [])]
        for message in messages:
            if message["MessageId"] not in failed:
                self.unsettled.remove(message["ReceiptHandle"])
                sqs.delete_message(
                    QueueUrl=self.resources.queue_urls["TenantQueue"],
                    ReceiptHandle=message["ReceiptHandle"],
                )
        return WorkerRun(
            message_ids=[m["MessageId"] for m in messages],
            tenants=[_tenant_of(m["Body"]) for m in messages],
            receive_counts=[int(m["Attributes"]["ApproximateReceiveCount"]) for m in messages],
            failed=failed,
            invocation=invocation,
            summaries=_run_summaries(invocation.output),
        )

    def drain(self, *, limit: int = 100, **kwargs: Any) -> list[WorkerRun]:
        """Poll until nothing is visible (failed messages stay hidden until released)."""
        runs: list[WorkerRun] = []
        while len(runs) < limit and (run := self.deliver(**kwargs)) is not None:
            runs.append(run)
        return runs

    def let_visibility_pass(self) -> None:
        """The visibility timeout of the messages not deleted passes: they can be received again."""
        sqs = self.aws.client("sqs")
        for receipt in self.unsettled:
            sqs.change_message_visibility(
                QueueUrl=self.resources.queue_urls["TenantQueue"],
                ReceiptHandle=receipt,
                VisibilityTimeout=0,
            )
        self.unsettled.clear()

    def send_raw(self, body: str, group: str) -> None:
        """A message the scheduler would never send (a poison message)."""
        self.aws.client("sqs").send_message(
            QueueUrl=self.resources.queue_urls["TenantQueue"],
            MessageBody=body,
            MessageGroupId=group,
            MessageDeduplicationId=uuid.uuid4().hex,
        )

    def dead_letters(self) -> list[dict[str, Any]]:
        sqs = self.aws.client("sqs")
        url = self.resources.queue_urls["TenantDeadLetterQueue"]
        found: list[dict[str, Any]] = []
        while batch := sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", []):
            found.extend(batch)
        for message in found:  # looked at, not consumed
            sqs.change_message_visibility(
                QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
            )
        return found

    # -- what the destinations hold, per tenant ---------------------------------------------------

    def tenant_records(self, domain: str, user_id: str, destination: str) -> list[dict[str, Any]]:
        if destination == "cloudwatch":
            return self.cloudwatch_records(f"{domain}#{user_id}")
        return self.s3_records(user_id, tenant=domain)

    def tenant_checkpoint(self, domain: str, user_id: str) -> dict[str, Any] | None:
        return self.checkpoint(user_id, key_prefix=f"{domain}#")


def _record(message: Mapping[str, Any], queue_arn: str) -> dict[str, Any]:
    """An SQS message as Lambda's event source hands it to the function."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {},
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": queue_arn.split(":")[3],
    }


def _tenant_of(body: str) -> str:
    try:
        document = json.loads(body)
    except ValueError:
        return "?"
    return str(document.get("tenant", "?")) if isinstance(document, dict) else "?"


def _run_summaries(output: str) -> list[dict[str, Any]]:
    """The 'Run finished' summaries the worker logged, one per tenant it forwarded."""
    summaries = []
    for line in output.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("message") == "Run finished":
            summaries.append({"tenant": record.get("tenant"), **record.get("summary", {})})
    return summaries
