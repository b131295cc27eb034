"""The destination registry (sinks/registry.py): what each entry declares is what its sink does,
and what config, the report and the guarantees read from it."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from devtools.aws_fault_proxy import AwsFaultProxy
from devtools.local_aws import TEMPLATE_PATH, LocalAws, deploy_template
from log_forwarder.aws_errors import AWS_CLIENT_CONFIG
from log_forwarder.config import Settings
from log_forwarder.exceptions import ConfigError
from log_forwarder.records import Delivery, DeliveryReport, OutputLine
from log_forwarder.report import METRICS, RunReport, UserReport, metric_values
from log_forwarder.sinks.eventbridge import EventBridgeSink
from log_forwarder.sinks.registry import BY_NAME, NAMES, REGISTRY, Redelivery, combinations

GUARANTEES = TEMPLATE_PATH.parent / "docs" / "guarantees.md"


# What every function reads besides its destinations (local credentials: no secret to fetch).
FUNCTION_ENV = {
    "AUTH0_DOMAIN": "example.eu.auth0.com",
    "AUTH0_CLIENT_ID": "id",
    "AUTH0_CLIENT_SECRET": "secret",
    "CHECKPOINT_TABLE": "table",
}


@pytest.fixture(scope="module")
def aws() -> Iterator[LocalAws]:
    with LocalAws() as server:
        yield server


def provision_cloudwatch_and_s3(aws: LocalAws) -> dict[str, str]:
    deployed = deploy_template(aws, stack_name="registry", destinations="cloudwatch,s3")
    assert deployed.log_group is not None and deployed.bucket is not None
    return {"LOG_GROUP_NAME": deployed.log_group, "S3_BUCKET": deployed.bucket}


def provision_firehose(aws: LocalAws) -> dict[str, str]:
    # The template's own stream, into the stack's bucket
    deployed = deploy_template(aws, stack_name="registry-firehose", destinations="firehose")
    assert deployed.delivery_stream is not None
    return {"FIREHOSE_STREAM_NAME": deployed.delivery_stream}


# What each destination needs on moto's server before its sink can deliver: its settings.
PROVISION: dict[str, Callable[[LocalAws], dict[str, str]]] = {
    "cloudwatch": provision_cloudwatch_and_s3,
    "s3": provision_cloudwatch_and_s3,
    "firehose": provision_firehose,
}


def settings_for(aws: LocalAws, name: str) -> Settings:
    env = {
        **FUNCTION_ENV,
        "DESTINATIONS": name,
        **aws.env(),
        **PROVISION[name](aws),
    }
    return Settings.from_env(env)


def lines(count: int) -> tuple[OutputLine, ...]:
    now = int(time.time() * 1000)
    return tuple(
        OutputLine(now + n, json.dumps({"log_id": f"9{n:08d}", "date": "x"}), f"9{n:08d}")
        for n in range(count)
    )


def test_every_destination_has_a_provisioner_here() -> None:
    assert set(PROVISION) == set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_a_redelivery_does_what_the_registry_declares(aws: LocalAws, name: str) -> None:
    # GIVEN the destination's sink, built by its registry entry from the settings
    destination = BY_NAME[name]
    settings = settings_for(aws, name)
    sink = destination.build(
        settings.destination_settings, lambda service, _config: aws.client(service)
    )
    user, batch = f"auth0|{uuid.uuid4().hex}", uuid.uuid4().hex
    sent = lines(5)
    # WHEN a batch is delivered, and then redelivered after an interrupted run
    first = sink.deliver(Delivery(user, batch, sent))
    again = sink.deliver(Delivery(user, batch, sent, redelivery=True))
    # THEN the first delivery wrote all; the redelivery skips what the destination holds, or,
    # where it cannot be read back, sends all again and counts each as a possible repeat
    assert (first.destination, first.accepted, first.repeated) == (name, 5, 0)
    if destination.redelivery is Redelivery.SKIPS_HELD:
        assert (again.accepted, again.already_present, again.repeated) == (0, 5, 0)
    else:
        assert (again.accepted, again.repeated) == (5, 5)


def test_eventbridge_sends_a_redeliverys_findings_again_and_counts_them(aws: LocalAws) -> None:
    body = {"record_type": "finding", "finding_id": "f1", "rule": "r", "log_ids": ["1"]}
    finding = OutputLine(0, json.dumps({"_forwarder": body}), record_key="finding:f1")
    sink = EventBridgeSink("default", client=aws.client("events"))
    first = sink.deliver(Delivery("auth0|u", "b", (finding,)))
    again = sink.deliver(Delivery("auth0|u", "b", (finding,), redelivery=True))
    assert (first.accepted, first.repeated, again.accepted, again.repeated) == (1, 0, 1, 1)


def test_eventbridge_counts_a_finding_sent_again_after_a_lost_answer(aws: LocalAws) -> None:
    # GIVEN a bus whose first PutEvents answer is lost after EventBridge took the finding
    body = {"record_type": "finding", "finding_id": "f2", "rule": "r", "log_ids": ["1"]}
    finding = OutputLine(0, json.dumps({"_forwarder": body}), record_key="finding:f2")
    with AwsFaultProxy(aws.endpoint_url) as proxy:
        proxy.add("AWSEvents.PutEvents", "lose")
        client = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1"
        ).client("events", endpoint_url=proxy.url, config=AWS_CLIENT_CONFIG)
        sink = EventBridgeSink("default", client=client, sleep=lambda _s: None)
        # WHEN it is delivered (no redelivery: a run of its own)
        report = sink.deliver(Delivery("auth0|u", "b2", (finding,)))
    # THEN it was sent twice, and the second counts as a possible repeat
    assert proxy.seen.count("AWSEvents.PutEvents") == 2
    assert (report.accepted, report.repeated) == (1, 1)


def test_possible_repeats_are_a_metric_of_the_run() -> None:
    user = UserReport("auth0|u")
    user.add_delivery(DeliveryReport("eventbridge", accepted=3, repeated=3))
    values = {name: value for name, _unit, value in metric_values(RunReport([user]))}
    assert values["PossibleRepeats"] == 3


def test_each_destination_has_its_delivery_metric() -> None:
    names = {name for name, _unit, _value in METRICS}
    assert {f"EventsDelivered_{name}" for name in NAMES} <= names


@pytest.mark.parametrize("destination", REGISTRY, ids=lambda d: d.name)
def test_a_chosen_destination_without_a_required_setting_is_refused_naming_it(
    destination: Any,
) -> None:
    env = {
        **FUNCTION_ENV,
        "DESTINATIONS": destination.name,
    }
    required = [s for s in destination.settings if s.default is None]
    assert required, "every destination needs a setting to say where"
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env)
    assert str(refused.value).startswith(
        f"{required[0].variable} is required when DESTINATIONS includes {destination.name}: "
    )


def test_every_choice_of_destinations_is_read_in_any_order() -> None:
    base = {
        **FUNCTION_ENV,
        **{s.variable: "x" for d in REGISTRY for s in d.settings},
    }
    for choice in combinations():
        backwards = ",".join(reversed(choice.split(",")))
        settings = Settings.from_env({**base, "DESTINATIONS": backwards})
        assert ",".join(settings.destinations) == choice


def test_the_guarantees_state_each_destinations_redelivery() -> None:
    # docs/guarantees.md's table: a row per destination, saying what the registry declares
    text = GUARANTEES.read_text(encoding="utf-8")
    section = text[text.index("### Redelivery per destination") :]
    rows = {
        match.group(1): match.group(2)
        for match in re.finditer(r"^\| `([a-z0-9]+)` \| ([^|]+) \|", section, re.M)
    }
    assert {name: rows.get(name, "").strip() for name in NAMES} == {
        d.name: d.redelivery.value for d in REGISTRY
    }


@pytest.mark.parametrize(
    "stream",
    [
        "arn:aws:firehose:us-east-1:123456789012:deliverystream/mine",
        "my stream",
        "x" * 65,
    ],
)
def test_a_firehose_stream_name_firehose_would_refuse_is_refused_naming_the_rule(
    stream: str,
) -> None:
    # (botocore's service model: DeliveryStreamName is 1 to 64 of [a-zA-Z0-9_.-])
    env = {
        **FUNCTION_ENV,
        "DESTINATIONS": "firehose",
        "FIREHOSE_STREAM_NAME": stream,
    }
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env)
    assert str(refused.value) == (
        f"FIREHOSE_STREAM_NAME={stream!r} is not a Firehose stream name: 1 to 64 letters, "
        "digits, '_', '.' or '-' (the stream's name, not its ARN)"
    )
    env["FIREHOSE_STREAM_NAME"] = "x" * 64
    assert Settings.from_env(env).destination_settings["FIREHOSE_STREAM_NAME"] == "x" * 64
