"""The checkpoint store: the DynamoDB store (on moto's server), the in-memory one and the SQLite
one of `run --local` pass the same tests, so unit tests that use the in-memory store can trust
its semantics, and a local run checkpoints as the function does."""

from __future__ import annotations

import json
import os
import uuid
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from devtools.local_aws import LocalAws, deploy_template
from log_forwarder.checkpoint_store import DynamoCheckpointStore
from log_forwarder.exceptions import CheckpointConflict, CheckpointStateError
from log_forwarder.store import MAX_STATE_BYTES, CheckpointStore
from tests.fakes import InMemoryCheckpointStore


@pytest.fixture(scope="module")
def local_aws() -> Iterator[LocalAws]:
    with LocalAws() as aws:
        yield aws


@dataclass
class Harness:
    store: CheckpointStore
    # What an operator does in the console: set `watch` on an item (creating it if needed).
    set_watch: Callable[[str, Any], None]
    # The raw item, with summary attributes as plain values.
    item: Callable[[str], dict[str, Any]]


def dynamo_harness(aws: LocalAws) -> Harness:
    # A table of its own per test (built from template.yaml), so watch lists do not mix.
    resources = deploy_template(
        aws, stack_name=f"t{uuid.uuid4().hex[:12]}", destinations="cloudwatch"
    )
    client = aws.client("dynamodb")
    table = resources.table_name

    def set_watch(user_id: str, watch: Any) -> None:
        value = {"BOOL": watch} if isinstance(watch, bool) else {"S": str(watch)}
        client.update_item(
            TableName=table,
            Key={"user_id": {"S": user_id}},
            UpdateExpression="SET #w = :w",
            ExpressionAttributeNames={"#w": "watch"},
            ExpressionAttributeValues={":w": value},
        )

    def item(user_id: str) -> dict[str, Any]:
        raw = client.get_item(TableName=table, Key={"user_id": {"S": user_id}}).get("Item", {})
        plain: dict[str, Any] = {}
        for name, attribute in raw.items():
            ((kind, value),) = attribute.items()
            plain[name] = float(value) if kind == "N" else value
        return plain

    return Harness(DynamoCheckpointStore(table, client), set_watch, item)


def memory_harness() -> Harness:
    store = InMemoryCheckpointStore()

    def item(user_id: str) -> dict[str, Any]:
        return {
            name: float(value) if isinstance(value, int) and not isinstance(value, bool) else value
            for name, value in store.item(user_id).items()
        }

    return Harness(store, store.set_watch, item)


def sqlite_harness(path: Path) -> Harness:
    from log_forwarder.cli.local import SqliteCheckpointStore

    store = SqliteCheckpointStore(path / "checkpoints.sqlite3")

    def item(user_id: str) -> dict[str, Any]:
        found = [i for i in store.items() if i["user_id"] == user_id]
        return {k: float(v) if type(v) is int else v for k, v in (found or [{}])[0].items()}

    def set_watch(user_id: str, watch: Any) -> None:
        pytest.skip("SQLite keeps its watch list apart: no `watch` attribute on checkpoints")

    return Harness(store, set_watch, item)


