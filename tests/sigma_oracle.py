"""The reference the Sigma evaluator is held to: pySigma's SQLite backend over flattened events.

The backend turns a rule into SQL; SQLite decides. What this module adds is only the flattening
(docs/sigma.md, "The proof"), one table per rule with a column per field the rule names:

- a field's column is the rule's own field name (`data.details.response.body.shields{}`), its
  value read from the API event with `data.` and `{}` dropped, declared `TEXT COLLATE NOCASE` as
  the backend's runtime declares missing columns (sigma/backends/sqlite/runtime.py);
- scalars as JSON spells them: strings as they are, booleans 'true'/'false' (Zircolite's
  convention, which the backend's boolean SQL expects), numbers as JSON text, null and absent as
  NULL, an object as its JSON text;
- a field that meets a list has several values. SQL has one value per cell, so the event gets
  one row per combination of elements, and its verdict quantifies over them as the evaluator's
  "any element" reading implies: a field that occurs only un-negated in the condition holds if
  some row does (OR), one that occurs only under NOT needs every row (AND). A multi-valued field
  used both ways, or twice under one AND, has no such reading: the oracle raises instead of
  guessing (no catalog rule does either).

Also here: the corpus, of the shared sample events, events generated per type from Auth0's JSON
Schemas (devtools/schema_events.py), and mutations of events that hit each atom of each rule with
matching and near-miss values.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
import re
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sigma.backends.sqlite import sqliteBackend
from sigma.collection import SigmaCollection
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
)
from sigma.policy.profiles import TrustedPolicy
from sigma.rule import SigmaRule
from sigma.types import (
    SigmaBool,
    SigmaCIDRExpression,
    SigmaExpansion,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SpecialChars,
)

from devtools.schema_events import event_codes, events_for_type
from log_forwarder.cli.sigma_compiler import prepare_documents

SHARED = Path(__file__).resolve().parents[2] / "shared" / "reference"
CATALOG = SHARED / "auth0-customer-detections" / "detections"
SAMPLES = SHARED / "auth0-sample-events.jsonl"
SCHEMAS = SHARED / "auth0-log-schemas" / "schemas" / "log-types"
_ABSENT = object()


class OracleCannotSay(Exception):
    """The flattening has no faithful SQL form for this rule and event."""


# -- rules ------------------------------------------------------------------------------------


def catalog_rules() -> list[tuple[str, SigmaRule]]:
    """Every detection rule of the catalog (correlations' base rules included), parsed as the
    compiler parses them; each on its own, so the backend converts a correlation's base rule
    too (beside its correlation it would give no query of its own)."""
    rules = []
    for path in sorted(CATALOG.glob("*.yml")):
        prepared = prepare_documents(path.read_text(encoding="utf-8"), path.name)
        for document in prepared.documents:
            if "correlation" not in document:
                collection = SigmaCollection.from_dicts([document], policy=TrustedPolicy)
                rules += [(path.name, r) for r in collection.rules if isinstance(r, SigmaRule)]
    return rules


def parse_rule(text: str) -> SigmaRule:
    prepared = prepare_documents(text, "test")
    collection = SigmaCollection.from_dicts(prepared.documents, policy=TrustedPolicy)
    rule = collection.rules[0]
    assert isinstance(rule, SigmaRule)
    return rule


@dataclass(frozen=True)
class Atom:
    field: str
    value: Any
    negated: bool


def atoms(rule: SigmaRule) -> list[Atom]:
    found: list[Atom] = []

    def walk(node: Any, negated: bool) -> None:
        if isinstance(node, ConditionNOT):
            walk(node.args[0], not negated)
        elif isinstance(node, ConditionAND | ConditionOR):
            for arg in node.args:
                walk(arg, negated)
        elif isinstance(node, ConditionFieldEqualsValueExpression):
            found.append(Atom(node.field, node.value, negated))

    for condition in rule.detection.parsed_condition:
        walk(condition.parsed, False)
    return found


# -- the oracle --------------------------------------------------------------------------------


class SqliteOracle:
    """Which events a rule matches, according to pySigma's SQLite backend."""

    def __init__(self) -> None:
        self.connection = sqlite3.connect(":memory:")
        self.connection.create_function(
            "regexp", 2, lambda p, v: v is not None and re.search(p, str(v)) is not None
        )

    def matches(self, rule: SigmaRule, events: Sequence[Mapping[str, Any]]) -> set[int]:
        query = sqliteBackend().convert_rule(rule)[0]
        fields = sorted({a.field for a in atoms(rule)})
        paths = [_path(f) for f in fields]
        polarity = _polarities(rule)
        self.connection.execute("DROP TABLE IF EXISTS logs")
        columns = ", ".join(f"`{f}` TEXT COLLATE NOCASE" for f in fields)
        self.connection.execute(f"CREATE TABLE logs (row INTEGER PRIMARY KEY, {columns})")
        rows = []
        # Per row: its event and, for the verdict, the choice of positive fields' elements.
        owners: list[tuple[int, tuple[int, ...]]] = []
        for index, event in enumerate(events):
            cells = [_cells(event, path) for path in paths]
            positive = []
            for name, values in zip(fields, cells, strict=True):
                if len(values) > 1:
                    if polarity.get(name) not in ("+", "-"):
                        raise OracleCannotSay(
                            f"{rule.title}: {name} has several values, used {polarity.get(name)!r}"
                        )
                    positive.append(polarity[name] == "+")
                else:
                    positive.append(False)
            for combination in itertools.product(*(range(len(v)) for v in cells)):
                owners.append(
                    (index, tuple(c for c, p in zip(combination, positive, strict=True) if p))
                )
                rows.append((len(rows), *(v[c] for v, c in zip(cells, combination, strict=True))))
        placeholders = ", ?" * len(fields)
        self.connection.executemany(f"INSERT INTO logs VALUES (?{placeholders})", rows)  # noqa: S608
        hit = {
            row for (row,) in self.connection.execute(query.replace("SELECT *", "SELECT row", 1))
        }
        groups: dict[tuple[int, tuple[int, ...]], bool] = {}
        for row, owner in enumerate(owners):
            groups[owner] = groups.get(owner, True) and row in hit
        return {index for (index, _), every in groups.items() if every}


def _polarities(rule: SigmaRule) -> dict[str, str]:
    """'+' or '-' per field; '±' when used both ways; '&' when an AND joins two different tests
    of it. Exploding rows and quantifying once per field is exact otherwise: ∃ distributes over
    OR and ∀ over AND (De Morgan carries NOT), and a test the condition repeats is one value."""
    out: dict[str, str] = {}
    for atom in atoms(rule):
        mark = "-" if atom.negated else "+"
        out[atom.field] = mark if out.get(atom.field, mark) == mark else "±"

    def tests(node: Any) -> set[tuple[str, str]]:
        if isinstance(node, ConditionFieldEqualsValueExpression):
            return {(node.field, repr(node.value))}
        children = [tests(arg) for arg in getattr(node, "args", [])]
        if isinstance(node, ConditionAND):
            for name in out:
                holding = [c for c in children if any(f == name for f, _ in c)]
                distinct = {t for c in holding for t in c if t[0] == name}
                if len(holding) > 1 and len(distinct) > 1 and out[name] != "±":
                    out[name] = "&"
        return set().union(*children) if children else set()

    for condition in rule.detection.parsed_condition:
        tests(condition.parsed)
    return out


def _path(name: str) -> list[str]:
    """The documented mapping: `data.` and `{}` dropped."""
    text = name[len("data.") :] if name.startswith("data.") else name
    return [p.removesuffix("{}") for p in text.split(".")]


def _cells(event: Mapping[str, Any], path: list[str]) -> list[Any]:
    """The SQLite values of one field: one, or one per element of the lists on its path."""
    values = list(_walk(event, path))
    if values == [_ABSENT] or not values:
        return [None]
    return [_sql(v) for v in values if v is not _ABSENT] or [None]


def _walk(node: Any, path: list[str]) -> Iterator[Any]:
    if isinstance(node, list):
        for item in node:
            yield from _walk(item, path)
        return
    if not path:
        yield node
        return
    if isinstance(node, dict) and path[0] in node:
        yield from _walk(node[path[0]], path[1:])
    else:
        yield _ABSENT


def _sql(value: Any) -> Any:
    """A cell: an object is no value of its field (a flattener gives its keys columns)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict):
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return value
    return json.dumps(value, separators=(",", ":"))


# -- the corpus -------------------------------------------------------------------------------


def sample_events() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAMPLES.read_text(encoding="utf-8").splitlines()]


def schema_events() -> list[dict[str, Any]]:
    """Three events per Auth0 log type, valid against its schema (devtools/schema_events.py)."""
    rng = random.Random(23)
    return [e for code in event_codes() for e in events_for_type(code, rng, count=3)]


def mutations(
    rule: SigmaRule, bases: Sequence[Mapping[str, Any]], *, limit_bases: int = 3
) -> list[dict[str, Any]]:
    """Events that hit each atom of `rule` with matching and near-miss values, from `bases`
    (events of the rule's types), each atom alone and with every other atom satisfied."""
    rule_atoms = atoms(rule)
    out: list[dict[str, Any]] = []
    for base in bases[:limit_bases]:
        satisfied = copy.deepcopy(dict(base))
        for atom in rule_atoms:
            matching = _matching_values(atom.value)
            if matching and not atom.negated:
                _set(satisfied, atom.field, matching[0])
        out.append(satisfied)
        for atom in rule_atoms:
            for start in (base, satisfied):
                for value in _variants(atom.value):
                    event = copy.deepcopy(dict(start))
                    _set(event, atom.field, value)
                    out.append(event)
    return out


def _set(event: dict[str, Any], name: str, value: Any) -> None:
    path = _path(name)
    node = event
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    if value is _ABSENT:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value


def _matching_values(value: Any) -> list[Any]:
    if isinstance(value, SigmaExpansion):
        return [v for item in value.values for v in _matching_values(item)]
    if isinstance(value, SigmaString):
        return [_spell(value, ""), _spell(value, "Zz")]
    if isinstance(value, SigmaBool):
        return [value.boolean, str(value.boolean).lower()]
    if isinstance(value, SigmaNumber):
        return [value.number, str(value.number)]
    if isinstance(value, SigmaNull):
        return [None]
    if isinstance(value, SigmaCIDRExpression):
        return [str(next(iter(value.network.hosts()), value.network.network_address))]
    if isinstance(value, SigmaRegularExpression):
        return _REGEX_SAMPLES.get(value.regexp.original, [])[:1]
    return []


def _variants(value: Any) -> list[Any]:
    """Matching values, near misses, and both inside lists; absent and null too."""
    matching = _matching_values(value)
    misses: list[Any] = [_ABSENT, None, "", "other"]
    for m in matching:
        if isinstance(m, str):
            misses += [m + "x", "x" + m, m[:-1], m.swapcase(), m.upper(), " " + m]
    if isinstance(value, SigmaBool):
        misses += [not value.boolean, str(not value.boolean), int(value.boolean), "TRUE", "0"]
    if isinstance(value, SigmaNumber):
        misses += [value.number + 1, f"{value.number}.0", -value.number]
    if isinstance(value, SigmaCIDRExpression):
        misses += [str(value.network.broadcast_address + 1), "192.0.2.999", "::1"]
    if isinstance(value, SigmaRegularExpression):
        misses += _REGEX_SAMPLES.get(value.regexp.original, [])
    plain = [*matching, *misses]
    listed = [[m] for m in matching] + [[m, "other"] for m in matching] + [["other"], []]
    listed += [[{"nested": m}] for m in matching[:1]]
    return plain + listed


def _spell(value: SigmaString, filler: str) -> str:
    """A text that a Sigma string with wildcards matches: `*` -> filler, `?` -> 'q'."""
    out = ""
    for part in value.s:
        if part is SpecialChars.WILDCARD_MULTI:
            out += filler
        elif part is SpecialChars.WILDCARD_SINGLE:
            out += "q"
        elif isinstance(part, str):
            out += part
    return out


# Regexes cannot be spelled back from the pattern: texts for the catalog's two.
_REGEX_SAMPLES: dict[str, list[str]] = {
    r"\{\{([^}]+?)(?:\s*\|\s*(?!escape|escape_once|h|html_escape)[^}]+)??\s*\}\}|\{\{([^}|]+)\}\}": [
        "<p>{{ user.name }}</p>",
        "<p>{{ user.name | escape }}</p>",
        "<p>{{ user.name | upcase }}</p>",
        "<p>no variables</p>",
        "{{}}",
    ],
    r".+@(.+)": ["person@example.com", "example.com", "@example.com", "person@"],
}


def corpus() -> list[dict[str, Any]]:
    """Sample events, schema events, and every rule's mutations over events of its types."""
    base = sample_events() + schema_events()
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in base:
        by_type.setdefault(str(event.get("type")), []).append(event)
    events = list(base)
    for _, rule in catalog_rules():
        types = {
            str(a.value)
            for a in atoms(rule)
            if a.field == "data.type" and isinstance(a.value, SigmaString) and not a.negated
        }
        bases = [e for t in sorted(types) for e in by_type.get(t, [])[:2]] or base[:2]
        events += mutations(rule, bases)
    unique = {json.dumps(e, sort_keys=True): e for e in events}
    return list(unique.values())
