"""Upgrades and rollbacks of the stored state, end to end: the items earlier versions wrote
(tests/fixtures/state/, made by those versions' own code: devtools/state_fixtures.py), put into
moto's DynamoDB as they were, then the handler through the template against the simulator.

- every earlier version's items are read, upgraded and forwarded from: each destination holds
  every event the items had not delivered, once, and none they had; the items are written in
  the current version;
- a newer release's item that this one cannot read is left untouched, byte for byte, while the
  other users are forwarded; `status` says so;
- the release before this one, run on what this one wrote (a rollback), forwards on from it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devtools.auth0_simulator import Auth0Simulator
from devtools.harness import LocalDeployment
from devtools.local_aws import LocalAws
from devtools.state_fixtures import fixture_items, release, release_env
from log_forwarder.cursor import CURSOR_STATE
from log_forwarder.read_mode import TENANT_KEY, TENANT_STATE
from log_forwarder.store import encode_state
from tests.e2e.conftest import ok, stack_name
from tests.e2e.test_faults import FAULT_LEDGER, FaultRow

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "state"
# The release this one follows: it reads only `v` == 1 (the rollback target).
PREVIOUS_RELEASE = "096dcca"
# The fixtures' dates are those of the day they were made; Auth0 keeps events up to a year on
# the longest plans, and the simulator never expires them: nothing has expired for the forwarder.
RETENTION_HOURS = "8784"


def world_of(folder: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / folder / "world.json").read_text())
    return document


def deployed(aws: LocalAws, sim: Auth0Simulator, folder: str, read_mode: str) -> LocalDeployment:
    """A stack whose table holds the fixture's items exactly as stored, and a simulator holding
    the fixture's events."""
    world = world_of(folder)
    users = sorted(world["users"])
    stack = LocalDeployment(
        aws,
        sim,
        stack_name=stack_name("state"),
        watched_user_ids=users,
        READ_MODE=read_mode,
        AUTH0_LOG_RETENTION_HOURS=RETENTION_HOURS,
    )
    client = aws.client("dynamodb")
    for item in fixture_items(FIXTURES / folder):
        client.put_item(TableName=stack.resources.table_name, Item=item)
    for user, data in world["users"].items():
        sim.add_events(data["events"])
        for raw in data["raw"]:
            sim.add_raw_entry(user, raw["entry"], sorts_as=raw["sorts_as"])
    return stack


def raw_items(aws: LocalAws, stack: LocalDeployment) -> dict[str, dict[str, Any]]:
    pages = aws.client("dynamodb").get_paginator("scan")
    return {
        item["user_id"]["S"]: item
        for page in pages.paginate(TableName=stack.resources.table_name, ConsistentRead=True)
        for item in page["Items"]
    }


def state_of(item: dict[str, Any]) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(zlib.decompress(bytes(item["state"]["B"])))
    return state


def counted(stack: LocalDeployment, user: str) -> dict[str, Counter[str]]:
    return {
        "cloudwatch": Counter(e["log_id"] for e in stack.cloudwatch_events(user)),
        "s3": Counter(e["log_id"] for e in stack.s3_events(user)),
    }


def check_exactly_once(
    stack: LocalDeployment, world: dict[str, Any], scenario: str, users: list[str] | None = None
) -> None:
    """Each destination holds every event the stored state had not delivered, once, and none
    it had (recorded as a row of the fault matrix)."""
    totals = {"cloudwatch": [0, 0, 0, 0], "s3": [0, 0, 0, 0]}
    for user in users or sorted(world["users"]):
        data = world["users"][user]
        before = set(data["delivered_before"])
        expected = Counter(e["log_id"] for e in data["events"] if e["log_id"] not in before)
        for destination, got in counted(stack, user).items():
            assert got == expected, (user, destination, data["scenario"])
            row = totals[destination]
            row[0] += len(expected)
            row[1] += len(got)
            row[2] += len(expected - got)
            row[3] += sum(got.values()) - len(got) + len(set(got) & before)
    for destination, (expected_n, delivered, missing, repeated) in totals.items():
        FAULT_LEDGER.append(
            FaultRow(scenario, destination, expected_n, delivered, missing, repeated, 0, "")
        )