@pytest.fixture(params=["dynamodb", "memory", "sqlite"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Harness:
    if request.param == "dynamodb":
        return dynamo_harness(request.getfixturevalue("local_aws"))
    if request.param == "sqlite":
        return sqlite_harness(tmp_path)
    return memory_harness()


STATE = {"cursor": {"newest_ms": 1_700_000_000_000, "seen": ["a", "b"]}, "gaps": []}


def test_save_then_load_round_trips_state_and_version(harness: Harness) -> None:
    # GIVEN a user with no checkpoint
    store = harness.store
    assert store.load(["u1"]) == {}
    # WHEN the first checkpoint is saved, then a second one on top of it
    first = store.save("u1", STATE, expected_version=None)
    second = store.save("u1", {**STATE, "gaps": [1]}, expected_version=first)
    # THEN versions count up and load returns the latest state
    assert (first, second) == (1, 2)
    loaded = store.load(["u1"])["u1"]
    assert (loaded.user_id, loaded.version, loaded.state) == ("u1", 2, {**STATE, "gaps": [1]})


def test_a_stale_version_is_a_conflict(harness: Harness) -> None:
    # GIVEN a checkpoint at version 2
    store = harness.store
    store.save("u1", STATE, expected_version=None)
    store.save("u1", STATE, expected_version=1)
    # WHEN another run saves on the version it read earlier, or as if there were none
    # THEN CheckpointConflict names the user, and the stored checkpoint is untouched
    with pytest.raises(CheckpointConflict, match="'u1'"):
        store.save("u1", {"other": True}, expected_version=1)
    with pytest.raises(CheckpointConflict, match="'u1'"):
        store.save("u1", {"other": True}, expected_version=None)
    with pytest.raises(CheckpointConflict):
        store.save("u2", {"other": True}, expected_version=3)
    assert store.load(["u1", "u2"])["u1"].state == STATE
    assert store.load(["u2"]) == {}


def test_the_operators_watch_attribute_survives_saves(harness: Harness) -> None:
    # GIVEN an operator's watch-only item: no checkpoint yet
    harness.set_watch("watched", True)
    assert harness.store.load(["watched"]) == {}
    # WHEN the forwarder saves its first and second checkpoints, with a summary
    version = harness.store.save(
        "watched",
        STATE,
        expected_version=None,
        summary={"last_event_date": "2024-01-01T00:00:00.000Z", "forwarded": 3, "ok": True},
    )
    harness.store.save(
        "watched",
        STATE,
        expected_version=version,
        summary={"forwarded": 5, "lag_seconds": 1.5, "last_error": None},
    )
    # THEN `watch` is still there and the summary is readable, None values left out
    item = harness.item("watched")
    assert item["watch"] is True
    assert item["last_event_date"] == "2024-01-01T00:00:00.000Z"
    assert item["forwarded"] == 5
    assert item["lag_seconds"] == 1.5
    assert item["ok"] is True
    assert "last_error" not in item
    assert harness.store.watched_users() == ["watched"]


def test_a_summary_value_of_none_removes_what_an_earlier_save_wrote(harness: Harness) -> None:
    # GIVEN a checkpoint whose summary says the user failed and is missing
    version = harness.store.save(
        "u1", STATE, expected_version=None, summary={"last_error": "boom", "missing_since": "x"}
    )
    # WHEN a later save clears the error (None) and keeps the other
    harness.store.save(
        "u1", STATE, expected_version=version, summary={"last_error": None, "missing_since": "x"}
    )
    # THEN the stale error is gone from the item, not left behind for `status` to read
    item = harness.item("u1")
    assert "last_error" not in item
    assert item["missing_since"] == "x"


def test_watched_users_are_the_items_with_watch_true(harness: Harness) -> None:
    harness.set_watch("b", True)
    harness.set_watch("a", True)
    harness.set_watch("c", "true")  # typed as text in the console: still meant as true
    harness.set_watch("off", False)
    harness.store.save("no-watch", STATE, expected_version=None)
    assert harness.store.watched_users() == ["a", "b", "c"]


def test_the_tenant_item_is_never_a_watched_user(harness: Harness) -> None:
    # GIVEN the tenant item the stream mode keeps, written as the forwarder writes it, and even
    # given a `watch` attribute by mistake
    from log_forwarder.read_mode import TENANT_KEY, TenantState

    state = TenantState()
    harness.store.save(
        TENANT_KEY, state.to_state(), expected_version=None, summary=state.summary(3)
    )
    harness.set_watch("auth0|a", True)
    assert harness.item(TENANT_KEY)["item_type"] == "tenant"
    harness.set_watch(TENANT_KEY, True)
    # THEN the watch-list scan returns users only
    assert harness.store.watched_users() == ["auth0|a"]


def test_load_reads_more_than_100_users(harness: Harness) -> None:
    # GIVEN 230 users with checkpoints (BatchGetItem takes 100 keys at a time)
    user_ids = [f"auth0|{index:04d}" for index in range(230)]
    for index, user_id in enumerate(user_ids):
        harness.store.save(user_id, {"n": index}, expected_version=None)
    # WHEN they are loaded with repeats and unknown users mixed in
    loaded = harness.store.load([*user_ids, "unknown", user_ids[0]])
    # THEN every checkpoint comes back, and only those
    assert sorted(loaded) == user_ids
    assert all(loaded[user_id].state == {"n": index} for index, user_id in enumerate(user_ids))


def test_a_state_too_large_for_an_item_is_refused(harness: Harness) -> None:
    # GIVEN a state that does not compress below the limit
    state = {"blob": os.urandom(MAX_STATE_BYTES).hex()}
    # WHEN saved / THEN CheckpointStateError explains, and nothing was written
    with pytest.raises(CheckpointStateError, match="over the 358400-byte limit"):
        harness.store.save("big", state, expected_version=None)
    assert harness.store.load(["big"]) == {}


@pytest.mark.parametrize("name", ["watch", "version", "state", "user_id"])
def test_a_summary_may_not_overwrite_the_stores_attributes(harness: Harness, name: str) -> None:
    with pytest.raises(CheckpointStateError, match="reserved"):
        harness.store.save("u1", STATE, expected_version=None, summary={name: "x"})


def test_unprocessed_keys_are_read_again() -> None:
    # GIVEN DynamoDB leaving one key unprocessed on the first call (stubbed: moto never does)
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    sleeps: list[float] = []
    store = DynamoCheckpointStore("table", client, sleep=sleeps.append)
    blob = zlib.compress(json.dumps({"v": 1}).encode())

    def item(user_id: str) -> dict[str, Any]:
        return {"user_id": {"S": user_id}, "version": {"N": "4"}, "state": {"B": blob}}

    with Stubber(client) as stubber:
        stubber.add_response(
            "batch_get_item",
            {
                "Responses": {"table": [item("a")]},
                "UnprocessedKeys": {"table": {"Keys": [{"user_id": {"S": "b"}}]}},
            },
        )
        stubber.add_response("batch_get_item", {"Responses": {"table": [item("b")]}})
        # WHEN both are loaded
        loaded = store.load(["a", "b"])
    # THEN the second call fetched the leftover key, after a pause
    assert {user_id: checkpoint.version for user_id, checkpoint in loaded.items()} == {
        "a": 4,
        "b": 4,
    }
    assert len(sleeps) == 1


def test_a_save_repeated_after_its_answer_was_lost_is_not_a_conflict(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a backend whose first attempt at a write is applied but its answer lost, so the
    # write is sent again (as call_aws retries it): the backend then refuses it
    store = harness.store
    assert store.save("auth0|lost", {"v": 1}, expected_version=None) == 1
    raw_put = store._put_if_version  # type: ignore[attr-defined]

    def answer_lost(write: Any, deadline: Any) -> Any:
        assert raw_put(write, deadline) is None  # applied...
        return raw_put(write, deadline)  # ...and the retry is refused

    monkeypatch.setattr(store, "_put_if_version", answer_lost)
    # WHEN saved THEN the retry finds its own first attempt: not a conflict
    assert store.save("auth0|lost", {"v": 1, "cursor": "after"}, expected_version=1) == 2
    monkeypatch.undo()
    assert store.load(["auth0|lost"])["auth0|lost"].state == {"v": 1, "cursor": "after"}
    # AND another run's save at that version is a conflict, even with the very same bytes
    # (two runs can plan the same state)
    with pytest.raises(CheckpointConflict, match="expected version 1"):
        store.save("auth0|lost", {"v": 1, "cursor": "after"}, expected_version=1)


def test_every_backend_is_the_one_base_class_over_a_raw_seam() -> None:
    # The protocol's rules live once, in VersionedStore; a backend overrides only the raw I/O.
    from log_forwarder.cli.local import SqliteCheckpointStore
    from log_forwarder.store import VersionedStore

    seam = {"_get", "_put_if_version", "_watched_keys"}
    for backend in (DynamoCheckpointStore, SqliteCheckpointStore, InMemoryCheckpointStore):
        assert issubclass(backend, VersionedStore)
        overridden = {
            name
            for name in ("load", "save", "watched_users", *seam)
            if getattr(backend, name) is not getattr(VersionedStore, name)
        }
        assert overridden == seam, backend.__name__
