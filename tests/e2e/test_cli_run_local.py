"""`check` and `run --local`, end to end: the installed console script in a subprocess, against
the Auth0 simulator over HTTP, with no AWS at all."""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devtools.auth0_simulator import Auth0Simulator, RateLimit
from devtools.traffic import attack_burst, generate_user_events
from tests.cli_support import (
    CLI_LEDGER,
    HOSTILE,
    SCRIPT,
    assert_shown_not_obeyed,
    directory_records,
    flat,
    once_each,
    run_cli,
    tenant_env,
)

pytestmark = pytest.mark.integration

# The users of `make local-stack`: one past Auth0's 1,000-result cap, ids with | / @ and spaces.
USERS = {
    "auth0|64b7f0c2e4a1d9a3c1f00a11": 1150,
    "google-oauth2|1098/odd id@x=y": 90,
    "samlp|corp-okta|carol/admin@example.com": 35,
}


@pytest.fixture
def sim() -> Iterator[Auth0Simulator]:
    with Auth0Simulator(rate_limit=RateLimit(burst=50, per_second=200)) as simulator:
        simulator.unknown_user_status = 404
        yield simulator


def seed(sim: Auth0Simulator, counts: dict[str, int], hours: float = 40) -> dict[str, set[str]]:
    rng = random.Random(17)
    now = datetime.now(UTC)
    return {
        user: {
            e["log_id"]
            for e in sim.add_events(
                generate_user_events(
                    user,
                    count=count,
                    start=now - timedelta(hours=hours),
                    end=now - timedelta(minutes=2),
                    rng=rng,
                )
            )
        }
        for user, count in counts.items()
    }


def test_check_shows_scopes_limits_and_each_user_and_fails_on_an_unknown_id(
    sim: Auth0Simulator,
) -> None:
    # GIVEN a tenant with two known users (one past the 1,000-result cap) and a mistyped id
    seed(sim, dict(list(USERS.items())[:2]))
    ids = ",".join([*list(USERS)[:2], "auth0|64b7f0c2e4a1d9a3c1f00a1"])
    env = tenant_env(sim, WATCHED_USER_IDS=ids)
    # WHEN check runs (no AWS variable at all)
    done = run_cli("check", env=env)
    # THEN it shows the scopes and what they enable, the rate-limit headers and the plan
    out = flat(done.stdout)
    assert "read:logs_users yes" in out and "read:logs yes" in out
    assert "x-ratelimit-limit: 50" in out and "Enterprise: burst 50" in out
    # AND per user: known or not, events retained, calls a first run costs (⌈1150 / 99⌉ = 12)
    assert "auth0|64b7f0c2e4a1d9a3c1f00a11 yes 1,150 12" in out
    assert "google-oauth2|1098/odd id@x=y yes 90 1" in out
    assert "auth0|64b7f0c2e4a1d9a3c1f00a1 no (404)" in out
    # AND it exits 1 naming the unknown id: a scheduled run would never forward it
    assert done.returncode == 1, done.stderr
    assert "✗ FAIL 'auth0|64b7f0c2e4a1d9a3c1f00a1': Auth0 does not know this user" in out
    # AND without the wrong id it passes, and says so as JSON too
    ok = run_cli("check", *list(USERS)[:2], "--json", env=env)
    report = json.loads(ok.stdout)
    assert ok.returncode == 0 and report["failed"] is False
    assert [(u["retained"], u["first_run_calls"]) for u in report["users"]] == [(1150, 12), (90, 1)]
    CLI_LEDGER.append(("check", "first-run calls (1,150 / 90 events)", "12 / 1"))


