"""Compiled Sigma rules (a *plan*) and which of them an Auth0 event matches. Pure, stdlib only.

The function never parses Sigma: `log_forwarder.cli.sigma_compiler` does that with pySigma, outside
the function, and writes a plan (JSON). This module loads a plan once, turns every condition into
nested closures with their regexes compiled, and answers `Plan.matching(event)`. docs/sigma.md has
the format and every matching rule; the short version:

- **Fields.** A rule's field is a path into the event as the Management API returns it. The
  compiler has already mapped Log Streams' `data.…` onto it (`data.details.ip` -> `details.ip`).
  Any list met on the way is multi-valued: the atom holds if one element does (Splunk's `{}`
  suffix, which the Auth0 catalog writes, says the same and is dropped).
- **Values are compared as text**, the event's scalar spelled as JSON spells it (`true`, `200`),
  case-insensitively unless the rule says `cased`. A rule's number is its text; a rule's boolean
  matches `true`/`1` (`false`/`0`), as pySigma's SQLite backend reads a flattened event.
- `null` holds when the field is absent, null, an object or an empty list (a flattened event has
  no value for it); `exists` holds when the field is present, even null (the Sigma modifiers
  appendix: "not its value, be it empty or null").
- A regex sees at most `MAX_REGEX_INPUT` characters of a field's values in all: Python's `re`
  backtracks, and the catalog's LiquidJS pattern is cubic on text full of `{{`: 0.24 s on 1 KB,
  16 s on 4 KB. `Plan.regex_inputs_cut` names the rules that saw a cut value, so that the caller
  can say so in the destinations instead of passing it over in silence.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from .exceptions import RulePackError

PLAN_FORMAT: Final = "auth0-log-forwarder/sigma-plan"
PLAN_VERSION: Final = 1
MAX_REGEX_INPUT: Final = 1024
# A correlation's group keeps this many events (sigma_step.Limits): a count is exact up to it.
MAX_GROUP_EVENTS: Final = 50
# Ten years (pySigma's `10y` is 315,569,520,000 ms): a state is kept two timespans, and the
# shared item's TTL (`expires_at`) is a DynamoDB number of at most 38 digits.
MAX_TIMESPAN_MS: Final = 10 * 366 * 86_400_000
CORRELATION_KINDS: Final = ("event_count", "value_count", "temporal", "temporal_ordered")
CONDITION_OPERATORS: Final = ("gt", "gte", "lt", "lte", "eq")
LEVELS: Final = ("informational", "low", "medium", "high", "critical")
USER_PATH: Final = ("user_id",)
# Event types whose `user_id` is not an end user's own account at work: Management API calls and
# key operations (the administrator or machine client making them), signups and their
# verification (an account nobody watches yet), a machine's client-credentials token.
UNWATCHED_TYPES: Final = frozenset(
    {
        "sapi",
        "fapi",
        "mgmt_api_read",
        "gd_tenant_update",
        "kms_key_management_success",
        "kms_key_management_failure",
        "ss",
        "fs",
        "signup_pwd_leak",
        "sv",
        "fv",
        "seccft",
        "feccft",
    }
)

Matcher = Callable[[Mapping[str, Any]], bool]
Path = tuple[str, ...]
_STRING_KINDS: Final = ("eq", "pre", "suf", "sub")
_STRING_TESTS: Final[Mapping[str, Callable[[str, str], bool]]] = {
    "eq": str.__eq__,
    "pre": str.startswith,
    "suf": str.endswith,
    "sub": str.__contains__,
}
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")


class _Missing:
    """The field is not in the event."""


_MISSING: Final = _Missing()


class _Multi(list[Any]):
    """The values a path reached through one or more lists (any of them may match)."""


@dataclass(frozen=True, slots=True)
class PlanRule:
    """One Sigma detection rule, compiled."""

    id: str
    title: str
    level: str | None
    status: str | None
    tags: tuple[str, ...]
    logsource: Mapping[str, str]
    name: str | None
    source: str
    standalone: bool  # False: only a correlation uses it (Sigma's `generate: false`)
    placeholders: tuple[str, ...]  # catalog `{name}` texts nobody filled in
    matches: Matcher = field(compare=False, repr=False)
    regex_paths: tuple[Path, ...] = ()
    # The `type` values its condition provably requires (lowercase); None: not bounded.
    types: frozenset[str] | None = None

    @property
    def sees_unwatched_users(self) -> bool:
        """Whether every event it can match is one whose user is nobody's watched account: a
        Management API call (its user is the administrator or machine client making it), a
        signup (an account nobody watches yet), a machine's token (docs/detections.md)."""
        return self.types is not None and bool(self.types) and self.types <= UNWATCHED_TYPES


