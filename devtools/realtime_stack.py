"""The real-time path of a locally deployed stack: Auth0's partner event bus on moto's server,
the rule the template declares (its event pattern resolved as CloudFormation would), and the
real-time handler imported through the template's Handler path.

moto does not invoke Lambda targets, so the rule's target here is an SQS queue, and
`deliver_pushed` drains it into the handler, a batch of events per invocation (the handler
takes one EventBridge event, as the rule invokes it in AWS, or an SQS batch of them). moto also
reads a bus name only after its last '/', so the local bus is named by that part of the source
(each stack's source ends in a name of its own).
"""

from __future__ import annotations

import json
import random
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
    _Resolver,
    function_environment,
    handler_from_template,
    load_template,
)
from devtools.log_stream import LogStreamEmitter

REALTIME = "RealtimeFunction"
SOURCE_PREFIX = "aws.partner/auth0.com/demo-tenant-7b2c9f0e-0d3a-4c1e-9a55-1f2e3d4c5b6a/"


class RealtimePath:
    def __init__(self, stack: LocalDeployment, *, source: str | None = None) -> None:
        self.stack = stack
        source = source or SOURCE_PREFIX + stack.resources.stack_name
        self.source = source
        self.bus = source.rsplit("/", 1)[-1]
        aws = stack.aws
        watched = stack.env.get("WATCHED_USER_IDS", "")
        parameters = {"RealtimeEventSourceName": source, "WatchedUserIds": watched}
        template = load_template()
        resolver = _Resolver(template, parameters, stack_name=stack.resources.stack_name)
        if not resolver.active("RealtimeEventBus"):
            raise ValueError("the template does not create the real-time path for these parameters")
        rule = template["Resources"][REALTIME]["Properties"]["Events"]["Auth0LogStream"]
        self.pattern: dict[str, Any] = resolver.resolve(rule["Properties"]["Pattern"])
        events = aws.client("events")
        self.events = events
        names = {b["Name"] for b in events.list_event_buses()["EventBuses"]}
        if self.bus not in names:
            events.create_partner_event_source(Name=source, Account=ACCOUNT_ID)
            events.create_event_bus(Name=self.bus, EventSourceName=source)
        sqs = aws.client("sqs")
        self.queue_url = sqs.create_queue(QueueName=f"{stack.resources.stack_name}-realtime")[
            "QueueUrl"
        ]
        arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        rule_name = f"{stack.resources.stack_name}-auth0-log-stream"[:64]
        events.put_rule(
            Name=rule_name, EventBusName=self.bus, EventPattern=json.dumps(self.pattern)
        )
        events.put_targets(
            Rule=rule_name,
            EventBusName=self.bus,
            Targets=[{"Id": "realtime", "Arn": arn["Attributes"]["QueueArn"]}],
        )
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
        }
        for name in ("DETECTIONS", "FINDINGS_EVENT_BUS", "OUTPUT_FORMAT", "OCSF_VERSION"):
            if name in stack.env:
                self.env[name] = stack.env[name]
        stack.env["REALTIME_EVENT_SOURCE"] = source
        self._handler: Callable[[dict[str, Any], Any], Any] | None = None

    def emitter(self, *, seed: int = 1, **faults: Any) -> LogStreamEmitter:
        return LogStreamEmitter(
            self.events, self.source, self.source, random.Random(seed), **faults
        )

    def deliver_pushed(
        self, *, batch: int = 10, clock: Callable[[], float] | None = None
    ) -> list[Invocation]:
        """Every event the rule routed so far, through the handler; the invocations, in order."""
        from devtools.harness import _environment

        if self._handler is None:
            with _environment(self.env):
                self._handler = handler_from_template(function=REALTIME)
        function = LocalFunction(self._handler, self.env, clock or self.stack.clock)
        invocations: list[Invocation] = []
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=min(batch, 10), WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                return invocations
            event = {
                "Records": [{"body": m["Body"], "messageId": m["MessageId"]} for m in messages]
            }
            context = FakeLambdaContext(remaining_ms=30_000, function_name=REALTIME)
            invocations.append(invoke_handler(function, event, context, cold=False))
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]}
                    for i, m in enumerate(messages)
                ],
            )

    def invoke(self, event: dict[str, Any], *, cold: bool = False) -> Invocation:
        """One invocation with `event` (an EventBridge event, as the rule's Lambda target gets)."""
        from devtools.harness import _environment

        if self._handler is None:
            with _environment(self.env):
                self._handler = handler_from_template(function=REALTIME)
        function = LocalFunction(self._handler, self.env, self.stack.clock)
        return invoke_handler(function, event, FakeLambdaContext(function_name=REALTIME), cold=cold)
