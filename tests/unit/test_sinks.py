"""Sinks against moto's real HTTP server (LocalAws), set up from template.yaml."""

from __future__ import annotations

import gzip
import io
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from devtools.local_aws import DeployedResources, LocalAws, deploy_template
from log_forwarder.exceptions import DeliveryError
from log_forwarder.records import Delivery, DeliveryReport, OutputLine, batch_id_for
from log_forwarder.retry import RetryPolicy
from log_forwarder.sinks.batching import CW_MAX_EVENT_BYTES, stream_name_for, user_slug
from log_forwarder.sinks.cloudwatch import CloudWatchSink, rejected_indices
from log_forwarder.sinks.s3 import S3Sink

HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS


@pytest.fixture(scope="module")
def local_aws() -> Iterator[LocalAws]:
    with LocalAws() as aws:
        yield aws


@pytest.fixture(scope="module")
def deployed(local_aws: LocalAws) -> DeployedResources:
    return deploy_template(local_aws, stack_name="sinks", destinations="cloudwatch,s3")


@pytest.fixture
def user_id() -> str:
    # A fresh user per test: one stream / one key prefix each, so tests cannot see each other.
    return f"auth0|{uuid.uuid4().hex}"


def now_ms() -> int:
    return int(time.time() * 1000)


def event_line(log_id: str, timestamp_ms: int, **extra: Any) -> OutputLine:
    record = {"log_id": log_id, "date": f"@{timestamp_ms}", "type": "s", **extra}
    return OutputLine(timestamp_ms, json.dumps(record, separators=(",", ":")), log_id)


def stream_events(aws: LocalAws, log_group: str, user_id: str) -> list[dict[str, Any]]:
    response = aws.client("logs").get_log_events(
        logGroupName=log_group, logStreamName=stream_name_for(user_id), startFromHead=True
    )
    return list(response["events"])


def deliver(
    sink: CloudWatchSink | S3Sink,
    user_id: str,
    lines: list[OutputLine],
    *,
    batch_id: str,
    redelivery: bool = False,
) -> DeliveryReport:
    return sink.deliver(Delivery(user_id, batch_id, tuple(lines), redelivery=redelivery))


def no_sleep(_: float) -> None:
    return None


