"""Chains: a Sigma correlation whose `rules:` names another correlation (docs/sigma.md, "Chains").

Compiling (names resolved in the file, then the pack; inner before outer; cycles, unknown and
ambiguous names, group-bys outside the inner's refused by name), loading (the same checks on a plan
written by hand), merging and cutting a plan (a chain stays whole, in one part), the step (every
point at which the inner condition holds feeds the outer, exactly once), the default pack's
`success_after_burst`, and `rules list` / `rules hunt` on a chain.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from log_forwarder.cli.hunt import hunt
from log_forwarder.cli.rules import InstalledPack, rule_rows
from log_forwarder.cli.sigma_compiler import compile_paths, compile_texts
from log_forwarder.detections import (
    DetectionSettings,
    DetectionState,
    RuleSet,
    default_plan,
    detect,
)
from log_forwarder.events import LogEvent
from log_forwarder.exceptions import RulePackError
from log_forwarder.sigma_plan import Plan, load_plan, merge
from log_forwarder.sigma_step import CorrelationState, SigmaFinding, step
from tests.cli_support import run_cli

T0 = 1_790_000_000_000
MINUTE = 60_000
ROOT = Path(__file__).resolve().parents[2]
FAIL_ID = "00000000-0000-4000-8000-00000000c0a1"
OK_ID = "00000000-0000-4000-8000-00000000c0a2"
BURST_ID = "00000000-0000-4000-8000-00000000c0b1"
AFTER_ID = "00000000-0000-4000-8000-00000000c0c1"

BASES = f"""
title: fail
id: {FAIL_ID}
name: fail
logsource: {{product: auth0}}
detection: {{sel: {{data.type: f}}, condition: sel}}
---
title: ok
id: {OK_ID}
name: ok
logsource: {{product: auth0}}
detection: {{sel: {{data.type: s}}, condition: sel}}
"""


def burst(group_by: str = "[data.user_id]", count: int = 3, minutes: int = 10) -> str:
    return f"""
title: burst
id: {BURST_ID}
name: burst
level: medium
tags: [attack.t1110]
correlation: {{type: event_count, rules: [fail], group-by: {group_by}, timespan: {minutes}m,
               condition: {{gte: {count}}}}}
"""


def after(
    rules: str = "[burst, ok]",
    group_by: str = "[data.user_id]",
    kind: str = "temporal_ordered",
    minutes: int = 10,
    extra: str = "",
) -> str:
    return f"""
