"""The cursor by example: late events, ties, floors, gaps and its stored form."""

from __future__ import annotations

from dataclasses import replace

from log_forwarder import cursor as cursor_module
from log_forwarder.chunk import ReadBackSpan, UserSpan
from log_forwarder.cursor import Cursor, Outbox, Pending, ReadPosition, UserStatus
from log_forwarder.events import LogEvent, iso_ms
from log_forwarder.gaps import ReadFacts, expiry_gap, gaps_in

# Reads start after every event of these tests: no watermark is capped by them.
LATER = 4_000_000_000_000
OVERLAP = 600_000
T0 = 1_790_000_000_000


def ev(log_id: str, date_ms: int) -> LogEvent:
    return LogEvent(date_ms=date_ms, log_id=log_id, raw={"log_id": log_id, "date": iso_ms(date_ms)})


def test_new_events_come_out_in_date_then_id_order_and_repeats_are_dropped() -> None:
    events = [ev("b", T0 + 5), ev("a", T0 + 5), ev("c", T0 + 1), ev("a", T0 + 5)]
    selection = ReadPosition().select(events)
    assert [e.log_id for e in selection.new] == ["c", "a", "b"]
    assert selection.duplicates == 1


def test_a_late_event_inside_the_window_is_caught_and_counted() -> None:
    # GIVEN a cursor that forwarded events up to T0 + 10 min
    cursor = ReadPosition().advance(
        [ev("a", T0), ev("b", T0 + OVERLAP)], overlap_ms=OVERLAP, read_started_ms=LATER
    )
    assert cursor.floor_ms == T0
    # WHEN a re-read shows an event dated 5 minutes before the watermark, which was not there before
    selection = cursor.select([ev("b", T0 + OVERLAP), ev("late", T0 + OVERLAP - 300_000)])
    # THEN it is new, counted as late by 5 minutes, and the already forwarded one is dropped
    assert [e.log_id for e in selection.new] == ["late"]
    assert (selection.late, selection.max_lateness_ms, selection.duplicates) == (1, 300_000, 1)


def test_events_that_share_the_watermark_date_are_all_forwarded_once() -> None:
    cursor = ReadPosition().advance([ev("a", T0)], overlap_ms=0, read_started_ms=LATER)
    # With no overlap at all, the floor is the watermark itself, so a tie arriving later still counts
    selection = cursor.select([ev("a", T0), ev("b", T0), ev("older", T0 - 1)])
    assert [e.log_id for e in selection.new] == ["b"]
    assert selection.below_floor == 1


def test_start_from_floor_excludes_older_events() -> None:
    selection = ReadPosition(floor_ms=T0).select([ev("old", T0 - 1), ev("new", T0)])
    assert [e.log_id for e in selection.new] == ["new"]


def test_floor_never_moves_backwards() -> None:
    cursor = ReadPosition(floor_ms=T0 + 10 * OVERLAP).advance(
        [ev("a", T0 + 10 * OVERLAP)], overlap_ms=OVERLAP, read_started_ms=LATER
    )
    assert cursor.floor_ms == T0 + 10 * OVERLAP


DAY = 86_400_000


def forwarded(events: list[LogEvent], floor_ms: int | None = None) -> Cursor:
    """A cursor that forwarded `events` (every one written)."""
    position = ReadPosition(floor_ms=floor_ms).advance(
        events, overlap_ms=OVERLAP, read_started_ms=LATER
    )
    return Cursor(position, status=UserStatus(forwarded_total=len(events)))


def test_expiry_gap_needs_evidence() -> None:
    cursor = forwarded([ev("anchor", T0)])
    newer = [ev("n1", T0 + DAY), ev("n2", T0 + DAY + 1)]

    def gap(read: list[LogEvent], *, covers: bool = True, c: Cursor = cursor):  # type: ignore[no-untyped-def]
        found = gaps_in(
            ReadFacts(from_floor=covers), read, c, now_ms=T0 + 2 * DAY, min_retention_ms=DAY
        )
        assert len(found) <= 1
        return found[0] if found else None

    # The anchor is still retained: no gap
    assert gap([ev("anchor", T0), *newer]) is None
    # Something older than the anchor is retained: retention has not reached it, no gap
    assert gap([ev("x", T0 - 1), *newer]) is None
    # The read did not reach the oldest retained events: no evidence either way
    assert gap(newer, covers=False) is None
    # Everything retained is newer and the anchor is gone: a gap up to the oldest retained event
    found = gap(newer)
    assert found is not None and (found.from_ms, found.to_ms, found.reason) == (
        T0,
        T0 + DAY,
        "expired",
    )
    after = cursor.position.past(found.to_ms)
    assert after.floor_ms == found.to_ms and after.anchor is None
    assert cursor.status.with_gap(found).gaps_total == 1
    # A complete read verified everything up to the oldest retained event: nothing can be missing
    verified = cursor.position.after_complete_read(T0 + DAY + OVERLAP, overlap_ms=OVERLAP)
    assert verified.verified_ms == T0 + DAY
    assert gap(newer, c=replace(cursor, position=verified)) is None


