"""The races and crashes between a push and the scheduled runs that the adversarial review of
the real-time path found (each test failed before its fix)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from log_forwarder.chunk import Chunk, StreamSpan
from log_forwarder.config import detection_settings
from log_forwarder.cursor import Cursor, StreamSeat
from log_forwarder.detections import Detections
from log_forwarder.events import iso_ms, parse_page
from log_forwarder.exceptions import PushedMemoryMissing
from log_forwarder.forwarder import Forwarder
from log_forwarder.planner import OutputPolicy
from log_forwarder.realtime import Pushed
from log_forwarder.report import metric_values
from log_forwarder.session import UserSession
from log_forwarder.stream_run import MEMBER
from tests.fakes import FakeAuth0, InMemoryCheckpointStore, InMemoryPushedLedger, RecordingSink
from tests.property.test_cursor_properties import BASE_MS, make_forwarder, make_settings

USER = "auth0|u1"


def event(n: int, at_ms: int, kind: str = "s") -> dict[str, str]:
    return {"log_id": f"90000000{n}", "date": iso_ms(at_ms) or "", "type": kind, "user_id": USER}


def push(forwarder: Forwarder, *events: dict[str, str]) -> None:
    chunks = Pushed.of(iter(events), frozenset([USER])).chunks
    forwarder.push(chunks, remaining_ms=lambda: 30_000)


def test_a_failed_push_of_an_event_reads_cannot_see_yet_is_not_given_up_as_gone() -> None:
    # GIVEN a push that S3 refuses, of an event Auth0's Management API returns 2 minutes late
    fake = FakeAuth0(now_ms=BASE_MS)
    failing = {"on": False}
    cloudwatch = RecordingSink("cloudwatch")
    s3 = RecordingSink("s3", crash=lambda _i: "before" if failing["on"] else None)
    forwarder = make_forwarder(fake, [cloudwatch, s3], InMemoryCheckpointStore())
    forwarder.run([USER], remaining_ms=lambda: 10**9)
    pushed = event(1, BASE_MS + 1000)
    fake.add(pushed, visible_at_ms=BASE_MS + 120_000)
    fake.now_ms, failing["on"] = BASE_MS + 2000, True
    push(forwarder, pushed)
    failing["on"] = False
    # WHEN a run reads before the event is visible, and another after
    fake.now_ms = BASE_MS + 60_000
    first = forwarder.run([USER], remaining_ms=lambda: 10**9)
    fake.now_ms = BASE_MS + 300_000
    forwarder.run([USER], remaining_ms=lambda: 10**9)
    # THEN no gap was recorded, and each destination holds the event once
    assert first.users[0].gaps == [] and first.users[0].abandoned == 0
    assert cloudwatch.log_ids() == s3.log_ids() == ["900000001"]


def test_a_push_while_a_batch_is_pending_does_not_raise_its_finding_again() -> None:
    # GIVEN a run that died after S3 took three failed logins and their burst finding
    fake = FakeAuth0(now_ms=BASE_MS)
    crash: dict[str, Any] = {"mode": None}
    sink = RecordingSink("s3", crash=lambda _i: crash["mode"])
    output = OutputPolicy(
        detections=Detections(detection_settings({"DETECTION_FAILED_LOGIN_THRESHOLD": "3"}))
    )
    forwarder = Forwarder(
        settings=make_settings(),
        source=fake,
        store=InMemoryCheckpointStore(),
        sinks=[sink],
        clock=lambda: fake.now_ms / 1000,
        output=output,
        pushed=InMemoryPushedLedger(),
    )
    forwarder.run([USER], remaining_ms=lambda: 10**9)
    for n in (1, 2, 3):
        fake.add(event(n, BASE_MS + n * 1000, "f"))
    fake.now_ms, crash["mode"] = BASE_MS + 10_000, "after"
    forwarder.run([USER], remaining_ms=lambda: 10**9)
    crash["mode"] = None
    # WHEN a fourth failure is pushed before the next run redelivers the batch
    fourth = event(4, BASE_MS + 20_000, "f")
    fake.add(fourth)
    fake.now_ms = BASE_MS + 21_000
    push(forwarder, fourth)
    fake.now_ms = BASE_MS + 300_000
    forwarder.run([USER], remaining_ms=lambda: 10**9)
    # THEN every event is there once, and the burst is one finding (the same id each time)
    assert sorted(set(sink.log_ids())) == [f"90000000{n}" for n in (1, 2, 3, 4)]
    findings = {
        json.loads(line.line)["_forwarder"]["finding_id"]
        for line in sink.lines
        if line.log_id is None and '"record_type":"finding"' in line.line
    }
    assert len(findings) == 1


class HookedStore(InMemoryCheckpointStore):
    """Runs `hook` once, just before the next save: another writer's move."""

    hook: Any = None

    def save(self, user_id: str, state: Any, **kwargs: Any) -> int:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        return super().save(user_id, state, **kwargs)


