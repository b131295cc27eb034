"""Numbers in a plan: finite bounds, and correlation counts a group can hold (issue #23's review,
suspicions 2 and 3).

A plan is stored text (the CLI writes it to DynamoDB, `rule_packs` reads it back with `json.loads`,
which takes `Infinity`, `NaN` and `1e400`); it is read here as the function reads it. A group keeps
MAX_GROUP_EVENTS events, so a count reads at most that much (docs/sigma.md, "Order, bounds,
expiry").
"""

from __future__ import annotations

import dataclasses
import json
import textwrap
from dataclasses import replace

import pytest

from log_forwarder.cli.sigma_compiler import compile_texts
from log_forwarder.detections import DetectionSettings, default_plan
from log_forwarder.exceptions import RulePackError
from log_forwarder.sigma_plan import MAX_GROUP_EVENTS, load_plan
from log_forwarder.sigma_step import CorrelationState, Limits, step
from tests.unit.test_sigma_step import T0, event

RULE_ID = "00000000-0000-4000-8000-0000000000d1"
CORRELATION_ID = "00000000-0000-4000-8000-0000000000d2"


def pack(condition: str, kind: str = "event_count") -> str:
    """A failed-login rule with a `details.attempts` comparison, and one correlation by IP."""
    return textwrap.dedent(f"""
        title: failures
        id: {RULE_ID}
        name: failures
        logsource: {{product: auth0}}
        detection:
          selection: {{data.type: f}}
          many: {{data.details.attempts|gte: 3}}
          condition: selection and not many
        ---
        title: many failures
        id: {CORRELATION_ID}
        correlation: {{type: {kind}, rules: [failures], group-by: [data.ip], timespan: 1h,
                       condition: {condition}}}
    """)


def stored_text(condition: str = "{gte: 5}", kind: str = "event_count") -> str:
    compiled = compile_texts([("t.yml", pack(condition, kind))])
    assert compiled.refused == [], compiled.refused
    return json.dumps(compiled.plan)


def failures(count: int) -> list:
    return [
        event(n, T0 + n * 1000, type="f", ip="198.51.100.7", user_id=f"auth0|u{n}")
        for n in range(count)
    ]


# -- suspicion 2: non-finite numbers in stored text -----------------------------------------------


@pytest.mark.parametrize("spelled", ["Infinity", "-Infinity", "1e400", "1" + "0" * 400])
def test_a_stored_correlation_count_that_is_not_a_finite_number_is_refused_naming_it(
    spelled: str,
) -> None:
    # GIVEN a compiled plan whose stored text says `gte: Infinity` (or 1e400, or a 401-digit int)
    text = stored_text().replace('"gte": 5', f'"gte": {spelled}')
    # WHEN the function reads it THEN load_plan refuses it, naming the correlation and the field
    # (before: Infinity and 1e400 loaded, and every step of a matching event raised OverflowError
    # in _lower_bound; the 401-digit int raised OverflowError out of load_plan, not RulePackError)
    with pytest.raises(
        RulePackError,
        match=f"correlation {CORRELATION_ID}: condition gte: .* is not a finite number",
    ):
        load_plan(json.loads(text))


@pytest.mark.parametrize("spelled", ["Infinity", "NaN", "1e400", "1" + "0" * 400])
def test_a_stored_comparison_bound_that_is_not_a_finite_number_is_refused_naming_it(
    spelled: str,
) -> None:
    document = json.loads(stored_text())
    (atom,) = [a for a in _atoms(document["rules"][0]["condition"]) if a[0] == "cmp"]
    atom[3] = "BOUND"
    text = json.dumps(document).replace('"BOUND"', spelled)
    with pytest.raises(
        RulePackError,
        match=f"rule {RULE_ID}: comparison of details.attempts with .* not a finite number",
    ):
        load_plan(json.loads(text))


def test_a_sigma_count_pysigma_cannot_read_refuses_its_file_instead_of_raising() -> None:
    # `gte: .inf` is raised by pySigma despite collect_errors: it escaped compile_texts
    compiled = compile_texts([("t.yml", pack("{gte: .inf}"))])
    assert [(r.rule, r.feature) for r in compiled.refused] == [
        ("t.yml", "pySigma cannot read it: 'inf' is no valid Sigma correlation condition count")
    ]


