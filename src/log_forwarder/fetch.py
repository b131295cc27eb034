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

Chunks are yielded in forwarding order, each with the facts the read established (gaps.py turns
those into gaps); the forwarder delivers and commits each before asking for the next, so a long
backlog is committed in steps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

from .chunk import Chunk, UserSpan
from .events import LogEvent, Malformed, iso_ms, parse_page
from .exceptions import (
    Auth0NotFoundError,
    Auth0RequestError,
    Auth0ScopeError,
    OutOfTime,
)
from .gaps import ReadFacts
from .source import PER_PAGE_MAX, SEARCH_CAP, CallScope, LogSource

logger = logging.getLogger(__name__)

NEWEST_FIRST_PAGES = SEARCH_CAP // PER_PAGE_MAX
# Events per chunk: one delivery and one checkpoint commit, and one S3 object per day.
CHUNK_EVENTS = 1000


@dataclass(frozen=True, slots=True)
class UserRead:
    """One user's read in one run: where it starts, and what it may spend."""

    source: LogSource
    user_id: str
    floor_ms: int | None
    backlog: bool
    scope: CallScope
    out_of_time: Callable[[], bool] = lambda: False
    # Auth0 answered that the user does not exist on an earlier run.
    missing: bool = False


class SearchRefused(Exception):
    """Tenant search answered 403 or 400: the reason, for the logs and the gap records."""


def read_user(read: UserRead) -> Iterator[Chunk]:
    """The user's new events as chunks in forwarding order; stops early when out of time.

    A user Auth0 no longer knows (deleted) is read through search: its last events, its deletion
    among them, stay in the tenant log. Its own endpoint is still asked first on every run, so a
    user created again under the same id is noticed.
    """
    if read.backlog:
        try:
            yield from _search(read, lo_ms=read.floor_ms, hi_ms=None)
            return
        except SearchRefused as refused:
            logger.warning(
                "Tenant search refused; reading the user's own endpoint instead (1,000 events "
                "at most)",
                extra={"user_id": read.user_id, "reason": str(refused)},
            )
    try:
        yield from _newest_first(read)
    except Auth0NotFoundError:
        yield from _missing_user(read)


def _missing_user(read: UserRead) -> Iterator[Chunk]:
    if not read.missing:
        logger.warning(
            "Auth0 says the user does not exist (deleted, or a wrong id); reading its events "
            "through tenant search",
            extra={"user_id": read.user_id},
        )
    try:
        for chunk in _search(read, lo_ms=read.floor_ms, hi_ms=None):
            chunk.facts = replace(chunk.facts, user_exists=False)
            yield chunk
    except SearchRefused as refused:
        facts = ReadFacts(user_exists=False, search_refused=str(refused))
        yield Chunk([], "user_logs", UserSpan(complete=True), facts=facts)


def _newest_first(read: UserRead) -> Iterator[Chunk]:
    newest: list[LogEvent] = []
    malformed: list[Malformed] = []
    returned = 0
    reached_floor = False
    for page in range(NEWEST_FIRST_PAGES):
        if page and read.out_of_time():
            return  # nothing was delivered from these pages; the next run reads them again
        raw = read.source.user_logs(
            read.user_id, page=page, per_page=PER_PAGE_MAX, sort="date:-1", scope=read.scope
        )
        returned += len(raw)
        page_read = parse_page(raw)
        events = page_read.events
        malformed.extend(page_read.malformed)
        newest.extend(events)
        oldest = min((e.date_ms for e in events), default=None)
        # The end of the list, or a page reaching below the floor: the read holds the oldest
        # retained events at or above the floor.
        reached_floor = len(raw) < PER_PAGE_MAX or (
            read.floor_ms is not None and oldest is not None and oldest < read.floor_ms
        )
        if reached_floor:
            break

    facts = ReadFacts(from_floor=True, user_exists=True)
    if not reached_floor:
        # Ten full pages and the floor is still not reached: more than 1,000 events to forward.
        oldest_reached = min(e.date_ms for e in newest)
        try:
            yield from _search(read, lo_ms=read.floor_ms, hi_ms=oldest_reached)
            if read.out_of_time():
                # The search stopped short of the newest pages: they wait for the next run,
                # which continues the search (the cursor is in backlog mode).
                return
            facts = ReadFacts(user_exists=True)
        except SearchRefused as refused:
            facts = ReadFacts(
                search_refused=str(refused), unreachable_below_ms=oldest_reached, user_exists=True
            )
    yield Chunk(
        newest, "user_logs", UserSpan(complete=True), facts, returned=returned, malformed=malformed
    )