# -- upgrades ------------------------------------------------------------------------------------


# Every fixture folder, read per user; the one with a tenant item in stream mode, in auto too.
FOLDERS = sorted(str(p.parent.relative_to(FIXTURES)) for p in FIXTURES.glob("v*/*/world.json"))


@pytest.mark.parametrize(
    ("folder", "read_mode"),
    [*((folder, "per-user") for folder in FOLDERS), ("v1/096dcca", "auto")],
)
def test_every_earlier_versions_items_are_upgraded_and_forwarded_from_exactly_once(
    aws: LocalAws, sim: Auth0Simulator, folder: str, read_mode: str
) -> None:
    # GIVEN the checkpoint table as that version left it, and Auth0 with the users' events
    world = world_of(folder)
    stack = deployed(aws, sim, folder, read_mode)
    before = raw_items(aws, stack)
    # WHEN this release runs, twice
    first = ok(stack.invoke(cold=True))
    second = ok(stack.invoke())
    # THEN no user failed, and the second run found nothing new
    assert first["failed_users"] == [] and second["failed_users"] == []
    assert second["forwarded"] == 0
    # AND each destination holds what the items had not delivered, once
    check_exactly_once(stack, world, f"upgrade: items written by {folder} ({read_mode})")
    # AND the malformed entry a user's state had quarantined is not quarantined again
    for user in world["users"]:
        quarantined = [r for r in stack.s3_records(user) if "log_id" not in r]
        assert not [r for r in quarantined if r["_forwarder"]["record_type"] == "quarantine"]
    # AND every user's item is written in the current version, its attributes saying so,
    # and what operators put on it (the legacy `watch`) is kept
    after = raw_items(aws, stack)
    for user in world["users"]:
        state = state_of(after[user])
        assert (state["v"], state.get("written_v")) == (1, CURSOR_STATE.version), user
        assert after[user]["state_version"] == {"N": str(CURSOR_STATE.version)}
        assert after[user]["state_readable_from"] == {"N": "1"}
        assert int(after[user]["version"]["N"]) > int(before[user]["version"]["N"])
    legacy = "auth0|fixture-legacy-watch"
    if legacy in before:
        assert after[legacy]["watch"] == {"BOOL": True}
    # AND the tenant item, where there is one, is read: auto goes on with its stream era (its
    # seated user a member), per-user ends it
    if TENANT_KEY in before:
        tenant = state_of(after[TENANT_KEY])
        assert tenant["v"] == TENANT_STATE.version
        if read_mode == "auto":
            assert first["read_mode"] == "stream"
            assert tenant["epoch"] == state_of(before[TENANT_KEY])["epoch"]
        else:
            assert tenant["mode"] == "per-user"


# -- a newer release's items -----------------------------------------------------------------


NEWER = CURSOR_STATE.version + 1  # a layout this release cannot read


def newer(item: dict[str, Any], state: dict[str, Any], version: int) -> dict[str, Any]:
    """The item as a release writing `version`, readable only from there, would leave it."""
    blob = encode_state(item["user_id"]["S"], {**state, "v": version, "written_v": version})
    return {
        **item,
        "state": {"B": blob},
        "state_version": {"N": str(version)},
        "state_readable_from": {"N": str(version)},
    }


