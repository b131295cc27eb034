"""`make local-stack` (devtools/local_stack.py): it serves what events/env.json names, and the
function configured by env.json fills it. In process here; `make test-sam-local` does the same
through `sam local invoke` in Docker."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from devtools.local_stack import (
    ENV_FILE,
    EnvFile,
    LocalStack,
    LocalStackError,
    sam_invoke_command,
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def env_copy(tmp_path: Path) -> Path:
    """events/env.json with free ports, so a running `make local-stack` does not collide."""
    document = json.loads(ENV_FILE.read_text(encoding="utf-8"))
    variables = document["ForwarderFunction"]
    variables["AUTH0_BASE_URL"] = f"http://host.docker.internal:{free_port()}"
    variables["AWS_ENDPOINT_URL"] = f"http://host.docker.internal:{free_port()}"
    path = tmp_path / "env.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def test_env_json_names_the_documented_fixed_ports() -> None:
    env = EnvFile.load()
    assert (env.auth0_port, env.aws_port) == (8080, 8081)
    readme = (ENV_FILE.parent.parent / "docs" / "local.md").read_text(encoding="utf-8")
    section = readme.split("## Run it locally", 1)[1].split("\n## ", 1)[0]
    assert "port **8080**" in section
    assert "port **8081**" in section
    assert "--env-vars events/env.json" in section
    assert "events/env.real-tenant.json.example" in section


def test_the_printed_command_uses_env_json_and_reaches_this_machine() -> None:
    command = sam_invoke_command(ENV_FILE, "x86_64")
    assert command[:4] == ["sam", "local", "invoke", "ForwarderFunction"]
    assert command[command.index("--env-vars") + 1].endswith("events/env.json")
    assert command[command.index("--event") + 1].endswith("events/scheduled-event.json")
    assert "Architecture=x86_64" in command
    assert command[command.index("--add-host") + 1] == "host.docker.internal:host-gateway"


def test_the_function_configured_by_env_json_fills_the_stack_exactly_once(env_copy: Path) -> None:
    with LocalStack(host="127.0.0.1", env_file=env_copy) as stack:
        # GIVEN the stack, seeded, and the function's environment as env.json sets it, with
        # host.docker.internal being this machine
        seeded = stack.seed_history(sizes=(120, 30, 10))
        env = {
            **stack.aws.env(),
            **EnvFile.load(env_copy).variables,
            "AUTH0_BASE_URL": stack.simulator.base_url,
            "AWS_ENDPOINT_URL": stack.aws.endpoint_url,
        }
        stack.deployment.env = env
        # WHEN the handler runs, then runs again after new events
        first = stack.deployment.invoke(cold=True)
        new = stack.add_new_events()
        second = stack.deployment.invoke()
        # THEN every event is in both destinations once, and the checkpoints say so
        assert first.error is None, first.error
        assert second.error is None, second.error
        assert first.result is not None and first.result["forwarded"] == sum(seeded.values())
        assert second.result is not None and second.result["forwarded"] == sum(new.values())
        rows = stack.deliveries()
        assert {row.destination for row in rows} == {"cloudwatch", "s3"}
        assert all(row.ok and row.delivered == row.expected > 0 for row in rows), rows
        checkpoints = stack.checkpoints()
        newest = stack.newest_dates()
        for user in stack.users:
            assert checkpoints[user]["forwarded_total"] == seeded[user] + new[user]
            assert checkpoints[user]["watermark"] == newest[user]
            assert checkpoints[user]["pending_events"] == 0
        report = stack.report()
        assert "missing" in report and "version=" in report
        # AND the client secret and the token never reached the function's output
        secrets = [stack.env["AUTH0_CLIENT_SECRET"], *stack.issued_tokens()]
        assert len(secrets) == 2
        assert not [s for s in secrets for out in (first.output, second.output) if s in out]


def test_env_json_names_must_match_what_the_template_creates(tmp_path: Path) -> None:
    document = json.loads(ENV_FILE.read_text(encoding="utf-8"))
    variables = document["ForwarderFunction"]
    variables["AUTH0_BASE_URL"] = f"http://host.docker.internal:{free_port()}"
    variables["AWS_ENDPOINT_URL"] = f"http://host.docker.internal:{free_port()}"
    variables["S3_BUCKET"] = "someone-elses-bucket"
    path = tmp_path / "env.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(LocalStackError, match="S3_BUCKET='someone-elses-bucket'"):
        LocalStack(host="127.0.0.1", env_file=path).start()


def test_a_taken_port_is_reported_not_waited_on(env_copy: Path) -> None:
    port = EnvFile.load(env_copy).aws_port
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        with pytest.raises(LocalStackError, match=f"cannot listen on 127.0.0.1:{port}"):
            LocalStack(host="127.0.0.1", env_file=env_copy).start()


def test_urls_in_env_json_must_point_at_the_container_host(tmp_path: Path) -> None:
    document = json.loads(ENV_FILE.read_text(encoding="utf-8"))
    document["ForwarderFunction"]["AWS_ENDPOINT_URL"] = "https://dynamodb.us-east-1.amazonaws.com"
    path = tmp_path / "env.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(LocalStackError, match="AWS_ENDPOINT_URL"):
        _ = EnvFile.load(path).aws_port


def test_deliveries_count_missing_duplicated_and_unexpected_events() -> None:
    from collections import Counter

    from devtools.local_stack import _compare

    row = _compare("auth0|a", "s3", {"a", "b", "c"}, Counter({"a": 1, "b": 2, "x": 1}))
    assert (row.expected, row.delivered, row.missing, row.duplicated, row.unexpected) == (
        3,
        4,
        1,
        1,
        1,
    )
    assert not row.ok
    assert _compare("auth0|a", "s3", {"a"}, Counter({"a": 1})).ok
