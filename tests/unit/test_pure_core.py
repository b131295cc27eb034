"""What does no I/O imports nothing that does: the pure core, the ports (the seams the adapters
implement) and the orchestration over them load in a fresh interpreter where httpx, boto3 and
botocore cannot be imported at all."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

PURE_CORE = ("planner", "cursor", "chunk", "convert", "sinks.batching")
# The seams: a destination, the checkpoint protocol, Auth0's reads, the pushed-events ledger.
PORTS = ("sinks", "store", "source", "pushed")
# One run's drivers: they do I/O only through the ports.
ORCHESTRATION = (
    "session",
    "executor",
    "forwarder",
    "per_user",
    "stream_run",
    "fetch",
    "stream",
)

BLOCKED_IMPORT = textwrap.dedent(
    """
    import importlib, sys

    IO = {"httpx", "boto3", "botocore"}

    class Blocked:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in IO:
                raise ImportError(f"{name} is blocked: the pure core must not import it")
            return None

    sys.meta_path.insert(0, Blocked())
    refused = []
    for module in sys.argv[1:]:
        try:
            importlib.import_module(module)
        except ImportError as error:
            refused.append(f"{module}: {error}")
    assert not refused, refused
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in IO)
    assert not loaded, loaded
    print("pure")
    """
)


def _import_blocked(*modules: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", BLOCKED_IMPORT, *modules],
        env={"PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(
    "modules",
    [PURE_CORE, PORTS, ORCHESTRATION],
    ids=["the pure core", "the ports", "the orchestration"],
)
def test_imports_with_httpx_boto3_and_botocore_blocked(modules: tuple[str, ...]) -> None:
    done = _import_blocked(*(f"log_forwarder.{module}" for module in modules))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pure"


def test_the_blocker_itself_refuses_an_io_module() -> None:
    # The checks above mean something only if the blocker really refuses what it names.
    for io_module in ("httpx", "boto3", "botocore.exceptions"):
        done = _import_blocked("log_forwarder.planner", io_module)
        assert done.returncode != 0
        assert f"{io_module}: {io_module.split('.')[0]} is blocked" in done.stderr


def test_the_blocker_refuses_an_adapter() -> None:
    # An adapter imports its I/O library: the same check fails for it, naming the module.
    done = _import_blocked("log_forwarder.sinks.cloudwatch", "log_forwarder.checkpoint_store")
    assert done.returncode != 0
    assert "log_forwarder.sinks.cloudwatch: botocore" in done.stderr
    assert "log_forwarder.checkpoint_store: botocore" in done.stderr


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