def test_newer_and_unreadable_items_are_left_untouched_and_the_other_users_forwarded(
    aws: LocalAws, sim: Auth0Simulator
) -> None:
    # GIVEN the fixture, where a later release has rewritten one user and the tenant item in a
    # layout readable from that release only, and someone has broken another user's state by hand
    folder = "v1/096dcca"
    world = world_of(folder)
    stack = deployed(aws, sim, folder, "auto")
    client = aws.client("dynamodb")
    table = stack.resources.table_name
    for key in ("auth0|fixture-pending", TENANT_KEY):
        item = raw_items(aws, stack)[key]
        future = {**state_of(item), "pushed": {"kept": "elsewhere"}}
        client.put_item(TableName=table, Item=newer(item, future, NEWER))
    broken = raw_items(aws, stack)["auth0|fixture-ahead"]
    blob = encode_state("u", {**state_of(broken), "recent": [[1, "a"], "b"]})
    client.put_item(TableName=table, Item={**broken, "state": {"B": blob}})
    taken = ["auth0|fixture-pending", "auth0|fixture-ahead", TENANT_KEY]
    before = raw_items(aws, stack)
    # WHEN this release runs
    invocation = stack.invoke(cold=True)
    # THEN both items are byte for byte what the newer release wrote
    after = raw_items(aws, stack)
    for key in taken:
        assert after[key] == before[key], key
    # AND the run fails for those users alone, saying why
    assert invocation.error is not None
    message = str(invocation.error)
    assert "2 of 10 users" in message
    assert (
        "auth0|fixture-pending: NewerStateError: checkpoint of 'auth0|fixture-pending' was "
        f"written by a newer release (checkpoint state v{NEWER}, readable from v{NEWER}" in message
    )
    assert (
        "auth0|fixture-ahead: CheckpointStateError: checkpoint state is invalid (checkpoint of "
        "'auth0|fixture-ahead', key 'recent[1]' must be a list of 2 values, not str 'b')" in message
    )
    assert invocation.metrics()["NewerReleaseItems"] == 2
    assert invocation.metrics()["StreamMode"] == 0  # the tenant item is not this release's
    # AND every other user was forwarded, exactly once
    others = sorted(set(world["users"]) - set(taken))
    check_exactly_once(stack, world, "newer and unreadable items: the other 8 users", others)
    for user in taken[:2]:
        assert counted(stack, user) == {"cloudwatch": Counter(), "s3": Counter()}
    FAULT_LEDGER.append(FaultRow("a newer release's checkpoint and tenant item, a checkpoint "
                                 "broken by hand: left as they were", "both", 4, 0, 0, 0, 0,
                                 message[:90]))  # fmt: skip
    # AND `status` shows the user as not read, and why
    from log_forwarder.cli.status import scan_checkpoints, statuses

    rows, _ = statuses(scan_checkpoints(client, table), {}, 0.0)
    shown = {row.user_id: row for row in rows}
    assert shown["auth0|fixture-pending"].state == "newer"
    assert (
        shown["auth0|fixture-pending"].not_read
        == f"written by a newer release (v{NEWER}), not read"
    )
    assert shown["auth0|fixture-overlap"].not_read is None


def _zlib(*parts: bytes) -> bytes:
    compressor = zlib.compressobj(9)
    return b"".join(compressor.compress(part) for part in parts) + compressor.flush()


# Stored blobs no release wrote (issue #21's review): each a few hundred bytes to 400 KB.
HOSTILE_BLOBS = {
    # JSON nested 200,000 deep in 436 bytes: a RecursionError stopped every user, every run
    "auth0|fixture-overlap": (
        _zlib(b'{"v":1,"recent":', b"[" * 200_000, b"]" * 200_000, b"}"),
        "checkpoint state for 'auth0|fixture-overlap' is unreadable (RecursionError)",
    ),
    # 92 KB decoding to 7.8 million `recent` rows (1.5 GB once parsed)
    "auth0|fixture-ahead": (
        _zlib(b'{"v":1,"recent":[', *[b'[1,"a"],' * 131_072] * 60, b'[1,"a"]]}'),
        "unreadable (it decodes to more than 4,194,304 bytes, the most a state may)",
    ),
    # under the decoding bound, a `last_error` longer than its writer ever keeps
    "auth0|fixture-pending": (
        _zlib(b'{"v":1,"last_error":"', b"x" * 100_000, b'"}'),
        "key 'last_error' holds 100,000 characters, more than the 500 it may",
    ),
}


