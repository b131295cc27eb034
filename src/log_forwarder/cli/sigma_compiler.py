"""Sigma rules -> the plan the function evaluates (`log_forwarder.sigma_plan`), outside it.

pySigma, the reference Sigma library, parses the rules: multi-document YAML, correlations, the
condition grammar (`1 of selection_*`, `all of them`, `not`, brackets) and every value modifier
(`contains`, `all`, `windash`, `base64offset`, `cidr`, `re` and its flags, `exists`, `fieldref`,
`cased`, the comparisons, `expand`). What comes out of pySigma is a tree of AND/OR/NOT over
(field, typed value) atoms; this module writes that tree down as a plan, JSON, and refuses what the
evaluator cannot do faithfully, naming the rule and the feature. pySigma pulls in binary wheels
(google-re2, jq), so it must never be imported by the function: only this module imports it.

Two things are done to the YAML before pySigma reads it (docs/sigma.md, "Compiling"):

- **Unquoted placeholders.** The Auth0 catalog writes `data.client_id: {global_client_id}`
  once without quotes, which YAML reads as a one-key mapping with a null value; everywhere else it
  quotes them (`'{trusted-client_id-1}'`). Such a value is read back as the text it was written as.
- **Catalog placeholders** (`{your-tenant-url}`) are replaced with the operator's values when
  given (`variables`), else kept as literal text and listed in the rule's `placeholders`, so that
  a rule that cannot match until configured says so. Sigma's own `%name%` placeholders (with
  `|expand`) take the same variables through pySigma's ValueListPlaceholderTransformation.

A correlation's `rules:` are resolved here, by name or id, in its own file first and then in the
whole pack, so that a chain (a correlation of a correlation) may name one of another file; inner
correlations are written before their outers, and cycles are refused by name.

Fields: Log Streams' `data.` prefix is dropped (an event read from the Management API is the
`data` object itself); a field without it is taken as a path into that event as it is. Splunk's
`{}` after a segment is dropped: every list on a path is multi-valued.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Final

import yaml
from sigma.collection import SigmaCollection
from sigma.conditions import (
    ConditionAND,
    ConditionFieldEqualsValueExpression,
    ConditionNOT,
    ConditionOR,
    ConditionValueExpression,
)
from sigma.correlations import SigmaCorrelationRule, SigmaExtendedCorrelationCondition
from sigma.exceptions import SigmaError
from sigma.policy.profiles import TrustedPolicy
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import ValueListPlaceholderTransformation
from sigma.rule import SigmaRule
from sigma.types import (
    CompareOperators,
    Placeholder,
    SigmaBool,
    SigmaCasedString,
    SigmaCIDRExpression,
    SigmaCompareExpression,
    SigmaExists,
    SigmaExpansion,
    SigmaFieldReference,
    SigmaNull,
    SigmaNumber,
    SigmaRegularExpression,
    SigmaString,
    SigmaTimestampPart,
    SigmaType,
    SpecialChars,
)

from log_forwarder.exceptions import SigmaRuleRefused
from log_forwarder.sigma_plan import (
    MAX_TIMESPAN_MS,
    PLAN_FORMAT,
    PLAN_VERSION,
    count_beyond_state,
    load_plan,
    timespan_beyond_state,
)

STREAM_PREFIX: Final = "data."
# The catalog's own placeholders: `{name}`, a letter first (a regex's `{2,3}` is not one).
CATALOG_PLACEHOLDER: Final = re.compile(r"\{([A-Za-z][A-Za-z0-9_-]*)\}")
ID_NAMESPACE: Final = uuid.UUID("6f1d5a0e-6b1e-4d7c-9a43-2f1f3f0c5a11")
_COMPARE: Final = {
    CompareOperators.LT: "lt",
    CompareOperators.LTE: "lte",
    CompareOperators.GT: "gt",
    CompareOperators.GTE: "gte",
}
_NOT_DETECTION_KEYS: Final = frozenset({"condition", "timeframe"})


@dataclass(frozen=True, slots=True)
class Refusal:
    """A rule left out of the plan, and the Sigma feature it needs."""

    source: str
    rule: str
    feature: str


@dataclass(slots=True)
class Compiled:
    """A plan (the JSON object), what was refused, and what was changed on the way."""

    plan: dict[str, Any]
    refused: list[Refusal] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def compile_paths(
    paths: Iterable[Path], *, variables: Mapping[str, Sequence[str]] | None = None
) -> Compiled:
    """Compile every `.yml`/`.yaml` under `paths` (files or folders) into one plan."""
    files = sorted(
        {
            file
            for path in paths
            for file in (
                [path] if path.is_file() else [*path.rglob("*.yml"), *path.rglob("*.yaml")]
            )
        }
    )
    return compile_texts(((f.name, f.read_text(encoding="utf-8")) for f in files), variables)


def compile_texts(
    sources: Iterable[tuple[str, str]], variables: Mapping[str, Sequence[str]] | None = None
) -> Compiled:
    """Compile (source name, YAML text) pairs. Each source is its own Sigma collection: rule
    names (which correlations refer to) are unique only within one file in the catalog."""
    builder = _PlanBuilder(dict(variables or {}))
    for source, text in sources:
        builder.add_source(source, text)
    compiled = builder.finish()
    load_plan(compiled.plan)  # the function's own reader must accept what we wrote
    return compiled


class _PlanBuilder:
    def __init__(self, variables: dict[str, Sequence[str]]) -> None:
        self.variables = variables
        self.fields: dict[str, int] = {}
        self.field_table: list[dict[str, Any]] = []
        self.rules: list[dict[str, Any]] = []
        self.correlations: list[dict[str, Any]] = []
        self.refused: list[Refusal] = []
        self.notes: list[str] = []
        # What later files may refer to: correlations are resolved once every file is read.
        self.compiled_ids: dict[int, str] = {}  # id() of a pySigma rule -> its plan id
        self.collections: list[tuple[str, SigmaCollection]] = []

    def finish(self) -> Compiled:
        self._add_correlations()
        plan = {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            "compiled_by": {"pySigma": metadata.version("pySigma")},
            "fields": self.field_table,
            "rules": self.rules,
            "correlations": self.correlations,
        }
        return Compiled(plan, self.refused, self.notes)

    # -- one file ------------------------------------------------------------------------

    def add_source(self, source: str, text: str) -> None:
        try:
            prepared = prepare_documents(text, source, self.variables)
        except yaml.YAMLError as error:
            self.refused.append(Refusal(source, source, f"YAML that does not parse: {error}"))
            return
        self.notes.extend(prepared.notes)
        # References are resolved here, not by pySigma: a chain may name a correlation of
        # another file of the pack, which pySigma's per-file collection cannot see.
        try:
            collection = SigmaCollection.from_dicts(
                prepared.documents,
                collect_errors=True,
                policy=TrustedPolicy,
                resolve_references=False,
            )
        except SigmaError as error:  # pySigma raises some despite collect_errors (`gte: .inf`)
            self.refused.append(Refusal(source, source, f"pySigma cannot read it: {error}"))
            return
        for index, rule in enumerate(collection.rules):  # one per document, in order
            if isinstance(rule, SigmaRule):
                rule_id = self._add_rule(rule, source, prepared.placeholders[index])
                if rule_id is not None:
                    self.compiled_ids[id(rule)] = rule_id
        self.collections.append((source, collection))

    # -- detection rules -----------------------------------------------------------------

    def _add_rule(self, rule: SigmaRule, source: str, placeholders: list[str]) -> str | None:
        label = rule.title or source
        try:
            if rule.errors:
                raise SigmaRuleRefused(f"pySigma cannot read it: {rule.errors[0]}")
            product = rule.logsource.product
            if product is not None and product.lower() != "auth0":
                raise SigmaRuleRefused(f"its logsource product is {product!r}, not auth0")
            if self.variables:
                pipeline = ProcessingPipeline(
                    items=[ProcessingItem(ValueListPlaceholderTransformation())],
                    vars={k: list(v) for k, v in self.variables.items()},
                )
                pipeline.apply(rule)
            conditions = [self._condition(c.parsed) for c in rule.detection.parsed_condition]
        except SigmaRuleRefused as refusal:
            self.refused.append(Refusal(source, label, str(refusal)))
            return None
        except SigmaError as error:
            self.refused.append(Refusal(source, label, f"pySigma refused it: {error}"))
            return None
        rule_id = str(rule.id) if rule.id else _derived_id("rule", source, rule.title)
        self.rules.append(
            {
                "id": rule_id,
                "title": rule.title,
                "name": rule.name,
                "level": rule.level.name.lower() if rule.level else None,
                "status": rule.status.name.lower() if rule.status else None,
                "tags": [str(tag) for tag in rule.tags],
                "logsource": {
                    key: value
                    for key in ("product", "category", "service")
                    if (value := getattr(rule.logsource, key, None)) is not None
                },
                "source": source,
                "standalone": True,
                "placeholders": placeholders,
                "condition": conditions[0] if len(conditions) == 1 else ["or", *conditions],
            }
        )
        return rule_id

    def _condition(self, node: Any) -> list[Any]:
        if isinstance(node, ConditionAND | ConditionOR):
            op = "and" if isinstance(node, ConditionAND) else "or"
            return [op, *(self._condition(arg) for arg in node.args)]
        if isinstance(node, ConditionNOT):
            return ["not", self._condition(node.args[0])]
        if isinstance(node, ConditionFieldEqualsValueExpression):
            return self._atom(self._field(node.field), node.value)
        if isinstance(node, ConditionValueExpression):
            return self._atom(None, node.value)
        raise SigmaRuleRefused(f"condition element {type(node).__name__} is not supported")

    def _atom(self, field_index: int | None, value: SigmaType) -> list[Any]:
        if isinstance(value, SigmaExpansion):  # windash, base64offset, placeholders: any of them
            return ["or", *(self._atom(field_index, v) for v in value.values)]
        if isinstance(value, SigmaString):
            # A keyword is found anywhere in a value, as the SQLite backend's LIKE '%v%'.
            return _string_atom(field_index, value, anywhere=field_index is None)
        if isinstance(value, SigmaTimestampPart):
            raise SigmaRuleRefused("time modifiers (|minute, |hour, ...) are not supported")
        if isinstance(value, SigmaBool):  # as the SQLite backend reads a flattened event
            spelled = ("true", "1") if value.boolean else ("false", "0")
            return ["or", *(["str", field_index, "eq", text, False] for text in spelled)]
        if isinstance(value, SigmaNumber):
            return ["str", field_index, "eq", str(value.number), False]
        if isinstance(value, SigmaRegularExpression):
            flags = "".join(sorted(SigmaRegularExpression.sigma_to_re_flag[f] for f in value.flags))
            _refuse_nested_repetition(value.regexp.original)
            return ["re", field_index, value.regexp.original, flags]
        if field_index is None:
            raise SigmaRuleRefused(f"a keyword of type {type(value).__name__} needs a field")
        if isinstance(value, SigmaNull):
            return ["null", field_index]
        if isinstance(value, SigmaExists):
            return ["exists", field_index, value.exists]
        if isinstance(value, SigmaCIDRExpression):
            return ["cidr", field_index, str(value.network)]
        if isinstance(value, SigmaCompareExpression):
            if value.op not in _COMPARE:
                raise SigmaRuleRefused(f"comparison {value.op.name} is not supported")
            return ["cmp", field_index, _COMPARE[value.op], value.number.number]
        if isinstance(value, SigmaFieldReference):
            kind = {(False, False): "eq", (True, False): "pre", (False, True): "suf"}.get(
                (value.starts_with, value.ends_with), "sub"
            )
            return ["ref", field_index, self._field(value.field), kind, False]
        raise SigmaRuleRefused(f"value type {type(value).__name__} is not supported")

    def _field(self, name: str | None) -> int:
        if not name:
            raise SigmaRuleRefused("a detection item has no field")
        if name not in self.fields:
            path = field_path(name)
            self.fields[name] = len(self.field_table)
            self.field_table.append({"name": name, "path": list(path)})
        return self.fields[name]

    # -- correlations --------------------------------------------------------------------

    def _add_correlations(self) -> None:
        """Every file's correlations, each inner one before the outer that counts it."""
        self.pack_names: dict[str, list[tuple[str, Any]]] = {}  # name or id -> (file, rule)
        for source, collection in self.collections:
            for rule in collection.rules:
                for label in {rule.name, str(rule.id) if rule.id else None} - {None}:
                    self.pack_names.setdefault(str(label), []).append((source, rule))
        self.visited: dict[int, str | None] = {}  # a correlation's plan id; None: refused
        self.why: dict[int, str] = {}
        for source, collection in self.collections:
            for rule in collection.rules:
                if isinstance(rule, SigmaCorrelationRule):
                    self._visit(rule, source, collection, ())

    def _visit(
        self,
        rule: SigmaCorrelationRule,
        source: str,
        collection: SigmaCollection,
        outers: tuple[SigmaCorrelationRule, ...],
    ) -> str | None:
        """Compile `rule` after the correlations it counts (depth first); its plan id, or None
        when it is refused. `outers` are those waiting on it: meeting one again is a cycle."""
        if id(rule) in self.visited:
            return self.visited[id(rule)]
        label = rule.title or source
        try:
            resolved: list[tuple[Any, SigmaRule | SigmaCorrelationRule, str]] = []
            for ref in rule.rules or []:
                ref_source, base = self._resolve(ref.reference, source, collection)
                if isinstance(base, SigmaCorrelationRule):
                    waiting = (*outers, rule)
                    if any(base is r for r in waiting):
                        start = next(i for i, r in enumerate(waiting) if r is base)
                        cycle = [*map(_name, waiting[start:]), _name(base)]
                        raise SigmaRuleRefused(
                            "a cycle of correlations (" + " -> ".join(cycle) + ")"
                        )
                    inner = self._visit(
                        base, ref_source, self._collection(ref_source), (*outers, rule)
                    )
                    if inner is None:
                        raise SigmaRuleRefused(
                            f"its correlation {ref.reference!r} was refused: {self.why[id(base)]}"
                        )
                    resolved.append((ref, base, inner))
                elif id(base) in self.compiled_ids:
                    resolved.append((ref, base, self.compiled_ids[id(base)]))
                else:
                    raise SigmaRuleRefused(f"its rule {ref.reference!r} was refused")
            entry = self._correlation(rule, source, resolved)
        except SigmaRuleRefused as refusal:
            if id(rule) not in self.visited:  # a cycle refuses the one met twice only once
                self.refused.append(Refusal(source, label, str(refusal)))
                self.visited[id(rule)] = None
                self.why[id(rule)] = str(refusal)
            return None
        self.visited[id(rule)] = entry["id"]
        self.correlations.append(entry)
        if not rule.generate:
            # Sigma's default: what the correlation counts feeds it and gives no findings.
            for item in (*self.rules, *self.correlations):
                if item["id"] in entry["rules"]:
                    item["standalone"] = False
        return str(entry["id"])

    def _collection(self, source: str) -> SigmaCollection:
        return next(c for s, c in self.collections if s == source)

    def _resolve(
        self, reference: str, source: str, collection: SigmaCollection
    ) -> tuple[str, SigmaRule | SigmaCorrelationRule]:
        """A correlation's `rules:` entry, by name or id: in its own file first (the catalog
        gives one name to rules of seven files), else the one rule of that name in the pack."""
        try:
            found = collection[reference]
        except SigmaError:
            pass
        else:
            if isinstance(found, SigmaRule | SigmaCorrelationRule):
                return source, found
        elsewhere = [(s, r) for s, r in self.pack_names.get(reference, []) if s != source]
        if len(elsewhere) > 1:
            files = ", ".join(sorted({s for s, _ in elsewhere}))
            raise SigmaRuleRefused(
                f"its rule {reference!r} is ambiguous: it names rules in {files}"
            )
        if not elsewhere:
            raise SigmaRuleRefused(f"its rule {reference!r} is not in this pack")
        return elsewhere[0]

    def _correlation(
        self,
        rule: SigmaCorrelationRule,
        source: str,
        resolved: Sequence[tuple[Any, SigmaRule | SigmaCorrelationRule, str]],
    ) -> dict[str, Any]:
        if rule.errors:
            raise SigmaRuleRefused(f"pySigma cannot read it: {rule.errors[0]}")
        kind = rule.type.name.lower()
        if kind not in ("event_count", "value_count", "temporal", "temporal_ordered"):
            raise SigmaRuleRefused(f"correlation type {kind} is not supported")
        if not resolved:
            raise SigmaRuleRefused("it names no rules")
        rule_ids = [plan_id for _, _, plan_id in resolved]
        if len(set(rule_ids)) != len(rule_ids):
            raise SigmaRuleRefused("it names one rule twice")
        group_by = list(rule.group_by or [])
        group_fields = {}
        value_fields = {}
        inner_group = {}
        condition = rule.condition
        if isinstance(condition, SigmaExtendedCorrelationCondition):
            raise SigmaRuleRefused("extended correlation conditions are not supported")
        counted = getattr(condition, "fieldref", None)
        if isinstance(counted, list):
            raise SigmaRuleRefused("value_count over several fields is not supported")
        for ref, base, rule_id in resolved:
            aliases = _alias_map(rule, ref, base)
            if isinstance(base, SigmaCorrelationRule):
                if kind == "value_count":
                    raise SigmaRuleRefused(
                        f"a value_count of a correlation ({ref.reference!r}) is not supported"
                    )
                inner = self._entry(rule_id)
                positions = []
                for name in group_by:
                    wanted = aliases.get(name, name)
                    if wanted not in inner["group_by"]:
                        raise SigmaRuleRefused(
                            f"it groups by {wanted!r}, which its correlation {ref.reference!r} "
                            f"does not group by ({', '.join(inner['group_by']) or 'nothing'})"
                        )
                    positions.append(inner["group_by"].index(wanted))
                inner_group[rule_id] = positions
                continue
            group_fields[rule_id] = [self._field(aliases.get(g, g)) for g in group_by]
            if kind == "value_count":
                if not counted:
                    raise SigmaRuleRefused("value_count needs condition.field")
                value_fields[rule_id] = self._field(aliases.get(counted, counted))
        # pySigma gives a temporal rule without a condition `gte: <number of rules>`.
        bounds = {condition.op.name.lower(): condition.count}
        if kind == "temporal_ordered" and bounds != {"gte": len(rule_ids)}:
            raise SigmaRuleRefused("temporal_ordered with a count other than all rules")
        beyond = count_beyond_state(bounds.items())
        if beyond is not None:
            raise SigmaRuleRefused(beyond)
        timespan_ms = int(rule.timespan.seconds * 1000)
        if timespan_ms > MAX_TIMESPAN_MS:
            raise SigmaRuleRefused(timespan_beyond_state(timespan_ms))
        first = self._entry(rule_ids[0])
        tags = [str(t) for t in rule.tags] or sorted(
            {t for rid in rule_ids for t in self._entry(rid)["tags"]}
        )
        correlation_id = (
            str(rule.id)
            if rule.id
            else _derived_id("correlation", kind, *rule_ids, *group_by, str(rule.timespan))
        )
        entry = {
            "id": correlation_id,
            "title": rule.title,
            "name": rule.name,
            "type": kind,
            "level": rule.level.name.lower() if rule.level else first["level"],
            "status": rule.status.name.lower() if rule.status else first["status"],
            "tags": tags,
            "source": source,
            "rules": rule_ids,
            "group_by": group_by,
            "group_fields": group_fields,
            "value_fields": value_fields,
            "timespan_ms": timespan_ms,
            "condition": bounds,
        }
        if inner_group:  # a chain; plans without one are written as before
            entry["inner_group"] = inner_group
        return entry

    def _entry(self, plan_id: str) -> dict[str, Any]:
        return next(item for item in (*self.rules, *self.correlations) if item["id"] == plan_id)


