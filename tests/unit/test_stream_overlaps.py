"""The tenant stream against what its seats cannot see: overlapping runs, a tenant item that
starts over, a user away from the watch list. Each case lost an event or a gap record before the
roster moved into the tenant item (roster.py) and eras got numbers never used before.

- Two overlapping runs: Y loaded the tenant item when V was the stream's only member; X seats a
  newly watched user U and reads a window. If Y then moved the stream past U's event, nobody
  would deliver it: U's seat would stand before it, and later runs would read on from Y's
  position. The stream moves only in a write conditional on the members it was loaded with.
- The tenant item deleted (as its error message suggests) or unreadable: the next era must not
  reuse the number of the last one, or its old seats would count.
- A user off the watch list for longer than the retention, added back in either mode: its
  expired events are a gap record.
- A late event the stream proved new (dated below its user's floor) whose batch failed, its user
  then off the watch list for a run and back: the per-user read cannot see it, so it is read
  back by its id (read_back.py) and delivered once.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from types import SimpleNamespace
from typing import Any

import pytest

from log_forwarder.cursor import Cursor
from log_forwarder.events import iso_ms
from log_forwarder.exceptions import DeliveryError, OutOfTime
from log_forwarder.read_back import read_back
from log_forwarder.read_mode import TENANT_KEY
from log_forwarder.records import Delivery, DeliveryReport
from log_forwarder.store import decode_state
from tests.fakes import FakeAuth0, InMemoryCheckpointStore, RecordingSink
from tests.property.test_cursor_properties import make_forwarder

BASE = 1_790_000_000_000
MIN = 60_000
U = "auth0|u"
V = "auth0|v"
WAIT = 20


def event(n: int, user: str, date_ms: int) -> dict[str, str]:
    return {"log_id": f"900{n:06d}", "date": iso_ms(date_ms) or "", "type": "s", "user_id": user}


class Hooked:
    """FakeAuth0 with hooks run once, before and after the first tenant_logs call."""

    def __init__(self, fake: FakeAuth0, hook: Any = None, after: Any = None) -> None:
        self.fake = fake
        self.hook = hook
        self.after = after

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fake, name)

    def tenant_logs(self, after: str, *, take: int, scope: Any) -> list[Any]:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        page = self.fake.tenant_logs(after, take=take, scope=scope)
        then, self.after = self.after, None
        if then is not None:
            then()
        return page


class FailingFor:
    """A destination that, for `user`'s deliveries, signals, waits, then fails."""

    name = "memory"

    def __init__(
        self, inner: RecordingSink, user: str, reached: threading.Event, go: threading.Event
    ) -> None:
        self.inner, self.user, self.reached, self.go = inner, user, reached, go

    def deliver(self, delivery: Delivery) -> DeliveryReport:
        if delivery.user_id == self.user:
            self.reached.set()
            assert self.go.wait(WAIT)
            raise DeliveryError("simulated: destination unavailable")
        return self.inner.deliver(delivery)


def run_in_thread(results: dict[str, Any], name: str, forwarder: Any, users: list[str]) -> Any:
    """A forwarder's run on a thread of its own (not started), its report in results[name]."""

    def target() -> None:
        results[name] = forwarder.run(users, remaining_ms=lambda: 10**9)

    return threading.Thread(target=target)


