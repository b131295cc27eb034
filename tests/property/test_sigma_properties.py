"""Hypothesis: the Sigma evaluator against references on random values, rules and event streams.

- String matching (equality, wildcards and escapes, contains/startswith/endswith, cased, all),
  regexes with their flags, and CIDR, against pySigma's SQLite backend (tests/sigma_oracle.py),
  on alphabets where SQLite's ASCII-only case folding and Python's agree.
- Unicode case folding, and numeric comparisons (which SQLite compares as text in a TEXT
  column), against direct Python references.
- Correlations against the same backend's correlation SQL: every finding's trigger is an event
  at which SQLite reports the condition, every event SQLite reports lies in a finding's window,
  and no two findings of a group share a window, whatever the split into runs.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import os
import sqlite3
from datetime import UTC, datetime
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sigma.backends.sqlite import sqliteBackend
from sigma.collection import SigmaCollection

from log_forwarder.cli.sigma_compiler import compile_texts
from log_forwarder.events import LogEvent
from log_forwarder.sigma_plan import Plan, load_plan
from log_forwarder.sigma_step import CorrelationState, step
from tests.sigma_oracle import SqliteOracle, parse_rule

RULE_ID = "9b0b7d0e-0000-4000-8000-0000000000f1"
FIELD = "data.details.value"
# ASCII letters fold the same in SQLite and Python; the others have no case at all.
ALPHABET = "aAbBzZ09 *?\\%_[]'.-中€\n"
# PROPERTY_SCALE=10 multiplies the examples for a longer hunt than `make test` affords.
SCALE = int(os.environ.get("PROPERTY_SCALE", "1"))
SETTINGS = settings(
    max_examples=120 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def rule_text(field_key: str, value: Any) -> str:
    return yaml.safe_dump(
        {
            "title": "property rule",
            "id": RULE_ID,
            "logsource": {"product": "auth0"},
            "detection": {"sel": {field_key: value}, "condition": "sel"},
        },
        allow_unicode=True,
    )


def plan_of(text: str) -> Plan:
    compiled = compile_texts([("p.yml", text)])
    assert compiled.refused == [], compiled.refused
    return load_plan(json.loads(json.dumps(compiled.plan)))


def events_with(values: list[Any]) -> list[dict[str, Any]]:
    return [{"details": {"value": v}} for v in values]


def evaluator_matches(plan: Plan, events: list[dict[str, Any]]) -> set[int]:
    return {i for i, event in enumerate(events) if plan.matching(event)}


def agree(field_key: str, value: Any, values: list[Any]) -> None:
    text = rule_text(field_key, value)
    events = events_with(values)
    mine = evaluator_matches(plan_of(text), events)
    theirs = SqliteOracle().matches(parse_rule(text), events)
    assert mine == theirs, {i: values[i] for i in mine ^ theirs}


texts = st.text(alphabet=ALPHABET, max_size=6)
modifiers = st.sampled_from(
    ["", "|contains", "|startswith", "|endswith", "|cased", "|contains|cased", "|endswith|cased"]
)


@SETTINGS
@given(
    modifier=modifiers,
    pattern=texts,
    values=st.lists(texts | st.sampled_from([True, 0, 12, None]), min_size=1, max_size=25),
)
def test_string_matching_agrees_with_sqlite(modifier: str, pattern: str, values: list[Any]) -> None:
    # Values built from the pattern make matches likely: itself, in other case, with affixes.
    values = [*values, pattern, pattern.swapcase(), "x" + pattern + "y", pattern[1:], pattern * 2]
    agree(FIELD + modifier, pattern, values)


@SETTINGS
@given(
    patterns=st.lists(texts.filter(bool), min_size=2, max_size=3, unique=True),
    values=st.lists(texts, min_size=1, max_size=20),
)
def test_contains_all_agrees_with_sqlite(patterns: list[str], values: list[str]) -> None:
    values = [*values, "".join(patterns), "-".join(reversed(patterns)), patterns[0]]
    agree(FIELD + "|contains|all", patterns, values)


regex_atoms = st.sampled_from(["a", "B", "z", ".", "[ab]", "[^a]", "\\n", " ", "-"])
regex_quantifiers = st.sampled_from(["", "*", "+", "?", "{1,2}"])


@SETTINGS
@given(
    pieces=st.lists(st.tuples(regex_atoms, regex_quantifiers), min_size=1, max_size=4),
    anchors=st.sampled_from([("", ""), ("^", ""), ("", "$"), ("^", "$")]),
    flags=st.sampled_from(["", "|i", "|m", "|s", "|i|m|s"]),
    values=st.lists(st.text(alphabet="abAB z\n-", max_size=8), min_size=1, max_size=20),
)
def test_regex_and_its_flags_agree_with_sqlite(
    pieces: list[tuple[str, str]], anchors: tuple[str, str], flags: str, values: list[str]
) -> None:
    pattern = anchors[0] + "".join(a + q for a, q in pieces) + anchors[1]
    agree(FIELD + "|re" + flags, pattern, values)


@SETTINGS
@given(
    network=st.tuples(st.integers(0, 2**32 - 1), st.sampled_from([8, 16, 24, 32])),
    addresses=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20),
)
def test_cidr_agrees_with_sqlite_on_ipv4_addresses(
    network: tuple[int, int], addresses: list[int]
) -> None:
    net = ipaddress.ip_network((network[0], network[1]), strict=False)
    inside = [int(net.network_address), int(net.broadcast_address)]
    values = [str(ipaddress.ip_address(a)) for a in [*addresses, *inside]]
    agree(FIELD + "|cidr", str(net), values)


# -- direct references ------------------------------------------------------------------------


def glob_reference(pattern: list[Any], text: str) -> bool:
    """A recursive matcher over characters, case folded one character at a time."""
    if not pattern:
        return not text
    head, rest = pattern[0], pattern[1:]
    if head == "*":
        return any(glob_reference(rest, text[i:]) for i in range(len(text) + 1))
    if not text:
        return False
    if head == "?":
        return glob_reference(rest, text[1:])
    return head.lower() == text[0].lower() and glob_reference(rest, text[1:])


@SETTINGS
@given(
    parts=st.lists(
        st.sampled_from(["*", "?"]) | st.text(alphabet="éÉßçÇΣσaA", min_size=1, max_size=2),
        max_size=5,
    ),
    values=st.lists(st.text(alphabet="éÉßçÇΣσaAx", max_size=6), min_size=1, max_size=20),
)
def test_case_folding_is_unicode_not_ascii_only(parts: list[str], values: list[str]) -> None:
    pattern = [p if p in ("*", "?") else c for p in parts for c in ([p] if p in "*?" else p)]
    sigma_value = "".join(pattern)
    plan = plan_of(rule_text(FIELD, sigma_value))
    for value in values:
        assert bool(plan.matching({"details": {"value": value}})) == glob_reference(pattern, value)


@SETTINGS
@given(
    operator=st.sampled_from(["lt", "lte", "gt", "gte"]),
    bound=st.integers(-50, 50) | st.floats(-50, 50, allow_nan=False),
    values=st.lists(
        st.integers(-60, 60)
        | st.floats(-60, 60, allow_nan=False)
        | st.integers(-60, 60).map(str)
        | st.sampled_from([True, False, None, "", "1e1", " 7 ", "x", "0x10", {"a": 1}, [3, 70]]),
        min_size=1,
        max_size=20,
    ),
)
def test_numeric_comparisons_read_json_numbers_and_numeric_text(
    operator: str, bound: float, values: list[Any]
) -> None:
    plan = plan_of(rule_text(f"{FIELD}|{operator}", bound))
    compare = {
        "lt": lambda a, b: a < b,
        "lte": lambda a, b: a <= b,
        "gt": lambda a, b: a > b,
        "gte": lambda a, b: a >= b,
    }[operator]

    def numbers(value: Any) -> list[float]:
        if isinstance(value, list):
            return [n for v in value for n in numbers(v)]
        if isinstance(value, bool) or value is None or isinstance(value, dict):
            return []
        if isinstance(value, int | float):
            return [float(value)]
        try:
            json_number = json.loads(value.strip())
        except (ValueError, AttributeError):
            return []
        is_number = isinstance(json_number, int | float) and not isinstance(json_number, bool)
        return [float(json_number)] if is_number else []

    for value in values:
        expected = any(compare(n, bound) for n in numbers(value))
        assert bool(plan.matching({"details": {"value": value}})) == expected, value


# -- correlations against the SQLite backend's correlation SQL ---------------------------------

CORRELATION = """
title: base
id: 00000000-0000-4000-8000-0000000000a1
name: base
logsource: {{product: auth0}}
detection:
  selection:
    data.type: f
  condition: selection