@dataclass(slots=True)
class Prepared:
    """A file's YAML documents as pySigma will read them, and what was changed on the way."""

    documents: list[Any]
    placeholders: list[list[str]]  # per document: catalog placeholders left unfilled
    notes: list[str]


def prepare_documents(
    text: str, source: str, variables: Mapping[str, Sequence[str]] | None = None
) -> Prepared:
    """The two repairs of the module docstring, on every document of one file."""
    variables = variables or {}
    documents = [d for d in yaml.safe_load_all(text) if d is not None]
    notes: list[str] = []
    placeholders = []
    for document in documents:
        found: set[str] = set()
        detection = document.get("detection") if isinstance(document, dict) else None
        if isinstance(detection, dict):
            document["detection"] = {
                name: item
                if name in _NOT_DETECTION_KEYS
                else _prepare_item(item, source, variables, found, notes)
                for name, item in detection.items()
            }
        placeholders.append(sorted(found))
    return Prepared(documents, placeholders, notes)


def _prepare_item(
    item: Any,
    source: str,
    variables: Mapping[str, Sequence[str]],
    found: set[str],
    notes: list[str],
) -> Any:
    """A search identifier: a map of fields, a list of maps, or keywords."""

    def values(value: Any, *, regex: bool) -> Any:
        if isinstance(value, list):
            out: list[Any] = []
            for one in value:
                prepared = values(one, regex=regex)
                out.extend(prepared) if isinstance(prepared, list) else out.append(prepared)
            return out
        return _prepare_value(value, source, variables, found, notes, regex=regex)

    def fields(selection: dict[Any, Any]) -> dict[Any, Any]:
        return {k: values(v, regex="|re" in str(k)) for k, v in selection.items()}

    if isinstance(item, dict):
        return fields(item)
    if isinstance(item, list):
        return [fields(x) if isinstance(x, dict) else values(x, regex=False) for x in item]
    return values(item, regex=False)


