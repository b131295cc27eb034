"""Whom the tenant stream moved for: the roster, kept in the tenant item.

A seat says up to which log_id a user's events are delivered, as long as the stream never moved
without the user. It can: a user taken off the watch list keeps its seat while the stream moves
on, and an overlapping run can seat a user while this run moves the stream without it. Either
way the seat, if trusted, loses the windows read meanwhile. So the stream moves only with its
members written beside its checkpoint, in the same conditional write (TenantState.roster): a
run whose view of the members is stale cannot move it, and a seated user missing from the
roster rejoins through a per-user read, which catches up from its own cursor.

A member is a 5-byte BLAKE2b digest (a false match needs one of 2^40 values among the watched
users: about 10^-8 at 10,000 users); compressed with the rest of the tenant item, 10,000 users
take 50 KB and the item's 358,400-byte budget holds about 71,000. Pure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from functools import lru_cache

from .exceptions import CheckpointStateError

DIGEST_BYTES = 5


def digest(user_id: str) -> bytes:
    return hashlib.blake2b(user_id.encode("utf-8"), digest_size=DIGEST_BYTES).digest()


def pack(user_ids: Iterable[str]) -> str:
    return base64.b64encode(b"".join(sorted({digest(user) for user in user_ids}))).decode("ascii")


# A run asks once per seated user (and per tenant item write): the roster is unpacked once.
@lru_cache(maxsize=4)
def unpack(packed: str) -> frozenset[bytes]:
    try:
        raw = base64.b64decode(packed, validate=True)
    except (binascii.Error, ValueError) as error:
        raise CheckpointStateError(f"the tenant item's roster is unreadable: {error}") from error
    if len(raw) % DIGEST_BYTES:
        raise CheckpointStateError(f"the tenant item's roster holds {len(raw)} bytes of digests")
    return frozenset(raw[i : i + DIGEST_BYTES] for i in range(0, len(raw), DIGEST_BYTES))
