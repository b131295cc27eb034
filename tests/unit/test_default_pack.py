"""The default rule pack: the Sigma YAML in rules/default/ and the plan the function ships with
(src/log_forwarder/default_plan.json) are the same rules; every rule of the pack compiles."""

from __future__ import annotations

import json

from devtools.default_plan import compiled_default_pack, plan_text
from log_forwarder.detections import DEFAULT_PLAN_PATH, RULES
from log_forwarder.sigma_plan import load_plan


def test_the_shipped_plan_is_a_fresh_compile_of_the_pack() -> None:
    # GIVEN the pack's YAML, compiled now with the pinned pySigma
    fresh = compiled_default_pack()
    # THEN the committed plan is exactly it (regenerate: python -m devtools.default_plan)
    shipped = DEFAULT_PLAN_PATH.read_text(encoding="utf-8")
    assert json.loads(shipped) == fresh, "run `PYTHONPATH=src python -m devtools.default_plan`"
    assert shipped == plan_text(fresh)


def test_the_shipped_plan_loads_and_holds_every_detection_of_the_pack() -> None:
    plan = load_plan(json.loads(DEFAULT_PLAN_PATH.read_text(encoding="utf-8")))
    sources = {item.source for item in (*plan.rules, *plan.correlations)}
    assert sources == {f"{name}.yml" for name in RULES}
    assert len({rule.id for rule in plan.rules} | {c.id for c in plan.correlations}) == len(
        plan.rules
    ) + len(plan.correlations)
