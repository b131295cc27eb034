"""`rules hunt`: a compiled rule as an Athena query over the S3 table and as a CloudWatch Logs
Insights query over the forwarded log group, translated from the plan the function evaluates.

No maintained pySigma backend targets Athena or Logs Insights on PyPI (docs/querying.md,
"Hunting"), and translating the *plan* rather than the Sigma text means the query is the rule as
the function runs it: `data.` already mapped onto the API event, placeholders filled as they were
at install, the same case folding. What is translated (the catalog's whole vocabulary): `and`,
`or`, `not`, string equality, prefix, suffix, substring and wildcards (cased or not), regular
expressions with their flags, and `null`. Anything else (cidr, numeric comparisons, `exists`,
field references, keywords) is refused by name: the function still evaluates it.

Athena (Trino SQL) over `auth0_user_logs` (template.yaml, AthenaTable):

- a field that is a string column (`type`, `ip`, `client_id`, ...) or a string field of a struct
  column (`security_context.ja4`) is compared as it is;
- a field inside `details` or `event_schema` (JSON text) is read with `json_extract`, and a list
  at its end is multi-valued as in the function: the atom holds if one element does (`filter`
  over the elements, `cardinality(...) > 0`). A list met *before* the last key is not followed
  (the function follows it): no catalog rule needs it;
- a field the table has no column for (the catalog's `data.request.body.allowlist`) is absent,
  as it is from every event Auth0 sends;
- every atom is `COALESCE(..., false)`: SQL's unknown is the function's false, so `not` means
  what it means there;
- a regex sees the value's first MAX_REGEX_INPUT characters, as in the function.

Logs Insights: fields are the flattened JSON paths Logs Insights discovers (`details.request.
path`); a list's elements are `field.0`, `field.1`, ...: the query looks at the first
INSIGHTS_LIST_ELEMENTS of them. Text tests are regular expressions (`=~`, `(?i)` unless cased).
It cannot run here (no local Logs Insights): tests/unit/test_hunt.py holds its text, per modifier.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from log_forwarder.exceptions import RulePackError
from log_forwarder.sigma_plan import MAX_REGEX_INPUT, fold_case

TABLE: Final = "auth0_user_logs"
# Columns of AthenaTable, by how a rule's field is read from them.
STRING_COLUMNS: Final = frozenset(
    {
        "date",
        "type",
        "description",
        "connection",
        "connection_id",
        "client_id",
        "client_name",
        "ip",
        "hostname",
        "user_id",
        "user_name",
        "audience",
        "scope",
        "strategy",
        "strategy_type",
        "log_id",
        "user_agent",
        "organization_id",
        "organization_name",
        "tenant_name",
        "_id",
    }
)
JSON_COLUMNS: Final = {"details": "details", "$event_schema": "event_schema"}
STRUCT_STRINGS: Final = {
    "security_context": frozenset({"ja3", "ja4"}),
    "location_info": frozenset(
        {"country_code", "country_code3", "country_name", "city_name", "time_zone"}
    ),
}
RESERVED: Final = frozenset({"date", "from", "to", "_id", "_forwarder"})
INSIGHTS_LIST_ELEMENTS: Final = 5
SHOWN: Final = ("date", "type", "description", "ip", "user_id", "user_name", "client_id", "log_id")
_SIMPLE_KEY: Final = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True, slots=True)
class Hunt:
    """One rule (or correlation) as the two queries."""

    rule_id: str
    title: str
    athena: str
    insights: str
    notes: tuple[str, ...] = ()


def hunt(document: Mapping[str, Any], rule_id: str) -> Hunt:
    """The queries of `rule_id` in a plan document; a correlation gives its rules' events grouped
    as it groups them (over the whole time range, not its sliding windows: docs/querying.md)."""
    fields = [tuple(f["path"]) for f in document.get("fields", [])]
    rules = {r["id"]: r for r in document.get("rules", [])}
    correlations = {c["id"]: c for c in document.get("correlations", [])}
    if rule_id in rules:
        rule = rules[rule_id]
        where_sql = _sql(rule["condition"], fields)
        where_insights = _insights(rule["condition"], fields)
        return Hunt(
            rule_id,
            rule.get("title") or rule_id,
            _athena_events(where_sql),
            _insights_events(where_insights),
            _rule_notes(rule),
        )
    if rule_id in correlations:
        return _correlation_hunt(correlations[rule_id], rules, fields)
    raise RulePackError(f"no rule or correlation {rule_id!r} in this plan")


def _rule_notes(rule: Mapping[str, Any]) -> tuple[str, ...]:
    notes = []
    if rule.get("placeholders"):
        notes.append(
            "unfilled placeholders (" + ", ".join(rule["placeholders"]) + ") are literal text: "
            "install the pack again with --var to fill them"
        )
    if rule.get("standalone") is False:
        notes.append("this rule only feeds a correlation: its events are not findings alone")
    return tuple(notes)


# -- Athena --------------------------------------------------------------------------------------


def _athena_events(where: str) -> str:
    columns = ", ".join(_column(c) for c in SHOWN)
    return (
        f'SELECT {columns}, "_forwarder".watched_user_id AS watched_user_id\n'
        f"FROM {TABLE}\n"
        f'WHERE "_forwarder".record_type IS NULL\n'
        f"  AND {where}\n"
        f'ORDER BY "date" DESC'
    )


def _column(name: str) -> str:
    return f'"{name}"' if name in RESERVED else name


@dataclass(frozen=True, slots=True)
class _Value:
    """How a field is read: one text (`scalar`), or the elements of a JSON value (`elements`)."""

    scalar: str | None = None
    elements: str | None = None


def _value(path: Sequence[str]) -> _Value:
    head, rest = path[0], list(path[1:])
    if head in STRING_COLUMNS and not rest:
        return _Value(scalar=_column(head))
    if head in STRUCT_STRINGS and len(rest) == 1 and rest[0] in STRUCT_STRINGS[head]:
        return _Value(scalar=f"{head}.{rest[0]}")
    if head == "isMobile" and not rest:
        return _Value(scalar="CAST(ismobile AS varchar)")
    if head in JSON_COLUMNS:
        json_path = "$" + "".join(
            f".{key}" if _SIMPLE_KEY.fullmatch(key) else '["' + key.replace('"', '\\"') + '"]'
            for key in rest
        )
        found = f"json_extract({JSON_COLUMNS[head]}, {_literal(json_path)})"
        # A JSON array's elements, or the one value found (null when absent).
        return _Value(elements=f"COALESCE(TRY_CAST({found} AS ARRAY(JSON)), ARRAY[{found}])")
    return _Value()  # no such column: absent from every row


@dataclass(frozen=True, slots=True)
class _Dialect:
    """How a query language writes the boolean structure; `atom` writes one test of a field."""

    true: str
    false: str
    conjunctions: Mapping[str, str]  # "and"/"or" -> the keyword
    negation: str
    atom: Callable[[Sequence[Any], tuple[str, ...]], str]


def _render(expr: Sequence[Any], fields: Sequence[tuple[str, ...]], dialect: _Dialect) -> str:
    op = expr[0]
    if op in ("and", "or"):
        parts = [_render(arg, fields, dialect) for arg in expr[1:]]
        if not parts:
            return dialect.true if op == "and" else dialect.false
        return "(" + f" {dialect.conjunctions[op]} ".join(parts) + ")"
    if op == "not":
        return f"{dialect.negation} {_render(expr[1], fields, dialect)}"
    if op == "const":
        return dialect.true if expr[1] else dialect.false
    if op not in ("str", "glob", "re", "null") or expr[1] is None:
        raise RulePackError(
            f"hunting cannot translate {_what(expr)} yet (the function evaluates it)"
        )
    return dialect.atom(expr, fields[expr[1]])


def _sql(expr: Sequence[Any], fields: Sequence[tuple[str, ...]]) -> str:
    return _render(expr, fields, _ATHENA)


def _sql_atom(expr: Sequence[Any], path: tuple[str, ...]) -> str:
    op = expr[0]
    value = _value(path)
    if op == "null":
        if value.elements is not None:
            return (
                f"COALESCE(cardinality({value.elements}) = 0 OR cardinality(filter("
                f"{value.elements}, e -> json_extract_scalar(e, '$') IS NULL)) > 0, false)"
            )
        return "true" if value.scalar is None else f"({value.scalar} IS NULL)"
    if value.elements is not None:
        test = _text_test(expr, "json_extract_scalar(e, '$')")
        return f"COALESCE(cardinality(filter({value.elements}, e -> {test})) > 0, false)"
    if value.scalar is None:
        return "false"
    return f"COALESCE({_text_test(expr, value.scalar)}, false)"


def _text_test(expr: Sequence[Any], text: str) -> str:
    op = expr[0]
    if op == "re":
        flags = "".join(sorted(set(expr[3])))
        pattern = (f"(?{flags})" if flags else "") + expr[2]
        return f"regexp_like(substr({text}, 1, {MAX_REGEX_INPUT}), {_literal(pattern)})"
    if op == "str":
        kind, wanted, cased = expr[2], expr[3], expr[4] is True
        subject = text if cased else f"lower({text})"
        wanted = wanted if cased else fold_case(wanted)
        if kind == "eq":
            return f"{subject} = {_literal(wanted)}"
        like = {"pre": "{}%", "suf": "%{}", "sub": "%{}%"}[kind].format(_like_escape(wanted))
        return f"{subject} LIKE {_literal(like)} ESCAPE '\\'"
    parts, cased = expr[2], expr[3] is True
    pattern = "".join(
        "%"
        if part == ["any"]
        else "_"
        if part == ["one"]
        else _like_escape(part[1] if cased else fold_case(part[1]))
        for part in parts
    )
    subject = text if cased else f"lower({text})"
    return f"{subject} LIKE {_literal(pattern)} ESCAPE '\\'"


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _what(expr: Sequence[Any]) -> str:
    names = {
        "cidr": "cidr",
        "cmp": "a numeric comparison",
        "exists": "exists",
        "ref": "a field reference",
    }
    if expr[0] in names:
        return names[expr[0]]
    return "a keyword (a value without a field)"


# -- Logs Insights -------------------------------------------------------------------------------


def _insights_events(where: str) -> str:
    return (
        "fields @timestamp, type, description, ip, user_id, user_name, client_id, log_id, "
        "_forwarder.watched_user_id\n"
        f"| filter ispresent(log_id) and not ispresent(_forwarder.record_type) and {where}\n"
        "| sort @timestamp desc\n"
        "| limit 10000"
    )


def _insights_fields(path: Sequence[str]) -> list[str]:
    """The field and, for a path that may end in a list, its first elements' fields."""
    name = ".".join(path)
    names = [name]
    if path[0] in JSON_COLUMNS or path[0] in ("scope",):
        names += [f"{name}.{i}" for i in range(INSIGHTS_LIST_ELEMENTS)]
    return [_insights_name(n) for n in names]


