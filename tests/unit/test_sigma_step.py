"""The pure Sigma step: rule findings, correlations, replay, expiry and bounds (docs/sigma.md)."""

from __future__ import annotations

import itertools
import json
import random
import textwrap
from collections.abc import Sequence
from typing import Any

import pytest

from log_forwarder.cli.sigma_compiler import compile_texts
from log_forwarder.events import LogEvent
from log_forwarder.sigma_plan import Plan, load_plan
from log_forwarder.sigma_step import CorrelationState, Limits, SigmaFinding, StepResult, step
from tests.sigma_oracle import CATALOG

T0 = 1_780_000_000_000  # ms
MINUTE = 60_000
HOUR = 60 * MINUTE

STUFFING = """
title: credential stuffing signals
id: 00000000-0000-4000-8000-0000000000a1
name: failures
status: experimental
level: medium
tags: [attack.credential-access, attack.t1110.004]
logsource: {product: auth0}
detection:
  selection:
    data.type: [f, fu, fp, pwd_leak]
  condition: selection
---
title: credential stuffing from one IP
correlation:
  type: event_count
  rules: [failures]
  group-by: [data.ip]
  timespan: 1h
  condition: {gt: 1}
"""


def base_rule(name: str, types: str, *, number: int, level: str = "") -> str:
    """A detection rule on `data.type`, as YAML (one document, indented as the tests' texts)."""
    return f"""
        title: {name}
        id: 00000000-0000-4000-8000-{number:012d}
        name: {name}
        {f"level: {level}" if level else ""}
        logsource: {{product: auth0}}
        detection:
          selection: {{data.type: {types}}}
          condition: selection
"""


def plan_from(text: str) -> Plan:
    compiled = compile_texts([("t.yml", textwrap.dedent(text))])
    assert compiled.refused == [], compiled.refused
    return load_plan(json.loads(json.dumps(compiled.plan)))


def event(n: int, at_ms: int, **fields: Any) -> LogEvent:
    raw = {"log_id": f"id-{n:06d}", "date": str(at_ms), **fields}
    return LogEvent(at_ms, raw["log_id"], raw)


def burst(
    hours: float, *, every_s: int = 30, ip: str = "203.0.113.9", first_id: int = 0
) -> list[LogEvent]:
    """Failures from one IP against two watched users, alternating."""
    count = int(hours * 3600 / every_s)
    return [
        event(first_id + n, T0 + n * every_s * 1000, type="f", ip=ip, user_id=f"auth0|user-{n % 2}")
        for n in range(count)
    ]


def run_in_batches(
    plan: Plan,
    events: Sequence[LogEvent],
    cuts: Sequence[int],
    state: CorrelationState | None = None,
) -> tuple[list[SigmaFinding], CorrelationState]:
    """Steps over consecutive batches, the state stored as JSON in between (as a checkpoint)."""
    state = state or CorrelationState()
    findings: list[SigmaFinding] = []
    bounds = [0, *sorted(cuts), len(events)]
    for start, end in itertools.pairwise(bounds):
        result = step(plan, state, events[start:end])
        findings += result.findings
        state = CorrelationState.from_state(json.loads(json.dumps(result.state.to_state())))
    return findings, state


# -- credential stuffing -------------------------------------------------------------------------


def test_a_burst_from_one_ip_against_two_users_gives_one_finding_per_window() -> None:
    plan = plan_from(STUFFING)
    events = burst(3, every_s=90)  # 120 failures over three hours
    result = step(plan, CorrelationState(), events)
    # GIVEN gt 1 within 1h: the 2nd failure (90 s) triggers and its finding covers the hour
    # after it; the first failure past that hour (3,780 s) triggers the next, and so on: three
    # findings in three hours. Each names the sliding window that qualified, the hour before it.
    triggers = [f.last_ms - T0 for f in result.findings]
    assert triggers == [90_000, HOUR + 180_000, 2 * HOUR + 270_000]
    assert [f.last_ms - f.first_ms for f in result.findings] == [90_000, HOUR, HOUR]
    first = result.findings[0]
    assert first.kind == "event_count"
    assert first.group == {"data.ip": "203.0.113.9"}
    assert first.metric == 2
    assert first.log_ids == ("id-000000", "id-000001")  # one failure of each user
    assert first.level == "medium"
    assert first.tags == ("attack.credential-access", "attack.t1110.004")
    assert len({f.finding_id for f in result.findings}) == 3
    # The base rule feeds the correlation only (Sigma's generate: false).
    assert all(f.kind != "rule" for f in result.findings)


