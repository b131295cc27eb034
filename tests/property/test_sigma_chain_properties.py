"""Hypothesis: a chain's findings (a correlation of a correlation) under any split into runs,
against two references on the same random stream:

- a brute force over the event list: the inner condition judged at every millisecond of its
  events over the window ending there (each one it holds at is a point), the outer the same over
  the points and its rule's events, then one finding per window, the first qualifying end of a
  group triggering, the next one after its window the next (docs/sigma.md, "Correlations"):
  the findings must be exactly these;
- pySigma's SQLite backend, which renders chains: every trigger is an end it reports, and every
  end it reports lies in a finding's window.
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sigma.backends.sqlite import sqliteBackend
from sigma.collection import SigmaCollection

from log_forwarder.cli.sigma_compiler import compile_texts
from log_forwarder.events import LogEvent
from log_forwarder.sigma_plan import load_plan
from log_forwarder.sigma_step import CorrelationState, step

SCALE = int(os.environ.get("PROPERTY_SCALE", "1"))
T0 = 1_780_000_000_000
OUTER_ID = "00000000-0000-4000-8000-0000000000c3"
CHAIN = """
title: fail
id: 00000000-0000-4000-8000-0000000000c1
name: fail
logsource: {{product: auth0}}
detection: {{sel: {{data.type: f}}, condition: sel}}
---
title: ok
id: 00000000-0000-4000-8000-0000000000c2
name: ok
logsource: {{product: auth0}}
detection: {{sel: {{data.type: s}}, condition: sel}}
---
title: burst
name: burst
correlation:
  type: event_count
  rules: [fail]
  group-by: [data.user_id]
  timespan: {inner_minutes}m
  condition: {{gte: {count}}}
---
title: outer
id: {outer_id}
name: outer
correlation:
  type: {kind}
  rules: {rules}
  group-by: [data.user_id]
  timespan: {outer_minutes}m
  condition: {condition}