def _insights_name(name: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_.@$]+", name):
        return name
    if re.search(r"[`\x00-\x1f\x7f]", name):
        # No quoting is documented for a backtick inside backticks: refused, not guessed.
        raise RulePackError(
            f"field {name!r} cannot be named in Logs Insights (a backtick or control)"
        )
    return "`" + name + "`"


def _insights(expr: Sequence[Any], fields: Sequence[tuple[str, ...]]) -> str:
    return _render(expr, fields, _INSIGHTS)


def _insights_atom(expr: Sequence[Any], path: tuple[str, ...]) -> str:
    op = expr[0]
    names = _insights_fields(path)
    if op == "null":
        present = " or ".join(f"ispresent({n})" for n in names)
        return f"not ({present})"
    pattern = _insights_regex(expr)
    return "(" + " or ".join(f"{n} =~ {pattern}" for n in names) + ")"


def _insights_regex(expr: Sequence[Any]) -> str:
    op = expr[0]
    if op == "re":
        flags = "".join(sorted(set(expr[3])))
        body = (f"(?{flags})" if flags else "") + expr[2]
    elif op == "str":
        kind, text, cased = expr[2], expr[3], expr[4] is True
        literal = re.escape(text)
        anchored = {"eq": f"^{literal}$", "pre": f"^{literal}", "suf": f"{literal}$"}
        body = ("" if cased else "(?i)") + anchored.get(kind, literal)
    else:
        parts, cased = expr[2], expr[3] is True
        inner = "".join(
            ".*" if p == ["any"] else "." if p == ["one"] else re.escape(p[1]) for p in parts
        )
        body = ("" if cased else "(?i)") + f"^{inner}$"
    return "/" + str(body).replace("/", "\\/") + "/"


