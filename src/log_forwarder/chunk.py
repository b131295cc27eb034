"""A chunk of one user's events, and the rules of the read that returned it.

Every read hands the planner chunks; what differs between reads is carried by the chunk's span,
so the planner has no branch on where a chunk came from:

    select(cursor, events)   which of the events are new, in forwarding order
    confirms                 whether what the chunk delivered joins the read position (a read)
    gone(left)               which pending log_ids this chunk proves Auth0 no longer returns
    end(cursor)              the cursor once the chunk is delivered (where the next read starts)

- `UserSpan`: the user's own endpoint or tenant search, read from the cursor's floor (fetch.py).
- `StreamSpan`: the user's events in a window of the tenant stream (stream_run.py).
- `ReadBackSpan`: pending events read back by log_id before a seat is given up (read_back.py).
- `RealtimeSpan`: events Auth0's log stream pushed through EventBridge (realtime.py).
- `FactsSpan`: no events, only facts learnt beside the reads (a user lookup: user_lookup.py).

Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Protocol

from .cursor import Cursor, Selection
from .events import LogEvent, Malformed
from .gaps import ReadFacts


class Span(Protocol):
    @property
    def gone_reason(self) -> str:
        """Why the pending events `gone` names are gone: the reason of their gap record."""
        ...

    @property
    def confirms(self) -> bool:
        """A read of Auth0: what the chunk delivered, and what it found delivered ahead of it
        (pushed), joins the read position (ReadPosition.advance). A push leaves its events
        ahead of the reads."""
        ...

    def select(self, cursor: Cursor, events: Iterable[LogEvent]) -> Selection: ...

    def gone(self, left: frozenset[str]) -> frozenset[str]: ...

    def end(self, cursor: Cursor, *, read_started_ms: int, overlap_ms: int) -> Cursor: ...


@dataclass(frozen=True, slots=True)
class UserSpan:
    """A read of the user's events from the cursor's floor; `complete`: it reached the newest."""

    complete: bool
    gone_reason: str = "a complete read of the user's log no longer returns them"
    confirms: bool = True

    def select(self, cursor: Cursor, events: Iterable[LogEvent]) -> Selection:
        return cursor.position.select(events)

    def gone(self, left: frozenset[str]) -> frozenset[str]:
        return left if self.complete else frozenset()

    def end(self, cursor: Cursor, *, read_started_ms: int, overlap_ms: int) -> Cursor:
        status = replace(cursor.status, backlog=not self.complete)
        if not self.complete:
            return replace(cursor, status=status)
        position = cursor.position.after_complete_read(read_started_ms, overlap_ms=overlap_ms)
        status = status.without_error().read_at(read_started_ms)
        return replace(cursor, position=position, status=status)


@dataclass(frozen=True, slots=True)
class StreamSpan:
    """The user's events in a window of the tenant stream: every one the stream returned with a
    log_id in (after, to]. `floor_until`: up to which log_id the cursor's floor still drops
    events (see cursor.StreamSeat)."""

    after: str
    to: str
    floor_until: str
    gone_reason: str = "the tenant stream read past their log_ids without returning them"
    confirms: bool = True

    def select(self, cursor: Cursor, events: Iterable[LogEvent]) -> Selection:
        """Dedupe is by log_id: held by the seat (a window read again, or delivered from one),
        or remembered in `recent` (forwarded by a per-user read). The floor drops an event only
        up to `floor_until`: past it an event dated below the floor is a late one nobody
        forwarded, and it is forwarded."""
        seat = cursor.seat
        assert seat is not None, "a stream window for a user with no seat"
        position = cursor.position
        known, ahead = position.known_ids(), position.ahead_ids()
        new: dict[str, LogEvent] = {}
        confirmed: dict[str, LogEvent] = {}
        duplicates = below_floor = 0
        for event in events:
            if event.log_id in ahead:
                confirmed[event.log_id] = event
            elif seat.holds(event.log_id) or event.log_id in known or event.log_id in new:
                duplicates += 1
            elif position.below_floor(event) and event.log_id <= self.floor_until:
                below_floor += 1
            else:
                new[event.log_id] = event
        return position.ordered(new.values(), duplicates, below_floor, confirmed.values())

    def gone(self, left: frozenset[str]) -> frozenset[str]:
        """Those whose log_id lies in the span the window covered (one below it is not this
        window's to judge: stream_run reads such a user per user)."""
        return frozenset(log_id for log_id in left if self.after < log_id <= self.to)

    def end(self, cursor: Cursor, *, read_started_ms: int, overlap_ms: int) -> Cursor:
        assert cursor.seat is not None
        return replace(cursor, seat=cursor.seat.moved_to(self.to))


@dataclass(frozen=True, slots=True)
class ReadBackSpan:
    """A seated user's pending events past its seat, read back by log_id (read_back.py), before
    the seat is given up. `not_found`: the ids Auth0 answered 404 for (gone). `verified_ms`:
    what the stream verified for this user, which counts as verified once the seat goes."""

    not_found: frozenset[str] = frozenset()
    verified_ms: int | None = None
    # Every pending id past the seat was asked for (or MAX_READ_BACK were); False when the
    # run's time ran out first: the seat stays, and the next run asks for the rest.
    asked_all: bool = True
    gone_reason: str = (
        "GET /api/v2/logs/{id} answers 404: Auth0 no longer has them; an interrupted run left "
        "them pending, so they may or may not have reached the destinations"
    )
    confirms: bool = True

    def select(self, cursor: Cursor, events: Iterable[LogEvent]) -> Selection:
        # The stream proved them new by log_id, whatever their date: the floor does not apply.
        seat = cursor.seat
        position = cursor.position
        known, ahead = position.known_ids(), position.ahead_ids()
        new = {
            e.log_id: e
            for e in events
            if not (seat is not None and seat.holds(e.log_id)) and e.log_id not in known
        }
        return position.ordered(new.values(), 0, 0, [e for e in events if e.log_id in ahead])

    def gone(self, left: frozenset[str]) -> frozenset[str]:
        return left & self.not_found

    def end(self, cursor: Cursor, *, read_started_ms: int, overlap_ms: int) -> Cursor:
        """Read per user from now on: the seat goes (once every pending id was asked for)."""
        if not self.asked_all:
            return cursor
        return replace(cursor, seat=None, position=cursor.position.verified_until(self.verified_ms))


@dataclass(frozen=True, slots=True)
class RealtimeSpan:
    """Events Auth0's log stream pushed (realtime.py): at least once, in any order, some never.

    New is what nothing delivered yet (no read, no earlier push, no seat) and what a read would
    still return (at or above the floor: below it, a read may have delivered it and forgotten
    it). A pending batch (a push or a run that failed mid-delivery) goes first, as on a read:
    the planner redelivers what the chunk holds of it. A push holding only part of a pending
    batch takes nothing (`waits_for_pending`): the rest would follow events its rules had not
    seen yet (a push after it would make its findings anew, under other ids); its messages go
    back to the queue, and a read or a later push redelivers the batch. What it delivers is
    recorded in the pushed-events table (pushed.py, ReadPosition.pushed), not in the checkpoint
    item, however long the burst: the floor and the watermark stay, so the reads that follow
    still find whatever the stream dropped. It judges nothing gone and ends nothing: the reads
    do both.
    """

    gone_reason: str = "never: the real-time path gives nothing up"
    confirms: bool = False

    def select(self, cursor: Cursor, events: Iterable[LogEvent]) -> Selection:
        position, seat = cursor.position, cursor.seat
        known = position.known_ids()
        new: dict[str, LogEvent] = {}
        duplicates = below_floor = 0
        for event in events:
            log_id = event.log_id
            if log_id in known or log_id in new or (seat is not None and seat.holds(log_id)):
                duplicates += 1
            elif position.below_floor(event):
                below_floor += 1
            else:
                new[log_id] = event
        if waits_for_pending(cursor, new):
            return Selection([])
        return position.ordered(new.values(), duplicates, below_floor)

    def gone(self, left: frozenset[str]) -> frozenset[str]:
        return frozenset()

    def end(self, cursor: Cursor, *, read_started_ms: int, overlap_ms: int) -> Cursor:
        return cursor


def waits_for_pending(cursor: Cursor, pushed: Iterable[str]) -> bool:
    """Whether a push of these log_ids must leave the user to a later delivery: it holds only
    part of a pending batch (or none of it), which must be redelivered whole before anything
    newer."""
    ids = set(pushed)
    return any(not pending.log_ids <= ids for pending in cursor.outbox.pending)


@dataclass(frozen=True, slots=True)
class FactsSpan:
    """No events: facts learnt beside the reads (what GET /api/v2/users/{id} said), which the
    planner records like a read's. The read position, the seat and any pending batch stay."""

    gone_reason: str = "never: nothing was read"
    confirms: bool = False

    def select(self, cursor: Cursor, events: Iterable[LogEvent]) -> Selection:
        return Selection([])

    def gone(self, left: frozenset[str]) -> frozenset[str]:
        return frozenset()

    def end(self, cursor: Cursor, *, read_started_ms: int, overlap_ms: int) -> Cursor:
        return cursor


@dataclass(slots=True)
class Chunk:
    """Events one read returned, with where they came from and what the read saw."""

    events: list[LogEvent]
    # Which endpoint returned them: "user_logs", "logs_search", "logs_stream" or "log_by_id".
    source: str
    span: Span
    facts: ReadFacts = field(default_factory=ReadFacts)
    returned: int = 0  # entries Auth0 returned, malformed ones included
    malformed: list[Malformed] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """A per-user read reached the newest event with this chunk."""
        return isinstance(self.span, UserSpan) and self.span.complete