@dataclass(frozen=True, slots=True)
class PlanCorrelation:
    """One Sigma correlation over rules of the plan, or over correlations before it (a chain:
    the inner correlation's qualifying points are the outer's events, docs/sigma.md "Chains")."""

    id: str
    title: str
    level: str | None
    status: str | None
    tags: tuple[str, ...]
    source: str
    kind: str
    rule_ids: tuple[str, ...]  # rules, and (a chain) correlations earlier in the plan
    group_by: tuple[str, ...]  # the names the rule gives (aliases included)
    group_paths: Mapping[str, tuple[Path, ...]]  # per referenced rule, one path per group_by
    value_paths: Mapping[str, Path]  # value_count: per referenced rule, the counted field
    timespan_ms: int
    conditions: tuple[tuple[str, float], ...]  # all must hold: (operator, count)
    name: str | None = None
    # Per referenced correlation: for each of our group_by, its position in that one's key.
    inner_group: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    standalone: bool = True  # False: only an outer correlation uses it (its `generate: false`)
    # Set by load_plan for a chain: a chain's state is all in one part (checkpoint or shared).
    chain_per_user: bool | None = None

    def holds(self, count: int) -> bool:
        return all(_compare(op, count, bound) for op, bound in self.conditions)

    @property
    def per_user(self) -> bool:
        """Whether its groups stay within one user (a group-by field is the event's user_id):
        its state can live in that user's checkpoint; any other spans users. A chain is per
        user only if every correlation in it is: it is fed within one step."""
        if self.chain_per_user is not None:
            return self.chain_per_user
        return all(USER_PATH in paths for paths in self.group_paths.values())

    @property
    def inner_ids(self) -> tuple[str, ...]:
        """The correlations it counts the qualifying points of (empty unless a chain)."""
        return tuple(rid for rid in self.rule_ids if rid in self.inner_group)


@dataclass(frozen=True, slots=True)
class Plan:
    """A loaded plan: its rules, correlations, and an index of rules by event type."""

    rules: tuple[PlanRule, ...]
    correlations: tuple[PlanCorrelation, ...]
    compiled_by: Mapping[str, str]
    _by_type: Mapping[str, tuple[PlanRule, ...]] = field(repr=False, compare=False)
    _any_type: tuple[PlanRule, ...] = field(repr=False, compare=False)

    def matching(self, event: Mapping[str, Any]) -> tuple[PlanRule, ...]:
        """The rules `event` matches, in plan order."""
        return tuple(rule for rule in self._candidates(event) if rule.matches(event))

    def _candidates(self, event: Mapping[str, Any]) -> tuple[PlanRule, ...]:
        """The rules that can match `event`, by its type."""
        code = event.get("type")
        if isinstance(code, str):
            return self._by_type.get(fold_case(code), self._any_type)
        # Absent, or not text: a list of types is multi-valued like any other field.
        return self._any_type if code is None else self.rules

    def ids(self) -> tuple[str, ...]:
        """The ids of its rules, then of its correlations."""
        return (*(r.id for r in self.rules), *(c.id for c in self.correlations))

    def event_types(self, rule: PlanRule) -> frozenset[str] | None:
        """The (lower-case) event types `rule` can match; None when its condition names none."""
        if rule in self._any_type:
            return None
        return frozenset(code for code, rules in self._by_type.items() if rule in rules)

    def rule(self, rule_id: str) -> PlanRule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)

    def correlation(self, correlation_id: str) -> PlanCorrelation:
        for correlation in self.correlations:
            if correlation.id == correlation_id:
                return correlation
        raise KeyError(correlation_id)

    def counted_rules(self, correlation: PlanCorrelation) -> tuple[PlanRule, ...]:
        """The rules whose events `correlation` counts, through its inner ones (a chain)."""
        found: dict[str, PlanRule] = {}
        for ref in correlation.rule_ids:
            if ref in correlation.inner_group:
                found.update((r.id, r) for r in self.counted_rules(self.correlation(ref)))
            else:
                found[ref] = self.rule(ref)
        return tuple(found.values())

    def part(self, correlations: Iterable[PlanCorrelation], *, findings_of: Iterable[str]) -> Plan:
        """The plan cut down to `correlations` and the rules they use, plus the rules whose ids
        are in `findings_of` giving their own findings (if standalone here): the part of the
        rules one state holds (a user's checkpoint, the shared item)."""
        wanted = {c.id for c in correlations}
        for correlation in reversed(self.correlations):  # an outer comes after its inners
            if correlation.id in wanted:
                wanted.update(correlation.inner_ids)
        kept = tuple(c for c in self.correlations if c.id in wanted)
        standalone = set(findings_of)
        used = {rid for correlation in kept for rid in correlation.rule_ids}
        rules = {
            rule.id: replace(rule, standalone=rule.standalone and rule.id in standalone)
            for rule in self.rules
            if rule.id in used or (rule.standalone and rule.id in standalone)
        }

        def cut(candidates: Iterable[PlanRule]) -> tuple[PlanRule, ...]:
            return tuple(rules[rule.id] for rule in candidates if rule.id in rules)

        return Plan(
            rules=tuple(rules.values()),
            correlations=kept,
            compiled_by=self.compiled_by,
            _by_type={code: cut(found) for code, found in self._by_type.items()},
            _any_type=cut(self._any_type),
        )

    def regex_inputs_cut(self, event: Mapping[str, Any]) -> tuple[str, ...]:
        """Rules whose regex saw only part of a field's values here (MAX_REGEX_INPUT in all)."""
        cut = []
        for rule in self._candidates(event):
            for path in rule.regex_paths:
                texts = (json_text(v) for v in _values(_resolve(event, path)))
                if sum(len(t) for t in texts if t is not None) > MAX_REGEX_INPUT:
                    cut.append(rule.id)
                    break
        return tuple(cut)