def test_a_run_that_moves_with_a_stale_roster_strands_a_user_another_run_seated() -> None:
    fake = FakeAuth0()
    store = InMemoryCheckpointStore()
    sink = RecordingSink()

    def forwarder(source: Any = None, sinks: Any = None, mode: str = "stream") -> Any:
        return make_forwarder(source or fake, sinks or [sink], store, READ_MODE=mode)

    def run(users: list[str], mode: str = "stream") -> Any:
        return forwarder(mode=mode).run(users, remaining_ms=lambda: 10**9)

    # GIVEN a stream era with V its one member, roster {V}
    fake.add(event(1, V, BASE), visible_at_ms=BASE)
    fake.now_ms = BASE + 5 * MIN
    run([V])
    fake.now_ms = BASE + 10 * MIN
    run([V])
    fake.now_ms = BASE + 15 * MIN

    y_loaded, go_y = threading.Event(), threading.Event()
    x_failing, go_x = threading.Event(), threading.Event()

    def y_hook() -> None:
        y_loaded.set()
        assert go_y.wait(WAIT)

    def x_hook() -> None:  # U's event appears after X's per-user read of U, before its stream read
        fake.add(event(2, U, BASE + 15 * MIN), visible_at_ms=BASE + 15 * MIN)

    y = forwarder(source=Hooked(fake, y_hook))
    x = forwarder(source=Hooked(fake, x_hook), sinks=[FailingFor(sink, U, x_failing, go_x)])
    results: dict[str, Any] = {}
    ty = run_in_thread(results, "y", y, [V])
    tx = run_in_thread(results, "x", x, [U, V])
    # WHEN Y loads, then X seats U, writes the roster and reads e; Y moves past e; X fails on e
    ty.start()
    assert y_loaded.wait(WAIT)
    tx.start()
    assert x_failing.wait(WAIT)
    go_y.set()
    ty.join(WAIT)
    go_x.set()
    tx.join(WAIT)
    assert results["x"].users[0].error is not None  # X did fail U's delivery (a reported error)

    # THEN later runs, U watched throughout and destinations healthy, deliver e exactly once
    for i in range(1, 5):
        fake.now_ms = BASE + (20 + 5 * i) * MIN
        run([U, V])
    fake.add(event(3, U, BASE + 60 * MIN), visible_at_ms=BASE + 60 * MIN)
    for i in range(3):
        fake.now_ms = BASE + (80 + 5 * i) * MIN
        run([U, V])
    for i in range(3):  # even switching back to per-user reads does not recover it
        fake.now_ms = BASE + (100 + 5 * i) * MIN
        run([U, V], mode="per-user")
    counts = Counter(sink.log_ids())
    assert counts == Counter({"900000001": 1, "900000002": 1, "900000003": 1}), counts


def test_no_failure_at_all_two_healthy_overlapping_runs_lose_an_event() -> None:
    """Same race, nobody fails: X reads its first window before U's event is visible, Y reads
    after it and moves first; X's move conflicts ("another run owns the stream"). Both runs
    report success."""
    fake = FakeAuth0()
    store = InMemoryCheckpointStore()
    sink = RecordingSink()

    def forwarder(source: Any = None, mode: str = "stream") -> Any:
        return make_forwarder(source or fake, [sink], store, READ_MODE=mode)

    def run(users: list[str], mode: str = "stream") -> Any:
        return forwarder(mode=mode).run(users, remaining_ms=lambda: 10**9)

    fake.add(event(1, V, BASE), visible_at_ms=BASE)
    fake.now_ms = BASE + 5 * MIN
    run([V])
    fake.now_ms = BASE + 15 * MIN

    y_loaded, go_y = threading.Event(), threading.Event()
    x_read, go_x = threading.Event(), threading.Event()

    def wait_for(signal: threading.Event, go: threading.Event) -> Any:
        def hook() -> None:
            signal.set()
            assert go.wait(WAIT)

        return hook

    y = forwarder(source=Hooked(fake, hook=wait_for(y_loaded, go_y)))  # loaded before U added
    x = forwarder(source=Hooked(fake, after=wait_for(x_read, go_x)))
    results: dict[str, Any] = {}
    ty = run_in_thread(results, "y", y, [V])
    tx = run_in_thread(results, "x", x, [U, V])
    ty.start()
    assert y_loaded.wait(WAIT)
    tx.start()
    assert x_read.wait(WAIT)  # X seated U, wrote roster {U, V}, read the (empty) window
    fake.add(event(2, U, BASE + 15 * MIN), visible_at_ms=BASE + 15 * MIN)
    go_y.set()
    ty.join(WAIT)  # Y (roster unchanged for it: no write) moves past U's event
    go_x.set()
    tx.join(WAIT)
    for name in "xy":
        report = results[name]
        assert report.read.error is None
        assert all(u.error is None and u.bug is None for u in report.users)

    for i in range(1, 5):
        fake.now_ms = BASE + (20 + 5 * i) * MIN
        run([U, V])
    counts = Counter(sink.log_ids())
    assert counts == Counter({"900000001": 1, "900000002": 1}), counts


