"""`status`: per user, what the checkpoint table says, beside the watch list.

Read from the items' readable attributes (the summary the forwarder writes with each save);
the compressed state is never decoded, so status works on any item the forwarder wrote.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer
from rich.table import Table

from log_forwarder.cursor import CURSOR_STATE
from log_forwarder.read_mode import TENANT_KEY
from log_forwarder.store import (
    OWN_KEY_PREFIX,
    READABLE_FROM_ATTRIBUTE,
    STATE_VERSION_ATTRIBUTE,
    newer_release,
)

from .terminal import add_safe_row

BACKFILL_PREFIX = "backfill#"
_DESERIALIZER = TypeDeserializer()


@dataclass(frozen=True)
class UserStatus:
    user_id: str
    watched: str | None  # how: "WATCHED_USER_IDS", "table", "legacy", "local"; None: not watched
    # one word: ok, backlog, failing, blocked, missing, unknown, new, unwatched, unreadable, newer
    state: str
    watermark: str | None = None
    lag_s: float | None = None
    backlog: bool = False
    pending_events: int = 0
    forwarded_total: int = 0
    last_run: str | None = None
    last_error: str | None = None
    last_error_at: str | None = None
    gaps_total: int = 0
    last_gap: str | None = None
    missing_since: str | None = None
    unreadable: str | None = None  # why the item's attributes cannot be read (state unreadable)
    # When a read of the user last reached its newest event (its own, or the tenant stream's).
    last_read: str | None = None
    # Why the checkpoint is not read: a newer release wrote it (its summary is that release's).
    not_read: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# Set on an item whose summary could not even be decoded (a local directory's JSON text).
UNREADABLE_SUMMARY = "_unreadable"


class Unreadable(ValueError):
    """An attribute of a checkpoint item is not what the forwarder writes (a hand edit)."""


class _Attributes:
    """The item's summary attributes, each checked to be of the type the forwarder writes."""

    def __init__(self, item: Mapping[str, Any]) -> None:
        if UNREADABLE_SUMMARY in item:
            raise Unreadable(str(item[UNREADABLE_SUMMARY]))
        self._item = item

    def text(self, name: str) -> str | None:
        value = self._item.get(name)
        if value is not None and not isinstance(value, str):
            raise Unreadable(f"{name} is {value!r}, not text")
        return value or None

    def count(self, name: str) -> int:
        value = self._item.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise Unreadable(f"{name} is {value!r}, not a count")
        return value

    def flag(self, name: str) -> bool:
        value = self._item.get(name, False)
        if not isinstance(value, bool):
            raise Unreadable(f"{name} is {value!r}, not true or false")
        return value

    def instant_s(self, name: str) -> float | None:
        text = self.text(name)
        if text is None:
            return None
        try:
            return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise Unreadable(f"{name} is {text!r}, not an ISO-8601 instant") from None


def _state_version(item: Mapping[str, Any], name: str) -> None:
    """A version attribute is absent or a whole number from 1 (a local item's JSON may say NaN,
    Infinity or 1e999, which Python's JSON reads as floats)."""
    value = item.get(name)
    if value is None:
        return
    whole = isinstance(value, int | float | Decimal) and not isinstance(value, bool)
    if not whole or not math.isfinite(value) or value < 1 or value != int(value):
        raise Unreadable(f"{name} is {value!r}, not a state version (1, 2, ...)")


def _state(status: UserStatus) -> str:
    if status.missing_since:
        return "unknown" if not status.forwarded_total else "missing"
    if status.last_error:
        return "failing"
    if status.watched is None:
        return "unwatched"
    return "backlog" if status.backlog else "ok"