def test_a_stream_chunk_whose_seat_another_run_ended_leaves_the_user_busy_not_a_bug() -> None:
    # GIVEN a seated user whose seat a per-user run ends between this run's read and its write
    store = HookedStore()
    fake = FakeAuth0(now_ms=BASE_MS)
    forwarder = make_forwarder(fake, [RecordingSink("s3")], store)
    seated = replace(Cursor.fresh(BASE_MS - 600_000), seat=StreamSeat(1, BASE_MS - 1, "900000000"))
    store.save(USER, seated.to_state(), expected_version=None)

    def seat_ended() -> None:
        stored = store.load([USER])[USER]
        cursor = replace(Cursor.from_state(stored.readable_state()), seat=None)
        store.save(USER, cursor.to_state(), expected_version=stored.version)

    store.hook = seat_ended
    session = UserSession(
        USER, store.load([USER])[USER], forwarder._env, forwarder._new_run(lambda: 10**9)
    )
    assert session.open(MEMBER)
    window = StreamSpan("900000000", "900000009", "900000000")
    events = parse_page([event(5, BASE_MS + 1000)]).events
    # WHEN the window's chunk is delivered
    delivered = session.deliver(Chunk(events, "logs_stream", window, returned=1), BASE_MS)
    # THEN the user is left to the next run (busy), not planned against a cursor with no seat
    assert not delivered
    assert session.report.busy and session.report.bug is None


def test_a_user_joining_the_tenant_stream_after_a_push_keeps_its_pushed_events_known() -> None:
    # GIVEN a user read per user, then one of its events pushed
    fake, store, ledger = (
        FakeAuth0(now_ms=BASE_MS),
        InMemoryCheckpointStore(),
        InMemoryPushedLedger(),
    )
    sink = RecordingSink("s3")

    def forwarder(mode: str) -> Forwarder:
        return make_forwarder(fake, [sink], store, ledger, READ_MODE=mode)

    forwarder("per-user").run([USER], remaining_ms=lambda: 10**9)
    fake.now_ms += 10_000
    pushed = event(1, fake.now_ms - 2_000)
    fake.add(pushed)
    push(forwarder("per-user"), pushed)
    # WHEN a stream run seats the user (it joins from its stored cursor) and reads the window
    fake.now_ms += 300_000
    run = forwarder("stream").run([USER], remaining_ms=lambda: 10**9)
    # THEN the join kept what the pushed-events table holds: the event is not delivered again
    assert run.read is not None and run.read.mode == "stream"
    assert sink.log_ids() == ["900000001"]
    assert run.users[0].forwarded == 0


def pushed_then_confirmed(
    fake: FakeAuth0, store: InMemoryCheckpointStore, sink: RecordingSink
) -> list[dict[str, str]]:
    """Six events pushed, then confirmed by a run: the user's checkpoint points into the
    pushed-events table for those still within the overlap window."""
    on = make_forwarder(fake, [sink], store, InMemoryPushedLedger())
    on.run([USER], remaining_ms=lambda: 10**9)
    events = [event(n, BASE_MS + 10_000 + n * 1000) for n in range(6)]
    for pushed in events:
        fake.add(pushed)
    fake.now_ms = BASE_MS + 20_000
    push(on, *events)
    fake.now_ms = BASE_MS + 300_000
    on.run([USER], remaining_ms=lambda: 10**9)
    return events


