"""Hypothesis: the shared detection item (shared_correlations.py) finds each cross-user finding
once, whatever crashes, redeliveries and other runs' writes happen around it.

Random failed logins of three watched users from a few IPs are applied batch by batch, through a
real checkpoint store (the CLI's SQLite file), by two SharedCorrelations (two runs). Around each
apply, one of: nothing; a crash as the finding's delivery starts (the pending finding is left in
the item); a crash after a write went through but before its answer came back (the write is
kept); another run writing the item in between (a lost race); for a watched user's batch, the
invocation dying before the shared step (a destination failed), its redelivery then coming in
two parts. A crashed batch is applied again, as the user's redelivery does, and a batch may be
applied twice (a window read again). The destination writes a redelivery's lines only where it
does not hold them, as the real ones do. Both ways the item remembers what it applied are run:
a watched user's batch by its batch id (UserBatch), the tenant's events by their log_ids.

Then: every finding a clean pass finds (one run, each batch once, no fault) is in the destination
exactly once, nothing else is, and nothing is left pending.
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from log_forwarder.cli.local import SqliteCheckpointStore
from log_forwarder.convert import ConvertContext
from log_forwarder.detections import DetectionSettings, RuleSet, default_plan
from log_forwarder.events import LogEvent
from log_forwarder.planner import detection_lines
from log_forwarder.records import Delivery, batch_id_for
from log_forwarder.shared_correlations import (
    SHARED_KEY,
    SHARED_STATE,
    SharedCorrelations,
    UserBatch,
)
from log_forwarder.store import CheckpointStore, StoredCheckpoint, SummaryValue

SCALE = int(os.environ.get("PROPERTY_SCALE", "1"))
USERS = ("auth0|a", "auth0|b", "auth0|c")
IPS = ("198.51.100.1", "198.51.100.2", "203.0.113.3")
T0 = 1_780_000_000_000
MINUTE = 60_000
LEASE_MS = 5 * MINUTE
FAULTS = ("none", "crash_delivering", "answer_lost", "raced", "died_before")


class Crash(Exception):
    """The invocation died here."""


class FaultyStore:
    """A real store, with one fault armed for a coming save of the shared item."""

    def __init__(self, store: CheckpointStore) -> None:
        self.store = store
        self.answer_lost_at: int | None = None  # the save (counted from 0) whose answer is lost
        self.race_at: int | None = None  # before this save, another run writes the item
        self.saves = 0

    def load(self, user_ids: Sequence[str], **kwargs: Any) -> dict[str, StoredCheckpoint]:
        return self.store.load(user_ids, **kwargs)

    def save(
        self,
        user_id: str,
        state: Mapping[str, Any],
        *,
        expected_version: int | None,
        summary: Mapping[str, SummaryValue] = {},
        deadline: Any = None,
    ) -> int:
        count, self.saves = self.saves, self.saves + 1
        if count == self.race_at:
            # Another run wrote the item first (the same state: it found nothing new).
            current = self.store.load([SHARED_KEY]).get(SHARED_KEY)
            if current is not None:
                self.store.save(
                    SHARED_KEY, current.readable_state(), expected_version=current.version
                )
        version = self.store.save(
            user_id, state, expected_version=expected_version, summary=summary
        )
        if count == self.answer_lost_at:
            raise Crash("the write went through; its answer was lost")
        return version

    def watched_users(self) -> list[str]:
        return []


class Destination:
    """Lines by text; a redelivery writes only the lines it does not hold yet."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.fail_next = False

    def deliver(self, delivery: Delivery) -> None:
        if self.fail_next:
            self.fail_next = False
            raise Crash("the invocation died while delivering")
        held = set(self.lines)
        for line in delivery.lines:
            if not (delivery.redelivery and line.line in held):
                self.lines.append(line.line)


def _render(findings: Sequence[Any], skipped: Sequence[Any]) -> list[Any]:
    convert = ConvertContext(
        tenant="t.example", watched_user_id="", forwarded_at_ms=T0, source="user_logs"
    )
    return detection_lines(findings, skipped, convert)


def _failure(index: int, user: str, ip: str, at_ms: int) -> LogEvent:
    log_id = f"9000{index:052d}"
    raw = {"log_id": log_id, "type": "fp", "user_id": user, "ip": ip, "date": at_ms}
    return LogEvent(at_ms, log_id, raw)


batches = st.lists(
    st.lists(
        st.tuples(st.sampled_from(USERS), st.sampled_from(IPS), st.integers(0, 3 * MINUTE)),
        min_size=1,
        max_size=6,
    ),
    min_size=1,
    max_size=8,
)


def _events(drawn: list[list[tuple[str, str, int]]]) -> list[tuple[str, list[LogEvent]]]:
    """Batches of one user each, dated in order (a user's batch is the user's events)."""
    counter = itertools.count()
    now = T0
    out = []
    for batch in drawn:
        user = batch[0][0]
        events = []
        for _user, ip, step_ms in batch:
            now += step_ms
            events.append(_failure(next(counter), user, ip, now))
        out.append((user, events))
    return out