def test_check_fails_when_a_run_would_lose_events_or_get_no_token(sim: Auth0Simulator) -> None:
    # GIVEN a token without read:logs and a user with 1,300 retained events
    user = "auth0|busy"
    sim.add_events(
        attack_burst(
            user,
            count=1300,
            start=datetime.now(UTC) - timedelta(hours=1),
            seconds=600,
            rng=random.Random(2),
        )
    )
    sim.set_scopes(["read:logs_users"])
    env = tenant_env(sim, WATCHED_USER_IDS=user)
    # WHEN check runs / THEN a first run would record the oldest 300 as a gap: exit 1
    done = run_cli("check", env=env)
    assert done.returncode == 1
    assert "read:logs NO" in flat(done.stdout)
    assert "grant read:logs" in flat(done.stdout)
    # AND with a wrong secret, there is no token: exit 1, the secret never printed
    wrong = run_cli("check", env={**env, "AUTH0_CLIENT_SECRET": "not-the-secret-1234"})
    assert wrong.returncode == 1
    assert "no token" in wrong.stdout and "401" in wrong.stdout, wrong.stdout
    assert "not-the-secret-1234" not in wrong.stdout + wrong.stderr
    # AND an empty watch list is a failure too: a scheduled run would forward nothing
    nobody = run_cli("check", env={**env, "WATCHED_USER_IDS": ""})
    assert nobody.returncode == 1 and "no watched users" in nobody.stdout


def test_run_local_forwards_every_event_once_and_a_second_run_resumes(
    sim: Auth0Simulator, tmp_path: Path
) -> None:
    # GIVEN three users with two days of history (one past the 1,000-result cap)
    expected = seed(sim, USERS)
    env = tenant_env(sim, WATCHED_USER_IDS=",".join(USERS))
    out_dir = tmp_path / "forwarded"
    # WHEN run --local runs from this machine
    started = time.monotonic()
    first = run_cli("run", "--local", str(out_dir), env=env)
    first_s = time.monotonic() - started
    # THEN every event is in DIR once, as gzipped JSON lines under the S3 sink's keys
    assert first.returncode == 0, first.stderr
    records = directory_records(out_dir)
    wanted = set().union(*expected.values())
    assert once_each(records, wanted) == (len(wanted), 0, 0)
    keys = [str(p.relative_to(out_dir)) for p in out_dir.rglob("*.jsonl.gz")]
    assert all(key.startswith("auth0-logs/dt=") for key in keys)
    assert (out_dir / "checkpoints.sqlite3").exists()
    # AND the progress was shown (a line per second on a pipe, and the final state)
    assert "run --local (3 users): 1,275 events," in first.stderr
    assert "Forwarded 1275 events" in flat(first.stdout)
    assert "0 user(s) failed" in first.stdout
    # AND the table's counts add up: the directory holds each user's events, findings, gap and
    # quarantine records and the records of events a rule did not see whole, each in a column
    table = flat(first.stdout)
    assert "fetched forwarded findings gap records quarantined skipped delivered" in table
    for user, count in USERS.items():
        cells = r" (\d+)" * 6 + r" directory (\d+)"
        row = re.search(re.escape(user) + cells, table)
        assert row is not None, (user, table)
        _fetched, forwarded, findings, gaps, quarantined, skipped, delivered = map(
            int, row.groups()
        )
        assert forwarded == count
        assert delivered == forwarded + findings + gaps + quarantined + skipped
    assert sum(1 for r in records if "log_id" not in r) > 0  # findings are written too
    calls_first = sim.stats.calls()
    # WHEN new events arrive and it runs again
    fresh = seed(sim, {user: 5 for user in USERS}, hours=0.02)
    started = time.monotonic()
    second = run_cli("run", "--local", str(out_dir), env=env)
    second_s = time.monotonic() - started
    # THEN only those are forwarded, from the checkpoints, at about one call per user
    assert second.returncode == 0, second.stderr
    wanted |= set().union(*fresh.values())
    assert once_each(directory_records(out_dir), wanted) == (len(wanted), 0, 0)
    calls_second = sim.stats.calls() - calls_first
    assert calls_second <= len(USERS) + 1
    # AND status reads DIR's checkpoints
    status = run_cli("status", "--local", str(out_dir), "--json", env=env)
    rows = json.loads(status.stdout)["users"]
    assert [(r["user_id"], r["watched"], r["state"], r["forwarded_total"]) for r in rows] == [
        (user, "WATCHED_USER_IDS", "ok", count + 5) for user, count in sorted(USERS.items())
    ]
    CLI_LEDGER.append(
        (
            "run --local",
            "first run: events / Auth0 calls / wall time",
            f"{len(wanted) - 15} / {calls_first} / {first_s:.1f} s",
        )
    )
    CLI_LEDGER.append(
        (
            "run --local",
            "second run: new events / calls / wall time",
            f"15 / {calls_second} / {second_s:.1f} s",
        )
    )


