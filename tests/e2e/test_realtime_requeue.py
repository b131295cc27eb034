"""What a push hands back only busy comes back in seconds, not after the queue's 6 minutes
(requeue.py), on moto's SQS server: the queue as the template declares its visibility."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from devtools.local_aws import LocalAws, load_template
from devtools.realtime_stack import sqs_event
from log_forwarder import realtime, requeue
from log_forwarder.requeue import Requeue, retry_soon_s
from log_forwarder.runtime import Runtime
from tests.fakes import FakeAuth0, RecordingSink
from tests.property.test_cursor_properties import BASE_MS, make_forwarder, make_settings
from tests.unit.test_realtime_push_counts import FailingStore
from tests.unit.test_realtime_queue import SAMPLE, USER, Context, event


def queue_visibility_s() -> int:
    queue = load_template()["Resources"]["RealtimeQueue"]["Properties"]
    return int(queue["VisibilityTimeout"])


def test_the_retry_waits_start_well_under_the_queues_own_visibility_and_grow() -> None:
    waits = [retry_soon_s(receives) for receives in range(0, 7)]
    assert waits == [10, 10, 60, 300, 900, 900, 900]
    assert waits[1] < queue_visibility_s() / 10


def received(aws: LocalAws, url: str, wait_s: float) -> list[dict[str, Any]]:
    """What the queue hands out within `wait_s` (as the event source polls it)."""
    until = time.monotonic() + wait_s
    while True:
        got = aws.client("sqs").receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
        )
        if got.get("Messages") or time.monotonic() >= until:
            return list(got.get("Messages", []))
        time.sleep(0.1)


@pytest.mark.parametrize("cause", ["busy", "destination"])
def test_a_message_handed_back_busy_is_visible_again_soon(
    aws: LocalAws, monkeypatch: pytest.MonkeyPatch, cause: str
) -> None:
    # GIVEN the real-time queue with the template's visibility timeout, a watched user's event
    # on it, and the function's queue to hand messages back to (the first wait shortened to 1 s)
    sqs = aws.client("sqs")
    url = sqs.create_queue(
        QueueName=f"requeue-{cause}",
        Attributes={"VisibilityTimeout": str(queue_visibility_s())},
    )["QueueUrl"]
    pushed = event(USER, 1)
    body = {**SAMPLE, "detail": {"log_id": pushed["log_id"], "data": pushed}}
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))
    monkeypatch.setattr(requeue, "RETRY_SOON_S", (1,))
    sink, store = RecordingSink("s3"), FailingStore()
    forwarder = make_forwarder(FakeAuth0(now_ms=BASE_MS), [sink], store)
    forwarder.run([USER], remaining_ms=lambda: 10**9)  # the schedule starts the user
    forwarder._sleep = lambda _s: None
    if cause == "busy":
        # another invocation writes the user's checkpoint first, every time the push plans
        store.conflicts[USER] = 10**6
    else:
        store.saves = {USER}  # the table refuses the user's writes: a failure, not a race
    settings = make_settings(WATCHED_USER_IDS=USER)
    runtime = Runtime(settings, forwarder, store, requeue=Requeue(url, lambda: sqs))
    realtime.reset_runtime(runtime=runtime)
    try:
        # WHEN the event source hands the function the message, and it cannot deliver it
        messages = received(aws, url, wait_s=5)
        answer = realtime.lambda_handler(sqs_event(messages), Context())  # type: ignore[arg-type]
    finally:
        realtime.reset_runtime()
    assert answer["batchItemFailures"] == [{"itemIdentifier": messages[0]["MessageId"]}]
    # THEN a message handed back busy is received again after its short wait, not after the
    # queue's 360 s; one whose delivery failed keeps the queue's visibility
    again = received(aws, url, wait_s=4)
    if cause == "busy":
        assert answer["RealtimeRetriedSoon"] == 1
        assert [m["MessageId"] for m in again] == [messages[0]["MessageId"]]
        assert again[0]["Attributes"]["ApproximateReceiveCount"] == "2"
    else:
        assert "RealtimeRetriedSoon" not in answer
        assert again == []
    assert sink.log_ids() == []
