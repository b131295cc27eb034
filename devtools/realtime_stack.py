"""The real-time path of a locally deployed stack: Auth0's partner event bus on moto's server,
the rule the template declares (its event pattern resolved as CloudFormation would), and the
real-time handler imported through the template's Handler path.

The rule's target is the real-time queue, as in the template; moto does not run Lambda's event
source mappings, so `deliver_pushed` (or `EventSourceMapping`, several batches at once) reads the
queue into the handler as Lambda would: batches of up to the template's BatchSize gathered within
its batching window, each message the handler names in `batchItemFailures` left on the queue
(visible again after its visibility timeout), the others deleted. moto also reads a bus name only
after its last '/', so the local bus is named by that part of the source (each stack's source
ends in a name of its own).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from typing import Any

from devtools.harness import (
    FakeLambdaContext,
    Invocation,
    LocalDeployment,
    LocalFunction,
    invoke_handler,
)
from devtools.local_aws import (
    ACCOUNT_ID,
    _create_queues,
    _Resolver,
    function_environment,
    handler_from_template,
    load_template,
)
from devtools.log_stream import LogStreamEmitter

REALTIME = "RealtimeFunction"
REAL_QUEUE = "RealtimeQueue"
SOURCE_PREFIX = "aws.partner/auth0.com/demo-tenant-7b2c9f0e-0d3a-4c1e-9a55-1f2e3d4c5b6a/"


class RealtimePath:
    def __init__(
        self,
        stack: LocalDeployment,
        *,
        source: str | None = None,
        visibility_s: int | None = None,
        fifo: bool = False,
    ) -> None:
        """The queue and its dead-letter queue as the template declares them (encryption, the
        redrive policy, retention, visibility). `visibility_s`: another visibility timeout
        (tests shorten it); `fifo`: a FIFO queue instead, for bench/realtime_burst.py's
        comparison (no dead-letter queue)."""
        self.stack = stack
        source = source or SOURCE_PREFIX + stack.resources.stack_name
        self.source = source
        self.bus = source.rsplit("/", 1)[-1]
        aws = stack.aws
        watched = stack.env.get("WATCHED_USER_IDS", "")
        parameters = {
            "RealtimeEventSourceName": source,
            "WatchedUserIds": watched,
            # On, the rule's pattern takes every user's events (the tenant-wide rules need them).
            "DetectionsTenantWide": stack.env.get("DETECTIONS_TENANT_WIDE", "false"),
        }
        template = load_template()
        resolver = _Resolver(template, parameters, stack_name=stack.resources.stack_name)
        if not resolver.active("RealtimeEventBus"):
            raise ValueError("the template does not create the real-time path for these parameters")
        rule = template["Resources"]["RealtimeRule"]["Properties"]
        self.pattern: dict[str, Any] = resolver.resolve(rule["EventPattern"])
        self.function_properties = template["Resources"][REALTIME]["Properties"]
        self.mapping = self.function_properties["Events"]["Pushed"]["Properties"]
        events = aws.client("events")
        self.events = events
        names = {b["Name"] for b in events.list_event_buses()["EventBuses"]}
        if self.bus not in names:
            events.create_partner_event_source(Name=source, Account=ACCOUNT_ID)
            events.create_event_bus(Name=self.bus, EventSourceName=source)
        self.pushed_table = stack.resources.pushed_table or ""
        sqs = aws.client("sqs")
        self.dead_letter_url: str | None = None
        if fifo:
            attributes = {"FifoQueue": "true", "ContentBasedDeduplication": "true"}
            name = f"{stack.resources.stack_name}-realtime.fifo"
            self.queue_url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        else:
            queues = {q: template["Resources"][q] for q in ("RealtimeDeadLetterQueue", REAL_QUEUE)}
            stack_name = stack.resources.stack_name
            urls = _create_queues(aws, {"Resources": queues}, resolver, stack_name)
            self.queue_url, self.dead_letter_url = urls[REAL_QUEUE], urls["RealtimeDeadLetterQueue"]
        if visibility_s is not None:
            attributes = {"VisibilityTimeout": str(visibility_s)}
            sqs.set_queue_attributes(QueueUrl=self.queue_url, Attributes=attributes)
        arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        rule_name = f"{stack.resources.stack_name}-auth0-log-stream"[:64]
        events.put_rule(
            Name=rule_name, EventBusName=self.bus, EventPattern=json.dumps(self.pattern)
        )
        target: dict[str, Any] = {"Id": "realtime", "Arn": arn["Attributes"]["QueueArn"]}
        if fifo:
            # A rule's SQS target takes one message group for every event.
            target["SqsParameters"] = {"MessageGroupId": "auth0"}
        events.put_targets(Rule=rule_name, EventBusName=self.bus, Targets=[target])
        self.sqs = sqs
        self.env = {
            **function_environment(
                stack.resources,
                auth0_domain=stack.simulator.domain,
                auth0_base_url=stack.simulator.base_url,
                watched_user_ids=[u for u in watched.split(",") if u],
                destinations=stack.env["DESTINATIONS"],
                function=REALTIME,
                AWS_ENDPOINT_URL=stack.aws.endpoint_url,
            ),
            **{k: v for k, v in stack.env.items() if k.startswith("AWS_")},
            "REALTIME_EVENT_SOURCE": source,
            "PUSHED_EVENTS_TABLE": self.pushed_table,
            "REALTIME_QUEUE_URL": self.queue_url,
        }
        for name in (
            "DETECTIONS",
            "DETECTIONS_TENANT_WIDE",
            "FINDINGS_EVENT_BUS",
            "OUTPUT_FORMAT",
            "OCSF_VERSION",
        ):
            if name in stack.env:
                self.env[name] = stack.env[name]
        stack.env["REALTIME_EVENT_SOURCE"] = source
        stack.env["PUSHED_EVENTS_TABLE"] = self.pushed_table
        self._handler: Callable[[dict[str, Any], Any], Any] | None = None

    def emitter(self, *, seed: int = 1, **faults: Any) -> LogStreamEmitter:
        return LogStreamEmitter(
            self.events, self.source, self.source, random.Random(seed), **faults
        )

    def handler(self) -> LocalFunction:
        """The real-time function as deployed: its handler and environment."""
        from devtools.harness import _environment

        if self._handler is None:
            with _environment(self.env):
                self._handler = handler_from_template(function=REALTIME)
        return LocalFunction(self._handler, self.env, self.stack.clock)

    def deliver_pushed(
        self, *, batch: int | None = None, clock: Callable[[], float] | None = None
    ) -> list[Invocation]:
        """Every event the rule routed so far, through the handler, a batch per invocation (at
        most `batch`, by default the template's BatchSize); the invocations, in order. Messages
        handed back stay on the queue until their visibility ends."""
        function = self.handler()
        if clock is not None:
            function = LocalFunction(function.handler, function.env, clock)
        invocations: list[Invocation] = []
        while True:
            messages = self.receive(batch or int(self.mapping["BatchSize"]))
            if not messages:
                return invocations
            timeout_ms = int(self.function_properties.get("Timeout", 30)) * 1000
            context = FakeLambdaContext(remaining_ms=timeout_ms, function_name=REALTIME)
            invocation = invoke_handler(function, sqs_event(messages), context, cold=False)
            invocations.append(invocation)
            self.settle(messages, invocation.result if invocation.error is None else None)

    def receive(self, most: int, *, window_s: float = 0.0) -> list[dict[str, Any]]:
        """Up to `most` messages, gathered for at most `window_s` (Lambda's batching window):
        what one invocation gets."""
        messages: list[dict[str, Any]] = []
        until = time.monotonic() + window_s
        while len(messages) < most:
            got = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, most - len(messages)),
                WaitTimeSeconds=0,
                AttributeNames=["All"],
            ).get("Messages", [])
            messages += got
            if not got:
                if time.monotonic() >= until:
                    return messages
                time.sleep(0.02)
        return messages

    def settle(self, messages: list[dict[str, Any]], result: Any) -> None:
        """What Lambda's event source does after an invocation: delete every message but those
        the answer names in `batchItemFailures` (all of them stay after a failed invocation)."""
        if not isinstance(result, dict):
            return
        failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
        done = [m for m in messages if m["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(done[start : start + 10])
                ],
            )

    def invoke(self, event: dict[str, Any], *, cold: bool = False) -> Invocation:
        """One invocation with `event` (an EventBridge event, as the rule's Lambda target gave
        the function before the queue)."""
        context = FakeLambdaContext(function_name=REALTIME)
        return invoke_handler(self.handler(), event, context, cold=cold)


def sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The event Lambda's SQS event source hands the function for these messages."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": m.get("Attributes", {}),
                "eventSource": "aws:sqs",
            }
            for m in messages
        ]
    }
