"""The Firehose sink against moto's server (over real HTTP), whose streams deliver to S3 at once;
the partial failures moto never answers come from a proxy in front of it that keeps back the
records a rule names and answers them as Firehose does (FailedPutCount, ErrorCode per record)."""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from devtools.aws_fault_proxy import AwsFaultProxy
from devtools.local_aws import DeployedResources, LocalAws, deploy_template
from log_forwarder.aws_errors import AWS_CLIENT_CONFIG
from log_forwarder.exceptions import DeliveryError, OutOfTime
from log_forwarder.records import Delivery, OutputLine
from log_forwarder.retry import Deadline, RetryPolicy
from log_forwarder.sinks.batching import (
    FIREHOSE_MAX_BATCH_BYTES,
    FIREHOSE_MAX_BATCH_RECORDS,
    FIREHOSE_MAX_RECORD_BYTES,
    firehose_batches,
)
from log_forwarder.sinks.firehose import FirehoseSink

PUT_RECORD_BATCH = "Firehose_20150804.PutRecordBatch"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "REGION_NAME": "us-east-1",
}


@pytest.fixture(scope="module")
def aws() -> Iterator[LocalAws]:
    with LocalAws() as server:
        yield server


@pytest.fixture(scope="module")
def stack(aws: LocalAws) -> DeployedResources:
    # The template's own stream: DESTINATIONS=firehose, no FirehoseStreamName
    return deploy_template(aws, stack_name="firehose-sink", destinations="firehose")


def stored_lines(aws: LocalAws, stack: DeployedResources) -> list[str]:
    """Every line the stack's stream delivered to the bucket (gzipped in AWS; moto stores the
    records as they are)."""
    s3 = aws.client("s3")
    found: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=stack.bucket, Prefix="firehose/"
    ):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=stack.bucket, Key=item["Key"])["Body"].read()
            text = gzip.decompress(body) if body[:2] == b"\x1f\x8b" else body
            found.extend(text.decode("utf-8").splitlines())
    return found


def lines_of(user: str, count: int, size: int = 0) -> tuple[OutputLine, ...]:
    now = int(time.time() * 1000)
    return tuple(
        OutputLine(
            now + n,
            json.dumps({"log_id": f"{user}-{n}", "date": "x", "pad": "p" * size}),
            f"{user}-{n}",
        )
        for n in range(count)
    )


def sink_on(client: Any, stack: DeployedResources, attempts: int = 5) -> FirehoseSink:
    policy = RetryPolicy(attempts=attempts, base_s=0.0, cap_s=0.0)
    assert stack.delivery_stream is not None
    return FirehoseSink(stack.delivery_stream, client, sleep=lambda _s: None, retry=policy)


