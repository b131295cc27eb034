"""Driving the installed `auth0-log-forwarder` script in a subprocess, as an operator would."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SCRIPT = Path(sys.executable).parent / "auth0-log-forwarder"
# Text from outside that a terminal must show, not obey: rich markup (a closing tag that opens
# nothing crashed the CLI), and escape sequences that set the window title and clear the screen.
HOSTILE = "[/x] [bold]loud \x1b]0;pwned\x07\x1b[2J"
HOSTILE_SHOWN = "[/x] [bold]loud \\x1b]0;pwned\\x07\\x1b[2J"
# (test, figure, value), printed after the run by conftest.
CLI_LEDGER: list[tuple[str, str, str]] = []


def run_cli(
    *args: str,
    env: Mapping[str, str],
    timeout: float = 180,
    cwd: Path | None = None,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """The console script with exactly `env` (plus PATH and HOME): no variable of the test
    process leaks in. `stdin`: what the operator types at the prompts (else nothing)."""
    base = {name: os.environ[name] for name in ("PATH", "HOME") if name in os.environ}
    return subprocess.run(
        [str(SCRIPT), *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        input=stdin if stdin is not None else "",
    )


def assert_shown_not_obeyed(done: subprocess.CompletedProcess[str]) -> None:
    """HOSTILE reached the output literally (markup as text, controls as visible escapes), no
    control character reached the terminal, and nothing crashed."""
    output = done.stdout + done.stderr
    assert "Traceback" not in output and "MarkupError" not in output, output
    assert HOSTILE_SHOWN in flat(output), output
    assert not {"\x1b", "\x07"} & set(output), output


def tenant_env(sim: Any, **extra: str) -> dict[str, str]:
    """What `check` and `run --local` need: the tenant and local credentials; no AWS at all."""
    return {
        "AUTH0_DOMAIN": sim.domain,
        "AUTH0_BASE_URL": sim.base_url,
        "AUTH0_CLIENT_ID": sim.client_id,
        "AUTH0_CLIENT_SECRET": sim.client_secret,
        "AUTH0_RATE_LIMIT_PER_SECOND": "100",
        **extra,
    }


def directory_records(root: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted(root.rglob("*.jsonl.gz"))
        for line in gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()
        if line
    ]


def once_each(records: list[dict[str, Any]], expected: set[str]) -> tuple[int, int, int]:
    """(delivered, missing, duplicated) of `expected` log_ids among the records."""
    got = Counter(r["log_id"] for r in records if "log_id" in r)
    return sum(got.values()), len(expected - set(got)), sum(1 for v in got.values() if v > 1)


def flat(text: str) -> str:
    """Rendered tables as plain words: box characters dropped, whitespace collapsed."""
    for box in "│┃┏┓┗┛┡┩┣┫━─└┘┌┐╇╈┳┻╋├┤┼":
        text = text.replace(box, " ")
    return " ".join(text.split())