# -- the tenant item starts over ------------------------------------------------------------------


@pytest.mark.parametrize("how", ["deleted", "unreadable"])
def test_starting_the_tenant_item_over_loses_no_event(how: str) -> None:
    fake = FakeAuth0()
    store = InMemoryCheckpointStore()
    sink = RecordingSink()

    def run(mode: str = "stream") -> None:
        make_forwarder(fake, [sink], store, READ_MODE=mode).run([U], remaining_ms=lambda: 10**9)

    # GIVEN U on the stream (era 1)
    fake.add(event(1, U, BASE), visible_at_ms=BASE)
    fake.now_ms = BASE + 5 * MIN
    run()
    fake.now_ms = BASE + 10 * MIN
    run()
    # AND U's next event arrives
    fake.add(event(2, U, BASE + 12 * MIN), visible_at_ms=BASE + 12 * MIN)
    # WHEN the tenant item starts over before the next run
    item = store.item(TENANT_KEY)
    if how == "deleted":
        store.delete(TENANT_KEY)  # as an operator would, in the console
    else:
        # (A `v` of 2 or more would be a newer release's item, never written over: codec.py)
        store.save(TENANT_KEY, {"v": 1, "mode": "sideways"}, expected_version=item["version"])
    # AND runs go on, half an hour later
    for i in range(4):
        fake.now_ms = BASE + (40 + 5 * i) * MIN
        run()
    fake.add(event(3, U, BASE + 70 * MIN), visible_at_ms=BASE + 70 * MIN)
    for i in range(3):
        fake.now_ms = BASE + (80 + 5 * i) * MIN
        run()
    for i in range(2):
        fake.now_ms = BASE + (100 + 5 * i) * MIN
        run("per-user")
    # THEN every event of U was delivered once
    counts = Counter(sink.log_ids())
    assert counts == Counter({"900000001": 1, "900000002": 1, "900000003": 1}), counts


# -- away past the retention ----------------------------------------------------------------------


def gaps_for(sink: RecordingSink, user: str) -> list[dict]:
    out = []
    for line in sink.lines:
        doc = json.loads(line.line)
        fw = doc.get("_forwarder", {})
        if fw.get("record_type") == "gap" and fw.get("watched_user_id") == user:
            out.append(fw)
    return out


@pytest.mark.parametrize("back_in", ["stream", "per-user"])
def test_a_user_away_past_the_retention_gets_a_gap_in_either_mode(back_in: str) -> None:
    fake = FakeAuth0(retention_ms=3_600_000)
    store = InMemoryCheckpointStore()
    sink = RecordingSink()

    def run(users: list[str], mode: str = "stream") -> None:
        f = make_forwarder(fake, [sink], store, READ_MODE=mode, AUTH0_LOG_RETENTION_HOURS="1")
        f.run(users, remaining_ms=lambda: 10**9)

    n = 0

    def add(user: str, at: int) -> None:
        nonlocal n
        n += 1
        fake.add(event(n, user, at), visible_at_ms=at)

    # GIVEN U and V on the stream
    add(U, BASE)
    add(V, BASE)
    fake.now_ms = BASE + 5 * MIN
    run([U, V])
    # WHEN U is off the watch list for 3 hours; its event at +20 min expires unread
    add(U, BASE + 20 * MIN)
    for k in range(1, 18):
        add(V, BASE + k * 10 * MIN)
        fake.now_ms = BASE + k * 10 * MIN + MIN
        run([V])
    # AND U comes back
    fake.now_ms = BASE + 180 * MIN
    run([U, V], mode=back_in)
    # THEN its expired event is reported by a gap (as a per-user tenant would report it)
    assert "900000003" not in sink.log_ids()  # expired: cannot be delivered
    gaps = gaps_for(sink, U)
    assert gaps, f"no gap record for {U}'s expired event (back in {back_in} mode)"


# -- a pending late event, its user away and back --------------------------------------------------


LATE = "900000004"