# -- correlations --------------------------------------------------------------------------------


def _correlation_hunt(
    correlation: Mapping[str, Any],
    rules: Mapping[str, Mapping[str, Any]],
    fields: Sequence[tuple[str, ...]],
) -> Hunt:
    inner = list(correlation.get("inner_group", {}))
    if inner:
        # Each step is a query of its own; joining a correlation's windows to another's is
        # what the function does, not something these queries can say over a time range.
        raise RulePackError(
            f"{correlation['id']} is a chain (a correlation of the correlation "
            f"{', '.join(inner)}): no single Athena or Logs Insights query renders it; hunt its "
            f"steps: " + ", ".join(correlation["rules"])
        )
    members = [rules[rid] for rid in correlation["rules"]]
    where_sql = "(" + " OR ".join(_sql(r["condition"], fields) for r in members) + ")"
    where_insights = "(" + " or ".join(_insights(r["condition"], fields) for r in members) + ")"
    first = correlation["rules"][0]
    group_paths = [fields[i] for i in correlation["group_fields"][first]]
    groups_sql = [_group_sql(path) for path in group_paths]
    groups_insights = [_insights_fields(path)[0] for path in group_paths]
    kind = correlation["type"]
    if kind == "value_count":
        counted = fields[correlation["value_fields"][first]]
        metric_sql = f"count(DISTINCT {_group_sql(counted)})"
        metric_insights = f"count_distinct({_insights_fields(counted)[0]})"
    else:
        metric_sql, metric_insights = "count(*)", "count(*)"
    condition = correlation["condition"]
    symbols = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<=", "eq": "="}
    having = " AND ".join(f"metric {symbols[op]} {count:g}" for op, count in condition.items())
    keys = ", ".join(f"{g} AS group_{i}" for i, g in enumerate(groups_sql))
    athena = _correlation_athena(keys, len(groups_sql), where_sql, metric_sql, having)
    by = ", ".join(groups_insights)
    insights = (
        "fields @timestamp, log_id\n"
        f"| filter ispresent(log_id) and not ispresent(_forwarder.record_type) and "
        f"{where_insights}\n"
        f"| stats {metric_insights} as metric, min(@timestamp) as first_seen, "
        f"max(@timestamp) as last_seen by {by}\n"
        f"| filter {having.replace(' AND ', ' and ')}\n"
        "| sort metric desc"
    )
    notes = (
        f"a {kind} correlation over {correlation['timespan_ms'] // 60000} minute(s): these "
        "queries count over the whole time range you give, not per sliding window as the "
        "function does; narrow the range (--since/--until) to the window to read them alike",
    )
    return Hunt(
        correlation["id"], correlation.get("title") or correlation["id"], athena, insights, notes
    )