# -- loading ---------------------------------------------------------------------------------


def load_plan(document: object) -> Plan:
    """A plan from its JSON object; a RulePackError names the rule and what is wrong with it."""
    if not isinstance(document, Mapping):
        raise RulePackError("a Sigma plan must be a JSON object")
    if document.get("format") != PLAN_FORMAT:
        raise RulePackError(f"not a Sigma plan: format is not {PLAN_FORMAT!r}")
    if document.get("version") != PLAN_VERSION:
        raise RulePackError(
            f"Sigma plan version {document.get('version')!r} is not the one this forwarder "
            f"reads ({PLAN_VERSION}): compile the rules again with this release's CLI"
        )
    fields = _read_fields(document.get("fields"))
    items = _list(document.get("rules"), "rules")
    rules = tuple(
        replace(_read_rule(item, fields), types=_type_bound(item.get("condition"), fields))
        for item in items
    )
    ids = [rule.id for rule in rules]
    if len(set(ids)) != len(ids):
        raise RulePackError("Sigma plan: two rules share an id")
    read: dict[str, PlanCorrelation] = {}
    for item in _list(document.get("correlations", []), "correlations"):
        correlation = _read_correlation(item, fields, set(ids), read)
        if correlation.id in read or correlation.id in ids:
            raise RulePackError(
                f"Sigma plan: two rules or correlations share the id {correlation.id}"
            )
        read[correlation.id] = correlation
    correlations = _chains_in_one_part(tuple(read.values()))
    compiled_by = document.get("compiled_by", {})
    by_type, any_type = _type_index(rules)
    return Plan(
        rules=rules,
        correlations=correlations,
        compiled_by=dict(compiled_by) if isinstance(compiled_by, Mapping) else {},
        _by_type=by_type,
        _any_type=any_type,
    )


def _read_fields(value: object) -> list[Path]:
    paths = []
    for i, item in enumerate(_list(value, "fields")):
        path = item.get("path") if isinstance(item, Mapping) else None
        if (
            not isinstance(path, list)
            or not path
            or not all(isinstance(p, str) and p for p in path)
        ):
            raise RulePackError(f"Sigma plan: field {i} has no path (a list of keys)")
        paths.append(tuple(path))
    return paths


def _read_rule(item: object, fields: list[Path]) -> PlanRule:
    if not isinstance(item, Mapping) or not isinstance(item.get("id"), str) or not item["id"]:
        raise RulePackError("Sigma plan: a rule has no id")
    rule_id = item["id"]
    regexes: list[Path] = []
    try:
        matcher = _build(item.get("condition"), fields, regexes)
    except RulePackError as error:
        raise RulePackError(f"Sigma plan, rule {rule_id}: {error}") from None
    return PlanRule(
        **_header(item, rule_id),
        logsource={str(k): str(v) for k, v in _mapping(item.get("logsource")).items()},
        name=_str(item.get("name")),
        standalone=item.get("standalone", True) is not False,
        placeholders=_strings(item.get("placeholders")),
        matches=matcher,
        regex_paths=tuple(dict.fromkeys(regexes)),
    )


