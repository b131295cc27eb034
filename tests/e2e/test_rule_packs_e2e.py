"""Rule packs end to end: the console script installs, lists, disables and removes packs in the
stack's RulePacksTable on moto's server, and the real handler (through template.yaml's handler
path) reads them again within RULE_PACKS_MAX_AGE_SECONDS, leaving a damaged pack out, named, while
the others still run.

GIVEN a stack of the template and Auth0's whole catalog (../shared), WHEN the operator installs
it with one command, THEN every rule is listed with its status, a disabled rule is gone from the
plan of the first run after the max age, and a pack damaged in the table is reported and counted
(RulePackErrors) while the catalog keeps running.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devtools.auth0_simulator import Auth0Simulator
from devtools.harness import LocalDeployment
from devtools.local_aws import LocalAws
from log_forwarder.detections import DetectionSettings, default_plan
from log_forwarder.rule_packs import pack_item
from tests.cli_support import HOSTILE, assert_shown_not_obeyed, flat, run_cli
from tests.e2e.conftest import Clock, deployer, ok, simulator_on
from tests.sigma_oracle import CATALOG

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not CATALOG.is_dir(),
        reason=f"the Auth0 catalog is not under {CATALOG.parent} (../shared is not checked out)",
    ),
]

SMS_BOMBING = "sms_bombarding"
# The pack the function ships with (rules/default), listed and run beside every installed one.
SHIPPED = default_plan(DetectionSettings())
SHIPPED_RULES, SHIPPED_CORRELATIONS = len(SHIPPED.rules), len(SHIPPED.correlations)


@pytest.fixture
def sim(clock: Clock) -> Iterator[Auth0Simulator]:
    yield from simulator_on(clock)


@pytest.fixture
def deploy(aws: LocalAws, sim: Auth0Simulator, clock: Clock) -> Callable[..., LocalDeployment]:
    return deployer(aws, sim, clock, "packs", watched_user_ids=["auth0|quiet"], destinations="s3")


def cli(stack: LocalDeployment, *args: str, columns: int | None = None) -> Any:
    env = {**stack.aws.env(), "RULE_PACKS_TABLE": stack.resources.rule_packs_table or ""}
    if columns is not None:  # the table's width: wide enough, a title is not wrapped
        env["COLUMNS"] = str(columns)
    return run_cli("rules", *args, env=env)


def listed(stack: LocalDeployment) -> list[dict[str, str]]:
    done = cli(stack, "list", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    rows: list[dict[str, str]] = json.loads(done.stdout)["rules"]
    return rows


def test_the_catalog_installs_with_one_command_and_lists_with_its_status(
    deploy: Callable[..., LocalDeployment],
) -> None:
    stack = deploy()
    # WHEN the operator installs Auth0's catalog from a clone of it
    done = cli(stack, "install", str(CATALOG), "--pack", "auth0-catalog")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "33 rules and 8 correlations compiled" in done.stdout
    assert "Installed pack auth0-catalog" in flat(done.stdout)
    # THEN every rule and correlation is listed, in its pack, running
    shipped = [r for r in listed(stack) if r["pack"] == "default"]
    assert len(shipped) == SHIPPED_RULES + SHIPPED_CORRELATIONS
    rows = [r for r in listed(stack) if r["pack"] != "default"]
    assert len([r for r in rows if r["kind"] == "rule"]) == 33
    assert len([r for r in rows if r["kind"] == "correlation"]) == 8
    assert {r["pack"] for r in rows} == {"auth0-catalog"}
    assert all(r["state"].startswith("enabled") for r in rows)
    by_source = {(r["source"], r["kind"]): r for r in rows}
    # AND a rule on Management API calls or signups says whose events it cannot see
    tampering = by_source[("bot_detection_turned_off.yml", "rule")]
    assert "Management API calls" in tampering["events_from"]
    signups = by_source[("risk_of_signup_fraud_by_volume.yml", "correlation")]
    assert "signups" in signups["events_from"]
    assert "counts watched users' events only" in signups["events_from"]
    assert by_source[("sms_bombarding.yml", "rule")]["events_from"] == "watched users"
    assert by_source[("credential_stuffing_signals.yml", "rule")]["state"].startswith(
        "enabled (feeds"
    )
    # AND the table says the same, with the note on tenant-wide evaluation
    table = cli(stack, "list")
    assert table.returncode == 0, table.stderr
    assert "tenant-wide" in flat(table.stdout)

    # WHEN a rule is disabled by its file's name, THEN it is listed so; enabled again, it runs
    assert cli(stack, "disable", SMS_BOMBING).returncode == 0
    state = {r["source"]: r["state"] for r in listed(stack) if r["kind"] == "rule"}
    assert state["sms_bombarding.yml"] == "disabled"
    assert cli(stack, "enable", SMS_BOMBING).returncode == 0
    assert {r["state"] for r in listed(stack) if r["source"] == "sms_bombarding.yml"} == {"enabled"}
    # AND installing the same rules as a second pack is refused: an id lives in one pack
    again = cli(stack, "install", str(CATALOG), "--pack", "copy")
    assert again.returncode == 2 and "one pack only" in flat(again.stderr)
    # AND a rule that does not exist is refused by name, nothing written
    unknown = cli(stack, "disable", "no_such_rule")
    assert unknown.returncode == 2 and "no_such_rule" in unknown.stderr
    # AND a removed pack is gone: the shipped one is left
    assert cli(stack, "remove", "--pack", "auth0-catalog").returncode == 0
    assert listed(stack) == shipped


def test_a_pack_title_from_outside_is_shown_not_obeyed(
    deploy: Callable[..., LocalDeployment], tmp_path: Any
) -> None:
    stack = deploy()
    rule = (
        f"title: {json.dumps(HOSTILE)}\nid: 33333333-0000-4000-8000-000000000001\n"
        "logsource: {product: auth0}\ndetection:\n  selection:\n    data.type: fp\n"
        "  condition: selection\n"
    )
    (tmp_path / "hostile.yml").write_text(rule, encoding="utf-8")
    assert cli(stack, "install", str(tmp_path), "--pack", "odd").returncode == 0
    assert_shown_not_obeyed(cli(stack, "list", columns=400))


def test_the_function_reads_a_change_within_the_max_age_and_leaves_a_damaged_pack_out(
    deploy: Callable[..., LocalDeployment], clock: Clock
) -> None:
    stack = deploy(RULE_PACKS_MAX_AGE_SECONDS="60")
    assert cli(stack, "install", str(CATALOG), "--pack", "auth0-catalog").returncode == 0
    # GIVEN a first run: the catalog runs
    first = stack.invoke(cold=True)
    summary = ok(first)
    assert summary["rule_packs"] == ["default", "auth0-catalog"]
    assert (summary["rules"], summary["correlations"]) == (
        SHIPPED_RULES + 33,
        SHIPPED_CORRELATIONS + 8,
    )
    assert summary["rule_pack_errors"] == [] and first.metrics()["RulePackErrors"] == 0
    # WHEN a rule is disabled, THEN the runs within the max age still hold it (cached) ...
    assert cli(stack, "disable", SMS_BOMBING).returncode == 0
    clock.offset += 30
    assert ok(stack.invoke())["rules"] == SHIPPED_RULES + 33
    # ... and the first run after it has dropped it
    clock.offset += 31
    later = ok(stack.invoke())
    assert (later["rules"], later["disabled_rules"]) == (SHIPPED_RULES + 32, 1)

    # WHEN another pack's item is damaged in the table (its plan no longer its digest)
    item = pack_item(
        "mine",
        {"format": "auth0-log-forwarder/sigma-plan", "version": 1, "fields": [], "rules": []},
        installed_at="t",
    )
    item["sha256"] = {"S": "0" * 64}
    dynamodb = stack.aws.client("dynamodb")
    dynamodb.put_item(TableName=stack.resources.rule_packs_table, Item=item)
    clock.offset += 61
    damaged = stack.invoke()
    report = ok(damaged)
    # THEN the run names it and counts it, and the catalog still runs
    (error,) = report["rule_pack_errors"]
    assert "'mine'" in error and "sha256" in error
    assert damaged.metrics()["RulePackErrors"] == 1
    assert (
        report["rule_packs"] == ["default", "auth0-catalog"]
        and report["rules"] == SHIPPED_RULES + 32
    )
    # AND `rules list` says so too, and exits 1
    shown = cli(stack, "list")
    assert shown.returncode == 1 and "pack mine does not run" in flat(shown.stdout)


def test_hunt_prints_an_installed_rule_as_both_queries_and_runs_logs_insights(
    deploy: Callable[..., LocalDeployment],
) -> None:
    stack = deploy(destinations="cloudwatch")
    assert cli(stack, "install", str(CATALOG), "--pack", "auth0-catalog").returncode == 0
    # WHEN a rule is hunted by its file's name
    shown = cli(
        stack,
        "hunt",
        SMS_BOMBING,
        "--since",
        "2026-12-01T00:00:00Z",
        "--until",
        "2026-12-02T00:00:00Z",
    )
    assert shown.returncode == 0, shown.stdout + shown.stderr
    # THEN both queries are printed, the Athena one bounded to the range's days and dates
    assert "FROM auth0_user_logs" in shown.stdout
    assert "AND dt BETWEEN '2026-12-01' AND '2026-12-02'" in shown.stdout
    assert "lower(type) = 'gd_send_sms'" in shown.stdout
    assert "| filter ispresent(log_id)" in shown.stdout
    # WHEN it is run in Logs Insights (moto's server: the query is started, with its range)
    group = stack.resources.log_group or ""
    done = cli(
        stack,
        "hunt",
        SMS_BOMBING,
        "--run",
        "insights",
        "--log-group",
        group,
        "--since",
        "2026-12-01T00:00:00Z",
        "--until",
        "2026-12-02T00:00:00Z",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 found" in flat(done.stdout)
    (query,) = stack.aws.client("logs").describe_queries(logGroupName=group)["queries"]
    assert query["queryString"].startswith("fields @timestamp, type")
    assert "/(?i)^gd_send_sms$/" in query["queryString"]
    # AND a correlation is hunted as its groups
    grouped = cli(stack, "hunt", "credential_stuffing_signals")
    assert grouped.returncode == 0, grouped.stderr
    assert "GROUP BY group_0" in grouped.stdout and "HAVING count(*) > 1" in grouped.stdout
    assert "not per sliding window" in flat(grouped.stdout)
