"""`python -m bench.sigma`: what the Sigma engine costs, beside today's 7 hand-written rules.

Nothing here is asserted; it prints figures beside their goals (docs/sigma.md quotes a run):

1. Compile time of the Auth0 catalog with pySigma (outside the function), and the plan's size.
2. CPU per 1,000 events of one user's ordinary traffic (the events bench/footprint.py times for
   the pure steps): the catalog's 33 rules and 8 correlations; 40 rules (the catalog and 7 rules
   in the spirit of today's); the shipped default pack (`detections.detect`); the pure steps.
3. Cold import, in a fresh process on the Lambda path (bench/footprint.py): the handler module
   against a bare `import boto3`, then the handler with the engine imported and the catalog's
   plan loaded. Then the cold start whole, the figure #23's goal is about: a fresh process
   answers its first scheduled event with the catalog installed (moto's server and the
   simulator in this process), and what it imported is imported alone with the plan loaded.
4. State bytes: one user's 1,000 events; a three-hour credential-stuffing burst; the caps filled.

Needs ../shared (the catalog) and the dev requirements (pySigma).
"""

from __future__ import annotations

import compileall
import gzip
import json
import py_compile
import random
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.footprint import ROOT, Row, _child, _requirements_path, _runtime_path, cpu_per_thousand
from devtools.auth0_simulator import Auth0Simulator
from devtools.traffic import generate_user_events
from log_forwarder.cli.sigma_compiler import compile_paths, compile_texts
from log_forwarder.detections import (
    DetectionSettings,
    DetectionState,
    RuleSet,
    default_plan,
    detect,
)
from log_forwarder.events import LogEvent, parse_event
from log_forwarder.sigma_plan import Plan, load_plan
from log_forwarder.sigma_step import CorrelationState, Limits, step

CATALOG = ROOT.parent / "shared" / "reference" / "auth0-customer-detections" / "detections"

# Seven rules in the spirit of today's (detections.py), so that 40 rules can be timed.
TODAYS_SEVEN = """
title: failed logins
id: 7e000000-0000-4000-8000-000000000001
name: failed_login
logsource: {product: auth0}
detection:
  selection: {data.type: [f, fc, fco, fcoa, fens, fp, fu, fepft]}
  condition: selection
---
title: failed login burst
correlation: {type: event_count, rules: [failed_login], group-by: [data.user_id], timespan: 60m,
              condition: {gte: 10}}
---
title: brute-force protection
id: 7e000000-0000-4000-8000-000000000002
logsource: {product: auth0}
detection:
  selection: {data.type: [limit_wc, limit_sul, limit_mu, gd_otp_rate_limit_exceed]}
  condition: selection
---
title: MFA weakened
id: 7e000000-0000-4000-8000-000000000003
logsource: {product: auth0}
detection:
  selection: {data.type: [gd_unenroll, gd_user_delete, gd_recovery_succeed, sercft, sepkrcft]}
  condition: selection
---
title: credential change
id: 7e000000-0000-4000-8000-000000000004
logsource: {product: auth0}
detection:
  selection: {data.type: [sce, scp, scpn, scu, scpr]}
  condition: selection
---
title: breached password
id: 7e000000-0000-4000-8000-000000000005
logsource: {product: auth0}
detection:
  selection: {data.type: [pwd_leak, reset_pwd_leak, signup_pwd_leak]}
  condition: selection
---
title: admin action on a sensitive path
id: 7e000000-0000-4000-8000-000000000006
logsource: {product: auth0}
detection:
  selection:
    data.type: [sapi, fapi]
    data.details.request.path|contains: [/guardian, /attack-protection, /roles, /log-streams]
  condition: selection
---
title: login from a new country
id: 7e000000-0000-4000-8000-000000000007
logsource: {product: auth0}
detection:
  selection: {data.type: [s, scoa, sens, sepft]}
  filter: {data.location_info.country_code: null}
  condition: selection and not filter
"""

_IMPORT = """
import json, time
t0 = time.perf_counter()
import boto3
t1 = time.perf_counter()
import log_forwarder.app
t2 = time.perf_counter()
import log_forwarder.runtime
t3 = time.perf_counter()
from log_forwarder.sigma_plan import load_plan
import log_forwarder.sigma_step
t4 = time.perf_counter()
load_plan(json.load(open(PLAN, encoding="utf-8")))
t5 = time.perf_counter()
print(json.dumps({"boto3": t1 - t0, "handler": t2 - t0, "root": t3 - t2, "engine": t4 - t3,
                  "plan": t5 - t4}))
"""


