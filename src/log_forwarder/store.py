"""The checkpoint protocol, once, and nothing that does I/O: what a store of versioned items
is (CheckpointStore, the port every caller names), the protocol's logic over any backend
(VersionedStore), and the stored form of a state (encoding, its size limit, its versions).

A backend implements only `_get`, `_put_if_version` and `_watched_keys`: DynamoDB
(checkpoint_store.py), the CLI's SQLite file (cli/local.py), the tests' dict (tests/fakes.py).

An item looks like this (operators add the first two to watch a user without redeploying):

    user_id    S     the Auth0 user id (partition key)
    watch      BOOL  legacy: true forwarded the user when WATCHED_USER_IDS was unset, before the
                     watch list had its own table (still honoured; never written here)
    version    N     bumped by every save; a save names the version it read
    state      B     the cursor's state: compact JSON, zlib-compressed
    updated_at S     when the last save happened (ISO-8601 UTC)
    state_version N  the state version that wrote `state`, and the oldest whose reader can read
    state_readable_from N   it (codec.py): what `status` tells a newer release's item by
    ...              the caller's summary (last event date, counts...), readable in the console;
                     a summary value of None removes the attribute

One more item holds the tenant's state (read_mode.py): key "#tenant", `item_type` = "tenant",
no `watch`. Keys starting with "#" are never Auth0 user ids and never watched.

Writes are conditional on the version read, so a duplicated or overlapping invocation gets
CheckpointConflict instead of silently moving a checkpoint another run already moved.

With many tenants in one table (multi-tenant mode), every key starts with the tenant's prefix
(`<domain>#`), so one user id in two tenants has two items; callers still speak of bare user ids.
A single-tenant store has no prefix: its items are exactly what they always were.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar

from .codec import READABLE_FROM_KEY, WRITTEN_KEY, Schema, TooLarge, inflated
from .exceptions import CheckpointConflict, CheckpointStateError, ForwarderError, NewerStateError
from .retry import UNLIMITED, Deadline

logger = logging.getLogger(__name__)

# Keys of the forwarder's own items (the tenant item, a backfill's): Auth0 user ids are
# `<provider>|<id>`, so such a key is never one, and the watch-list scan skips them all.
OWN_KEY_PREFIX = "#"
# DynamoDB items are limited to 400 KB; keep room for the key and the summary attributes.
MAX_STATE_BYTES = 350 * 1024
# The most a state may decode to, on write as on read, so that a small stored blob cannot decode
# to gigabytes. The densest legitimate state is its compressed limit full of log ids: 6,000
# `recent` rows compress 3.7 to 1 (measured), so 350 KB hold about 1.3 MB of JSON; this is three
# times that, and parsed (at worst ~10 bytes of Python objects per byte, for rows of tiny
# values) stays near 40 MB of the function's 256 MB.
MAX_DECODED_STATE_BYTES = 4 * 2**20
# Attributes the store owns (or, for `watch`, that operators own); summaries may not use them.
STATE_VERSION_ATTRIBUTE = "state_version"
READABLE_FROM_ATTRIBUTE = "state_readable_from"
RESERVED_ATTRIBUTES = frozenset(
    {
        "user_id",
        "watch",
        "version",
        "state",
        "updated_at",
        "write_token",
        STATE_VERSION_ATTRIBUTE,
        READABLE_FROM_ATTRIBUTE,
    }
)

SummaryValue = str | int | float | bool | None


@dataclass(frozen=True)
class StoredCheckpoint:
    """A user's checkpoint as read: `version` is what the next save must name.

    An item that cannot be read carries its `error` instead of a state: it is that user's
    failure, raised when the user is forwarded, never the whole run's.
    """

    user_id: str
    version: int
    state: dict[str, Any]
    error: CheckpointStateError | None = None

    def readable_state(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        return self.state


class CheckpointStore(Protocol):
    def load(
        self, user_ids: Sequence[str], *, deadline: Deadline = ...
    ) -> dict[str, StoredCheckpoint]: ...

    def save(
        self,
        user_id: str,
        state: Mapping[str, Any],
        *,
        expected_version: int | None,
        summary: Mapping[str, SummaryValue] = ...,
        deadline: Deadline = ...,
    ) -> int: ...

    def watched_users(self) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class RawItem:
    """An item as a backend holds it, unchecked: its version and its state blob (None where the
    attribute is absent)."""

    version: object
    state: object
    token: object = None  # the write_token of the save that wrote it


@dataclass(frozen=True, slots=True)
class Write:
    """One conditional save, as a backend carries it out."""

    key: str
    state: bytes
    version: int  # the version it writes
    expected: int | None  # the version it was read at (None: the item holds no checkpoint)
    summary: Mapping[str, str | int | float | bool]  # attributes to set beside the state
    removed: tuple[str, ...]  # attributes to remove (a summary value of None)
    updated_at: str
    # Unique to this save (kept by its retries): a refused retry that finds its own token
    # finds its own first attempt, whatever another run may have written byte for byte.
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


class VersionedStore(ABC):
    """The checkpoint protocol, once: state encoding and its size limit, versions, what a
    conflict is, the summary's rules, unreadable items, key prefixes. A backend only reads raw
    items, writes one if its version is the expected one, and lists the watched keys.

    Writes are conditional on the version read, so a duplicated or overlapping invocation gets
    CheckpointConflict instead of silently moving a checkpoint another run already moved; a save
    retried after its answer was lost finds itself written and succeeds.
    """

    key_prefix = ""

    def __init__(self, *, clock: Callable[[], float] = time.time, key_prefix: str = "") -> None:
        self._clock = clock
        self.key_prefix = key_prefix

    def load(
        self, user_ids: Sequence[str], *, deadline: Deadline = UNLIMITED
    ) -> dict[str, StoredCheckpoint]:
        """Checkpoints of the users that have one; users without one (or watch-only) are absent.
        Its retries end within `deadline`, as a save's do."""
        unique = list(dict.fromkeys(user_ids))  # BatchGetItem refuses repeated keys
        raw = self._get([self.key_prefix + user for user in unique], deadline)
        return {
            user: _stored(user, item)
            for user in unique
            if (item := raw.get(self.key_prefix + user)) is not None
        }

    def save(
        self,
        user_id: str,
        state: Mapping[str, Any],
        *,
        expected_version: int | None,
        summary: Mapping[str, SummaryValue] = {},
        deadline: Deadline = UNLIMITED,
    ) -> int:
        blob = encode_state(user_id, state)
        new_version = 1 if expected_version is None else expected_version + 1
        attributes = {**summary, **version_attributes(state)}
        write = Write(
            self.key_prefix + user_id,
            blob,
            new_version,
            expected_version,
            {**clean_summary(summary), **clean_summary(version_attributes(state), own=True)},
            tuple(sorted(name for name, value in attributes.items() if value is None)),
            _iso_s(self._clock()),
        )
        current = self._put_if_version(write, deadline)
        # Refused: a retry after a lost answer finds its own first attempt, not a conflict.
        if current is not None and not _holds(current, write):
            expected = (
                "no checkpoint" if expected_version is None else f"version {expected_version}"
            )
            raise CheckpointConflict(
                f"checkpoint for {user_id!r} changed since it was read (expected {expected}): "
                "another run of the forwarder (or an operator) wrote it first"
            )
        return new_version

    def watched_users(self) -> list[str]:
        """Users marked as watched in the store; keys starting with "#" are the forwarder's own
        items (the tenant item): never a user, whatever attributes someone gives them."""
        bare = (key.removeprefix(self.key_prefix) for key in self._watched_keys())
        return sorted(user for user in bare if not user.startswith(OWN_KEY_PREFIX))

    @abstractmethod
    def _get(self, keys: Sequence[str], deadline: Deadline) -> dict[str, RawItem]:
        """The items under these keys that hold a checkpoint (a version or a state)."""

    @abstractmethod
    def _put_if_version(self, write: Write, deadline: Deadline) -> RawItem | None:
        """Write `write` if the item's version is `write.expected` (no version for None),
        keeping every other attribute: None when written, else the item as it now stands."""

    @abstractmethod
    def _watched_keys(self) -> list[str]:
        """The keys (with this store's prefix) of the items marked as watched."""