---
title: correlated
correlation:
  type: {kind}
  rules: [base]
  group-by: [data.ip]
  timespan: {minutes}m
  condition: {condition}
"""
T0 = 1_780_000_000_000


def sqlite_alerts(text: str, events: list[LogEvent]) -> set[tuple[str, int]]:
    """(group, end ms) of every window the backend reports."""
    query = sqliteBackend(timestamp_field="timestamp").convert(SigmaCollection.from_yaml(text))[-1]
    connection = sqlite3.connect(":memory:")
    columns = ["data.type", "data.ip", "data.user_agent"]
    connection.execute(
        "CREATE TABLE logs (timestamp TEXT, "
        + ", ".join(f"`{c}` TEXT COLLATE NOCASE" for c in columns)
        + ")"
    )
    rows = [
        (
            datetime.fromtimestamp(e.date_ms / 1000, UTC).isoformat(timespec="milliseconds"),
            *(e.raw.get(c.removeprefix("data.")) for c in columns),
        )
        for e in events
    ]
    connection.executemany("INSERT INTO logs VALUES (?, ?, ?, ?)", rows)
    cursor = connection.execute(query)
    names = [d[0] for d in cursor.description]
    out = set()
    for row in cursor:
        alert = dict(zip(names, row, strict=True))
        group = json.loads(alert["group_keys"])["data.ip"]
        out.add((group, round(alert["occurrence_time"] * 1000)))
    return out


stream_events = st.lists(
    st.tuples(
        st.integers(0, 240),  # minute
        st.integers(0, 59),  # second
        st.sampled_from(["203.0.113.1", "203.0.113.2", "198.51.100.7"]),
        st.sampled_from(["f", "f", "s"]),
        st.sampled_from(["Chrome", "chrome", "curl", None]),
    ),
    max_size=60,
)


@settings(max_examples=60 * SCALE, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=stream_events,
    kind=st.sampled_from(["event_count", "value_count"]),
    minutes=st.sampled_from([5, 30, 60]),
    operator=st.sampled_from(["gt", "gte", "lte"]),
    count=st.integers(1, 4),
    cuts=st.lists(st.integers(0, 60), max_size=5),
)
def test_correlation_findings_cover_exactly_the_windows_sqlite_reports(
    rows: list[tuple[int, int, str, str, str | None]],
    kind: str,
    minutes: int,
    operator: str,
    count: int,
    cuts: list[int],
) -> None:
    condition = {operator: count}
    if kind == "value_count":
        condition["field"] = "data.user_agent"  # type: ignore[assignment]
    text = CORRELATION.format(kind=kind, minutes=minutes, condition=json.dumps(condition))
    plan = plan_of(text)
    events = sorted(
        (
            LogEvent(
                T0 + (minute * 60 + second) * 1000,
                f"id-{n:03d}",
                {"type": kind_, "ip": ip, "user_agent": agent, "log_id": f"id-{n:03d}"},
            )
            for n, (minute, second, ip, kind_, agent) in enumerate(rows)
        ),
        key=lambda e: e.key,
    )
    # The runs the forwarder would make: the events in order, cut anywhere, state stored between.
    state = CorrelationState()
    findings = []
    # A cut falls between milliseconds (one millisecond split over two runs is judged as it
    # comes, docs/sigma.md).
    splits = {c for c in cuts if 0 < c < len(events) and events[c - 1].date_ms != events[c].date_ms}
    bounds = sorted({0, len(events), *splits})
    for start, end in itertools.pairwise(bounds):
        result = step(plan, state, events[start:end])
        findings += result.findings
        state = CorrelationState.from_state(json.loads(json.dumps(result.state.to_state())))
    alerts = sqlite_alerts(text, events)
    span = minutes * 60_000
    triggers = [(f.group["data.ip"], f.last_ms) for f in findings]
    assert set(triggers) <= alerts
    for group, end in alerts:
        assert any(g == group and t <= end <= t + span for g, t in triggers), (group, end)
    for (g1, t1), (g2, t2) in itertools.combinations(triggers, 2):
        assert g1 != g2 or abs(t1 - t2) > span
    assert len(set(f.finding_id for f in findings)) == len(findings)


def test_the_reference_agrees_on_a_hand_made_case() -> None:
    """The comparison above is not empty: three failures in five minutes, gte 2 in 5m."""
    text = CORRELATION.format(kind="event_count", minutes=5, condition='{"gte": 2}')
    events = [
        LogEvent(T0 + s * 1000, f"id-{s}", {"type": "f", "ip": "a", "log_id": f"id-{s}"})
        for s in (0, 60, 400)
    ]
    assert sqlite_alerts(text, events) == {("a", T0 + 60_000)}
    assert [f.last_ms for f in step(plan_of(text), CorrelationState(), events).findings] == [
        T0 + 60_000
    ]