def _read_correlation(
    item: object,
    fields: list[Path],
    rule_ids: set[str],
    earlier: Mapping[str, PlanCorrelation],
) -> PlanCorrelation:
    """One correlation; `earlier` are those before it, which it may count (a chain)."""
    if not isinstance(item, Mapping) or not isinstance(item.get("id"), str) or not item["id"]:
        raise RulePackError("Sigma plan: a correlation has no id")
    cid = item["id"]

    def bad(problem: str) -> RulePackError:
        return RulePackError(f"Sigma plan, correlation {cid}: {problem}")

    kind = item.get("type")
    if kind not in CORRELATION_KINDS:
        raise bad(f"type {kind!r} is not one of {', '.join(CORRELATION_KINDS)}")
    refs = _strings(item.get("rules"))
    if not refs or len(set(refs)) != len(refs):
        raise bad("it must name rules of this plan by id, each once")
    for ref in refs:
        if ref == cid:
            raise bad("it names itself (a cycle)")
        if ref not in rule_ids and ref not in earlier:
            raise bad(
                f"it names {ref}, which is neither a rule nor a correlation before it (an inner "
                "correlation comes before its outer: a later one would be a cycle or unknown)"
            )
    group_by = _strings(item.get("group_by"))
    group_fields = _mapping(item.get("group_fields"))
    group_paths: dict[str, tuple[Path, ...]] = {}
    value_paths: dict[str, Path] = {}
    inner_group: dict[str, tuple[int, ...]] = {}
    for ref in refs:
        if ref in earlier:
            inner_group[ref] = _inner_positions(
                _mapping(item.get("inner_group")).get(ref), earlier[ref], group_by, bad
            )
            if kind == "value_count":
                raise bad(f"a value_count of correlation {ref} is not supported")
            continue
        indexes = group_fields.get(ref)
        if not isinstance(indexes, list) or len(indexes) != len(group_by):
            raise bad(f"rule {ref} has no field for each group-by name")
        group_paths[ref] = tuple(_field(fields, index) for index in indexes)
        if kind == "value_count":
            value_paths[ref] = _field(fields, _mapping(item.get("value_fields")).get(ref))
    timespan = item.get("timespan_ms")
    if not isinstance(timespan, int) or isinstance(timespan, bool) or timespan <= 0:
        raise bad("timespan_ms must be a positive integer")
    if timespan > MAX_TIMESPAN_MS:
        raise bad(timespan_beyond_state(timespan))
    written = _mapping(item.get("condition"))
    for op, count in written.items():
        if op not in CONDITION_OPERATORS:
            raise bad(f"condition {op}: {op!r} is not one of {CONDITION_OPERATORS}")
        if not _is_number(count):
            raise bad(f"condition {op}: {count!r} is not a finite number")
    if not written:
        raise bad("it has no condition")
    beyond = count_beyond_state(written.items())
    if beyond is not None:
        raise bad(beyond)
    conditions = [(str(op), float(count)) for op, count in written.items()]
    return PlanCorrelation(
        **_header(item, cid),
        kind=str(kind),
        rule_ids=refs,
        group_by=group_by,
        group_paths=group_paths,
        value_paths=value_paths,
        timespan_ms=timespan,
        conditions=tuple(conditions),
        name=_str(item.get("name")),
        inner_group=inner_group,
        standalone=item.get("standalone", True) is not False,
    )


def _inner_positions(
    value: object,
    inner: PlanCorrelation,
    group_by: Sequence[str],
    bad: Callable[[str], RulePackError],
) -> tuple[int, ...]:
    """Where each of an outer's group-by values is in its inner's group key: the outer groups
    by some of the inner's group-by (an inner point knows its group's values, no other field)."""
    if (
        not isinstance(value, list)
        or len(value) != len(group_by)
        or not all(type(p) is int and 0 <= p < len(inner.group_by) for p in value)
        or len(set(value)) != len(value)
    ):
        raise bad(
            f"its group-by ({', '.join(group_by) or 'none'}) must be within that of correlation "
            f"{inner.id} ({', '.join(inner.group_by) or 'none'}), one position each"
        )
    return tuple(value)


