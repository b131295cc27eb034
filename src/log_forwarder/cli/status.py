"""`status`: per user, what the checkpoint table says, beside the watch list.

Read from the items' readable attributes (the summary the forwarder writes with each save);
the compressed state is never decoded, so status works on any item the forwarder wrote.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from rich.table import Table

from log_forwarder.read_mode import OWN_KEY_PREFIX, TENANT_KEY

BACKFILL_PREFIX = "backfill#"


@dataclass(frozen=True)
class UserStatus:
    user_id: str
    watched: str | None  # how: "WATCHED_USER_IDS", "table", "legacy", "local"; None: not watched
    state: str  # one word: ok, backlog, failing, missing, unknown, new, unwatched
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

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _epoch_s(text: object) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _state(item: Mapping[str, Any] | None, watched: str | None) -> str:
    if item is None:
        return "new"  # watched, but no run has written its checkpoint yet
    if item.get("missing_since"):
        return "unknown" if not item.get("forwarded_total") else "missing"
    if item.get("last_error"):
        return "failing"
    if watched is None:
        return "unwatched"
    return "backlog" if item.get("backlog") else "ok"


def user_status(
    user_id: str, item: Mapping[str, Any] | None, watched: str | None, now_s: float
) -> UserStatus:
    item = item or {}
    watermark = _epoch_s(item.get("watermark"))
    gap = None
    if item.get("last_gap_to"):
        start = item.get("last_gap_from") or "(unknown start)"
        gap = f"{start} → {item['last_gap_to']}: {item.get('last_gap_reason', '')}"
    return UserStatus(
        user_id=user_id,
        watched=watched,
        state=_state(item or None, watched),
        watermark=item.get("watermark"),
        lag_s=None if watermark is None else round(now_s - watermark, 1),
        backlog=bool(item.get("backlog", False)),
        pending_events=int(item.get("pending_events", 0)),
        forwarded_total=int(item.get("forwarded_total", 0)),
        last_run=item.get("updated_at"),
        last_error=item.get("last_error"),
        last_error_at=item.get("last_error_at"),
        gaps_total=int(item.get("gaps_total", 0)),
        last_gap=gap,
        missing_since=item.get("missing_since"),
    )


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
    rows = [user_status(u, checkpoints.get(u), watched.get(u), now_s) for u in users]
    return rows, backfills


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


def plain_item(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A DynamoDB item (low-level form) as plain values."""
    plain: dict[str, Any] = {}
    for name, attribute in raw.items():
        ((kind, value),) = attribute.items()
        if kind == "N":
            number = float(value)
            plain[name] = int(number) if number.is_integer() else number
        elif kind in ("S", "BOOL"):
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
        state = row.state + (f" since {row.missing_since}" if row.missing_since else "")
        table.add_row(
            row.user_id,
            row.watched or "no",
            state,
            row.watermark or "-",
            _age(row.lag_s),
            f"yes, {row.pending_events} pending" if row.pending_events else str(row.backlog),
            row.last_run or "-",
            gaps,
            error,
        )
    return table


def backfill_table(backfills: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(title="Backfills", title_justify="left")
    for column in ("user", "since", "until", "forwarded", "reached", "state", "last write"):
        table.add_column(column, overflow="fold")
    for item in backfills:
        table.add_row(
            str(item.get("backfill_user", "?")),
            str(item.get("backfill_since", "?")),
            str(item.get("backfill_until", "live checkpoint")),
            str(item.get("forwarded_total", 0)),
            str(item.get("watermark") or "-"),
            "more to read" if item.get("backlog") else "done",
            str(item.get("updated_at") or "-"),
        )
    return table
