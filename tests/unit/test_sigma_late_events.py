"""Late events within the timespan: a group keeps only what decides its condition where lateness
cannot change whether a window holds (sigma_step._needed); review of #25, H2, failed before."""

from __future__ import annotations

from log_forwarder.sigma_step import CorrelationState, step
from tests.unit.test_sigma_step import MINUTE, T0, event, plan_from


def _failures_then(rule_id: str, correlation: str) -> str:
    """A pack of one failed-login rule (`failures`) and one correlation of it, by IP."""
    return f"""
title: failures
id: {rule_id}
name: failures
status: experimental
level: medium
logsource: {{product: auth0}}
detection:
  selection:
    data.type: [f]
  condition: selection
---
{correlation}"""


EVENT_COUNT_GTE4 = _failures_then(
    "00000000-0000-4000-8000-0000000000b1",
    """title: 4 failures from one IP
correlation:
  type: event_count
  rules: [failures]
  group-by: [data.ip]
  timespan: 1h
  condition: {gte: 4}
""",
)

VALUE_COUNT_GTE3 = _failures_then(
    "00000000-0000-4000-8000-0000000000b2",
    """title: 3 users failing from one IP
correlation:
  type: value_count
  rules: [failures]
  group-by: [data.ip]
  timespan: 1h
  condition: {field: data.user_id, gte: 3}
""",
)


def _f(n: int, minute: int, user: str = "u1") -> object:
    return event(n, T0 + minute * MINUTE, type="f", ip="198.51.100.7", user_id=user)


def _runs(text: str, first: list, second: list) -> tuple[int, int]:
    plan = plan_from(text)
    whole = step(plan, CorrelationState(), [*first, *second])
    a = step(plan, CorrelationState(), first)
    b = step(plan, a.state, second)
    return len(whole.findings), len(a.findings) + len(b.findings)


def test_event_count_late_event_in_another_call_keeps_its_finding() -> None:
    # 200,201,202 | 300,305 ; late 250: window [190,250] holds 200,201,202,250 = 4
    first = [_f(1, 200), _f(2, 201), _f(3, 202), _f(4, 300), _f(5, 305)]
    late = [_f(6, 250)]
    one_call, split = _runs(EVENT_COUNT_GTE4, first, late)
    assert (one_call, split) == (1, 1), (one_call, split)


def test_value_count_late_event_in_another_call_keeps_its_finding() -> None:
    # A@200, B@205, A@268 | late C@210: window [150,210] holds A, B, C = 3 distinct users
    first = [_f(1, 200, "A"), _f(2, 205, "B"), _f(3, 268, "A")]
    late = [_f(4, 210, "C")]
    one_call, split = _runs(VALUE_COUNT_GTE3, first, late)
    assert (one_call, split) == (1, 1), (one_call, split)


def test_default_failed_login_burst_keeps_its_finding_when_one_failure_comes_late() -> None:
    # the shipped per-user `failed_login_burst` (gte 10 in 1h): 9 failures at minutes 0-8 and
    # 2 at minutes 69-70 are pushed; the failure of minute 50 comes by the read, later
    from log_forwarder.detections import DetectionSettings, RuleSet, default_plan

    plan = RuleSet.of(default_plan(DetectionSettings())).per_user

    def f(n: int, minute: int) -> object:
        return event(n, T0 + minute * MINUTE, type="f", user_id="auth0|u", ip="192.0.2.1")

    pushed = [f(i, i) for i in range(9)] + [f(9, 69), f(10, 70)]
    late = [f(11, 50)]

    def burst(findings: list) -> int:
        return sum("191479c0" in str(x) for x in findings)

    whole = step(plan, CorrelationState(), [*pushed, *late])
    a = step(plan, CorrelationState(), pushed)
    b = step(plan, a.state, late)
    assert (burst(whole.findings), burst(a.findings) + burst(b.findings)) == (1, 1)