class Stored(Protocol):
    """A value kept in the checkpoint table."""

    def to_state(self) -> dict[str, Any]: ...


V = TypeVar("V", bound=Stored)


class VersionedItem(Generic[V]):
    """An item of the checkpoint table as last read or written, and the conditional writes that
    move it: a user's checkpoint, or the tenant item. Every write names the version read, so a
    run that lost a race gets CheckpointConflict instead of moving what another run moved.

    `refused`: the item as stored was written by a newer release that this one cannot read
    (`value` is then only a stand-in): every write raises it, so the item is left untouched."""

    def __init__(
        self,
        store: CheckpointStore,
        key: str,
        value: V,
        version: int | None,
        deadline: Deadline = UNLIMITED,
        *,
        refused: NewerStateError | None = None,
    ) -> None:
        self._store = store
        self.key = key
        self._version = version
        self.value = value
        self.deadline = deadline
        self.refused = refused

    @property
    def version(self) -> int | None:
        """The version last read or written (None: the item does not exist yet)."""
        return self._version

    def write(self, value: V) -> None:
        if self.refused is not None:
            raise self.refused
        self._version = self._store.save(
            self.key,
            value.to_state(),
            expected_version=self._version,
            summary=self.summary_of(value),
            deadline=self.deadline,
        )
        self.value = value

    def summary_of(self, value: V) -> Mapping[str, SummaryValue]:
        """What operators read beside the state (attributes of the item)."""
        raise NotImplementedError

    def write_best_effort(self, value: V, what: str) -> None:
        """Write `value` if it differs; losing it to a failure or a race costs nothing but what
        `what` says (logged)."""
        if value == self.value:
            return
        try:
            self.write(value)
        except ForwarderError as error:
            logger.warning(
                f"Could not update the item; {what}",
                extra={"key": self.key, "error": f"{type(error).__name__}: {error}"},
            )


