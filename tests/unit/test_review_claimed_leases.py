"""Adversarial review of 6ffa177 (a push's attempts keep the batches they claimed): a batch id
in `claimed` is added before its intent is written, and a batch id is the hash of its events'
log ids, so a run that read the same events writes an intent with the same id."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from log_forwarder.events import iso_ms
from log_forwarder.realtime import Pushed
from log_forwarder.records import Delivery, DeliveryReport
from tests.fakes import FakeAuth0, InMemoryCheckpointStore, InMemoryPushedLedger, RecordingSink
from tests.property.test_cursor_properties import BASE_MS, make_forwarder

USER = "auth0|raced"


class GatedSink(RecordingSink):
    """The other writer's side of a destination (its lines shared with the push's): holds its
    first delivery until released."""

    def __init__(self, name: str, lines: list[Any]) -> None:
        super().__init__(name, lines=lines)
        self.entered = threading.Event()
        self.release = threading.Event()

    def deliver(self, delivery: Delivery) -> DeliveryReport:
        self.entered.set()
        assert self.release.wait(30), "the test never released the other writer"
        return super().deliver(delivery)


class RunBeforeIntent(InMemoryCheckpointStore):
    """Once armed, the push's first save (its intent) lets the other writer write its own
    intent first (which then waits in its delivery)."""

    armed = False

    def __init__(self) -> None:
        super().__init__()
        self.start_run: Any = None

    def save(self, user_id: str, state: Any, **kwargs: Any) -> int:
        if self.armed and user_id == USER:
            self.armed = False
            self.start_run()
        return super().save(user_id, state, **kwargs)


@pytest.mark.parametrize("other", ["scheduled run", "duplicate push"])
def test_a_push_does_not_take_over_a_lease_written_for_the_same_events(other: str) -> None:
    # GIVEN a watched user with a checkpoint, and one login Auth0 returns and pushes (the other
    # writer: a scheduled run reading it, or a second invocation pushed the same event, as SQS
    # and EventBridge deliver at least once)
    fake = FakeAuth0(now_ms=BASE_MS)
    store, ledger, sink = RunBeforeIntent(), InMemoryPushedLedger(), RecordingSink("cloudwatch")
    held = GatedSink("cloudwatch", sink.lines)
    other_writer = make_forwarder(fake, [held], store, ledger)
    pusher = make_forwarder(fake, [sink], store, ledger)
    make_forwarder(fake, [sink], store, ledger).run([USER], remaining_ms=lambda: 10**9)
    login = {"log_id": "900000001", "date": iso_ms(BASE_MS + 500) or "", "type": "s",
             "user_id": USER}  # fmt: skip
    fake.add(login)
    fake.now_ms = BASE_MS + 1_000

    def start_run() -> None:
        # the other writer takes the same login, writes its intent (the same batch id: the
        # same log ids) and is held in its delivery, its lease live
        def work() -> None:
            if other == "scheduled run":
                other_writer.run([USER], remaining_ms=lambda: 10**9)
            else:
                chunks = Pushed.of(iter([login]), frozenset([USER])).chunks
                other_writer.push(chunks, remaining_ms=lambda: 30_000)

        thread = threading.Thread(target=work, daemon=True)
        threads.append(thread)
        thread.start()
        assert held.entered.wait(30), "the other writer never reached its delivery"

    threads: list[threading.Thread] = []
    store.start_run, store.armed = start_run, True
    # WHEN the push's intent loses the race to the other writer's, and it plans again
    report = pusher.push(Pushed.of(iter([login]), frozenset([USER])).chunks,
                         remaining_ms=lambda: 30_000)  # fmt: skip
    held.release.set()
    assert threads, "the push never wrote an intent"
    threads[0].join(30)
    # THEN the push leaves the batch to the writer holding it (busy, handed back), and the
    # destination holds the login once (main: the other intent has the id the push put in
    # `claimed` before its own intent was refused, so the push took the other writer's live
    # lease as its own and delivered the login, then the other writer delivered it again:
    # cloudwatch holds it twice)
    assert sink.log_ids() == [login["log_id"]], f"push report: {report.users[0]}"