def _chains_in_one_part(
    correlations: tuple[PlanCorrelation, ...],
) -> tuple[PlanCorrelation, ...]:
    """A chain's correlations all per user, or all shared: the step feeds an inner's points to
    its outer within one call, on one state. A chain is per user when every correlation of it
    groups by the user (an outer through the position of its inner's user)."""
    if not any(c.inner_group for c in correlations):
        return correlations
    users: dict[str, frozenset[int]] = {}  # positions of a correlation's key that are the user
    for c in correlations:
        per_ref = []
        for ref in c.rule_ids:
            if ref in c.inner_group:
                per_ref.append({i for i, p in enumerate(c.inner_group[ref]) if p in users[ref]})
            else:
                per_ref.append(
                    {i for i, path in enumerate(c.group_paths[ref]) if path == USER_PATH}
                )
        users[c.id] = frozenset(set.intersection(*per_ref)) if per_ref else frozenset()
    chain = {c.id: {c.id} for c in correlations}
    for c in correlations:  # union each outer with its inners
        for ref in c.inner_ids:
            merged = chain[c.id] | chain[ref]
            for member in merged:
                chain[member] = merged
    return tuple(
        replace(c, chain_per_user=all(bool(users[m]) for m in chain[c.id]))
        if len(chain[c.id]) > 1
        else c
        for c in correlations
    )


def _header(item: Mapping[str, Any], owner: str) -> dict[str, Any]:
    """What rules and correlations both carry: the Sigma metadata a finding shows."""
    return {
        "id": owner,
        "title": _str(item.get("title")) or owner,
        "level": _level(item.get("level"), owner),
        "status": _str(item.get("status")),
        "tags": _strings(item.get("tags")),
        "source": _str(item.get("source")) or "",
    }


def _type_index(
    rules: Sequence[PlanRule],
) -> tuple[dict[str, tuple[PlanRule, ...]], tuple[PlanRule, ...]]:
    """Rules by the event types they can match; most catalog rules name their `type`."""
    any_type = tuple(rule for rule in rules if rule.types is None)
    codes = {code for rule in rules if rule.types for code in rule.types}
    by_type = {
        code: tuple(rule for rule in rules if rule.types is None or code in rule.types)
        for code in codes
    }
    return by_type, any_type


def _type_bound(expr: Any, fields: list[Path]) -> frozenset[str] | None:
    """The lowercase `type` values `expr` can hold for, or None when it is not bounded."""
    op = expr[0]
    if op == "str" and expr[2] == "eq" and not expr[4] and _field_of(fields, expr[1]) == ("type",):
        return frozenset({fold_case(expr[3])})
    if op == "and":
        known = [b for b in (_type_bound(arg, fields) for arg in expr[1:]) if b is not None]
        return frozenset.intersection(*known) if known else None
    if op == "or":
        parts = [_type_bound(arg, fields) for arg in expr[1:]]
        if not parts or any(part is None for part in parts):
            return None
        return frozenset().union(*(p for p in parts if p is not None))
    if op == "const" and expr[1] is False:
        return frozenset()
    return None


def merge(plans: Sequence[Plan], disabled: Collection[str] = ()) -> Plan:
    """One plan of `plans`' rules and correlations, in order, less the `disabled` ids.

    A correlation is dropped with any rule or inner correlation it counts (it could no longer
    count what it was written to count), and so is a rule or inner correlation only dropped
    correlations used: one that was `standalone: false` gives no findings of its own. Two plans
    naming one id raise RulePackError, naming it: ids are what findings, state and `disabled`
    refer to.
    """
    off = frozenset(disabled)
    seen: dict[str, int] = {}
    for index, plan in enumerate(plans):
        for item_id in plan.ids():
            if seen.setdefault(item_id, index) != index:
                raise RulePackError(f"Sigma plans {seen[item_id]} and {index} both hold {item_id}")
    kept_correlations: dict[str, PlanCorrelation] = {}
    for plan in plans:
        for c in plan.correlations:  # an inner before its outer: a dropped inner drops it
            inner_kept = all(ref in kept_correlations for ref in c.inner_ids)
            if c.id not in off and not off.intersection(c.rule_ids) and inner_kept:
                kept_correlations[c.id] = c
    used: set[str] = set()
    for c in reversed(list(kept_correlations.values())):  # an outer before its inners here
        if c.standalone or c.id in used:
            used.update(c.inner_ids)
        else:
            del kept_correlations[c.id]
    correlations = tuple(kept_correlations.values())
    needed = {rule_id for c in correlations for rule_id in c.rule_ids}
    kept = {
        rule.id
        for plan in plans
        for rule in plan.rules
        if rule.id not in off and (rule.standalone or rule.id in needed)
    }
    codes = {code for plan in plans for code in plan._by_type}
    return Plan(
        rules=tuple(rule for plan in plans for rule in plan.rules if rule.id in kept),
        correlations=correlations,
        compiled_by={k: v for plan in plans for k, v in plan.compiled_by.items()},
        _by_type={
            code: tuple(
                rule
                for plan in plans
                for rule in plan._by_type.get(code, plan._any_type)
                if rule.id in kept
            )
            for code in codes
        },
        _any_type=tuple(rule for plan in plans for rule in plan._any_type if rule.id in kept),
    )


