"""One user id in two tenants: two checkpoint items, two streams, two S3 key segments (on moto's
server). And a single-tenant store's items stay exactly what they always were."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from devtools.local_aws import DeployedResources, LocalAws, deploy_template
from log_forwarder.checkpoint_store import DynamoCheckpointStore
from log_forwarder.records import Delivery, DeliveryReport, OutputLine
from log_forwarder.sinks import PrefixedSink
from log_forwarder.sinks.batching import stream_name_for, user_slug
from log_forwarder.sinks.cloudwatch import CloudWatchSink
from log_forwarder.sinks.s3 import S3Sink
from log_forwarder.tenants import Tenant

USER = "auth0|5f7c8ec7c33c6c004bbafe82"
ACME = Tenant("acme.eu.auth0.com", "auth0-user-log-forwarder/acme")
BETA = Tenant("beta.us.auth0.com", "auth0-user-log-forwarder/beta")


@pytest.fixture
def deployed(aws: LocalAws) -> DeployedResources:
    return deploy_template(
        aws, stack_name=f"k{uuid.uuid4().hex[:10]}", destinations="cloudwatch,s3"
    )


def store(aws: LocalAws, deployed: DeployedResources, prefix: str = "") -> DynamoCheckpointStore:
    return DynamoCheckpointStore(
        deployed.table_name, client=aws.client("dynamodb"), key_prefix=prefix
    )


def raw_keys(aws: LocalAws, deployed: DeployedResources) -> list[str]:
    items = aws.client("dynamodb").scan(TableName=deployed.table_name)["Items"]
    return sorted(item["user_id"]["S"] for item in items)


def test_one_user_in_two_tenants_has_two_checkpoints_and_the_single_tenant_item_is_unchanged(
    aws: LocalAws, deployed: DeployedResources
) -> None:
    # GIVEN the same user id saved by a single-tenant store and by two tenants' stores
    single, acme, beta = (store(aws, deployed, p) for p in ("", ACME.key_prefix, BETA.key_prefix))
    single.save(USER, {"who": "single"}, expected_version=None, summary={"n": 1})
    acme.save(USER, {"who": "acme"}, expected_version=None)
    acme.save(USER, {"who": "acme", "again": True}, expected_version=1)
    beta.save(USER, {"who": "beta"}, expected_version=None)
    # THEN there are three items, the single-tenant one keyed by the bare id as always
    assert raw_keys(aws, deployed) == sorted(
        [USER, f"acme.eu.auth0.com#{USER}", f"beta.us.auth0.com#{USER}"]
    )
    # AND each store reads its own, under the bare user id, with its own version
    assert single.load([USER])[USER].state == {"who": "single"}
    assert (acme.load([USER])[USER].version, acme.load([USER])[USER].state["who"]) == (2, "acme")
    assert (beta.load([USER])[USER].version, beta.load([USER])[USER].state["who"]) == (1, "beta")
    # AND the single-tenant item holds exactly the attributes it always did
    item = aws.client("dynamodb").get_item(
        TableName=deployed.table_name, Key={"user_id": {"S": USER}}
    )["Item"]
    # (write_token: what a save retried after a lost answer recognises as its own)
    assert set(item) == {"user_id", "version", "state", "n", "updated_at", "write_token"}


def test_a_tenant_s_watch_list_from_the_table_is_its_own_items_only(
    aws: LocalAws, deployed: DeployedResources
) -> None:
    # GIVEN watch items for two tenants, one of them for the same user id
    dynamodb = aws.client("dynamodb")
    for key in (f"acme.eu.auth0.com#{USER}", f"beta.us.auth0.com#{USER}", "beta.us.auth0.com#x"):
        dynamodb.put_item(
            TableName=deployed.table_name,
            Item={"user_id": {"S": key}, "watch": {"BOOL": True}},
        )
    # THEN each tenant's store lists its own users, by bare id
    assert store(aws, deployed, ACME.key_prefix).watched_users() == [USER]
    assert store(aws, deployed, BETA.key_prefix).watched_users() == [USER, "x"]


class Capture:
    name = "capture"

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []

    def deliver(self, delivery: Delivery) -> DeliveryReport:
        self.deliveries.append(delivery)
        return DeliveryReport(destination=self.name, accepted=len(delivery.lines))


def delivery(tenant: str, log_id: str) -> Delivery:
    line = (
        f'{{"log_id":"{log_id}","_forwarder":{{"tenant":"{tenant}","watched_user_id":"{USER}"}}}}'
    )
    return Delivery(USER, f"batch-{log_id}", (OutputLine(1_790_000_000_000, line, log_id),))


def test_a_prefixed_sink_renames_the_user_and_nothing_else() -> None:
    inner = Capture()
    sink = PrefixedSink(inner, ACME.key_prefix)
    report = sink.deliver(delivery("acme.eu.auth0.com", "1"))
    assert (sink.name, report.accepted) == ("capture", 1)
    (seen,) = inner.deliveries
    assert seen.user_id == f"acme.eu.auth0.com#{USER}"
    assert seen.lines == delivery("acme.eu.auth0.com", "1").lines


def test_one_user_in_two_tenants_gets_two_streams_and_two_s3_segments(
    aws: LocalAws, deployed: DeployedResources
) -> None:
    # GIVEN each tenant's sinks over the shared log group and bucket
    assert deployed.log_group is not None and deployed.bucket is not None
    logs, s3 = aws.client("logs"), aws.client("s3")
    for tenant, log_id in ((ACME, "a1"), (BETA, "b1")):
        for inner in (
            CloudWatchSink(deployed.log_group, client=logs),
            S3Sink(deployed.bucket, "auth0-logs/", client=s3),
        ):
            # WHEN the same user's batch is delivered for each tenant
            PrefixedSink(inner, tenant.key_prefix).deliver(delivery(tenant.domain, log_id))
    # THEN each tenant has a stream of its own, holding its own line only
    streams = logs.describe_log_streams(logGroupName=deployed.log_group)["logStreams"]
    names = sorted(stream["logStreamName"] for stream in streams)
    assert names == sorted(stream_name_for(t.key_prefix + USER) for t in (ACME, BETA))
    assert names[0].startswith("acme.eu.auth0.com#auth0|")
    for tenant, log_id in ((ACME, "a1"), (BETA, "b1")):
        events = logs.get_log_events(
            logGroupName=deployed.log_group, logStreamName=stream_name_for(tenant.key_prefix + USER)
        )["events"]
        assert [log_id in e["message"] for e in events] == [True]
    # AND an S3 segment of its own under the same day partition (the Athena table's layout)
    keys: list[Any] = [o["Key"] for o in s3.list_objects_v2(Bucket=deployed.bucket)["Contents"]]
    segments = sorted(key.split("/")[2] for key in keys)
    assert segments == sorted(user_slug(t.key_prefix + USER) for t in (ACME, BETA))
    assert all(key.startswith("auth0-logs/dt=") for key in keys)
