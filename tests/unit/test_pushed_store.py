"""The pushed-events table's calls keep to the invocation's time (pushed_store.py): an AWS call
can take 13 s (3 s to connect, 10 s to answer), so none starts with less left."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from log_forwarder.events import iso_ms
from log_forwarder.exceptions import CheckpointError, OutOfTime
from log_forwarder.pushed import PushedMemory, batch_key
from log_forwarder.pushed_store import DynamoPushedLedger
from log_forwarder.realtime import Pushed
from log_forwarder.retry import Deadline
from tests.fakes import FakeAuth0, InMemoryCheckpointStore, InMemoryPushedLedger, RecordingSink
from tests.property.test_cursor_properties import BASE_MS, make_forwarder

USER = "auth0|u1"
TIMEOUT_S = 30.0


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def sleep(self, seconds: float) -> None:
        self.t += seconds

    def remaining_ms(self) -> int:
        return int((TIMEOUT_S - self.t) * 1000)


class HangingDynamo:
    """Every call of the pushed-events table times out after the client's 10 s read timeout."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.calls = 0

    def _hang(self, **_: Any) -> Any:
        self.calls += 1
        self.clock.t += 10.0
        raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")

    query = update_item = put_item = _hang


def event(n: int) -> dict[str, str]:
    return {
        "log_id": f"9{n:08d}",
        "date": iso_ms(BASE_MS + 1000 + n) or "",
        "type": "s",
        "user_id": USER,
    }


def test_a_push_looking_up_a_hanging_table_ends_within_the_invocation() -> None:
    # GIVEN a user with one pushed event recorded
    fake, store = FakeAuth0(now_ms=BASE_MS), InMemoryCheckpointStore()
    forwarder = make_forwarder(fake, [RecordingSink("s3")], store, InMemoryPushedLedger())
    forwarder.run([USER], remaining_ms=lambda: 10**9)
    forwarder.push(
        Pushed.of(iter([event(1)]), frozenset([USER])).chunks, remaining_ms=lambda: 30_000
    )
    # WHEN the table hangs, and a push in a 30 s function must look up what was pushed before
    clock = Clock()
    hanging = DynamoPushedLedger("pushed", HangingDynamo(clock), sleep=clock.sleep)  # type: ignore[arg-type]
    forwarder._env = replace(forwarder._env, pushed=hanging)
    report = forwarder.push(
        Pushed.of(iter([event(0)]), frozenset([USER])).chunks, remaining_ms=clock.remaining_ms
    )
    # THEN it stops before the finish reserve (5 s) with the user deferred, not 80 s later
    assert clock.t <= TIMEOUT_S - 5, f"the push ran {clock.t:.1f} s in a {TIMEOUT_S:.0f} s function"
    assert report.users[0].deferred or report.users[0].error


def test_confirming_in_a_hanging_table_ends_within_the_deadline() -> None:
    # GIVEN a read's confirmations to mark in a table that hangs
    clock = Clock()
    ledger = DynamoPushedLedger("pushed", HangingDynamo(clock), sleep=clock.sleep)  # type: ignore[arg-type]
    key = batch_key(BASE_MS, "b1")
    memory = PushedMemory(((BASE_MS, "9000000001"),), {"9000000001": key})
    deadline = Deadline(lambda: clock.remaining_ms() - 5_000)
    # WHEN they are marked within the invocation's deadline
    with pytest.raises((OutOfTime, CheckpointError)):
        ledger.confirm(USER, memory, ["9000000001"], deadline=deadline)
    # THEN the calls gave up before the deadline, none started that could end past it
    assert clock.t <= TIMEOUT_S - 5
    assert ledger._client.calls <= 2  # type: ignore[attr-defined]