@pytest.mark.parametrize("table", ["none", "new and empty"])
def test_a_run_without_the_table_the_push_path_recorded_in_delivers_nothing_again(
    table: str,
) -> None:
    # GIVEN a user whose pushed events a run confirmed
    fake, store, sink = FakeAuth0(now_ms=BASE_MS), InMemoryCheckpointStore(), RecordingSink("s3")
    pushed_then_confirmed(fake, store, sink)
    # WHEN a run finds no pushed-events table (real time turned off before the table was kept
    # with it), or a new, empty one (the stack rolled back past it and forward again)
    ledger = None if table == "none" else InMemoryPushedLedger()
    later = Forwarder(
        settings=make_settings(),
        source=fake,
        store=store,
        sinks=[sink],
        clock=lambda: fake.now_ms / 1000,
        pushed=ledger,
    )
    fake.now_ms = BASE_MS + 360_000
    run = later.run([USER], remaining_ms=lambda: 10**9)
    # THEN the user fails with an error naming the table and the rule, counted in its metric,
    # and nothing is delivered again
    user = run.users[0]
    assert isinstance(user.failure, PushedMemoryMissing), user.error
    assert "pushed-events table" in (user.error or "") and "deliver them again" in (
        user.error or ""
    )
    assert dict((n, v) for n, _u, v in metric_values(run))["PushedMemoryMissing"] == 1
    assert sorted(sink.log_ids()) == sorted(set(sink.log_ids())) and len(sink.log_ids()) == 6


def test_a_push_that_died_before_its_record_does_not_make_the_table_look_lost() -> None:
    # GIVEN the first push of a user, dying after its intent and before its pushed-events record
    fake, store, ledger = (
        FakeAuth0(now_ms=BASE_MS),
        InMemoryCheckpointStore(),
        InMemoryPushedLedger(),
    )
    crash: dict[str, Any] = {"mode": None}
    sink = RecordingSink("s3", crash=lambda _i: crash["mode"])
    forwarder = make_forwarder(fake, [sink], store, ledger)
    forwarder.run([USER], remaining_ms=lambda: 10**9)
    pushed = event(1, BASE_MS + 10_000)
    fake.add(pushed)
    fake.now_ms, crash["mode"] = BASE_MS + 11_000, "before"
    push(forwarder, pushed)
    crash["mode"] = None
    # WHEN the reads redeliver the pending batch, and later runs read the user again
    reports = []
    for minutes in (20, 25, 30):
        fake.now_ms = BASE_MS + minutes * 60_000
        reports.append(forwarder.run([USER], remaining_ms=lambda: 10**9).users[0])
    # THEN no run takes the empty table for a lost one: the event is there once, nobody failed
    assert [r.error for r in reports] == [None, None, None]
    assert sink.log_ids() == ["900000001"]


def test_a_run_without_the_table_reads_the_user_again_once_auth0_cannot_hold_the_pushed_events() -> (
    None
):
    from log_forwarder.pushed import PUSHED_MEMORY_MS

    # GIVEN a user whose pushed events a run confirmed, and Auth0 keeping 30 days of logs
    fake, store, sink = FakeAuth0(now_ms=BASE_MS), InMemoryCheckpointStore(), RecordingSink("s3")
    pushed_then_confirmed(fake, store, sink)
    fake.retention_ms = 30 * 86_400_000
    # WHEN, past the table's memory, a run finds no pushed-events table, and the user has a
    # new event
    fake.now_ms = BASE_MS + PUSHED_MEMORY_MS + 86_400_000
    fake.add(event(99, fake.now_ms - 60_000))
    later = Forwarder(
        settings=make_settings(),
        source=fake,
        store=store,
        sinks=[sink],
        clock=lambda: fake.now_ms / 1000,
        pushed=None,
    )
    run = later.run([USER], remaining_ms=lambda: 10**9)
    # THEN the user is read again (Auth0 no longer returns what was pushed, so nothing can be
    # delivered twice) and the new event is forwarded, instead of the user failing for good
    assert run.users[0].failure is None, run.users[0].error
    assert len(sink.log_ids()) == 7 and sorted(sink.log_ids()) == sorted(set(sink.log_ids()))