def _prepare_value(
    value: Any,
    source: str,
    variables: Mapping[str, Sequence[str]],
    found: set[str],
    notes: list[str],
    *,
    regex: bool,
) -> Any:
    """One value: an unquoted `{name}` read back as text, catalog placeholders filled."""
    if isinstance(value, dict) and _is_unquoted_placeholder(value):
        text = "{" + str(next(iter(value))) + "}"
        notes.append(f"{source}: unquoted {text} read as the text {text!r}")
        value = text
    if not isinstance(value, str) or regex:
        return value
    names = list(dict.fromkeys(CATALOG_PLACEHOLDER.findall(value)))
    found.update(n for n in names if n not in variables)
    texts = [value]
    for name in (n for n in names if n in variables):
        texts = [t.replace("{" + name + "}", str(v)) for t in texts for v in variables[name]]
    return texts if len(texts) != 1 else texts[0]


def _is_unquoted_placeholder(item: dict[Any, Any]) -> bool:
    """`{name}` unquoted in YAML: a one-key mapping whose value is null."""
    return len(item) == 1 and next(iter(item.values())) is None


def field_path(name: str) -> tuple[str, ...]:
    """A rule's field as a path into the API event: `data.` dropped, `{}` dropped."""
    text = name[len(STREAM_PREFIX) :] if name.startswith(STREAM_PREFIX) else name
    path = tuple(segment.removesuffix("{}") for segment in text.split("."))
    if not text or not all(path):
        raise SigmaRuleRefused(f"field {name!r} is not a path of keys")
    return path