def user_status(
    user_id: str, item: Mapping[str, Any] | None, watched: str | None, now_s: float
) -> UserStatus:
    """The user's row; Unreadable when an attribute is not of the type the forwarder writes."""
    if item is None:
        return UserStatus(user_id, watched, "new")  # watched, but no run has written it yet
    for name in (STATE_VERSION_ATTRIBUTE, READABLE_FROM_ATTRIBUTE):
        _state_version(item, name)
    not_read = newer_release(item, CURSOR_STATE)
    if not_read is not None:
        return UserStatus(user_id, watched, "newer", not_read=not_read)
    read = _Attributes(item)
    watermark_s = read.instant_s("watermark")
    gap = None
    if read.text("last_gap_to"):
        start = read.text("last_gap_from") or "(unknown start)"
        gap = f"{start} → {read.text('last_gap_to')}: {read.text('last_gap_reason') or ''}"
    status = UserStatus(
        user_id=user_id,
        watched=watched,
        state="",
        watermark=read.text("watermark"),
        lag_s=None if watermark_s is None else round(now_s - watermark_s, 1),
        backlog=read.flag("backlog"),
        pending_events=read.count("pending_events"),
        forwarded_total=read.count("forwarded_total"),
        last_run=read.text("updated_at"),
        last_error=read.text("last_error"),
        last_error_at=read.text("last_error_at"),
        gaps_total=read.count("gaps_total"),
        last_gap=gap,
        missing_since=read.text("missing_since"),
        last_read=read.text("last_read"),
    )
    return replace(status, state=_state(status))


def readable_status(
    user_id: str, item: Mapping[str, Any] | None, watched: str | None, now_s: float
) -> UserStatus:
    """The user's row, or a row saying why its item cannot be read: one hand-edited attribute
    must not hide every other user."""
    try:
        return user_status(user_id, item, watched, now_s)
    except Unreadable as error:
        return UserStatus(user_id, watched, "unreadable", unreadable=str(error))


def statuses(
    items: Iterable[Mapping[str, Any]], watched: Mapping[str, str], now_s: float
) -> tuple[list[UserStatus], list[Mapping[str, Any]]]:
    """(one status per user watched or checkpointed, the backfill items)."""
    checkpoints: dict[str, Mapping[str, Any]] = {}
    backfills: list[Mapping[str, Any]] = []
    for item in items:
        user_id = str(item["user_id"])
        if user_id.startswith(BACKFILL_PREFIX):
            backfills.append(item)
        elif user_id.startswith(OWN_KEY_PREFIX):
            continue  # the function's own items (the tenant item): read_mode_note
        elif "version" in item:  # a legacy watch-only item has no checkpoint yet
            checkpoints[user_id] = item
    users = sorted({*checkpoints, *watched})
    rows = [readable_status(u, checkpoints.get(u), watched.get(u), now_s) for u in users]
    return _as_the_tenant_stands(rows, items), backfills


# -- the tenant: failing for all its users, and the stream's reads ---------------------------------

# What a failing tenant makes of a user's state: none of these is read while it fails.
_BLOCKED_STATES = frozenset({"ok", "backlog", "new"})


