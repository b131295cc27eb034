"""The Auth0 detection catalog, compiled and evaluated, against pySigma's SQLite backend.

GIVEN the 33 catalog rules and a corpus of the shared sample events, events generated per type
from Auth0's log schemas, and mutations that hit every atom of every rule with matching and
near-miss values, WHEN both the evaluator and SQLite run every rule on every event, THEN they
match the same events (tests/sigma_oracle.py says how events are flattened for SQLite).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.sigma_oracle import CATALOG, SAMPLES, SCHEMAS, SqliteOracle, atoms, catalog_rules

pytestmark = pytest.mark.skipif(
    not (CATALOG.is_dir() and SAMPLES.exists() and SCHEMAS.is_dir()),
    reason=f"the Auth0 catalog, sample events or log schemas are not under {CATALOG.parents[1]} "
    "(../shared is not checked out)",
)


@pytest.fixture(scope="module")
def compiled() -> Any:
    from log_forwarder.cli.sigma_compiler import compile_paths

    return compile_paths([CATALOG])


@pytest.fixture(scope="module")
def judged(compiled: Any) -> dict[str, Any]:
    from log_forwarder.sigma_plan import load_plan
    from tests.sigma_oracle import corpus

    plan = load_plan(compiled.plan)
    events = corpus()
    matched = [{rule.id for rule in plan.matching(event)} for event in events]
    return {"events": events, "matched": matched, "oracle": SqliteOracle()}


def test_every_catalog_rule_and_correlation_compiles_and_none_is_refused(compiled: Any) -> None:
    plan = compiled.plan
    assert compiled.refused == []
    assert len(plan["rules"]) == 33
    assert len(plan["correlations"]) == 8
    assert {c["type"] for c in plan["correlations"]} == {"event_count", "value_count"}
    # The one unquoted placeholder is read back as the text it was written as, and said so.
    assert compiled.notes == [
        "client_with_overpermissive_granted_scopes.yml: unquoted {global_client_id} read as "
        "the text '{global_client_id}'"
    ]
    by_source = {rule["source"]: rule for rule in plan["rules"]}
    assert by_source["use_of_auth0_tenant_name_url.yml"]["placeholders"] == ["your-tenant-url"]
    # A correlation's base rule feeds it and gives no findings of its own (generate: false).
    assert by_source["credential_stuffing_signals.yml"]["standalone"] is False
    assert by_source["sms_bombarding.yml"]["standalone"] is True


@pytest.mark.parametrize(
    ("source", "rule"),
    catalog_rules() if CATALOG.is_dir() else [],
    ids=lambda item: item if isinstance(item, str) else "",
)
def test_the_evaluator_matches_the_events_sqlite_matches(
    source: str, rule: Any, judged: dict[str, Any]
) -> None:
    events, matched = judged["events"], judged["matched"]
    mine = {i for i, ids in enumerate(matched) if str(rule.id) in ids}
    theirs = judged["oracle"].matches(rule, events)
    assert mine == theirs, (
        f"{source}: only the evaluator {sorted(mine - theirs)[:5]}, "
        f"only SQLite {sorted(theirs - mine)[:5]}"
    )
    # The corpus means something for this rule: it matches some events, and misses near ones:
    # events of its own types, or whose type only looks like one of them ("fx", " f").
    types = {str(a.value).lower() for a in atoms(rule) if a.field == "data.type"}
    near = {
        i
        for i, e in enumerate(events)
        if not types or any(t in str(e.get("type")).lower() for t in types)
    }
    assert mine, f"{source}: no event of the corpus matches it"
    assert near - mine, f"{source}: no near miss in the corpus"