def _string_atom(field_index: int | None, value: SigmaString, *, anywhere: bool) -> list[Any]:
    cased = isinstance(value, SigmaCasedString)
    parts: list[Any] = []
    pieces = [SpecialChars.WILDCARD_MULTI, *value.s, SpecialChars.WILDCARD_MULTI]
    for part in pieces if anywhere else value.s:
        if isinstance(part, Placeholder):
            raise SigmaRuleRefused(f"placeholder %{part.name}% has no value (give it a variable)")
        if part is SpecialChars.WILDCARD_MULTI:
            if parts[-1:] != [["any"]]:  # `**` is `*`
                parts.append(["any"])
        elif part is SpecialChars.WILDCARD_SINGLE:
            parts.append(["one"])
        elif isinstance(part, str):
            if parts and parts[-1][0] == "lit":
                parts[-1] = ["lit", parts[-1][1] + part]
            else:
                parts.append(["lit", part])
    literal = [p[1] for p in parts if p[0] == "lit"]
    shape = tuple(p[0] for p in parts)
    simple = {
        (): ("eq", ""),
        ("lit",): ("eq", None),
        ("lit", "any"): ("pre", None),
        ("any", "lit"): ("suf", None),
        ("any", "lit", "any"): ("sub", None),
    }.get(shape)
    if simple is not None:
        kind, text = simple
        return ["str", field_index, kind, literal[0] if text is None else text, cased]
    return ["glob", field_index, parts, cased]


