"""`make bench`, what one function costs to start, to ship, to hold and to run:

- cold init: import + clients (build_runtime) in a fresh process, against a bare `import boto3`
  measured in the same run;
- artifact: the `sam build` output, zipped, and what is in it;
- peak RSS, CPU and AWS calls while draining a backlog of 1k, 10k, 100k events (a fresh process
  per size, the simulator and moto's server outside it);
- CPU per 1,000 events of the pure steps: convert, batch, serialise;
- Lambda cost per million events at 128, 256 and 512 MB, from the measured CPU and a stated
  CPU-share model (Lambda gives one vCPU at 1,769 MB, proportionally less below).

Nothing is asserted; every figure is printed beside its goal.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devtools.auth0_simulator import Auth0Simulator
from devtools.local_aws import LocalAws, deploy_template, function_environment
from devtools.traffic import generate_user_events

ROOT = Path(__file__).resolve().parent.parent
FULL_VCPU_MB = 1769  # Lambda: one vCPU at 1,769 MB, a proportional share below
SIZES_MB = (128, 256, 512)
# Assumed latencies of the waits the CPU model leaves out, per call (stated in docs/benchmark.md).
AUTH0_CALL_S = 0.150  # the latency the rest of the benchmark simulates
AWS_CALL_S = 0.025  # an in-region DynamoDB, S3 or CloudWatch Logs call
PRICE_PER_GB_S = 0.0000133334  # arm64, us-east-1, first tier
DRAIN_USERS = 4
CHUNK_USERS_EVENTS = 1000 * DRAIN_USERS  # a full batch (fetch.CHUNK_EVENTS) for every user


@dataclass
class Row:
    measure: str
    figure: str
    target: str


# What the Lambda Python runtime provides besides the standard library (/var/runtime).
RUNTIME_PACKAGES = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3")
_BARE = """
import json, time
t0, c0 = time.perf_counter(), time.process_time()
import boto3
print(json.dumps({"boto3": time.perf_counter() - t0, "cpu": time.process_time() - c0}))
"""
_FULL = """
import json, time
t0, c0 = time.perf_counter(), time.process_time()
import boto3
t1 = time.perf_counter()
import log_forwarder.app
t2 = time.perf_counter()
from log_forwarder.config import Settings
from log_forwarder.runtime import build_runtime
build_runtime(Settings.from_env())
t3 = time.perf_counter()
print(json.dumps({"boto3": t1 - t0, "ours": t2 - t1, "clients": t3 - t2, "wall": t3 - t0,
                  "cpu": time.process_time() - c0}))