# -- conditions -> closures ------------------------------------------------------------------


def _build(expr: object, fields: list[Path], regexes: list[Path]) -> Matcher:
    if not isinstance(expr, list) or not expr or not isinstance(expr[0], str):
        raise RulePackError(f"condition {expr!r} is not a [operator, ...] list")
    op, args = expr[0], expr[1:]
    if op in ("and", "or"):
        parts = tuple(_build(arg, fields, regexes) for arg in args)
        if op == "and":
            return lambda event: all(part(event) for part in parts)
        return lambda event: any(part(event) for part in parts)
    if op == "not" and len(args) == 1:
        inner = _build(args[0], fields, regexes)
        return lambda event: not inner(event)
    if op == "const" and len(args) == 1 and isinstance(args[0], bool):
        constant = args[0]
        return lambda event: constant
    if op == "null" and len(args) == 1:
        return _null_matcher(_field(fields, args[0]))
    if op == "exists" and len(args) == 2 and isinstance(args[1], bool):
        present, wanted = _field(fields, args[0]), args[1]
        return lambda event: (_resolve(event, present) is not _MISSING) is wanted
    if op == "ref" and len(args) == 4:
        return _ref_matcher(
            _field(fields, args[0]), _field(fields, args[1]), _text_test(args[2], args[3])
        )
    path: Path | None = None
    if not args or args[0] is not None:
        path = _field(fields, args[0] if args else None)
    if op == "re" and len(args) == 3:
        regex = _regex(_string(args[1]), _string(args[2]))
        if path is not None:
            regexes.append(path)
            return lambda event: _regex_within_budget(regex, _values(_resolve(event, path)))
        return lambda event: _regex_within_budget(regex, _leaves(event))
    test = _value_test(op, args[1:], ".".join(path) if path else "a keyword")
    return _keyword_matcher(test) if path is None else _field_matcher(path, test)


def _value_test(op: str, args: Sequence[Any], where: str) -> Callable[[Any], bool]:
    """A test of one scalar value (of the field `where`) for the atom `[op, field, *args]`."""
    if op == "str" and len(args) == 3:
        # Cased or not, the comparison itself is exact: the rule's side is lowered once, here.
        compare, cased = _text_test(args[0], True), args[2] is True
        wanted = _string(args[1]) if cased else fold_case(_string(args[1]))
        if cased:
            return lambda value: (text := json_text(value)) is not None and compare(text, wanted)
        return lambda value: (
            (text := json_text(value)) is not None and compare(fold_case(text), wanted)
        )
    if op == "glob" and len(args) == 2:
        pattern = _glob_regex(args[0], cased=args[1] is True)
        if args[1] is True:
            return lambda value: (text := json_text(value)) is not None and bool(pattern(text))
        return lambda value: (
            (text := json_text(value)) is not None and bool(pattern(fold_case(text)))
        )
    if op == "cidr" and len(args) == 1:
        network = _network(args[0])
        return lambda value: _in_network(value, network)
    if op == "cmp" and len(args) == 2 and args[0] in ("gt", "gte", "lt", "lte"):
        operator, bound = args[0], args[1]
        if not _is_number(bound):
            raise RulePackError(
                f"comparison of {where} with {bound!r}, which is not a finite number"
            )
        return lambda value: (
            (number := _number(value)) is not None and _compare(operator, number, bound)
        )
    raise RulePackError(f"unknown condition {[op, *args]!r}")


