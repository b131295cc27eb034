"""Which Auth0 calls reach a user's new events in the fewest requests.

Newest first, per user. `GET /users/{id}/logs?sort=date:-1` returns the newest events first, so one
page usually holds everything since the cursor's floor: an idle user costs one call, and a user
with n new events about ceil((n + overlap) / 100). Ascending order would have to page through the
whole retained history every run, and cannot reach past the first 1,000 events at all.

Tenant-wide search past the cap. When ten newest-first pages (the 1,000-result cap) still do not
reach the floor, the older part is read with `GET /logs?q=user_id:"…" AND date:[lo TO hi]`,
oldest first, one page per query: each query starts at the date of the last event returned
(inclusive, so ties at the edge are re-read and dropped by log_id), which never pages past the cap
and never depends on how Auth0 orders equal dates across pages. A run that stops in the middle
leaves the cursor in backlog mode, and the next run continues with search directly.

Chunks are yielded in forwarding order; the forwarder delivers and commits each before asking for
the next, so a long backlog is committed in steps.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .auth0_client import PER_PAGE_MAX, SEARCH_CAP, Auth0Client
from .cursor import Cursor, Gap, LogEvent, MalformedEvent, iso_ms, parse_event
from .exceptions import Auth0ScopeError

logger = logging.getLogger(__name__)

NEWEST_FIRST_PAGES = SEARCH_CAP // PER_PAGE_MAX
DAY_MS = 86_400_000
# Events per chunk: one delivery and one checkpoint commit, and one S3 object per day.
CHUNK_EVENTS = 1000


@dataclass(slots=True)
class Chunk:
    events: list[LogEvent]
    source: str
    complete: bool  # nothing newer remains to be read in this run
    gap: Gap | None = None
    returned: int = 0  # events Auth0 returned, malformed ones included
    rejected: list[str] = field(default_factory=list)  # why malformed events were skipped


def read_user(
    client: Auth0Client,
    user_id: str,
    cursor: Cursor,
    *,
    now_ms: int,
    min_retention_ms: int = DAY_MS,
    out_of_time: Callable[[], bool] = lambda: False,
) -> Iterator[Chunk]:
    """The user's new events as chunks in forwarding order; stops early when out of time."""
    detect_gap = functools.partial(
        cursor.detect_expiry_gap,
        user_id,
        covers_floor=True,
        now_ms=now_ms,
        min_retention_ms=min_retention_ms,
    )
    search = functools.partial(
        _search, client, user_id, detect_gap=detect_gap, out_of_time=out_of_time
    )
    if cursor.backlog:
        try:
            yield from search(lo_ms=cursor.floor_ms, hi_ms=None)
            return
        except Auth0ScopeError:
            logger.warning(
                "Search needs the read:logs scope; reading newest first (1,000 events at most)",
                extra={"user_id": user_id},
            )

    newest: list[LogEvent] = []
    rejected: list[str] = []
    returned = 0
    reached_end = covered = False
    for page in range(NEWEST_FIRST_PAGES):
        if page and out_of_time():
            return  # nothing was delivered from these pages; the next run reads them again
        raw = client.user_logs(user_id, page=page, per_page=PER_PAGE_MAX, sort="date:-1")
        returned += len(raw)
        events = _parse(raw, rejected)
        newest.extend(events)
        if len(raw) < PER_PAGE_MAX:
            reached_end = True
            break
        oldest = min((e.date_ms for e in events), default=None)
        if cursor.floor_ms is not None and oldest is not None and oldest < cursor.floor_ms:
            covered = True
            break

    if reached_end or covered:
        # The read holds the oldest retained events at or above the floor: evidence for expiry.
        gap = detect_gap(newest)
        yield Chunk(
            newest, "user_logs", complete=True, gap=gap, returned=returned, rejected=rejected
        )
        return

    # Ten full pages and the floor is still not reached: more than 1,000 events to forward.
    oldest_reached = min(e.date_ms for e in newest)
    try:
        yield from search(lo_ms=cursor.floor_ms, hi_ms=oldest_reached)
        if out_of_time():
            # The search stopped short of the newest pages: they wait for the next run, which
            # continues the search (the cursor is in backlog mode) instead of skipping ahead.
            return
    except Auth0ScopeError:
        # Without search only the newest 1,000 can be read. If they reach back to the newest event
        # already forwarded, nothing new is out of reach; otherwise the span between is a gap.
        gap = None
        if cursor.watermark_ms is None or oldest_reached > cursor.watermark_ms:
            gap = Gap(
                user_id=user_id,
                from_ms=cursor.watermark_ms if cursor.watermark_ms is not None else cursor.floor_ms,
                to_ms=oldest_reached,
                reason="unreachable: over 1,000 new events and no read:logs scope to search",
            )
        yield Chunk(
            newest, "user_logs", complete=True, gap=gap, returned=returned, rejected=rejected
        )
        return
    yield Chunk(newest, "user_logs", complete=True, returned=returned, rejected=rejected)


