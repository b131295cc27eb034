"""The tenant's log by checkpoint: where it starts, and the windows it is read in.

`GET /api/v2/logs?from=<log_id>&take=100` returns the events "newer than a given log_id", ordered
by log_id "rather than event generation time, to prevent skipping past records due to Auth0
system delays", with no 1,000-result cap (Auth0 docs, "Retrieve Log Events Using the Management
API"). An event that becomes visible late therefore gets a log_id after everything visible before
it: reading on from the last log_id read misses nothing, late events included, and never returns
an event twice. Every other parameter is ignored in this mode, `q` included (node-auth0#956), so
the watched users' events are picked out here, on the client.

Where to start from a date. Auth0 does not document what a log_id is made of. Elastic's Auth0
integration builds its first `from` out of a timestamp ("900" + YYYYMMDDhhmmss + zeros), and
all 150 real ids in the shared sample are "900" + a UTC second + digits, that second lying from
0.8 s before (sub-second truncation) to 5.1 s after the event's date: an ingestion time, not a
documented contract. So the start is found by search instead, with documented features only:
log_id is a searchable field, and a searchable field may be sorted on (docs "Log Search Query
Syntax"). The smallest log_id of the events dated at or after the date, less one, is a `from`
before every one of them, whatever the ties at that date and however late each was ingested.
If the tenant refuses to sort on log_id, the smallest log_id among the 100 oldest events at or
after the date stands in for it (sound as long as one of them was ingested on time).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .events import LogEvent, Malformed, iso_ms, parse_page
from .exceptions import (
    Auth0MalformedResponse,
    Auth0NotFoundError,
    Auth0RequestError,
    Auth0ScopeError,
    ForwarderError,
)
from .fetch import CHUNK_EVENTS
from .read_mode import TAKE, TenantState
from .source import CallScope, LogSource

logger = logging.getLogger(__name__)

STREAM_SOURCE = "logs_stream"
# A window: the events delivered and committed together, per user, before the stream
# checkpoint moves (as a per-user chunk holds at most CHUNK_EVENTS).
WINDOW_EVENTS = CHUNK_EVENTS
# How far back the first sample of the tenant's event rate reaches.
SAMPLE_SINCE_MS = 10 * 60_000


class StreamRefused(Exception):
    """Auth0 refused the tenant log or search (no read:logs scope): why, for logs and reports."""


class CheckpointUnknown(Exception):
    """Auth0 refused the stream checkpoint as a `from` (an id it no longer holds). Auth0
    documents `from` as a bound, so this is the undocumented other reading, handled anyway."""


@dataclass(slots=True)
class Window:
    """Consecutive pages of the tenant log: every entry with a log_id in (after, to]."""

    after: str
    to: str
    events: list[LogEvent] = field(default_factory=list)
    malformed: list[Malformed] = field(default_factory=list)  # entries that are not events
    returned: int = 0
    complete: bool = False  # the last page was not full: this is the end of the log, for now

    def by_user(self, users: Callable[[str], bool]) -> dict[str, list[LogEvent]]:
        """The events of the users `users` accepts, grouped by user."""
        grouped: dict[str, list[LogEvent]] = {}
        for event in self.events:
            user_id = event.user_id
            if user_id is not None and users(user_id):
                grouped.setdefault(user_id, []).append(event)
        return grouped


@dataclass(frozen=True, slots=True)
class StreamRead:
    """What reading the tenant stream needs: the source, the call scope, and when to stop."""

    source: LogSource
    scope: CallScope
    out_of_time: Callable[[], bool] = lambda: False


def read_windows(read: StreamRead, after: str) -> Iterator[Window]:
    """The log after `after`, one window at a time, up to its end or until time runs out."""
    window = Window(after, after)
    first = True
    while True:
        raw = _page(read, window.to, first=first)
        first = False
        window.returned += len(raw)
        window.to = _last_id(raw, window.to)
        page = parse_page(raw)
        window.events.extend(page.events)
        window.malformed.extend(page.malformed)
        done = len(raw) < TAKE
        # Checked after every page: at a slow tenant's pace ten pages outlast the margin.
        stop = not done and read.out_of_time()
        if done or stop or len(window.events) >= WINDOW_EVENTS:
            window.complete = done
            yield window
            if done or stop:
                return
            window = Window(window.to, window.to)


def _page(read: StreamRead, after: str, *, first: bool) -> list[Any]:
    try:
        return read.source.tenant_logs(after, take=TAKE, scope=read.scope)
    except Auth0ScopeError as refused:
        raise StreamRefused(str(refused)) from refused
    except (Auth0NotFoundError, Auth0RequestError) as refused:
        if first:
            raise CheckpointUnknown(str(refused)) from refused
        raise


def _last_id(raw: Sequence[Any], previous: str) -> str:
    ids = _ids(raw)
    if not ids:
        if len(raw) >= TAKE:
            # A full page with no id to read on from: the stream cannot move past it.
            raise Auth0MalformedResponse(f"a page of {len(raw)} log entries holds no log_id")
        return previous
    return max(previous, *ids)


def _is_id(value: object) -> bool:
    return isinstance(value, str) and bool(value)


# -- where the stream starts -----------------------------------------------------------------


def start_position(
    source: LogSource, since_ms: int | None, scope: CallScope, *, held_margin_ms: int | None = None
) -> str | None:
    """A log_id before every retained event dated `since_ms` or later (None: before every
    retained event). When none is dated that late yet, the newest log_id there is: whatever
    comes next is after it. None when the tenant's log is empty.

    `held_margin_ms`: for a server that refuses a `from` it does not hold (not what Auth0
    documents), an id it holds: the smallest among the 100 newest events dated at least that
    margin before `since_ms`. Sound as long as one of them was ingested within the margin.
    """
    dated = "date:[* TO *]" if since_ms is None else f"date:[{iso_ms(since_ms)} TO *]"
    try:
        if held_margin_ms is not None and since_ms is not None:
            until = f"date:[* TO {iso_ms(since_ms - held_margin_ms)}]"
            held = _ids(_search(source, until, "date:-1", TAKE, scope))
            if held:
                return min(held)
        oldest = _smallest_id(source, dated, scope)
        if oldest is not None:
            return before(oldest)
        newest = _ids(_search(source, "date:[* TO *]", "log_id:-1", 1, scope))
        return max(newest) if newest else None
    except Auth0ScopeError as refused:
        raise StreamRefused(str(refused)) from refused


def _smallest_id(source: LogSource, query: str, scope: CallScope) -> str | None:
    try:
        ids = _ids(_search(source, query, "log_id:1", 1, scope))
    except Auth0RequestError as refused:
        logger.warning(
            "Tenant search refused to sort on log_id; taking the smallest log_id among the "
            "100 oldest events instead",
            extra={"reason": str(refused)},
        )
        ids = _ids(_search(source, query, "date:1", TAKE, scope))
    return min(ids) if ids else None


def _search(source: LogSource, query: str, sort: str, size: int, scope: CallScope) -> list[Any]:
    return source.search_logs(query, page=0, per_page=size, sort=sort, scope=scope)


def _ids(raw: Sequence[Any]) -> list[str]:
    return [
        str(item["log_id"]) for item in raw if isinstance(item, dict) and _is_id(item.get("log_id"))
    ]


def before(log_id: str) -> str:
    """A `from` that returns `log_id` itself: the id one below it. Every id Auth0 was seen to
    issue is 56 decimal digits; for another shape, its last character one lower (a bound at or
    below the true predecessor: at worst a few more events are read, and dropped as repeats)."""
    if log_id.isdigit() and int(log_id) > 0:
        return str(int(log_id) - 1).rjust(len(log_id), "0")
    return log_id[:-1] + chr(max(ord(log_id[-1]) - 1, 0))


# -- the per-user mode's sample of the tenant's rate -------------------------------------------


def sample_rate(
    source: LogSource, state: TenantState, *, now_ms: int, scope: CallScope
) -> TenantState:
    """One checkpoint read (two the first time) measuring the tenant's events per second, which
    READ_MODE=auto needs while it reads per user: the read goes on from where the last sample
    stopped, so a page that is not full counts every event since then. A refusal (no read:logs)
    is remembered instead, with Auth0's words."""
    try:
        if state.probe_position is None or state.probe_since_ms is None:
            since = now_ms - SAMPLE_SINCE_MS
            position = start_position(source, since, scope)
            if position is None:  # an empty log: nothing to read either way
                return replace(state.sampled(events=0, span_s=1, now_ms=now_ms), refused=None)
            state = replace(state, probe_position=position, probe_since_ms=since)
        assert state.probe_position is not None
        raw = source.tenant_logs(state.probe_position, take=TAKE, scope=scope)
    except (StreamRefused, Auth0ScopeError) as refused:
        logger.warning(
            "The tenant stream is unavailable; reading per user", extra={"reason": str(refused)}
        )
        return replace(state, refused=str(refused), refused_at_ms=now_ms, probed_at_ms=now_ms)
    except Auth0RequestError as refused:
        # The sample's position is not one Auth0 takes: find a new one next run.
        logger.warning("Tenant stream sample refused", extra={"reason": str(refused)})
        return replace(state, probe_position=None, probe_since_ms=None, probed_at_ms=now_ms)
    except ForwarderError as error:
        # Auth0 unavailable, or no time left: a figure for the choice of mode is not worth a
        # failed run; the users are read per user as decided without it, and it is tried again.
        logger.warning("Tenant event rate not sampled", extra={"error": str(error)})
        return state
    return _sampled(state, raw, now_ms)


def _sampled(state: TenantState, raw: Sequence[Any], now_ms: int) -> TenantState:
    assert state.probe_position is not None
    assert state.probe_since_ms is not None
    since = state.probe_since_ms
    if len(raw) < TAKE:
        # Every event since the last sample: count them over the time since.
        sampled = state.sampled(events=len(raw), span_s=(now_ms - since) / 1000, now_ms=now_ms)
        position: str | None = _last_id(raw, state.probe_position)
        next_since: int | None = now_ms
    else:
        # A full page: the rate over the dates it spans; start afresh next time.
        newest = max((e.date_ms for e in _events(raw)), default=now_ms)
        sampled = state.sampled(events=len(raw), span_s=(newest - since) / 1000, now_ms=now_ms)
        position, next_since = None, None
    return replace(sampled, probe_position=position, probe_since_ms=next_since, refused=None)


def _events(raw: Sequence[Any]) -> list[LogEvent]:
    return parse_page(raw).events
