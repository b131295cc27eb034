"""`watch`, `status` and `backfill` end to end: the console script in a subprocess against
moto's server (a stack built from template.yaml) and the Auth0 simulator, between runs of the
real handler. Every test counts each destination's copies of every event: 0 missing, 0 twice."""

from __future__ import annotations

import json
import random
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devtools.auth0_simulator import Auth0Simulator
from devtools.harness import LocalDeployment
from devtools.local_aws import LocalAws
from devtools.traffic import attack_burst, generate_user_events, iso
from log_forwarder.events import parse_date_ms
from tests.cli_support import (
    CLI_LEDGER,
    HOSTILE,
    SCRIPT,
    assert_shown_not_obeyed,
    flat,
    once_each,
    run_cli,
)
from tests.e2e.conftest import GENEROUS, stack_name

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ALPHA, ODD, ANA = "auth0|alpha", "google-oauth2|1098/odd id@x=y", "samlp|corp|ana"


@pytest.fixture
def sim() -> Iterator[Auth0Simulator]:
    with Auth0Simulator(rate_limit=GENEROUS) as simulator:
        simulator.unknown_user_status = 404
        yield simulator


@pytest.fixture
def deploy(aws: LocalAws, sim: Auth0Simulator) -> Callable[..., LocalDeployment]:
    def make(**kwargs: Any) -> LocalDeployment:
        kwargs.setdefault("watched_user_ids", None)  # the watch list table
        kwargs.setdefault("AUTH0_RATE_LIMIT_PER_SECOND", "400")
        return LocalDeployment(aws, sim, stack_name=stack_name("cli"), **kwargs)

    return make


def add(sim: Auth0Simulator, user: str, count: int, *, hours: float = 0.5) -> set[str]:
    now = datetime.now(UTC)
    events = generate_user_events(
        user,
        count=count,
        start=now - timedelta(hours=hours),
        end=now - timedelta(seconds=30),
        rng=random.Random(f"{user}{count}{time.time()}"),
    )
    return {e["log_id"] for e in sim.add_events(events)}


def invoke(stack: LocalDeployment, **kwargs: Any) -> dict[str, Any]:
    invocation = stack.invoke(**kwargs)
    assert invocation.error is None, invocation.error
    assert invocation.result is not None
    return {u["user_id"]: u for u in invocation.result["users"]}


def assert_once(stack: LocalDeployment, expected: dict[str, set[str]]) -> None:
    for user, ids in expected.items():
        for name, records in (
            ("cloudwatch", stack.cloudwatch_records(user)),
            ("s3", stack.s3_records(user)),
        ):
            assert once_each(records, ids) == (len(ids), 0, 0), (user, name)


def cli(stack: LocalDeployment, *args: str) -> Any:
    return run_cli(*args, env=stack.env)