def search_query(user_id: str, lo_ms: int | None, hi_ms: int | None) -> str:
    escaped = user_id.replace("\\", "\\\\").replace('"', '\\"')
    query = f'user_id:"{escaped}"'
    if lo_ms is not None or hi_ms is not None:
        lo = iso_ms(lo_ms) if lo_ms is not None else "*"
        hi = iso_ms(hi_ms) if hi_ms is not None else "*"
        query += f" AND date:[{lo} TO {hi}]"
    return query


def _search(
    client: Auth0Client,
    user_id: str,
    *,
    lo_ms: int | None,
    hi_ms: int | None,
    detect_gap: Callable[[Sequence[LogEvent]], Gap | None],
    out_of_time: Callable[[], bool],
) -> Iterator[Chunk]:
    """Oldest first from `lo_ms` up to `hi_ms` (inclusive; None = open), one query per page."""
    chunk: list[LogEvent] = []
    rejected: list[str] = []
    returned = 0
    gap: Gap | None = None
    first = True
    page = 0  # only above 0 while more than a page of events share the date `lo_ms`
    while True:
        query = search_query(user_id, lo_ms, hi_ms)
        raw = client.search_logs(query, page=page, per_page=PER_PAGE_MAX, sort="date:1")
        returned += len(raw)
        events = _parse(raw, rejected)
        if first:
            first = False
            gap = detect_gap(events)
        chunk.extend(events)
        done = len(raw) < PER_PAGE_MAX
        if not done:
            newest = max((e.date_ms for e in events), default=lo_ms)
            if newest != lo_ms:
                lo_ms, page = newest, 0
            elif page + 1 < NEWEST_FIRST_PAGES:
                page += 1  # a full page of one date: page within it instead of moving on
            else:
                # 1,000 events share one millisecond: no Auth0 query pages past them, so whether
                # more exist at that instant cannot be known. Say so, and move past it.
                assert lo_ms is not None
                gap = Gap(
                    user_id,
                    from_ms=lo_ms - 1,
                    to_ms=lo_ms + 1,
                    reason="possible: 1,000 events share one millisecond; more cannot be read",
                )
                lo_ms, page = lo_ms + 1, 0
                done = hi_ms is not None and lo_ms > hi_ms
        # Checked after every page, not every chunk: at a slow tenant's pace a chunk of ten
        # pages can take longer than the whole margin.
        stop = not done and out_of_time()
        if done or stop or len(chunk) >= CHUNK_EVENTS or gap is not None:
            complete = done and hi_ms is None
            yield Chunk(
                chunk,
                "logs_search",
                complete=complete,
                gap=gap,
                returned=returned,
                rejected=rejected,
            )
            chunk, rejected, returned, gap = [], [], 0, None
        if done or stop:
            return


def _parse(raw: Sequence[Any], rejected: list[str]) -> list[LogEvent]:
    events = []
    for item in raw:
        try:
            events.append(parse_event(item))
        except MalformedEvent as exc:
            rejected.append(str(exc))
    return events
