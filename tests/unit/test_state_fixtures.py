"""The stored items earlier versions wrote (tests/fixtures/state/), read by this release: every
item, from DynamoDB and from `run --local`'s SQLite store; and the CLI's writers, which leave a
newer release's item as it is."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from devtools.state_fixtures import fixture_items
from log_forwarder.cli.local import SqliteCheckpointStore
from log_forwarder.cli.status import statuses
from log_forwarder.cursor import CURSOR_STATE, Cursor
from log_forwarder.detections import DETECTION_STATE
from log_forwarder.exceptions import NewerStateError
from log_forwarder.read_mode import TENANT_KEY, TenantState
from log_forwarder.store import decode_state
from tests.fakes import FakeAuth0, InMemoryCheckpointStore, RecordingSink
from tests.property.test_cursor_properties import BASE_MS, make_forwarder
from tests.state_v1 import CURSOR_KEYS_ADDED_SINCE_V1, TENANT_KEYS_ADDED_SINCE_V1

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "state"
LAST_V1 = FIXTURES / "v1" / "096dcca"
FIRST_V1 = FIXTURES / "v1" / "dc04f1d"
# A v1 detection state (the hand-written rules'), as this release writes it back: empty v2.
RESTARTED_DETECTIONS = {"v": 1, "written_v": DETECTION_STATE.version, "c": {}}


def test_every_item_the_last_v1_release_wrote_reads_and_is_written_as_it_was() -> None:
    items = list(fixture_items(LAST_V1))
    assert len(items) == 12
    for item in items:
        key = item["user_id"]["S"]
        state = decode_state(key, item["state"]["B"])
        if key == TENANT_KEY:
            assert TenantState.from_state(state).to_state() == {
                **state,
                **TENANT_KEYS_ADDED_SINCE_V1,
            }
        else:
            # v2 is v1's last shape: the same keys, and the version that wrote it; the detection
            # rules' state of the hand-written rules starts afresh (detections._state_from_v1)
            cursor = Cursor.from_state(state, item=key)
            expected = {**state, **CURSOR_KEYS_ADDED_SINCE_V1, "written_v": CURSOR_STATE.version}
            if state.get("detections"):
                expected["detections"] = RESTARTED_DETECTIONS
            assert cursor.to_state() == expected, key


def test_every_item_the_first_releases_wrote_reads_its_single_intent_a_list() -> None:
    cursors = {
        item["user_id"]["S"]: Cursor.from_state(decode_state("u", item["state"]["B"]))
        for item in fixture_items(FIRST_V1)
    }
    assert len(cursors) == 3
    pending = cursors["auth0|fixture-first-pending"].outbox.pending
    assert len(pending) == 1 and len(pending[0].log_ids) == 2
    assert pending[0].lease_until_ms == 0  # no lease then: free to redeliver
    assert not cursors["auth0|fixture-first-fresh"].outbox
    stored = cursors["auth0|fixture-first-pending"].to_state()
    assert isinstance(stored["pending"], list) and stored["written_v"] == CURSOR_STATE.version


@pytest.fixture
def local_store(tmp_path: Path) -> SqliteCheckpointStore:
    """A copy of the SQLite file the last v1 release left."""
    path = tmp_path / "checkpoints.sqlite3"
    shutil.copyfile(LAST_V1 / "checkpoints.sqlite3", path)
    return SqliteCheckpointStore(path)


def test_the_sqlite_store_it_left_is_read_and_a_newer_releases_item_left_as_it_is(
    local_store: SqliteCheckpointStore,
) -> None:
    # GIVEN the SQLite store v1 left, where a newer release rewrote one user
    users = local_store.watched_users()
    assert len(users) == 10
    loaded = local_store.load([*users, TENANT_KEY])
    assert {Cursor.from_state(loaded[u].state, item=u).to_state()["v"] for u in users} == {1}
    newer = {
        **loaded["auth0|fixture-ahead"].state,
        "v": CURSOR_STATE.version + 1,
        "written_v": CURSOR_STATE.version + 1,
    }
    local_store.save(
        "auth0|fixture-ahead", newer, expected_version=loaded["auth0|fixture-ahead"].version
    )
    row = "SELECT version, state, summary, write_token FROM checkpoints WHERE user_id = ?"
    before = local_store._db.execute(row, ("auth0|fixture-ahead",)).fetchone()
    # WHEN `run --local` starts (it gives up the leases a killed run left)
    released = local_store.release_leases()
    # THEN the pending user's lease is given up, the newer release's item is not touched
    assert released == ["auth0|fixture-pending"]
    assert local_store._db.execute(row, ("auth0|fixture-ahead",)).fetchone() == before
    # AND `status --local` shows it as not read, the others as they were
    rows, _ = statuses(local_store.items(), dict.fromkeys(users, "local"), 0.0)
    shown = {r.user_id: r for r in rows}
    newer_v = CURSOR_STATE.version + 1
    assert (
        shown["auth0|fixture-ahead"].not_read
        == f"written by a newer release (v{newer_v}), not read"
    )
    assert shown["auth0|fixture-failing"].state == "failing"
    assert shown["auth0|fixture-pending"].pending_events == 2
    local_store.close()
    with sqlite3.connect(LAST_V1 / "checkpoints.sqlite3") as untouched:  # the fixture itself
        assert untouched.execute("SELECT count(*) FROM checkpoints").fetchone() == (12,)


def test_a_push_leaves_a_newer_releases_checkpoint_untouched_and_says_so() -> None:
    # GIVEN a user whose checkpoint a newer release wrote, readable from that release on
    from log_forwarder.chunk import Chunk, RealtimeSpan
    from log_forwarder.events import iso_ms, parse_event
    from log_forwarder.gaps import ReadFacts

    store = InMemoryCheckpointStore()
    user = "auth0|u1"
    newer = CURSOR_STATE.version + 1
    store.save(user, {**Cursor().to_state(), "v": newer, "written_v": newer}, expected_version=None)
    before = store.item(user)
    sink = RecordingSink("s3")
    forwarder = make_forwarder(FakeAuth0(now_ms=BASE_MS), [sink], store)
    event = parse_event({"log_id": "9001", "date": iso_ms(BASE_MS), "type": "s", "user_id": user})
    chunk = Chunk([event], "realtime", RealtimeSpan(), ReadFacts(), returned=1)
    # WHEN Auth0's stream pushes an event of it
    report = forwarder.push({user: chunk}, remaining_ms=lambda: 30_000)
    # THEN nothing is delivered or written, and the report says why
    assert store.item(user) == before and sink.log_ids() == []
    (only,) = report.users
    assert only.newer_state and only.error is not None
    assert only.error.startswith(f"{NewerStateError.__name__}: checkpoint of {user!r} was written")