def main() -> int:
    if not CATALOG.is_dir():
        print(f"the catalog is not at {CATALOG} (../shared is not checked out)", file=sys.stderr)
        return 1
    rows: list[Row] = []
    plan_document, compile_row = _compile_row()
    rows += compile_row
    catalog = load_plan(plan_document)
    forty = load_plan(
        compile_texts(
            [(p.name, p.read_text(encoding="utf-8")) for p in sorted(CATALOG.glob("*.yml"))]
            + [("todays_seven.yml", textwrap.dedent(TODAYS_SEVEN))]
        ).plan
    )
    events = _user_events()
    rows += _cpu_rows(catalog, forty, events)
    rows += _import_rows(plan_document)
    rows += _first_invocation_rows(plan_document)
    rows += _state_rows(catalog, events)
    for row in rows:
        print(f"| {row.measure} | {row.figure} | {row.target} |")
    return 0


def _compile_row() -> tuple[dict[str, Any], list[Row]]:
    times = []
    for _ in range(5):
        started = time.process_time()
        compiled = compile_paths([CATALOG])
        times.append(time.process_time() - started)
    text = json.dumps(compiled.plan, separators=(",", ":")).encode()
    plan = compiled.plan
    return plan, [
        Row(
            "Compile the Auth0 catalog with pySigma (CLI side), CPU, median of 5",
            f"**{statistics.median(times) * 1000:.0f} ms**: {len(plan['rules'])} rules, "
            f"{len(plan['correlations'])} correlations, {len(compiled.refused)} refused",
            "all 33 load, 0 refused",
        ),
        Row(
            "Plan size (JSON as stored)",
            f"**{len(text) / 1024:.1f} KB**, gzip {len(gzip.compress(text)) / 1024:.1f} KB; "
            f"load_plan {_best(lambda: load_plan(json.loads(text))) * 1000:.1f} ms",
            "small enough to load at every cold start (where it is kept: next phase)",
        ),
    ]


def _user_events() -> list[LogEvent]:
    """The 1,000 events bench/footprint.py times for the pure steps."""
    now = datetime.now(UTC)
    raw = generate_user_events(
        "auth0|cpu", count=1000, start=now - timedelta(hours=1), end=now, rng=random.Random(3)
    )
    stored = Auth0Simulator(seed=3).add_events(raw)
    return sorted((parse_event(e) for e in stored), key=lambda e: e.date_ms)


def _cpu_rows(catalog: Plan, forty: Plan, events: list[LogEvent]) -> list[Row]:
    # The shipped default pack (rules/default: today's 7 re-expressed in Sigma), as a run plans
    # it: the per-user part stepped, the cross-user part's events picked out.
    shipped = RuleSet.of(default_plan(DetectionSettings()))
    todays = _best(lambda: detect(shipped, "auth0|cpu", events, DetectionState()))
    sigma = _best(lambda: step(catalog, CorrelationState(), events))
    both = _best(lambda: step(forty, CorrelationState(), events))
    pure_row = cpu_per_thousand()[0]
    pure = float(pure_row.figure.split("**")[1].split()[0]) / 1000
    return [
        Row(
            "CPU per 1,000 events, detections (best of 20)",
            f"catalog (33 rules, 8 correlations) **{sigma * 1000:.1f} ms**; 40 rules "
            f"(9 correlations) **{both * 1000:.1f} ms**; the shipped default pack (detections.detect) "
            f"{todays * 1000:.1f} ms. With today's pure steps ({pure * 1000:.1f} ms): "
            f"**{(pure + both) / (pure + todays):.2f}×** today's pure steps and the default pack",
            "40 rules ≤ 2× today's pure-step CPU",
        )
    ]


def _import_rows(plan: dict[str, Any], runs: int = 9) -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp:
        path = _lambda_path(Path(tmp))
        plan_file = Path(tmp) / "plan.json"
        plan_file.write_text(json.dumps(plan), encoding="utf-8")
        code = _IMPORT.replace("PLAN", repr(str(plan_file)))
        results = [_child(code, path) for _ in range(runs)]
    median = {key: statistics.median(r[key] for r in results) for key in results[0]}

    def ratio(*parts: str) -> float:  # each run's own boto3, then the median of the ratios
        return float(statistics.median(sum(r[p] for p in parts) / r["boto3"] for r in results))

    return [
        Row(
            f"Cold import, fresh process, our package compiled, on the Lambda path, median of {runs}",
            f"handler module {ratio('handler'):.2f}× a bare `import boto3` "
            f"({median['boto3'] * 1000:.0f} ms); the Sigma engine +{median['engine'] * 1000:.1f} "
            f"ms, the catalog's plan loaded +{median['plan'] * 1000:.1f} ms: "
            f"**{ratio('handler', 'engine', 'plan'):.2f}×**. With what the first invocation "
            f"imports to build its runtime (runtime.py: +{median['root'] * 1000:.0f} ms): "
            f"{ratio('handler', 'root'):.2f}×, with the engine and the plan "
            f"**{ratio('handler', 'root', 'engine', 'plan'):.2f}×**",
            "≤ 1.6× bare `import boto3` (docs/benchmark.md measures the built package)",
        )
    ]


