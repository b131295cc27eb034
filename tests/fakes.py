"""In-memory stand-ins for the property tests of the core: fast enough for thousands of runs.

The integration tests use the real HTTP simulator and moto's server instead; these fakes keep
only the behaviour the cursor depends on (newest-first paging, the 1,000-result cap, search by
user and date range, late visibility, retention, scope) so hypothesis can explore it.
"""

from __future__ import annotations

import gzip
import json
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from log_forwarder.events import parse_date_ms
from log_forwarder.exceptions import (
    Auth0NotFoundError,
    Auth0ScopeError,
    Auth0SearchCapError,
    DeliveryError,
)
from log_forwarder.pushed import (
    PushedMemory,
    batch_key,
    encode_events,
    encode_settled,
    memory_of,
    unconfirmed_by_batch,
)
from log_forwarder.records import Delivery, DeliveryReport, OutputLine
from log_forwarder.retry import Deadline
from log_forwarder.source import CallScope
from log_forwarder.store import RawItem, VersionedStore, Write

_QUERY = re.compile(r'^user_id:"((?:[^"\\]|\\.)*)"(?: AND date:\[(\S+) TO (\S+)\])?$')
# Tenant-wide queries without a user (where the stream starts): a date range or nothing.
_TENANT_QUERY = re.compile(r"^(?:date:\[(\S+) TO (\S+)\])?$")
TENANT = "(tenant)"  # calls_by_user key of the calls that name no user


@dataclass
class _Stored:
    event: dict[str, Any]
    date_ms: int
    visible_at_ms: int
    seq: int


@dataclass
class FakeAuth0:
    """A LogSource: the per-user read, the tenant search and the tenant log by checkpoint, over
    events in memory."""

    now_ms: int = 0
    search_allowed: bool = True
    retention_ms: int | None = None
    events: list[_Stored] = field(default_factory=list)
    calls: int = 0
    calls_by_user: dict[str, int] = field(default_factory=dict)

    @classmethod
    def serving(cls, traffic: Iterable[tuple[dict[str, Any], int]]) -> FakeAuth0:
        """An Auth0 holding `traffic`: (event, the instant it becomes visible) pairs."""
        fake = cls()
        for event, visible in traffic:
            fake.add(event, visible_at_ms=visible)
        return fake

    def add(self, event: dict[str, Any], *, visible_at_ms: int | None = None) -> None:
        date_ms = parse_date_ms(event["date"])
        visible = date_ms if visible_at_ms is None else visible_at_ms
        self.events.append(_Stored(dict(event), date_ms, visible, len(self.events)))

    def _visible(self, user_id: str | None) -> list[_Stored]:
        """What Auth0 returns now: one user's events, or the tenant's (None)."""
        oldest = None if self.retention_ms is None else self.now_ms - self.retention_ms
        return [
            s
            for s in self.events
            if (user_id is None or s.event.get("user_id") == user_id)
            and s.visible_at_ms <= self.now_ms
            and (oldest is None or s.date_ms >= oldest)
        ]

    def _count(self, user_id: str, scope: CallScope) -> None:
        scope.stats.count("api_calls")
        self.calls += 1
        self.calls_by_user[user_id] = self.calls_by_user.get(user_id, 0) + 1

    def user_logs(
        self, user_id: str, *, page: int, per_page: int, sort: str, scope: CallScope
    ) -> list[Any]:
        self._count(user_id, scope)
        if (page + 1) * per_page > 1000:
            raise Auth0SearchCapError("page past the cap", status=400)
        descending = sort == "date:-1"
        # Stable order for equal dates, as Auth0 returns for repeated identical requests.
        ordered = sorted(
            self._visible(user_id),
            key=lambda s: (-s.date_ms, s.seq) if descending else (s.date_ms, s.seq),
        )
        return [dict(s.event) for s in ordered[page * per_page : (page + 1) * per_page]]

    def search_logs(
        self, query: str, *, page: int, per_page: int, sort: str, scope: CallScope
    ) -> list[Any]:
        match = _QUERY.match(query)
        tenant = _TENANT_QUERY.match(query) if match is None else None
        assert match or tenant, f"unexpected query {query!r}"
        user_id = match.group(1).replace('\\"', '"').replace("\\\\", "\\") if match else None
        self._count(user_id or TENANT, scope)
        if not self.search_allowed:
            raise Auth0ScopeError("Insufficient scope; expected any of: read:logs", status=403)
        if (page + 1) * per_page > 1000:
            raise Auth0SearchCapError("page past the cap", status=400)
        lo_text, hi_text = match.group(2, 3) if match else tenant.group(1, 2)  # type: ignore[union-attr]
        lo = None if lo_text in (None, "*") else parse_date_ms(lo_text)
        hi = None if hi_text in (None, "*") else parse_date_ms(hi_text)
        hits = [
            s
            for s in self._visible(user_id)
            if (lo is None or s.date_ms >= lo) and (hi is None or s.date_ms <= hi)
        ]
        field, _, order = sort.partition(":")
        if field == "log_id":
            hits.sort(key=lambda s: (s.event.get("log_id", ""), s.seq), reverse=order == "-1")
        else:
            hits.sort(key=lambda s: (s.date_ms, s.seq), reverse=order == "-1")
        return [dict(s.event) for s in hits[page * per_page : (page + 1) * per_page]]

    def tenant_logs(self, after: str, *, take: int, scope: CallScope) -> list[Any]:
        """By checkpoint: visible events with a log_id after `after`, in log_id order. Tests give
        events ids that follow visibility, as Auth0's follow ingestion."""
        self._count(TENANT, scope)
        if not self.search_allowed:
            raise Auth0ScopeError("Insufficient scope; expected any of: read:logs", status=403)
        assert 1 <= take <= 100
        hits = [s for s in self._visible(None) if str(s.event.get("log_id", "")) > after]
        hits.sort(key=lambda s: (str(s.event.get("log_id", "")), s.seq))
        return [dict(s.event) for s in hits[:take]]

    def log_event(self, log_id: str, *, scope: CallScope) -> Any:
        self._count(TENANT, scope)
        for stored in self._visible(None):
            if stored.event.get("log_id") == log_id:
                return dict(stored.event)
        raise Auth0NotFoundError("Log not found.", status=404)


