"""Cases a review found by hand, kept as examples beside the property tests."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from log_forwarder.events import iso_ms
from log_forwarder.records import Delivery, DeliveryReport
from tests.fakes import FakeAuth0, InMemoryCheckpointStore, RecordingSink
from tests.property.test_cursor_properties import make_forwarder

BASE = 1_790_000_000_000
DAY = 86_400_000
USER = "auth0|regression"


def test_a_crashed_batch_spread_over_two_chunks_is_recovered_without_repeats() -> None:
    # GIVEN a 1,500-event backlog whose first delivered chunk is lost to a crash before commit
    fake = FakeAuth0(now_ms=BASE + 2_000_000)
    for i in range(1500):
        fake.add({"log_id": f"a{i:05d}", "date": iso_ms(BASE + i * 1000), "user_id": USER})
    sink = RecordingSink(crash=lambda i: "after" if i == 0 else None)
    forwarder = make_forwarder(fake, [sink], InMemoryCheckpointStore())
    assert forwarder.run([USER], remaining_ms=lambda: 10**9).users[0].error is not None
    # WHEN a late event dated inside that batch shifts the next run's chunk boundaries
    fake.now_ms += 60_000
    fake.add({"log_id": "late1", "date": iso_ms(BASE + 100_500), "user_id": USER})
    recovered = 0
    for _ in range(3):
        recovered += forwarder.run([USER], remaining_ms=lambda: 10**9).users[0].recovered
        fake.now_ms += 300_000
    # THEN every event is delivered exactly once, the crashed batch through recovery
    counts = Counter(sink.log_ids())
    assert len(counts) == 1501
    assert [k for k, v in counts.items() if v > 1] == []
    assert recovered == len(sink.batches[0])  # the batch the crash interrupted


def test_a_quiet_user_whose_last_event_ages_out_gets_no_gap_and_loses_no_late_event() -> None:
    # GIVEN a one-day retention and a user with a single event, then a day of idle runs
    fake = FakeAuth0(now_ms=BASE + 1000, retention_ms=DAY)
    fake.add({"log_id": "e1", "date": iso_ms(BASE), "user_id": USER})
    sink = RecordingSink()
    forwarder = make_forwarder(fake, [sink], InMemoryCheckpointStore())
    t, gaps = BASE + 1000, 0
    while t < BASE + DAY + 600_000:
        fake.now_ms = t
        gaps += len(forwarder.run([USER], remaining_ms=lambda: 10**9).users[0].gaps)
        t += 300_000
    # WHEN an event dated 30 s before the last run shows up 90 s after it
    fake.add(
        {"log_id": "late", "date": iso_ms(t - 330_000), "user_id": USER}, visible_at_ms=t - 210_000
    )
    for _ in range(3):
        fake.now_ms = t
        gaps += len(forwarder.run([USER], remaining_ms=lambda: 10**9).users[0].gaps)
        t += 300_000
    # THEN the anchor aging out was not taken for lost events, and the late event arrived
    assert gaps == 0
    assert sink.log_ids() == ["e1", "late"]


def test_a_forwarder_down_longer_than_retention_reports_the_expired_span() -> None:
    # GIVEN a one-day retention, a user forwarded once, then two days without a run
    fake = FakeAuth0(now_ms=BASE + 1000, retention_ms=DAY)
    fake.add({"log_id": "e1", "date": iso_ms(BASE), "user_id": USER})
    sink = RecordingSink()
    forwarder = make_forwarder(fake, [sink], InMemoryCheckpointStore())
    forwarder.run([USER], remaining_ms=lambda: 10**9)
    fake.add({"log_id": "expired", "date": iso_ms(BASE + DAY // 2), "user_id": USER})
    fake.add({"log_id": "kept", "date": iso_ms(BASE + 2 * DAY - 60_000), "user_id": USER})
    # WHEN it runs again
    fake.now_ms = BASE + 2 * DAY
    report = forwarder.run([USER], remaining_ms=lambda: 10**9).users[0]
    # THEN the kept event is forwarded and one gap spans the expired one, up to the cutoff
    assert sink.log_ids() == ["e1", "kept"]
    assert len(report.gaps) == 1
    gap = report.gaps[0]
    assert gap.from_ms is not None and gap.from_ms < BASE + DAY // 2 < gap.to_ms == BASE + DAY


def test_exactly_1000_events_in_one_millisecond_are_all_forwarded() -> None:
    fake = FakeAuth0(now_ms=BASE + 60_000)
    for i in range(1000):
        fake.add({"log_id": f"t{i:04d}", "date": iso_ms(BASE), "user_id": USER})
    fake.add({"log_id": "after", "date": iso_ms(BASE + 1), "user_id": USER})
    sink = RecordingSink()
    report = (
        make_forwarder(fake, [sink], InMemoryCheckpointStore())
        .run([USER], remaining_ms=lambda: 10**9)
        .users[0]
    )
    assert len(set(sink.log_ids())) == 1001 == len(sink.log_ids())
    # Whether a 1,001st event shares that millisecond cannot be known: said, as a possible gap
    assert [g.reason.split(":")[0] for g in report.gaps] == ["possible"]


def test_a_corrupt_checkpoint_fails_its_user_by_name_and_leaves_the_others_intact() -> None:
    # GIVEN a checkpoint whose pending intent lacks its batch id, beside a healthy user
    fake = FakeAuth0(now_ms=BASE + 60_000)
    fake.add({"log_id": "ok1", "date": iso_ms(BASE), "user_id": "auth0|good"})
    store = InMemoryCheckpointStore()
    store.save("auth0|bad", {"v": 1, "pending": [{"log_ids": ["x"]}]}, expected_version=None)
    sink = RecordingSink()
    # WHEN a run covers both
    result = make_forwarder(fake, [sink], store).run(
        ["auth0|bad", "auth0|good"], remaining_ms=lambda: 10**9
    )
    # THEN the bad one fails with an error naming the state and the fix; the other is forwarded
    errors = {u.user_id: u.error for u in result.users}
    assert errors["auth0|good"] is None
    assert errors["auth0|bad"] is not None
    assert errors["auth0|bad"].startswith("CheckpointStateError: checkpoint state is invalid")
    assert "delete the item's `state`" in errors["auth0|bad"]
    assert sink.log_ids() == ["ok1"]


class _Bug(RuntimeError):
    pass


def test_a_bug_for_one_user_is_not_a_user_failure_and_the_others_finish_first() -> None:
    # GIVEN a destination with a bug that trips on one user's batch only
    fake = FakeAuth0(now_ms=BASE + 60_000)
    for user in ("auth0|a", "auth0|b", "auth0|c"):
        fake.add({"log_id": f"{user}-1", "date": iso_ms(BASE), "user_id": user})
    sink = RecordingSink()
    deliver = sink.deliver

    def buggy(delivery: Delivery) -> DeliveryReport:
        if delivery.user_id == "auth0|b":
            raise _Bug("not a ForwarderError")
        return deliver(delivery)

    sink.deliver = buggy  # type: ignore[method-assign]
    # WHEN a run covers all three
    result = make_forwarder(fake, [sink], InMemoryCheckpointStore()).run(
        ["auth0|a", "auth0|b", "auth0|c"], remaining_ms=lambda: 10**9
    )
    # THEN the others were forwarded, and the bug is kept whole for the handler to raise
    assert sorted(sink.log_ids()) == ["auth0|a-1", "auth0|c-1"]
    assert [type(bug) for bug in result.bugs] == [_Bug]
    assert [u.user_id for u in result.failed] == ["auth0|b"]
    assert all(u.error is None for u in result.users)


def test_a_gap_is_counted_by_the_run_that_delivered_it_not_by_one_that_failed_before() -> None:
    # GIVEN an expired anchor (a gap to report) and a pending batch whose redelivery fails once
    fake = FakeAuth0(now_ms=BASE + 1000, retention_ms=DAY)
    fake.add({"log_id": "e1", "date": iso_ms(BASE), "user_id": USER})
    failures = iter([False, True])  # the first delivery works, the next one fails
    sink = RecordingSink(crash=lambda _i: "before" if next(failures, False) else None)
    store = InMemoryCheckpointStore()
    forwarder = make_forwarder(fake, [sink], store)
    forwarder.run([USER], remaining_ms=lambda: 10**9)
    fake.add({"log_id": "kept", "date": iso_ms(BASE + 2 * DAY - 60_000), "user_id": USER})
    fake.now_ms = BASE + 2 * DAY
    # WHEN a run fails before reaching the gap's batch, and the next one succeeds
    runs = [forwarder.run([USER], remaining_ms=lambda: 10**9).users[0] for _ in range(2)]
    # THEN the gap is counted once, by the run that wrote it
    assert [len(r.gaps) for r in runs] == [0, 1]
    assert runs[0].error is not None and runs[1].error is None


def test_what_a_destination_accepted_is_counted_even_if_a_later_one_fails() -> None:
    fake = FakeAuth0(now_ms=BASE + 60_000)
    fake.add({"log_id": "x", "date": iso_ms(BASE), "user_id": USER})
    first, second = RecordingSink("cloudwatch"), RecordingSink("s3", crash=lambda _i: "before")
    report = (
        make_forwarder(fake, [first, second], InMemoryCheckpointStore())
        .run([USER], remaining_ms=lambda: 10**9)
        .users[0]
    )
    assert report.error is not None
    assert report.delivered == {"cloudwatch": 1} and report.forwarded == 0
    # AND the failed user's report still shows its checkpoint
    assert report.as_dict()["checkpoint"] is not None


def test_a_lone_surrogate_in_an_event_is_forwarded_escaped_not_a_stuck_user() -> None:
    fake = FakeAuth0(now_ms=BASE + 60_000)
    fake.add({"log_id": "odd", "date": iso_ms(BASE), "user_id": USER, "user_agent": "a\ud800b"})
    sink = RecordingSink()
    report = (
        make_forwarder(fake, [sink], InMemoryCheckpointStore())
        .run([USER], remaining_ms=lambda: 10**9)
        .users[0]
    )
    assert report.error is None and report.bug is None
    (line,) = sink.lines
    line.line.encode("utf-8")  # what every destination does with it
    assert json.loads(line.line)["user_agent"] == "a\ud800b"


def test_a_number_too_large_for_a_float_does_not_stop_the_user() -> None:
    # GIVEN an event whose body holds 1e400 (infinite as a float), as the client now reads it
    from log_forwarder.auth0_client import _json

    class Body:
        headers: dict[str, str] = {}
        status_code = 200
        content = (
            b'[{"log_id":"big","date":"2026-01-01T00:00:00Z","user_id":"auth0|regression",'
            b'"details":{"n":1e400}}]'
        )

    (entry,) = _json(Body(), "/x")  # type: ignore[arg-type]
    fake = FakeAuth0(now_ms=BASE + 60_000)
    entry["date"] = iso_ms(BASE)
    fake.add(entry)
    fake.add({"log_id": "next", "date": iso_ms(BASE + 1), "user_id": USER})
    sink = RecordingSink()
    report = (
        make_forwarder(fake, [sink], InMemoryCheckpointStore())
        .run([USER], remaining_ms=lambda: 10**9)
        .users[0]
    )
    # THEN both are forwarded, the number kept as the text it was
    assert report.bug is None and report.error is None
    assert sink.log_ids() == ["big", "next"]
    assert json.loads(sink.lines[0].line)["details"]["n"] == "1e400"


def test_an_event_dated_ahead_does_not_hide_an_expiry_gap() -> None:
    # GIVEN a one-day retention and a user whose newest forwarded event is dated a year ahead
    fake = FakeAuth0(now_ms=BASE + 1000, retention_ms=DAY)
    fake.add({"log_id": "e1", "date": iso_ms(BASE), "user_id": USER})
    fake.add({"log_id": "ahead", "date": iso_ms(BASE + 365 * DAY), "user_id": USER})
    sink = RecordingSink()
    forwarder = make_forwarder(fake, [sink], InMemoryCheckpointStore())
    forwarder.run([USER], remaining_ms=lambda: 10**9)
    fake.add({"log_id": "expired", "date": iso_ms(BASE + DAY // 2), "user_id": USER})
    # WHEN the forwarder does not run for two days
    fake.now_ms = BASE + 2 * DAY
    report = forwarder.run([USER], remaining_ms=lambda: 10**9).users[0]
    # THEN the event that expired unread lies inside a gap record
    assert "expired" not in sink.log_ids()
    assert any(
        gap.from_ms is not None and gap.from_ms < BASE + DAY // 2 < gap.to_ms for gap in report.gaps
    )


def test_an_unreadable_checkpoint_item_fails_only_its_user() -> None:
    # GIVEN a store whose item for one user cannot be decoded
    from log_forwarder.exceptions import CheckpointStateError
    from log_forwarder.store import StoredCheckpoint

    class OneBadItem(InMemoryCheckpointStore):
        def load(self, user_ids: Any, **kwargs: Any) -> dict[str, StoredCheckpoint]:
            found = super().load(user_ids, **kwargs)
            found["auth0|bad"] = StoredCheckpoint(
                "auth0|bad", -1, {}, CheckpointStateError("unreadable, for the test")
            )
            return found

    fake = FakeAuth0(now_ms=BASE + 60_000)
    fake.add({"log_id": "ok1", "date": iso_ms(BASE), "user_id": "auth0|good"})
    sink = RecordingSink()
    # WHEN a run covers both
    result = make_forwarder(fake, [sink], OneBadItem()).run(
        ["auth0|bad", "auth0|good"], remaining_ms=lambda: 10**9
    )
    # THEN the good user is forwarded and the bad one fails by itself
    errors = {u.user_id: u.error for u in result.users}
    assert errors["auth0|good"] is None and "unreadable" in (errors["auth0|bad"] or "")
    assert sink.log_ids() == ["ok1"]


class Killed(BaseException):
    """A process killed mid-delivery: nothing after it runs, no lease is released."""


class KilledAfterAccepting(RecordingSink):
    """Accepts the batch, then the process dies (once)."""

    kill = True

    def deliver(self, delivery: Delivery) -> DeliveryReport:
        report = super().deliver(delivery)
        if self.kill:
            self.kill = False
            raise Killed
        return report


def test_a_run_killed_mid_delivery_is_recovered_once_its_lease_runs_out() -> None:
    # GIVEN a run killed after the destination accepted a batch and before the commit
    fake = FakeAuth0(now_ms=BASE + 60_000)
    for i in range(30):
        fake.add({"log_id": f"k{i:02d}", "date": iso_ms(BASE + i), "user_id": USER})
    sink = KilledAfterAccepting()
    forwarder = make_forwarder(fake, [sink], InMemoryCheckpointStore())
    with pytest.raises(Killed):
        forwarder.run([USER], remaining_ms=lambda: 240_000)
    # WHEN the next run comes at once, and again once the lease has run out
    at_once = forwarder.run([USER], remaining_ms=lambda: 240_000).users[0]
    fake.now_ms += 240_000 + 30_000 + 1
    later = forwarder.run([USER], remaining_ms=lambda: 240_000).users[0]
    # THEN the first waits for the lease, the second redelivers without a repeat
    assert at_once.busy and later.recovered == 30
    assert Counter(sink.log_ids()) == Counter(f"k{i:02d}" for i in range(30))


def test_a_failed_user_says_why_on_its_checkpoint_until_a_run_succeeds() -> None:
    # GIVEN a user whose destination refuses the first delivery
    fake = FakeAuth0(now_ms=BASE + 100_000)
    for i in range(5):
        fake.add({"log_id": f"f{i}", "date": iso_ms(BASE + i * 1000), "user_id": USER})
    sink = RecordingSink(crash=lambda i: "before" if i == 0 else None)
    store = InMemoryCheckpointStore()
    forwarder = make_forwarder(fake, [sink], store)
    # WHEN the run fails for that user
    failed = forwarder.run([USER], remaining_ms=lambda: 10**9).users[0]
    # THEN the checkpoint item names the error and when, for `status`
    assert failed.error is not None and "simulated failure" in failed.error
    item = store.item(USER)
    assert "simulated failure" in item["last_error"]
    assert item["last_error_at"] == iso_ms(BASE + 100_000)
    # AND the next run, which succeeds, clears it and forwards every event once
    fake.now_ms += 300_000
    assert forwarder.run([USER], remaining_ms=lambda: 10**9).users[0].error is None
    assert "last_error" not in store.item(USER)
    assert sorted(sink.log_ids()) == [f"f{i}" for i in range(5)]


def test_pages_read_before_a_wait_runs_out_of_time_are_delivered() -> None:
    # GIVEN a new user's history, and a tenant so slow that the third page's wait would outlast
    # the invocation
    from log_forwarder.exceptions import OutOfTime

    class SlowAfterTwoPages(FakeAuth0):
        def search_logs(self, query: str, **kwargs: Any) -> list[Any]:
            if self.calls >= 2:
                raise OutOfTime("waiting for the rate-limit share needs 50 s")
            return super().search_logs(query, **kwargs)

    fake = SlowAfterTwoPages(now_ms=BASE + DAY)
    for i in range(500):
        fake.add({"log_id": f"h{i:03d}", "date": iso_ms(BASE + i * 1000), "user_id": USER})
    sink = RecordingSink()
    report = (
        make_forwarder(fake, [sink], InMemoryCheckpointStore())
        .run([USER], remaining_ms=lambda: 10**9)
        .users[0]
    )
    # THEN the two pages read are forwarded (199 events: each search page starts at the last
    # date of the one before, inclusive), and the user is deferred, not failed
    assert report.deferred and report.error is None
    assert sink.log_ids() == [f"h{i:03d}" for i in range(199)]