def _tenant_item(items: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    return next((i for i in items if i.get("user_id") == TENANT_KEY), None)


def _as_the_tenant_stands(
    rows: list[UserStatus], items: Iterable[Mapping[str, Any]]
) -> list[UserStatus]:
    """While the tenant fails (the tenant item's `tenant_error`), no user is `ok`: each one that
    would be is `blocked`. A stream member's last read is the stream's last complete read, when
    that is later than its own (idle members are not written on every read)."""
    tenant = _tenant_item(items) or {}
    failing = bool(tenant.get("tenant_error"))
    stream_read = tenant.get("stream_read_at")
    checkpoints = {str(i["user_id"]): i for i in items if "user_id" in i}
    fixed = []
    for row in rows:
        item = checkpoints.get(row.user_id, {})
        last_read = row.last_read
        member = item.get("stream_position") and item.get("stream_epoch") is not None
        if member and item.get("stream_epoch") == tenant.get("stream_epoch") and stream_read:
            last_read = max(last_read or "", str(stream_read)) or None
        state = "blocked" if failing and row.state in _BLOCKED_STATES and row.watched else row.state
        fixed.append(replace(row, state=state, last_read=last_read))
    return fixed


# A watched user in one of these states is not being forwarded as it should: `status` exits 1.
PROBLEM_STATES = frozenset({"failing", "blocked", "missing", "unknown", "unreadable", "newer"})


def problems(rows: Iterable[UserStatus], *, tenant_failing: bool) -> list[str]:
    """What `status` exits 1 for, one line each: the tenant failing, no user watched, and each
    watched user in a problem state (an unreadable row too, watched or not)."""
    rows = list(rows)
    found = ["the tenant is failing"] if tenant_failing else []
    if not any(row.watched for row in rows):
        found.append("no watched users")
    found += [
        f"{row.user_id}: {row.state}"
        for row in rows
        if (row.watched and row.state in PROBLEM_STATES) or row.unreadable
    ]
    return found


def tenant_note(items: Iterable[Mapping[str, Any]]) -> str | None:
    """The tenant failing, with the cause and the fix (None while it does not)."""
    tenant = _tenant_item(items)
    if tenant is None or not tenant.get("tenant_error"):
        return None
    return (
        f"the tenant is failing, for all users, since {tenant.get('tenant_failing_since', '?')} "
        f"(last at {tenant.get('tenant_error_at', '?')}): {tenant['tenant_error']}. "
        f"Fix: {tenant.get('tenant_error_fix') or 'see the cause'}"
    )


def read_mode_note(items: Iterable[Mapping[str, Any]]) -> str | None:
    """How the last run read Auth0, from the tenant item (None before any run wrote it)."""
    for item in items:
        if item.get("user_id") == TENANT_KEY:
            note = f"read mode: {item.get('read_mode', '?')}"
            if item.get("read_mode_reason"):
                note += f" ({item['read_mode_reason']})"
            if item.get("stream_unavailable"):
                note += f"; the tenant stream is unavailable: {item['stream_unavailable']}"
            return note
    return None


def plain_item(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A DynamoDB item (low-level form) as plain values, whatever their types: a value the
    forwarder never writes is kept, for the row to say what it is."""
    plain: dict[str, Any] = {}
    for name, attribute in raw.items():
        value = _DESERIALIZER.deserialize(attribute)
        if isinstance(value, Decimal):
            value = int(value) if value == value.to_integral_value() else float(value)
        plain[name] = value
    return plain


def scan_checkpoints(client: Any, table: str) -> list[dict[str, Any]]:
    """Every item of the checkpoint table without its state blob (the large part)."""
    pages = client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
    items = []
    for page in pages:
        for raw in page.get("Items", []):
            raw.pop("state", None)
            items.append(plain_item(raw))
    return items


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def status_table(rows: Sequence[UserStatus]) -> Table:
    table = Table(title="Users", title_justify="left")
    columns = ("user", "watched", "state", "watermark", "lag", "backlog", "last run")
    for column in (*columns, "gaps (last)", "last error"):
        table.add_column(column, overflow="fold")
    for row in rows:
        gaps = str(row.gaps_total) + (f" ({row.last_gap})" if row.last_gap else "")
        error = f"{row.last_error_at}: {row.last_error}" if row.last_error else "-"
        if row.state == "blocked" and not row.last_error:
            error = f"the tenant is failing (see the note); last read {row.last_read or 'never'}"
        state = row.state + (f" since {row.missing_since}" if row.missing_since else "")
        backlog = "yes" if row.backlog else "no"
        values: tuple[str, ...] = (
            row.watermark or "-",
            _age(row.lag_s),
            f"yes, {row.pending_events} pending" if row.pending_events else backlog,
            row.last_run or "-",
            gaps,
            error,
        )
        if row.unreadable:
            state, values = f"unreadable: {row.unreadable}", ("?",) * len(values)
        elif row.not_read:
            state, values = row.not_read, ("?",) * len(values)
        add_safe_row(table, (row.user_id, row.watched or "no", state, *values))
    return table


def backfill_table(backfills: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="Backfills", title_justify="left")
    for column in ("user", "since", "until", "forwarded", "reached", "state", "last write"):
        table.add_column(column, overflow="fold")
    for item in backfills:
        add_safe_row(
            table,
            (
                item.get("backfill_user", "?"),
                item.get("backfill_since", "?"),
                item.get("backfill_until", "live checkpoint"),
                item.get("forwarded_total", 0),
                item.get("watermark") or "-",
                "more to read" if item.get("backlog") else "done",
                item.get("updated_at") or "-",
            ),
        )
    return table
