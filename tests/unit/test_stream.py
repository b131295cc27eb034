"""The tenant stream's pieces, one at a time: which events of a window are new for a user, how a
window goes through the planner, the gap a lapse of the stream proves, where the stream starts,
how it is read, and how the mode is chosen."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from log_forwarder.chunk import Chunk, StreamSpan
from log_forwarder.cursor import Cursor, Pending, StreamSeat
from log_forwarder.events import LogEvent, iso_ms
from log_forwarder.exceptions import Auth0RequestError
from log_forwarder.gaps import ReadFacts
from log_forwarder.planner import PlanContext, plan_chunk
from log_forwarder.read_mode import (
    PER_USER,
    STREAM,
    TenantState,
    decide,
    per_user_calls,
)
from log_forwarder.source import CallScope
from log_forwarder.stream import StreamRead, before, read_windows, sample_rate, start_position
from tests.cursors import forwarded, with_backlog, with_pending
from tests.fakes import FakeAuth0

BASE = 1_790_000_000_000
OVERLAP = 600_000
USER = "auth0|stream"


def ev(log_id: str, date_ms: int, user: str = USER) -> LogEvent:
    raw = {"log_id": log_id, "date": iso_ms(date_ms), "user_id": user, "type": "s"}
    return LogEvent(date_ms, log_id, raw)


def seated(cursor: Cursor, pos: str = "9000", joined_ms: int = BASE) -> Cursor:
    return replace(cursor, seat=StreamSeat(1, joined_ms, pos))


def context(now_ms: int = BASE + 3_600_000) -> PlanContext:
    return PlanContext(USER, "t.example.com", now_ms, now_ms, OVERLAP, 86_400_000, now_ms + 1000)


def window_chunk(events: list[LogEvent], after: str, to: str, floor_until: str) -> Chunk:
    return Chunk(events, "logs_stream", StreamSpan(after, to, floor_until))


# -- which events of a window are new -----------------------------------------------------------


def test_a_window_read_again_is_dropped_by_the_seat() -> None:
    # GIVEN a user whose seat stands at 9005 (the window up to there is delivered)
    cursor = seated(Cursor.fresh(BASE), pos="9005")
    events = [ev("9003", BASE + 1), ev("9005", BASE + 2), ev("9007", BASE + 3)]
    # WHEN the window is read again after a crash THEN only what lies past the seat is new
    selection = StreamSpan("0", "0", "9000").select(cursor, events)
    assert [e.log_id for e in selection.new] == ["9007"]
    assert selection.duplicates == 2


def test_a_late_event_past_the_floor_zone_is_forwarded_whatever_its_date() -> None:
    # GIVEN a user forwarded up to an hour ago (the floor is 10 minutes below that)
    cursor = forwarded(
        seated(Cursor.fresh(None)),
        [ev("9001", BASE + 3_600_000)],
        overlap_ms=OVERLAP,
        read_started_ms=BASE + 3_600_000,
    )
    assert cursor.position.floor_ms == BASE + 3_600_000 - OVERLAP
    late = ev("9009", BASE)  # dated an hour before the newest, made visible only now
    # WHEN it comes past the floor zone (a larger log_id proves nobody saw it) THEN it is new,
    # and counted as late
    selection = StreamSpan("0", "0", "9005").select(cursor, [late])
    assert [e.log_id for e in selection.new] == ["9009"]
    assert (selection.late, selection.max_lateness_ms) == (1, 3_600_000)
    # AND inside the floor zone (what the user's last per-user read may have seen and passed
    # over) the floor still drops it
    assert StreamSpan("0", "0", "9010").select(cursor, [late]).below_floor == 1


def test_an_event_a_per_user_read_forwarded_is_not_forwarded_again() -> None:
    # GIVEN a user who joined after a per-user read forwarded 9004 (remembered in `recent`)
    cursor = seated(
        forwarded(
            Cursor.fresh(BASE),
            [ev("9004", BASE + 10)],
            overlap_ms=OVERLAP,
            read_started_ms=BASE + 10,
        ),
        pos="9000",
    )
    # WHEN the stream returns it past the seat THEN it is a repeat
    selection = StreamSpan("0", "0", "9006").select(
        cursor, [ev("9004", BASE + 10), ev("9006", BASE + 11)]
    )
    assert [e.log_id for e in selection.new] == ["9006"]
    assert selection.duplicates == 1


# -- a window through the planner -----------------------------------------------------------------


def test_a_stream_window_moves_the_seat_and_nothing_else_of_a_per_user_read() -> None:
    cursor = seated(with_backlog(Cursor.fresh(BASE)), pos="9000")
    plan = plan_chunk(
        cursor, window_chunk([ev("9002", BASE + 5)], "9000", "9010", "9000"), context()
    )
    intent, after = plan.batches[0].intent, plan.batches[-1].after
    assert intent is not None
    assert intent.seat == cursor.seat  # the write-ahead intent does not move the seat
    assert after.seat == StreamSeat(1, BASE, "9010")
    assert after.status.backlog is True  # per-user bookkeeping untouched
    assert after.position.verified_ms is None
    assert after.status.forwarded_total == 1


def test_pending_events_are_given_up_only_where_the_window_covered_them() -> None:
    # GIVEN an interrupted batch of three events, one past the window at hand
    pending = Pending("batch", frozenset({"9002", "9003", "9020"}))
    cursor = with_pending(seated(Cursor.fresh(BASE), pos="9000"), pending)
    # WHEN the window (9000, 9010] returns 9002 only
    plan = plan_chunk(
        cursor, window_chunk([ev("9002", BASE + 5)], "9000", "9010", "9000"), context()
    )
    # THEN 9002 is redelivered, 9003 is gone (the window covered it), 9020 still pending
    (redelivery,) = plan.batches
    assert redelivery.redelivery
    assert [e.log_id for e in redelivery.events] == ["9002"]
    assert redelivery.abandoned == 1
    assert [p.log_ids for p in redelivery.after.outbox.pending] == [frozenset({"9020"})]


def test_what_a_window_delivered_before_a_later_batch_failed_is_not_delivered_again() -> None:
    # GIVEN an interrupted batch holding an old event and one an hour newer, and a new event
    pending = Pending("batch", frozenset({"9002", "9004"}))
    cursor = with_pending(seated(Cursor.fresh(BASE), pos="9000"), pending)
    events = [ev("9002", BASE), ev("9004", BASE + 3_600_000), ev("9006", BASE + 3_600_001)]
    chunk = window_chunk(events, "9000", "9010", "9000")
    redelivery, _failed = plan_chunk(cursor, chunk, context()).batches
    # WHEN the redelivery commits and the new event's batch fails: the seat stays before the
    # window
    committed = redelivery.after
    assert committed.seat is not None and committed.seat.pos == "9000"
    # THEN the window read again yields only the event that was not delivered: the two
    # redelivered ones are known (remembered as this read's, and held by the seat), and not
    # taken for events the real-time path delivered first (RealtimeConfirmedEvents)
    again = plan_chunk(committed, chunk, context())
    assert [e.log_id for b in again.batches for e in b.events] == ["9006"]
    assert (again.selection.duplicates, len(again.selection.confirmed)) == (2, 0)
    # AND once the seat passes the window, it forgets them
    assert again.batches[-1].after.seat == StreamSeat(1, BASE, "9010")


def test_a_lapse_of_the_stream_is_one_gap_per_user_and_never_twice() -> None:
    # GIVEN a stream verified up to BASE, unread since, and a retention that has passed BASE
    cursor = seated(Cursor.fresh(None))
    lapse = (BASE, BASE + 3_600_000)
    chunk = Chunk([], "logs_stream", StreamSpan("9000", "9010", "9000"),
                  ReadFacts(unread_span=lapse))  # fmt: skip
    # WHEN a window carries the lapse THEN the user gets a gap record for that span
    plan = plan_chunk(cursor, chunk, context())
    (batch,) = plan.batches
    (gap,) = batch.gaps
    assert (gap.from_ms, gap.to_ms) == lapse
    assert gap.reason.startswith("expired")
    # AND read again (a crash before the stream checkpoint moved), the floor it moved stops
    # a second record
    assert plan_chunk(batch.after, chunk, context()).batches == ()


# -- where the stream starts ---------------------------------------------------------------------


def test_the_start_from_a_date_is_before_every_event_dated_then_or_later() -> None:
    # GIVEN events with ids that follow ingestion: a late one (dated at T, ingested after an
    # event dated T+5 s), ties at T, and older ones
    fake = FakeAuth0(now_ms=BASE + 60_000)
    t = BASE + 30_000
    rows = [("90001", t - 20_000), ("90002", t - 1), ("90003", t + 5_000), ("90004", t),
            ("90005", t), ("90006", t - 10_000)]  # fmt: skip
    for log_id, date in rows:
        fake.add({"log_id": log_id, "date": iso_ms(date), "user_id": USER})
    # WHEN the stream starts from T
    position = start_position(fake, t, CallScope())
    # THEN reading on from it returns every event dated T or later (and the late 90006 too,
    # ingested after them: dropped later by the floor, or forwarded as late)
    assert position == "90002"
    returned = fake.tenant_logs(position, take=100, scope=CallScope())
    assert {e["log_id"] for e in returned} >= {"90003", "90004", "90005"}
    assert before("90020211104001144643223441133851203963552710102024716354") == (
        "90020211104001144643223441133851203963552710102024716353"
    )
    assert before("90000") == "89999"


def test_with_nothing_dated_that_late_the_stream_starts_after_the_newest_id() -> None:
    fake = FakeAuth0(now_ms=BASE)
    fake.add({"log_id": "90001", "date": iso_ms(BASE - 1000), "user_id": USER})
    assert start_position(fake, BASE, CallScope()) == "90001"
    assert start_position(FakeAuth0(), BASE, CallScope()) is None  # an empty log


# -- reading it ----------------------------------------------------------------------------------


def test_windows_hold_up_to_a_thousand_events_and_end_at_the_end_of_the_log() -> None:
    fake = FakeAuth0(now_ms=BASE + 10**7)
    for i in range(2_150):
        fake.add({"log_id": f"9{i:06d}", "date": iso_ms(BASE + i), "user_id": USER})
    windows = list(read_windows(StreamRead(fake, CallScope()), "9"))
    assert [len(w.events) for w in windows] == [1000, 1000, 150]
    assert [w.complete for w in windows] == [False, False, True]
    assert windows[1].after == windows[0].to == "9000999"
    assert fake.calls == 22  # 21 full pages and the short one that ends the log


def test_a_malformed_entry_in_the_stream_goes_to_the_user_it_names() -> None:
    fake = FakeAuth0(now_ms=BASE)
    fake.add({"log_id": "90001", "date": iso_ms(BASE - 5), "user_id": USER})
    fake.events.append(type(fake.events[0])({"log_id": "90002", "date": "not a date",
                                             "user_id": USER}, BASE - 4, BASE - 4, 1))  # fmt: skip
    (window,) = read_windows(StreamRead(fake, CallScope()), "9")
    assert [e.log_id for e in window.events] == ["90001"]
    assert [(m.owner, m.reason[:7]) for m in window.malformed] == [(USER, "date 'n")]
    assert window.to == "90002"


# -- the mode ------------------------------------------------------------------------------------


def test_auto_takes_the_clearly_cheaper_mode_and_stays_put_otherwise() -> None:
    # 1,000 users, a tenant of 50,000 events a day, a run every 5 minutes
    state = TenantState(rate_eps=50_000 / 86_400, period_s=300)
    assert state.costs(1000).stream == 2.0
    chosen = decide("auto", state, users=1000, pending=0, now_ms=BASE)
    assert chosen.mode == STREAM
    assert "1000 calls a run per user, 2 reading the tenant stream" in chosen.reason
    # 3 users on a tenant of 2 million a day: per user
    busy = TenantState(mode=STREAM, rate_eps=2_000_000 / 86_400, period_s=300, per_user_calls=3)
    assert decide("auto", busy, users=3, pending=0, now_ms=BASE).mode == PER_USER
    # close costs: no switch either way
    close = TenantState(rate_eps=9 * 100 / 300, period_s=300, per_user_calls=11)
    assert decide("auto", close, users=11, pending=0, now_ms=BASE).mode == PER_USER


def test_no_switch_while_events_are_pending_and_no_stream_without_read_logs() -> None:
    state = TenantState(rate_eps=0.1, period_s=300)
    held = decide("auto", state, users=100, pending=2, now_ms=BASE)
    assert held.mode == PER_USER
    assert "switch postponed: 2 users have pending events" in held.reason
    refused = TenantState(mode=STREAM, refused="HTTP 403: Insufficient scope", refused_at_ms=BASE)
    chosen = decide("stream", refused, users=100, pending=5, now_ms=BASE + 1000)
    assert chosen.mode == PER_USER
    assert "Insufficient scope" in chosen.reason
    # an hour later the stream is tried again
    assert decide("stream", refused, users=1, pending=0, now_ms=BASE + 3_600_000).mode == STREAM


def test_per_user_cost_counts_a_call_per_user_and_one_per_further_hundred() -> None:
    assert per_user_calls({"a": 0, "b": 100, "c": 101, "d": 250}, users=6) == 6 + 0 + 1 + 2


def test_the_per_user_mode_samples_the_tenant_rate_with_one_read() -> None:
    # GIVEN a tenant with 30 events in the 10 minutes before now
    fake = FakeAuth0(now_ms=BASE + 600_000)
    for i in range(30):
        fake.add({"log_id": f"9{i:04d}", "date": iso_ms(BASE + i * 20_000), "user_id": USER})
    # WHEN the rate is sampled (a start search, then one checkpoint read)
    state = sample_rate(fake, TenantState(), now_ms=fake.now_ms, scope=CallScope())
    # THEN it is 30 events over 600 s, and the next sample goes on from the last id
    assert state.rate_eps == pytest.approx(30 / 600)
    assert (state.probe_position, state.probe_since_ms) == ("90029", fake.now_ms)
    assert fake.calls == 2
    # AND without read:logs, the refusal is remembered with Auth0's words
    refused = sample_rate(FakeAuth0(search_allowed=False), TenantState(), now_ms=BASE,
                          scope=CallScope())  # fmt: skip
    assert refused.refused is not None and "read:logs" in refused.refused


def test_the_tenant_state_survives_storage_and_reads_what_a_newer_release_let_it_read() -> None:
    state = TenantState(mode=STREAM, epoch=3, position="9001", complete_reads=((BASE, "9001"),))
    assert TenantState.from_state(state.to_state()) == state
    # A newer release's item that it says older releases can read (`v` = 1): read as this
    # release's, and written back in this release's version, without what it does not know
    # (the newer release's upgrade step restores that: codec.py)
    stored: dict[str, Any] = {**state.to_state(), "written_v": 7, "added_later": {"x": 1}}
    again = TenantState.from_state(stored)
    assert again == state
    assert "added_later" not in again.to_state() and again.to_state()["v"] == 1
    assert "written_v" not in again.to_state()
    assert state.floor_until(StreamSeat(3, BASE - 1, "9000"), default="9999") == "9001"
    assert state.floor_until(StreamSeat(3, BASE + 1, "9000"), default="9999") == "9999"


def test_a_tenant_that_will_not_sort_on_log_id_starts_from_the_oldest_hundred() -> None:
    # GIVEN a tenant whose search refuses sort=log_id (Auth0 lists log_id as searchable, and sort
    # as taking searchable fields; this is the other possibility), and a late-ingested event
    # dated after T but with a smaller log_id than the oldest one dated at T
    class NoLogIdSort(FakeAuth0):
        def search_logs(self, query: str, **kwargs: Any) -> list[Any]:
            if kwargs["sort"].startswith("log_id"):
                raise Auth0RequestError("HTTP 400 from /api/v2/logs: bad sort", status=400)
            return super().search_logs(query, **kwargs)

    fake = NoLogIdSort(now_ms=BASE + 60_000)
    t = BASE + 30_000
    for log_id, date in [("90001", t - 10_000), ("90002", t + 3_000), ("90003", t)]:
        fake.add({"log_id": log_id, "date": iso_ms(date), "user_id": USER})
    # WHEN the stream starts from T THEN it starts before the smallest id among the oldest 100
    # dated T or later (90002: dated later, ingested first), not before the oldest one's
    assert start_position(fake, t, CallScope()) == "90001"
