"""Kinesis Data Firehose end to end: through the template's handler, the simulator and moto's
server, whose Firehose stream (the template's own, into the stack's bucket) writes what it is
put to S3 at once, so the records are read back from the bucket as Firehose's destination holds
them. A run killed after Firehose took a batch and before its commit shows the repeat the
registry declares for Firehose, counted by PossibleRepeats, while CloudWatch skips what it holds.
"""

from __future__ import annotations

import gzip
import json
import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools.auth0_simulator import Auth0Simulator
from devtools.aws_fault_proxy import AwsFaultProxy
from devtools.harness import LocalDeployment
from devtools.local_aws import LocalAws
from devtools.traffic import generate_user_events
from tests.e2e.conftest import Clock, stack_name
from tests.e2e.test_faults import FAULT_LEDGER, USER, FaultRow, _invoke_in_process

pytestmark = pytest.mark.integration
PUT_RECORD_BATCH = "Firehose_20150804.PutRecordBatch"


def records_under(stack: LocalDeployment, prefix: str) -> list[dict[str, Any]]:
    """The lines of the bucket's objects under `prefix`: the stack's Firehose stream writes under
    firehose/ (gzipped in AWS; moto stores the records as they were put), the s3 destination
    under auth0-logs/ (gzipped), so each destination is read on its own."""
    s3, bucket = stack.aws.client("s3"), stack.resources.bucket
    records: list[dict[str, Any]] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            text = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
            records.extend(json.loads(line) for line in text.decode("utf-8").splitlines())
    return records


def firehose_records(stack: LocalDeployment) -> list[dict[str, Any]]:
    """What the stack's Firehose stream delivered to the bucket, line by line."""
    return records_under(stack, "firehose/")


def event_counts(records: list[dict[str, Any]]) -> Counter[str]:
    return Counter(r["log_id"] for r in records if "log_id" in r)


def deploy(
    aws: LocalAws, sim: Auth0Simulator, destinations: str, clock: Clock | None = None, **env: str
) -> LocalDeployment:
    return LocalDeployment(
        aws,
        sim,
        stack_name=stack_name("fh"),
        destinations=destinations,
        watched_user_ids=[USER],
        clock=clock,
        READ_MODE="per-user",
        **env,
    )


def test_events_are_delivered_through_firehose_once_each(
    aws: LocalAws, sim: Auth0Simulator
) -> None:
    # GIVEN 30 events of a watched user, and a stack forwarding to Firehose and S3
    now = datetime.now(UTC)
    rng = random.Random(41)
    events = sim.add_events(
        generate_user_events(USER, count=30, start=now - timedelta(hours=1), end=now, rng=rng)
    )
    stack = deploy(aws, sim, "s3,firehose")
    # WHEN the function runs, twice
    first = stack.invoke()
    second = stack.invoke()
    # THEN the stream's destination holds every event once, the Auth0 event unchanged at the
    # top level and the forwarder's fields under `_forwarder`, as S3 does
    assert first.error is None and second.error is None, first.error or second.error
    delivered = firehose_records(stack)
    assert event_counts(delivered) == Counter(e["log_id"] for e in events)
    by_id = {r["log_id"]: r for r in delivered if "log_id" in r}
    for event in events:
        assert {k: v for k, v in by_id[event["log_id"]].items() if k != "_forwarder"} == event
    assert event_counts(records_under(stack, "auth0-logs/")) == event_counts(delivered)
    # AND the metrics count the lines Firehose took (the events and the forwarder's records
    # beside them), and no repeat
    metrics = first.metrics()
    assert (metrics["EventsDelivered_firehose"], metrics["PossibleRepeats"]) == (len(delivered), 0)
    assert second.metrics()["EventsDelivered_firehose"] == 0
    said = f"none: EventsDelivered_firehose={len(delivered)} (30 events and their records)"
    row = FaultRow("delivered through Firehose (moto's stream)", "firehose", 30, 30, 0, 0, 0, said)
    FAULT_LEDGER.append(row)


def test_a_run_killed_before_its_commit_repeats_the_batch_in_firehose_and_counts_it(
    aws: LocalAws, sim: Auth0Simulator
) -> None:
    # GIVEN a stack forwarding to CloudWatch (which skips what it holds) and Firehose (which may
    # repeat), its clock ours to move, and a user forwarded once
    now = datetime.now(UTC)
    rng = random.Random(42)
    events = sim.add_events(
        generate_user_events(USER, count=10, start=now - timedelta(hours=1), end=now, rng=rng)
    )
    clock = Clock()
    with AwsFaultProxy(aws.endpoint_url) as proxy:
        stack = deploy(aws, sim, "cloudwatch,firehose", clock, AWS_ENDPOINT_URL=proxy.url)
        assert stack.invoke().error is None
        batch = sim.add_events(
            generate_user_events(
                USER, count=20, start=now - timedelta(seconds=30), end=now, rng=rng
            )
        )
        # WHEN a run puts the new batch to Firehose and is killed while waiting for its answer
        # (Firehose took the records: the checkpoint still holds the batch's intent)
        released = threading.Event()
        proxy.add(PUT_RECORD_BATCH, "hang", delay_s=60, release=released)
        killed = _invoke_in_process(stack, 120_000)
        deadline = time.monotonic() + 60
        while sum(event_counts(firehose_records(stack)).values()) < 30:
            assert time.monotonic() < deadline, "Firehose never took the batch"
            time.sleep(0.1)
        killed.kill()
        killed.communicate(timeout=30)
        released.set()
        before = len(firehose_records(stack))
        # AND the next run comes once the killed run's lease is over (its 120 s, and 30 s)
        clock.offset += 600
        recovery = stack.invoke()
    # THEN the run redelivers the batch: CloudWatch holds each event once, Firehose the batch
    # twice (it cannot be read back, as the registry declares), nothing missing
    assert recovery.error is None, recovery.error
    expected = Counter(e["log_id"] for e in events + batch)
    assert event_counts(stack.cloudwatch_records(USER)) == expected
    assert event_counts(firehose_records(stack)) == expected + Counter(e["log_id"] for e in batch)
    # AND each line put again is counted: the 20 events and the batch's finding records in
    # Firehose, and its findings sent again to EventBridge (which may repeat as well)
    metrics = recovery.metrics()
    (user,) = recovery.result["users"]
    findings_again = user["delivered"]["eventbridge"]
    repeated = len(firehose_records(stack)) - before
    assert repeated == 20 + findings_again
    assert metrics["PossibleRepeats"] == repeated + findings_again
    assert metrics["RecoveredEvents"] == 20
    delivered = (metrics["EventsDelivered_firehose"], metrics["EventsDelivered_cloudwatch"])
    assert delivered == (repeated, 0)
    said = f"the batch again in Firehose, as declared: PossibleRepeats={repeated + findings_again}"
    scenario = "run killed after Firehose took a batch, before its commit"
    for destination, duplicated in (("cloudwatch", 0), ("firehose", 20)):
        FAULT_LEDGER.append(FaultRow(scenario, destination, 30, 30, 0, duplicated, 0, said))
