"""What the operator is told about the ids, the token and the destinations is what is (#22):
`check` and `watch add` verify each id against Auth0, the scheduled run reports an id Auth0
does not know in the destinations, `check` without a token says the scopes are unknown.

The console script in a subprocess against the Auth0 simulator (and moto's server for the
scheduled runs), as the other CLI tests do. The simulator answers an unknown id's log with an
empty list by default: what Auth0 answers there is undocumented, and an empty list is the case
that used to pass in silence.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devtools.auth0_simulator import Auth0Simulator
from devtools.harness import LocalDeployment
from devtools.local_aws import LocalAws
from devtools.traffic import generate_user_events, iso
from log_forwarder.events import parse_date_ms
from log_forwarder.sinks.batching import stream_name_for
from tests.cli_support import CLI_LEDGER, flat, once_each, run_cli, tenant_env
from tests.e2e.conftest import GENEROUS, stack_name

pytestmark = pytest.mark.integration

# docs/operations.md's own example of a mistyped id (the real one ends in 0a11).
MISTYPED = "auth0|64b7f0c2e4a1d9a3c1f00a1"
KNOWN = "auth0|64b7f0c2e4a1d9a3c1f00a11"
ALL_SCOPES = ["read:logs", "read:logs_users", "read:users"]


@pytest.fixture
def sim() -> Iterator[Auth0Simulator]:
    with Auth0Simulator(rate_limit=GENEROUS) as simulator:
        assert simulator.unknown_user_status == 200  # an unknown id's log: an empty list
        yield simulator


def seed(sim: Auth0Simulator, user: str, count: int, *, hours: float = 2) -> dict[str, int]:
    """The user's new events: log_id → date (ms)."""
    now = datetime.now(UTC)
    events = generate_user_events(
        user,
        count=count,
        start=now - timedelta(hours=hours),
        end=now - timedelta(minutes=1),
        rng=random.Random(user),
    )
    return {e["log_id"]: parse_date_ms(e["date"]) for e in sim.add_events(events)}


# -- check ------------------------------------------------------------------------------------


def test_check_fails_on_an_id_auth0_does_not_know_when_it_may_ask(sim: Auth0Simulator) -> None:
    # GIVEN a known user with events, the docs' mistyped id, and a token with read:users
    seed(sim, KNOWN, 20)
    sim.set_scopes(ALL_SCOPES)
    # WHEN check runs on both
    done = run_cli("check", KNOWN, MISTYPED, env=tenant_env(sim))
    out = flat(done.stdout)
    # THEN the mistyped id is "no (404)", a FAIL, and check exits 1, as the docs show it
    assert f"{MISTYPED} no (404)" in out, out
    assert f"✗ FAIL {MISTYPED!r}: Auth0 does not know this user" in out
    assert "GET /api/v2/users/{id} answered 404" in out
    assert f"{KNOWN} yes 20" in out
    assert "read:users yes" in out
    assert "a scheduled run would find what it needs" not in out
    assert done.returncode == 1
    # AND each id cost one lookup, asked for the id alone (no profile data)
    assert sim.stats.calls("user") == 2


def test_check_without_read_users_says_unverified_and_never_a_plain_ok(
    sim: Auth0Simulator,
) -> None:
    # GIVEN the default scopes (no read:users): an unknown id's log is an empty list
    seed(sim, KNOWN, 5)
    done = run_cli("check", KNOWN, MISTYPED, env=tenant_env(sim))
    out = flat(done.stdout)
    # THEN the id with events is known by its log; the other is unverified, and says why
    assert f"{KNOWN} yes 5" in out, out
    assert f"{MISTYPED} unverified" in out
    assert "the token lacks read:users" in out and "holds no event" in out
    # AND the verdict never claims more than was checked
    assert "a scheduled run would find what it needs" not in out
    assert "1 of them unverified" in out
    assert done.returncode == 0  # nothing a run would fail on: a warning, not a failure
    # AND no lookup was spent on a token that could not make it
    assert sim.stats.calls("user") == 0