def _alias_map(rule: SigmaCorrelationRule, ref: Any, base: Any) -> dict[str, str]:
    names = {ref.reference, getattr(base, "name", None), str(getattr(base, "id", ""))}
    mapping = {}
    for alias in rule.aliases or []:
        for target, field_name in alias.mapping.items():
            if getattr(target, "reference", target) in names:
                mapping[alias.alias] = field_name
    return mapping


def _name(rule: SigmaRule | SigmaCorrelationRule) -> str:
    return str(rule.name or rule.id or rule.title)


def _refuse_nested_repetition(pattern: str) -> None:
    """Python's `re` backtracks: `(a+)+` takes exponential time on a near miss. A repeated group
    that holds a repetition is the shape of that blow-up; such a rule is refused."""
    import re._parser as sre_parse  # type: ignore[import-not-found]  # the stdlib's parser

    def repeats(items: Any, inside: bool) -> bool:
        for op, arg in items:
            name = str(op)
            if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                _low, high, sub = arg
                unbounded = high > 1
                if unbounded and inside:
                    return True
                if repeats(sub, inside or unbounded):
                    return True
            elif name == "SUBPATTERN":
                if repeats(arg[-1], inside):
                    return True
            elif name == "BRANCH":
                if any(repeats(branch, inside) for branch in arg[1]):
                    return True
            elif name in ("ASSERT", "ASSERT_NOT") and repeats(arg[1], inside):
                return True
        return False

    try:
        parsed = sre_parse.parse(pattern)
    except re.error as error:
        raise SigmaRuleRefused(f"regex {pattern!r} is not a Python regex: {error}") from None
    if repeats(parsed, False):
        raise SigmaRuleRefused(
            f"regex {pattern!r} repeats a group that itself repeats (exponential backtracking)"
        )


def _derived_id(*parts: str) -> str:
    """Sigma makes `id` optional (the catalog's correlations have none): a stable one instead."""
    return str(uuid.uuid5(ID_NAMESPACE, json.dumps(parts)))


def refusal_lines(compiled: Compiled) -> list[str]:
    """One line per refused rule, for a person."""
    return [f"{r.source}: {r.rule}: {r.feature}" for r in compiled.refused]


__all__ = [
    "Compiled",
    "Prepared",
    "Refusal",
    "compile_paths",
    "compile_texts",
    "field_path",
    "prepare_documents",
    "refusal_lines",
]
