"""Builders for cursors in a given state, for the tests of the pure core."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from log_forwarder.cursor import Cursor, Pending, StreamSeat
from log_forwarder.events import LogEvent


def forwarded(
    cursor: Cursor, events: Sequence[LogEvent], *, overlap_ms: int, read_started_ms: int
) -> Cursor:
    """`cursor` after `events` were delivered and written, as a committed batch leaves it."""
    position = cursor.position.advance(
        events, overlap_ms=overlap_ms, read_started_ms=read_started_ms
    )
    return replace(cursor, position=position, status=cursor.status.counted(len(events)))


def with_pending(cursor: Cursor, *pending: Pending) -> Cursor:
    outbox = cursor.outbox
    for intent in pending:
        outbox = outbox.with_pending(intent)
    return replace(cursor, outbox=outbox)


def seated(cursor: Cursor, seat: StreamSeat | None) -> Cursor:
    return replace(cursor, seat=seat)


def with_backlog(cursor: Cursor, backlog: bool = True) -> Cursor:
    return replace(cursor, status=replace(cursor.status, backlog=backlog))
