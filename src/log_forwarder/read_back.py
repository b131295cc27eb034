"""Pending events of a user leaving the stream, read back by log_id.

A batch planned from a stream window stays pending until a run delivers it. The stream returns
it again only while its checkpoint stands before it, and a per-user read only if it is dated at
or above the user's floor: a late event the stream proved new can be dated far below. So when a
seated user with such a batch is read per user (it left the watch list and came back, or the
tenant reads per user now), its pending events are read back by id (GET /api/v2/logs/{id}, up to
MAX_READ_BACK calls) and redelivered under their batch id before its seat goes. An id Auth0 no
longer has is given up by the per-user read that follows (AbandonedPendingEvents), as before.
"""

from __future__ import annotations

import logging

from .cursor import Cursor
from .events import parse_page
from .exceptions import Auth0NotFoundError
from .fetch import Chunk, StreamSpan
from .source import CallScope, LogSource

logger = logging.getLogger(__name__)

READ_BACK_SOURCE = "log_by_id"
# A call each: more pending events than this past a seat (a window's batch is rarely near it)
# are left to the per-user read, with a warning.
MAX_READ_BACK = 100


def pending_past_seat(cursor: Cursor) -> list[str]:
    """The pending log_ids a stream window returned after the user's seat."""
    if cursor.seat is None:
        return []
    pos = cursor.seat.pos
    return sorted({log_id for p in cursor.pending for log_id in p.log_ids if log_id > pos})


def read_back(source: LogSource, cursor: Cursor, scope: CallScope) -> Chunk | None:
    """A chunk of the user's pending events past its seat, as Auth0 still has them (None: there
    are none). Shaped as a stream span that ends at the seat: the planner redelivers them under
    their batch ids and the seat does not move."""
    log_ids = pending_past_seat(cursor)
    if not log_ids or cursor.seat is None:
        return None
    if len(log_ids) > MAX_READ_BACK:
        logger.warning(
            "Too many pending events to read back; the rest are left to the per-user read",
            extra={"pending": len(log_ids), "read_back": MAX_READ_BACK},
        )
    raw = []
    for log_id in log_ids[:MAX_READ_BACK]:
        try:
            raw.append(source.log_event(log_id, scope=scope))
        except Auth0NotFoundError:
            continue  # gone from Auth0: the per-user read gives it up
    page = parse_page(raw)
    pos = cursor.seat.pos
    return Chunk(
        page.events,
        READ_BACK_SOURCE,
        complete=False,
        returned=len(raw),
        malformed=page.malformed,
        stream=StreamSpan(pos, pos, pos),
    )
