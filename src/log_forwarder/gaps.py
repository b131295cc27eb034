"""What a read proves was lost: the one place that turns the facts of a read into gaps.

A gap is reported from evidence only; each function below names the fact it relies on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .cursor import Cursor, LogEvent
from .records import Gap


@dataclass(frozen=True, slots=True)
class ReadFacts:
    """What a read found out besides its events (set by fetch, read here)."""

    # The read holds the oldest events Auth0 still has at or above the cursor's floor.
    from_floor: bool = False
    # Search was refused (no read:logs): events older than this could not be read.
    unreachable_below_ms: int | None = None
    # 1,000 events share this millisecond: no Auth0 query pages past them.
    saturated_ms: int | None = None


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
        unreachable = _unreachable_gap(cursor, facts.unreachable_below_ms)
        if unreachable is not None:
            found.append(unreachable)
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
    anchor = cursor.anchor
    if anchor is None:
        return None
    if any(e.log_id == anchor[1] or e.date_ms <= anchor[0] for e in read):
        return None
    verified = cursor.verified_ms if cursor.verified_ms is not None else anchor[0]
    start = max(anchor[0], verified)
    end = min(min((e.date_ms for e in read), default=now_ms), now_ms - min_retention_ms)
    if start >= end:
        return None
    return Gap(from_ms=start, to_ms=end, reason="expired")


def _unreachable_gap(cursor: Cursor, oldest_reached_ms: int) -> Gap | None:
    """Without search only the newest 1,000 can be read. If they reach back to the newest event
    already forwarded, nothing new is out of reach; otherwise the span between is a gap."""
    if cursor.watermark_ms is not None and oldest_reached_ms <= cursor.watermark_ms:
        return None
    return Gap(
        from_ms=cursor.watermark_ms if cursor.watermark_ms is not None else cursor.floor_ms,
        to_ms=oldest_reached_ms,
        reason="unreachable: over 1,000 new events and no read:logs scope to search",
    )