def _finding_ids(lines: Sequence[str]) -> list[str]:
    import json

    records = [json.loads(line)["_forwarder"] for line in lines]
    return [r["finding_id"] for r in records if r["record_type"] == "finding"]


def _parts(events: list[LogEvent]) -> list[list[LogEvent]]:
    """A redelivery in two chunks, cut between two dates (events of one millisecond are judged
    together), or whole when every event has one date."""
    for cut in range(len(events) // 2 or 1, len(events)):
        if events[cut - 1].date_ms != events[cut].date_ms:
            return [events[:cut], events[cut:]]
    return [events]


def _run(
    root: Path,
    plan: RuleSet,
    work: list[tuple[str, list[LogEvent]]],
    faults: list[str],
    *,
    by_batch: bool,
) -> tuple[Destination, SqliteCheckpointStore]:
    store = SqliteCheckpointStore(root / "checkpoints.sqlite3")
    faulty = FaultyStore(store)
    clock = [T0]
    runs = [SharedCorrelations(faulty, lambda: clock[0]) for _ in range(2)]  # type: ignore[arg-type]
    destination = Destination()
    assert plan.shared is not None

    def apply(
        run: SharedCorrelations, user: str, events: list[LogEvent], batch_id: str, again: bool
    ) -> None:
        assert plan.shared is not None
        batch = UserBatch(batch_id, again, frozenset({batch_id})) if by_batch else None
        run.apply(
            plan.shared, plan.plan, events, user_id=user, render=_render,
            deliver=destination.deliver, lease_until_ms=clock[0] + LEASE_MS, batch=batch,
        )  # fmt: skip

    for index, ((user, events), fault) in enumerate(zip(work, itertools.cycle(faults))):
        run = runs[index % 2]
        batch_id = batch_id_for(e.log_id for e in events)
        faulty.saves, faulty.answer_lost_at, faulty.race_at = 0, None, None
        again = False
        if fault == "crash_delivering":
            destination.fail_next = True
        elif fault == "answer_lost":
            faulty.answer_lost_at = index % 3
        elif fault == "raced":
            faulty.race_at = index % 3
        elif fault == "died_before" and by_batch:
            # Never reached the shared step; the next holder of the lease redelivers the
            # batch chunk by chunk, under its id.
            clock[0] += LEASE_MS + 1
            run, again = runs[(index + 1) % 2], True
        chunks = _parts(events) if again else [events]
        for chunk in chunks:
            for attempt in range(4):
                try:
                    apply(run, user, chunk, batch_id, again)
                    break
                except Crash:
                    # The batch is not committed: its redelivery comes once the lease is over.
                    faulty.answer_lost_at = None
                    clock[0] += LEASE_MS + 1
                    run, again = runs[(index + attempt + 1) % 2], True
        # Faults are armed for this batch only.
        destination.fail_next, faulty.answer_lost_at, faulty.race_at = False, None, None
        if index % 4 == 3:  # a window read again: the same events applied twice
            apply(run, user, events, batch_id, True)
        clock[0] += MINUTE
    # A last apply of nothing new delivers whatever an interrupted run left pending.
    clock[0] += LEASE_MS + 1
    user, events = work[-1]
    apply(runs[0], user, events, batch_id_for(e.log_id for e in events), True)
    return destination, store


@settings(
    max_examples=60 * SCALE,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(batches, st.lists(st.sampled_from(FAULTS), min_size=1, max_size=8), st.booleans())
# A redelivery in two parts after an attempt that died before the shared step: its second part
# finds the finding (remembering the batch whole after the first part loses it).
@example(
    drawn=[[("auth0|a", IPS[0], 0), ("auth0|a", IPS[1], 1)], [("auth0|b", IPS[1], 0)]],
    faults=["died_before"],
    by_batch=True,
)
def test_each_cross_user_finding_is_delivered_once_through_crashes_and_races(
    drawn: list[list[tuple[str, str, int]]], faults: list[str], by_batch: bool
) -> None:
    rules = RuleSet.of(default_plan(DetectionSettings()))
    work = _events(drawn)
    with tempfile.TemporaryDirectory() as clean_dir, tempfile.TemporaryDirectory() as faulty_dir:
        clean, _ = _run(Path(clean_dir), rules, work, ["none"], by_batch=by_batch)
        faulty, store = _run(Path(faulty_dir), rules, work, faults, by_batch=by_batch)
        expected = _finding_ids(clean.lines)
        got = _finding_ids(faulty.lines)
        assert sorted(got) == sorted(expected)
        assert len(got) == len(set(got)), "a finding delivered twice"
        item = store.load([SHARED_KEY]).get(SHARED_KEY)
        if item is not None:
            state = SHARED_STATE.decode(item.readable_state(), item="shared item")
            assert state.pending == (), "a finding left pending"
