"""Events of one millisecond that arrive in two step calls (issue #23's review, suspicion 1).

Auth0 dates are millisecond ISO strings shared by several events, and a run's page, a lost
commit's re-read or a push can end inside a millisecond. Each test compiles real Sigma text, steps
the events once in one call and once split, and compares. All three failed before the fix.
"""

from __future__ import annotations

from log_forwarder.sigma_step import CorrelationState, step
from tests.unit.test_sigma_chains import (
    AFTER_ID,
    BASES,
    BURST_ID,
    MINUTE,
    T0,
    after,
    burst,
    chain_plan,
    ev,
    of,
)
from tests.unit.test_sigma_step import STUFFING, event, plan_from


def test_a_chain_counts_one_point_for_a_millisecond_split_across_two_calls() -> None:
    # GIVEN "the burst (3 failures in 10 min) held at 2 moments": failures at 0, 1 and two at 2
    outer = after(rules="[burst]", kind="event_count", extra=", condition: {gte: 2}")
    plan = chain_plan(BASES, burst(count=3), outer)
    at_2 = T0 + 2 * MINUTE
    first = [ev("f", T0), ev("f", T0 + MINUTE), ev("f", at_2)]
    second = [ev("f", at_2)]  # the same millisecond, in the next run's page
    # WHEN stepped in one call, and split after the first failure of minute 2
    whole = step(plan, CorrelationState(), [*first, *second])
    head = step(plan, CorrelationState(), first)
    tail = step(plan, head.state, second)
    # THEN minute 2 is one point either way: the burst held at one moment, not two
    assert of(whole.findings, AFTER_ID) == []
    assert of(head.findings + tail.findings, AFTER_ID) == []  # was one finding, metric 2


def test_a_re_read_after_a_lost_commit_with_one_more_event_of_the_trigger_ms_keeps_the_id() -> None:
    # GIVEN credential stuffing (more than 1 failure from one IP in 1h) and a run whose page
    # ended inside a millisecond: its finding was delivered, its commit lost
    plan = plan_from(STUFFING)
    at = T0 + 5 * MINUTE
    earlier = event(1, T0, type="f", ip="198.51.100.7", user_id="u1")
    first_of_ms = event(2, at, type="f", ip="198.51.100.7", user_id="u1")
    second_of_ms = event(3, at, type="f", ip="198.51.100.7", user_id="u2")
    delivered = step(plan, CorrelationState(), [earlier, first_of_ms])
    # WHEN the next run re-reads from the same checkpoint and its page now holds one more event
    # of that millisecond
    replayed = step(plan, CorrelationState(), [earlier, first_of_ms, second_of_ms])
    # THEN the finding has the same id, so the sinks take it once (it had a new id: twice)
    assert [f.finding_id for f in replayed.findings] == [f.finding_id for f in delivered.findings]
    assert len(delivered.findings) == 1


def test_a_late_repeat_of_a_value_an_inner_value_count_dropped_does_not_break_the_step() -> None:
    # GIVEN a chain over "2 users failing from one IP in 10 min", which keeps each user's newest
    # failure only; u2 and u3 at minutes 6-7, u1 at 25
    inner = f"""
title: users
id: {BURST_ID}
name: burst
correlation: {{type: value_count, rules: [fail], group-by: [data.ip], timespan: 10m,
               condition: {{field: data.user_id, gte: 2}}}}
"""
    outer = after(
        rules="[burst]", kind="event_count", group_by="[data.ip]", extra=", condition: {gte: 1}"
    )
    plan = chain_plan(BASES, inner, outer)
    first = [ev("f", T0 + m * MINUTE, user=u) for m, u in ((6, "u2"), (7, "u3"), (25, "u1"))]
    head = step(plan, CorrelationState(), first)
    # WHEN u1's failure of minute 16 comes late (read after the push), a repeat of u1
    tail = step(plan, head.state, [ev("f", T0 + 16 * MINUTE, user="u1")])
    # THEN the step judges it (it raised IndexError: no entry at the late millisecond, every run)
    assert of(head.findings, AFTER_ID) != []
    assert of(tail.findings, AFTER_ID) == []  # within the outer's finding window already


def test_a_chain_counts_one_point_when_the_second_call_brings_a_smaller_log_id_of_the_ms() -> None:
    # GIVEN the chain above, and minute 2's two failures, the one with the smaller log_id
    # arriving in the second call (a push, then a read whose page holds the other)
    outer = after(rules="[burst]", kind="event_count", extra=", condition: {gte: 2}")
    plan = chain_plan(BASES, burst(count=3), outer)
    at_2 = T0 + 2 * MINUTE
    smaller = ev("f", at_2)  # created first: its log_id sorts first
    first = [ev("f", T0), ev("f", T0 + MINUTE), ev("f", at_2)]
    assert smaller.log_id < first[-1].log_id
    # WHEN stepped in one call, and split with the smaller log_id of minute 2 coming second
    whole = step(plan, CorrelationState(), [*first, smaller])
    head = step(plan, CorrelationState(), first)
    tail = step(plan, head.state, [smaller])
    # THEN minute 2 is one point either way (before: the second judgement's trigger, the
    # smaller log_id, was a point of its own: two points, one finding, metric 2)
    assert of(whole.findings, AFTER_ID) == []
    assert of(head.findings + tail.findings, AFTER_ID) == []