# A real first invocation of the scheduled handler in a fresh process on the Lambda path, the
# catalog installed in its rule packs table: what a cold start loads before it answers.
_FIRST = """
import contextlib, io, json, sys, time
t0 = time.perf_counter()
import boto3
t1 = time.perf_counter()
before = set(sys.modules)
import log_forwarder.app as app
t2 = time.perf_counter()

class Context:  # what Powertools and the handler read of Lambda's
    function_name = "ForwarderFunction"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ForwarderFunction"
    aws_request_id = "cold-start"

    def get_remaining_time_in_millis(self):
        return 900_000

with contextlib.redirect_stdout(io.StringIO()):  # its JSON logs and metrics
    summary = app.lambda_handler(EVENT, Context())
t3 = time.perf_counter()
print(json.dumps({"boto3": t1 - t0, "module": t2 - t1, "first": t3 - t2,
                  "forwarded": summary["forwarded"], "rules": summary.get("rules"),
                  "modules": [m for m in sys.modules if m not in before]}))
"""
# The modules that invocation loaded, imported alone in another fresh process (in the order it
# loaded them), and the catalog's plan loaded as the invocation loads it: the import total.
_IMPORTS = """
import importlib, json, time
t0, c0 = time.perf_counter(), time.process_time()
import boto3
t1, c1 = time.perf_counter(), time.process_time()
for name in NAMES:
    try:
        importlib.import_module(name)
    except Exception:  # a name only a package's import registers (six.moves' aliases)
        if name.split(".")[0] == "log_forwarder":
            raise  # ours skipped would make the figure read low
from log_forwarder.rule_packs import load_stored, read_item
t2 = time.perf_counter()
load_stored(read_item(ITEM))
t3, c3 = time.perf_counter(), time.process_time()
print(json.dumps({"boto3": t1 - t0, "imports": t2 - t1, "plan": t3 - t2,
                  "boto3_cpu": c1 - c0, "ours_cpu": c3 - c1}))
"""


def _first_invocation_rows(plan: dict[str, Any], runs: int = 7) -> list[Row]:
    firsts, totals = cold_starts(plan, {"here": ROOT / "src"}, runs)["here"]
    boto3_s = statistics.median(r["boto3"] for r in totals)
    imports = statistics.median((r["imports"] + r["plan"]) / r["boto3"] for r in totals)
    # CPU time too: on a shared machine another process's work stretches the wall times.
    cpu = statistics.median(r["ours_cpu"] / r["boto3_cpu"] for r in totals)
    wall = statistics.median(r["module"] + r["first"] for r in firsts)
    modules = firsts[0]["modules"]
    ours = [m for m in modules if m.startswith("log_forwarder")]
    return [
        Row(
            f"Cold start, the whole of it: a fresh process on the Lambda path imports the "
            f"handler module and answers its first scheduled event with the catalog installed "
            f"({firsts[0]['rules']} rules; {firsts[0]['forwarded']} events forwarded), median "
            f"of {runs}",
            f"what it imports ({len(modules)} modules, {len(ours)} of them ours) and the "
            f"catalog's plan loaded: **{1 + imports:.2f}×** a bare `import boto3` "
            f"({boto3_s * 1000:.0f} ms; +{imports * boto3_s * 1000:.0f} ms), in CPU time "
            f"{1 + cpu:.2f}×. "
            f"The first invocation's wall time (the handler module, build_runtime, the run and "
            f"its calls to the local servers): {wall * 1000:.0f} ms",
            "imports and plan ≤ 1.6× bare `import boto3`",
        )
    ]