"""


def chain_text(kind: str, inner_minutes: int, count: int, outer_minutes: int, points: int) -> str:
    rules, condition = "[burst, ok]", {"gte": 2}
    if kind == "event_count":  # "the burst held at `points` moments within the window"
        rules, condition = "[burst]", {"gte": points}
    return CHAIN.format(
        kind=kind,
        inner_minutes=inner_minutes,
        count=count,
        outer_minutes=outer_minutes,
        rules=rules,
        condition=json.dumps(condition),
        outer_id=OUTER_ID,
    )


def brute_force(
    events: Sequence[LogEvent],
    kind: str,
    inner_span: int,
    count: int,
    outer_span: int,
    points_needed: int,
) -> set[tuple[str, int]]:
    """(user, trigger ms) of every finding of the outer, from the definition."""
    triggers = set()
    for user in {e.raw["user_id"] for e in events}:
        fails = [e for e in events if e.raw["user_id"] == user and e.raw["type"] == "f"]
        oks = [e for e in events if e.raw["user_id"] == user and e.raw["type"] == "s"]
        # the inner's points: each millisecond of a failure where `count` failures are within
        points = [
            (t, max(e.log_id for e in fails if e.date_ms == t))
            for t in sorted({e.date_ms for e in fails})
            if len([e for e in fails if t - inner_span <= e.date_ms <= t]) >= count
        ]
        entries = [(t, log_id, 0) for t, log_id in points]
        if kind != "event_count":
            entries += [(e.date_ms, e.log_id, 1) for e in oks]
        fired = None
        for end in sorted({t for t, _, _ in entries}):
            window = [x for x in entries if end - outer_span <= x[0] <= end]
            if kind == "event_count":
                holds = len(window) >= points_needed
            elif kind == "temporal":
                holds = {s for _, _, s in window} == {0, 1}
            else:  # temporal_ordered: a point, then a login strictly later
                firsts = [t for t, _, s in window if s == 0]
                holds = bool(firsts) and any(t > min(firsts) for t, _, s in window if s == 1)
            if holds and (fired is None or end - fired > outer_span):
                triggers.add((user, end))
                fired = end
    return triggers


def sqlite_ends(text: str, events: Sequence[LogEvent]) -> set[tuple[str, int]]:
    """(user, end ms) of every window of the outer the backend reports."""
    query = sqliteBackend(timestamp_field="timestamp").convert(SigmaCollection.from_yaml(text))[-1]
    connection = sqlite3.connect(":memory:")
    connection.execute(
        "CREATE TABLE logs (timestamp TEXT, `data.type` TEXT COLLATE NOCASE, "
        "`data.user_id` TEXT COLLATE NOCASE)"
    )
    connection.executemany(
        "INSERT INTO logs VALUES (?, ?, ?)",
        [
            (
                datetime.fromtimestamp(e.date_ms / 1000, UTC).isoformat(timespec="milliseconds"),
                e.raw["type"],
                e.raw["user_id"],
            )
            for e in events
        ],
    )
    cursor = connection.execute(query)
    names = [d[0] for d in cursor.description]
    ends = set()
    for row in cursor:
        alert = dict(zip(names, row, strict=True))
        user = json.loads(alert["group_keys"])["data.user_id"]
        ends.add((user, round(alert["occurrence_time"] * 1000)))
    return ends


chain_events = st.lists(
    st.tuples(
        st.integers(0, 40),  # minute
        st.sampled_from([0, 0, 30]),  # second: several events of one millisecond now and then
        st.sampled_from(["auth0|a", "auth0|b"]),
        st.sampled_from(["f", "f", "f", "s"]),
    ),
    min_size=4,
    max_size=45,
)


@settings(max_examples=80 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=chain_events,
    kind=st.sampled_from(["temporal_ordered", "temporal", "event_count"]),
    inner_minutes=st.sampled_from([5, 10, 30]),
    count=st.integers(1, 4),
    outer_minutes=st.sampled_from([5, 10, 30]),
    points=st.integers(1, 3),
    cuts=st.lists(st.integers(0, 45), max_size=6),
)
def test_a_chains_findings_are_the_brute_force_ones_whatever_the_runs(
    rows: list[tuple[int, int, str, str]],
    kind: str,
    inner_minutes: int,
    count: int,
    outer_minutes: int,
    points: int,
    cuts: list[int],
) -> None:
    text = chain_text(kind, inner_minutes, count, outer_minutes, points)
    compiled = compile_texts([("chain.yml", text)])
    assert compiled.refused == []
    plan = load_plan(json.loads(json.dumps(compiled.plan)))
    events = sorted(
        (
            LogEvent(
                T0 + (minute * 60 + second) * 1000,
                f"id-{n:03d}",
                {"type": code, "user_id": user, "log_id": f"id-{n:03d}"},
            )
            for n, (minute, second, user, code) in enumerate(rows)
        ),
        key=lambda e: e.key,
    )
    # The runs the forwarder would make: in order, cut between milliseconds, state stored as
    # JSON between them; each run also replayed once from the same state (a crash before its
    # commit) and redelivered once after it (nothing new).
    state, findings = CorrelationState(), []
    splits = {c for c in cuts if 0 < c < len(events) and events[c - 1].date_ms != events[c].date_ms}
    bounds = sorted({0, len(events), *splits})
    for start, end in itertools.pairwise(bounds):
        crashed = step(plan, state, events[start:end])
        result = step(plan, state, events[start:end])
        assert crashed.findings == result.findings
        findings += result.findings
        state = CorrelationState.from_state(json.loads(json.dumps(result.state.to_state())))
        again = step(plan, state, events[start:end]).findings
        assert [f for f in again if f.kind != "rule"] == []  # a rule's repeat has its id
    # generate: false: the outer's findings only (and `ok`'s own where the outer omits it)
    findings = [f for f in findings if f.kind != "rule"]
    assert {f.rule_id for f in findings} <= {OUTER_ID}
    triggers = [(f.group["data.user_id"], f.last_ms) for f in findings]
    assert len(set(triggers)) == len(triggers)
    event(
        f"{kind}: {min(len(triggers), 2)}+ findings"
    )  # not all empty (--hypothesis-show-statistics)
    inner_span, outer_span = inner_minutes * 60_000, outer_minutes * 60_000
    assert set(triggers) == brute_force(events, kind, inner_span, count, outer_span, points)
    ends = sqlite_ends(text, events)
    assert set(triggers) <= ends
    for user, end in ends:
        assert any(u == user and t <= end <= t + outer_span for u, t in triggers), (user, end)


def test_the_references_agree_on_a_hand_made_case() -> None:
    """Not empty: 3 failures within 5 minutes, then a login, temporal_ordered over 10 minutes."""
    text = chain_text("temporal_ordered", 5, 3, 10, 1)
    events = [
        LogEvent(T0 + m * 60_000, f"id-{m:02d}", {"type": code, "user_id": "auth0|a"})
        for m, code in ((0, "f"), (1, "f"), (2, "f"), (3, "f"), (9, "s"))
    ]
    assert brute_force(events, "temporal_ordered", 300_000, 3, 600_000, 1) == {
        ("auth0|a", T0 + 9 * 60_000)
    }
    assert sqlite_ends(text, events) == {("auth0|a", T0 + 9 * 60_000)}
    plan = load_plan(compile_texts([("c.yml", text)]).plan)
    assert [f.last_ms for f in step(plan, CorrelationState(), events).findings] == [T0 + 9 * 60_000]
