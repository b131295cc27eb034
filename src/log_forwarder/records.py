"""The small value types that cross the boundary between the pure core and the sinks."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from .retry import UNLIMITED, Deadline


@dataclass(frozen=True, slots=True)
class OutputLine:
    """One forwarded record: a single-line JSON document and the instant it describes.

    `log_id` is None for records the forwarder writes itself (gap reports).
    """

    timestamp_ms: int
    line: str
    log_id: str | None = None
    record_key: str | None = None  # what identifies one of the forwarder's own records

    @property
    def key(self) -> str | None:
        """What identifies the line in a destination: its event's log_id, or its record key."""
        return self.log_id if self.log_id is not None else self.record_key


@dataclass(frozen=True, slots=True)
class Gap:
    """A user's events that existed but cannot be forwarded (expired, or out of reach).

    Never silent: it becomes a record in every destination, a metric and a log line.
    """

    from_ms: int | None  # exclusive; None when the start of the missing span is unknown
    to_ms: int  # exclusive: events dated `to_ms` and later are forwarded
    reason: str
    # The events it gives up, when they are known by log_id (pending events Auth0 no longer
    # returns); such a gap names them rather than a span of dates the read passes over.
    log_ids: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one destination did with one batch."""

    destination: str
    accepted: int
    # CloudWatch refuses events older than 14 days / its retention, or 2 h in the future; those
    # are written with the delivery time as timestamp instead (their Auth0 `date` is unchanged).
    restamped: int = 0
    # Events too large for the destination, replaced by a marker record naming their log_id.
    oversized: int = 0
    # Recovery after a crash: lines found already delivered and therefore not written again.
    already_present: int = 0
    # Recovery after a crash, at a destination that cannot be read back (it may repeat,
    # sinks/registry.py): lines sent again that the interrupted run may have delivered already.
    repeated: int = 0
    objects: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One batch as every destination receives it: the lines of one user, in timestamp order.

    `redelivery`: a batch an interrupted run may already have written in part. A destination
    then writes only what it does not hold yet. `deadline`: when the run must be done; no retry
    waits past it.
    """

    user_id: str
    batch_id: str
    lines: tuple[OutputLine, ...]
    redelivery: bool = False
    deadline: Deadline = UNLIMITED
    # For a redelivery: when the interrupted run wrote its intent. A line it restamped with its
    # delivery time (an event dated too far ahead) is stored at or after this.
    since_ms: int | None = None
    # The S3 object of the batch's intent, shared with other users' batches of one push
    # (sinks/gathering.py); None: the user's own object, named by the batch id.
    shared_object: str | None = None


def batch_id_for(log_ids: Iterable[str]) -> str:
    """A 32-hex-char id determined by the set of log ids alone (order and repeats do not matter)."""
    digest = hashlib.sha256()
    for log_id in sorted(set(log_ids)):
        # Length-prefixed so that no two different sets can produce the same byte stream.
        encoded = log_id.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "big"))
        digest.update(encoded)
    return digest.hexdigest()[:32]