def cold_starts(
    plan: dict[str, Any], sources: dict[str, Path], runs: int
) -> dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """The cold start as the function has it, for each of `sources` (a src/ folder: another
    checkout's, to compare), interleaved so all see the same machine load: a fresh process
    imports the handler module and answers its first scheduled event (build_runtime, the token,
    the installed catalog read and loaded, one watched user's 20 new events read, converted,
    checked by the rules and delivered to CloudWatch Logs and S3), against moto's server and the
    Auth0 simulator held by this process; then the modules it loaded, imported alone in a
    fresh process. (first invocations, import totals) by name."""
    from devtools.harness import SCHEDULED_EVENT
    from devtools.local_aws import LocalAws, deploy_template, function_environment
    from log_forwarder.rule_packs import pack_item

    event = json.loads(SCHEDULED_EVENT.read_text(encoding="utf-8"))
    now = datetime.now(UTC)
    item = pack_item("auth0-catalog", plan, installed_at=now.isoformat())
    results: dict[str, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    with LocalAws() as aws, tempfile.TemporaryDirectory() as tmp:
        sim = Auth0Simulator(rate_limit=None, seed=23)
        sim.start()
        credentials = {"client_id": sim.client_id, "client_secret": sim.client_secret}
        stack = deploy_template(aws, stack_name="cold-start", auth0_credentials=credentials)
        aws.client("dynamodb").put_item(TableName=stack.rule_packs_table, Item=item)
        paths = {name: _lambda_path(Path(tmp) / name, src) for name, src in sources.items()}
        for run in range(runs):
            for name, path in paths.items():
                # A user of its own each time: every run is a first one, with events to forward.
                user = f"auth0|cold-start-{name}-{run}-{time.time_ns()}"
                sim.add_events(
                    generate_user_events(
                        user,
                        count=20,
                        start=now - timedelta(hours=2),
                        end=now - timedelta(minutes=2),
                        rng=random.Random(run),
                    )
                )
                env = {
                    **aws.env(),
                    **function_environment(
                        stack,
                        auth0_domain=sim.domain,
                        auth0_base_url=sim.base_url,
                        watched_user_ids=[user],
                        destinations="cloudwatch,s3",
                        AWS_ENDPOINT_URL=aws.endpoint_url,
                    ),
                }
                first = _child(_FIRST.replace("EVENT", repr(event)), path, env)
                code = _IMPORTS.replace("NAMES", repr(first["modules"]))
                firsts, totals = results.setdefault(name, ([], []))
                firsts.append(first)
                totals.append(_child(code.replace("ITEM", repr(item)), path, env))
        sim.stop()
    return results


def _lambda_path(tmp: Path, src: Path = ROOT / "src") -> list[Path]:
    """The package of `src` with its bytecode, as src/Makefile ships it (the sources alone would
    be compiled again in every fresh process); Powertools and httpx as the artifact bundles them
    (not the venv's site-packages, whose click and rich make httpx import its command line);
    the runtime's boto3."""
    runtime = _runtime_path(tmp / "runtime")
    package = tmp / "package" / "log_forwarder"
    shutil.copytree(src / "log_forwarder", package)
    compileall.compile_dir(
        package, quiet=1, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH
    )
    return [package.parent, _requirements_path(tmp / "requirements"), runtime]


def _state_rows(catalog: Plan, events: list[LogEvent]) -> list[Row]:
    def size(state: CorrelationState) -> int:
        return len(json.dumps(state.to_state(), separators=(",", ":")))

    ordinary = step(catalog, CorrelationState(), events).state
    start = events[0].date_ms
    burst = [
        LogEvent(start + n * 30_000, f"burst-{n:05d}", {"type": "f", "ip": "203.0.113.9"})
        for n in range(360)
    ]
    stuffing = step(catalog, CorrelationState(), burst)
    botnet = [
        LogEvent(start + n * 1000, f"bot-{n:05d}", {"type": "f", "ip": f"10.{n % 200}.0.{n % 7}"})
        for n in range(20_000)
    ]
    full = step(catalog, CorrelationState(), botnet).state
    return [
        Row(
            "Correlation state (JSON) per user",
            f"1,000 ordinary events: **{size(ordinary):,} B**; a 3-hour credential-stuffing "
            f"burst from one IP (360 failures, {len(stuffing.findings)} findings): "
            f"{size(stuffing.state):,} B; 20,000 failures from 1,400 IPs (the caps reached, "
            f"{Limits().max_entries:,} events kept): {size(full):,} B",
            "bounded, and small beside the 400 KB checkpoint item",
        )
    ]


def _best(work: Callable[[], object], repeat: int = 20) -> float:
    spent = []
    for _ in range(repeat):
        started = time.process_time()
        work()
        spent.append(time.process_time() - started)
    return min(spent)


if __name__ == "__main__":
    raise SystemExit(main())
