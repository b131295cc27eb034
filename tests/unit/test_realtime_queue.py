"""The real-time function reading its queue: a busy user is waited for, not left to the
schedule; what still cannot be delivered goes back to the queue, alone (batchItemFailures)."""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

from log_forwarder import realtime
from log_forwarder.events import iso_ms
from log_forwarder.forwarder import Forwarder
from log_forwarder.realtime import Pushed
from log_forwarder.records import Delivery, DeliveryReport
from log_forwarder.runtime import Runtime
from tests.fakes import FakeAuth0, InMemoryCheckpointStore, InMemoryPushedLedger, RecordingSink
from tests.property.test_cursor_properties import BASE_MS, make_forwarder, make_settings

USER = "auth0|under-attack"
OTHER = "auth0|quiet"
SAMPLE = {"version": "0", "detail-type": "Auth0 log", "source": "aws.partner/auth0.com/t/logs"}


def event(user: str, n: int) -> dict[str, str]:
    at = BASE_MS + n
    return {"log_id": f"9{n:09d}", "date": iso_ms(at) or "", "type": "f", "user_id": user}


class SlowSink(RecordingSink):
    """A destination that takes a few milliseconds, as any real one does."""

    def deliver(self, delivery: Delivery) -> DeliveryReport:
        time.sleep(random.uniform(0.002, 0.006))
        return super().deliver(delivery)


def started(users: list[str], sinks: list[RecordingSink]) -> tuple[Forwarder, FakeAuth0]:
    fake = FakeAuth0(now_ms=BASE_MS)
    forwarder = make_forwarder(fake, sinks, InMemoryCheckpointStore())
    forwarder.run(users, remaining_ms=lambda: 10**9)  # the schedule fixes every user's start
    return forwarder, fake


def test_eight_concurrent_pushes_for_one_user_are_delivered_by_the_push_path() -> None:
    # GIVEN a watched user, and 400 of its events pushed by 8 invocations at once
    sinks: list[RecordingSink] = [SlowSink("cloudwatch"), SlowSink("s3")]
    forwarder, _ = started([USER], sinks)
    events = [event(USER, n) for n in range(400)]
    delivered: list[int] = []

    def invocation(mine: list[dict[str, str]]) -> None:
        for start in range(0, len(mine), 2):
            chunks = Pushed.of(iter(mine[start : start + 2]), frozenset([USER])).chunks
            report = forwarder.push(chunks, remaining_ms=lambda: 30_000)
            delivered.append(sum(u.forwarded for u in report.users))

    # WHEN they run side by side
    threads = [threading.Thread(target=invocation, args=(events[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN the push path delivered at least 99 % of them (a busy user is waited for), each once
    assert sum(delivered) >= 0.99 * len(events), sum(delivered)
    for sink in sinks:
        ids = sink.log_ids()
        assert len(ids) == len(set(ids)) == sum(delivered)


class FailingFor(RecordingSink):
    """A destination that refuses one user's batches."""

    def __init__(self, name: str, user: str) -> None:
        super().__init__(name)
        self.user = user

    def deliver(self, delivery: Delivery) -> DeliveryReport:
        if delivery.user_id == self.user:
            from log_forwarder.exceptions import DeliveryError

            raise DeliveryError(f"{self.name}: refused")
        return super().deliver(delivery)


def sqs_batch(*events: dict[str, str]) -> dict[str, Any]:
    records = [
        {
            "messageId": f"m-{e['log_id']}",
            "body": json.dumps({**SAMPLE, "detail": {"log_id": e["log_id"], "data": e}}),
        }
        for e in events
    ]
    return {"Records": records}


class Context:
    function_name = "RealtimeFunction"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:RealtimeFunction"
    aws_request_id = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def test_a_batch_hands_back_only_the_messages_of_a_user_it_could_not_deliver() -> None:
    # GIVEN two watched users, the destination refusing one of them
    sink = FailingFor("s3", OTHER)
    forwarder, _ = started([USER, OTHER], [sink])
    store = forwarder._store
    settings = make_settings(WATCHED_USER_IDS=f"{USER},{OTHER}")
    realtime.reset_runtime(runtime=Runtime(settings, forwarder, store))
    try:
        # WHEN an SQS batch carries events of both, and one of a user not watched
        batch = sqs_batch(event(USER, 1), event(OTHER, 2), event(USER, 3), event("auth0|x", 4))
        answer = realtime.lambda_handler(batch, Context())  # type: ignore[arg-type]
    finally:
        realtime.reset_runtime()
    # THEN the delivered user's messages and the unwatched one are done, the refused user's
    # come back to the queue, and the answer counts them as retried, not left to the reads
    assert answer["batchItemFailures"] == [{"itemIdentifier": "m-9000000002"}]
    assert sorted(sink.log_ids()) == ["9000000001", "9000000003"]
    assert (answer["RealtimeEvents"], answer["RealtimeRetried"]) == (2, 1)
    assert (answer["RealtimeLeftToReads"], answer["RealtimeIgnored"]) == (0, 1)


def test_a_burst_keeps_the_checkpoint_item_small_and_the_push_path_on() -> None:
    # GIVEN a watched user whose start the schedule fixed
    store = InMemoryCheckpointStore()
    ledger = InMemoryPushedLedger()
    sink = RecordingSink("s3")
    fake = FakeAuth0(now_ms=BASE_MS)
    forwarder = make_forwarder(fake, [sink], store, ledger)
    forwarder.run([USER], remaining_ms=lambda: 10**9)
    # WHEN a burst of 10,000 of its events is pushed, 20 a batch (one every 20 ms)
    largest = delivered = 0
    for start in range(0, 10_000, 20):
        fake.now_ms = BASE_MS + start + 20
        batch = [event(USER, n) for n in range(start, start + 20)]
        chunks = Pushed.of(iter(batch), frozenset([USER])).chunks
        report = forwarder.push(chunks, remaining_ms=lambda: 30_000)
        delivered += sum(u.forwarded for u in report.users)
        largest = max(largest, len(store.item(USER)["state"]))
    # THEN every event was delivered by the push path, once, and the checkpoint item stayed
    # small: the memory of the burst is in the pushed-events table, an item per batch
    assert delivered == 10_000
    assert len(set(sink.log_ids())) == len(sink.log_ids()) == 10_000
    assert largest <= 2_048, largest
    assert len(ledger.items) == 500 and ledger.largest() <= 1_024
    # AND a read after the burst confirms them all, and the item stays small
    for n in range(10_000):
        fake.add(event(USER, n))
    fake.now_ms = BASE_MS + 300_000
    run = forwarder.run([USER], remaining_ms=lambda: 10**9)
    assert (run.users[0].forwarded, run.users[0].confirmed) == (0, 10_000)
    assert len(store.item(USER)["state"]) <= 2_048
    # AND a read after that finds them known, and confirms none again
    fake.now_ms = BASE_MS + 310_000
    again = forwarder.run([USER], remaining_ms=lambda: 10**9)
    assert (again.users[0].forwarded, again.users[0].confirmed) == (0, 0)
    assert len(sink.log_ids()) == 10_000
