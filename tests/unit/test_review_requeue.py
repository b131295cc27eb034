"""Adversarial review of 25bdbd1 (requeue.py: what a push hands back busy or out of time is made
visible again soon)."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ReadTimeoutError

from devtools.local_aws import load_template
from log_forwarder import realtime
from log_forwarder.forwarder import FINISH_RESERVE_MS
from log_forwarder.requeue import REQUEUE_CLIENT_CONFIG, Requeue, retry_soon_s
from log_forwarder.runtime import Runtime
from log_forwarder.session import LEASE_CLOCK_MARGIN_MS, MAX_LEASE_MS
from tests.fakes import FakeAuth0, RecordingSink
from tests.property.test_cursor_properties import BASE_MS, make_forwarder, make_settings
from tests.unit.test_realtime_push_counts import FailingStore, Invocation
from tests.unit.test_realtime_queue import USER, Context, sqs_batch
from tests.unit.test_realtime_queue import event as pushed_event


class HangingSqs:
    """ChangeMessageVisibilityBatch timing out after the client's connect and read timeouts
    (REQUEUE_CLIENT_CONFIG's, of the invocation's time), as an unreachable endpoint does."""

    def __init__(self, invocation: Invocation) -> None:
        self.invocation = invocation
        self.calls = 0

    def change_message_visibility_batch(self, **_: Any) -> Any:
        self.calls += 1
        config = REQUEUE_CLIENT_CONFIG
        self.invocation.left_s -= config.connect_timeout + config.read_timeout
        raise ReadTimeoutError(endpoint_url="https://sqs.us-east-1.amazonaws.com")


class TimedContext(Context):
    def __init__(self, invocation: Invocation) -> None:
        self.invocation = invocation

    def get_remaining_time_in_millis(self) -> int:
        return self.invocation.remaining_ms()


def test_the_requeue_keeps_the_invocations_finish_reserve() -> None:
    # GIVEN a push whose user is busy every time it plans (handed back "soon"), with 13.5 s of
    # the invocation left when it answers, and an SQS endpoint that hangs until the timeouts
    store, sink = FailingStore(), RecordingSink("s3")
    forwarder = make_forwarder(FakeAuth0(now_ms=BASE_MS), [sink], store)
    forwarder.run([USER], remaining_ms=lambda: 10**9)
    forwarder._sleep = lambda _s: None
    store.conflicts[USER] = 10**6
    invocation = Invocation(13.5)
    sqs: Any = HangingSqs(invocation)
    requeue = Requeue("https://sqs.example/q", lambda: sqs)
    runtime = Runtime(make_settings(WATCHED_USER_IDS=USER), forwarder, store, requeue=requeue)
    batch = sqs_batch(pushed_event(USER, 1))
    for record in batch["Records"]:
        record["receiptHandle"] = "handle-" + record["messageId"]
    realtime.reset_runtime(runtime=runtime)
    try:
        # WHEN the function hands the message back
        answer = realtime.lambda_handler(batch, TimedContext(invocation))  # type: ignore[arg-type]
    finally:
        realtime.reset_runtime()
    # THEN the best-effort visibility change ends before the time every other wait keeps for
    # returning and publishing the metrics (FINISH_RESERVE_MS, as the tenant item's last write
    # does), or is not started (main: its Deadline is the bare remaining time: the call starts
    # with 13.5 s left and ends with 0.5 s, where a slower answer is a Lambda timeout and the
    # whole batch, delivered users included, comes back with its counts lost)
    assert answer["batchItemFailures"]
    assert invocation.remaining_ms() >= FINISH_RESERVE_MS, (sqs.calls, invocation.left_s)


def test_a_user_held_by_a_scheduled_runs_lease_does_not_reach_the_dead_letter_queue() -> None:
    # GIVEN the template's longest scheduled run (FunctionTimeout's MaxValue), which died after
    # an intent: its lease holds the user until its invocation's end and the clock margin
    resources = load_template()
    longest_run_s = int(resources["Parameters"]["FunctionTimeout"]["MaxValue"])
    lease_s = min(longest_run_s * 1000, MAX_LEASE_MS) / 1000 + LEASE_CLOCK_MARGIN_MS / 1000
    queue = resources["Resources"]["RealtimeQueue"]["Properties"]
    receives = int(queue["RedrivePolicy"]["maxReceiveCount"])
    # WHEN every push of the user's messages finds it busy, and hands them back "soon"
    last_receive_s = sum(retry_soon_s(n) for n in range(1, receives))
    # THEN their last receive comes after the lease ends, before they move to the dead-letter
    # queue (25bdbd1: 10+30+90+270+300 = 700 s to the dead-letter queue, under the 930 s lease:
    # RealtimeDeadLetterAlarm fires for a user nothing is wrong with; with the queue's 360 s it
    # was 1,800 s)
    assert last_receive_s > lease_s, (last_receive_s, lease_s)