def _group_sql(path: Sequence[str]) -> str:
    value = _value(path)
    if value.scalar is not None:
        return value.scalar
    if value.elements is not None:
        json_path = "$" + "".join(f".{k}" for k in path[1:])
        return f"json_extract_scalar({JSON_COLUMNS[path[0]]}, {_literal(json_path)})"
    return "CAST(NULL AS varchar)"


def _correlation_athena(keys: str, groups: int, where: str, metric: str, having: str) -> str:
    names = ", ".join(f"group_{i}" for i in range(groups))
    # Every text in it is a quoted literal or a column of the table's own schema: nothing a
    # pack holds reaches the query unquoted.
    return (
        f"SELECT {names}, {metric} AS metric,\n"  # noqa: S608
        '       min("date") AS first_seen, max("date") AS last_seen\n'
        "FROM (\n"
        f"  SELECT {keys}, *\n"
        f"  FROM {TABLE}\n"
        '  WHERE "_forwarder".record_type IS NULL\n'
        f"    AND {where}\n"
        ")\n"
        f"GROUP BY {names}\n"
        f"HAVING {having.replace('metric', metric)}\n"
        "ORDER BY metric DESC"
    )


_ATHENA: Final = _Dialect("true", "false", {"and": "AND", "or": "OR"}, "NOT", _sql_atom)
_INSIGHTS: Final = _Dialect("(1 = 1)", "(1 = 0)", {"and": "and", "or": "or"}, "not", _insights_atom)