"""
INIT_ENV = {
    "AUTH0_DOMAIN": "example.eu.auth0.com",
    "AUTH0_CREDENTIALS_SECRET": "auth0-user-log-forwarder/management-api",
    "CHECKPOINT_TABLE": "table",
    "DESTINATIONS": "cloudwatch,s3",
    "LOG_GROUP_NAME": "group",
    "S3_BUCKET": "bucket",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "POWERTOOLS_SERVICE_NAME": "auth0-user-log-forwarder",
}


def _runtime_path(folder: Path) -> Path:
    """A folder holding only what the Lambda runtime adds to the path (from our venv)."""
    import boto3

    site = Path(boto3.__file__).resolve().parent.parent
    folder.mkdir(parents=True, exist_ok=True)
    for name in RUNTIME_PACKAGES:
        (folder / name).symlink_to(site / name)
    return folder


def _requirements_path(folder: Path) -> Path:
    """A folder holding only what the function's artifact bundles: the distributions
    src/requirements.txt names and those they require (extras left out), taken from our venv.

    The venv's whole site-packages is not that: it holds the CLI's click and rich too, and
    httpx's `__init__` imports its own command line (`httpx._main`: click, rich, pygments) when
    they are importable, about 90 ms on this machine that no function spends (src/Makefile
    installs httpx without its `cli` extra)."""
    from importlib import metadata

    wanted = [
        line.split("==")[0].strip()
        for line in (ROOT / "src" / "requirements.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    seen: set[str] = set()
    folder.mkdir(parents=True, exist_ok=True)
    while wanted:
        name = wanted.pop().lower().replace("_", "-")
        if name in seen or name in {"boto3", "botocore"}:  # the runtime's own
            continue
        seen.add(name)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # a requirement of an older Python only (anyio's exceptiongroup)
        for requirement in dist.requires or []:
            if "extra ==" not in requirement:
                wanted.append(re.match(r"[A-Za-z0-9._-]+", requirement.strip())[0])  # type: ignore[index]
        tops = {f.parts[0] for f in dist.files or [] if len(f.parts) and f.parts[0] != ".."}
        for top in sorted(tops):
            if top.endswith((".dist-info", ".egg-info")) or top in {"bin", "__pycache__"}:
                continue
            source = Path(str(dist.locate_file(top)))
            if source.exists() and not (folder / top).exists():
                (folder / top).symlink_to(source)
                if top.endswith(".py"):
                    _compiled(folder / top)
    return folder


def _compiled(module: Path) -> None:
    """The bytecode of a one-file module (typing_extensions.py) beside its link, as src/Makefile
    compiles it into the artifact: a package's own __pycache__ comes with its folder's link, but
    a lone module's lies in site-packages' __pycache__, off this path, and the module was compiled
    again in every fresh process (~25 ms the function never spends)."""
    import importlib.util
    import py_compile

    py_compile.compile(
        str(module),
        cfile=importlib.util.cache_from_source(str(module)),
        doraise=True,
        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH,
    )


def _child(
    code: str, path: Sequence[Path], environment: dict[str, str] | None = None
) -> dict[str, Any]:
    """`code` in a fresh interpreter without site-packages: the path is `path` alone, as in
    Lambda (the function's package, then the runtime's boto3), in `environment` (INIT_ENV when
    None). Nothing compiled is written back: Lambda's /var/task is read-only, so a module shipped
    without bytecode compiles on every cold start."""
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": os.pathsep.join(map(str, path))}
    completed = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-S", "-c", code],
        env={
            **env,
            **(INIT_ENV if environment is None else environment),
            "PYTHONDONTWRITEBYTECODE": "1",
        },
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(completed.stdout.splitlines()[-1])
    return result


def _without_bytecode(package: Path, folder: Path) -> Path:
    """A copy of `package` as SAM's Python builder ships it: sources only."""
    shutil.copytree(package, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def cold_init(package: Path | None, runs: int = 7) -> list[Row]:
    """Median over `runs` fresh processes each, interleaved so all see the same machine load.
    `package`: the `sam build` output (else src/ and the venv's packages stand in for it)."""
    with tempfile.TemporaryDirectory() as tmp:
        runtime = _runtime_path(Path(tmp) / "runtime")
        path = [package or ROOT / "src", runtime]
        if package is None:  # Powertools and httpx from the venv, as the artifact bundles them
            path.insert(1, _requirements_path(Path(tmp) / "requirements"))
        sources = [_without_bytecode(package, Path(tmp) / "sources"), runtime] if package else None
        bare, full, uncompiled = [], [], []
        for _ in range(runs):
            bare.append(_child(_BARE, [runtime]))
            full.append(_child(_FULL, path))
            if sources:
                uncompiled.append(_child(_FULL, sources))
    median = {key: statistics.median(r[key] for r in full) for key in full[0]}
    bare_s = statistics.median(r["boto3"] for r in bare)
    at_sizes = ", ".join(f"{median['cpu'] * FULL_VCPU_MB / mb:.1f} s at {mb} MB" for mb in SIZES_MB)
    where = "the `sam build` package" if package else "src/ (no package built)"

    def handler_import(results: list[dict[str, float]]) -> float:
        return statistics.median(r["boto3"] + r["ours"] for r in results)

    rows = [
        Row(
            f"Cold init: import + clients (build_runtime), fresh process, {where}, median of {runs}",
            f"**{median['wall'] * 1000:.0f} ms** (CPU {median['cpu'] * 1000:.0f} ms) against a "
            f"bare `import boto3` of {bare_s * 1000:.0f} ms = {median['wall'] / bare_s:.1f}×: "
            f"boto3 {median['boto3'] * 1000:.0f}, the handler module "
            f"{median['ours'] * 1000:.0f}, the first invocation's build_runtime (our other "
            f"modules with Powertools and httpx, and four clients' service models) "
            f"{median['clients'] * 1000:.0f} ms. In Lambda by the CPU-share model: {at_sizes}",
            "our modules ≤ 150 ms; all ≤ 4× bare `import boto3`",
        )
    ]
    if uncompiled:
        shipped, before = handler_import(full), handler_import(uncompiled)
        rows.append(
            Row(
                f"Cold import of the handler module alone (boto3 included), median of {runs}; "
                "not the cold start: its first invocation imports the rest (`python -m "
                "bench.sigma` measures it whole)",
                f"**{shipped / bare_s:.2f}×** a bare `import boto3` ({shipped * 1000:.0f} ms), "
                f"with the bytecode src/Makefile ships; sources only, as SAM's Python builder "
                f"ships them: {before / bare_s:.2f}× ({before * 1000:.0f} ms)",
                "≤ 1.6× bare `import boto3`",
            )
        )
    return rows


def artifact(build: Path) -> tuple[list[Row], Path | None]:
    """`sam build` into `build`, zipped as Lambda receives it; the function's folder too."""
    from devtools.sam_local.check import sam_environment

    sam = ROOT / ".venv-sam" / "bin" / "sam"
    python312 = _python312()
    if not sam.exists() or python312 is None:
        why = "SAM CLI not installed (.venv-sam)" if not sam.exists() else "no python3.12"
        return [Row("Artifact (`sam build`, zipped)", f"not measured: {why}", "≤ 5 MB")], None
    env = sam_environment(python312, build.parent / "samcli")
    subprocess.run(  # noqa: S603 - our own SAM CLI
        [str(sam), "build", "--build-dir", str(build)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=900,
    )
    function = build / "ForwarderFunction"
    archive = build.parent / "function.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        for path in sorted(function.rglob("*")):
            zipped.write(path, path.relative_to(function))
    unzipped = sum(p.stat().st_size for p in function.rglob("*") if p.is_file())
    row = Row(
        "Artifact: `sam build` output, zipped (each function, three identical builds)",
        f"**{archive.stat().st_size / 1e6:.2f} MB** zipped, {unzipped / 1e6:.1f} MB unzipped: "
        f"{_largest_parts(function)}; boto3 is the runtime's, not bundled",
        "≤ 5 MB zipped (Lambda's limit: 50 MB)",
    )
    return [row], function


def _python312() -> str | None:
    """A real python3.12 for `sam build` (a pyenv shim does not resolve in its environment)."""
    if sys.version_info[:2] == (3, 12):
        return str(Path(getattr(sys, "_base_executable", sys.executable)).resolve())
    found = shutil.which("python3.12")
    if found is None:
        return None
    resolved = subprocess.run(  # noqa: S603 - the interpreter PATH names
        [found, "-c", "import sys; print(sys.executable)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return resolved.stdout.strip() or None


def _largest_parts(function: Path) -> str:
    sizes: dict[str, int] = {}
    for path in function.rglob("*"):
        if path.is_file():
            top = path.relative_to(function).parts[0].split("-")[0].removesuffix(".py")
            sizes[top] = sizes.get(top, 0) + path.stat().st_size
    ranked = sorted(sizes.items(), key=lambda item: -item[1])
    shown = [f"{name} {size / 1e6:.1f} MB" for name, size in ranked[:4]]
    rest = sum(size for _, size in ranked[4:])
    return ", ".join([*shown, f"{len(ranked) - 4} more {rest / 1e6:.1f} MB"])


@dataclass
class Drain:
    events: int
    figures: dict[str, Any]
    min_put_log_events: int
    min_s3_objects: int


def drain(aws: LocalAws, events: int) -> Drain:
    """A backlog of `events` over four users, drained by the handler in a fresh process."""
    rng = random.Random(events)
    sim = Auth0Simulator(rate_limit=None, seed=events)
    sim.start()
    users = [f"auth0|bench-rss-{events}-{i}" for i in range(DRAIN_USERS)]
    now = datetime.now(UTC)
    for user in users:
        sim.add_events(
            generate_user_events(
                user,
                count=events // DRAIN_USERS,
                start=now - timedelta(hours=20),
                end=now - timedelta(minutes=2),
                rng=rng,
            )
        )
    credentials = {"client_id": sim.client_id, "client_secret": sim.client_secret}
    resources = deploy_template(
        aws, stack_name=f"bench-rss-{events}", auth0_credentials=credentials
    )
    env = {
        **aws.env(),
        **function_environment(
            resources,
            auth0_domain=sim.domain,
            auth0_base_url=sim.base_url,
            watched_user_ids=users,
            destinations="cloudwatch,s3",
            AWS_ENDPOINT_URL=aws.endpoint_url,
            AUTH0_RATE_LIMIT_PER_SECOND="1000",
            MAX_CONCURRENT_USERS=str(DRAIN_USERS),
            # The per-user reads are what these rows measure (4 users; auto would probe first).
            READ_MODE="per-user",
        ),
    }
    completed = subprocess.run(
        [sys.executable, "-m", "bench.drain_child"],
        input=json.dumps(env),
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=3600,
    )
    minimum = _minimum_sink_calls(sim, users)
    sim.stop()
    return Drain(events, json.loads(completed.stdout.splitlines()[-1]), *minimum)


def _minimum_sink_calls(sim: Auth0Simulator, users: Sequence[str]) -> tuple[int, int]:
    """What the limits allow at best: PutLogEvents, the fewest batches of each user's lines
    (10,000 events, 1 MiB, 24 h per call); S3, one object per user and UTC day."""
    from log_forwarder.convert import ConvertContext, event_line
    from log_forwarder.events import parse_event
    from log_forwarder.sinks.batching import cloudwatch_batches

    put_log_events = objects = 0
    for user in users:
        context = ConvertContext(sim.domain, user, int(time.time() * 1000), "logs_search")
        events = sorted((parse_event(e) for e in sim.visible_events(user)), key=lambda e: e.date_ms)
        lines = [event_line(event, context) for event in events]
        put_log_events += len(cloudwatch_batches(lines))
        objects += len({line.timestamp_ms // 86_400_000 for line in lines})
    return put_log_events, objects


def drain_rows(drains: Sequence[Drain]) -> list[Row]:
    sizes = " / ".join(f"{d.events:,}" for d in drains)
    rss = " / ".join(f"{d.figures['peak_rss_mb']:.0f}" for d in drains)
    per_k = " / ".join(f"{d.figures['cpu_s'] / d.events * 1e6:.0f}" for d in drains)
    first, last = drains[0], drains[-1]
    marginal = (last.figures["cpu_s"] - first.figures["cpu_s"]) / (last.events - first.events)
    full = [d for d in drains if d.events >= 2 * CHUNK_USERS_EVENTS] or [drains[-1]]
    growth = full[-1].figures["peak_rss_mb"] - full[0].figures["peak_rss_mb"]
    return [
        Row(
            f"Peak RSS (VmHWM) draining a backlog of {sizes} events, {DRAIN_USERS} users at once, "
            "both destinations, a fresh process each",
            f"**{rss} MB** (imports alone {first.figures['after_import_mb']:.0f} MB); "
            f"{growth:+.1f} MB from {full[0].events:,} to {full[-1].events:,}",
            "O(batch): no growth once the batches are full (within 10 MB from 10,000 on)",
        ),
        Row(
            f"CPU per 1,000 events forwarded, all in (Auth0 JSON, convert, gzip, boto3), {sizes}",
            f"{per_k} ms; **{marginal * 1e6:.0f} ms** per 1,000 more (the first run's "
            "client and token set-up left out)",
            "≤ 260 ms: a 100,000-event backlog's CPU fits one 180 s run at 256 MB",
        ),
        Row(
            "Sink calls against the minimum the limits allow",
            "; ".join(_sink_calls(d) for d in drains),
            "PutLogEvents ≤ 1.5×; S3: one object per batch and UTC day",
        ),
    ]


def _sink_calls(drain: Drain) -> str:
    calls = drain.figures["aws_calls"]
    puts, objects = calls.get("PutLogEvents", 0), calls.get("PutObject", 0)
    batches = drain.figures["batches"]
    return (
        f"{drain.events:,}: PutLogEvents {puts} / {drain.min_put_log_events} = "
        f"**{puts / drain.min_put_log_events:.2f}×**, S3 objects {objects} / "
        f"{drain.min_s3_objects} = {objects / drain.min_s3_objects:.1f}× "
        f"({batches} batches of ≤ 1,000 events)"
    )


def cpu_per_thousand(repeat: int = 20) -> list[Row]:
    """CPU of the pure steps for 1,000 realistic events: the best of `repeat` rounds each."""
    from log_forwarder.convert import ConvertContext, event_line
    from log_forwarder.cursor import Cursor, ReadPosition
    from log_forwarder.events import parse_event
    from log_forwarder.records import batch_id_for
    from log_forwarder.sinks.batching import cloudwatch_batches, s3_objects
    from log_forwarder.store import encode_state

    now = datetime.now(UTC)
    raw = generate_user_events(
        "auth0|cpu", count=1000, start=now - timedelta(hours=1), end=now, rng=random.Random(3)
    )
    # As Auth0 returns them: the simulator gives each its log_id.
    stored = Auth0Simulator(seed=3).add_events(raw)
    events = sorted((parse_event(e) for e in stored), key=lambda e: e.date_ms)
    context = ConvertContext(
        "example.eu.auth0.com", "auth0|cpu", int(now.timestamp() * 1000), "user_logs"
    )
    lines = [event_line(event, context) for event in events]
    read_ms = int(now.timestamp() * 1000)
    batch_id = batch_id_for(line.log_id or "" for line in lines)

    def checkpoint() -> bytes:
        # The cursor after the batch (an hour's overlap keeps all 1,000 in it), as stored.
        position = ReadPosition().advance(events, overlap_ms=3_600_000, read_started_ms=read_ms)
        after = Cursor(position)
        return encode_state("u", after.to_state())

    steps = {
        "convert": lambda: [event_line(event, context) for event in events],
        "batch (CloudWatch)": lambda: cloudwatch_batches(lines),
        "S3 objects (gzip)": lambda: s3_objects(lines, prefix="p/", user_id="u", batch_id=batch_id),
        "checkpoint (cursor + state)": checkpoint,
    }
    spent = {name: min(_cpu(step) for _ in range(repeat)) for name, step in steps.items()}
    total = sum(spent.values())
    parts = ", ".join(f"{name} {seconds * 1000:.1f}" for name, seconds in spent.items())
    text = "\n".join(line.line for line in lines).encode()
    return [
        Row(
            f"CPU per 1,000 events: convert, batch, serialise (best of {repeat}; lines of "
            f"{len(text) / len(lines):.0f} bytes, gzip {len(text) / len(gzip.compress(text)):.1f}×)",
            f"**{total * 1000:.1f} ms**: {parts} (ms)",
            "≤ 50 ms: 100,000 events' pure steps ≤ 35 s of a 180 s run at 256 MB",
        )
    ]


def _cpu(step: Any) -> float:
    started = time.process_time()
    step()
    return time.process_time() - started


def lambda_cost(drains: Sequence[Drain]) -> list[Row]:
    """GB-s per million events at each size: CPU / share + the waits (stated latencies), and
    the smallest size with room for the peak RSS half again."""
    figures = drains[-1].figures
    events = figures["forwarded"]
    cpu_per_event = figures["cpu_s"] / events
    aws_calls = sum(figures["aws_calls"].values())
    wait_per_event = (figures["auth0_calls"] * AUTH0_CALL_S + aws_calls * AWS_CALL_S) / events
    peak = max(d.figures["peak_rss_mb"] for d in drains)
    parts = []
    for mb in SIZES_MB:
        seconds = cpu_per_event * FULL_VCPU_MB / mb + wait_per_event
        gb_s = seconds * 1e6 * mb / 1024
        room = "" if mb >= 1.5 * peak else f", under 1.5× the {peak:.0f} MB peak"
        parts.append(
            f"{mb} MB: {seconds * 1000:.2f} ms/event, **{gb_s:,.0f} GB-s** "
            f"(${gb_s * PRICE_PER_GB_S:.3f}{room})"
        )
    fitting = [mb for mb in SIZES_MB if mb >= 1.5 * peak]
    advice = f"; smallest with room: **{fitting[0]} MB**" if fitting else ""
    return [
        Row(
            "Lambda cost per million events forwarded: CPU ÷ share (1 vCPU at 1,769 MB) + waits "
            f"({AUTH0_CALL_S * 1000:.0f} ms per Auth0 call, {AWS_CALL_S * 1000:.0f} ms per AWS "
            "call, not overlapped), arm64 price",
            "; ".join(parts)
            + f". From {cpu_per_event * 1e6:.0f} µs CPU and {wait_per_event * 1000:.2f} ms of "
            f"waits per event ({drains[-1].events:,}-event drain){advice}",
            "the smallest size with 1.5× the peak RSS",
        )
    ]
