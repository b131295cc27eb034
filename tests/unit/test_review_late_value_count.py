"""Adversarial review of the sigma branch (62da699: a late repeat a trimmed value_count group
did not keep is "decided at the group's newest event, as _needed's reasoning says"): that
reasoning does not hold when the late event's own window reaches a value the newest window
does not, and the window the SQLite backend reports is never judged."""

from __future__ import annotations

import pytest

from log_forwarder.detections import DetectionSettings, default_plan
from log_forwarder.sigma_plan import Plan
from log_forwarder.sigma_step import CorrelationState, step
from tests.unit.test_sigma_chains import BASES, MINUTE, T0, chain_plan, ev

STUFFING_ID = "33333333-0000-4000-8000-000000000001"
STUFFING = f"""
title: two users failing from one IP
id: {STUFFING_ID}
name: stuffing
correlation: {{type: value_count, rules: [fail], group-by: [data.ip], timespan: 1h,
               condition: {{field: data.user_id, gte: 2}}}}
"""


def shipped() -> tuple[Plan, str]:
    plan = default_plan(DetectionSettings())
    stuffing = next(c for c in plan.correlations if c.name == "credential_stuffing")
    return plan, stuffing.id


@pytest.mark.parametrize("pack", ["written here", "the shipped credential_stuffing"])
def test_a_late_repeat_of_the_newest_value_still_completes_its_own_window(pack: str) -> None:
    # GIVEN two users failing from one IP: u2 at minute 0, u1 at minute 58, then u1 again at 65
    # (the backend, in order: the row at 58 holds u2 and u1 within the hour: one finding)
    plan, stuffing_id = (
        (chain_plan(BASES, STUFFING), STUFFING_ID) if pack == "written here" else shipped()
    )
    u2_first = ev("f", T0, user="auth0|u2")
    u1_late = ev("f", T0 + 58 * MINUTE, user="auth0|u1")
    u1_newest = ev("f", T0 + 65 * MINUTE, user="auth0|u1")
    in_order = step(plan, CorrelationState(), [u2_first, u1_late, u1_newest])
    assert [f.rule_id for f in in_order.findings] == [stuffing_id]
    # WHEN the push brings minutes 0 and 65, and the read brings minute 58 seven minutes late
    # (the stream dropped it; within the timespan of the watermark, so it is counted)
    pushed = step(plan, CorrelationState(), [u2_first, u1_newest])
    read = step(plan, pushed.state, [u1_late])
    # THEN the finding is raised all the same (main: none. The group keeps u1's newest event
    # only, so the late one is dropped, its window [-2, 58] never judged, and the window ending
    # at the newest event, [5, 65], holds u1 alone)
    assert [f.rule_id for f in pushed.findings + read.findings] == [stuffing_id]
