"""The Auth0 log event as the forwarder sees it, and the one place a page of entries is parsed.

Pure: no clock, no I/O. Only `log_id` and `date` are read; everything else in an event passes
through untouched (`raw`). An entry without a usable `log_id` or `date` cannot be ordered or
deduplicated: it becomes a `Malformed` entry, which the planner quarantines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .exceptions import MalformedEvent

__all__ = [
    "LogEvent",
    "Malformed",
    "MalformedEvent",
    "Page",
    "iso_ms",
    "parse_date_ms",
    "parse_event",
    "parse_page",
]


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One Auth0 log event: the two fields the forwarder reads, and the event itself untouched."""

    date_ms: int
    log_id: str
    raw: Mapping[str, Any] = field(compare=False, repr=False)

    @property
    def key(self) -> tuple[int, str]:
        return (self.date_ms, self.log_id)

    @property
    def user_id(self) -> str | None:
        user_id = self.raw.get("user_id")
        return user_id if isinstance(user_id, str) else None


@dataclass(frozen=True, slots=True)
class Malformed:
    """An entry Auth0 returned that cannot be forwarded as an event, and why."""

    raw: object
    reason: str

    @property
    def owner(self) -> str | None:
        """The user the entry names, if it names one."""
        user_id = self.raw.get("user_id") if isinstance(self.raw, Mapping) else None
        return user_id if isinstance(user_id, str) else None


@dataclass(frozen=True, slots=True)
class Page:
    """What a page of entries holds: the events, and the entries that are not events."""

    events: list[LogEvent]
    malformed: list[Malformed]


def parse_date_ms(value: object) -> int:
    """Epoch milliseconds of an Auth0 `date` (ISO-8601; the schema also allows an object)."""
    if isinstance(value, Mapping):
        # LogDateObject is undocumented beyond "an object"; accept the Mongo-style {"$date": ...}.
        value = next((v for v in value.values() if isinstance(v, str)), None)
    if not isinstance(value, str) or not value:
        raise MalformedEvent(f"date is {type(value).__name__}, expected an ISO-8601 string")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError as exc:
        raise MalformedEvent(f"date {value[:40]!r} is not ISO-8601") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def parse_event(raw: object) -> LogEvent:
    if not isinstance(raw, Mapping):
        raise MalformedEvent(f"event is {type(raw).__name__}, expected an object")
    log_id = raw.get("log_id")
    if not isinstance(log_id, str) or not log_id:
        raise MalformedEvent("event has no log_id")
    return LogEvent(date_ms=parse_date_ms(raw.get("date")), log_id=log_id, raw=raw)


def parse_page(raw: Iterable[Any]) -> Page:
    """Every entry of a page, as an event or as a malformed entry: none is dropped."""
    events: list[LogEvent] = []
    malformed: list[Malformed] = []
    for item in raw:
        try:
            events.append(parse_event(item))
        except MalformedEvent as exc:
            malformed.append(Malformed(item, str(exc)))
    return Page(events, malformed)


def iso_ms(ms: int | None) -> str | None:
    if ms is None:
        return None
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