def _text_test(kind: object, cased: object) -> Callable[[str, str], bool]:
    """`test(text, wanted)` for one string match; case-insensitive unless `cased`."""
    if kind not in _STRING_KINDS:
        raise RulePackError(f"string match {kind!r} is not one of {_STRING_KINDS}")
    compare: Callable[[str, str], bool] = _STRING_TESTS[str(kind)]
    if cased is True:
        return compare
    return lambda text, wanted: compare(fold_case(text), fold_case(wanted))


def _field_matcher(path: Path, test: Callable[[Any], bool]) -> Matcher:
    def matches(event: Mapping[str, Any]) -> bool:
        value = _resolve(event, path)
        if type(value) is _Multi:
            return any(test(item) for item in value)
        return value is not _MISSING and test(value)

    return matches


def _regex_within_budget(regex: Callable[[str], object], values: Iterable[Any]) -> bool:
    """Whether `regex` finds a match in the values' texts, of which it sees MAX_REGEX_INPUT
    characters in all (a list of long values must not multiply the cost)."""
    budget = MAX_REGEX_INPUT
    for value in values:
        text = json_text(value)
        if text is None:
            continue
        if regex(text[:budget]) is not None:
            return True
        budget -= len(text)
        if budget <= 0:
            return False
    return False


def _keyword_matcher(test: Callable[[Any], bool]) -> Matcher:
    """A value without a field (Sigma keywords): some scalar anywhere in the event matches."""
    return lambda event: any(test(value) for value in _leaves(event))


def _null_matcher(path: Path) -> Matcher:
    def matches(event: Mapping[str, Any]) -> bool:
        value = _resolve(event, path)
        if type(value) is _Multi:
            return not value or any(_no_value(item) for item in value)
        return value is _MISSING or _no_value(value)

    return matches


def _ref_matcher(path: Path, other: Path, test: Callable[[str, str], bool]) -> Matcher:
    def matches(event: Mapping[str, Any]) -> bool:
        theirs = [t for t in map(json_text, _values(_resolve(event, other))) if t is not None]
        return any(
            test(mine, their)
            for mine in map(json_text, _values(_resolve(event, path)))
            if mine is not None
            for their in theirs
        )

    return matches


def _glob_regex(parts: object, *, cased: bool) -> Callable[[str], object]:
    """Sigma's `*` and `?` over literal parts: [["lit", text] | ["any"] | ["one"], ...]."""
    if not isinstance(parts, list):
        raise RulePackError(f"wildcard pattern {parts!r} is not a list of parts")
    source = []
    for part in parts:
        if part == ["any"]:
            source.append(".*")
        elif part == ["one"]:
            source.append(".")
        elif isinstance(part, list) and len(part) == 2 and part[0] == "lit":
            text = _string(part[1])
            source.append(re.escape(text if cased else fold_case(text)))
        else:
            raise RulePackError(f"wildcard part {part!r} is not lit/any/one")
    return re.compile("".join(source), re.DOTALL).fullmatch


def _regex(pattern: str, flags: str) -> Callable[[str], object]:
    bits = 0
    for flag in flags:
        bits |= {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}.get(flag, -1)
        if flag not in "ims":
            raise RulePackError(f"regex flag {flag!r} is not one of i, m, s")
    try:
        return re.compile(pattern, bits).search
    except re.error as error:
        raise RulePackError(f"regex {pattern!r} does not compile: {error}") from None


def _network(value: object) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(_string(value), strict=False)
    except ValueError:
        raise RulePackError(f"cidr {value!r} is not a network") from None