def test_a_timespan_past_ten_years_is_refused_by_the_compiler_and_the_loader() -> None:
    # pySigma reads `timespan: 1000...0d` (42 digits): 8.64e48 ms compiled and loaded, and the
    # shared item's `expires_at` (its watermark plus two timespans, in seconds) became a 47-digit
    # number, past the 38 digits a DynamoDB number holds. Ten years (`10y`) still compiles.
    text = pack("{gte: 5}").replace("timespan: 1h", "timespan: 1" + "0" * 41 + "d")
    compiled = compile_texts([("t.yml", text)])
    assert [r.feature for r in compiled.refused] == [
        "timespan_ms 8640000000000000… is longer than ten years (316224000000 ms)"
    ]
    assert compile_texts([("t.yml", pack("{gte: 5}").replace("1h", "10y"))]).refused == []
    document = json.loads(stored_text())
    document["correlations"][0]["timespan_ms"] = 10**48
    with pytest.raises(RulePackError, match=f"correlation {CORRELATION_ID}: timespan_ms 1000"):
        load_plan(document)


def _atoms(node: list) -> list[list]:
    if node[0] in ("and", "or", "not"):
        return [atom for arg in node[1:] for atom in _atoms(arg)]
    return [node]


# -- suspicion 3: counts past what a group keeps ---------------------------------------------------


def test_a_count_of_exactly_the_group_cap_fires_in_one_call_and_one_event_at_a_time() -> None:
    # GIVEN `gte: 50`, the largest count a group of 50 events can hold
    assert Limits().max_group_events == MAX_GROUP_EVENTS == 50
    for kind, condition in (
        ("event_count", "{gte: 50}"),
        ("value_count", "{field: data.user_id, gte: 50}"),
    ):
        plan = load_plan(json.loads(stored_text(condition, kind)))
        events = failures(50)
        state, found = CorrelationState(), 0
        for one in events:
            result = step(plan, state, [one])
            state, found = result.state, found + len(result.findings)
        # THEN it fires, whether the 50 failures come together or one per run
        assert (len(step(plan, CorrelationState(), events).findings), found) == (1, 1), kind


@pytest.mark.parametrize(
    ("kind", "condition", "op_bound"),
    [
        ("event_count", "{gte: 51}", "gte: 51"),
        ("event_count", "{gt: 50}", "gt: 50"),
        ("event_count", "{lt: 60}", "lt: 60"),
        ("event_count", "{eq: 50}", "eq: 50"),
        ("value_count", "{field: data.user_id, gte: 100}", "gte: 100"),
    ],
)
def test_a_count_a_group_cannot_hold_is_refused_by_the_compiler_and_the_loader(
    kind: str, condition: str, op_bound: str
) -> None:
    why = f"condition {op_bound} needs counts above 50, and a correlation keeps 50 events per group"
    # GIVEN Sigma text asking for more (before, only event_count >= 50 was refused, and only by
    # the compiler: value_count gte 100 compiled and never fired; lt 60 kept firing at 50)
    compiled = compile_texts([("t.yml", pack(condition, kind))])
    assert [r.feature.startswith(why) for r in compiled.refused] == [True]
    # AND a stored plan edited to ask for it (a pack written by another release, or by hand)
    document = json.loads(stored_text("{gte: 5}"))
    op, bound = op_bound.split(": ")
    document["correlations"][0]["condition"] = {op: int(bound)}
    with pytest.raises(RulePackError, match=f"correlation {CORRELATION_ID}: {why}"):
        load_plan(document)


def test_why_an_upper_bound_past_the_cap_is_refused_too_it_would_fire_through_a_burst() -> None:
    # GIVEN `lt: 60` run anyway (the loader's check bypassed) over 120 failures an hour for 3 h
    plan = load_plan(json.loads(stored_text("{lt: 40}")))
    (allowed,) = plan.correlations
    forced = dataclasses.replace(plan, correlations=(replace(allowed, conditions=(("lt", 60.0),)),))
    burst = [
        event(n, T0 + n * 30_000, type="f", ip="198.51.100.7", user_id="auth0|u")
        for n in range(360)
    ]
    # THEN the count, which reads at most 50, is "below 60" again after the first finding's hour
    # though it never fell below 60 after the 60th failure: findings the SQLite backend never gives
    assert len(step(forced, CorrelationState(), burst).findings) == 3
    # while `lt: 40`, which the cap can decide, fires at the first failure only
    assert len(step(plan, CorrelationState(), burst).findings) == 1


def test_the_shipped_failed_login_threshold_range_stays_within_what_a_group_keeps() -> None:
    from log_forwarder.detections import MAX_THRESHOLD

    assert MAX_THRESHOLD == MAX_GROUP_EVENTS
    default_plan(DetectionSettings(failed_login_threshold=MAX_THRESHOLD))  # loads
