"""What people watching these accounts see: the Athena queries of docs/querying.md, the saved Logs Insights
queries and the dashboard, checked against what the real handler wrote.

One end-to-end data set serves every test here. Three watched users (ids with `|`, `/`, spaces and
an accent) get two weeks of realistic history, a credential-stuffing burst from many addresses and
countries, MFA enrolments and removals (and MFA events that are neither), Management API writes,
an event whose `scope` is an array, and then a tenant whose retention expires events while the
function does not run (gap records). The template is deployed on moto's server, the handler runs
over the Auth0 simulator, and:

- each README query runs in DuckDB over a local copy of the bucket, through a view built from the
  Glue table the template declares (tests/athena_local.py says what is translated, and how); the
  expected answer of each query is computed here, in Python, from the events seeded;
- every field the saved Logs Insights queries and the dashboard's log widgets name exists in the
  records the run wrote to CloudWatch Logs;
- every metric the dashboard shows is one the function emitted, in its namespace and dimension.

Findings are the ones the handler's detection rules wrote for the seeded events. The data set
produces no malformed entry, so one quarantine record, in the documented format, is added to the
bucket next to what the handler wrote.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from devtools.auth0_simulator import Auth0Simulator, RateLimit
from devtools.harness import Invocation, LocalDeployment
from devtools.local_aws import LocalAws, _Resolver, load_template
from devtools.traffic import attack_burst, generate_user_events, iso
from tests.athena_local import copy_bucket, create_view, readme_queries, to_duckdb, write_jsonl_gz

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "docs" / "querying.md"  # the Athena cookbook, moved out of the README

ADMIN = "auth0|admin-7f3a9c"
ODD = "google-oauth2|1098/odd id@x=y"
SAML = "samlp|corp|ana maría"
USERS = (ADMIN, ODD, SAML)

# The definitions the expected answers use, written out independently of the cookbook's SQL.
FAILED_LOGIN = {"f", "fp", "fu", "fc", "fco", "fcoa", "fens"}
MFA_CHANGE = {
    "gd_start_enroll",
    "gd_enrollment_complete",
    "gd_start_enroll_failed",
    "gd_webauthn_enrollment_failed",
    "gd_unenroll",
    "gd_user_delete",
    "gd_update_device_account",
    "gd_recovery_succeed",
}
MANAGEMENT_API = {"sapi", "fapi"}
NEW_WITHIN_DAYS = 7


@dataclass
class DataSet:
    stack: LocalDeployment
    forwarded: list[dict[str, Any]]  # every seeded event the tenant still held when read
    lost: list[dict[str, Any]]  # seeded events that expired before the function ran again
    gap_records: list[dict[str, Any]]  # the gap records in S3, as the handler wrote them
    finding_records: list[dict[str, Any]]  # the findings the handler's detection rules wrote
    future_records: list[dict[str, Any]]  # a quarantine record, in the documented format
    cloudwatch_records: list[dict[str, Any]]
    invocations: list[Invocation]
    glue_table: dict[str, Any]
    db: duckdb.DuckDBPyConnection
    view_sql: str
    local_root: Path
    today: date = field(default_factory=lambda: datetime.now(UTC).date())


def crafted(
    user: str, kind: str, when: datetime, rng: random.Random, **fields: Any
) -> dict[str, Any]:
    """A realistic event of `user` (identity, place, client), made into a `kind` event."""
    (event,) = generate_user_events(
        user, count=1, start=when, end=when + timedelta(milliseconds=1), rng=rng
    )
    event.update(type=kind, **fields)
    return event


def management_call(
    user: str, when: datetime, rng: random.Random, method: str, path: str, status: int
) -> dict[str, Any]:
    ok = status < 400
    return crafted(
        user,
        "sapi" if ok else "fapi",
        when,
        rng,
        description=f"{method.upper()} {path.split('/')[3]}",
        details={
            "request": {
                "method": method,
                "path": path,
                "userAgent": "Mozilla/5.0",
                "auth": {"user": {"user_id": user}, "strategy": "jwt"},
            },
            "response": {"statusCode": status, "body": {} if ok else {"error": "Forbidden"}},
        },
    )


def seed_history(sim: Auth0Simulator, start: datetime) -> list[dict[str, Any]]:
    rng = random.Random(20261127)
    events: list[dict[str, Any]] = []
    for user in USERS:
        events += generate_user_events(
            user,
            count=45,
            start=start - timedelta(days=14),
            end=start - timedelta(minutes=10),
            rng=rng,
        )
    # A credential-stuffing burst two days ago: failed logins from many addresses and countries.
    events += attack_burst(ODD, count=60, start=start - timedelta(days=2), seconds=3600, rng=rng)
    # An older failed login whose scope is an array, as in one of Auth0's real events.
    events.append(
        crafted(
            SAML,
            "f",
            start - timedelta(days=9),
            rng,
            scope=["openid", "profile"],
            description="Wrong email or password.",
        )
    )
    # MFA: enrolments, removals, a recovery; and MFA events that are neither (mfar = MFA Required).
    mfa = [
        (ADMIN, "gd_start_enroll", 12), (ADMIN, "gd_enrollment_complete", 12),
        (ODD, "gd_unenroll", 1), (ODD, "gd_recovery_succeed", 1), (ODD, "mfar", 1),
        (SAML, "gd_start_enroll_failed", 5), (SAML, "gd_user_delete", 3),
        (SAML, "gd_update_device_account", 3), (SAML, "gd_auth_succeed", 3), (ADMIN, "mfar", 2),
    ]  # fmt: skip
    for user, kind, days in mfa:
        when = start - timedelta(days=days, minutes=rng.randrange(600))
        events.append(
            crafted(
                user, kind, when, rng, description="", details={"authenticator": {"type": "otp"}}
            )
        )
    # The admin's Management API writes, one refused.
    target = "auth0|64b7f0c2e4a1d9a3c1f00d44"
    calls = [
        ("patch", f"/api/v2/users/{target}", 200, 6),
        ("delete", f"/api/v2/users/{target}/authenticators", 204, 4),
        ("post", "/api/v2/roles/rol_8dXk2/users", 200, 2),
        ("delete", f"/api/v2/users/{target}/multifactor/google-authenticator", 204, 1),
        ("post", "/api/v2/clients", 403, 1),
    ]
    for method, path, status, days in calls:
        when = start - timedelta(days=days, minutes=rng.randrange(600))
        events.append(management_call(ADMIN, when, rng, method, path, status))
    # An Auth0 event that itself carries a `_forwarder` key: kept as _forwarder.auth0_value.
    events.append(crafted(ADMIN, "s", start - timedelta(days=3), rng, _forwarder={"note": "x"}))
    return sim.add_events(events)


def future_records(today: date) -> list[dict[str, Any]]:
    at = f"{today.isoformat()}T08:00:00.000Z"
    return [
        {
            "_forwarder": {
                "format": 1,
                "record_type": "quarantine",
                "tenant": "demo-tenant.auth0.local",
                "watched_user_id": SAML,
                "reason": "no log_id",
                "raw": json.dumps({"date": "2026-11-27T07:30:00.000Z", "type": "s"}),
                "entry_sha256": "0" * 64,
                "detected_at": at,
            }
        },
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataSet]:
    from log_forwarder.sinks.batching import user_slug

    offset = [0.0]

    def clock() -> float:
        return time.time() + offset[0]

    with (
        LocalAws() as aws,
        Auth0Simulator(rate_limit=RateLimit(burst=200, per_second=500), clock=clock) as sim,
    ):
        start = datetime.now(UTC)
        seeded = seed_history(sim, start)
        stack = LocalDeployment(
            aws,
            sim,
            stack_name=f"obs-{int(time.time())}",
            destinations="cloudwatch,s3",
            watched_user_ids=USERS,
            clock=clock,
            MAX_CONCURRENT_USERS="3",
            AUTH0_RATE_LIMIT_PER_SECOND="400",
            AUTH0_LOG_RETENTION_HOURS="1",
            READ_MODE="per-user",
        )
        invocations = [stack.invoke()]
        # THEN the tenant keeps events one hour, and the function does not run for 90 minutes,
        # while SAML has events 10-20 minutes after that run (expired before the next run) and
        # 80-85 minutes after it (kept).
        sim.retention_s = 3600
        rng = random.Random(4)
        lost = sim.add_events(
            generate_user_events(
                SAML, count=3, start=start + timedelta(minutes=10),
                end=start + timedelta(minutes=20), rng=rng,
            )
        )  # fmt: skip
        kept = sim.add_events(
            generate_user_events(
                SAML, count=4, start=start + timedelta(minutes=80),
                end=start + timedelta(minutes=85), rng=rng,
            )
        )  # fmt: skip
        offset[0] = 90 * 60
        invocations.append(stack.invoke())
        for invocation in invocations:
            assert invocation.error is None, f"run failed: {invocation.error!r}"

        assert stack.resources.bucket and stack.resources.athena_database
        today = datetime.now(UTC).date()
        s3 = aws.client("s3")
        prefix = stack.env["S3_PREFIX"]
        future = future_records(today)
        local_root = tmp_path_factory.mktemp("bucket")
        copy_bucket(s3, stack.resources.bucket, local_root)
        write_jsonl_gz(
            local_root / stack.resources.bucket / prefix
            / f"dt={today.isoformat()}" / user_slug(ODD) / "future-record-types.jsonl.gz",
            future,
        )  # fmt: skip
        # An empty partition, as the S3 console's "Create folder" leaves one.
        (local_root / stack.resources.bucket / prefix / "dt=2025-06-01").mkdir(parents=True)
        glue_table = aws.client("glue").get_table(
            DatabaseName=stack.resources.athena_database, Name=stack.resources.athena_table
        )["Table"]
        db = duckdb.connect()
        db.execute("SET TimeZone = 'UTC'")  # Athena's current_date is UTC
        view_sql = create_view(db, glue_table, local_root=local_root)
        records = stack.s3_records()
        yield DataSet(
            stack=stack,
            forwarded=[*seeded, *kept],
            lost=lost,
            gap_records=[r for r in records if r["_forwarder"].get("record_type") == "gap"],
            finding_records=[r for r in records if r["_forwarder"].get("record_type") == "finding"],
            future_records=future,
            cloudwatch_records=[r for user in USERS for r in stack.cloudwatch_records(user)],
            invocations=invocations,
            glue_table=glue_table,
            db=db,
            view_sql=view_sql,
            local_root=local_root,
            today=today,
        )
        db.close()


def run(data: DataSet, name: str) -> list[tuple[Any, ...]]:
    sql = to_duckdb(readme_queries(README.read_text(encoding="utf-8"))[name])
    return [tuple(row) for row in data.db.sql(sql).fetchall()]


def day_of(record: dict[str, Any]) -> str:
    return str(record["date"])[:10]


def test_the_data_set_reached_s3_whole(data: DataSet) -> None:
    # Sanity for everything below: S3 holds every event the tenant still had, once each.
    s3_ids = Counter(r["log_id"] for r in data.stack.s3_records() if "log_id" in r)
    assert set(s3_ids) == {e["log_id"] for e in data.forwarded}
    assert max(s3_ids.values()) == 1
    assert not {e["log_id"] for e in data.lost} & set(s3_ids)
    assert 150 <= len(data.forwarded) <= 400  # small enough to keep `make test` fast


def test_every_readme_query_is_checked_here() -> None:
    names = set(readme_queries(README.read_text(encoding="utf-8")))
    assert names == set(EXPECTED), "add a test expectation for each README query, and back"


def test_readme_queries_name_the_table_the_template_declares(data: DataSet) -> None:
    for name, sql in readme_queries(README.read_text(encoding="utf-8")).items():
        tables = set(re.findall(r"\bFROM\s+([A-Za-z_][A-Za-z0-9_]*)", sql, re.I)) - {"sources"}
        assert tables == {data.glue_table["Name"]}, name


def expected_failed_logins(data: DataSet) -> list[tuple[Any, ...]]:
    by_day: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for event in data.forwarded:
        if event["type"] in FAILED_LOGIN:
            by_day.setdefault((event["user_id"], day_of(event)), []).append(event)
    return [
        (user, day, len(events), len({e["ip"] for e in events if e.get("ip")}))
        for (user, day), events in by_day.items()
    ]


def expected_new_sources(data: DataSet) -> list[tuple[Any, ...]]:
    sources: dict[tuple[str, str, str], list[str]] = {}
    for event in data.forwarded:
        user = event["user_id"]
        if event.get("ip"):
            sources.setdefault((user, "ip", event["ip"]), []).append(event["date"])
        country = (event.get("location_info") or {}).get("country_code")
        if country:
            sources.setdefault((user, "country", country), []).append(event["date"])
    # "Today" as the query engine sees it at this moment (UTC), should the run cross midnight.
    ((today,),) = data.db.sql("SELECT current_date").fetchall()
    rows = []
    for (user, kind, value), dates in sources.items():
        first = min(dates)
        if (today - date.fromisoformat(first[:10])).days < NEW_WITHIN_DAYS:
            rows.append((user, kind, value, first, max(dates), len(dates)))
    return rows


def expected_mfa_changes(data: DataSet) -> list[tuple[Any, ...]]:
    from log_forwarder.event_types import describe

    return [
        (
            e["date"],
            e["user_id"],
            e["type"],
            describe(e["type"]).name,
            e.get("ip"),
            (e.get("location_info") or {}).get("country_code"),
            e.get("client_name"),
        )
        for e in data.forwarded
        if e["type"] in MFA_CHANGE
    ]


def expected_management_api(data: DataSet) -> list[tuple[Any, ...]]:
    rows = []
    for e in data.forwarded:
        if e["type"] in MANAGEMENT_API:
            request, response = e["details"]["request"], e["details"]["response"]
            rows.append(
                (
                    e["date"],
                    e["user_id"],
                    e["type"],
                    e.get("description"),
                    request["method"],
                    request["path"],
                    str(response["statusCode"]),
                    e.get("ip"),
                )
            )
    return rows


def expected_gaps(data: DataSet) -> list[tuple[Any, ...]]:
    return [
        (
            g["watched_user_id"],
            g["reason"],
            g["from"],
            g["to"],
            g["detected_at"],
        )
        for g in (r["_forwarder"] for r in data.gap_records)
    ]


def expected_findings(data: DataSet) -> list[tuple[Any, ...]]:
    return [
        (f["detected_at"], f["watched_user_id"], f["rule"], f["severity"], f["title"],
         f["first_seen"], f["last_seen"], len(f["log_ids"]))
        for f in (r["_forwarder"] for r in data.finding_records)
    ]  # fmt: skip


def expected_quarantine(data: DataSet) -> list[tuple[Any, ...]]:
    return [
        (q["detected_at"], q["watched_user_id"], q["reason"], q["entry_sha256"], q["raw"])
        for q in (r["_forwarder"] for r in data.future_records)
        if q["record_type"] == "quarantine"
    ]


# README query → (expected rows, index of the column its ORDER BY sorts first, descending).
EXPECTED = {
    "failed-logins": (expected_failed_logins, 1),
    "new-sources": (expected_new_sources, 3),
    "mfa-changes": (expected_mfa_changes, 0),
    "management-api": (expected_management_api, 0),
    "gaps": (expected_gaps, 4),
    "findings": (expected_findings, 0),
    "quarantine": (expected_quarantine, 0),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_readme_query_answers_what_was_seeded(data: DataSet, name: str) -> None:
    # GIVEN the README's query and the answer computed from the seeded events
    expected_of, sort_column = EXPECTED[name]
    expected = expected_of(data)
    # WHEN DuckDB runs it over the objects the handler wrote, through the template's Glue table
    got = run(data, name)
    # (shown with `pytest -s`: the figures of the README queries on this data set)
    print(
        f"\n{name}: expected {len(expected)} rows, got {len(got)}, equal: {Counter(got) == Counter(expected)}"
    )
    # THEN it returns exactly those rows, in the order it promises
    assert expected, f"the data set exercises nothing for {name}"
    assert Counter(got) == Counter(expected)
    keys = [row[sort_column] for row in got]
    assert keys == sorted(keys, reverse=True)


def test_the_failed_login_query_counts_what_matters(data: DataSet) -> None:
    rows = run(data, "failed-logins")
    # The burst's day stands out, for the attacked user, with many source addresses.
    top = max(rows, key=lambda row: row[2])
    assert top[0] == ODD and top[3] > 5
    # The event with an array scope is counted like any other failed login.
    array_scope = next(e for e in data.forwarded if isinstance(e.get("scope"), list))
    assert (SAML, day_of(array_scope)) in {(row[0], row[1]) for row in rows}
    # Blocked-account and breached-password events are not failed logins.
    assert sum(row[2] for row in rows) == sum(e["type"] in FAILED_LOGIN for e in data.forwarded)


def test_the_mfa_query_leaves_out_mfa_events_that_change_nothing(data: DataSet) -> None:
    types = {row[2] for row in run(data, "mfa-changes")}
    assert {"gd_enrollment_complete", "gd_unenroll", "gd_user_delete"} <= types
    assert not types & {"mfar", "gd_auth_succeed"}


def test_each_user_left_unread_past_the_retention_has_one_gap(data: DataSet) -> None:
    # The function did not run for 90 minutes with a one-hour retention: each user's span past
    # what the first run verified may have lost events, so each gets one expired gap; SAML's
    # covers the events that did expire.
    rows = run(data, "gaps")
    assert sorted(row[0] for row in rows) == sorted(USERS)
    assert {row[1] for row in rows} == {"expired"}
    (saml,) = [row for row in rows if row[0] == SAML]
    assert all(saml[2] < e["date"] < saml[3] for e in data.lost)
    # A gap record lives in the partition of the day it was detected.
    dts = data.db.sql(
        'SELECT dt, "_forwarder".detected_at FROM auth0_user_logs '
        "WHERE \"_forwarder\".record_type = 'gap'"
    ).fetchall()
    assert all(dt == detected[:10] for dt, detected in dts)


def test_new_sources_include_the_burst_and_not_the_old_habits(data: DataSet) -> None:
    rows = run(data, "new-sources")
    burst_ips = {
        e["ip"] for e in data.forwarded
        if e["user_id"] == ODD and e["date"] >= iso(datetime.now(UTC) - timedelta(days=3))
    }  # fmt: skip
    assert {row[2] for row in rows if row[0] == ODD and row[1] == "ip"} <= burst_ips
    assert any(row[0] == ODD and row[1] == "country" for row in rows)


def test_the_seeded_events_produce_the_findings_they_should(data: DataSet) -> None:
    # The burst of failed logins, the MFA removal and recovery, the admin's Management API calls
    rules = {r["_forwarder"]["rule"] for r in data.finding_records}
    assert {"failed_login_burst", "mfa_weakened", "admin_action"} <= rules
    admin = [
        r["_forwarder"] for r in data.finding_records if r["_forwarder"]["rule"] == "admin_action"
    ]
    assert ADMIN in {f["watched_user_id"] for f in admin}
    # AND each admin_action names only Management API events of its own user
    by_id = {e["log_id"]: e for e in data.forwarded}
    for finding in admin:
        for log_id in finding["log_ids"]:
            event = by_id[log_id]
            assert event["type"] in MANAGEMENT_API | {"mgmt_api_read"}
            assert event["user_id"] == finding["watched_user_id"]


def test_every_record_is_readable_through_the_table(data: DataSet) -> None:
    # No record breaks the schema: as many rows as lines, each with its record type.
    (total,) = data.db.sql("SELECT count(*) FROM auth0_user_logs").fetchall()
    assert total[0] == len(data.stack.s3_records()) + len(data.future_records)
    by_type = dict(
        data.db.sql(
            "SELECT coalesce(\"_forwarder\".record_type, 'event'), count(*) FROM auth0_user_logs "
            "GROUP BY 1"
        ).fetchall()
    )
    # The cross-user correlation (credential_stuffing) keeps one watermark for every watched
    # user: a user's backlog read after another's newer events is too late for it, and said so
    # (docs/detections.md, "What changed with Sigma").
    skipped = [
        r["_forwarder"]
        for r in data.stack.s3_records()
        if r["_forwarder"].get("record_type") == "detection_skipped"
    ]
    assert {(r["rule"], r["reason"]) for r in skipped} <= {("credential_stuffing", "too_late")}
    assert by_type == {
        "event": len(data.forwarded),
        "gap": len(data.gap_records),
        "finding": len(data.finding_records),
        "quarantine": 1,
        **({"detection_skipped": len(skipped)} if skipped else {}),
    }
    # details is JSON text with Auth0's own key case; scope as an array is JSON text too.
    agent = data.db.sql(
        "SELECT json_extract_string(details, '$.request.userAgent') FROM auth0_user_logs "
        "WHERE type = 'sapi' AND json_extract_string(details, '$.request.userAgent') IS NOT NULL"
    ).fetchall()
    assert agent
    scopes = {row[0] for row in data.db.sql("SELECT scope FROM auth0_user_logs").fetchall()}
    assert '["openid","profile"]' in scopes
    (mobile,) = data.db.sql("SELECT count(*) FROM auth0_user_logs WHERE ismobile").fetchall()
    assert mobile[0] == sum(bool(e.get("isMobile")) for e in data.forwarded)


def test_an_empty_bucket_answers_every_query_with_no_rows(data: DataSet, tmp_path: Path) -> None:
    # Athena answers an empty table with no rows; so must the local stand-in.
    db = duckdb.connect()
    create_view(db, data.glue_table, local_root=tmp_path)
    for name, sql in readme_queries(README.read_text(encoding="utf-8")).items():
        assert db.sql(to_duckdb(sql)).fetchall() == [], name
    db.close()


def test_days_outside_the_projected_range_are_not_read(data: DataSet, tmp_path: Path) -> None:
    # Partition projection only enumerates days in projection.dt.range (from 2024-01-01).
    location = data.glue_table["Parameters"]["storage.location.template"].removeprefix("s3://")
    for day in ("2023-12-31", "2024-01-01"):
        write_jsonl_gz(
            tmp_path / location.replace("${dt}", day) / "u" / "b.jsonl.gz",
            [{"date": f"{day}T12:00:00.000Z", "type": "s", "_forwarder": {"format": 1}}],
        )
    # and, as in Hive, files and folders named with a leading _ or . are not data
    for hidden in ("_temporary/b.jsonl.gz", "u/.b.jsonl.gz"):
        write_jsonl_gz(
            tmp_path / location.replace("${dt}", "2024-01-01") / hidden,
            [{"date": "2024-01-01T13:00:00.000Z", "type": "s", "_forwarder": {"format": 1}}],
        )
    db = duckdb.connect()
    create_view(db, data.glue_table, local_root=tmp_path)
    assert db.sql("SELECT dt FROM auth0_user_logs").fetchall() == [("2024-01-01",)]
    db.close()


# --- Logs Insights ---------------------------------------------------------------------------

LOGS_INSIGHTS_WORDS = {
    "fields", "filter", "stats", "sort", "limit", "display", "parse", "dedup", "by", "as", "and",
    "or", "not", "in", "like", "desc", "asc", "source", "unmask",
}  # fmt: skip


def referenced_fields(query: str) -> set[str]:
    """The log fields a Logs Insights query names (not @-fields, aliases, functions or keywords)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', query)
    text = re.sub(r"'(?:[^'\\]|\\.)*'", "''", text)
    fields = set(re.findall(r"`([^`]+)`", text))
    text = re.sub(r"`[^`]+`", " ", text)
    aliases = set(re.findall(r"\bas\s+([A-Za-z_][\w.]*)", text))
    for match in re.finditer(r"(?<![\w.@])([A-Za-z_@][\w.@]*)(\s*\()?", text):
        token, is_call = match.group(1), match.group(2)
        if is_call or token.startswith("@") or token.lower() in LOGS_INSIGHTS_WORDS:
            continue
        if token not in aliases:
            fields.add(token)
    return fields