def test_a_whole_history_that_expired_unread_gives_one_gap_up_to_the_retention_cutoff() -> None:
    cursor = forwarded([ev("anchor", T0)])
    now = T0 + 3 * DAY
    found = expiry_gap(cursor, [], now, DAY)
    assert found is not None and (found.from_ms, found.to_ms) == (T0, now - DAY)
    # After it, nothing is left to compare with, so the next idle read reports nothing again
    after = replace(cursor, position=cursor.position.past(found.to_ms))
    again = expiry_gap(after, [], now + 1, DAY)
    assert again is None


def test_an_anchor_that_ages_out_while_reads_continue_is_no_gap() -> None:
    # Read every 5 minutes: what was verified is recent, and newer than anything that can expire
    cursor = forwarded([ev("anchor", T0)])
    position = cursor.position.after_complete_read(T0 + 2 * DAY - 300_000, overlap_ms=OVERLAP)
    found = expiry_gap(replace(cursor, position=position), [], T0 + 2 * DAY, DAY)
    assert found is None


def test_state_round_trips_including_pending_intent() -> None:
    outbox = (
        Outbox()
        .with_pending(Pending("batch", frozenset({"c", "d"})))
        .with_pending(Pending("other", frozenset({"e"})))
    )
    cursor = replace(
        forwarded([ev("a", T0 + 1), ev("b", T0 + 2)], floor_ms=T0),
        outbox=outbox,
        status=UserStatus(backlog=True, forwarded_total=2),
    )
    assert Cursor.from_state(cursor.to_state()) == cursor
    assert cursor.summary()["pending_events"] == 3
    emptied = replace(cursor, outbox=outbox.with_pending(Pending("other", frozenset())))
    assert emptied.summary()["pending_events"] == 2
    assert cursor.summary()["watermark"] == iso_ms(T0 + 2)


def test_recent_set_is_capped_at_a_whole_date(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # GIVEN a tiny cap, and more events inside the window than it allows
    monkeypatch.setattr(cursor_module, "MAX_RECENT", 4)
    events = [ev(f"e{i}", T0 + i // 2) for i in range(10)]  # pairs of equal dates
    cursor = ReadPosition().advance(events, overlap_ms=OVERLAP, read_started_ms=LATER)
    # THEN the floor rises to a date whose events are all still remembered (no split tie)
    assert cursor.floor_ms == T0 + 3
    assert [log_id for _, log_id in cursor.recent] == ["e6", "e7", "e8", "e9"]
    assert cursor.at_capacity
    assert cursor.select(events).new == []


def test_last_gap_and_last_error_round_trip_and_a_complete_read_clears_the_error() -> None:
    # GIVEN a cursor that recorded a gap and then a failed run
    from log_forwarder.records import Gap

    gap = Gap(None, T0 + 5, "expired: retention")
    status = UserStatus().with_gap(gap).with_error("Auth0UnavailableError: HTTP 503", T0 + 9)
    cursor = Cursor(ReadPosition(floor_ms=T0).past(gap.to_ms), status=status)
    # THEN both survive the stored form and are readable in the summary
    assert Cursor.from_state(cursor.to_state()) == cursor
    summary = cursor.summary()
    assert (summary["last_gap_from"], summary["last_gap_to"]) == (None, iso_ms(T0 + 5))
    assert summary["last_gap_reason"] == "expired: retention"
    assert (summary["last_error"], summary["last_error_at"]) == (
        "Auth0UnavailableError: HTTP 503",
        iso_ms(T0 + 9),
    )
    # AND a later complete read clears the error (None removes the stored attribute) but not
    # the gap, which stays the last one recorded
    after = UserSpan(complete=True).end(cursor, read_started_ms=LATER, overlap_ms=OVERLAP)
    assert after.summary()["last_error"] is None
    assert after.summary()["last_error_at"] is None
    assert after.status.last_gap == (None, T0 + 5, "expired: retention")
    # AND a state written before these fields existed still reads
    old = {k: v for k, v in cursor.to_state().items() if not k.startswith("last_")}
    assert Cursor.from_state(old).status.last_error is None


def test_a_seat_survives_the_checkpoint_state_and_an_old_state_has_none() -> None:
    from log_forwarder.cursor import StreamSeat

    cursor = replace(Cursor.fresh(1000), seat=StreamSeat(epoch=2, joined_ms=5, pos="900123"))
    assert Cursor.from_state(cursor.to_state()) == cursor
    assert cursor.summary()["stream_position"] == "900123"
    old = cursor.to_state()
    del old["seat"]  # written before the stream existed
    assert Cursor.from_state(old).seat is None
    # leaving the stream: the seat goes, what the stream verified counts
    left = ReadBackSpan(verified_ms=7000).end(cursor, read_started_ms=LATER, overlap_ms=OVERLAP)
    assert left == replace(Cursor.fresh(1000), position=ReadPosition(1000, verified_ms=7000))
    assert left.position.verified_ms == 7000