title: after
id: {AFTER_ID}
name: after
level: critical
correlation: {{type: {kind}, rules: {rules}, group-by: {group_by}, timespan: {minutes}m{extra}}}
"""


def documents(*parts: str) -> str:
    return "\n---\n".join(textwrap.dedent(p).strip() for p in parts) + "\n"


def chain_plan(*parts: str) -> Plan:
    compiled = compile_texts([("chain.yml", documents(*parts))])
    assert compiled.refused == [], compiled.refused
    return load_plan(json.loads(json.dumps(compiled.plan)))


def refused(*sources: tuple[str, str]) -> dict[str, str]:
    compiled = compile_texts(list(sources))
    load_plan(compiled.plan)  # what is left still loads
    return {r.rule: r.feature for r in compiled.refused}


_ids = iter(range(10**9))


def ev(code: str, at_ms: int, user: str = "auth0|u1", ip: str = "192.0.2.1") -> LogEvent:
    log_id = f"900{next(_ids):053d}"
    return LogEvent(at_ms, log_id, {"type": code, "log_id": log_id, "user_id": user, "ip": ip})


def of(findings: Sequence[SigmaFinding], rule_id: str) -> list[SigmaFinding]:
    return [f for f in findings if f.rule_id == rule_id]


# -- compiling ---------------------------------------------------------------------------------


def test_a_chain_compiles_with_the_inner_correlation_before_the_outer_whatever_the_file_order() -> (
    None
):
    # GIVEN the outer written before the inner it names
    plan = chain_plan(BASES, after(), burst())
    # THEN the plan lists the inner first, and the outer names it as one of its rules
    assert [c.id for c in plan.correlations] == [BURST_ID, AFTER_ID]
    outer = plan.correlation(AFTER_ID)
    assert outer.rule_ids == (BURST_ID, OK_ID) and outer.inner_ids == (BURST_ID,)
    assert outer.inner_group == {BURST_ID: (0,)}
    # AND Sigma's default `generate: false` silences what the outer names: the inner too
    assert not plan.correlation(BURST_ID).standalone
    assert not plan.rule(OK_ID).standalone and not plan.rule(FAIL_ID).standalone
    assert plan.counted_rules(outer) == (plan.rule(FAIL_ID), plan.rule(OK_ID))


def test_generate_true_keeps_the_inner_correlations_findings() -> None:
    plan = chain_plan(BASES, burst(), after(extra=", generate: true"))
    assert plan.correlation(BURST_ID).standalone and plan.rule(OK_ID).standalone


def test_a_chain_resolves_a_name_of_another_file_of_the_pack() -> None:
    # GIVEN the inner correlation and the rules in one file, the outer in another
    compiled = compile_texts([("a.yml", documents(BASES, burst())), ("b.yml", documents(after()))])
    assert compiled.refused == []
    assert [c["id"] for c in compiled.plan["correlations"]] == [BURST_ID, AFTER_ID]
    assert compiled.plan["correlations"][1]["source"] == "b.yml"


def test_a_name_is_taken_from_its_own_file_first() -> None:
    # GIVEN two files each with a rule named `ok`: the outer's file's own one is meant
    other = BASES.replace(OK_ID, "00000000-0000-4000-8000-00000000c0f2").replace(
        FAIL_ID, "00000000-0000-4000-8000-00000000c0f1"
    )
    compiled = compile_texts(
        [("a.yml", documents(other)), ("b.yml", documents(BASES, burst(), after()))]
    )
    assert compiled.refused == []
    assert compiled.plan["correlations"][-1]["rules"] == [BURST_ID, OK_ID]


def test_a_cycle_is_refused_naming_it() -> None:
    cycle = documents(
        BASES,
        """
        title: a
        name: a
        correlation: {type: event_count, rules: [b], group-by: [data.user_id], timespan: 1h,
                      condition: {gte: 2}}
        """,
        """
        title: b
        name: b
        correlation: {type: event_count, rules: [a], group-by: [data.user_id], timespan: 1h,
                      condition: {gte: 2}}
        """,
        """
        title: self
        name: self
        correlation: {type: event_count, rules: [self], group-by: [data.user_id], timespan: 1h,
                      condition: {gte: 2}}
        """,
    )
    found = refused(("c.yml", cycle))
    assert found["b"] == "a cycle of correlations (a -> b -> a)"
    assert found["a"].startswith("its correlation 'b' was refused: a cycle of correlations")
    assert found["self"] == "a cycle of correlations (self -> self)"


def test_unknown_and_ambiguous_names_are_refused_by_name() -> None:
    unknown = refused(("c.yml", documents(BASES, after())))
    assert unknown["after"] == "its rule 'burst' is not in this pack"
    twin = documents(BASES.replace("c0a", "c0d"))  # other ids, the same names
    ambiguous = refused(
        ("a.yml", documents(BASES)),
        ("b.yml", twin),
        ("c.yml", documents(after(rules="[fail, ok]", kind="temporal"))),
    )
    assert ambiguous["after"] == "its rule 'fail' is ambiguous: it names rules in a.yml, b.yml"


def test_an_outer_group_by_outside_the_inners_is_refused_and_so_is_a_value_count_of_one() -> None:
    found = refused(("c.yml", documents(BASES, burst(), after(group_by="[data.ip]"))))
    assert found["after"] == (
        "it groups by 'data.ip', which its correlation 'burst' does not group by (data.user_id)"
    )
    counted = after(kind="value_count", extra=", condition: {field: data.ip, gte: 2}")
    found = refused(("c.yml", documents(BASES, burst(), counted)))
    assert found["after"] == "a value_count of a correlation ('burst') is not supported"


def test_an_outer_refused_with_its_inner() -> None:
    found = refused(("c.yml", documents(BASES, burst(count=100), after())))
    assert found["burst"].startswith("condition gte: 100 needs counts above 50")
    assert found["after"].startswith("its correlation 'burst' was refused: condition gte: 100")


# -- loading a plan written by hand --------------------------------------------------------------


def plan_document() -> dict[str, Any]:
    return json.loads(
        json.dumps(compile_texts([("c.yml", documents(BASES, burst(), after()))]).plan)
    )


def test_load_plan_refuses_an_outer_before_its_inner_a_self_reference_and_a_wider_group() -> None:
    good = plan_document()
    load_plan(good)
    swapped = {**good, "correlations": good["correlations"][::-1]}
    with pytest.raises(RulePackError, match=f"correlation {AFTER_ID}: it names {BURST_ID}, which"):
        load_plan(swapped)
    selfish = json.loads(json.dumps(good))
    selfish["correlations"][1]["rules"] = [AFTER_ID, OK_ID]
    with pytest.raises(RulePackError, match="it names itself"):
        load_plan(selfish)
    wide = json.loads(json.dumps(good))
    wide["correlations"][1]["inner_group"] = {BURST_ID: [1]}
    with pytest.raises(RulePackError, match="must be within that of correlation"):
        load_plan(wide)
    missing = json.loads(json.dumps(good))
    del missing["correlations"][1]["inner_group"]
    with pytest.raises(RulePackError, match=r"within that of correlation .*one position each"):
        load_plan(missing)
    counted = json.loads(json.dumps(good))
    counted["correlations"][1]["type"] = "value_count"
    with pytest.raises(RulePackError, match="value_count of correlation"):
        load_plan(counted)
    twice = json.loads(json.dumps(good))
    twice["correlations"].append(twice["correlations"][0])
    with pytest.raises(RulePackError, match="share the id"):
        load_plan(twice)


def test_a_chain_is_per_user_only_if_every_correlation_of_it_is() -> None:
    # GIVEN an inner grouped by user and IP (per user alone) and an outer grouped by IP only
    plan = chain_plan(BASES, burst(group_by="[data.user_id, data.ip]"), after(group_by="[data.ip]"))
    # THEN both are shared: the chain is not split between a checkpoint and the shared item
    assert [c.per_user for c in plan.correlations] == [False, False]
    rules = RuleSet.of(plan)
    assert rules.shared is not None and rules.shared_ids == {BURST_ID, AFTER_ID}
    assert rules.per_user.correlations == ()
    # AND grouped by user throughout, both are the user's
    plan = chain_plan(BASES, burst(group_by="[data.ip, data.user_id]"), after())
    assert [c.per_user for c in plan.correlations] == [True, True]
    assert RuleSet.of(plan).shared is None


def test_a_part_keeps_the_inner_of_an_outer_and_merge_drops_an_outer_with_its_inner() -> None:
    plan = chain_plan(BASES, burst(), after())
    part = plan.part([plan.correlation(AFTER_ID)], findings_of=())
    assert [c.id for c in part.correlations] == [BURST_ID, AFTER_ID]
    # disabling the inner (or a rule it counts) drops the outer
    assert merge([plan], disabled={BURST_ID}).correlations == ()
    assert merge([plan], disabled={FAIL_ID}).correlations == ()
    # disabling the outer drops the inner that only fed it (generate: false), and their rules
    alone = merge([plan], disabled={AFTER_ID})
    assert alone.correlations == () and alone.rules == ()
    # an inner with findings of its own stays
    loud = chain_plan(BASES, burst(), after(extra=", generate: true"))
    assert [c.id for c in merge([loud], disabled={AFTER_ID}).correlations] == [BURST_ID]


# -- the step ------------------------------------------------------------------------------------


def test_a_success_just_over_a_timespan_after_the_bursts_finding_is_seen() -> None:
    # GIVEN failures every minute from 0 to 12 (3 within 10 minutes first holds at minute 2, so
    # the burst's one finding has its window [2, 12]), and a success at 12:30
    plan = chain_plan(BASES, burst(), after(extra=", generate: true"))
    fails = [ev("f", T0 + m * MINUTE) for m in range(13)]
    success = ev("s", T0 + 12 * MINUTE + 30_000)
    result = step(plan, CorrelationState(), [*fails, success])
    (found_burst,) = of(result.findings, BURST_ID)
    assert found_burst.last_ms == T0 + 2 * MINUTE
    # THEN the outer fires: the burst still held at minute 3..12, each a point of its own (with
    # the burst's finding alone, 2, outside [2:30, 12:30], it would not)
    (found,) = of(result.findings, AFTER_ID)
    assert found.kind == "temporal_ordered" and found.last_ms == success.date_ms
    assert found.log_ids[-1] == success.log_id
    assert set(found.log_ids[:-1]) <= {e.log_id for e in fails[2:]}
    assert found.group == {"data.user_id": "auth0|u1"}


def test_the_outer_needs_its_order_and_one_user() -> None:
    plan = chain_plan(BASES, burst(), after())
    first = [ev("s", T0), *(ev("f", T0 + m * MINUTE) for m in range(1, 4))]
    assert step(plan, CorrelationState(), first).findings == []
    other = [*(ev("f", T0 + m * MINUTE) for m in range(3)), ev("s", T0 + 4 * MINUTE, "auth0|u2")]
    assert step(plan, CorrelationState(), other).findings == []
    # generate: false: neither the burst nor a login is a finding of its own
    assert (
        step(plan, CorrelationState(), [ev("f", T0 + m * MINUTE) for m in range(5)]).findings == []
    )


def test_a_chain_finds_once_through_replays_and_any_split_into_runs() -> None:
    plan = chain_plan(BASES, burst(), after())
    events = [
        *(ev("f", T0 + m * MINUTE) for m in range(5)),
        ev("s", T0 + 6 * MINUTE),
        ev("s", T0 + 7 * MINUTE),  # inside the finding's window: the same finding
        *(ev("f", T0 + m * MINUTE) for m in range(30, 33)),
        ev("s", T0 + 34 * MINUTE),  # a second burst and login: a second finding
    ]
    whole = step(plan, CorrelationState(), events)
    assert [f.last_ms for f in whole.findings] == [T0 + 6 * MINUTE, T0 + 34 * MINUTE]
    for cut in range(1, len(events)):
        state, found = CorrelationState(), []
        for batch in (events[:cut], events[cut:]):
            # a crash before the commit: the batch again from the same state gives the same ids
            again = step(plan, state, batch)
            result = step(plan, state, batch)
            assert [f.finding_id for f in again.findings] == [f.finding_id for f in result.findings]
            found += result.findings
            state = CorrelationState.from_state(json.loads(json.dumps(result.state.to_state())))
            # a redelivery after the commit: nothing new
            assert step(plan, state, batch).findings == []
        assert [f.finding_id for f in found] == [f.finding_id for f in whole.findings], cut


def test_an_event_count_of_a_correlation_counts_its_points() -> None:
    # "the burst held at 3 moments within 10 minutes"
    plan = chain_plan(
        BASES,
        burst(),
        after(rules="[burst]", kind="event_count", extra=", condition: {gte: 3}"),
    )
    four = [ev("f", T0 + m * MINUTE) for m in range(4)]  # points at 2 and 3
    assert of(step(plan, CorrelationState(), four).findings, AFTER_ID) == []
    five = [*four, ev("f", T0 + 4 * MINUTE)]
    (found,) = of(step(plan, CorrelationState(), five).findings, AFTER_ID)
    assert (found.metric, found.last_ms) == (3, T0 + 4 * MINUTE)


# -- the default pack: success_after_burst ------------------------------------------------------

USER = "auth0|watched"
DEFAULTS = DetectionSettings()


def pack_findings(events: Sequence[LogEvent], settings: DetectionSettings = DEFAULTS) -> list[str]:
    plan = default_plan(settings)
    found = detect(RuleSet.of(plan), USER, events, DetectionState())
    return sorted(f.rule for f in found.findings)


def test_the_default_pack_finds_a_success_after_a_burst_beside_the_burst() -> None:
    fails = [ev("fp", T0 + m * MINUTE, USER) for m in range(10)]
    success = ev("s", T0 + 40 * MINUTE, USER)
    assert pack_findings([*fails, success]) == ["failed_login_burst", "success_after_burst"]
    # the login first, or an hour after the burst last held, is not it
    assert pack_findings([ev("s", T0 - MINUTE, USER), *fails]) == ["failed_login_burst"]
    late = ev("s", T0 + 9 * MINUTE + 61 * MINUTE, USER)
    assert pack_findings([*fails, late]) == ["failed_login_burst"]
    # nine failures then a login: neither
    assert pack_findings([*fails[:9], success]) == []


def test_the_burst_tuning_reaches_the_chain_and_it_runs_without_failed_login_burst() -> None:
    fails = [ev("fp", T0 + m * MINUTE, USER) for m in range(3)]
    success = ev("s", T0 + 20 * MINUTE, USER)
    tuned = DetectionSettings(failed_login_threshold=3, failed_login_window_ms=30 * MINUTE)
    assert pack_findings([*fails, success], tuned) == ["failed_login_burst", "success_after_burst"]
    # the window: 30 minutes for both, so a login 31 minutes after the last point is not it
    assert pack_findings([*fails, ev("s", T0 + 33 * MINUTE, USER)], tuned) == ["failed_login_burst"]
    alone = DetectionSettings(rules=frozenset({"success_after_burst"}), failed_login_threshold=3)
    assert pack_findings([*fails, success], alone) == ["success_after_burst"]


# -- the CLI: rules list, rules hunt -------------------------------------------------------------


def test_rules_list_shows_a_chain_and_hunt_says_it_cannot_render_one() -> None:
    compiled = compile_paths([ROOT / "rules" / "default"])
    plan = load_plan(compiled.plan)
    rows = {row.id: row for row in rule_rows([InstalledPack("default", None, plan)], frozenset())}
    outer = plan.correlation("8d5e2f47-0b6c-4a1e-9c3d-7a2b1e4f6c58")
    (inner,) = outer.inner_ids
    assert rows[outer.id].title == outer.title
    assert f"a chain of {inner}" in rows[outer.id].events_from
    assert rows[inner].state == f"enabled (feeds {outer.id})"
    with pytest.raises(RulePackError, match="is a chain"):
        hunt(compiled.plan, outer.id)
    assert "SELECT" in hunt(compiled.plan, inner).athena  # its steps still hunt
    # through the command, by the file's name: the outer, said plainly, not a traceback
    done = run_cli(
        "rules", "hunt", "success_after_burst", "--from", str(ROOT / "rules/default"), env={}
    )
    assert done.returncode != 0 and "is a chain" in done.stdout + done.stderr, done
    assert "Traceback" not in done.stderr


# -- a chain in the shared item ------------------------------------------------------------------


def test_a_chain_grouped_by_ip_runs_in_the_shared_item_once_through_a_lost_commit() -> None:
    from log_forwarder.detections import Detections
    from log_forwarder.planner import OutputPolicy
    from tests.fakes import FakeAuth0, InMemoryPushedLedger, RecordingSink
    from tests.property.test_cursor_properties import BASE_MS, make_forwarder
    from tests.unit.test_realtime_queue import event
    from tests.unit.test_shared_filtered_events import LoseCommit

    # GIVEN a chain grouped by IP (so its state is the shared item's), and two watched users
    # failing from one IP (3 failures in all: the burst holds at the third), then one logging in
    plan = chain_plan(BASES, burst(group_by="[data.ip]"), after(group_by="[data.ip]"))
    assert RuleSet.of(plan).shared_ids == {BURST_ID, AFTER_ID}
    store, sink, fake = LoseCommit(), RecordingSink("s3"), FakeAuth0(now_ms=BASE_MS)
    output = OutputPolicy(detections=Detections(DEFAULTS, plans=lambda _deadline: plan))
    forwarder = make_forwarder(fake, [sink], store, InMemoryPushedLedger(), output=output)
    first, second = "auth0|ip-a", "auth0|ip-b"
    forwarder.run([first, second], remaining_ms=lambda: 10**9)
    for n, (user, kind) in enumerate([(first, "f"), (first, "f"), (second, "f"), (second, "s")]):
        fake.add({**event(user, n), "type": kind, "ip": "203.0.113.9"})
    fake.now_ms = BASE_MS + 60_000
    # WHEN the run loses a user's commit, and the next run reads again
    store.armed = True
    lost = forwarder.run([first, second], remaining_ms=lambda: 10**9)
    assert any(u.error is not None for u in lost.users)
    fake.now_ms = BASE_MS + 900_000  # the lease long over
    forwarder.run([first, second], remaining_ms=lambda: 10**9)
    # THEN the outer's finding was written under one id, naming the IP
    findings = [
        json.loads(line.line)["_forwarder"]
        for line in sink.lines
        if '"record_type":"finding"' in line.line.replace(" ", "")
    ]
    outer = [f for f in findings if f["rule_id"] == AFTER_ID]
    assert len({f["finding_id"] for f in outer}) == 1, outer
    assert outer[0]["details"]["group"] == {"data.ip": "203.0.113.9"}
    assert {f["rule_id"] for f in findings} == {AFTER_ID}  # generate: false