def test_hostile_stored_blobs_fail_their_users_alone_and_the_others_are_forwarded(
    aws: LocalAws, sim: Auth0Simulator
) -> None:
    # GIVEN the fixture, where three users' state blobs were replaced by hand with blobs that
    # decode to a stack overflow, to gigabytes, or past a key's bound
    folder = "v1/096dcca"
    world = world_of(folder)
    stack = deployed(aws, sim, folder, "per-user")
    client = aws.client("dynamodb")
    for user, (blob, _) in HOSTILE_BLOBS.items():
        item = raw_items(aws, stack)[user]
        client.put_item(TableName=stack.resources.table_name, Item={**item, "state": {"B": blob}})
    before = raw_items(aws, stack)
    # WHEN this release runs
    invocation = stack.invoke(cold=True)
    # THEN the run fails for those three users alone, each saying why, and its report is written
    assert invocation.error is not None
    message = str(invocation.error)
    assert "3 of 10 users" in message, message[:300]
    for user, (_, said) in HOSTILE_BLOBS.items():
        assert f"{user}: CheckpointStateError: " in message and said in message, user
    assert invocation.metrics()["UsersFailed"] == 3
    # AND their items are left as they were, and nothing of theirs was forwarded
    after = raw_items(aws, stack)
    for user in HOSTILE_BLOBS:
        assert after[user] == before[user], user
        assert counted(stack, user) == {"cloudwatch": Counter(), "s3": Counter()}
    # AND every other user was forwarded, exactly once
    others = sorted(set(world["users"]) - set(HOSTILE_BLOBS))
    check_exactly_once(stack, world, "hostile state blobs: the other 7 users", others)


# -- a rollback ----------------------------------------------------------------------------------


_PREVIOUS_RUN = """
import json, os, sys
from devtools.harness import FakeLambdaContext, LocalFunction, invoke_handler
from devtools.local_aws import handler_from_template
env = json.loads(sys.argv[1])
os.environ.update(env)  # imported in the function's environment, as Lambda does
function = LocalFunction(handler_from_template(), env)
done = invoke_handler(function, json.loads(sys.argv[2]), FakeLambdaContext(), cold=True)
print(json.dumps({"error": repr(done.error) if done.error else None, "result": done.result}))
"""


def test_the_previous_release_forwards_on_from_what_this_one_wrote(
    aws: LocalAws, sim: Auth0Simulator
) -> None:
    # GIVEN the fixture read and written by this release (every item now in its layout, readable
    # from v1: none of them met a push)
    folder = "v1/096dcca"
    world = world_of(folder)
    stack = deployed(aws, sim, folder, "per-user")
    ok(stack.invoke(cold=True))
    written = [state_of(raw_items(aws, stack)[user]) for user in world["users"]]
    assert {(state["v"], state.get("written_v")) for state in written} == {
        (1, CURSOR_STATE.version)
    }
    # AND each user's next events
    later: dict[str, list[str]] = {}
    now = datetime.now(UTC)
    for user in world["users"]:
        newest = max(world["users"][user]["events"], key=lambda e: e["date"])
        event = {k: v for k, v in newest.items() if k != "log_id"}
        event.update(
            type="s", date=(now - timedelta(seconds=30)).isoformat(timespec="milliseconds")
        )
        later[user] = [sim.add_event(event)["log_id"]]
    # WHEN the release before this one runs on that table (a rollback): its own code, in a
    # process of its own, through its own handler
    done = _run_release(PREVIOUS_RELEASE, stack)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.splitlines()[-1])
    # THEN it read every item and forwarded each user's new event, and nothing again
    assert outcome["error"] is None, done.stdout[-2000:]
    assert outcome["result"]["failed_users"] == []
    for user in world["users"]:
        data = world["users"][user]
        delivered = set(data["delivered_before"])
        expected = Counter(
            [e["log_id"] for e in data["events"] if e["log_id"] not in delivered] + later[user]
        )
        for destination, got in counted(stack, user).items():
            assert got == expected, (user, destination)
    # AND it wrote them back as it writes (v1), which this release reads again, upgrading them
    assert {state_of(i)["v"] for i in raw_items(aws, stack).values()} == {1}
    assert all("written_v" not in state_of(i) for k, i in raw_items(aws, stack).items()
               if k in world["users"])  # fmt: skip
    again = ok(stack.invoke(cold=True))
    assert again["failed_users"] == [] and again["forwarded"] == 0
    FAULT_LEDGER.append(FaultRow(f"rollback to {PREVIOUS_RELEASE} after this release wrote "
                                 f"v{CURSOR_STATE.version} readable from v1", "both", 0, 0, 0, 0,
                                 0, "none: it reads them (`v` = 1)"))  # fmt: skip


