"""What every user of one run shares, and how one user's failure is kept from the others.

Used by both ways of reading: per user (forwarder.py) and the tenant stream (stream_run.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .cursor import Cursor
from .events import iso_ms
from .exceptions import CheckpointConflict, CheckpointError, ForwarderError, OutOfTime
from .executor import Checkpoint, execute
from .fetch import Chunk
from .planner import Batch, PlanContext, plan_chunk
from .report import UserReport
from .sinks import Sink
from .source import CallScope

logger = logging.getLogger(__name__)

# Leases assume the clocks of two invocations agree within this (Lambda's hosts keep NTP time).
LEASE_CLOCK_MARGIN_MS = 30_000
MAX_LEASE_MS = 15 * 60_000


@dataclass(frozen=True, slots=True)
class RunContext:
    """What every user of one run shares."""

    scope: CallScope
    remaining_ms: Callable[[], int]
    margin_ms: int
    out_of_time: threading.Event

    def lease_until(self, now_ms: int) -> int:
        """Until when an intent written now is this run's: the invocation's end (a Lambda runs
        15 minutes at most), plus a margin for the clocks of two runs not quite agreeing."""
        return now_ms + min(self.remaining_ms(), MAX_LEASE_MS) + LEASE_CLOCK_MARGIN_MS

    def time_is_up(self) -> bool:
        """No new chunk or user starts: the margin is for finishing what is under way."""
        return self.remaining_ms() < self.margin_ms


def guarded(report: UserReport, work: Callable[[], None]) -> bool:
    """Run one user's work; what goes wrong is that user's alone, and said in its report.

    True when the failure should also be written on the user's checkpoint for `status`: a
    ForwarderError that is not the checkpoint table's own.
    """
    user_id = report.user_id
    try:
        work()
    except OutOfTime as exc:
        report.deferred = True
        logger.warning("User deferred: out of time", extra={"user_id": user_id, "why": str(exc)})
    except CheckpointConflict as exc:
        # Another run moved this user's checkpoint first: it owns the user now. Conditional
        # writes kept this run from delivering anything twice; nothing failed.
        report.busy = True
        logger.warning("User skipped: " + str(exc), extra={"user_id": user_id})
    except ForwarderError as exc:
        # One user's failure must not cost the others their run.
        report.error = f"{type(exc).__name__}: {exc}"
        logger.error("User not forwarded", extra={"user_id": user_id, "error": report.error})
        return not isinstance(exc, CheckpointError)
    except Exception as exc:
        # A bug. The other users still finish (their deliveries must not be cut in half);
        # then the run fails with this exception, traceback and all.
        report.bug = exc
        logger.exception("User not forwarded: unexpected error", extra={"user_id": user_id})
    return False


def leased_elsewhere(report: UserReport, cursor: Cursor, now_ms: int) -> bool:
    """Another run is still delivering this user's pending batch (or died doing so and its lease
    has not run out): redelivering it now could write it twice, so the user is skipped."""
    leased_until = cursor.leased_until(now_ms)
    if leased_until is None:
        return False
    report.busy = True
    logger.warning(
        "User skipped: another run holds its pending events",
        extra={"user_id": report.user_id, "lease_until": iso_ms(leased_until)},
    )
    return True


def deliver_chunk(
    report: UserReport,
    checkpoint: Checkpoint,
    chunk: Chunk,
    context: PlanContext,
    sinks: Sequence[Sink],
) -> None:
    """One chunk of a user's events through the planner and the executor: per batch, intent,
    every destination, commit."""
    report.fetched += chunk.returned
    plan = plan_chunk(checkpoint.cursor, chunk, context)
    report.add_read(plan.selection)
    for batch in plan.batches:
        execute(batch, checkpoint, sinks, report.add_delivery)
        report.add_batch(batch)
        log_batch(report.user_id, batch)


def log_batch(user_id: str, batch: Batch) -> None:
    """What a committed batch says that an operator must hear about (the destinations hold it
    too)."""
    for gap in batch.gaps:
        logger.warning(
            "Gap: events could not be forwarded",
            extra={
                "user_id": user_id,
                "from": iso_ms(gap.from_ms),
                "to": iso_ms(gap.to_ms),
                "reason": gap.reason,
            },
        )
    if batch.quarantined:
        logger.warning(
            "Malformed entries quarantined (written to the destinations as records)",
            extra={
                "user_id": user_id,
                "count": len(batch.quarantined),
                "reasons": sorted({entry.reason for entry in batch.quarantined}),
            },
        )
    if batch.future_dated:
        logger.warning(
            "Events dated in the future (a wrong clock upstream); forwarded with their dates",
            extra={"user_id": user_id, "count": batch.future_dated},
        )
    if batch.abandoned:
        # Auth0 no longer returns them (expired?): they may or may not have been delivered
        # before the crash. Said, rather than waited for.
        logger.warning(
            "Pending events from an interrupted run are gone from Auth0",
            extra={"user_id": user_id, "count": batch.abandoned},
        )