class RefusingProxy(AwsFaultProxy):
    """Keeps back from moto the records `refuse` picks, for the first `rounds` calls, and
    answers them failed as a Firehose under load does; everything else goes through. The first
    `short_answers` calls are answered with an entry fewer than their records (an answer that
    cannot say which record it left out)."""

    def __init__(
        self,
        upstream_url: str,
        refuse: Callable[[bytes], bool],
        rounds: int,
        short_answers: int = 0,  # the first calls answered with an entry too few
    ) -> None:
        super().__init__(upstream_url)
        self.refuse, self.rounds, self.short_answers = refuse, rounds, short_answers
        self.calls: list[int] = []  # records per PutRecordBatch

    def _handle(self, request: BaseHTTPRequestHandler) -> None:
        if request.headers.get("X-Amz-Target") != PUT_RECORD_BATCH:
            super()._handle(request)
            return
        body = json.loads(request.rfile.read(int(request.headers["Content-Length"])))
        records = body["Records"]
        self.calls.append(len(records))
        refusing, self.rounds = self.rounds > 0, self.rounds - 1
        kept = [not (refusing and self.refuse(base64.b64decode(r["Data"]))) for r in records]
        forwarded = {**body, "Records": [r for r, k in zip(records, kept, strict=True) if k]}
        payload = json.dumps(forwarded).encode()
        request.headers.replace_header("Content-Length", str(len(payload)))
        status, headers, answer = self._forward(request, payload)
        assert status == 200, answer
        taken = iter(json.loads(answer)["RequestResponses"])
        refused = {"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "Slow down."}
        reply = {
            "FailedPutCount": kept.count(False),
            "Encrypted": False,
            "RequestResponses": [next(taken) if k else refused for k in kept],
        }
        if len(self.calls) <= self.short_answers:
            reply["RequestResponses"] = reply["RequestResponses"][:-1]
        self._reply(request, status, headers, json.dumps(reply).encode())


def naming(*log_ids: str) -> Callable[[bytes], bool]:
    return lambda record: any(f'"log_id": "{log_id}"'.encode() in record for log_id in log_ids)


def test_each_line_is_a_json_line_in_the_streams_destination(
    aws: LocalAws, stack: DeployedResources
) -> None:
    # GIVEN a batch of 3 lines
    user = f"auth0|{uuid.uuid4().hex}"
    sent = lines_of(user, 3)
    # WHEN delivered to the stack's stream
    report = sink_on(aws.client("firehose"), stack).deliver(Delivery(user, "b1", sent))
    # THEN its destination holds each line once, whole, one JSON object per line
    mine = [line for line in stored_lines(aws, stack) if user in line]
    assert mine == [line.line for line in sent]
    assert (report.destination, report.accepted, report.repeated) == ("firehose", 3, 0)


def test_the_records_firehose_refuses_are_put_again_and_only_they(
    aws: LocalAws, stack: DeployedResources
) -> None:
    # GIVEN a stream that refuses two records of five, once (FailedPutCount 2)
    user = f"auth0|{uuid.uuid4().hex}"
    sent = lines_of(user, 5)
    with RefusingProxy(aws.endpoint_url, naming(f"{user}-1", f"{user}-3"), rounds=1) as proxy:
        # WHEN a batch of them is delivered
        report = sink_on(client_through(aws, proxy.url), stack).deliver(Delivery(user, "b2", sent))
    # THEN the second call carried the two refused records alone, and each line is there once
    assert proxy.calls == [5, 2]
    mine = sorted(line for line in stored_lines(aws, stack) if user in line)
    assert mine == sorted(line.line for line in sent)
    # AND they count as possible repeats: Firehose says a refused record "might have failed"
    assert (report.accepted, report.repeated) == (5, 2)


def test_a_record_refused_every_time_fails_the_delivery_naming_the_stream_and_the_code(
    aws: LocalAws, stack: DeployedResources
) -> None:
    user = f"auth0|{uuid.uuid4().hex}"
    with RefusingProxy(aws.endpoint_url, naming(f"{user}-0"), rounds=99) as proxy:
        client = client_through(aws, proxy.url)
        with pytest.raises(DeliveryError) as failed:
            sink_on(client, stack, attempts=3).deliver(Delivery(user, "b3", lines_of(user, 2)))
    assert str(failed.value) == (
        f"Firehose stream {stack.delivery_stream!r} refused 1 record(s) for user {user!r}: "
        "ServiceUnavailableException after 3 attempts"
    )
    assert proxy.calls == [2, 1, 1]


def test_refused_records_are_not_retried_past_the_invocations_deadline(
    aws: LocalAws, stack: DeployedResources
) -> None:
    # GIVEN a stream that refuses a record every time, and an invocation with half a second
    # left once the first call is answered
    user = f"auth0|{uuid.uuid4().hex}"
    slept: list[float] = []
    with RefusingProxy(aws.endpoint_url, naming(f"{user}-0"), rounds=99) as proxy:
        deadline = Deadline(lambda: 500 if proxy.calls else 60_000)
        policy = RetryPolicy(attempts=5, base_s=1.0, cap_s=1.0, attempt_s=1.0)
        assert stack.delivery_stream is not None
        sink = FirehoseSink(
            stack.delivery_stream, client_through(aws, proxy.url), sleep=slept.append, retry=policy
        )
        # WHEN a batch is delivered
        with pytest.raises(OutOfTime) as stopped:
            sink.deliver(Delivery(user, "b9", lines_of(user, 2), deadline=deadline))
    # THEN no retry was waited for: the user resumes next run, its intent redelivered then
    assert (proxy.calls, slept) == ([2], [])
    assert "the work resumes next run" in str(stopped.value)


def test_a_lost_answer_puts_the_batch_again_and_counts_each_record_as_a_possible_repeat(
    aws: LocalAws, stack: DeployedResources
) -> None:
    # GIVEN a stream whose first answer is lost after moto took the records
    user = f"auth0|{uuid.uuid4().hex}"
    sent = lines_of(user, 4)
    with AwsFaultProxy(aws.endpoint_url) as proxy:
        proxy.add(PUT_RECORD_BATCH, "lose")
        report = sink_on(client_through(aws, proxy.url), stack).deliver(Delivery(user, "b4", sent))
    # THEN the batch was put again: each line is there twice, and the report says so
    mine = [line for line in stored_lines(aws, stack) if user in line]
    assert sorted(mine) == sorted([line.line for line in sent] * 2)
    assert (report.accepted, report.repeated) == (4, 4)


def test_a_redelivery_puts_every_line_again_and_says_so(
    aws: LocalAws, stack: DeployedResources
) -> None:
    user = f"auth0|{uuid.uuid4().hex}"
    sent = lines_of(user, 3)
    sink = sink_on(aws.client("firehose"), stack)
    sink.deliver(Delivery(user, "b5", sent))
    again = sink.deliver(Delivery(user, "b5", sent, redelivery=True))
    assert (again.accepted, again.already_present, again.repeated) == (3, 0, 3)
    assert len([line for line in stored_lines(aws, stack) if user in line]) == 6


def test_an_answer_that_does_not_name_every_record_puts_them_all_again_and_counts_them(
    aws: LocalAws, stack: DeployedResources
) -> None:
    # GIVEN a stream whose first answer has an entry fewer than the records it was put
    user = f"auth0|{uuid.uuid4().hex}"
    sent = lines_of(user, 3)
    with RefusingProxy(aws.endpoint_url, naming(), rounds=0, short_answers=1) as proxy:
        # WHEN a batch is delivered
        report = sink_on(client_through(aws, proxy.url), stack).deliver(Delivery(user, "b8", sent))
    # THEN all three went again (which one was left out cannot be told), each a possible repeat
    assert proxy.calls == [3, 3]
    assert len([line for line in stored_lines(aws, stack) if user in line]) == 6
    assert (report.accepted, report.repeated) == (3, 3)


def test_more_than_500_lines_take_more_than_one_call(
    aws: LocalAws, stack: DeployedResources
) -> None:
    user = f"auth0|{uuid.uuid4().hex}"
    with RefusingProxy(aws.endpoint_url, naming(), rounds=0) as proxy:
        sink_on(client_through(aws, proxy.url), stack).deliver(
            Delivery(user, "b6", lines_of(user, 1001))
        )
    assert proxy.calls == [500, 500, 1]
    assert len([line for line in stored_lines(aws, stack) if user in line]) == 1001


def test_a_line_too_large_for_a_record_is_replaced_by_a_marker_naming_it(
    aws: LocalAws, stack: DeployedResources
) -> None:
    user = f"auth0|{uuid.uuid4().hex}"
    (huge,) = lines_of(user, 1, size=FIREHOSE_MAX_RECORD_BYTES)
    report = sink_on(aws.client("firehose"), stack).deliver(Delivery(user, "b7", (huge,)))
    (stored,) = [json.loads(line) for line in stored_lines(aws, stack) if user in line]
    assert stored["log_id"] == huge.log_id and stored["_forwarder"]["oversized"] is True
    assert stored["_forwarder"]["original_bytes"] == len(huge.line.encode())
    assert report.oversized == 1


def client_through(aws: LocalAws, url: str) -> Any:
    """A Firehose client as the function builds it (botocore's retries off), aimed at `url`."""
    session = boto3.session.Session(**{k.lower(): v for k, v in CREDENTIALS.items()})
    return session.client("firehose", endpoint_url=url, config=AWS_CLIENT_CONFIG)


@given(st.lists(st.integers(1, 40), max_size=60), st.integers(1, 6), st.integers(40, 120))
def test_batches_keep_order_within_the_limits_in_the_fewest_calls(
    sizes: list[int], max_records: int, max_bytes: int
) -> None:
    # The limits shrunk (as CloudWatch's are in test_batching) so that small inputs meet them.
    records = [b"x" * size for size in sizes]
    batches = firehose_batches(records, max_records=max_records, max_bytes=max_bytes)
    assert [record for batch in batches for record in batch] == records
    for batch in batches:
        assert 1 <= len(batch) <= max_records and sum(map(len, batch)) <= max_bytes
    # the fewest: no batch could have taken the next one's first record
    for first, second in itertools.pairwise(batches):
        assert len(first) == max_records or sum(map(len, first)) + len(second[0]) > max_bytes


def test_the_real_limits_hold_a_full_call_of_the_largest_records() -> None:
    # A record as large as Firehose takes still fits a call, alone at worst.
    assert FIREHOSE_MAX_RECORD_BYTES <= FIREHOSE_MAX_BATCH_BYTES
    assert FIREHOSE_MAX_BATCH_RECORDS == 500
    # The call's 4 MB read as base64 (4/3 of the raw bytes) with the JSON of 500 records.
    assert FIREHOSE_MAX_BATCH_BYTES * 4 / 3 + 500 * len('{"Data":""},') < 4_000_000


class _LostAnswers:
    """Firehose taking every record while its answers are lost: the sink cannot know."""

    def __init__(self) -> None:
        self.calls = 0

    def put_record_batch(self, **_: Any) -> dict[str, Any]:
        from botocore.exceptions import ReadTimeoutError

        self.calls += 1
        raise ReadTimeoutError(endpoint_url="https://firehose.test")


def test_a_delivery_that_fails_after_resending_still_says_how_many_it_resent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # GIVEN a stream that takes every record but whose every answer is lost, three attempts
    client = _LostAnswers()
    sink = FirehoseSink(
        "s", client, sleep=lambda _s: None, retry=RetryPolicy(attempts=3, base_s=0, cap_s=0)
    )
    # WHEN a batch of 10 lines is delivered and the attempts run out
    with caplog.at_level("WARNING"), pytest.raises(DeliveryError):
        sink.deliver(Delivery("auth0|u", "b1", lines_of("auth0|u", 10)))
    # THEN the 20 records put again (each now possibly there twice or three times) are said,
    # with the delivery marked failed: the exception alone would have dropped the count
    assert client.calls == 3
    said = [r for r in caplog.records if "put to Firehose again" in r.getMessage()]
    assert [(r.__dict__["records"], r.__dict__["delivered"]) for r in said] == [(20, "no")]