@dataclass
class RecordingSink:
    """A destination that keeps what it accepted; can die before or after accepting a batch.

    `crash(batch_index)` returns None, "before" or "after": "after" models a run killed between
    delivery and checkpoint commit, the window the pending intent exists for.
    """

    name: str = "memory"
    lines: list[OutputLine] = field(default_factory=list)
    batches: list[list[OutputLine]] = field(default_factory=list)
    crash: Callable[[int], str | None] = lambda _i: None
    deliveries: int = 0

    def deliver(self, delivery: Delivery) -> DeliveryReport:
        index = self.deliveries
        self.deliveries += 1
        mode = self.crash(index)
        if mode == "before":
            raise DeliveryError(f"{self.name}: simulated failure before delivery")
        lines = delivery.lines
        present = (
            {line.log_id for line in self.lines if line.log_id} if delivery.redelivery else set()
        )
        accepted = [line for line in lines if line.log_id is None or line.log_id not in present]
        self.lines.extend(accepted)
        self.batches.append(list(accepted))
        if mode == "after":
            raise DeliveryError(f"{self.name}: simulated crash after delivery")
        return DeliveryReport(
            self.name, accepted=len(accepted), already_present=len(lines) - len(accepted)
        )

    def log_ids(self) -> list[str]:
        return [line.log_id for line in self.lines if line.log_id is not None]


class InMemoryCheckpointStore(VersionedStore):
    """The checkpoint protocol (store.VersionedStore) in a dict, for unit tests."""

    def __init__(self) -> None:
        super().__init__()
        self._items: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def set_watch(self, user_id: str, watch: bool | str = True) -> None:
        """What an operator does in the console: mark a user as watched (or not)."""
        with self._lock:
            self._items.setdefault(user_id, {"user_id": user_id})["watch"] = watch

    def delete(self, user_id: str) -> None:
        """What an operator does in the console: delete an item."""
        with self._lock:
            self._items.pop(user_id, None)

    def item(self, user_id: str) -> dict[str, Any]:
        """A copy of the raw item, as a test would inspect it in the table."""
        with self._lock:
            return dict(self._items.get(user_id, {}))

    def _get(self, keys: Sequence[str], deadline: Deadline) -> dict[str, RawItem]:
        with self._lock:
            return {
                key: RawItem(item.get("version"), item.get("state"))
                for key in keys
                if "version" in (item := self._items.get(key, {})) or "state" in item
            }

    def _put_if_version(self, write: Write, deadline: Deadline) -> RawItem | None:
        with self._lock:
            item = self._items.get(write.key, {})
            if item.get("version") != write.expected:
                return RawItem(item.get("version"), item.get("state"), item.get("write_token"))
            # As DynamoDB's REMOVE: what an earlier save wrote goes.
            kept = {k: v for k, v in item.items() if k not in write.removed}
            self._items[write.key] = {
                **kept,
                **write.summary,
                "user_id": write.key,
                "version": write.version,
                "state": write.state,
                "write_token": write.token,
            }
            return None

    def _watched_keys(self) -> list[str]:
        with self._lock:
            return [
                key
                for key, item in self._items.items()
                if item.get("watch") is True or item.get("watch") == "true"
            ]