def _in_network(value: object, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return ipaddress.ip_address(value.strip()) in network
    except ValueError:
        return False


# -- values ----------------------------------------------------------------------------------


def _resolve(node: Any, path: Path) -> Any:
    """The value at `path`, `_MISSING`, or a `_Multi` when a list was met on the way."""
    for i, key in enumerate(path):
        if type(node) is dict or isinstance(node, Mapping):  # the first test is the fast one
            node = node.get(key, _MISSING)
            if node is _MISSING:
                return _MISSING
        elif isinstance(node, list):
            found = _Multi()
            for item in _flat(node):
                value = _resolve(item, path[i:])
                if type(value) is _Multi:
                    found.extend(value)
                elif value is not _MISSING:
                    found.append(value)
            return found if found or _reaches(node, path[i:]) else _MISSING
        else:
            return _MISSING
    if isinstance(node, list):
        return _Multi(_flat(node))
    return node


def fold_case(text: str) -> str:
    """Case folded one character at a time: `str.lower` but for its one rule that looks at the
    neighbours (a final Σ becomes ς), so that "ΣΣ" and "Σσ" are the same text."""
    lowered = text.lower()
    return lowered if text.isascii() else lowered.replace("ς", "σ")


def _no_value(value: object) -> bool:
    """Null, or an object: a flattened event gives an object's keys columns, not the field."""
    return value is None or isinstance(value, Mapping)


def _reaches(items: list[Any], rest: Path) -> bool:
    """Whether some element of `items` has `rest` (an empty list there is present, not missing)."""
    return any(_resolve(item, rest) is not _MISSING for item in _flat(items))


def _flat(items: list[Any]) -> Iterator[Any]:
    for item in items:
        if isinstance(item, list):
            yield from _flat(item)
        else:
            yield item


def values_at(event: Mapping[str, Any], path: Path) -> Sequence[Any]:
    """Every value at `path` (several when lists were met on the way; none when absent)."""
    return _values(_resolve(event, path))


def _values(value: Any) -> Sequence[Any]:
    if value is _MISSING:
        return ()
    return value if type(value) is _Multi else (value,)


def _leaves(node: Any) -> Iterator[Any]:
    if isinstance(node, Mapping):
        for value in node.values():
            yield from _leaves(value)
    elif isinstance(node, list):
        for value in node:
            yield from _leaves(value)
    else:
        yield node


def json_text(value: object) -> str | None:
    """A scalar as JSON spells it (strings as they are); None for null, objects and lists."""
    kind = type(value)
    if kind is str:
        return value  # type: ignore[return-value]
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        return repr(value)
    return None


def _number(value: object) -> float | None:
    """A JSON number, or a string holding one (SQLite's backend reads both); never a bool."""
    if type(value) in (int, float):
        return float(value)  # type: ignore[arg-type]
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        return float(value)
    return None


def _compare(op: str, value: float, bound: float) -> bool:
    if op == "gt":
        return value > bound
    if op == "gte":
        return value >= bound
    if op == "lt":
        return value < bound
    if op == "lte":
        return value <= bound
    return value == bound


def _is_number(value: object) -> bool:
    """A JSON number a bound can be: Python's json reads `Infinity`, `NaN` and `1e400` (inf)
    from stored text, and an int past float's range cannot be compared as a count."""
    if type(value) not in (int, float):  # bool is no number
        return False
    try:
        return math.isfinite(value)  # type: ignore[arg-type]
    except OverflowError:  # an int too large for a float
        return False


def timespan_beyond_state(timespan_ms: int) -> str:
    shown = str(timespan_ms) if len(str(timespan_ms)) <= 20 else str(timespan_ms)[:16] + "…"
    return f"timespan_ms {shown} is longer than ten years ({MAX_TIMESPAN_MS} ms)"


def count_beyond_state(conditions: Iterable[tuple[str, float | int]]) -> str | None:
    """Why a correlation's condition cannot be judged on what a group keeps, or None.

    A group keeps MAX_GROUP_EVENTS events, so a count reads at most that much and a count above
    it reads as it: a condition must give the same verdict at that count as at any above it.
    `gte: 51` would never fire; `lt: 60` would keep firing through a burst of hundreds."""
    cap = MAX_GROUP_EVENTS
    for op, bound in conditions:
        # gte and lt change their verdict at the bound itself, gt, lte and eq just above it
        if bound > cap or (bound == cap and op in ("gt", "lte", "eq")):
            shown = repr(bound) if len(repr(bound)) <= 20 else repr(bound)[:16] + "…"
            return (
                f"condition {op}: {shown} needs counts above {cap}, and a correlation keeps "
                f"{cap} events per group (a larger count reads as {cap})"
            )
    return None


def _field(fields: list[Path], index: object) -> Path:
    path = _field_of(fields, index)
    if path is None:
        raise RulePackError(f"field index {index!r} is not in the plan's field table")
    return path


def _field_of(fields: list[Path], index: object) -> Path | None:
    if type(index) is int and 0 <= index < len(fields):  # bool is no index
        return fields[index]
    return None


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise RulePackError(f"Sigma plan: {what} must be a list")
    return value


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise RulePackError(f"{value!r} is not a string")
    return value


def _strings(value: object) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, str))


def _level(value: object, owner: str) -> str | None:
    if value is None:
        return None
    if value not in LEVELS:
        raise RulePackError(f"Sigma plan, {owner}: level {value!r} is not one of {LEVELS}")
    return str(value)
