"""The memory of what the real-time path delivered: one small item per pushed batch, in a table of
its own, so that a burst never grows the user's checkpoint item.

    PushedEventsTable (only with the real-time path on)
      user_id     S   partition key: the watched user
      batch       S   sort key: "<newest event date, 13 digits of ms>#<batch id>"
      events      B   [[date_ms, log_id], ...] of the batch: compact JSON, zlib-compressed
      confirmed   SS  the log_ids a scheduled read has returned since (RealtimeConfirmedEvents)
      settled     B   what the batch's commit settles (the rules' state, the counters, the
                      quarantine memory: cursor.settled_by), compact JSON, zlib-compressed
      expires_at  N   DynamoDB's TTL: the newest date + 31 days, past Auth0's longest retention

A push writes its batch's item after every destination took the batch and before its checkpoint
commit (executor.py), so a read that loads the checkpoint and then queries this table sees every
batch committed before its load. The sort key is led by the batch's newest date, so a Query from
a date returns every batch holding an event dated at or after it: a read asks from its floor, a
push from its oldest event. The checkpoint only keeps the newest date it recorded here
(`ReadPosition.pushed_until_ms`), so a user with nothing pushed since its floor costs no Query.

An item is never rewritten by a push (its batch id is its events' hash) and only gains the ids a
read confirmed; the reads never delete any: an event stays known until it is older than anything
Auth0 can still return, whatever happens to the reads meanwhile.

Pure: the memory and the item's encoding; pushed_store.py is the table.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .codec import TooLarge, inflated
from .exceptions import CheckpointError
from .retry import Deadline
from .store import MAX_DECODED_STATE_BYTES

# Auth0 keeps logs 30 days on its longest plan: no read can return an event older than this.
PUSHED_MEMORY_MS = 31 * 86_400_000


def batch_key(newest_ms: int, batch_id: str) -> str:
    return f"{newest_ms:013d}#{batch_id}"


def parse_batch_key(key: str) -> tuple[int, str]:
    """(newest date, batch id) of a `batch_key`."""
    newest, batch_id = key.split("#", 1)
    return int(newest), batch_id


@dataclass(frozen=True, slots=True)
class PushedMemory:
    """What the real-time path delivered for one user, from some date on, as read from the
    table: every (date, log_id), the batch key holding each, and those a read confirmed."""

    entries: tuple[tuple[int, str], ...] = ()
    batches: Mapping[str, str] = field(default_factory=dict)  # log_id → batch key
    confirmed: frozenset[str] = frozenset()
    # batch id → what its commit settles (cursor.settled_by), for a load that finds the batch
    # pending: its commit was lost, and this is the cursor's state after it.
    settled: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def batch_ids(self) -> frozenset[str]:
        return frozenset(parse_batch_key(key)[1] for key in self.batches.values())


class PushedLedger(Protocol):
    def record(
        self,
        user_id: str,
        batch_id: str,
        events: Sequence[tuple[int, str]],
        *,
        deadline: Deadline = ...,
        settled: Mapping[str, Any] | None = None,
    ) -> None: ...

    def since(
        self, user_id: str, from_ms: int | None, *, deadline: Deadline = ...
    ) -> PushedMemory: ...

    def confirm(
        self,
        user_id: str,
        memory: PushedMemory,
        log_ids: Iterable[str],
        *,
        deadline: Deadline = ...,
    ) -> int: ...


def unconfirmed_by_batch(memory: PushedMemory, log_ids: Iterable[str]) -> dict[str, set[str]]:
    """The ids among `log_ids` that the memory holds unconfirmed, by the batch key holding them."""
    grouped: dict[str, set[str]] = {}
    for log_id in log_ids:
        key = memory.batches.get(log_id)
        if key is not None and log_id not in memory.confirmed:
            grouped.setdefault(key, set()).add(log_id)
    return grouped


def encode_events(events: Sequence[tuple[int, str]]) -> bytes:
    return _packed(sorted([date, log_id] for date, log_id in events))


def encode_settled(settled: Mapping[str, Any]) -> bytes:
    return _packed(settled)


def _packed(value: object) -> bytes:
    text = json.dumps(value, separators=(",", ":"), sort_keys=True)
    return zlib.compress(text.encode("utf-8"), level=6)


def _unpacked(blob: bytes) -> Any:
    # A stored blob is inflated no further than a checkpoint's state may be (store.py).
    return json.loads(inflated(blob, MAX_DECODED_STATE_BYTES).decode("utf-8"))


# (batch key, events blob, confirmed ids, settled blob or None) of one item.
StoredBatch = tuple[str, bytes, frozenset[str], bytes | None]


def memory_of(items: Iterable[StoredBatch]) -> PushedMemory:
    """Each item, as one user's memory. An item that cannot be read is a bug of this module's
    writer, raised as a checkpoint error naming it."""
    entries: set[tuple[int, str]] = set()
    batches: dict[str, str] = {}
    confirmed: set[str] = set()
    settled: dict[str, Mapping[str, Any]] = {}
    for key, blob, marked, after in items:
        try:
            pairs = [(int(date), str(log_id)) for date, log_id in _unpacked(blob)]
            state = _unpacked(after) if after is not None else None
            if state is not None and not isinstance(state, dict):
                raise TypeError("settled is not an object")
        except (zlib.error, UnicodeDecodeError, ValueError, TypeError, RecursionError) as error:
            why = str(error) if isinstance(error, TooLarge) else type(error).__name__
            raise CheckpointError(f"pushed-events item {key!r} is unreadable ({why})") from error
        entries.update(pairs)
        batches.update((log_id, key) for _, log_id in pairs)
        confirmed |= marked
        if state is not None:
            settled[parse_batch_key(key)[1]] = state
    return PushedMemory(tuple(sorted(entries)), batches, frozenset(confirmed), settled)