def flattened(value: Any, prefix: str = "") -> set[str]:
    """Field names as Logs Insights discovers them in a JSON record (`a.b`, `list.0.c`)."""
    names: set[str] = set()
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((str(i), item) for i, item in enumerate(value))
    else:
        return {prefix} if prefix else set()
    for key, item in items:
        path = f"{prefix}.{key}" if prefix else str(key)
        names.add(path)
        names |= flattened(item, path)
    return names


def saved_logs_insights_queries() -> dict[str, str]:
    template = load_template()
    queries = {
        logical_id: resource["Properties"]["QueryString"]
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Logs::QueryDefinition"
    }
    for widget in dashboard("cloudwatch,s3")["widgets"]:
        if widget["type"] == "log":
            queries[f"dashboard: {widget['properties']['title']}"] = widget["properties"]["query"]
    return queries


def test_the_field_parser_sees_fields_and_nothing_else() -> None:
    query = (
        'fields @timestamp, a.b, `x.from` | filter not ispresent(c.d) and e in ["f", "g"] '
        "| stats count(*) as n, count_distinct(h) by i.j, bin(1d) | sort n desc | limit 5"
    )
    assert referenced_fields(query) == {"a.b", "x.from", "c.d", "e", "h", "i.j"}


def test_saved_queries_name_only_fields_the_records_have(data: DataSet) -> None:
    # GIVEN every field path of the records the run wrote to CloudWatch Logs, and of the coming
    # record types in their documented format
    known: set[str] = set()
    for record in [*data.cloudwatch_records, *data.future_records]:
        known |= flattened({k: v for k, v in record.items() if not k.startswith("@")})
    assert "details.request.path" in known and "_forwarder.from" in known
    # THEN each saved query, and each log widget of the dashboard, names only those
    queries = saved_logs_insights_queries()
    assert len(queries) >= 7
    for name, query in queries.items():
        unknown = referenced_fields(query) - known
        assert not unknown, f"{name} names fields no record has: {sorted(unknown)}"


