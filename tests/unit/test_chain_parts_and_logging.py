"""Found by the review of #23's Sigma work: tenant-wide evaluation keeps a chain in one part (its
inner's finding was written twice), and the first invocation sets up the package's loggers."""

from __future__ import annotations

import json
import textwrap
from typing import Any

from log_forwarder.cli.sigma_compiler import compile_texts
from log_forwarder.detections import Detections, DetectionSettings, RuleSet
from log_forwarder.sigma_plan import Plan, load_plan

MGMT_ID = "00000000-0000-4000-8000-00000000d0a1"
MANY_ID = "00000000-0000-4000-8000-00000000d0b1"
SUSTAINED_ID = "00000000-0000-4000-8000-00000000d0c1"

# A chain over a Management API rule only (its events are an administrator's, nobody's watched
# account): "3 calls in 10 minutes", and "that held at 2 moments within 30 minutes". The outer
# says `generate: true`, so the inner's findings are written too (Sigma's flag).
ADMIN_CHAIN = f"""
title: mgmt call
id: {MGMT_ID}
name: mgmt
level: low
logsource: {{product: auth0}}
detection: {{sel: {{data.type: sapi}}, condition: sel}}
---
title: many calls
id: {MANY_ID}
name: many
level: medium
correlation: {{type: event_count, rules: [mgmt], group-by: [data.user_id], timespan: 10m,
               condition: {{gte: 3}}}}
---
title: sustained calls
id: {SUSTAINED_ID}
name: sustained
level: high
correlation: {{type: event_count, rules: [many], group-by: [data.user_id], timespan: 30m,
               condition: {{gte: 2}}, generate: true}}
"""


def plan_of(text: str) -> Plan:
    compiled = compile_texts([("pack.yml", textwrap.dedent(text).strip() + "\n")])
    assert compiled.refused == [], compiled.refused
    return load_plan(json.loads(json.dumps(compiled.plan)))


def _findings(sink: Any) -> list[dict[str, Any]]:
    found = []
    for line in sink.lines:
        record = json.loads(line.line).get("_forwarder", {})
        if record.get("record_type") == "finding":
            found.append(record)
    return found


# -- 1. tenant-wide splits a chain between the checkpoint and the shared item -------------------


def test_tenant_wide_keeps_a_chain_of_unwatched_rules_in_one_part() -> None:
    # GIVEN a per-user chain whose inner counts a Management API rule only (tenant scope) and
    # whose outer counts the inner (not a rule of unwatched users, by RuleSet.of's test)
    plan = plan_of(ADMIN_CHAIN)
    assert plan.correlation(MANY_ID).standalone and plan.correlation(SUSTAINED_ID).per_user
    # WHEN DETECTIONS_TENANT_WIDE is on
    rules = RuleSet.of(plan, tenant_wide=True)
    # THEN each correlation's state is in one part only (docs/sigma.md "One part": a chain is
    # fed within one step, on one state): not the inner in the user's checkpoint (beside its
    # outer) and again in the shared item
    in_user = {c.id for c in rules.per_user.correlations}
    assert not in_user & rules.shared_ids, (sorted(in_user), sorted(rules.shared_ids))


def test_tenant_wide_writes_a_chain_inners_finding_once() -> None:
    from log_forwarder.planner import OutputPolicy
    from tests.fakes import FakeAuth0, InMemoryCheckpointStore, InMemoryPushedLedger, RecordingSink
    from tests.property.test_cursor_properties import BASE_MS, make_forwarder
    from tests.unit.test_realtime_queue import event

    # GIVEN that chain, tenant-wide on, and a watched administrator making 3 Management API
    # calls within a minute (the inner holds once: one finding of `many calls`)
    plan = plan_of(ADMIN_CHAIN)
    settings = DetectionSettings(tenant_wide=True)
    output = OutputPolicy(detections=Detections(settings, plans=lambda _deadline: plan))
    sink, fake = RecordingSink("s3"), FakeAuth0(now_ms=BASE_MS)
    store = InMemoryCheckpointStore()
    forwarder = make_forwarder(fake, [sink], store, InMemoryPushedLedger(), output=output)
    admin = "auth0|admin"
    forwarder.run([admin], remaining_ms=lambda: 10**9)
    for n in range(3):
        fake.add({**event(admin, n * 1000), "type": "sapi"})
    fake.now_ms = BASE_MS + 60_000
    # WHEN the run reads them
    forwarder.run([admin], remaining_ms=lambda: 10**9)
    # THEN the inner's finding is written once (the user's step and the shared item's both ran it)
    inner = [f for f in _findings(sink) if f["rule_id"] == MANY_ID]
    assert len(inner) == 1, [(f["finding_id"], f["watched_user_id"]) for f in inner]


# -- 3. the lazy composition root: the package's loggers after the first invocation ------------

FIRST_INVOCATION = textwrap.dedent(
    """
    import json, logging, os, sys
    os.environ.update({
        "AUTH0_DOMAIN": "example.eu.auth0.com", "AUTH0_CLIENT_ID": "id",
        "AUTH0_CLIENT_SECRET": "secret", "CHECKPOINT_TABLE": "table", "DESTINATIONS": "s3",
        "S3_BUCKET": "bucket", "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    })
    import log_forwarder.app as app

    class Context:
        function_name, memory_limit_in_mb, aws_request_id = "f", 128, "r1"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:f"
        def get_remaining_time_in_millis(self):
            return 1000  # below TIME_MARGIN_SECONDS: ConfigError once the runtime is built

    try:
        app.lambda_handler({"id": "event-1"}, Context())
    except Exception as error:
        print("raised", type(error).__name__, file=sys.stderr)
    # What rule_packs.py logs when a pack is left out, through its own module logger
    from log_forwarder import rule_packs
    rule_packs.logger.warning("Rule pack left out", extra={"pack": "p1", "why": "bad"})
    added = [h for h in logging.getLogger("botocore").handlers
             if not isinstance(h, logging.NullHandler)]  # botocore adds a NullHandler itself
    print("botocore handlers:", len(added), file=sys.stderr)
    """
)


def test_the_first_invocation_sets_up_the_packages_module_loggers() -> None:
    import subprocess
    import sys
    from pathlib import Path

    src = Path(__file__).resolve().parents[2] / "src"
    # WHEN a fresh container's first invocation builds the runtime (importing the composition
    # root, and with it every module's `logger`) and a module then logs a warning
    done = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", FIRST_INVOCATION],
        env={"PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert "raised ConfigError" in done.stderr, done.stderr
    # THEN the warning is the functions' JSON log line with its fields (the pack, why), as it
    # was when app.py imported the composition root (ec850eb^): observability.logger() copies
    # Powertools' handler to the `log_forwarder` loggers registered when it is first called
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    ours = [line for line in lines if line.get("message") == "Rule pack left out"]
    assert ours and ours[0].get("pack") == "p1", (done.stdout, done.stderr)
    # AND library loggers stay out (observability.logger's docstring): an empty `include` is
    # Powertools' "every registered logger"
    assert "botocore handlers: 0" in done.stderr, done.stderr