def encode_state(user_id: str, state: Mapping[str, Any]) -> bytes:
    """Compact, key-sorted JSON, zlib-compressed; CheckpointStateError if it would not fit."""
    text = json.dumps(state, sort_keys=True, separators=(",", ":"), allow_nan=False)
    blob = zlib.compress(text.encode("utf-8"), level=6)
    if len(text) > MAX_DECODED_STATE_BYTES:  # (characters: at least as many bytes)
        raise CheckpointStateError(
            f"checkpoint state for {user_id!r} is {len(text):,} characters of JSON, over the "
            f"{MAX_DECODED_STATE_BYTES:,}-byte limit of what a state may decode to; the cursor "
            "state must be kept smaller"
        )
    if len(blob) > MAX_STATE_BYTES:
        raise CheckpointStateError(
            f"checkpoint state for {user_id!r} is {len(blob)} bytes compressed, over the "
            f"{MAX_STATE_BYTES}-byte limit (DynamoDB items hold at most 400 KB); "
            "the cursor state must be kept smaller"
        )
    return blob


def decode_state(user_id: str, blob: bytes) -> dict[str, Any]:
    try:
        state = json.loads(inflated(blob, MAX_DECODED_STATE_BYTES).decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, ValueError, RecursionError) as error:
        # RecursionError: JSON nested deeper than the stack (a few hundred bytes of zlib).
        why = str(error) if isinstance(error, TooLarge) else type(error).__name__
        raise CheckpointStateError(
            f"checkpoint state for {user_id!r} is unreadable ({why}); "
            "delete the item's `state` and `version` attributes to restart this user"
        ) from error
    if not isinstance(state, dict):
        raise CheckpointStateError(f"checkpoint state for {user_id!r} is not a JSON object")
    return state


