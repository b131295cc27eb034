"""The shared detection item remembers at most MAX_APPLIED batches an hour: past it, the batches
it forgets early are counted (SharedBatchesForgotten, and its alarm), not forgotten in silence."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from log_forwarder.cli.local import SqliteCheckpointStore
from log_forwarder.detections import DetectionSettings, RuleSet, default_plan
from log_forwarder.events import LogEvent
from log_forwarder.records import batch_id_for
from log_forwarder.shared_correlations import (
    MAX_APPLIED,
    SHARED_KEY,
    SHARED_STATE,
    SharedCorrelations,
    UserBatch,
)

T0 = 1_780_000_000_000


def _failure(index: int) -> LogEvent:
    log_id = f"9000{index:052d}"
    user = f"auth0|user-{index}"
    raw = {"log_id": log_id, "type": "fp", "user_id": user, "ip": "198.51.100.7", "date": T0}
    return LogEvent(T0 + index, log_id, raw)


def _apply_batches(root: Path, count: int) -> list[Any]:
    rules = RuleSet.of(default_plan(DetectionSettings()))
    assert rules.shared is not None
    store = SqliteCheckpointStore(root / "checkpoints.sqlite3")
    clock = [T0]
    shared = SharedCorrelations(store, lambda: clock[0])
    applied = []
    for index in range(count):
        event = _failure(index)
        batch_id = batch_id_for([event.log_id])
        clock[0] = T0 + index  # every batch within the item's hour
        applied.append(
            shared.apply(
                rules.shared,
                rules.plan,
                [event],
                user_id=str(event.raw["user_id"]),
                render=lambda found, skipped: [],
                deliver=lambda delivery: None,
                lease_until_ms=clock[0] + 300_000,
                batch=UserBatch(batch_id, False, frozenset({batch_id})),
            )
        )
    stored = store.load([SHARED_KEY])[SHARED_KEY]
    state = SHARED_STATE.decode(stored.readable_state(), item=SHARED_KEY)
    assert len(state.applied) == min(count, MAX_APPLIED)
    return applied


def test_batches_within_the_cap_forget_nothing(tmp_path: Path) -> None:
    # GIVEN as many users' batches within an hour as the item remembers
    applied = _apply_batches(tmp_path, MAX_APPLIED)
    # THEN none was forgotten early
    assert sum(a.forgotten for a in applied) == 0


def test_batches_past_the_cap_are_counted_as_forgotten(tmp_path: Path) -> None:
    # GIVEN 20 more batches within the hour than the item remembers
    applied = _apply_batches(tmp_path, MAX_APPLIED + 20)
    # THEN each one pushed out early is counted, once, by the apply that pushed it out
    assert [a.forgotten for a in applied[-20:]] == [1] * 20
    assert sum(a.forgotten for a in applied) == 20
