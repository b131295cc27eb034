"""The CLI against `make local-stack` (devtools/local_stack.py), from this machine: `--local-stack`
reads the variables the running stack wrote, with the addresses this machine reaches it at;
events/env.json, which is for containers, is refused at once with the way to do it instead."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.local_stack import ENV_FILE, LocalStack, choose_host
from log_forwarder.cli.environment import LOCAL_STACK_FILE
from tests.cli_support import flat, run_cli
from tests.e2e.test_local_stack import env_copy  # noqa: F401 (a fixture: env.json on free ports)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def stack(request: pytest.FixtureRequest) -> Iterator[LocalStack]:
    """The local stack as `make local-stack` starts it, on free ports (a running one would
    hold 8080 and 8081), seeded small: its tenant allows 2 requests/s."""
    env_file = request.getfixturevalue("env_copy")
    host = getattr(request, "param", "127.0.0.1")
    if host == "auto":
        # make local-stack's default: Docker's bridge on Linux when it exists
        host = choose_host("auto")[0]
        if host == "127.0.0.1":
            pytest.skip("no Docker bridge on this machine: the default is the loopback")
    with LocalStack(host=host, env_file=env_file) as local:
        local.seed_history(sizes=(40, 20, 10))
        yield local
        forget(local)


def forget(local: LocalStack) -> None:
    """Delete what the stack `local` holds: moto's state is the process's, and the next test
    here to start a local stack (test_local_stack.py) counts every record of its destinations."""
    resources = local.deployment.resources
    dynamodb, logs, s3 = (local.aws.client(name) for name in ("dynamodb", "logs", "s3"))
    for table in filter(None, (resources.table_name, resources.watch_table)):
        dynamodb.delete_table(TableName=table)
    if resources.log_group:
        logs.delete_log_group(logGroupName=resources.log_group)
    if resources.bucket:
        versions = s3.list_object_versions(Bucket=resources.bucket)
        for version in versions.get("Versions", []) + versions.get("DeleteMarkers", []):
            s3.delete_object(
                Bucket=resources.bucket, Key=version["Key"], VersionId=version["VersionId"]
            )
        s3.delete_bucket(Bucket=resources.bucket)


@pytest.mark.parametrize("stack", ["127.0.0.1", "auto"], indirect=True)
def test_local_stack_points_every_command_at_the_running_stack(
    stack: LocalStack, tmp_path: Path
) -> None:
    # GIVEN the file `make local-stack` writes at the clone's root, and a shell in a subfolder
    clone = tmp_path / "clone"
    (clone / "docs").mkdir(parents=True)
    stack.write_cli_file(clone / LOCAL_STACK_FILE)
    here = clone / "docs"
    # WHEN check runs with --local-stack and no variable of its own
    started = time.monotonic()
    checked = run_cli("--local-stack", "check", env={}, cwd=here)
    # THEN it reached the stack's simulator: every seeded user is known, nothing failed
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for user in stack.users:
        assert f"{user} yes" in flat(checked.stdout)
    # AND after the function ran (configured as the stack's containers are), status reads the
    # stack's table through moto, every user ok and watched by WATCHED_USER_IDS
    stack.deployment.env = stack.cli_variables()
    assert stack.deployment.invoke(cold=True).error is None
    shown = run_cli("--local-stack", "status", "--json", env={}, cwd=here)
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)["users"]
    assert sorted((r["user_id"], r["watched"], r["state"]) for r in rows) == sorted(
        (user, "WATCHED_USER_IDS", "ok") for user in stack.users
    )
    # AND run --local forwards from the same simulator into a directory
    forwarded = run_cli("--local-stack", "run", "--local", str(tmp_path / "out"), env={}, cwd=here)
    assert forwarded.returncode == 0, forwarded.stderr
    assert "Forwarded 70 events" in flat(forwarded.stdout)
    print(f"--local-stack check, status, run --local: {time.monotonic() - started:.1f} s")


def test_local_stack_without_a_running_stack_says_what_to_start(tmp_path: Path) -> None:
    # GIVEN no file at all
    none = run_cli("--local-stack", "status", env={}, cwd=tmp_path)
    assert none.returncode == 2 and "start `make local-stack`" in flat(none.stderr)
    # AND a file left by a stack that was killed (its process is gone)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    (tmp_path / LOCAL_STACK_FILE).write_text(
        json.dumps({"pid": int(gone.stdout), "ForwarderFunction": {}}), encoding="utf-8"
    )
    stale = run_cli("--local-stack", "status", env={}, cwd=tmp_path)
    assert stale.returncode == 2 and "is not running any more" in flat(stale.stderr)
    # AND --local-stack with --env-file is one too many
    both = run_cli("--local-stack", "--env-file", str(ENV_FILE), "status", env={}, cwd=tmp_path)
    assert both.returncode == 2 and "use one" in both.stderr
    assert "Traceback" not in none.stderr + stale.stderr + both.stderr


def test_the_containers_env_file_is_refused_at_once_with_the_way_to_reach_the_stack() -> None:
    try:
        socket.getaddrinfo("host.docker.internal", None)
    except OSError:
        pass
    else:
        pytest.skip("host.docker.internal resolves on this machine (Docker Desktop)")
    # GIVEN events/env.json, whose addresses are this machine as a container sees it
    started = time.monotonic()
    done = run_cli("--env-file", str(ENV_FILE), "check", env={})
    elapsed = time.monotonic() - started
    # THEN the CLI says so before any call (no retry warnings, no ConnectError), naming the
    # variable and --local-stack
    said = flat(done.stderr)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "AUTH0_BASE_URL='http://host.docker.internal:8080'" in said
    assert "pass --local-stack instead" in said
    assert "ConnectError" not in said and "retry" not in said.lower()
    assert elapsed < 10


def test_the_local_docs_show_the_cli_against_the_local_stack() -> None:
    local = (ROOT / "docs" / "local.md").read_text(encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "auth0-log-forwarder --local-stack status" in local
    assert "--local-stack" in readme
    assert os.path.basename(LOCAL_STACK_FILE) in (ROOT / ".gitignore").read_text()