def test_replaying_a_batch_after_a_crash_gives_the_same_findings_and_ids() -> None:
    plan = plan_from(STUFFING)
    events = burst(2)
    before = step(plan, CorrelationState(), events[:100])
    # The run crashed after evaluating but before its checkpoint: the next run starts from the
    # same stored state with the same events.
    again = step(plan, CorrelationState(), events[:100])
    assert [f.finding_id for f in again.findings] == [f.finding_id for f in before.findings]
    assert again.state == before.state
    # The checkpoint was written, then the same events come back (an overlapping read):
    # nothing is found twice.
    redelivered = step(plan, before.state, events[50:100])
    assert redelivered.findings == []
    assert redelivered.state == before.state


def test_any_split_into_runs_gives_the_findings_of_one_pass() -> None:
    plan = plan_from(STUFFING)
    events = burst(4, every_s=47) + burst(1, every_s=300, ip="198.51.100.4", first_id=10_000)
    events.sort(key=lambda e: e.key)
    one_pass = step(plan, CorrelationState(), events).findings
    rng = random.Random(7)
    for _ in range(20):
        cuts = rng.sample(range(1, len(events)), rng.randint(1, 12))
        findings, _ = run_in_batches(plan, events, cuts)
        assert findings == one_pass


def test_the_catalog_credential_stuffing_correlation_runs_as_published() -> None:
    path = CATALOG / "credential_stuffing_signals.yml"
    if not path.exists():
        pytest.skip(f"{path} not found (../shared is not checked out)")
    plan = plan_from(path.read_text(encoding="utf-8"))
    result = step(plan, CorrelationState(), burst(1.5))
    assert [f.title for f in result.findings] == [
        "Credential stuffing sttack risk - correlated rule"
    ] * 2
    assert result.findings[0].group == {"data.ip": "203.0.113.9"}


# -- timing, order, bounds -----------------------------------------------------------------------


def test_an_event_later_than_one_timespan_behind_the_newest_is_not_counted() -> None:
    plan = plan_from(STUFFING)
    state = step(plan, CorrelationState(), [event(1, T0 + 5 * HOUR, type="f", ip="a")]).state
    late = [event(2, T0, type="f", ip="b"), event(3, T0 + 1, type="f", ip="b")]
    result = step(plan, state, late)
    assert result.findings == []
    assert result.too_late == 2
    # Within the timespan a late event still counts, and joins the windows after it too.
    slightly = [event(4, T0 + 5 * HOUR - 30 * MINUTE, type="f", ip="a")]
    found = step(plan, state, slightly).findings
    assert [f.log_ids for f in found] == [("id-000004", "id-000001")]


def test_events_without_the_group_by_field_are_left_out_and_counted() -> None:
    plan = plan_from(STUFFING)
    result = step(plan, CorrelationState(), [event(n, T0 + n, type="f") for n in range(5)])
    assert result.findings == []
    assert result.no_group_key == 5


def test_state_is_bounded_and_expires() -> None:
    plan = plan_from(STUFFING)
    limits = Limits(max_group_events=20, max_groups=50)
    events = [
        event(n, T0 + n * 1000, type="f", ip=f"10.0.{n % 300 // 256}.{n % 256}")
        for n in range(20_000)
    ]
    result = step(plan, CorrelationState(), events, limits)
    groups = result.state.groups[plan.correlations[0].id]
    assert len(groups) <= 50
    assert all(len(g.entries) <= 20 for g in groups.values())
    # The whole state has a cap too: the groups seen longest ago go first.
    small = step(plan, CorrelationState(), events, Limits(max_entries=30))
    kept = small.state.groups[plan.correlations[0].id]
    assert sum(len(g.entries) for g in kept.values()) <= 30
    assert max(e.date_ms for g in kept.values() for e in g.entries) == events[-1].date_ms
    assert len(json.dumps(step(plan, CorrelationState(), events).state.to_state())) < 100_000
    # Two timespans later, nothing of them is left.
    quiet = step(plan, result.state, [event(99_999, T0 + 20_000_000 + 2 * HOUR + 1, type="s")])
    assert quiet.state.groups == {}
    assert quiet.state.watermark_ms == T0 + 20_000_000 + 2 * HOUR + 1


def test_a_stored_state_that_cannot_be_read_starts_empty() -> None:
    for stored in (None, "x", {"v": 99}, {"v": 1, "c": {"k": {"g": {"e": [["x"]], "f": "y"}}}}):
        state = CorrelationState.from_state(stored)
        assert all(not g.entries for groups in state.groups.values() for g in groups.values())