class FailOnceFor:
    """Refuses (before accepting anything) the first delivery holding `log_id`."""

    name = "memory"

    def __init__(self, inner: RecordingSink, log_id: str) -> None:
        self.inner, self.log_id, self.armed = inner, log_id, True

    def deliver(self, delivery: Delivery) -> DeliveryReport:
        if self.armed and any(line.log_id == self.log_id for line in delivery.lines):
            self.armed = False
            raise DeliveryError("simulated: destination unavailable")
        return self.inner.deliver(delivery)


def cursor(store: InMemoryCheckpointStore, user: str) -> Cursor:
    return Cursor.from_state(decode_state(user, store.item(user)["state"]))


@pytest.mark.parametrize("back_in", ["stream", "per-user"])
def test_a_pending_late_event_is_read_back_when_its_user_comes_back(back_in: str) -> None:
    fake = FakeAuth0()
    store = InMemoryCheckpointStore()
    sink = RecordingSink()
    failing = FailOnceFor(sink, LATE)

    def run(users: list[str], mode: str = "stream") -> Any:
        f = make_forwarder(fake, [failing], store, READ_MODE=mode)
        return f.run(users, remaining_ms=lambda: 10**9)

    # U and V on the stream; a complete read after they joined (floor_until fixed)
    fake.add(event(1, U, BASE), visible_at_ms=BASE)
    fake.add(event(2, V, BASE), visible_at_ms=BASE)
    fake.now_ms = BASE + MIN
    run([U, V])
    # U active at +30 min: its floor moves to +20 min
    fake.add(event(3, U, BASE + 30 * MIN), visible_at_ms=BASE + 30 * MIN)
    fake.now_ms = BASE + 31 * MIN
    run([U, V])
    # a late event of U dated +5 min (below its floor), visible at +40 min: the stream
    # forwards it (its log_id proves nobody saw it) ... but the destination refuses the batch
    fake.add(event(4, U, BASE + 5 * MIN), visible_at_ms=BASE + 40 * MIN)
    fake.now_ms = BASE + 41 * MIN
    first = run([U, V])
    assert first.users[0].error is not None
    assert any(LATE in p.log_ids for p in cursor(store, U).outbox.pending)
    # U off the watch list for one run: the stream moves past the event without it
    fake.add(event(5, V, BASE + 44 * MIN), visible_at_ms=BASE + 44 * MIN)
    fake.now_ms = BASE + 45 * MIN
    run([V])
    # U back; the destination is healthy from now on
    for i in range(4):
        fake.now_ms = BASE + (50 + 5 * i) * MIN
        run([U, V], mode=back_in)
    counts = Counter(sink.log_ids())
    assert counts[LATE] == 1, f"late event {LATE} (still in Auth0) was never delivered"
    assert set(counts.values()) == {1}
    # AND it says where it came from: read back by its id
    (line,) = [json.loads(x.line) for x in sink.lines if LATE in x.line]
    assert line["_forwarder"]["source"] == "log_by_id"
    assert not cursor(store, U).outbox.pending


def test_a_read_back_cut_short_by_the_deadline_keeps_what_it_read() -> None:
    # GIVEN a seat with 4 pending events past it, and an Auth0 whose third answer would come
    # after the run's deadline (a pacer or 429 wait that does not fit)
    events = {e["log_id"]: e for e in (event(n, U, BASE + n) for n in range(1, 5))}
    seated = SimpleNamespace(seat=SimpleNamespace(pos="9"), outbox=SimpleNamespace(log_ids=events))
    asked: list[str] = []

    class SlowAuth0:
        def log_event(self, log_id: str, *, scope: Any) -> Any:
            if len(asked) == 2:
                raise OutOfTime("the wait for the next call outlasts the invocation")
            asked.append(log_id)
            return events[log_id]

    # WHEN they are read back
    chunk = read_back(SlowAuth0(), seated, None, verified_ms=None)  # type: ignore[arg-type]

    # THEN the two answers are in the chunk (the deadline used to throw them away), and the
    # span says not everything was asked for: the seat stays for the next run
    assert [e.log_id for e in chunk.events] == sorted(events)[:2] == asked
    assert chunk.span.asked_all is False
