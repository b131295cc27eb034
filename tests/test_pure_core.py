"""The pure core imports nothing that does I/O: the planner and the cursor load in a fresh
interpreter where httpx, boto3 and botocore cannot be imported at all."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

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
