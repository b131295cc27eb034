"""The shared item's one watermark and a watched user's backlog read late (issue #23's review,
suspicion 5): the finding is lost, never doubled, and the loss is reported.

The shipped pack's cross-user correlation ("failed logins of several watched users from one IP
within 60 minutes") through SharedCorrelations on the CLI's SQLite checkpoint store, one batch per
watched user as a run applies them. docs/sigma.md, "Not yet", names the limit; these tests pin
what it costs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from log_forwarder.cli.local import SqliteCheckpointStore
from log_forwarder.detections import DetectionSettings, RuleSet, default_plan
from log_forwarder.events import LogEvent
from log_forwarder.records import batch_id_for
from log_forwarder.shared_correlations import Applied, SharedCorrelations, UserBatch

T0 = 1_780_000_000_000
MINUTE = 60_000
ATTACKER = "198.51.100.7"
_ids = iter(range(10**6))


def failure(user: str, at_ms: int, ip: str = ATTACKER) -> LogEvent:
    log_id = f"9000{next(_ids):052d}"
    raw = {"log_id": log_id, "type": "f", "user_id": user, "ip": ip, "date": at_ms}
    return LogEvent(at_ms, log_id, raw)


def apply_in_turn(root: Path, batches: Sequence[Sequence[LogEvent]]) -> list[Applied]:
    """Each watched user's batch applied to the shared item, in the order given."""
    rules = RuleSet.of(default_plan(DetectionSettings()))
    assert rules.shared is not None
    root.mkdir(exist_ok=True)
    shared = SharedCorrelations(SqliteCheckpointStore(root / "checkpoints.sqlite3"), lambda: T0)
    applied = []
    for events in batches:
        batch_id = batch_id_for([e.log_id for e in events])
        applied.append(
            shared.apply(
                rules.shared,
                rules.plan,
                events,
                user_id=str(events[0].raw["user_id"]),
                render=lambda found, skipped: [],
                deliver=lambda delivery: None,
                lease_until_ms=T0 + 300_000,
                batch=UserBatch(batch_id, False, frozenset({batch_id})),
            )
        )
    return applied


def test_a_backlog_read_after_a_newer_users_events_loses_the_shared_finding_and_says_so(
    tmp_path: Path,
) -> None:
    # GIVEN alice and bob failing from one IP 10 minutes apart (one finding, read in date order),
    # and alice failing again 3 hours later from elsewhere
    alice = [failure("auth0|alice", T0), failure("auth0|alice", T0 + 180 * MINUTE, "192.0.2.9")]
    bob = [failure("auth0|bob", T0 + 10 * MINUTE)]
    in_order = apply_in_turn(tmp_path / "a", [alice[:1], bob, alice[1:]])
    assert sum(len(a.findings) for a in in_order) == 1
    # WHEN bob's backlog is read after alice's newer events moved the item's watermark
    late = apply_in_turn(tmp_path / "b", [alice, bob])
    # THEN the finding is lost (not doubled), and bob's failure is reported as not counted
    assert [len(a.findings) for a in late] == [0, 0]
    (skip,) = late[1].skipped
    assert (skip.reason, skip.log_ids) == ("too_late", (bob[0].log_id,))


def test_a_backlog_within_the_timespan_of_the_watermark_still_finds_once(tmp_path: Path) -> None:
    # GIVEN alice's newer failure only 50 minutes after bob's: within the hour the item looks back
    alice = [failure("auth0|alice", T0), failure("auth0|alice", T0 + 60 * MINUTE, "192.0.2.9")]
    bob = [failure("auth0|bob", T0 + 10 * MINUTE)]
    late = apply_in_turn(tmp_path, [alice, bob, bob])  # bob's batch redelivered too
    # THEN one finding, once, and nothing skipped
    assert [len(a.findings) for a in late] == [0, 1, 0]
    assert [a.skipped for a in late] == [(), (), ()]