def readme_aws_commands() -> list[list[str]]:
    """The `aws dynamodb …-item` commands the README tells operators to paste."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return [
        shlex.split(match)
        for match in re.findall(r"^(aws dynamodb (?:put|delete)-item .+)$", readme, re.M)
    ]


def paste(stack: LocalDeployment, command: Sequence[str], user: str) -> None:
    """Run a README command as the AWS CLI would, with its placeholders filled in."""
    args = dict(zip(command[3::2], command[4::2], strict=True))
    table = args["--table-name"].replace("<WatchListTableName>", stack.resources.watch_table or "")
    assert table == stack.resources.watch_table, "the README must point at the watch list table"
    payload = json.loads(args.get("--item") or args["--key"])
    payload["user_id"]["S"] = user
    client = stack.aws.client("dynamodb")
    if command[2] == "put-item":
        client.put_item(TableName=table, Item=payload)
    else:
        client.delete_item(TableName=table, Key=payload)


def test_adding_re_adding_and_removing_users_between_runs_loses_and_repeats_nothing(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    # GIVEN a stack reading its watch list from the table, and three users with history
    stack = deploy()
    expected = {user: add(sim, user, 30) for user in (ALPHA, ODD, ANA)}
    # WHEN two are added with the CLI (ids with |, /, @, = and a space)
    added = cli(stack, "watch", "add", ALPHA, ODD)
    assert added.returncode == 0, added.stderr
    assert flat(added.stdout) == f"{ALPHA}: added {ODD}: added"
    first = invoke(stack)
    assert sorted(first) == [ALPHA, ODD]
    # AND one is added again with the CLI, the third with the README's put-item, which is also
    # pasted once more for the first (re-adding through the AWS CLI)
    again = cli(stack, "watch", "add", ALPHA)
    assert "already watched (nothing changed)" in again.stdout
    put, delete = readme_aws_commands()
    paste(stack, put, ANA)
    paste(stack, put, ALPHA)
    for user in expected:
        expected[user] |= add(sim, user, 10, hours=0.01)
    second = invoke(stack)
    assert {u: r["forwarded"] for u, r in second.items()} == {ALPHA: 10, ODD: 10, ANA: 40}
    # AND one is removed with the CLI while events keep arriving, then added back
    removed = cli(stack, "watch", "remove", ODD)
    assert "removed (its checkpoint is kept)" in removed.stdout
    for user in expected:
        expected[user] |= add(sim, user, 10, hours=0.01)
    assert sorted(invoke(stack)) == [ALPHA, ANA]
    cli(stack, "watch", "add", ODD)
    back = invoke(stack)
    # THEN the user added back resumes from its checkpoint: only what it missed is forwarded
    assert back[ODD]["forwarded"] == 10
    # AND the README's delete-item removes a user the same way
    paste(stack, delete, ANA)
    assert sorted(invoke(stack)) == [ALPHA, ODD]
    # AND every event reached both destinations exactly once
    assert_once(stack, expected)
    listed = json.loads(cli(stack, "watch", "list", "--json").stdout)
    assert [(e["user_id"], e["source"]) for e in listed] == [(ALPHA, "table"), (ODD, "table")]
    # AND with WATCHED_USER_IDS set, the list shown is the one the function reads, and the
    # table is said to be ignored
    env = {**stack.env, "WATCHED_USER_IDS": f"{ANA},{ALPHA}"}
    shown = run_cli("watch", "list", "--json", env=env)
    assert [(e["user_id"], e["source"]) for e in json.loads(shown.stdout)] == [
        (ANA, "WATCHED_USER_IDS"),
        (ALPHA, "WATCHED_USER_IDS"),
    ]
    assert "WATCHED_USER_IDS is set: it is the watch list" in shown.stderr
    CLI_LEDGER.append(
        ("watch", "add, re-add, remove, add back, README put/delete: dup / lost", "0 / 0")
    )


def test_re_adding_a_user_in_the_middle_of_its_backlog_changes_nothing(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    # GIVEN a watched user with 2,500 events whose first runs read about ten pages each
    user = "auth0|long-backlog"
    stack = deploy()
    expected = add(sim, user, 2500, hours=30)
    cli(stack, "watch", "add", user)
    runs = 0

    def limited() -> dict[str, Any]:
        before = sim.stats.calls()
        return invoke(
            stack,
            # after ten calls less than the 60 s margin is left: enough to deliver, not to read
            remaining_ms=lambda: 200_000 if sim.stats.calls() - before < 10 else 50_000,
        )

    assert limited()[user]["backlog"] is True
    # WHEN, mid-backlog, it is added again, and removed and added back
    cli(stack, "watch", "add", user)
    runs += 1
    assert limited()[user]["backlog"] is True
    cli(stack, "watch", "remove", user)
    cli(stack, "watch", "add", user)
    while runs < 15 and (report := limited()[user])["backlog"]:
        runs += 1
    # THEN the backlog went on where it was, and every event arrived once
    assert report["backlog"] is False
    assert_once(stack, {user: expected})


def test_moving_from_the_parameter_to_the_table_changes_nothing_forwarded(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    # GIVEN a stack forwarding two users named by WatchedUserIds
    stack = deploy(watched_user_ids=[ALPHA, ODD])
    expected = {user: add(sim, user, 40) for user in (ALPHA, ODD)}
    invoke(stack)
    # WHEN the parameter is emptied and the same users are added to the table
    stack.env["WATCHED_USER_IDS"] = ""
    assert cli(stack, "watch", "add", ALPHA, ODD).returncode == 0
    for user in expected:
        expected[user] |= add(sim, user, 5, hours=0.01)
    after = invoke(stack)
    # THEN the next run forwards only the new events, from the same checkpoints
    assert {u: r["forwarded"] for u, r in after.items()} == {ALPHA: 5, ODD: 5}
    assert_once(stack, expected)


def test_a_user_watched_the_earlier_way_is_still_forwarded_and_removed_without_its_state(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    # GIVEN a user marked as the README once said: `watch = true` on its checkpoint item
    stack = deploy()
    expected = add(sim, ANA, 20)
    dynamodb = stack.aws.client("dynamodb")
    table = stack.resources.table_name
    dynamodb.put_item(TableName=table, Item={"user_id": {"S": ANA}, "watch": {"BOOL": True}})
    # WHEN the upgraded function runs / THEN the user is still forwarded
    assert invoke(stack)[ANA]["forwarded"] == 20
    listed = flat(cli(stack, "watch", "list").stdout)
    assert f"{ANA} checkpoint item (watch = true)" in listed
    rows = json.loads(cli(stack, "status", "--json").stdout)["users"]
    assert [(r["user_id"], r["watched"], r["state"]) for r in rows] == [(ANA, "legacy", "ok")]
    before = dynamodb.get_item(TableName=table, Key={"user_id": {"S": ANA}})["Item"]
    # AND `watch add` moves it into the table: the flag goes, nothing else of the item
    assert "moved into the watch list table" in cli(stack, "watch", "add", ANA).stdout
    after = dynamodb.get_item(TableName=table, Key={"user_id": {"S": ANA}})["Item"]
    assert "watch" not in after
    assert {k: v for k, v in before.items() if k != "watch"} == after
    expected |= add(sim, ANA, 3, hours=0.01)
    assert invoke(stack)[ANA]["forwarded"] == 3
    # AND a user still flagged the old way is unwatched by `watch remove`, flag only
    dynamodb.update_item(
        TableName=table,
        Key={"user_id": {"S": ANA}},
        UpdateExpression="SET #w = :t",
        ExpressionAttributeNames={"#w": "watch"},
        ExpressionAttributeValues={":t": {"BOOL": True}},
    )
    assert "removed" in cli(stack, "watch", "remove", ANA).stdout
    assert "watch" not in dynamodb.get_item(TableName=table, Key={"user_id": {"S": ANA}})["Item"]
    assert invoke(stack) == {}
    assert_once(stack, {ANA: expected})


@pytest.mark.filterwarnings("ignore:No application metrics")
def test_status_says_per_user_what_is_up_and_what_is_wrong(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    # GIVEN a fresh stack: an empty table
    # Per user: unknown users and per-user read failures are what status is shown reporting.
    stack = deploy(READ_MODE="per-user")
    empty = cli(stack, "status", "--json")
    assert empty.returncode == 1, empty.stderr  # a problem found: nobody is forwarded
    assert json.loads(empty.stdout) == {
        "users": [],
        "backfills": [],
        "notes": ["no watched users: a scheduled run forwards nothing"],
        "tenant_failing": False,
        "problems": ["no watched users"],
    }
    # AND users: a quiet one, one that will fail, one that will hit a gap, a wrong id, and
    # one that is removed after its first run
    ok, flaky, bursty, wrong, gone = (
        "auth0|ok",
        "auth0|flaky-7",
        "auth0|bursty",
        "auth0|no-such-user",
        "auth0|gone",
    )
    for user in (ok, flaky, bursty, gone):
        add(sim, user, 5)
    cli(stack, "watch", "add", ok, flaky, bursty, gone)
    # (the wrong id only by insisting: `watch add` refuses an id Auth0 answers 404 for)
    assert cli(stack, "watch", "add", wrong).returncode == 2
    cli(stack, "watch", "add", "--allow-unknown", wrong)
    first = stack.invoke()
    assert first.metrics()["WatchedUsers"] == 5
    cli(stack, "watch", "remove", gone)
    # The wrong id is seen as unknown by the first newest-first read (its second run).
    second = stack.invoke()
    assert second.error is None
    assert (second.metrics()["UsersMissing"], second.metrics()["UnknownUsers"]) == (1, 1)
    assert '"Auth0 says the user does not exist' in second.output
    # WHEN the flaky user's read is refused and the bursty one outruns the per-user endpoint
    sim.fail_next(1, status=400, html=False, path_contains="flaky-7")
    sim.set_scopes(["read:logs_users"])
    sim.add_events(
        attack_burst(
            bursty,
            count=1100,
            start=datetime.now(UTC) - timedelta(minutes=3),
            seconds=120,
            rng=random.Random(3),
        )
    )
    sim.revoke_tokens()  # scopes come with a token: the next one has the reduced set
    third = stack.invoke()
    assert third.error is not None  # the flaky user failed the run; the others were forwarded
    # THEN status says it per user, as a table and as JSON
    table = flat(cli(stack, "status").stdout)
    rows = {r["user_id"]: r for r in json.loads(cli(stack, "status", "--json").stdout)["users"]}
    assert {u: (r["watched"], r["state"]) for u, r in rows.items()} == {
        ok: ("table", "ok"),
        flaky: ("table", "failing"),
        bursty: ("table", "ok"),
        wrong: ("table", "unknown"),
        gone: (None, "unwatched"),
    }
    assert "HTTP 400" in rows[flaky]["last_error"]
    assert rows[bursty]["gaps_total"] == 1
    assert "possible" in rows[bursty]["last_gap"]
    assert rows[wrong]["missing_since"] is not None and rows[wrong]["forwarded_total"] == 0
    assert rows[ok]["lag_s"] is not None and rows[ok]["last_run"] is not None
    for user in (ok, flaky, bursty, wrong):
        assert user in table
    assert "failing" in table and "unknown since" in table and "possible" in table
    # AND the next run that reads the flaky user clears its error
    sim.set_scopes(["read:logs", "read:logs_users"])
    stack.invoke()
    rows = {r["user_id"]: r for r in json.loads(cli(stack, "status", "--json").stdout)["users"]}
    assert (rows[flaky]["state"], rows[flaky]["last_error"]) == ("ok", None)


def live_checkpoint(stack: LocalDeployment, user: str) -> dict[str, Any]:
    item = stack.aws.client("dynamodb").get_item(
        TableName=stack.resources.table_name, Key={"user_id": {"S": user}}, ConsistentRead=True
    )["Item"]
    return {"version": item["version"]["N"], "state": bytes(item["state"]["B"])}


def test_backfill_forwards_a_past_range_once_and_never_moves_the_live_checkpoint(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    # GIVEN a user with five hours of events, forwarded live only from an hour ago
    user = ODD
    now = datetime.now(UTC)
    expected = add(sim, user, 300, hours=5)
    stack = deploy(START_FROM=iso(now - timedelta(hours=1)))
    cli(stack, "watch", "add", user)
    live = invoke(stack)[user]["forwarded"]
    assert 20 < live < 120
    before = live_checkpoint(stack, user)
    # WHEN the older part is backfilled
    started = time.monotonic()
    done = cli(stack, "backfill", user, "--since", iso(now - timedelta(hours=6)))
    elapsed = time.monotonic() - started
    # THEN it forwarded exactly what the live run had not, with a progress bar on stderr
    assert done.returncode == 0, done.stderr
    said = flat(done.stdout)
    for name in ("cloudwatch", "s3"):
        checked = re.search(rf"{name}: checked (\d+), missing (\d+), written (\d+)", said)
        assert checked is not None, said
        assert int(checked[2]) == int(checked[3]) == 300 - live <= int(checked[1])
    assert re.search(r"backfill: [\d,]+ events, \d+ calls, 100%", done.stderr), done.stderr
    assert_once(stack, {user: expected})
    # AND the live checkpoint was not written at all
    assert live_checkpoint(stack, user) == before
    # AND status lists the backfill
    status = json.loads(cli(stack, "status", "--json").stdout)
    (item,) = status["backfills"]
    assert (item["backfill_user"], item["backlog"]) == (user, False)
    # WHEN the same backfill runs again / THEN it checks the destinations again, adds nothing
    repeat = cli(stack, "backfill", user, "--since", iso(now - timedelta(hours=6)))
    assert repeat.returncode == 0
    assert "backfilled before" in flat(repeat.stdout)
    assert re.search(r"s3: checked \d+, missing 0, written 0", flat(repeat.stdout))
    # WHEN S3 objects are lost and a new range is backfilled over them
    # (objects of events below the live floor: what is above it belongs to the live forwarder)
    floor = (stack.checkpoint(user) or {})["floor"]
    s3 = stack.aws.client("s3")
    for key, records in sorted(stack.s3_objects().items()):
        if all(parse_date_ms(r["date"]) < floor for r in records if "date" in r):
            s3.delete_object(Bucket=stack.resources.bucket, Key=key)
    lost = len(expected) - len(stack.s3_events(user))
    assert lost > 0
    refill = cli(stack, "backfill", user, "--since", iso(now - timedelta(hours=7)))
    # THEN S3 gets exactly what it lost, and CloudWatch (which lost nothing) nothing twice
    assert refill.returncode == 0, refill.stderr
    assert f"missing {lost}, written {lost}" in flat(refill.stdout)
    assert re.search(r"cloudwatch: checked \d+, missing 0, written 0", flat(refill.stdout))
    assert_once(stack, {user: expected})
    assert live_checkpoint(stack, user) == before
    CLI_LEDGER.append(
        (
            "backfill",
            "events forwarded / refilled in S3 / dup / wall time",
            f"{300 - live} / {lost} / 0 / {elapsed:.1f} s",
        )
    )


def test_a_backfill_stopped_by_ctrl_c_exits_130_and_the_same_command_finishes_it(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    # GIVEN a user with a long past, forwarded live only from now, and a slow Auth0
    user = ODD
    now = datetime.now(UTC)
    expected = add(sim, user, 1500, hours=5)
    stack = deploy(START_FROM=iso(now))
    cli(stack, "watch", "add", user)
    assert invoke(stack)[user]["forwarded"] == 0
    sim.latency_s = 0.15
    since = iso(now - timedelta(hours=6))
    # WHEN a backfill of the past is stopped by Ctrl-C once it has written something
    process = subprocess.Popen(
        [str(SCRIPT), "backfill", user, "--since", since],
        env={**stack.env, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not stack.s3_objects() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _stdout, stderr = process.communicate(timeout=60)
    # THEN it stops after the batches under way and exits 130, as a shell expects of Ctrl-C
    assert "Stopping after the batches under way" in stderr
    assert process.returncode == 130, stderr
    assert "Stopped by Ctrl-C: run the same command to continue" in stderr
    stopped_at = len(stack.s3_events(user))
    assert 0 < stopped_at < len(expected)
    # AND the same command finishes the range, every event once
    sim.latency_s = 0.0
    again = cli(stack, "backfill", user, "--since", since)
    assert again.returncode == 0, again.stderr
    assert_once(stack, {user: expected})


def test_a_backfill_running_beside_live_runs_delivers_nothing_twice(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    # GIVEN a slow tenant, a user forwarded live from half an hour ago, 1,500 older events
    user = ALPHA
    now = datetime.now(UTC)
    expected = add(sim, user, 1500, hours=20)
    stack = deploy(START_FROM=iso(now - timedelta(minutes=30)), watched_user_ids=[user])
    invoke(stack)
    sim.latency_s = 0.05
    # WHEN a backfill of the whole history runs while new events arrive and live runs go on
    result: dict[str, Any] = {}
    worker = threading.Thread(
        target=lambda: result.update(
            done=cli(stack, "backfill", user, "--since", iso(now - timedelta(days=1)))
        )
    )
    worker.start()
    live_runs = 0
    while worker.is_alive() or live_runs < 2:
        expected |= add(sim, user, 7, hours=0.005)
        invoke(stack)
        live_runs += 1
    worker.join()
    # THEN the backfill and the live runs together delivered every event exactly once
    assert result["done"].returncode == 0, result["done"].stderr
    invoke(stack)
    assert_once(stack, {user: expected})
    CLI_LEDGER.append(
        ("backfill beside live", "live runs during it / dup / lost", f"{live_runs} / 0 / 0")
    )


def test_watch_refuses_a_mistyped_id_naming_it_and_changes_nothing(
    deploy: Callable[..., LocalDeployment],
) -> None:
    stack = deploy()
    for bad, said in (
        (" auth0|a", "starts or ends with a space"),
        ("auth0|a;auth0|b", "';'"),
        ('"auth0|a"', "'\"'"),
    ):
        done = cli(stack, "watch", "add", "auth0|fine", bad)
        assert done.returncode == 2
        assert repr(bad) in done.stderr and said in done.stderr
        assert "Traceback" not in done.stderr
    assert json.loads(cli(stack, "watch", "list", "--json").stdout) == []


def test_backfill_refuses_a_user_without_a_live_checkpoint_and_a_range_backwards(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    # GIVEN a user with events the function has never run for
    stack = deploy()
    add(sim, ANA, 10)
    since = iso(datetime.now(UTC) - timedelta(hours=2))
    # WHEN it is backfilled / THEN it is refused: its first live run would forward it again
    done = cli(stack, "backfill", ANA, "--since", since)
    assert done.returncode == 2 and "has no live checkpoint yet" in done.stderr
    assert stack.s3_records(ANA) == []
    # AND a range that ends before it starts is refused too
    backwards = cli(stack, "backfill", ANA, "--since", since, "--until", "2020-01-01T00:00:00Z")
    assert backwards.returncode == 2 and "must not be before --since" in backwards.stderr
    # (a table that does not exist: test_an_aws_error_names_the_resource_the_variable_and_…)


def test_one_hand_edited_item_is_one_unreadable_row_and_the_rest_is_shown(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    # GIVEN 21 watched users, each forwarded once
    users = [f"auth0|user-{n:02d}" for n in range(21)]
    stack = deploy(READ_MODE="per-user")
    for user in users:
        add(sim, user, 2)
    assert cli(stack, "watch", "add", *users).returncode == 0
    assert len(invoke(stack)) == 21
    # WHEN one summary attribute is edited by hand into something the forwarder never writes
    broken = users[7]
    stack.aws.client("dynamodb").update_item(
        TableName=stack.resources.table_name,
        Key={"user_id": {"S": broken}},
        UpdateExpression="SET pending_events = :v",
        ExpressionAttributeValues={":v": {"S": "lots"}},
    )
    # THEN status shows the 20 others, and that one as unreadable with the reason
    shown = cli(stack, "status", "--json")
    rows = {r["user_id"]: r for r in json.loads(shown.stdout)["users"]}
    assert sorted(rows) == users
    assert [u for u, r in rows.items() if r["state"] == "ok"] == users[:7] + users[8:]
    assert rows[broken]["state"] == "unreadable"
    assert rows[broken]["unreadable"] == "pending_events is 'lots', not a count"
    # AND the exit code says a row could not be read, in the table view too
    table = cli(stack, "status")
    assert shown.returncode == table.returncode == 1, table.stderr
    said = flat(table.stdout)
    assert f"{broken} table unreadable: pending_events" in said and "'lots', not a count" in said
    assert "1 of 21 users' checkpoint items cannot be read" in said
    assert sum(f"{user} table ok" in said for user in users) == 20
    # AND the function itself is not affected: the next run forwards the broken user too
    add(sim, broken, 1, hours=0.01)
    assert invoke(stack)[broken]["forwarded"] == 1
    assert cli(stack, "status").returncode == 0


def test_stored_and_aws_text_prints_literally_in_status_watch_and_backfill(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    # GIVEN a user whose read Auth0 refused with a message quoting markup and escape sequences,
    # kept in its checkpoint's last_error
    user, other = "auth0|hostile", "auth0|neighbour"
    stack = deploy(READ_MODE="per-user")
    add(sim, user, 5, hours=3)
    add(sim, other, 5)
    cli(stack, "watch", "add", user, other)
    invoke(stack)
    sim.fail_next(50, status=400, html=False, path_contains="hostile", message=HOSTILE)
    add(sim, user, 2, hours=0.01)
    assert stack.invoke().error is not None
    # WHEN status shows it / THEN as text, and nothing reaches the terminal as a command
    shown = cli(stack, "status")
    assert "failing" in shown.stdout
    assert_shown_not_obeyed(shown)
    # AND a watch list item put by hand (the AWS CLI) with such an id is listed as text
    stack.aws.client("dynamodb").put_item(
        TableName=stack.resources.watch_table or "", Item={"user_id": {"S": f"auth0|{HOSTILE}"}}
    )
    listed = cli(stack, "watch", "list")
    assert listed.returncode == 0
    assert_shown_not_obeyed(listed)
    # AND a backfill that Auth0 refuses the same way says so, as text
    since = iso(datetime.now(UTC) - timedelta(hours=4))
    refused = cli(stack, "backfill", user, "--since", since)
    assert refused.returncode == 1 and "FAILED" in refused.stdout
    assert_shown_not_obeyed(refused)


def test_an_aws_error_names_the_resource_the_variable_and_the_region(
    deploy: Callable[..., LocalDeployment],
) -> None:
    stack = deploy()
    region = stack.env.get("AWS_REGION") or stack.env.get("AWS_DEFAULT_REGION")
    # GIVEN a checkpoint table name that is not the stack's
    env = {**stack.env, "CHECKPOINT_TABLE": "no-such-table", "WATCH_TABLE": "no-such-list"}
    for args, variable, name in (
        (("status",), "CHECKPOINT_TABLE", "no-such-table"),
        # (--allow-unknown: Auth0 does not know auth0|a, which `watch add` says first)
        (("watch", "add", "--allow-unknown", "auth0|a"), "WATCH_TABLE", "no-such-list"),
    ):
        # WHEN a command reads it / THEN the error says which table, named by which variable,
        # in which region, and what to check
        done = run_cli(*args, env=env)
        said = flat(done.stderr)
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert "ResourceNotFoundException" in said
        assert f"of table '{name}' in region {region}, named by {variable}" in said, said
        assert "it does not exist there" in said