# --- the dashboard ---------------------------------------------------------------------------

COMING_METRICS = {"Findings", "Quarantined"}  # announced by the detection and quarantine work


def dashboard(destinations: str, tenants_parameter: str = "") -> dict[str, Any]:
    template = load_template()
    alarms = [i for i, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"]
    resolver = _Resolver(
        template,
        {"Destinations": destinations, "TenantsParameterName": tenants_parameter},
        stack_name="obs-stack",
        refs={"ForwardedLogGroup": "/auth0/obs-stack/user-logs"},
        attributes={
            (alarm, "Arn"): f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{alarm}"
            for alarm in alarms
        },
    )
    body = resolver.resolve(template["Resources"]["Dashboard"]["Properties"]["DashboardBody"])
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def emitted_metrics(
    invocations: list[Invocation],
) -> set[tuple[str, str, tuple[tuple[str, str], ...]]]:
    """(namespace, metric, ((dimension, value), ...)) of every EMF metric the runs printed."""
    found = set()
    for invocation in invocations:
        for line in invocation.output.splitlines():
            if not line.startswith("{") or '"_aws"' not in line:
                continue
            record = json.loads(line)
            for directive in record["_aws"]["CloudWatchMetrics"]:
                for dimension_set in directive["Dimensions"]:
                    dims = tuple(sorted((d, str(record[d])) for d in dimension_set))
                    for metric in directive["Metrics"]:
                        found.add((directive["Namespace"], metric["Name"], dims))
    return found


def test_the_dashboard_shows_only_metrics_the_function_emits(data: DataSet) -> None:
    template = load_template()
    namespace = template["Parameters"]["MetricsNamespace"]["Default"]
    service = template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    emitted = emitted_metrics(data.invocations)
    assert (namespace, "Gaps", (("service", service),)) in emitted
    # WHEN the dashboard body is resolved as CloudFormation would, for this stack
    body = dashboard("cloudwatch,s3")
    shown: list[tuple[str, str, tuple[tuple[str, str], ...]]] = []
    searches: list[str] = []
    for widget in body["widgets"]:
        properties = widget["properties"]
        if widget["type"] == "metric":
            assert properties["region"] == "us-east-1"
        for metric in properties.get("metrics", []):
            if isinstance(metric[0], dict):
                searches.append(metric[0]["expression"])
                continue
            names = [part for part in metric if isinstance(part, str)]
            ns, name, *pairs = names
            shown.append((ns, name, tuple(sorted(zip(pairs[::2], pairs[1::2], strict=True)))))
    # THEN every metric widget names an emitted metric, in its namespace and dimension
    assert shown
    emitted_names = {name for _, name, _ in emitted}
    for ns, name, dims in shown:
        if name in COMING_METRICS:
            assert (ns, dims) == (namespace, (("service", service),)), name
        else:
            assert (ns, name, dims) in emitted, f"{name} {dims} is not emitted"
    required = {
        "EventsDelivered_cloudwatch", "EventsDelivered_s3", "LagSeconds", "Gaps", "Auth0ApiCalls",
        "Auth0RateLimited", "Auth0Retries", "UsersFailed", "UsersDeferred", "Quarantined",
        "StreamMode", "StreamEventsRead",
    }  # fmt: skip
    assert required <= {name for _, name, _ in shown}
    assert required - COMING_METRICS <= emitted_names
    # AND findings are searched by rule, in the same namespace
    (search,) = searches
    assert search.startswith(f'SEARCH(\'{{"{namespace}",rule,service}} MetricName="Findings"\'')
    # AND the alarm widget shows every alarm of the stack, with one tenant or many
    for tenants in ("", "/auth0-user-log-forwarder/tenants"):
        widgets = dashboard("cloudwatch,s3", tenants)["widgets"]
        alarms = next(w for w in widgets if w["type"] == "alarm")["properties"]["alarms"]
        resolver = _Resolver(template, {"TenantsParameterName": tenants}, stack_name="obs")
        declared = [
            i
            for i, r in template["Resources"].items()
            if r["Type"] == "AWS::CloudWatch::Alarm" and resolver.active(i)
        ]
        assert sorted(a.rsplit(":", 1)[1] for a in alarms) == sorted(declared)
        assert any(a.startswith("Tenant") for a in declared) is bool(tenants)


@pytest.mark.parametrize("destinations", ["cloudwatch", "s3", "cloudwatch,s3"])
def test_the_dashboard_queries_logs_only_where_they_are_forwarded(destinations: str) -> None:
    widgets = dashboard(destinations)["widgets"]
    log_widgets = [w for w in widgets if w["type"] == "log"]
    if "cloudwatch" in destinations:
        titles = {w["properties"]["title"] for w in log_widgets}
        assert titles == {"Recent findings", "Recent gaps"}
        for widget in log_widgets:
            assert widget["properties"]["query"].startswith("SOURCE '/auth0/obs-stack/user-logs' |")
        assert any('record_type = "finding"' in w["properties"]["query"] for w in log_widgets)
    else:
        assert log_widgets == []


# --- the table covers what is written -------------------------------------------------------


def table_keys(table: dict[str, Any]) -> tuple[set[str], dict[str, set[str]]]:
    """(top-level JSON keys the table reads, struct column → its field names)."""
    storage = table["StorageDescriptor"]
    mappings = {
        name.removeprefix("mapping."): key
        for name, key in storage["SerdeInfo"]["Parameters"].items()
        if name.startswith("mapping.")
    }
    top = {mappings.get(c["Name"], c["Name"]) for c in storage["Columns"]}
    structs = {
        c["Name"]: set(re.findall(r"[<,]([A-Za-z0-9_$]+):", c["Type"]))
        for c in storage["Columns"]
        if c["Type"].startswith("struct<")
    }
    return top, structs


def test_the_table_has_a_column_for_every_key_written(
    data: DataSet, sample_events: list[dict[str, Any]], openapi: dict[str, Any]
) -> None:
    top, structs = table_keys(data.glue_table)
    # Every top-level key of Auth0's 150 real sample events and of its Log schema, and _forwarder
    # (fields nobody documents, such as the traffic generator's extras, stay out of the table)
    documented = set(openapi["components"]["schemas"]["Log"]["properties"])
    keys = {k for e in sample_events for k in e} | documented | {"_forwarder"}
    assert keys - top == set()
    written = [*data.stack.s3_records(), *data.cloudwatch_records, *data.future_records]
    # and every key under _forwarder (events, gaps, CloudWatch's oversize markers are in
    # convert.py and sinks.py; findings and quarantine records as documented)
    forwarder_keys = {k for r in written for k in r["_forwarder"]}
    assert {"watched_user_id", "type_name", "record_type", "from", "auth0_value", "rule"} <= (
        forwarder_keys
    )
    oversized_marker = {"oversized", "original_bytes", "sha256"}
    assert (forwarder_keys | oversized_marker) - structs["_forwarder"] == set()
    for column in ("location_info", "security_context"):
        nested = {k for e in [*sample_events, *written] for k in (e.get(column) or {})}
        schema = openapi["components"]["schemas"]["Log" + column.title().replace("_", "")]
        assert (nested | set(schema["properties"])) - structs[column] == set(), column


def test_the_real_sample_events_never_break_a_query(
    data: DataSet, sample_events: list[dict[str, Any]], tmp_path: Path
) -> None:
    # GIVEN Auth0's 150 real events (one with an array `scope`) as forwarded lines (the event
    # unchanged plus `_forwarder`, README "Output"), in one partition of the table's layout
    added = {
        "format": 1, "tenant": "t.example", "watched_user_id": "auth0|x",
        "forwarded_at": "2026-11-27T00:00:00.000Z", "type_name": "x", "severity": "info",
        "source": "user_logs",
    }  # fmt: skip
    lines = [{**raw, "_forwarder": added} for raw in sample_events]
    bucket_root = tmp_path / "s3"
    template = data.glue_table["Parameters"]["storage.location.template"]
    partition = template.removeprefix("s3://").replace("${dt}", data.today.isoformat())
    write_jsonl_gz(bucket_root / partition / "sample" / "events.jsonl.gz", lines)
    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")
    create_view(db, data.glue_table, local_root=bucket_root)
    # WHEN every README query runs over them, THEN none fails, and every row is read
    for sql in readme_queries(README.read_text(encoding="utf-8")).values():
        db.sql(to_duckdb(sql)).fetchall()
    (count,) = db.sql("SELECT count(*), count(DISTINCT type) FROM auth0_user_logs").fetchall()
    assert count == (150, len({e["type"] for e in sample_events}))
    scopes = [
        row[0]
        for row in db.sql("SELECT scope FROM auth0_user_logs WHERE scope LIKE '[%'").fetchall()
    ]
    assert scopes == ['["openid","profile"]']
    paths = db.sql(
        "SELECT json_extract_string(details, '$.request.path') FROM auth0_user_logs "
        "WHERE type = 'sapi'"
    ).fetchall()
    assert paths and all(path and path.startswith("/api/v2/") for (path,) in paths)
    db.close()
