"""`rules hunt`: the Athena SQL of every catalog rule, run in DuckDB over the table the template
declares, matches exactly the events the function's evaluator matches; the Logs Insights text,
which cannot run here, is held to golden text per modifier (cli/hunt.py).

GIVEN the catalog compiled, and a corpus (the shared sample events, three schema-valid events per
Auth0 log type, and each rule's matching and near-miss mutations: tests/sigma_oracle.py) written
as the S3 sink writes objects, WHEN each non-correlation rule's hunt SQL runs in DuckDB over the
view of `auth0_user_logs` (tests/athena_local.py), THEN it returns exactly the events
`Plan.matching` gives that rule.

What DuckDB needs beyond tests/athena_local.py's view, all of it mechanical and said here:
- `json_extract_scalar` is a macro with Trino's meaning (NULL for an object or an array, where
  DuckDB's json_extract_string gives their text);
- `ARRAY(JSON)` is DuckDB's `JSON[]`; a quoted JSON path key `["k"]` is DuckDB's `."k"`;
- `json_extract(details, ...)` reads `TRY_CAST(details AS JSON)`: Trino's json_extract gives NULL
  for text that is not JSON (a schema event's `details: "details-1"`), DuckDB's raises;
- `regexp_like` is Python's `re.search` (DuckDB's RE2 has no look-ahead; Trino's regexp_like, on
  Joni, has). That the catalog's two patterns mean the same in Joni is not checked here;
- the lambda arrow `e -> ...` is Trino's syntax, which DuckDB 2 accepts with a setting.

Left out of the corpus, because Auth0 sends no such event and the table cannot show it: events
that put a list or an object into a top-level string column (`type: ["sapi"]`, which the table
turns into JSON text), and events holding a top-level key a rule names but the table has no
column for (`request`, of `unrecognized_ip_in_allowlist`'s `data.request.body.allowlist`: to the
query that field is absent, and the rule's `not filter` holds; docs/sigma.md says why the
function's reading of that rule is no better).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import duckdb
import pytest
from duckdb import sqltypes

from devtools.local_aws import _Resolver, load_template
from log_forwarder.cli.hunt import STRING_COLUMNS, hunt
from log_forwarder.exceptions import RulePackError
from tests.athena_local import create_view, write_jsonl_gz
from tests.sigma_oracle import CATALOG, SAMPLES, SCHEMAS

needs_shared = pytest.mark.skipif(
    not (CATALOG.is_dir() and SAMPLES.exists() and SCHEMAS.is_dir()),
    reason=f"the Auth0 catalog, sample events or log schemas are not under {CATALOG.parents[1]} "
    "(../shared is not checked out)",
)


def athena_to_duckdb(sql: str) -> str:
    sql = sql.replace("AS ARRAY(JSON)", "AS JSON[]")
    # Trino's json_extract reads text that is not JSON as NULL; DuckDB's raises.
    sql = re.sub(
        r"json_extract\((details|event_schema),", r"json_extract(TRY_CAST(\1 AS JSON),", sql
    )
    return re.sub(r'\["((?:[^"\\]|\\.)*)"\]', r'."\1"', sql)


def glue_table(bucket: str) -> dict[str, Any]:
    template = load_template()
    resolver = _Resolver(
        template,
        {"Destinations": "s3"},
        stack_name="hunt",
        refs={"ForwardedBucket": bucket, "AthenaDatabase": "hunt"},
    )
    properties = resolver.resolve(template["Resources"]["AthenaTable"]["Properties"])
    return dict(properties["TableInput"])


def connect(root: Path, events: list[dict[str, Any]]) -> duckdb.DuckDBPyConnection:
    records = [
        {**event, "_forwarder": {"watched_user_id": str(i)}} for i, event in enumerate(events)
    ]
    write_jsonl_gz(root / "b" / "auth0-logs" / "dt=2026-01-01" / "u" / "1.jsonl.gz", records)
    db = duckdb.connect()
    db.execute("SET lambda_syntax='ENABLE_SINGLE_ARROW'")
    db.execute(
        "CREATE MACRO json_extract_scalar(j, p) AS CASE WHEN json_type(j, p) IN "
        "('OBJECT', 'ARRAY') THEN NULL ELSE json_extract_string(j, p) END"
    )
    db.create_function(
        "regexp_like",
        lambda text, pattern: None if text is None else re.search(pattern, text) is not None,
        [sqltypes.VARCHAR, sqltypes.VARCHAR],
        sqltypes.BOOLEAN,
        null_handling="special",
    )
    create_view(db, glue_table("b"), local_root=root)
    return db


def matched_rows(db: duckdb.DuckDBPyConnection, sql: str) -> set[int]:
    cursor = db.execute(athena_to_duckdb(sql))
    column = [d[0] for d in cursor.description].index("watched_user_id")
    return {int(row[column]) for row in cursor.fetchall()}


def realistic(event: dict[str, Any], unseen: frozenset[str]) -> bool:
    """No list or object in a string column, nothing under a top-level key the table lacks."""
    if any(isinstance(event.get(c), list | dict) for c in STRING_COLUMNS):
        return False
    return not unseen.intersection(event)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from log_forwarder.cli.sigma_compiler import compile_paths
    from log_forwarder.sigma_plan import load_plan
    from tests.sigma_oracle import corpus

    document = compile_paths([CATALOG]).plan
    # Top-level keys rules name that no column holds (the catalog's data.request...).
    columns = {c["Name"] for c in glue_table("b")["StorageDescriptor"]["Columns"]}
    unseen = frozenset(
        f["path"][0]
        for f in document["fields"]
        if f["path"][0] not in columns | {"isMobile", "$event_schema"}
    )
    assert unseen == {"request"}
    events = [e for e in corpus() if realistic(e, unseen)]
    db = connect(tmp_path_factory.mktemp("hunt"), events)
    plan = load_plan(document)
    matched = [{rule.id for rule in plan.matching(event)} for event in events]
    return {"document": document, "events": events, "matched": matched, "db": db}


def catalog_rule_ids() -> list[tuple[str, str]]:
    if not CATALOG.is_dir():
        return []
    from log_forwarder.cli.sigma_compiler import compile_paths

    return [(r["source"], r["id"]) for r in compile_paths([CATALOG]).plan["rules"]]


@needs_shared
@pytest.mark.parametrize(("source", "rule_id"), catalog_rule_ids(), ids=lambda v: v)
def test_the_hunt_sql_returns_the_events_the_evaluator_matches(
    source: str, rule_id: str, catalog: dict[str, Any]
) -> None:
    sql = hunt(catalog["document"], rule_id).athena
    theirs = matched_rows(catalog["db"], sql)
    mine = {i for i, ids in enumerate(catalog["matched"]) if rule_id in ids}
    assert mine == theirs, (
        f"{source}: only the evaluator {sorted(mine - theirs)[:5]}, only the SQL "
        f"{sorted(theirs - mine)[:5]}"
    )
    # Not trivially equal: each rule matches some events and misses others.
    assert mine and len(mine) < len(catalog["events"])


@needs_shared
def test_a_correlation_hunt_groups_its_rules_events_as_it_groups_them(
    catalog: dict[str, Any],
) -> None:
    document = catalog["document"]
    by_source = {c["source"]: c for c in document["correlations"]}
    correlation = by_source["credential_stuffing_signals.yml"]
    cursor = catalog["db"].execute(athena_to_duckdb(hunt(document, correlation["id"]).athena))
    rows = cursor.fetchall()
    (base,) = correlation["rules"]
    per_ip: dict[str, int] = {}
    for event, ids in zip(catalog["events"], catalog["matched"], strict=True):
        if base in ids and isinstance(event.get("ip"), str):
            per_ip[event["ip"].lower()] = per_ip.get(event["ip"].lower(), 0) + 1
    wanted = {ip: n for ip, n in per_ip.items() if n > 1}
    assert wanted
    assert {str(row[0]).lower(): row[1] for row in rows} == wanted


# -- the translation, one modifier at a time --------------------------------------------------


def plan_document(condition: list[Any], field: str = "data.details.request.path") -> Any:
    from log_forwarder.cli.sigma_compiler import field_path

    return {
        "fields": [{"name": field, "path": list(field_path(field))}],
        "rules": [{"id": "r", "title": "t", "condition": condition}],
        "correlations": [],
    }


@pytest.mark.parametrize(
    ("condition", "field", "athena", "insights"),
    [
        # A string column, compared as text, case folded on both sides.
        (
            ["str", 0, "eq", "SAPI", False],
            "data.type",
            "COALESCE(lower(type) = 'sapi', false)",
            "(type =~ /(?i)^SAPI$/)",
        ),
        # cased: no folding; LIKE's own characters escaped.
        (
            ["str", 0, "pre", "50%_off", True],
            "data.user_agent",
            "COALESCE(user_agent LIKE '50\\%\\_off%' ESCAPE '\\', false)",
            "(user_agent =~ /^50%_off/)",
        ),
        # A field inside details: each element of a list, or the one value; Logs Insights
        # looks at the value and the first five elements it flattens the list into.
        (
            ["str", 0, "suf", "block", False],
            "data.details.response.body.shields{}",
            "COALESCE(cardinality(filter(COALESCE(TRY_CAST(json_extract(details, "
            "'$.response.body.shields') AS ARRAY(JSON)), ARRAY[json_extract(details, "
            "'$.response.body.shields')]), e -> lower(json_extract_scalar(e, '$')) LIKE "
            "'%block' ESCAPE '\\')) > 0, false)",
            "(details.response.body.shields =~ /(?i)block$/ or details.response.body.shields.0 "
            "=~ /(?i)block$/ or details.response.body.shields.1 =~ /(?i)block$/ or "
            "details.response.body.shields.2 =~ /(?i)block$/ or details.response.body.shields.3 "
            "=~ /(?i)block$/ or details.response.body.shields.4 =~ /(?i)block$/)",
        ),
        # A key Trino's JSON path cannot write unquoted; Logs Insights quotes it in backticks.
        (
            ["str", 0, "sub", "x", False],
            "data.details.stage.pre-user-registration",
            "COALESCE(cardinality(filter(COALESCE(TRY_CAST(json_extract(details, "
            "'$.stage[\"pre-user-registration\"]') AS ARRAY(JSON)), ARRAY[json_extract(details, "
            "'$.stage[\"pre-user-registration\"]')]), e -> lower(json_extract_scalar(e, '$')) "
            "LIKE '%x%' ESCAPE '\\')) > 0, false)",
            "(`details.stage.pre-user-registration` =~ /(?i)x/ or "
            "`details.stage.pre-user-registration.0` =~ /(?i)x/ or "
            "`details.stage.pre-user-registration.1` =~ /(?i)x/ or "
            "`details.stage.pre-user-registration.2` =~ /(?i)x/ or "
            "`details.stage.pre-user-registration.3` =~ /(?i)x/ or "
            "`details.stage.pre-user-registration.4` =~ /(?i)x/)",
        ),
        # Wildcards: `*` and `?` are LIKE's % and _, and the regex's .* and .
        (
            ["glob", 0, [["lit", "a"], ["any"], ["lit", "b"], ["one"]], False],
            "data.client_name",
            "COALESCE(lower(client_name) LIKE 'a%b_' ESCAPE '\\', false)",
            "(client_name =~ /(?i)^a.*b.$/)",
        ),
        # A regex keeps its flags inline and sees MAX_REGEX_INPUT characters, as the function.
        (
            ["re", 0, "a/b", "i"],
            "data.description",
            "COALESCE(regexp_like(substr(description, 1, 1024), '(?i)a/b'), false)",
            "(description =~ /(?i)a\\/b/)",
        ),
        # null: absent or null (Logs Insights: not present).
        (
            ["null", 0],
            "data.user_name",
            "(user_name IS NULL)",
            "not (ispresent(user_name))",
        ),
        # A field the table has no column for is absent from every row.
        (
            ["str", 0, "eq", "x", False],
            "data.request.body.allowlist",
            "false",
            "(request.body.allowlist =~ /(?i)^x$/)",
        ),
        # not: the function's false for what SQL calls unknown, hence COALESCE under NOT.
        (
            ["not", ["str", 0, "eq", "x", False]],
            "data.ip",
            "NOT COALESCE(lower(ip) = 'x', false)",
            "not (ip =~ /(?i)^x$/)",
        ),
    ],
)
def test_each_modifier_is_translated_as_the_function_evaluates_it(
    condition: list[Any], field: str, athena: str, insights: str
) -> None:
    queries = hunt(plan_document(condition, field), "r")
    assert f"  AND {athena}\n" in queries.athena
    assert f"and {insights}\n" in queries.insights


@pytest.mark.parametrize(
    ("condition", "named"),
    [
        (["cidr", 0, "10.0.0.0/8"], "cidr"),
        (["cmp", 0, "gt", 3], "numeric comparison"),
        (["exists", 0, True], "exists"),
        (["str", None, "sub", "x", False], "keyword"),
    ],
)
def test_what_hunting_cannot_translate_is_refused_by_name(condition: list[Any], named: str) -> None:
    with pytest.raises(RulePackError, match=named):
        hunt(plan_document(condition), "r")


def test_a_hostile_value_stays_inside_its_literal() -> None:
    queries = hunt(plan_document(["str", 0, "eq", "x' OR '1'='1", True], "data.ip"), "r")
    assert "COALESCE(ip = 'x'' OR ''1''=''1', false)" in queries.athena


def test_a_field_logs_insights_cannot_quote_is_refused_not_guessed() -> None:
    with pytest.raises(RulePackError, match="cannot be named in Logs Insights"):
        hunt(plan_document(["str", 0, "eq", "x", False], "data.details.a`b"), "r")