def search_query(user_id: str, lo_ms: int | None, hi_ms: int | None) -> str:
    escaped = user_id.replace("\\", "\\\\").replace('"', '\\"')
    query = f'user_id:"{escaped}"'
    if lo_ms is not None or hi_ms is not None:
        lo = iso_ms(lo_ms) if lo_ms is not None else "*"
        hi = iso_ms(hi_ms) if hi_ms is not None else "*"
        query += f" AND date:[{lo} TO {hi}]"
    return query


@dataclass(slots=True)
class _SearchWindow:
    """Where the next search query starts: its lower date bound, and the page within that date
    (above 0 only while more than a page of events share the date `lo_ms`)."""

    lo_ms: int | None
    hi_ms: int | None
    page: int = 0

    def move_past(self, events: Sequence[LogEvent]) -> int | None:
        """After a full page: the next window, or the millisecond no query can page past."""
        newest = max((e.date_ms for e in events), default=self.lo_ms)
        if newest != self.lo_ms:
            self.lo_ms, self.page = newest, 0
            return None
        if self.page + 1 < NEWEST_FIRST_PAGES:
            self.page += 1  # a full page of one date: page within it instead of moving on
            return None
        # 1,000 events share one millisecond: whether more exist at that instant cannot be known.
        assert self.lo_ms is not None
        saturated = self.lo_ms
        self.lo_ms, self.page = saturated + 1, 0
        return saturated

    @property
    def exhausted(self) -> bool:
        return self.hi_ms is not None and self.lo_ms is not None and self.lo_ms > self.hi_ms


def _search(read: UserRead, *, lo_ms: int | None, hi_ms: int | None) -> Iterator[Chunk]:
    """Oldest first from `lo_ms` up to `hi_ms` (inclusive; None = open), one query per page."""
    window = _SearchWindow(lo_ms, hi_ms)
    chunk = Chunk([], "logs_search", UserSpan(complete=False), ReadFacts(from_floor=True))
    while True:
        try:
            raw = read.source.search_logs(
                search_query(read.user_id, window.lo_ms, window.hi_ms),
                page=window.page,
                per_page=PER_PAGE_MAX,
                sort="date:1",
                scope=read.scope,
            )
        except (Auth0ScopeError, Auth0RequestError) as refusal:
            if chunk.returned or window.lo_ms != lo_ms or window.page:
                raise  # refused half-way through: not a matter of scope, let the run say so
            raise SearchRefused(str(refusal)) from refusal
        except OutOfTime:
            if not chunk.returned:
                raise
            # The pages read so far are delivered: at a slow tenant's pace, waiting for the
            # next page must not cost the ones already paid for.
            yield chunk
            raise
        chunk.returned += len(raw)
        page_read = parse_page(raw)
        events = page_read.events
        chunk.malformed.extend(page_read.malformed)
        chunk.events.extend(events)
        done = len(raw) < PER_PAGE_MAX
        if not done:
            saturated = window.move_past(events)
            if saturated is not None:
                chunk.facts = ReadFacts(chunk.facts.from_floor, saturated_ms=saturated)
                done = window.exhausted
        # Checked after every page, not every chunk: at a slow tenant's pace a chunk of ten
        # pages can take longer than the whole margin.
        stop = not done and read.out_of_time()
        full = len(chunk.events) >= CHUNK_EVENTS
        if done or stop or full or chunk.facts.saturated_ms is not None:
            chunk.span = UserSpan(complete=done and hi_ms is None)
            yield chunk
            chunk = Chunk([], "logs_search", UserSpan(complete=False))
        if done or stop:
            return