def test_check_without_a_token_says_the_scopes_are_unknown_not_refused(
    sim: Auth0Simulator,
) -> None:
    env = tenant_env(sim, WATCHED_USER_IDS=KNOWN, AUTH0_CLIENT_SECRET="not-the-secret-1234")
    done = run_cli("check", env=env)
    out = flat(done.stdout)
    assert done.returncode == 1 and "no token" in out
    for scope in ("read:logs_users", "read:logs", "read:users"):
        assert f"{scope} unknown: no token was obtained" in out, out
    assert " NO " not in f" {out} "
    assert json.loads(run_cli("check", "--json", env=env).stdout)["scopes"] is None


@pytest.mark.parametrize(("encoding", "said"), [("gzip, gzip", "chain"), ("gzip", "64 KiB")])
def test_check_reads_a_bombed_token_answer_as_the_function_does_bounded_and_named(
    sim: Auth0Simulator, encoding: str, said: str
) -> None:
    # GIVEN a token endpoint answering with a compression bomb (300 MB decoded)
    sim.bomb_next(2, encoding=encoding, megabytes=300, path_contains="/oauth/token")
    env = tenant_env(sim, WATCHED_USER_IDS=KNOWN)
    # WHEN check asks for a token / THEN it fails naming the answer, as the function's own
    # bounded reading does (a hook that read the answer whole decoded all 300 MB first)
    done = run_cli("check", env=env)
    out = flat(done.stdout)
    assert done.returncode == 1 and "no token" in out, done.stdout + done.stderr
    assert said in out and "Traceback" not in done.stderr
    assert "314,572," not in out  # never the whole answer's size: the rest was not read


# -- watch add --------------------------------------------------------------------------------


def watched(directory: Path, env: dict[str, str]) -> list[str]:
    listed = run_cli("watch", "list", "--local", str(directory), "--json", env=env)
    return [entry["user_id"] for entry in json.loads(listed.stdout)]


def test_watch_add_refuses_an_id_auth0_does_not_know_unless_told(
    sim: Auth0Simulator, tmp_path: Path
) -> None:
    seed(sim, KNOWN, 3)
    sim.set_scopes(ALL_SCOPES)
    env = tenant_env(sim)
    # WHEN a known id and a mistyped one are added / THEN nothing is added, the typo named
    refused = run_cli("watch", "add", "--local", str(tmp_path), KNOWN, MISTYPED, env=env)
    assert refused.returncode == 2, refused.stderr
    assert f"Auth0 does not know {MISTYPED!r}" in flat(refused.stderr)
    assert "Nothing was added" in refused.stderr and "--allow-unknown" in refused.stderr
    assert watched(tmp_path, env) == []
    # AND the known id alone is added
    assert run_cli("watch", "add", "--local", str(tmp_path), KNOWN, env=env).returncode == 0
    # AND an id to be created later is added when asked to, with a note
    later = run_cli("watch", "add", "--local", str(tmp_path), "--allow-unknown", MISTYPED, env=env)
    assert later.returncode == 0, later.stderr
    assert "added anyway (--allow-unknown)" in flat(later.stderr)
    assert watched(tmp_path, env) == sorted([KNOWN, MISTYPED])


def test_watch_add_without_read_users_uses_the_log_and_says_unverified(
    sim: Auth0Simulator, tmp_path: Path
) -> None:
    # GIVEN no read:users; a tenant whose log answers 404 for an unknown id
    seed(sim, KNOWN, 3)
    sim.unknown_user_status = 404
    env = tenant_env(sim)
    refused = run_cli("watch", "add", "--local", str(tmp_path), MISTYPED, env=env)
    assert refused.returncode == 2
    assert "GET /api/v2/users/{id}/logs answered 404" in flat(refused.stderr)
    # AND where the log is an empty list, the id is added as unverified, saying why
    sim.unknown_user_status = 200
    quiet = run_cli("watch", "add", "--local", str(tmp_path), MISTYPED, env=env)
    assert quiet.returncode == 0
    assert f"{MISTYPED!r} is unverified: the token lacks read:users" in flat(quiet.stderr)
    # AND without any Auth0 settings the ids are added, said to be unverified
    bare = run_cli("watch", "add", "--local", str(tmp_path), KNOWN, env={})
    assert bare.returncode == 0
    assert "not verified against Auth0 (AUTH0_DOMAIN is required" in flat(bare.stderr)
    assert watched(tmp_path, env) == sorted([KNOWN, MISTYPED])


