"""What a read proves was lost: the one place that turns the facts of a read into gaps.

A gap is reported from evidence only; each function below names the fact it relies on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .cursor import Cursor
from .events import LogEvent
from .records import Gap

if TYPE_CHECKING:
    from .user_lookup import UserLookup


@dataclass(frozen=True, slots=True)
class ReadFacts:
    """What a read found out besides its events (set by fetch, read here)."""

    # The read holds the oldest events Auth0 still has at or above the cursor's floor.
    from_floor: bool = False
    # Tenant search was refused, and why (no read:logs scope, a 400...).
    search_refused: str | None = None
    # The newest-first read stopped at the 1,000-result cap here, above the floor, and search
    # was refused: nothing older could be read.
    unreachable_below_ms: int | None = None
    # 1,000 events share this millisecond: no Auth0 query pages past them.
    saturated_ms: int | None = None
    # Whether the per-user endpoint knows the user (None: not asked by this read).
    user_exists: bool | None = None
    # What GET /api/v2/users/{id} said of the user (user_lookup.py; None: not asked).
    user_lookup: UserLookup | None = None
    # The tenant stream went unread for longer than the retention: events dated in
    # (start, end) may have expired before it reached them (stream.py says how both are known).
    unread_span: tuple[int, int] | None = None


def gaps_in(
    facts: ReadFacts,
    events: Sequence[LogEvent],
    cursor: Cursor,
    *,
    now_ms: int,
    min_retention_ms: int,
) -> list[Gap]:
    """The gaps a read proves, given the cursor it was read against."""
    found: list[Gap] = []
    if facts.from_floor:
        expired = expiry_gap(cursor, events, now_ms, min_retention_ms)
        if expired is not None:
            found.append(expired)
    if facts.unreachable_below_ms is not None:
        found.append(_unreachable_gap(cursor, facts.unreachable_below_ms, facts.search_refused))
    if (
        facts.user_exists is False
        and facts.search_refused
        and cursor.status.missing_since_ms is None
    ):
        # The user's last events (its deletion among them) are in the tenant log, and search,
        # the only way to read them, is refused. Said once, when the user goes missing.
        found.append(
            Gap(
                from_ms=None if cursor.position.floor_ms is None else cursor.position.floor_ms - 1,
                to_ms=now_ms + 1,
                reason="unreachable: Auth0 says the user does not exist and tenant search "
                f"is refused ({facts.search_refused})",
            )
        )
    if facts.unread_span is not None:
        unread = _unread_gap(cursor, *facts.unread_span)
        if unread is not None:
            found.append(unread)
    if facts.saturated_ms is not None:
        found.append(
            Gap(
                from_ms=facts.saturated_ms - 1,
                to_ms=facts.saturated_ms + 1,
                reason="possible: 1,000 events share one millisecond; more cannot be read",
            )
        )
    return found


def expiry_gap(
    cursor: Cursor, read: Sequence[LogEvent], now_ms: int, min_retention_ms: int
) -> Gap | None:
    """A gap when events may have expired before any read could see them.

    Evidence, not a guess. Retention has passed our anchor: the read holds the oldest events
    Auth0 still has at or above the floor, the anchor is not among them, and everything retained
    is newer. Then the events that can be missing are those dated after both the anchor and what
    earlier complete reads verified, and before both the oldest event still retained and
    `now - min_retention` (anything newer cannot have expired yet). A user who merely stayed
    quiet while the anchor aged out yields no gap.
    """
    anchor = cursor.position.anchor
    if anchor is None:
        return None
    if any(e.log_id == anchor[1] or e.date_ms <= anchor[0] for e in read):
        return None
    verified = cursor.position.verified_ms if cursor.position.verified_ms is not None else anchor[0]
    start = max(anchor[0], verified)
    end = min(min((e.date_ms for e in read), default=now_ms), now_ms - min_retention_ms)
    if start >= end:
        return None
    return Gap(from_ms=start, to_ms=end, reason="expired")


def _unreachable_gap(cursor: Cursor, oldest_reached_ms: int, why: str | None) -> Gap:
    """Without search only the newest 1,000 can be read. Anything dated from the floor up to
    the oldest of them that was not forwarded before (late events, ties cut by the page limit)
    is out of reach: the gap spans all of it, both ends included, and says "possible" since
    most of that span was usually forwarded already."""
    return Gap(
        from_ms=None if cursor.position.floor_ms is None else cursor.position.floor_ms - 1,
        to_ms=oldest_reached_ms + 1,
        reason="possible: over 1,000 events newer than the checkpoint and tenant search "
        f"refused ({why or 'no reason given'}); events in this span not forwarded before "
        "cannot be read",
    )


def _unread_gap(cursor: Cursor, start_ms: int, end_ms: int) -> Gap | None:
    """What a lapse of the tenant stream may have cost this user.

    Every event dated up to `start_ms` was read (a complete stream read started at most the
    overlap window after it); an event that expired unread is dated before `end_ms` (stream.py
    bounds it by the retention and by the oldest event still returned). Below the cursor's floor
    nothing is missing either: a run that reported this gap already moved the floor to its end,
    so a window read again after a crash does not report it twice.
    """
    start = (
        start_ms
        if cursor.position.floor_ms is None
        else max(start_ms, cursor.position.floor_ms - 1)
    )
    if start + 1 >= end_ms:
        return None
    return Gap(
        from_ms=start,
        to_ms=end_ms,
        reason="expired: the tenant log was not read for longer than the retention; events "
        "dated in this span may have expired before they could be read",
    )