class FakeClock:
    """A clock the test moves; shared by the simulator, the client and the pacer under test."""

    def __init__(self, now: float = 1_795_600_000.0) -> None:
        self._now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


class InterleavingStore(InMemoryCheckpointStore):
    """Calls `before_save()` before every save: where another writer may move in."""

    def __init__(self, before_save: Callable[[], None]) -> None:
        super().__init__()
        self.before_save = before_save

    def save(self, user_id: str, state: Any, **kwargs: Any) -> int:
        self.before_save()
        return super().save(user_id, state, **kwargs)


def interleave(sinks: Sequence[RecordingSink], before_deliver: Callable[[], None]) -> None:
    """Calls `before_deliver()` before every delivery to each sink."""
    for sink in sinks:
        original = sink.deliver

        def interleaved(delivery: Delivery, original: Any = original) -> DeliveryReport:
            before_deliver()
            return original(delivery)

        sink.deliver = interleaved  # type: ignore[method-assign]


class InMemoryPushedLedger:
    """The pushed-events table (pushed.py) in a dict, for unit and property tests."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], tuple[bytes, set[str], bytes | None]] = {}
        self._lock = threading.Lock()

    def record(
        self,
        user_id: str,
        batch_id: str,
        events: Sequence[tuple[int, str]],
        *,
        settled: Mapping[str, Any] | None = None,
        **_: Any,
    ) -> None:
        key = batch_key(max(date for date, _ in events), batch_id)
        after = encode_settled(settled) if settled is not None else None
        with self._lock:
            confirmed = self.items.get((user_id, key), (b"", set(), None))[1]
            self.items[(user_id, key)] = (encode_events(events), confirmed, after)

    def since(self, user_id: str, from_ms: int | None, **_: Any) -> PushedMemory:
        start = "" if from_ms is None else f"{max(0, from_ms):013d}"
        with self._lock:
            found = [
                (key, blob, frozenset(confirmed), after)
                for (user, key), (blob, confirmed, after) in sorted(self.items.items())
                if user == user_id and key >= start
            ]
        return memory_of(found)

    def confirm(self, user_id: str, memory: PushedMemory, log_ids: Iterable[str], **_: Any) -> int:
        added = 0
        with self._lock:
            for key, ids in unconfirmed_by_batch(memory, log_ids).items():
                confirmed = self.items[(user_id, key)][1]
                added += len(ids - confirmed)
                confirmed |= ids
        return added

    def largest(self) -> int:
        """The largest item's events blob, in bytes."""
        return max((len(blob) for blob, _, _ in self.items.values()), default=0)


def socket_slack() -> int:
    """What the sockets may hold past what the client read: the receive buffer, which Linux
    autotunes up to tcp_rmem's maximum (32 MiB on these machines: 13 MB were once sent for an
    8 MiB read under load), the send buffer up to tcp_wmem's, and the sender's 64 KiB chunk."""
    held = 0
    for name, fallback in (("tcp_rmem", 6 * 2**20), ("tcp_wmem", 4 * 2**20)):
        try:
            held += int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2])
        except (OSError, ValueError, IndexError):
            held += fallback
    return held + 64 * 2**10


@dataclass
class MemoryObjects:
    """An object store (sinks/objects.py's seam) in a dict; `fault(key)` can refuse a put
    ("refuse": nothing stored) or lose its answer ("lose": stored, then an error)."""

    objects: dict[str, bytes] = field(default_factory=dict)
    fault: Callable[[str], str | None] = lambda _key: None
    puts: list[str] = field(default_factory=list)  # every key written, in order
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put_if_absent(self, key: str, body: bytes, deadline: Deadline) -> bool:
        mode = self.fault(key)
        if mode == "refuse":
            raise DeliveryError(f"simulated refusal of {key!r}")
        with self.lock:
            if key in self.objects:
                return False
            self.objects[key] = body
            self.puts.append(key)
        if mode == "lose":
            raise DeliveryError(f"simulated lost answer for {key!r}")
        return True

    def get(self, key: str, deadline: Deadline) -> bytes:
        with self.lock:
            return self.objects[key]

    def log_ids(self) -> Counter[str]:
        """How many times each log_id is stored, over every object."""
        with self.lock:
            bodies = list(self.objects.values())
        found: Counter[str] = Counter()
        for body in bodies:
            for line in gzip.decompress(body).decode("utf-8").splitlines():
                log_id = json.loads(line).get("log_id")
                if isinstance(log_id, str):
                    found[log_id] += 1
        return found
