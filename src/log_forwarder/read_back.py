"""A seated user leaving the stream: its pending events read back by log_id, then its seat goes.

A batch planned from a stream window stays pending until a run delivers it. The stream returns
it again only while its checkpoint stands before it, and a per-user read only if it is dated at
or above the user's floor: a late event the stream proved new can be dated far below. So when a
seated user with such a batch is read per user (it left the watch list and came back, or the
tenant reads per user now), its pending events are read back by id (GET /api/v2/logs/{id}, up to
MAX_READ_BACK calls) and redelivered under their batch id in the same chunk that ends the seat.

An id Auth0 answers 404 for is gone: it is given up at once, with a gap record naming it
(chunk.ReadBackSpan), and never asked for again. Ids past MAX_READ_BACK are left to the per-user
read that follows, which gives up what a complete read does not return.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .chunk import Chunk, ReadBackSpan
from .cursor import Cursor
from .events import parse_page
from .exceptions import Auth0NotFoundError, OutOfTime
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
    return sorted(log_id for log_id in cursor.outbox.log_ids if log_id > pos)


def read_back(
    source: LogSource,
    cursor: Cursor,
    scope: CallScope,
    *,
    verified_ms: int | None,
    out_of_time: Callable[[], bool] = lambda: False,
) -> Chunk:
    """The chunk that ends the user's seat: its pending events past the seat as Auth0 still has
    them, and the ids it no longer has. `verified_ms`: what the stream verified for this user
    (None when it moved without it). Asks nothing more once `out_of_time`: what was learned is
    delivered, and the seat stays for the next run to ask for the rest."""
    log_ids = pending_past_seat(cursor)
    if len(log_ids) > MAX_READ_BACK:
        logger.warning(
            "Too many pending events to read back; the rest are left to the per-user read",
            extra={"pending": len(log_ids), "read_back": MAX_READ_BACK},
        )
    raw = []
    not_found: set[str] = set()
    asked = 0
    for log_id in log_ids[:MAX_READ_BACK]:
        if out_of_time():
            break
        try:
            raw.append(source.log_event(log_id, scope=scope))
        except Auth0NotFoundError:
            not_found.add(log_id)
        except OutOfTime:
            # A wait (the pacer's, a 429's) or a call would outlast the run: what was read is
            # still delivered, and the seat stays for the next run to ask for the rest.
            break
        asked += 1
    page = parse_page(raw)
    return Chunk(
        page.events,
        READ_BACK_SOURCE,
        ReadBackSpan(frozenset(not_found), verified_ms, asked == min(len(log_ids), MAX_READ_BACK)),
        returned=len(raw),
        malformed=page.malformed,
    )