# -- the scheduled run ------------------------------------------------------------------------


def unknown_user_records(stack: LocalDeployment, user: str) -> dict[str, list[dict[str, Any]]]:
    """The forwarder's records saying Auth0 does not know `user`, in each destination."""
    found: dict[str, list[dict[str, Any]]] = {}
    for name, records in (
        ("cloudwatch", stack.cloudwatch_records(user)),
        ("s3", stack.s3_records(user)),
    ):
        found[name] = [
            r["_forwarder"]
            for r in records
            if r.get("_forwarder", {}).get("rule") == "watched_user_unknown"
        ]
    return found


@pytest.mark.parametrize("read_mode", ["per-user", "stream"])
def test_a_watched_id_auth0_does_not_know_is_said_in_the_destinations_once(
    aws: LocalAws, sim: Auth0Simulator, read_mode: str
) -> None:
    # GIVEN a token with read:users, a known user and a mistyped id (its log: an empty list)
    seed(sim, KNOWN, 12)
    sim.set_scopes(ALL_SCOPES)
    stack = LocalDeployment(
        aws,
        sim,
        stack_name=stack_name("verify"),
        watched_user_ids=[KNOWN, MISTYPED],
        READ_MODE=read_mode,
    )
    # WHEN the schedule runs three times
    runs = [stack.invoke() for _ in range(3)]
    # THEN the first says it with a finding record in every destination and the metrics
    first = runs[0]
    assert first.error is None, first.error
    metrics = first.metrics()
    assert (metrics["UsersMissing"], metrics["UnknownUsers"]) == (1, 1)
    for name, records in unknown_user_records(stack, MISTYPED).items():
        assert len(records) == 1, (name, records)
        (record,) = records
        assert record["record_type"] == "finding" and record["severity"] == "medium"
        assert "answered 404" in record["details"]["answer"]
        assert record["details"]["events_forwarded_before"] == 0
    # AND the later runs keep counting it, and write it no second time
    for later in runs[1:]:
        assert later.error is None and later.metrics()["UnknownUsers"] == 1
    # AND each user was looked up once, on its first run, not every five minutes
    assert sim.stats.calls("user") == 2
    state = stack.checkpoint(MISTYPED) or {}
    assert state["lookup"] == "unknown" and state["missing_since"] is not None
    assert (stack.checkpoint(KNOWN) or {})["lookup"] == "known"
    assert unknown_user_records(stack, KNOWN) == {"cloudwatch": [], "s3": []}
    # AND status shows the id as unknown
    rows = json.loads(run_cli("status", "--json", env=stack.env).stdout)["users"]
    assert {r["user_id"]: r["state"] for r in rows}[MISTYPED] == "unknown"
    CLI_LEDGER.append(
        (f"unknown id ({read_mode})", "records per destination / lookups in 3 runs", "1 / 2")
    )