def _run_release(commit: str, stack: LocalDeployment) -> subprocess.CompletedProcess[str]:
    """One scheduled run of `commit`'s own handler, in a process of its own, on the stack."""
    event = {"id": "rollback", "detail-type": "Scheduled Event", "source": "aws.events"}
    with release(commit) as (_sha, tree):
        done = subprocess.run(  # noqa: S603 - our own interpreter, the release's own code
            [sys.executable, "-c", _PREVIOUS_RUN, json.dumps(stack.env), json.dumps(event)],
            env=release_env(tree),
            cwd=tree,
            capture_output=True,
            text=True,
            check=False,
        )
    return done


# 096dcca reads `v` == 1 only; 4cc5e5c is the codec at v2 (readable from v1), the last release
# before the real-time path's v3.
@pytest.mark.parametrize("previous", [PREVIOUS_RELEASE, "4cc5e5c"])
def test_a_release_before_v3_leaves_a_checkpoint_that_met_a_push_untouched(
    aws: LocalAws, sim: Auth0Simulator, previous: str
) -> None:
    # GIVEN the fixture read and written by this release, one user's item then marked as having
    # met a push (`pushed_until` set: what the real-time path delivered is known only from the
    # pushed-events table, so the item is readable from v3 only), and a new event for that user
    folder = "v1/096dcca"
    world = world_of(folder)
    stack = deployed(aws, sim, folder, "per-user")
    ok(stack.invoke(cold=True))
    user = "auth0|fixture-overlap"
    item = raw_items(aws, stack)[user]
    cursor = CURSOR_STATE.decode(state_of(item), item="c")
    met = replace(cursor, position=replace(cursor.position, pushed_until_ms=1))
    state = CURSOR_STATE.encode(met)
    assert state["v"] == 3
    client = aws.client("dynamodb")
    client.put_item(
        TableName=stack.resources.table_name,
        Item={
            **item,
            "state": {"B": encode_state(user, state)},
            "state_version": {"N": "3"},
            "state_readable_from": {"N": "3"},
        },
    )
    before = raw_items(aws, stack)
    delivered = counted(stack, user)
    newest = max(world["users"][user]["events"], key=lambda e: e["date"])
    when = datetime.now(UTC) - timedelta(seconds=30)
    sim.add_event({**{k: v for k, v in newest.items() if k != "log_id"}, "type": "s",
                   "date": when.isoformat(timespec="milliseconds")})  # fmt: skip
    # WHEN the earlier release runs on that table, through its own handler
    done = _run_release(previous, stack)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout
    # THEN it leaves that item byte for byte as it was, and delivers nothing of that user's
    after = raw_items(aws, stack)
    assert after[user] == before[user], output[-2000:]
    assert counted(stack, user) == delivered
    # AND it says so for that user alone: the other users' items were read and written
    outcome = json.loads(output.strip().splitlines()[-1]) if output.strip() else {}
    assert user in str(outcome.get("error")), output[-2000:]
    print(f"\n{previous}: {str(outcome.get('error'))[:300]}")
    assert any(after[u] != before[u] for u in world["users"] if u != user)
    FAULT_LEDGER.append(FaultRow(f"rollback to {previous}: a checkpoint that met a push (v3, "
                                 "readable from v3)", "both", 0, 0, 0, 0, 0,
                                 "that user fails, its item untouched; nothing of it delivered "
                                 "again"))  # fmt: skip
