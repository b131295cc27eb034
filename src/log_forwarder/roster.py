"""Who was watched when the tenant stream last moved: the roster item.

A seat says up to which log_id a user's events are delivered. A user taken off the watch list
keeps its seat while the stream moves on without it; added back within the same era, its seat
would make it a member again and the windows read while it was away would be lost to it. The
same holds for a user an overlapping run seated while this one moved the stream without it. So
before the stream moves, the run writes down whom it moves for (its members), and a seated user
missing from that record rejoins through a per-user read instead (which catches up from its own
cursor).

The record holds a 5-byte BLAKE2b digest per user (a false match needs one of 2^40 values among
the watched users: about 10^-8 at 10,000 users), so 10,000 users take 50 KB and the DynamoDB
item limit of 400 KB allows about 70,000. Pure: the digests, and what a stored record says.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

from .exceptions import CheckpointStateError

ROSTER_KEY = "#roster"
DIGEST_BYTES = 5


def digest(user_id: str) -> bytes:
    return hashlib.blake2b(user_id.encode("utf-8"), digest_size=DIGEST_BYTES).digest()


def roster_state(epoch: int, user_ids: Iterable[str]) -> dict[str, Any]:
    packed = b"".join(sorted({digest(user) for user in user_ids}))
    return {"epoch": epoch, "digests": base64.b64encode(packed).decode("ascii")}


def watched_in(state: Mapping[str, Any] | None, epoch: int) -> frozenset[bytes] | None:
    """The digests of the users the stream last moved for in era `epoch`; None when the record
    is of another era or missing (nobody's absence can then be ruled out)."""
    if state is None or state.get("epoch") != epoch:
        return None
    try:
        packed = base64.b64decode(str(state["digests"]), validate=True)
    except (KeyError, ValueError) as error:
        raise CheckpointStateError(f"the roster item is unreadable: {error}") from error
    if len(packed) % DIGEST_BYTES:
        raise CheckpointStateError(f"the roster item holds {len(packed)} bytes of digests")
    return frozenset(packed[i : i + DIGEST_BYTES] for i in range(0, len(packed), DIGEST_BYTES))