@pytest.mark.parametrize("read_mode", ["per-user", "stream"])
def test_an_id_created_after_auth0_said_404_is_known_once_its_log_returns_events(
    aws: LocalAws, sim: Auth0Simulator, read_mode: str
) -> None:
    # GIVEN a watched id Auth0 does not know yet (a token with read:users): missing after a run
    sim.set_scopes(ALL_SCOPES)
    stack = LocalDeployment(
        aws, sim, stack_name=stack_name("verify"), watched_user_ids=[KNOWN, MISTYPED],
        READ_MODE=read_mode,
    )  # fmt: skip
    seed(sim, KNOWN, 3)
    first = stack.invoke()
    assert first.error is None, first.error
    assert first.metrics()["UsersMissing"] == 1
    # WHEN the user is created and logs in, after that answer
    time.sleep(1.5)
    now = datetime.now(UTC)
    later = generate_user_events(
        MISTYPED, count=4, start=now - timedelta(seconds=1), end=now, rng=random.Random(7)
    )
    ids = {e["log_id"] for e in sim.add_events(later)}
    second = stack.invoke()
    # THEN the run that forwards its events no longer calls it missing, without a lookup
    assert second.error is None, second.error
    assert second.metrics()["EventsForwarded"] >= 4
    assert second.metrics()["UsersMissing"] == 0
    assert once_each(stack.s3_records(MISTYPED), ids) == (4, 0, 0)
    state = stack.checkpoint(MISTYPED) or {}
    assert state["missing_since"] is None and state["lookup"] == "known"
    rows = json.loads(run_cli("status", "--json", env=stack.env).stdout)["users"]
    assert {r["user_id"]: r["state"] for r in rows}[MISTYPED] not in ("missing", "unknown")


def test_without_read_users_the_run_spends_no_lookup_and_keeps_why(
    aws: LocalAws, sim: Auth0Simulator
) -> None:
    seed(sim, KNOWN, 4)
    stack = LocalDeployment(
        aws, sim, stack_name=stack_name("verify"), watched_user_ids=[KNOWN, MISTYPED]
    )
    done = stack.invoke()
    assert done.error is None, done.error
    assert sim.stats.calls("user") == 0
    lookup = (stack.checkpoint(MISTYPED) or {})["lookup"]
    assert lookup.startswith("unverified: the token lacks read:users")
    assert unknown_user_records(stack, MISTYPED) == {"cloudwatch": [], "s3": []}


# -- backfill ---------------------------------------------------------------------------------


def forwarded_live_from_an_hour_ago(
    aws: LocalAws, sim: Auth0Simulator, user: str, **variables: str
) -> LocalDeployment:
    """A deployment watching `user` whose first run forwarded the last hour (START_FROM): what
    is older is a backfill's."""
    stack = LocalDeployment(
        aws,
        sim,
        stack_name=stack_name("verify"),
        watched_user_ids=[user],
        START_FROM=iso(datetime.now(UTC) - timedelta(hours=1)),
        **variables,
    )
    assert stack.invoke().error is None
    return stack


def test_the_same_backfill_again_reads_the_destinations_back_and_refills_what_was_deleted(
    aws: LocalAws, sim: Auth0Simulator
) -> None:
    # GIVEN a user with 40 hours of events, forwarded live from an hour ago, and backfilled
    user = KNOWN
    now = datetime.now(UTC)
    dates = seed(sim, user, 400, hours=40)
    stack = forwarded_live_from_an_hour_ago(aws, sim, user)
    backfill = ("backfill", user, "--since", iso(now - timedelta(hours=41)))
    assert run_cli(*backfill, env=stack.env).returncode == 0
    assert once_each(stack.s3_records(user), set(dates)) == (400, 0, 0)
    # WHEN a day of the user's S3 objects is deleted (below the live floor: the backfill's
    # part), and the user's CloudWatch stream with it
    floor = (stack.checkpoint(user) or {})["floor"]
    below = {log_id for log_id, date in dates.items() if date < floor}
    s3, objects = aws.client("s3"), stack.s3_objects()
    day = min(key.split("dt=")[1][:10] for key in objects)
    for key, records in objects.items():
        dated = [parse_date_ms(r["date"]) for r in records if "date" in r]
        if f"dt={day}/" in key and dated and max(dated) < floor:
            s3.delete_object(Bucket=stack.resources.bucket, Key=key)
    lost_in_s3 = 400 - len(stack.s3_events(user))
    assert lost_in_s3 > 0
    aws.client("logs").delete_log_stream(
        logGroupName=stack.resources.log_group, logStreamName=stream_name_for(user)
    )
    # AND the very same backfill command runs again
    again = run_cli(*backfill, env=stack.env)
    # THEN it read the range again and says per destination what it checked and wrote
    assert again.returncode == 0, again.stderr
    said = flat(again.stdout)
    assert "backfilled before: it was read again from its start" in said, said
    assert f"s3: checked {len(below)}, missing {lost_in_s3}, written {lost_in_s3}" in said
    n = len(below)
    assert f"cloudwatch: checked {n}, missing {n}, written {n}" in said
    # AND what was deleted is back, exactly once
    assert once_each(stack.s3_records(user), set(dates)) == (400, 0, 0)
    assert once_each(stack.cloudwatch_records(user), below) == (n, 0, 0)
    # AND once more: every destination checked, nothing missing, nothing written
    third = flat(run_cli(*backfill, env=stack.env).stdout)
    for name in ("cloudwatch", "s3"):
        assert f"{name}: checked {n}, missing 0, written 0" in third, third
    assert once_each(stack.s3_records(user), set(dates)) == (400, 0, 0)
    CLI_LEDGER.append(
        ("backfill again", "S3 refilled / CloudWatch refilled / dup", f"{lost_in_s3} / {n} / 0")
    )