# -- the other correlation types ----------------------------------------------------------------


def test_value_count_counts_distinct_values_case_insensitively() -> None:
    plan = plan_from(
        base_rule("refresh", "sertft", number=1)
        + """
        ---
        title: refresh tokens from many user agents
        correlation:
          type: value_count
          rules: [refresh]
          group-by: [data.user_id]
          timespan: 1d
          condition: {gte: 3, field: data.user_agent}
    """
    )
    agents = ["Chrome", "CHROME", "Firefox", "Firefox", None, "curl"]
    events = [
        event(n, T0 + n * MINUTE, type="sertft", user_id="auth0|u", user_agent=agent)
        for n, agent in enumerate(agents)
    ]
    found = step(plan, CorrelationState(), events).findings
    assert [(f.metric, f.log_ids[-1]) for f in found] == [(3, "id-000005")]


def test_temporal_ordered_needs_the_rules_in_their_order_and_temporal_does_not() -> None:
    text = (
        base_rule("failure", "f", number=2)
        + "        ---"
        + base_rule("success", "s", number=3)
        + """
        ---
        title: failure then success
        correlation:
          type: KIND
          rules: [failure, success]
          group-by: [data.user_id]
          timespan: 10m
    """
    )
    ordered = plan_from(text.replace("KIND", "temporal_ordered"))
    unordered = plan_from(text.replace("KIND", "temporal"))
    forward = [event(1, T0, type="f", user_id="u"), event(2, T0 + MINUTE, type="s", user_id="u")]
    backward = [event(1, T0, type="s", user_id="u"), event(2, T0 + MINUTE, type="f", user_id="u")]
    too_far = [
        event(1, T0, type="f", user_id="u"),
        event(2, T0 + 11 * MINUTE, type="s", user_id="u"),
    ]
    assert len(step(ordered, CorrelationState(), forward).findings) == 1
    assert step(ordered, CorrelationState(), backward).findings == []
    assert step(ordered, CorrelationState(), too_far).findings == []
    assert len(step(unordered, CorrelationState(), backward).findings) == 1
    assert step(unordered, CorrelationState(), too_far).findings == []


def test_an_upper_bound_is_judged_at_each_event_as_the_sqlite_backend_does() -> None:
    plan = plan_from(
        base_rule("signup", "[ss, sv]", number=4)
        + """
        ---
        title: unverified
        correlation:
          type: value_count
          rules: [signup]
          group-by: [data.user_id]
          timespan: 30d
          condition: {lte: 1, field: data.type}
    """
    )
    events = [event(1, T0, type="ss", user_id="u"), event(2, T0 + HOUR, type="sv", user_id="u")]
    found = step(plan, CorrelationState(), events).findings
    # The signup alone is a window of one type: it fires at once, not 30 days later.
    assert [(f.log_ids, f.metric) for f in found] == [(("id-000001",), 1)]


def test_standalone_rules_give_one_finding_per_matching_event_with_stable_ids() -> None:
    plan = plan_from(base_rule("sms_bombing", "gd_send_sms", number=5, level="high"))
    events = [
        event(1, T0, type="gd_send_sms"),
        event(1, T0, type="gd_send_sms"),
        event(2, T0, type="s"),
    ]
    result: StepResult = step(plan, CorrelationState(), events)
    assert [(f.kind, f.log_ids, f.level) for f in result.findings] == [
        ("rule", ("id-000001",), "high")
    ]
    assert result.findings == step(plan, CorrelationState(), events[::-1]).findings


def test_a_long_group_value_is_kept_bounded_and_still_groups_alike() -> None:
    plan = plan_from(STUFFING)
    # GIVEN failures grouped by a value an attacker chooses, 9,000 characters long: two share
    # their first 8,000 characters and differ after, and two are equal
    long_a, long_b = "a" * 8_000 + "x" * 1_000, "a" * 8_000 + "y" * 1_000
    events = [
        event(n, T0 + n * 1000, type="f", ip=ip) for n, ip in enumerate((long_a, long_b, long_a))
    ]
    result = step(plan, CorrelationState(), events)
    # THEN the equal values form one group and trigger (gt 1) and the other does not
    assert [f.log_ids for f in result.findings] == [("id-000000", "id-000002")]
    # AND the state holds no value past the bound: a readable start and a digest of the whole
    stored = json.dumps(result.state.to_state())
    assert len(stored) < 4_000, len(stored)
    (group,) = {tuple(f.group.values()) for f in result.findings}
    assert group[0].startswith("a" * 64 + "…sha256:") and len(group[0]) <= 256
