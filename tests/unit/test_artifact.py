"""What `sam build` packages: src/Makefile's recipe, run as SAM runs it for each function (into an
ARTIFACTS_DIR), holds the modules the template's handlers import and no other (the CLI stays
out), each with the unchecked-hash bytecode Lambda's read-only /var/task needs. The runtime
requirements are left out here (an empty requirements file): this is about the package step, and
`make test-sam-local` builds the whole artifact."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devtools.local_aws import TEMPLATE_PATH
from devtools.sam_local.check import (
    artifact_modules,
    handler_modules,
    modules_without_bytecode,
)

SRC = TEMPLATE_PATH.parent / "src"
FUNCTIONS = ("ForwarderFunction", "RealtimeFunction", "TenantWorkerFunction")
MAKE = shutil.which("make")

pytestmark = pytest.mark.skipif(
    sys.version_info[:2] != (3, 12) or MAKE is None,
    reason="the recipe compiles for the runtime's Python, 3.12, with make",
)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_the_artifact_holds_what_the_handlers_import_compiled(
    tmp_path: Path, function: str
) -> None:
    # GIVEN the Makefile's recipe for the function, run as `sam build` does
    artifact = tmp_path / function
    requirements = tmp_path / "no-requirements.txt"
    requirements.write_text("", encoding="utf-8")
    done = subprocess.run(  # noqa: S603 - our own Makefile
        [
            str(MAKE),
            "--no-print-directory",
            "-C",
            str(SRC),
            f"build-{function}",
            f"ARTIFACTS_DIR={artifact}",
            f"LAMBDA_PYTHON={sys.executable}",
            f"REQUIREMENTS={requirements}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # THEN it holds the package's modules the handlers import, at any depth, and nothing else
    held, imported = artifact_modules(artifact), handler_modules()
    assert {"log_forwarder.worker", "log_forwarder.sinks.s3"} <= imported
    assert sorted(held - imported) == [], "packaged, though no function imports it"
    assert sorted(imported - held) == [], "imported by a handler, but not packaged"
    # AND every module ships the bytecode Lambda would otherwise compile at each cold start
    assert modules_without_bytecode(artifact) == []
    assert not any(artifact.rglob("cli"))