def test_a_corrupt_s3_object_fails_the_backfill_naming_it_and_s3_is_said_unchecked(
    aws: LocalAws, sim: Auth0Simulator
) -> None:
    # GIVEN a user forwarded live from an hour ago, with 10 hours of events before that
    user = KNOWN
    now = datetime.now(UTC)
    dates = seed(sim, user, 60, hours=10)
    stack = forwarded_live_from_an_hour_ago(aws, sim, user)
    backfill = ("backfill", user, "--since", iso(now - timedelta(hours=11)))
    assert run_cli(*backfill, env=stack.env).returncode == 0
    # WHEN one of the user's objects is replaced by bytes that are not gzip
    s3, bucket = aws.client("s3"), stack.resources.bucket
    victim = sorted(stack.s3_objects())[0]
    s3.put_object(Bucket=bucket, Key=victim, Body=b"not gzip at all")
    again = run_cli(*backfill, env=stack.env)
    # THEN it fails (exit 1) naming the object, says what Auth0 returned and that S3 was not
    # checked, with no traceback
    said = flat(again.stdout)
    assert again.returncode == 1, again.stderr
    assert "Traceback" not in again.stderr
    assert f"s3://{bucket}/{victim} is not gzipped UTF-8 JSON lines" in said, said
    below = sum(date < (stack.checkpoint(user) or {})["floor"] for date in dates.values())
    assert f"{below} events Auth0 returned for the range" in said, said
    assert "s3: not checked: the backfill failed first" in said, said


def test_a_backfill_reaching_before_auth0s_retention_says_how_much_it_could_not_check(
    aws: LocalAws,
) -> None:
    with Auth0Simulator(rate_limit=GENEROUS, retention_s=24 * 3600) as sim:
        # GIVEN a tenant that keeps a day of logs, a user with three days, forwarded live from
        # an hour ago
        now = datetime.now(UTC)
        seed(sim, KNOWN, 90, hours=72)
        stack = forwarded_live_from_an_hour_ago(aws, sim, KNOWN, AUTH0_LOG_RETENTION_HOURS="24")
        # WHEN a backfill asks for five days
        done = run_cli("backfill", KNOWN, "--since", iso(now - timedelta(days=5)), env=stack.env)
        # THEN it says that the four days before the retention were not checked, not only done
        assert done.returncode == 0, done.stderr
        said = flat(done.stdout)
        assert "; done." in said, said
        shown = re.search(r"Not checked: ([\d.]+) h of the range, \S+ to (\S+): Auth0 holds", said)
        assert shown is not None, said
        assert 95.9 <= float(shown.group(1)) <= 96.1, said
        cut = parse_date_ms(shown.group(2).rstrip(":"))
        expected_cut = (now - timedelta(hours=24)).timestamp() * 1000
        assert abs(cut - expected_cut) < 120_000, said
        assert "AUTH0_LOG_RETENTION_HOURS=24" in said
