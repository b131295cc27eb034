"""The pure core imports nothing that does I/O: the planner and the cursor load in a fresh
interpreter where httpx, boto3 and botocore cannot be imported at all."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

BLOCKED_IMPORT = textwrap.dedent(
    """
    import sys

    class Blocked:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"httpx", "boto3", "botocore"}:
                raise ImportError(f"{name} is blocked: the pure core must not import it")
            return None

    sys.meta_path.insert(0, Blocked())
    import log_forwarder.planner, log_forwarder.cursor, log_forwarder.chunk
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in {"httpx", "boto3", "botocore"})
    assert not loaded, loaded
    print("pure")
    """
)


def test_the_planner_and_the_cursor_import_with_httpx_and_boto3_blocked() -> None:
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", BLOCKED_IMPORT],
        env={"PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pure"


def test_the_blocker_itself_refuses_an_io_module() -> None:
    # The check above means something only if the blocker really refuses what it names.
    code = BLOCKED_IMPORT.replace(
        "import log_forwarder.planner,", "import httpx, log_forwarder.planner,"
    )
    done = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode != 0 and "httpx is blocked" in done.stderr


NO_SIDE_EFFECTS = textwrap.dedent(
    """
    import logging, sys
    import boto3

    made = []
    real_client = boto3.session.Session.client

    def client(self, *args, **kwargs):
        made.append(args[0] if args else kwargs.get("service_name"))
        return real_client(self, *args, **kwargs)

    boto3.session.Session.client = client
    boto3.client = lambda *a, **k: made.append(a[0]) or None
    def handlers(name):
        # A library's own NullHandler (Powertools adds one to its logger) sets nothing up.
        found = logging.getLogger(name).handlers
        return [h for h in found if not isinstance(h, logging.NullHandler)]

    before = {name: handlers(name) for name in logging.root.manager.loggerDict}
    root_handlers = list(logging.getLogger().handlers)

    import log_forwarder.app, log_forwarder.worker, log_forwarder.fanout

    added = [
        name
        for name in logging.root.manager.loggerDict
        if handlers(name) and handlers(name) != before.get(name)
    ]
    assert not made, f"clients created at import: {made}"
    assert not added, f"logging handlers set up at import: {sorted(added)}"
    assert logging.getLogger().handlers == root_handlers
    print("quiet")
    """
)


def test_importing_the_handler_modules_sets_nothing_up() -> None:
    # The CLI and tests import them; only an invocation builds loggers, metrics and clients.
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", NO_SIDE_EFFECTS],
        env={"PYTHONPATH": str(SRC), "AWS_DEFAULT_REGION": "us-east-1"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "quiet"
