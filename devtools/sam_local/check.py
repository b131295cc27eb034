"""`make test-sam-local`: the function as `sam build` packages it, run by `sam local invoke` in
Docker, against the stack `make local-stack` starts (devtools/local_stack.py).

Three invocations of the scheduled function: a first run over the seeded history (one user past
Auth0's 1,000-result cap), a run after new events, and an idle run; then the real-time function
with a batch of its queue (events/realtime-event.json, freshly dated: a new event of a watched
user), and a scheduled run that confirms it instead of forwarding it again. Then it checks that
every event reached both destinations exactly once, that the checkpoint items say so, and that no
secret (the client secret, an access token) appears in anything the function or SAM CLI printed.

It prints the figures (wall times, REPORT lines, deliveries per user and destination, the
checkpoints) and exits non-zero on any failure. It never skips: without Docker it fails.
devtools/sam_local/run.sh sets up Docker and the stand-in runtime image, then runs this.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import modulefinder
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from devtools.local_aws import load_template
from devtools.local_stack import (
    LOCAL_CREDENTIALS,
    ROOT,
    LocalStack,
    format_checkpoint,
    function_architecture,
)

INVOKE_TIMEOUT_S = 600
REPORT_LINE = re.compile(r"REPORT RequestId: .*")


@dataclass
class Invocation:
    title: str
    expected_forwarded: int
    seconds: float
    returncode: int
    stdout: str
    stderr: str
    summary: dict[str, Any] | None = None
    report_line: str | None = None

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def function_log_lines(self) -> list[dict[str, Any]]:
        """The function's structured log lines (JSON: Powertools', the runtime's, EMF metrics),
        as SAM CLI relays them."""
        lines: list[dict[str, Any]] = []
        for line in self.output.splitlines():
            start = line.find("{")
            if start < 0:
                continue
            try:
                record = json.loads(line[start:])
            except ValueError:
                continue
            if isinstance(record, dict) and ("level" in record or "_aws" in record):
                lines.append(record)
        return lines


@dataclass
class Checks:
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> bool:
        (self.passed if ok else self.failed).append(what)
        print(f"   {'ok  ' if ok else 'FAIL'} {what}", flush=True)
        return ok


def sam_environment(python312: str, app_dir: Path) -> dict[str, str]:
    """SAM CLI's environment: dummy AWS credentials only, no telemetry, no update check."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AWS_") and key not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    app_dir.mkdir(parents=True, exist_ok=True)
    # SAM CLI's settings folder (its own variable for it): telemetry off, and the weekly
    # look-up of a newer version marked as done, so every request stays on this machine.
    (app_dir / "metadata.json").write_text(
        json.dumps({"telemetryEnabled": False, "lastVersionCheck": time.time()}),
        encoding="utf-8",
    )
    env.update(
        {
            **LOCAL_CREDENTIALS,
            # No profile files, no instance metadata: the host's own credentials stay out.
            "AWS_CONFIG_FILE": str(app_dir / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(app_dir / "no-aws-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "SAM_CLI_TELEMETRY": "0",
            "__SAM_CLI_APP_DIR": str(app_dir),
            # `sam build` without a container needs the runtime's python3.12 on PATH.
            "PATH": f"{Path(python312).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        }
    )
    return env


def modules_without_bytecode(artifact: Path) -> list[str]:
    """Modules of the artifact that Lambda would compile on every cold start: no python3.12
    bytecode beside them, or bytecode checked against the source's time (which zipping rounds)."""
    missing = []
    for source in sorted(artifact.rglob("*.py")):
        compiled = source.parent / "__pycache__" / f"{source.stem}.cpython-312.pyc"
        # PEP 552: the flags word after the magic number; 0b01 is hash-based and unchecked.
        if not compiled.exists() or compiled.read_bytes()[4:8] != b"\x01\x00\x00\x00":
            missing.append(str(source.relative_to(artifact)))
    return missing


def handler_modules() -> set[str]:
    """The package's modules the template's handlers import, at any depth (modulefinder reads
    every import statement, those inside functions included), and the destinations' adapters,
    which runtime.py builds through the registry (sinks/registry.py imports each by its name)."""
    template = json.dumps(
        [
            resource.get("Properties", {}).get("Handler")
            for resource in load_template()["Resources"].values()
        ]
    )
    handlers = set(re.findall(r"(log_forwarder(?:\.\w+)+)\.lambda_handler", template))
    finder = modulefinder.ModuleFinder(path=[str(ROOT / "src")])
    for handler in sorted(handlers):
        finder.import_hook(handler)
    if "log_forwarder.runtime" in finder.modules:
        from log_forwarder.sinks.registry import REGISTRY

        for destination in REGISTRY:
            finder.import_hook(destination.adapter)
    return {name for name in finder.modules if name.split(".")[0] == "log_forwarder"}


def artifact_modules(artifact: Path) -> set[str]:
    """The package's modules an artifact holds."""
    return {
        ".".join(path.relative_to(artifact).with_suffix("").parts).removesuffix(".__init__")
        for path in (artifact / "log_forwarder").rglob("*.py")
    }


def run(command: Sequence[str], env: Mapping[str, str], timeout: float) -> tuple[int, str, str]:
    completed = subprocess.run(  # noqa: S603 - our own command line
        list(command),
        cwd=ROOT,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return completed.returncode, completed.stdout, completed.stderr


def parse_summary(stdout: str) -> dict[str, Any] | None:
    """The handler's return value, which `sam local invoke` prints on stdout."""
    for line in reversed(stdout.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def invoke(
    stack: LocalStack,
    sam: str,
    env: Mapping[str, str],
    image: str,
    title: str,
    expected_forwarded: int,
    number: int,
    state_dir: Path,
    **options: Any,
) -> Invocation:
    # Exactly the command `make local-stack` prints, plus the stand-in image: no registry here.
    command = [
        sam,
        *stack.sam_invoke_command("--invoke-image", image, "--skip-pull-image", **options)[1:],
    ]
    print(f"\n{title}\n   $ {shlex.join(['sam', *command[1:]])}", flush=True)
    started = time.monotonic()
    code, stdout, stderr = run(command, env, INVOKE_TIMEOUT_S)
    result = Invocation(title, expected_forwarded, time.monotonic() - started, code, stdout, stderr)
    for stream, text in (("stdout", stdout), ("stderr", stderr)):
        (state_dir / f"invoke-{number}.{stream}").write_text(text, encoding="utf-8")
    result.summary = parse_summary(stdout)
    reports = REPORT_LINE.findall(stderr + stdout)
    result.report_line = reports[-1].strip() if reports else None
    print(
        f"   wall time {result.seconds:.1f} s, exit code {code} "
        f"(output in {state_dir / f'invoke-{number}.*'})"
    )
    print(f"   {result.report_line or '(no REPORT line)'}")
    if result.summary is not None:
        summary = result.summary
        print(
            f"   forwarded {summary.get('forwarded')} (expected {expected_forwarded}), "
            f"Auth0 API calls {summary.get('api_calls')}, "
            f"429s {summary.get('rate_limited')}, token requests {summary.get('token_requests')}"
        )
    return result


def _counts(per_user: Mapping[str, int]) -> str:
    return ", ".join(map(str, per_user.values()))


REALTIME_EVENT = ROOT / "events" / "realtime-event.json"
# An SQS batch of the real-time queue, as its event source hands it to the function.
REALTIME_BATCH = json.loads(REALTIME_EVENT.read_text(encoding="utf-8"))
REALTIME_SOURCE = json.loads(REALTIME_BATCH["Records"][0]["body"])["source"]


def pushed_event(stack: LocalStack, state_dir: Path) -> Path:
    """events/realtime-event.json (a batch of the real-time queue) for the first watched user,
    dated now, with a log_id Auth0 (the simulator) holds too: the next scheduled run reads it
    back."""
    batch = json.loads(REALTIME_EVENT.read_text(encoding="utf-8"))
    record = batch["Records"][0]
    event = json.loads(record["body"])
    data = dict(event["detail"]["data"])
    data.pop("log_id", None)
    data["user_id"] = stack.users[0]
    data["date"] = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    (added,) = stack.simulator.add_events([data])
    event["detail"] = {"log_id": added["log_id"], "data": added}
    event["time"] = data["date"][:19] + "Z"
    record["body"] = json.dumps(event)
    record["md5OfBody"] = hashlib.md5(record["body"].encode("utf-8")).hexdigest()  # noqa: S324
    path = state_dir / "realtime-event.json"
    path.write_text(json.dumps(batch, indent=2), encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="sam local invoke, checked end to end")
    parser.add_argument("--sam", required=True, help="the sam executable (.venv-sam/bin/sam)")
    parser.add_argument("--invoke-image", required=True, help="the stand-in runtime image")
    parser.add_argument("--python312", required=True, help="python3.12 for `sam build`")
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".sam-local")
    args = parser.parse_args(argv)

    started = time.monotonic()
    checks = Checks()
    env = sam_environment(args.python312, args.state_dir / "samcli")
    architecture = function_architecture()

    print(f"sam build (Architecture={architecture})", flush=True)
    build_started = time.monotonic()
    code, stdout, stderr = run(
        [args.sam, "build", "--parameter-overrides", f"Architecture={architecture}"], env, 900
    )
    build_seconds = time.monotonic() - build_started
    print(f"   {build_seconds:.1f} s, exit code {code}")
    if not checks.check(code == 0, "sam build succeeds"):
        print(stdout[-4000:] + stderr[-4000:])
        return finish(checks, started)
    # The operator's CLI libraries come with the `cli` extra only, never with the function.
    artifact = ROOT / ".aws-sam" / "build" / "ForwarderFunction"
    bundled = {path.name.split("-")[0].lower() for path in artifact.iterdir()}
    cli_only = sorted(bundled & {"click", "rich", "markdown_it", "markdown_it_py", "pygments"})
    checks.check(not cli_only, f"the CLI's libraries are not in the sam build artifact {cli_only}")
    # Each function is its own makefile build (SAM shares none of them): all three are checked.
    imported = handler_modules()
    for function in ("ForwarderFunction", "RealtimeFunction", "TenantWorkerFunction"):
        held = artifact_modules(artifact.parent / function)
        checks.check(
            held == imported,
            f"{function}'s artifact holds the modules the handlers import, and no other"
            f" (extra {sorted(held - imported)[:5]}, missing {sorted(imported - held)[:5]})",
        )
        uncompiled = modules_without_bytecode(artifact.parent / function)
        checks.check(
            not uncompiled,
            f"every module of {function} ships unchecked-hash bytecode for python3.12"
            f" {uncompiled[:5]}",
        )

    with LocalStack(host="auto") as stack:
        print(
            f"\nlocal stack: Auth0 simulator {stack.simulator.base_url}, moto "
            f"{stack.aws.endpoint_url} ({stack.host_reason})"
        )
        if not checks.check(
            stack.host != "127.0.0.1", "the stack listens where containers reach it (docker0)"
        ):
            return finish(checks, started)

        def step(title: str, expected: int, **options: Any) -> None:
            number = len(invocations) + 1
            invocations.append(
                invoke(
                    stack,
                    args.sam,
                    env,
                    args.invoke_image,
                    f"{number}. {title}",
                    expected,
                    number,
                    args.state_dir,
                    **options,
                )
            )

        invocations: list[Invocation] = []
        history = stack.seed_history()
        step(f"First run: the seeded history ({_counts(history)})", sum(history.values()))
        new = stack.add_new_events()
        step(f"New events ({_counts(new)})", sum(new.values()))
        step("Idle: nothing new", 0)
        step(
            "Real time: Auth0's stream pushes a new event of a watched user",
            1,
            function="RealtimeFunction",
            event=pushed_event(stack, args.state_dir),
            parameters=[f"RealtimeEventSourceName={REALTIME_SOURCE}"],
        )
        step("The next scheduled run confirms it (nothing forwarded twice)", 0)
        confirmed = sum(
            int(u.get("realtime_confirmed", 0))
            for u in (invocations[4].summary or {}).get("users", [])
        )
        checks.check(
            confirmed == 1, f"invocation 5 confirmed {confirmed} pushed event (1 expected)"
        )
        handed_back = (invocations[3].summary or {}).get("batchItemFailures")
        checks.check(
            handed_back == [],
            f"invocation 4 (an SQS batch) hands no message back to the queue ({handed_back})",
        )

        print("\nChecks")
        for n, result in enumerate(invocations, 1):
            ok = checks.check(result.returncode == 0, f"invocation {n}: sam local invoke exits 0")
            summary = result.summary or {}
            checks.check(
                "errorType" not in summary and "errorMessage" not in summary,
                f"invocation {n}: the function returned a result, not an error",
            )
            checks.check(
                summary.get("forwarded") == result.expected_forwarded,
                f"invocation {n}: forwarded {summary.get('forwarded')} "
                f"= {result.expected_forwarded} expected",
            )
            checks.check(result.report_line is not None, f"invocation {n}: REPORT line printed")
            if not ok or "errorType" in summary:
                print("   --- its output (end) ---")
                print(result.output[-6000:])

        print()
        print(stack.report())
        print()
        rows = stack.deliveries()
        for row in rows:
            checks.check(
                row.ok and row.delivered == row.expected > 0,
                f"{row.user_id} -> {row.destination}: {row.delivered} delivered of "
                f"{row.expected}, {row.missing} missing, {row.duplicated} duplicated, "
                f"{row.unexpected} unexpected",
            )
        checks.check(
            {row.destination for row in rows} == {"cloudwatch", "s3"},
            "both destinations were checked",
        )

        checkpoints = stack.checkpoints()
        newest = stack.newest_dates()
        expected_counts = {row.user_id: row.expected for row in rows}
        for user in stack.users:
            item = checkpoints.get(user) or {}
            wanted = {
                "forwarded_total": expected_counts.get(user),
                "pending_events": 0,
                "backlog": False,
                "watermark": newest[user],
                "gaps_total": 0,
            }
            got = {name: _number(item.get(name)) for name in wanted}
            checks.check(
                got == wanted and int(item.get("version", 0)) >= 1,
                f"checkpoint of {user}: {format_checkpoint(item or None)}",
            )

        secrets = {"client secret": stack.env["AUTH0_CLIENT_SECRET"]}
        secrets.update(
            {f"access token {i + 1}": token for i, token in enumerate(stack.issued_tokens())}
        )
        log_lines = sum(len(result.function_log_lines()) for result in invocations)
        checks.check(
            log_lines > 0 and len(secrets) > 1,
            f"the function logged {log_lines} lines; the simulator issued "
            f"{len(secrets) - 1} token(s) to look for",
        )
        leaked = sorted(
            name
            for name, value in secrets.items()
            for result in invocations
            if value and value in result.output
        )
        checks.check(
            not leaked,
            "no secret (client secret, access tokens) in the function's log lines or SAM's output"
            + (f": LEAKED {', '.join(sorted(set(leaked)))}" if leaked else ""),
        )

        print("\nREPORT lines")
        for n, result in enumerate(invocations, 1):
            print(f"   {n}. {result.report_line}  (wall {result.seconds:.1f} s)")
        print(f"sam build {build_seconds:.1f} s")
    return finish(checks, started)


def _number(value: Any) -> Any:
    # DynamoDB numbers come back as Decimal.
    return int(value) if isinstance(value, Decimal) else value


def finish(checks: Checks, started: float) -> int:
    print(f"\nsam local test: wall time {time.monotonic() - started:.1f} s")
    for what in checks.failed:
        print(f"FAILED: {what}")
    print(f"sam-local: {len(checks.passed)} passed, {len(checks.failed)} failed", flush=True)
    return 1 if checks.failed or not checks.passed else 0


if __name__ == "__main__":
    sys.exit(main())
