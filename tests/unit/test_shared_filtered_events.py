"""A watched user's events the output filter keeps out reach the shared item once, also when the
batch's commit is lost: they have no intent, so the re-read plans them as a fresh batch under
another batch id, and the item remembers them by digest (`AppliedBatch.kept_out`). The review of
#25 (H1) wrote these against the first batch memory, where each applied them twice."""

from __future__ import annotations

from typing import Any

import pytest

from log_forwarder import sigma_step
from log_forwarder.config import detection_settings
from log_forwarder.detections import Detections
from log_forwarder.exceptions import CheckpointError
from log_forwarder.filters import EventFilter
from log_forwarder.planner import OutputPolicy
from tests.fakes import FakeAuth0, InMemoryCheckpointStore, InMemoryPushedLedger, RecordingSink
from tests.property.test_cursor_properties import BASE_MS, make_forwarder
from tests.unit.test_realtime_queue import USER, event


class LoseCommit(InMemoryCheckpointStore):
    """Refuses the user's save number `at` (counted from 1) once armed: a lost commit."""

    armed = False
    saves = 0
    at = 1

    def save(self, user_id: str, state: Any, **kwargs: Any) -> int:
        if self.armed and not user_id.startswith("#"):
            self.saves += 1
            if self.saves == self.at:
                self.armed = False
                raise CheckpointError("simulated: the commit never reached DynamoDB")
        return super().save(user_id, state, **kwargs)


@pytest.fixture
def applied(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """log_ids the shared item's step applies (its calls carry max_groups=128)."""
    seen: list[str] = []
    real = sigma_step.step

    def spy(plan, state, events, limits=None):  # type: ignore[no-untyped-def]
        limits = limits or sigma_step.Limits()
        if limits.max_groups == 128:
            seen.extend(e.log_id for e in events)
        return real(plan, state, events, limits)

    monkeypatch.setattr(sigma_step, "step", spy)
    return seen


def _run(
    types: list[str], at: int, applied: list[str], later: int = 0
) -> tuple[list[str], list[str]]:
    store, sink = LoseCommit(), RecordingSink("s3")
    store.at = at
    fake = FakeAuth0(now_ms=BASE_MS)
    output = OutputPolicy(
        keep=EventFilter(exclude=frozenset({"f"})),
        detections=Detections(detection_settings({})),
    )
    forwarder = make_forwarder(fake, [sink], store, InMemoryPushedLedger(), output=output)
    forwarder.run([USER], remaining_ms=lambda: 10**9)
    for n, kind in enumerate(types):
        fake.add({**event(USER, n), "type": kind, "ip": "203.0.113.9"})
    fake.now_ms = BASE_MS + 60_000
    store.armed = True
    first = forwarder.run([USER], remaining_ms=lambda: 10**9)
    assert first.users[0].error is not None  # the commit was lost
    for n in range(len(types), len(types) + later):  # failures that came meanwhile
        fake.add({**event(USER, n), "type": "f", "ip": "203.0.113.9"})
    fake.now_ms = BASE_MS + 900_000  # the lease long over
    forwarder.run([USER], remaining_ms=lambda: 10**9)
    return list(applied), sink.log_ids()


def test_a_filtered_only_batch_whose_commit_was_lost_is_applied_once(applied: list[str]) -> None:
    # the only save is the commit (no event shown: no intent)
    log_ids, forwarded = _run(["f", "f", "f"], at=1, applied=applied)
    assert forwarded == []
    assert len(log_ids) == len(set(log_ids)), log_ids


def test_a_mixed_batch_whose_commit_was_lost_applies_its_filtered_events_once(
    applied: list[str],
) -> None:
    # save 1 = intent (the success), save 2 = commit: lost
    log_ids, forwarded = _run(["s", "f", "f"], at=2, applied=applied)
    assert len(forwarded) == len(set(forwarded)) == 1
    assert len(log_ids) == len(set(log_ids)), log_ids


def test_a_filtered_only_batch_whose_commit_was_lost_then_one_more_failure_once(
    applied: list[str],
) -> None:
    log_ids, _ = _run(["f", "f", "f"], at=1, applied=applied, later=1)
    assert len(log_ids) == len(set(log_ids)), log_ids


class LedgerDiesOnce(InMemoryPushedLedger):
    armed = True

    def record(self, *args: Any, **kwargs: Any) -> Any:
        if self.armed:
            self.armed = False
            raise CheckpointError("simulated: the invocation died before the pushed record")
        return super().record(*args, **kwargs)


def test_a_push_dying_before_its_record_applies_its_filtered_events_once(
    applied: list[str],
) -> None:
    from log_forwarder.realtime import Pushed

    store, sink, ledger = InMemoryCheckpointStore(), RecordingSink("s3"), LedgerDiesOnce()
    ledger.armed = False
    fake = FakeAuth0(now_ms=BASE_MS)
    output = OutputPolicy(
        keep=EventFilter(exclude=frozenset({"f"})),
        detections=Detections(detection_settings({})),
    )
    forwarder = make_forwarder(fake, [sink], store, ledger, output=output)
    forwarder.run([USER], remaining_ms=lambda: 10**9)
    events = [{**event(USER, n), "type": t, "ip": "203.0.113.9"} for n, t in enumerate("sff")]
    fake.now_ms, ledger.armed = BASE_MS + 1_000, True
    first = forwarder.push(
        Pushed.of(iter(events), frozenset([USER])).chunks, remaining_ms=lambda: 30_000
    )
    assert first.users[0].error is not None
    # the queue delivers the message again once the lease is over
    fake.now_ms = BASE_MS + 400_000
    forwarder.push(Pushed.of(iter(events), frozenset([USER])).chunks, remaining_ms=lambda: 30_000)
    assert len(sink.log_ids()) == len(set(sink.log_ids())) == 1
    assert len(applied) == len(set(applied)), applied
