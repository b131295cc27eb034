"""What the four handler modules share: one way to build on first use (observability.Lazy), and
who is watched asked of one module (watch_list), not of another handler."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devtools.auth0_simulator import Auth0Simulator
from devtools.harness import SCHEDULED_EVENT
from devtools.local_aws import LocalAws, deploy_template, function_environment
from devtools.traffic import generate_user_events
from log_forwarder import app, fanout, observability, realtime, worker
from log_forwarder.config import Settings
from log_forwarder.watch_list import RecentWatchList
from tests.fakes import InMemoryCheckpointStore

SRC = Path(__file__).resolve().parents[2] / "src"
USER = "auth0|cold-start"


def test_a_lazy_value_is_built_once_by_concurrent_first_invocations() -> None:
    # GIVEN a value that takes a while to build
    built: list[float] = []

    def build(clock: object) -> int:
        time.sleep(0.02)
        built.append(1.0)
        return len(built)

    lazy = observability.Lazy(build)
    # WHEN eight threads ask for it at once
    seen: list[int] = []
    threads = [threading.Thread(target=lambda: seen.append(lazy.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # THEN it was built once, and all eight got that one
    assert built == [1.0]
    assert seen == [1] * 8


def test_a_reset_builds_again_on_the_clock_given_or_uses_what_it_is_handed() -> None:
    clocks: list[object] = []
    lazy = observability.Lazy(lambda clock: clocks.append(clock) or len(clocks))
    assert lazy.get() == 1 and clocks == [time.time]

    def replayed() -> float:
        return 0.0

    lazy.reset(clock=replayed)
    assert lazy.get() == 2 and clocks[-1] is replayed
    lazy.reset(built=40)
    assert lazy.get() == 40 and len(clocks) == 2  # handed in: nothing built


def test_every_handler_module_keeps_what_it_built_in_one_lazy() -> None:
    kept = [app._runtime, realtime._container, worker._worker, fanout._scheduler]
    assert all(isinstance(value, observability.Lazy) for value in kept)


def test_the_real_time_handler_does_not_import_the_scheduled_one() -> None:
    # Who is watched is asked of watch_list; the real-time function has no use for app.py.
    code = "import sys, log_forwarder.realtime; print('log_forwarder.app' in sys.modules)"
    assert _printed_by_fresh_process(code) == "False"


def test_the_scheduled_handler_module_leaves_the_run_to_its_first_invocation() -> None:
    # The composition root and what it builds are imported when the runtime is built
    # (app.py's docstring); bench/sigma.py measures what that saves at import.
    code = (
        "import sys, log_forwarder.app; "
        "print(sorted(m for m in ('httpx', 'aws_lambda_powertools', 'log_forwarder.runtime', "
        "'log_forwarder.config', 'log_forwarder.forwarder') if m in sys.modules))"
    )
    assert _printed_by_fresh_process(code) == "[]"


# A first invocation of the scheduled handler in a fresh interpreter: the modules it loaded, what
# it answered (or the error it raised, by type and text), and the EMF metrics it printed.
_FIRST_INVOCATION = textwrap.dedent(
    """
    import contextlib, io, json, sys
    BLOCKED = sys.argv[1:]

    class Blocked:  # a distribution the artifact lacks: its import fails as an absent one's
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Blocked())
    import log_forwarder.app as app

    class Context:
        function_name = "ForwarderFunction"
        memory_limit_in_mb = 256
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ForwarderFunction"
        aws_request_id = "cold-start"

        def get_remaining_time_in_millis(self):
            return 300_000

    answers, printed = [], io.StringIO()
    for _ in range(2):  # the first invocation, then a warm one in the same container
        with contextlib.redirect_stdout(printed):
            try:
                answers.append({"forwarded": app.lambda_handler(EVENT, Context())["forwarded"]})
            except Exception as error:
                answers.append({"error": type(error).__name__, "text": str(error)})
    metrics = [json.loads(line) for line in printed.getvalue().splitlines() if '"_aws"' in line]
    print(json.dumps({"answers": answers, "modules": sorted(sys.modules),
                      "metrics": sorted(k for m in metrics for k in m if k[:1].isupper())}))
    """
)


@pytest.fixture(scope="module")
def stack() -> Iterator[dict[str, str]]:
    """The template's stack on moto's server and a simulated tenant with one watched user's new
    events: the environment the scheduled function has there (per-user reads)."""
    with LocalAws() as aws, Auth0Simulator(rate_limit=None) as sim:
        now = datetime.now(UTC)
        sim.add_events(
            generate_user_events(
                USER,
                count=12,
                start=now - timedelta(hours=2),
                end=now - timedelta(minutes=2),
                rng=random.Random(23),
            )
        )
        credentials = {"client_id": sim.client_id, "client_secret": sim.client_secret}
        resources = deploy_template(aws, stack_name="cold-start", auth0_credentials=credentials)
        yield {
            **aws.env(),
            **function_environment(
                resources,
                auth0_domain=sim.domain,
                auth0_base_url=sim.base_url,
                watched_user_ids=[USER],
                destinations="cloudwatch,s3",
                AWS_ENDPOINT_URL=aws.endpoint_url,
                READ_MODE="per-user",
            ),
        }


def _first_invocation(env: Mapping[str, str], *blocked: str) -> dict[str, Any]:
    code = _FIRST_INVOCATION.replace(
        "EVENT", repr(json.loads(SCHEDULED_EVENT.read_text(encoding="utf-8")))
    )
    printed = _printed_by_fresh_process(code, env, *blocked)
    result: dict[str, Any] = json.loads(printed.splitlines()[-1])
    return result


def test_a_cold_start_loads_what_its_first_run_uses_and_nothing_of_other_modes(
    stack: dict[str, str],
) -> None:
    # GIVEN the scheduled function's stack (the default pack's rules on, Auth0's own format,
    # per-user reads)
    # WHEN a fresh container answers its first event
    first = _first_invocation(stack)
    assert first["answers"][0] == {"forwarded": 12}
    assert "ColdStart" in first["metrics"]
    loaded = set(first["modules"])
    # THEN it loaded what the run used: the composition root, the engine, httpx, Powertools
    used = {
        "log_forwarder.runtime",
        "log_forwarder.forwarder",
        "log_forwarder.sigma_step",
        "log_forwarder.rule_packs",
        "httpx",
        "aws_lambda_powertools",
    }
    assert used <= loaded
    # AND nothing of what other modes, other functions or the CLI use: the OCSF mapping (OCSF
    # output off), the pseudonyms (no PII key), the stream's run (per-user reads), the tenants,
    # the other handlers, the CLI and the Sigma compiler's libraries (pySigma, PyYAML)
    other = {
        "log_forwarder.ocsf",
        "log_forwarder.pseudonymise",
        "log_forwarder.stream_run",
        "log_forwarder.tenants",
        "log_forwarder.tenant_message",
        "log_forwarder.worker",
        "log_forwarder.fanout",
        "log_forwarder.realtime",
        "log_forwarder.cli",
        "sigma",
        "yaml",
    }
    assert sorted(other & loaded) == []
    assert [m for m in loaded if m.startswith("log_forwarder.cli.")] == []


def test_a_library_missing_from_the_artifact_fails_each_invocation_by_its_name(
    stack: dict[str, str],
) -> None:
    # GIVEN an artifact without httpx: the composition root's import fails on the first
    # invocation now, not in Lambda's init phase
    # WHEN a fresh container is invoked twice
    first = _first_invocation(stack, "httpx")
    # THEN each invocation fails with the import's own error, naming the library (the second
    # too: nothing half-built is kept); Lambda logs it as the invocation's error and counts it
    # in AWS/Lambda Errors, which the template's ErrorsAlarm watches
    missing = {"error": "ModuleNotFoundError", "text": "No module named 'httpx'"}
    assert first["answers"] == [missing, missing]
    # AND no metric claims a run, or even a cold start (Powertools adds that one after a
    # handler returns)
    assert first["metrics"] == []


def _printed_by_fresh_process(code: str, env: Mapping[str, str] | None = None, *args: str) -> str:
    """What `code` prints in an interpreter of its own: imports start from nothing there."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code, *args],
        env={"PYTHONPATH": str(SRC), "AWS_DEFAULT_REGION": "us-east-1", **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_the_real_time_watch_list_is_asked_again_only_after_its_ttl() -> None:
    # GIVEN a watch list kept in the checkpoint items (WATCHED_USER_IDS unset), cached for 60 s
    store = InMemoryCheckpointStore()
    store.set_watch("auth0|a")
    now = [0.0]
    settings = Settings.from_env(
        {
            "AUTH0_DOMAIN": "example.eu.auth0.com",
            "AUTH0_CLIENT_ID": "id",
            "AUTH0_CLIENT_SECRET": "secret",
            "CHECKPOINT_TABLE": "table",
            "DESTINATIONS": "s3",
            "S3_BUCKET": "bucket",
        }
    )
    watched = RecentWatchList(settings, None, store, ttl_s=60, clock=lambda: now[0])
    assert watched.users() == {"auth0|a"}
    # WHEN a user is added, the list is asked within the TTL, then after it
    store.set_watch("auth0|b")
    now[0] = 59.9
    within = watched.users()
    now[0] = 60.0
    after = watched.users()
    # THEN the new user shows only once the TTL is over
    assert within == {"auth0|a"}
    assert after == {"auth0|a", "auth0|b"}
