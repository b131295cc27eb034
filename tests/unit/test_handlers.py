"""What the four handler modules share: one way to build on first use (observability.Lazy), and
who is watched asked of one module (watch_list), not of another handler."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from log_forwarder import app, fanout, observability, realtime, worker
from log_forwarder.config import Settings
from log_forwarder.watch_list import RecentWatchList
from tests.fakes import InMemoryCheckpointStore

SRC = Path(__file__).resolve().parents[2] / "src"


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


def _printed_by_fresh_process(code: str) -> str:
    """What `code` prints in an interpreter of its own: imports start from nothing there."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(SRC), "AWS_DEFAULT_REGION": "us-east-1"},
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
