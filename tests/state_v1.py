"""What v1 wrote, frozen: the hand-written encoders the codec replaced, copied from 096dcca
(`Cursor.to_state`, `DetectionState.to_state`, `TenantState.to_state`) and from dc04f1d (the
first releases' `Cursor.to_state`), over today's values (v1's detection state over a copy of its
record, which the Sigma rules replaced). The property tests check that a v1 item
made of any value reads back as that value, and that what today writes for it is what v1 wrote,
its version header aside. Never change them: they are evidence, like tests/fixtures/state/."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from log_forwarder.cursor import Cursor
from log_forwarder.read_mode import TenantState


# 096dcca's detection state (the seven hand-written rules'), which detections.py no longer has.
@dataclass(frozen=True, slots=True)
class FailureV1:
    date_ms: int
    log_id: str
    ip: str | None


@dataclass(frozen=True, slots=True)
class BurstV1:
    start_ms: int
    count: int
    next_at: int
    success_fired: bool = False


@dataclass(frozen=True, slots=True)
class DetectionStateV1:
    failures: tuple[FailureV1, ...] = ()
    last_failure_ms: int | None = None
    burst: BurstV1 | None = None
    logins_seen: int = 0
    sources: tuple[tuple[str, int], ...] = ()
    dedup: tuple[tuple[str, int, int], ...] = ()


def cursor_v1(cursor: Cursor) -> dict[str, Any]:
    """096dcca's Cursor.to_state."""
    position, status, seat = cursor.position, cursor.status, cursor.seat
    return {
        "v": 1,
        "floor": position.floor_ms,
        "watermark": position.watermark_ms,
        "recent": [[date, log_id] for date, log_id in position.recent],
        "ahead": [[date, log_id] for date, log_id in position.ahead],
        "pending": [
            {
                "batch_id": p.batch_id,
                "log_ids": sorted(p.log_ids),
                "lease": p.lease_until_ms,
                "at": p.written_ms,
            }
            for p in cursor.outbox.pending
        ],
        "backlog": status.backlog,
        "forwarded_total": status.forwarded_total,
        "gaps_total": status.gaps_total,
        "verified": position.verified_ms,
        "quarantined": [[digest, seen] for digest, seen in position.quarantined],
        "missing_since": status.missing_since_ms,
        "detections": cursor.detections,
        "last_gap": list(status.last_gap) if status.last_gap else None,
        "last_error": status.last_error,
        "last_error_at": status.last_error_ms,
        "seat": None
        if seat is None
        else {
            "epoch": seat.epoch,
            "joined": seat.joined_ms,
            "pos": seat.pos,
            "above": sorted(seat.above),
        },
    }


def cursor_first_v1(cursor: Cursor) -> dict[str, Any]:
    """dc04f1d's Cursor.to_state: one pending intent at most, as an object (no lease then)."""
    position, status = cursor.position, cursor.status
    pending = cursor.outbox.pending[0] if cursor.outbox.pending else None
    return {
        "v": 1,
        "floor": position.floor_ms,
        "watermark": position.watermark_ms,
        "recent": [[date, log_id] for date, log_id in position.recent],
        "pending": None
        if pending is None
        else {"batch_id": pending.batch_id, "log_ids": sorted(pending.log_ids)},
        "backlog": status.backlog,
        "forwarded_total": status.forwarded_total,
        "gaps_total": status.gaps_total,
    }


def detections_v1(state: DetectionStateV1) -> dict[str, Any]:
    """096dcca's DetectionState.to_state."""
    return {
        "v": 1,
        "fl": [[f.date_ms, f.log_id, f.ip] for f in state.failures],
        "lf": state.last_failure_ms,
        "b": None
        if state.burst is None
        else [
            state.burst.start_ms,
            state.burst.count,
            state.burst.next_at,
            state.burst.success_fired,
        ],
        "n": state.logins_seen,
        "src": [[key, ms] for key, ms in state.sources],
        "dd": [[key, ms, count] for key, ms, count in state.dedup],
    }


def tenant_v1(state: TenantState) -> dict[str, Any]:
    """096dcca's TenantState.to_state (its `extra` was empty for what it built itself)."""
    return {
        "v": 1,
        "mode": state.mode,
        "reason": state.reason,
        "epoch": state.epoch,
        "position": state.position,
        "verified": state.verified_ms,
        "complete_reads": [[started, end] for started, end in state.complete_reads],
        "roster": state.roster,
        "read_since_complete": state.read_since_complete,
        "rate_eps": state.rate_eps,
        "per_user_calls": state.per_user_calls,
        "period_s": state.period_s,
        "last_run": state.last_run_ms,
        "probe_position": state.probe_position,
        "probe_since": state.probe_since_ms,
        "probed_at": state.probed_at_ms,
        "refused": state.refused,
        "refused_at": state.refused_at_ms,
    }


# Keys added to a layout since v1 without a new reader floor (codec.py: an absent key takes its
# default), at the value an item v1 wrote reads as. Today's encoder writes them beside v1's keys;
# a v1 reader ignores them. Extend these when a key is added; never remove one.
CURSOR_KEYS_ADDED_SINCE_V1: dict[str, Any] = {
    "last_read": None,
    "lookup": None,
    "looked_up": None,
    "pushed_until": None,
}
TENANT_KEYS_ADDED_SINCE_V1: dict[str, Any] = {
    "failure": None,
    "failure_fix": None,
    "failing_since": None,
    "failed_at": None,
}