def version_attributes(state: Mapping[str, Any]) -> dict[str, SummaryValue]:
    """The state's versions (codec.py) as attributes beside it, so that `status` can tell an
    item a newer release wrote without decoding it (None: a state with no version removes them)."""
    readable_from = state.get(READABLE_FROM_KEY)
    written = state.get(WRITTEN_KEY, readable_from)
    known = all(isinstance(v, int) and not isinstance(v, bool) for v in (readable_from, written))
    return {
        STATE_VERSION_ATTRIBUTE: written if known else None,
        READABLE_FROM_ATTRIBUTE: readable_from if known else None,
    }


def newer_release(item: Mapping[str, Any], schema: Schema[Any]) -> str | None:
    """What `status` shows for an item, given as its attributes, whose state this release cannot
    read because a newer release wrote it (None: this release reads it)."""
    readable_from = item.get(READABLE_FROM_ATTRIBUTE)
    if not isinstance(readable_from, int | float) or readable_from <= schema.version:
        return None
    written = item.get(STATE_VERSION_ATTRIBUTE)
    shown = int(written) if isinstance(written, int | float) else int(readable_from)
    return f"written by a newer release (v{shown}), not read"


def clean_summary(
    summary: Mapping[str, SummaryValue], *, own: bool = False
) -> dict[str, str | int | float | bool]:
    """The summary without None values, after refusing names and values DynamoDB cannot hold
    (`own`: the store's attributes, which may use its reserved names)."""
    # The summary is the forwarder's own: a refusal here means a bug, reported as a state error.
    cleaned: dict[str, str | int | float | bool] = {}
    for name, value in summary.items():
        if name in RESERVED_ATTRIBUTES and not own:
            raise CheckpointStateError(
                f"summary attribute {name!r} is reserved by the checkpoint store"
            )
        if not name or len(name.encode("utf-8")) > 255:
            raise CheckpointStateError(f"summary attribute name {name!r} must be 1 to 255 bytes")
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise CheckpointStateError(
                f"summary attribute {name!r} is {value!r}; DynamoDB needs a number"
            )
        if not isinstance(value, str | int | float | bool):
            raise CheckpointStateError(
                f"summary attribute {name!r} has unsupported type {type(value)}"
            )
        cleaned[name] = value
    return cleaned


def _stored(user_id: str, item: RawItem) -> StoredCheckpoint:
    try:
        if item.state is None:
            raise CheckpointStateError(
                f"checkpoint item of {user_id!r} has a version but no state; delete both the "
                "`state` and the `version` attributes to restart this user"
            )
        version = int(item.version)  # type: ignore[call-overload]
        return StoredCheckpoint(user_id, version, decode_state(user_id, bytes(item.state)))  # type: ignore[call-overload]
    except (KeyError, TypeError, ValueError) as error:
        problem = CheckpointStateError(
            f"checkpoint item of {user_id!r} is not what this forwarder writes "
            f"({type(error).__name__}: {error}); delete its `state` and `version` attributes "
            "to restart this user"
        )
        return StoredCheckpoint(user_id, -1, {}, problem)
    except CheckpointStateError as error:
        return StoredCheckpoint(user_id, -1, {}, error)


def _holds(item: RawItem, write: Write) -> bool:
    """Whether the item as it stands is the very save that was attempted (not merely the same
    bytes: two runs can plan the same state)."""
    try:
        stored_version = int(item.version)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return False
    return stored_version == write.version and item.token == write.token


def _iso_s(now_s: float) -> str:
    stamp = datetime.fromtimestamp(now_s, tz=UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")