def offline_client(service: str) -> Any:
    """A client for botocore's Stubber: for the errors moto cannot produce (throttling, 409)."""
    return boto3.client(
        service,  # type: ignore[call-overload]
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


# --- CloudWatch Logs -----------------------------------------------------------------------


def test_lines_land_in_the_users_stream_with_their_own_timestamps(
    local_aws: LocalAws, deployed: DeployedResources, user_id: str
) -> None:
    # GIVEN three recent events, handed over out of order
    base = now_ms() - 3 * HOUR_MS
    lines = [event_line("b", base + 2), event_line("a", base), event_line("c", base + 2)]
    sink = CloudWatchSink(deployed.log_group or "", local_aws.client("logs"))
    # WHEN delivered
    report = deliver(sink, user_id, lines, batch_id=batch_id_for(["a", "b", "c"]))
    # THEN they are in the user's own stream, sorted stably, each stamped with its Auth0 date
    events = stream_events(local_aws, deployed.log_group or "", user_id)
    assert [(event["timestamp"], event["message"]) for event in events] == [
        (base, lines[1].line),
        (base + 2, lines[0].line),
        (base + 2, lines[2].line),
    ]
    assert report.destination == "cloudwatch"
    assert (report.accepted, report.restamped, report.oversized, report.already_present) == (
        3,
        0,
        0,
        0,
    )


def test_events_older_than_14_days_are_stamped_with_the_delivery_time(
    local_aws: LocalAws, deployed: DeployedResources, user_id: str
) -> None:
    # GIVEN one event 20 days old, one 13 days 23 h 30 min old (inside the safety margin)
    # and one 1 minute old
    now = now_ms()
    old = event_line("old", now - 20 * DAY_MS)
    edge = event_line("edge", now - 14 * DAY_MS + 30 * 60 * 1000)
    recent = event_line("recent", now - 60_000)
    frozen_now = now / 1000
    sink = CloudWatchSink(
        deployed.log_group or "", local_aws.client("logs"), clock=lambda: frozen_now
    )
    # WHEN delivered
    report = deliver(sink, user_id, [old, edge, recent], batch_id="b")
    # THEN the two near or past CloudWatch's 14-day bound carry the delivery time, in order
    events = stream_events(local_aws, deployed.log_group or "", user_id)
    assert [(event["timestamp"], event["message"]) for event in events] == [
        (recent.timestamp_ms, recent.line),
        (now, old.line),
        (now, edge.line),
    ]
    # AND each line still holds its Auth0 date; the report counts the restamped ones
    assert json.loads(events[1]["message"])["date"] == f"@{old.timestamp_ms}"
    assert (report.accepted, report.restamped) == (3, 2)


def test_events_too_far_in_the_future_are_restamped(
    local_aws: LocalAws, deployed: DeployedResources, user_id: str
) -> None:
    now = now_ms()
    future = event_line("future", now + 3 * HOUR_MS)
    sink = CloudWatchSink(
        deployed.log_group or "", local_aws.client("logs"), clock=lambda: now / 1000
    )
    report = deliver(sink, user_id, [future], batch_id="b")
    events = stream_events(local_aws, deployed.log_group or "", user_id)
    assert [(event["timestamp"], event["message"]) for event in events] == [(now, future.line)]
    assert report.restamped == 1


def test_events_cloudwatch_rejects_are_put_again_with_the_current_time(
    local_aws: LocalAws, deployed: DeployedResources, user_id: str
) -> None:
    # GIVEN a sink whose clock runs 3 days late, so it believes a 16-day-old event is 13 days
    # old and does not restamp it; the server (moto, on the real clock) will reject it
    late_clock = time.time() - 3 * 24 * 3600
    late_now = int(late_clock * 1000)
    rejected = event_line("rejected", late_now - 13 * DAY_MS)
    accepted = event_line("accepted", late_now - HOUR_MS)
    sink = CloudWatchSink(
        deployed.log_group or "", local_aws.client("logs"), clock=lambda: late_clock
    )
    # WHEN delivered
    report = deliver(sink, user_id, [rejected, accepted], batch_id="b")
    # THEN the rejected event was written again, stamped "now", and nothing was written twice
    events = stream_events(local_aws, deployed.log_group or "", user_id)
    assert sorted((event["message"], event["timestamp"]) for event in events) == sorted(
        [(accepted.line, accepted.timestamp_ms), (rejected.line, late_now)]
    )
    assert (report.accepted, report.restamped) == (2, 1)


@pytest.mark.parametrize(
    ("info", "count", "expected"),
    [
        # moto reports the last too-old index; AWS documents an exclusive end. Both are covered.
        ({"tooOldLogEventEndIndex": 0}, 3, [0]),
        ({"tooOldLogEventEndIndex": 2}, 3, [0, 1, 2]),
        ({"tooOldLogEventEndIndex": 3}, 3, [0, 1, 2]),
        ({"expiredLogEventEndIndex": 2}, 4, [0, 1]),
        ({"tooNewLogEventStartIndex": 2}, 4, [2, 3]),
        ({"tooOldLogEventEndIndex": 0, "tooNewLogEventStartIndex": 3}, 4, [0, 3]),
        ({"tooNewLogEventStartIndex": 99, "expiredLogEventEndIndex": -5}, 4, []),
        ({}, 4, []),
    ],
)
def test_rejected_indices_are_read_defensively(
    info: dict[str, int], count: int, expected: list[int]
) -> None:
    assert rejected_indices(info, count) == expected  # type: ignore[arg-type]


def test_an_event_too_large_for_cloudwatch_is_replaced_by_a_marker(
    local_aws: LocalAws, deployed: DeployedResources, user_id: str
) -> None:
    # GIVEN an event one byte over CloudWatch's event limit, next to a normal one
    now = now_ms()
    padding = "x" * CW_MAX_EVENT_BYTES
    big = event_line("big", now - 1000, description=padding)
    normal = event_line("normal", now)
    sink = CloudWatchSink(deployed.log_group or "", local_aws.client("logs"))
    # WHEN delivered
    report = deliver(sink, user_id, [big, normal], batch_id="b")
    # THEN a small marker names the event, its size and digest, at the event's own timestamp
    events = stream_events(local_aws, deployed.log_group or "", user_id)
    marker = json.loads(events[0]["message"])
    assert events[0]["timestamp"] == big.timestamp_ms
    assert marker["log_id"] == "big"
    assert marker["date"] == f"@{big.timestamp_ms}"
    assert marker["type"] == "s"
    assert marker["_forwarder"]["oversized"] is True
    assert marker["_forwarder"]["original_bytes"] == len(big.line.encode("utf-8"))
    assert len(marker["_forwarder"]["sha256"]) == 64
    assert events[1]["message"] == normal.line
    assert (report.accepted, report.oversized) == (2, 1)


def test_recovery_writes_only_what_a_crashed_run_left_out(
    local_aws: LocalAws, deployed: DeployedResources, user_id: str
) -> None:
    # GIVEN a run that wrote the first three events (one of them a gap record without log_id,
    # one restamped because it is 20 days old) and crashed before its checkpoint
    now = now_ms()
    gap = OutputLine(now - 5000, '{"_forwarder":{"record_type":"gap"}}', None)
    lines = [
        event_line("ancient", now - 20 * DAY_MS),
        gap,
        event_line("a", now - 4000),
        event_line("b", now - 3000),
        event_line("c", now - 2000),
    ]
    sink = CloudWatchSink(deployed.log_group or "", local_aws.client("logs"))
    deliver(sink, user_id, lines[:3], batch_id="first")
    # WHEN the next run delivers the whole batch again in recovery mode
    report = deliver(sink, user_id, lines, batch_id="second", redelivery=True)
    # THEN only the two missing events are written; the stream holds each event once
    messages = [
        event["message"] for event in stream_events(local_aws, deployed.log_group or "", user_id)
    ]
    assert sorted(messages) == sorted(line.line for line in lines)
    assert (report.accepted, report.already_present) == (2, 3)


def test_recovery_on_a_fresh_stream_writes_everything(
    local_aws: LocalAws, deployed: DeployedResources, user_id: str
) -> None:
    lines = [event_line("a", now_ms() - 1000)]
    sink = CloudWatchSink(deployed.log_group or "", local_aws.client("logs"))
    report = deliver(sink, user_id, lines, batch_id="b", redelivery=True)
    assert (report.accepted, report.already_present) == (1, 0)


def test_a_missing_log_group_is_a_delivery_error_naming_it(
    local_aws: LocalAws, user_id: str
) -> None:
    sink = CloudWatchSink("/no/such/group", local_aws.client("logs"), sleep=no_sleep)
    with pytest.raises(DeliveryError, match="/no/such/group"):
        deliver(sink, user_id, [event_line("a", now_ms())], batch_id="b")


def test_throttling_is_retried_with_backoff_then_gives_up() -> None:
    # GIVEN CloudWatch answering PutLogEvents with throttling errors (stubbed: moto never
    # throttles), twice and then accepting; then three times in a row
    logs = offline_client("logs")
    sleeps: list[float] = []
    sink = CloudWatchSink("/group", logs, sleep=sleeps.append, retry=RetryPolicy(attempts=3))
    line = event_line("a", now_ms())
    with Stubber(logs) as stubber:
        stubber.add_response("create_log_stream", {})
        stubber.add_client_error("put_log_events", "ThrottlingException")
        stubber.add_client_error("put_log_events", "ServiceUnavailableException")
        stubber.add_response("put_log_events", {})
        # WHEN delivered / THEN it succeeds after two pauses
        assert deliver(sink, "throttled-user", [line], batch_id="b").accepted == 1
        assert len(sleeps) == 2
        # AND when throttling outlasts the attempts, DeliveryError names group and stream
        for _ in range(3):
            stubber.add_client_error("put_log_events", "ThrottlingException")
        with pytest.raises(DeliveryError, match=r"/group.*throttled-user.*ThrottlingException"):
            deliver(sink, "throttled-user", [line], batch_id="b")
        stubber.assert_no_pending_responses()


def test_an_empty_batch_writes_nothing(local_aws: LocalAws, deployed: DeployedResources) -> None:
    sink = CloudWatchSink(deployed.log_group or "", local_aws.client("logs"))
    assert deliver(sink, "nobody", [], batch_id="b").accepted == 0


# --- S3 ------------------------------------------------------------------------------------


def s3_lines(local_aws: LocalAws, bucket: str, key: str) -> list[str]:
    body = local_aws.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
    return str(gzip.decompress(body).decode("utf-8")).splitlines()


def test_s3_objects_hold_gzipped_json_lines_under_day_partitions(
    local_aws: LocalAws, deployed: DeployedResources, user_id: str
) -> None:
    # GIVEN events on two UTC days
    midnight = 1_704_153_600_000  # 2024-01-02T00:00:00Z
    lines = [
        event_line("a", midnight - 1),
        event_line("b", midnight),
        event_line("c", midnight + 1),
    ]
    sink = S3Sink(deployed.bucket or "", "auth0-logs/", local_aws.client("s3"))
    batch_id = batch_id_for(["a", "b", "c"])
    # WHEN delivered
    report = deliver(sink, user_id, lines, batch_id=batch_id)
    # THEN one object per day, under dt= partitions, each a gzip of JSON lines in order
    slug = user_slug(user_id)
    assert report.objects == (
        f"auth0-logs/dt=2024-01-01/{slug}/{batch_id}.jsonl.gz",
        f"auth0-logs/dt=2024-01-02/{slug}/{batch_id}.jsonl.gz",
    )
    assert s3_lines(local_aws, deployed.bucket or "", report.objects[0]) == [lines[0].line]
    assert s3_lines(local_aws, deployed.bucket or "", report.objects[1]) == [
        lines[1].line,
        lines[2].line,
    ]
    assert all(
        json.loads(line) for line in s3_lines(local_aws, deployed.bucket or "", report.objects[1])
    )
    assert (report.accepted, report.already_present) == (3, 0)
    head = local_aws.client("s3").head_object(Bucket=deployed.bucket, Key=report.objects[0])
    assert head["ContentType"] == "application/gzip"
    assert "ContentEncoding" not in head


def test_a_retried_s3_delivery_writes_no_second_copy(
    local_aws: LocalAws, deployed: DeployedResources, user_id: str
) -> None:
    # GIVEN a batch already delivered (the bucket is versioned, so a second write would show)
    lines = [event_line("a", now_ms() - 1000), event_line("b", now_ms())]
    sink = S3Sink(deployed.bucket or "", "auth0-logs/", local_aws.client("s3"))
    first = deliver(sink, user_id, lines, batch_id=batch_id_for(["a", "b"]))
    # WHEN the same batch is delivered again (a retried run), even in another order
    second = deliver(
        sink, user_id, list(reversed(lines)), batch_id=batch_id_for(["b", "a"]), redelivery=True
    )
    # THEN the keys are the same, S3 refused the overwrite, and the report says so
    assert second.objects == first.objects
    assert (second.accepted, second.already_present) == (0, 2)
    versions = local_aws.client("s3").list_object_versions(
        Bucket=deployed.bucket, Prefix="auth0-logs/dt="
    )
    ours = [
        version for version in versions.get("Versions", []) if user_slug(user_id) in version["Key"]
    ]
    assert len(ours) == len(first.objects)


def test_s3_recovery_writes_what_a_partial_earlier_object_lacks_exactly_once(
    local_aws: LocalAws, deployed: DeployedResources, user_id: str
) -> None:
    # GIVEN a crashed run whose batch {a, b, c} was redelivered in part: only {a, b} were found
    # again, and they were written under the batch's key
    t = now_ms()
    a_, b_, c_ = event_line("a", t - 3000), event_line("b", t - 2000), event_line("c", t - 1000)
    batch_id = batch_id_for(["a", "b", "c"])
    sink = S3Sink(deployed.bucket or "", "auth0-logs/", local_aws.client("s3"))
    deliver(sink, user_id, [a_, b_], batch_id=batch_id, redelivery=True)
    # WHEN a later chunk finds the rest of the batch and redelivers it under the same batch id
    report = deliver(sink, user_id, [b_, c_], batch_id=batch_id, redelivery=True)
    # THEN b is recognised as present and c is written once, under a key of its own
    assert (report.accepted, report.already_present) == (1, 1)
    stored = [
        json.loads(line)["log_id"]
        for key in local_aws.client("s3").list_objects_v2(
            Bucket=deployed.bucket, Prefix="auth0-logs/"
        )["Contents"]
        if user_slug(user_id) in key["Key"]
        for line in s3_lines(local_aws, deployed.bucket or "", key["Key"])
    ]
    assert sorted(stored) == ["a", "b", "c"]


def test_a_gap_record_redelivered_under_an_existing_batch_key_is_written(
    local_aws: LocalAws, deployed: DeployedResources, user_id: str
) -> None:
    # GIVEN an interrupted run that wrote its batch {a, b} to S3 (same UTC day); on the
    # redelivery Auth0 no longer serves b, so the batch (same batch id) holds a and a gap
    # record naming b: a line with no key
    t = now_ms()
    a_ = event_line("a", t - 2000)
    b_ = event_line("b", t - 1000)
    gap = OutputLine(t - 1000, json.dumps({"_forwarder": {"gap": {"log_ids": ["b"]}}}), None)
    batch_id = batch_id_for(["a", "b"])
    sink = S3Sink(deployed.bucket or "", "auth0-logs/", local_aws.client("s3"))
    deliver(sink, user_id, [a_, b_], batch_id=batch_id)
    # WHEN the redelivery is delivered
    report = deliver(sink, user_id, [a_, gap], batch_id=batch_id, redelivery=True)
    # THEN a counts as present and the gap record is written, once
    assert (report.accepted, report.already_present) == (1, 1)
    stored = [
        line
        for key in local_aws.client("s3").list_objects_v2(
            Bucket=deployed.bucket, Prefix="auth0-logs/"
        )["Contents"]
        if user_slug(user_id) in key["Key"]
        for line in s3_lines(local_aws, deployed.bucket or "", key["Key"])
    ]
    assert stored.count(gap.line) == 1
    # AND delivered a third time, the gap record is found by its text, not written again
    again = deliver(sink, user_id, [a_, gap], batch_id=batch_id, redelivery=True)
    assert (again.accepted, again.already_present) == (0, 2)


def test_a_corrupt_stored_object_is_a_delivery_error() -> None:
    # GIVEN an object under the batch's key whose gzip body is corrupt (deflate data, not
    # the header: zlib.error rather than OSError)
    s3 = offline_client("s3")
    sink = S3Sink("bucket", "p/", s3, sleep=no_sleep)
    good = gzip.compress(b'{"log_id":"a"}\n')
    corrupt = good[:12] + bytes(b ^ 0xFF for b in good[12:-8]) + good[-8:]
    with Stubber(s3) as stubber:
        stubber.add_client_error("put_object", "PreconditionFailed", http_status_code=412)
        stubber.add_response(
            "get_object", {"Body": StreamingBody(io.BytesIO(corrupt), len(corrupt))}
        )
        # WHEN delivered, THEN it fails as a delivery (the checkpoint stays), naming the key
        with pytest.raises(DeliveryError, match="unreadable"):
            deliver(sink, "u", [event_line("a", 0)], batch_id="b")


def test_a_missing_bucket_is_a_delivery_error(local_aws: LocalAws, user_id: str) -> None:
    sink = S3Sink("no-such-bucket-here", "p/", local_aws.client("s3"), sleep=no_sleep)
    with pytest.raises(DeliveryError, match="no-such-bucket-here"):
        deliver(sink, user_id, [event_line("a", now_ms())], batch_id="b")


def test_a_conflicting_concurrent_write_is_retried() -> None:
    # GIVEN S3 answering 409 ConditionalRequestConflict (stubbed: moto does not produce it),
    # then 412 because the other writer's object (holding the same line) is now there
    s3 = offline_client("s3")
    sleeps: list[float] = []
    sink = S3Sink("bucket", "p/", s3, sleep=sleeps.append)
    line = event_line("a", 0)
    stored = gzip.compress((line.line + "\n").encode("utf-8"))
    with Stubber(s3) as stubber:
        stubber.add_client_error("put_object", "ConditionalRequestConflict", http_status_code=409)
        stubber.add_client_error("put_object", "PreconditionFailed", http_status_code=412)
        stubber.add_response("get_object", {"Body": StreamingBody(io.BytesIO(stored), len(stored))})
        # WHEN delivered
        report = deliver(sink, "u", [line], batch_id="b")
    # THEN it waited once and counted the line as already present
    assert len(sleeps) == 1
    assert (report.accepted, report.already_present) == (0, 1)
