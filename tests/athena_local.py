"""Run the Athena queries of docs/querying.md locally with DuckDB, over what the forwarder wrote to S3.

Athena is not available here, so the queries run in DuckDB against a local copy of the bucket.
The Athena table is not re-declared for DuckDB by hand: the view is built from the Glue table
that the template declares, as the local deployment created it (`glue.get_table`), so a column,
type, SerDe mapping or location the template gets wrong breaks these tests.

The translation, all of it mechanical:

1. The table. `auth0_user_logs` becomes a DuckDB view of the same name over
   `read_json(..., hive_partitioning = true)`:
   - the objects: `storage.location.template` with `s3://` mapped to the local copy of the bucket,
     `${dt}` to `*`, and `**/*` appended, because Athena reads every object under a partition's
     location, subfolders included (the forwarder writes `dt=…/{user}/{batch}.jsonl.gz`), except,
     as Hive does, files and folders whose name starts with `_` or `.`;
   - the columns: the Glue columns and types (string → VARCHAR, struct → STRUCT, array → [] …);
     a value of another JSON type in a string column becomes its JSON text in both engines
     (`details`, `scope` as an array);
   - the JSON keys: the OpenX SerDe's `mapping.<column>` properties (`ismobile` ← `isMobile`,
     `event_schema` ← `$event_schema`); the table is case-sensitive (`case.insensitive=false`),
     so every other key must equal its column's name, as DuckDB also requires;
   - the partition key `dt` keeps its Glue type (string), not DuckDB's guess (a date);
   - partition projection: only days within `projection.dt.range` are visible, as in Athena.
2. The query text. `json_extract_scalar(` becomes `json_extract_string(` (same arguments, same
   result). Nothing else is rewritten: the cookbook's queries use only syntax both engines share.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

README_QUERY = re.compile(
    r"<!-- athena-query: (?P<name>[a-z0-9-]+) -->\s*```sql\n(?P<sql>.*?)\n```", re.S
)

_PRIMITIVES = {
    "string": "VARCHAR",
    "boolean": "BOOLEAN",
    "int": "INTEGER",
    "bigint": "BIGINT",
    "double": "DOUBLE",
}


def readme_queries(readme_text: str) -> dict[str, str]:
    """The Athena queries of docs/querying.md, by the name in their `<!-- athena-query: … -->` marker."""
    queries: dict[str, str] = {}
    for match in README_QUERY.finditer(readme_text):
        name = match.group("name")
        assert name not in queries, f"two README queries are named {name}"
        queries[name] = match.group("sql")
    return queries


def to_duckdb(athena_sql: str) -> str:
    """The one textual rewrite (see the module docstring)."""
    return re.sub(r"\bjson_extract_scalar\s*\(", "json_extract_string(", athena_sql, flags=re.I)


def duckdb_type(glue_type: str) -> str:
    """A Hive/Glue type string as a DuckDB type."""
    text, position = glue_type.replace(" ", ""), 0

    def parse() -> str:
        nonlocal position
        match = re.compile(r"[a-z]+").match(text, position)
        assert match, f"bad type at {position} in {glue_type!r}"
        name, position = match.group(0), match.end()
        if name == "struct":
            position += 1  # <
            fields = []
            while text[position] != ">":
                field = re.compile(r"[A-Za-z0-9_$]+").match(text, position)
                assert field and text[field.end()] == ":", glue_type
                position = field.end() + 1
                fields.append(f'"{field.group(0)}" {parse()}')
                if text[position] == ",":
                    position += 1
            position += 1  # >
            return f"STRUCT({', '.join(fields)})"
        if name == "array":
            position += 1
            element = parse()
            position += 1
            return f"{element}[]"
        assert name in _PRIMITIVES, f"no DuckDB type for {name!r} in {glue_type!r}"
        return _PRIMITIVES[name]

    result = parse()
    assert position == len(text), glue_type
    return result


def projection_bounds(range_spec: str, today: datetime) -> tuple[str, str]:
    """`projection.dt.range` ("2024-01-01,NOW+1DAYS") as the first and last visible day."""

    def bound(text: str) -> str:
        text = text.strip()
        relative = re.fullmatch(r"NOW(?:([+-])(\d+)DAYS?)?", text)
        if relative:
            days = int(relative.group(2) or 0) * (-1 if relative.group(1) == "-" else 1)
            return (today + timedelta(days=days)).strftime("%Y-%m-%d")
        datetime.strptime(text, "%Y-%m-%d")  # only dates (and NOW±n DAYS) are used here
        return text

    start, end = range_spec.split(",")
    return bound(start), bound(end)


def copy_bucket(s3: Any, bucket: str, root: Path) -> int:
    """Every object of the bucket as a file under root/bucket/key; returns how many were copied.

    Keys ending in '/' (folder markers the S3 console creates) are directories, not files.
    """
    count = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            target = root / bucket / item["Key"]
            if item["Key"].endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())
            count += 1
    return count


def write_jsonl_gz(path: Path, records: list[dict[str, Any]]) -> None:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r, separators=(",", ":"), ensure_ascii=False) + "\n" for r in records)
    path.write_bytes(gzip.compress(text.encode("utf-8"), mtime=0))


def create_view(
    connection: duckdb.DuckDBPyConnection,
    table: Mapping[str, Any],
    *,
    local_root: Path,
    today: datetime | None = None,
) -> str:
    """Create the DuckDB view standing for the Glue `table` over local_root; returns its SQL."""
    today = today or datetime.now(UTC)
    parameters = table["Parameters"]
    storage = table["StorageDescriptor"]
    serde = storage["SerdeInfo"]
    assert serde["SerializationLibrary"] == "org.openx.data.jsonserde.JsonSerDe"
    serde_parameters = serde.get("Parameters", {})
    # A case-insensitive table would match keys whatever their case; DuckDB matches exactly.
    assert serde_parameters.get("case.insensitive") == "false"
    mappings = {
        name.removeprefix("mapping."): key
        for name, key in serde_parameters.items()
        if name.startswith("mapping.")
    }
    (partition,) = table["PartitionKeys"]
    assert parameters["projection.enabled"] == "true"
    assert parameters[f"projection.{partition['Name']}.type"] == "date"
    assert parameters[f"projection.{partition['Name']}.format"] == "yyyy-MM-dd"
    template = parameters["storage.location.template"]
    assert template.startswith("s3://") and template.endswith("/")
    local = str(local_root) + "/" + template.removeprefix("s3://")
    pattern = local.replace("${" + partition["Name"] + "}", "*") + "**/*"

    json_columns = {
        mappings.get(column["Name"], column["Name"]): duckdb_type(column["Type"])
        for column in storage["Columns"]
    }
    partition_type = duckdb_type(partition["Type"])
    first, last = projection_bounds(parameters[f"projection.{partition['Name']}.range"], today)
    select = ", ".join(
        f"{_quote(mappings.get(c['Name'], c['Name']))} AS {_quote(c['Name'])}"
        for c in storage["Columns"]
    )
    name = _quote(table["Name"])
    partition_column = _quote(partition["Name"])
    table_root = Path(local.split("${")[0]).parent
    files = sorted(
        str(path)
        for path in Path(local_root).glob(pattern.removeprefix(str(local_root) + "/"))
        if path.is_file() and not _hidden(path.relative_to(table_root))
    )
    if files:
        columns_literal = (
            "{"
            + ", ".join(
                f"{_literal(key)}: {_literal(value)}" for key, value in json_columns.items()
            )
            + "}"
        )
        source = (
            f"read_json([{', '.join(map(_literal, files))}], format = 'newline_delimited', "
            f"hive_partitioning = true, "
            f"hive_types = {{{_literal(partition['Name'])}: {_literal(partition_type)}}}, "
            f"columns = {columns_literal})"
        )
        # Built from the template's own table definition, quoted: no outside input.
        sql = (
            f"CREATE OR REPLACE VIEW {name} AS SELECT {select}, {partition_column} FROM {source} "  # noqa: S608
            f"WHERE {partition_column} BETWEEN {_literal(first)} AND {_literal(last)}"
        )
    else:
        # No object yet: Athena answers with no rows; read_json would fail on an empty list.
        nulls = ", ".join(
            f"CAST(NULL AS {duckdb_type(c['Type'])}) AS {_quote(c['Name'])}"
            for c in storage["Columns"]
        )
        sql = (
            f"CREATE OR REPLACE VIEW {name} AS SELECT {nulls}, "
            f"CAST(NULL AS {partition_type}) AS {partition_column} WHERE false"
        )
    connection.execute(sql)
    return sql


def _hidden(relative: Path) -> bool:
    """Hive (and so Athena) skips files and folders whose name starts with '_' or '.'."""
    return any(part.startswith(("_", ".")) for part in relative.parts)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