def test_run_local_counts_the_unknown_id_finding_it_delivers(
    sim: Auth0Simulator, tmp_path: Path
) -> None:
    # GIVEN a known user and a mistyped id, and a token that may ask Auth0 about ids
    real, typo = "auth0|real-user", "auth0|typo-user"
    seed(sim, {real: 20})
    sim.set_scopes(["read:logs", "read:logs_users", "read:users"])
    # WHEN run --local reads both
    done = run_cli("run", "--local", str(tmp_path / "out"), real, typo, env=tenant_env(sim))
    # THEN the typo's watched_user_unknown finding is counted where it is delivered: the row
    # adds up as the footnote says
    assert done.returncode == 0, done.stderr
    table = flat(done.stdout)
    numbers = r" (\d+) (\d+) (\d+) (\d+) (\d+) (\d+) directory (\d+)"
    row = re.search(re.escape(typo) + numbers, table)
    assert row is not None, table
    _fetched, forwarded, findings, gaps, quarantined, skipped, delivered = map(int, row.groups())
    assert (findings, delivered) == (1, 1), table
    assert delivered == forwarded + findings + gaps + quarantined + skipped


def test_a_killed_run_local_resumes_without_a_duplicate_or_a_loss(
    sim: Auth0Simulator, tmp_path: Path
) -> None:
    # GIVEN a slow tenant (150 ms a call) and a user with 3,000 events to read
    sim.latency_s = 0.15
    user = "auth0|long-history"
    expected = seed(sim, {user: 3000})[user]
    env = tenant_env(sim, WATCHED_USER_IDS=user)
    out_dir = tmp_path / "forwarded"
    # WHEN run --local is killed (SIGKILL: no clean-up) once its first objects are written
    process = subprocess.Popen(
        [str(SCRIPT), "run", "--local", str(out_dir)],
        env={**env, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not list(out_dir.rglob("*.jsonl.gz")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    partial = len(directory_records(out_dir))
    assert 0 < partial < len(expected)
    # AND it is started again (its lock was released by the kill; its leases are given up)
    again = run_cli("run", "--local", str(out_dir), env=env)
    # THEN every event is in DIR exactly once
    assert again.returncode == 0, again.stderr
    assert once_each(directory_records(out_dir), expected) == (len(expected), 0, 0)
    CLI_LEDGER.append(
        (
            "run --local killed",
            "events before the kill / after the resumed run / duplicated",
            f"{partial} / {len(expected)} / 0",
        )
    )


def test_ctrl_c_stops_after_the_batches_under_way_and_the_next_run_continues(
    sim: Auth0Simulator, tmp_path: Path
) -> None:
    sim.latency_s = 0.15
    user = "auth0|interrupted"
    expected = seed(sim, {user: 3000})[user]
    env = tenant_env(sim, WATCHED_USER_IDS=user)
    out_dir = tmp_path / "forwarded"
    process = subprocess.Popen(
        [str(SCRIPT), "run", "--local", str(out_dir)],
        env={**env, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not list(out_dir.rglob("*.jsonl.gz")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    # THEN it said it was stopping, committed what it delivered, and reported the user as
    # having more to read
    assert "Stopping after the batches under way" in stderr
    assert "more to read" in flat(stdout)
    # AND it exits 130, as a shell expects of a command stopped by Ctrl-C, saying how to go on
    assert process.returncode == 130
    assert "Stopped by Ctrl-C: run the same command to continue" in stderr
    again = run_cli("run", "--local", str(out_dir), env=env)
    assert again.returncode == 0
    assert once_each(directory_records(out_dir), expected) == (len(expected), 0, 0)


def test_a_second_run_local_on_the_same_directory_is_refused(
    sim: Auth0Simulator, tmp_path: Path
) -> None:
    sim.latency_s = 0.2
    user = "auth0|shared-dir"
    seed(sim, {user: 2000})
    env = tenant_env(sim, WATCHED_USER_IDS=user)
    out_dir = tmp_path / "forwarded"
    first = subprocess.Popen(
        [str(SCRIPT), "run", "--local", str(out_dir)],
        env={**env, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not (out_dir / "checkpoints.sqlite3").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second = run_cli("run", "--local", str(out_dir), env=env)
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=60)
    assert second.returncode == 2
    assert "is in use by another `run --local` (pid" in second.stderr
    assert "Traceback" not in second.stderr


def test_auth0_text_in_check_run_and_status_prints_literally_and_never_reaches_the_terminal(
    sim: Auth0Simulator, tmp_path: Path
) -> None:
    # GIVEN a tenant whose answer for one user's log is an error quoting markup and escape
    # sequences (Auth0 echoes what it was sent; a proxy may say anything)
    user = "auth0|hostile"
    seed(sim, {user: 5})
    env = tenant_env(sim, WATCHED_USER_IDS=user, READ_MODE="per-user")
    # (every read of that user's: tenant search, then its own endpoint, for check and the run)
    sim.fail_next(50, status=400, html=False, path_contains="hostile", message=HOSTILE)
    # WHEN check reads it / THEN the failure is shown with the text as it is, and no crash
    checked = run_cli("check", env=env)
    assert checked.returncode == 1, checked.stderr
    assert_shown_not_obeyed(checked)
    # AND run --local fails that user the same way, saying so in its table
    out_dir = tmp_path / "forwarded"
    forwarded = run_cli("run", "--local", str(out_dir), env=env)
    assert forwarded.returncode == 1, forwarded.stderr
    assert "FAILED" in forwarded.stdout
    assert_shown_not_obeyed(forwarded)
    # AND status shows the checkpoint's stored last error the same way
    shown = run_cli("status", "--local", str(out_dir), env=env)
    assert shown.returncode == 1, shown.stderr  # a watched user failing: a problem found
    assert "failing" in shown.stdout
    assert_shown_not_obeyed(shown)


def test_status_local_after_run_local_dir_user_shows_the_user_watched(
    sim: Auth0Simulator, tmp_path: Path
) -> None:
    # GIVEN the documented first steps: run --local DIR USER, with no WATCHED_USER_IDS
    user = "samlp|corp|carol"
    seed(sim, {user: 35})
    env = tenant_env(sim)
    out_dir = tmp_path / "forwarded"
    done = run_cli("run", "--local", str(out_dir), user, env=env)
    assert done.returncode == 0, done.stderr
    assert f"Added to {out_dir}'s watch list: {user}" in flat(done.stdout)
    # WHEN status reads DIR / THEN the user is watched (DIR's list) and up to date
    rows = json.loads(run_cli("status", "--local", str(out_dir), "--json", env=env).stdout)
    assert [(r["user_id"], r["watched"], r["state"]) for r in rows["users"]] == [
        (user, "local", "ok")
    ]
    # AND the table says yes/no, not Python's True/False
    table = flat(run_cli("status", "--local", str(out_dir), env=env).stdout)
    assert f"{user} local ok" in table
    assert "False" not in table and "True" not in table
    # AND a second run without USER continues the same user from DIR's list
    again = run_cli("run", "--local", str(out_dir), env=env)
    assert again.returncode == 0 and "run --local (1 users)" in again.stderr


@pytest.mark.parametrize(
    ("value", "said"),
    [
        ("2026-13-01", "month must be in 1..12"),
        ("2026-12-05T00:00:00", "has no time zone"),
        ("yesterday", "is not an ISO-8601 instant"),
        ("earliest", "is not an ISO-8601 instant"),
        ("9999-12-31T23:59:59-05:00", "outside the instants this command can read"),
        ("0001-01-01T00:00:00+01:00", "outside the instants this command can read"),
    ],
)
def test_a_bad_since_is_refused_by_its_own_name_with_a_suggestion_that_works(
    value: str, said: str
) -> None:
    # GIVEN no variable of the function at all (validation comes first)
    # WHEN backfill gets a --since it cannot use
    done = run_cli("backfill", "auth0|someone", "--since", value, env={})
    # THEN the error names --since and the rule, never START_FROM or 'earliest'
    assert done.returncode == 2
    assert "Invalid value for '--since'" in done.stderr and said in done.stderr
    assert "START_FROM" not in done.stderr and "'earliest', 'now'" not in done.stderr
    # AND the value it suggests is accepted as --since (what fails next is the missing tenant)
    suggested = re.search(r"e\.g\. (\S+)", done.stderr)
    assert suggested is not None, done.stderr
    retried = run_cli("backfill", "auth0|someone", "--since", suggested.group(1), env={})
    assert "--since" not in retried.stderr, retried.stderr
    assert "AUTH0_DOMAIN is required" in retried.stderr


@pytest.mark.parametrize(
    ("args", "option", "said"),
    [
        (
            ("backfill", "auth0|a", "--since", "2026-01-01T00:00:00Z", "--time-limit", "nan"),
            "--time-limit",
            "positive number of seconds",
        ),
        (("run", "--local", "DIR", "--time-limit", "inf"), "--time-limit", "positive number"),
        (("run", "--local", "DIR", "--time-limit", "1e308"), "--time-limit", "up to 604,800"),
        (("check", "--max-calls", "0"), "--max-calls", "x>=1"),
        (("--region", "us-east1", "status"), "--region", "not an AWS region"),
        (("--domain", "https://t.eu.auth0.com/", "check"), "--domain", "'t.eu.auth0.com'?"),
        (
            ("--checkpoint-table", "arn:aws:dynamodb:eu-west-1:1:table/T-1", "status"),
            "--checkpoint-table",
            "'T-1'?",
        ),
        (("watch", "add", "auth0|a", "auth0|b;auth0|c"), "USERS", "';'"),
        (("watch", "add", "auth0|a,auth0|b"), "USERS", "holds a comma"),
    ],
)
def test_every_option_is_refused_by_its_own_name(
    args: tuple[str, ...], option: str, said: str, tmp_path: Path
) -> None:
    done = run_cli(*args, env={}, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"Invalid value for '{option}" in done.stderr and said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not list(tmp_path.iterdir())


@pytest.mark.parametrize("command", ["run", "backfill"])
def test_a_time_limit_within_the_finish_margin_is_refused_before_anything_runs(
    command: str, tmp_path: Path
) -> None:
    # GIVEN a tenant nothing answers for (nothing may be asked: the refusal comes first)
    env = {
        "AUTH0_DOMAIN": "example.eu.auth0.com",
        "AUTH0_BASE_URL": "http://127.0.0.1:9",
        "AUTH0_CLIENT_ID": "id",
        "AUTH0_CLIENT_SECRET": "not-a-real-secret",
        "TIME_MARGIN_SECONDS": "60",
        # backfill reads the function's whole configuration: an AWS that nothing serves
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "CHECKPOINT_TABLE": "checkpoints",
        "DESTINATIONS": "s3",
        "S3_BUCKET": "bucket",
    }
    args = {
        "run": ("run", "--local", str(tmp_path / "out"), "auth0|a"),
        "backfill": ("backfill", "auth0|a", "--since", "2026-01-01T00:00:00Z"),
    }[command]
    # WHEN the time limit is no longer than the margin the forwarder keeps to finish in
    done = run_cli(*args, "--time-limit", "45", env=env, cwd=tmp_path)
    # THEN it is refused by its own name, saying why, instead of reading nothing and saying
    # "run the same command again to continue"
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Invalid value for '--time-limit'" in done.stderr, done.stderr
    assert "TIME_MARGIN_SECONDS (60 s)" in done.stderr
    assert "run the same command" not in done.stdout + done.stderr


def test_a_backfill_whose_every_destination_may_repeat_is_refused_before_reading(
    tmp_path: Path,
) -> None:
    # GIVEN a function delivering to Firehose alone, which cannot be read back
    env = {
        "AUTH0_DOMAIN": "example.eu.auth0.com",
        "AUTH0_BASE_URL": "http://127.0.0.1:9",
        "AUTH0_CLIENT_ID": "id",
        "AUTH0_CLIENT_SECRET": "not-a-real-secret",
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "CHECKPOINT_TABLE": "checkpoints",
        "DESTINATIONS": "firehose",
        "FIREHOSE_STREAM_NAME": "forwarded",
    }
    # WHEN a backfill is asked for
    done = run_cli("backfill", "auth0|a", "--since", "2026-01-01T00:00:00Z", env=env, cwd=tmp_path)
    # THEN it is refused, naming why, before Auth0 or AWS is asked anything (it wrote nothing,
    # recorded the range as backfilled, and said "done")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "holds no destination a backfill can write" in done.stderr
    assert "done" not in done.stdout
