"""OCSF output, validated against a published OCSF 1.5.0 model set and the schema's own rules.

Classes 3001, 3002 and 6003 go through `ocsf-emitter`'s pydantic models and its `validate()`
(types, required fields, class/category/type_uid consistency, schema version). On top of that,
checks the models do not encode: no attribute the class lacks (the models accept extras), the
schema's "at least one of" constraints, IP and country formats. The Base Event (class 0), which
`ocsf-emitter` does not model, is checked with a JSON Schema written from OCSF 1.5.0's
`base_event.json`. Every code in event_types.py, every real sample event, and every code the
traffic simulator produces is validated; the figures are printed at the end of the run.
"""

from __future__ import annotations

import ipaddress
import json
import random
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ocsf_emitter import InvalidFindingError, models
from ocsf_emitter import validate as emitter_validate
from pydantic import BaseModel

from devtools import traffic
from devtools.ocsf_mapping_doc import mapping_table_markdown
from log_forwarder.event_types import EVENT_TYPES
from log_forwarder.events import MalformedEvent
from log_forwarder.ocsf import (
    ACTIVITIES,
    OCSF_CLASS_BY_TYPE,
    OCSF_VERSION,
    STATUSES,
    classify,
    to_ocsf,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "ocsf-mapping.md"
TENANT = "example.eu.auth0.com"
WATCHED = "auth0|watched"
MODELS: dict[int, type[BaseModel]] = {
    3001: models.AccountChange,
    3002: models.Authentication,
    6003: models.ApiActivity,
}
# corpus -> OCSF class name -> [events validated, codes seen]
OCSF_LEDGER: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(lambda: [0, set()]))

# OCSF 1.5.0 events/base_event.json: required attributes and the class's fixed identity.
BASE_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": [
        "activity_id", "category_uid", "class_uid", "metadata", "severity_id", "time", "type_uid",
    ],
    "properties": {
        "activity_id": {"enum": [0, 99]},
        "activity_name": {"type": "string"},
        "category_uid": {"const": 0},
        "category_name": {"const": "Uncategorized"},
        "class_uid": {"const": 0},
        "class_name": {"const": "Base Event"},
        "type_uid": {"enum": [0, 99]},
        "type_name": {"type": "string"},
        "severity_id": {"enum": [0, 1, 2, 3, 4, 5, 6, 99]},
        "severity": {"type": "string"},
        "status_id": {"enum": [0, 1, 2, 99]},
        "status": {"type": "string"},
        "status_detail": {"type": "string"},
        "message": {"type": "string"},
        "time": {"type": "integer"},
        "raw_data": {"type": "string"},
        "unmapped": {"type": "object"},
        "metadata": {
            "type": "object",
            "required": ["product", "version"],
            "properties": {"version": {"const": OCSF_VERSION}, "product": {"type": "object"}},
        },
    },
    "additionalProperties": False,
}  # fmt: skip

AT_LEAST_ONE = {
    "user": ("account", "name", "uid"),
    "endpoint": ("ip", "uid", "name", "hostname", "svc_name", "instance_uid", "domain"),
    "location": ("city", "country", "postal_code", "region"),
    "url": ("url_string", "path"),
    "actor": ("process", "user", "invoked_by", "session", "app_name", "app_uid"),
}


def validate_ocsf(event: dict[str, Any], corpus: str | None = None) -> None:
    """Raise unless `event` is a valid OCSF 1.5.0 event; count it under `corpus`."""
    json.dumps(event, allow_nan=False)
    class_uid = event["class_uid"]
    assert event["type_uid"] == class_uid * 100 + event["activity_id"]
    if class_uid in MODELS:
        instance = MODELS[class_uid].model_validate(event)
        emitter_validate(instance)  # type: ignore[arg-type]
        assert_no_extra_attributes(instance, event["class_name"])
    else:
        jsonschema.validate(event, BASE_EVENT_SCHEMA)
    check_constraints(event)
    if corpus is not None:
        row = OCSF_LEDGER[corpus][f"{event['class_name']} ({class_uid})"]
        row[0] += 1
        row[1].add(event["metadata"].get("event_code"))


def assert_no_extra_attributes(model: BaseModel, where: str) -> None:
    """The models accept unknown keys; an OCSF consumer would not. Only `unmapped` may hold any."""
    if isinstance(model, models.Object):
        return
    assert not model.model_extra, f"{where}: attributes OCSF does not define: {model.model_extra}"
    for name in type(model).model_fields:
        value = getattr(model, name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, BaseModel):
                assert_no_extra_attributes(item, f"{where}.{name}")


def check_constraints(event: dict[str, Any]) -> None:
    """OCSF's `at_least_one` constraints and value formats, which the pydantic models skip."""
    if event["class_uid"] == 3002:
        assert "service" in event or "dst_endpoint" in event
    for key in ("user",):
        if key in event:
            assert any(event[key].get(a) for a in AT_LEAST_ONE["user"]), event[key]
    for key in ("src_endpoint", "dst_endpoint"):
        endpoint = event.get(key)
        if endpoint is None:
            continue
        assert any(endpoint.get(a) for a in AT_LEAST_ONE["endpoint"]), endpoint
        if "ip" in endpoint:
            ipaddress.ip_address(endpoint["ip"])
        location = endpoint.get("location")
        if location is not None:
            assert any(location.get(a) for a in AT_LEAST_ONE["location"]), location
            assert "country" not in location or (
                len(location["country"]) == 2 and location["country"].isupper()
            )
    if "actor" in event:
        assert any(event["actor"].get(a) for a in AT_LEAST_ONE["actor"]), event["actor"]
        if "user" in event["actor"]:
            assert any(event["actor"]["user"].get(a) for a in AT_LEAST_ONE["user"])
    url = event.get("http_request", {}).get("url")
    if url is not None:
        assert any(url.get(a) for a in AT_LEAST_ONE["url"])
    assert event["status"] == STATUSES[event["status_id"]]
    if event["activity_id"] != 99:
        assert event["activity_name"] == ACTIVITIES[event["class_uid"]][event["activity_id"]]


def synthetic_event(code: str, rng: random.Random) -> dict[str, Any]:
    """A realistic event of type `code`, shaped like the real ones and the simulator's."""
    event: dict[str, Any] = {
        "date": "2026-11-25T10:00:00.123Z",
        "type": code,
        "description": rng.choice(["", "something happened", None]),
        "connection": "Username-Password-Authentication",
        "connection_id": "con_1a5wCUmAs6VOU17n",
        "client_id": "aI61p8I8aFjmYRliLWgvM9ev97kCCNDB",
        "client_name": "Customer Portal",
        "ip": rng.choice(["203.0.113.9", "2001:db8::7"]),
        "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/132.0",
        "details": {"session_id": "abc", "authenticator": {"type": rng.choice(["otp", "push", "x"])}},
        "hostname": "example.eu.auth0.com",
        "user_id": WATCHED,
        "user_name": "watched@example.com",
        "strategy": rng.choice(["auth0", "samlp", "google-oauth2"]),
        "strategy_type": "database",
        "log_id": f"900{rng.randrange(10**53):053d}",
        "location_info": {
            "country_code": "DE", "city_name": "Berlin", "latitude": 52.52, "longitude": 13.405,
        },
    }  # fmt: skip
    if code in (
        "sapi",
        "fapi",
        "mgmt_api_read",
        "gd_tenant_update",
        "gd_module_switch",
    ) or code.startswith("kms_"):
        event["details"] = {
            "request": {
                "method": rng.choice(["post", "get", "patch", "put", "delete", "head"]),
                "path": "/api/v2/users/auth0|x",
                "auth": {"user": {"user_id": WATCHED, "name": "W", "email": "w@example.com"}},
                "ip": "192.0.2.44",
            },
            "response": {"statusCode": 200 if code != "fapi" else 403},
        }
    if code in ("seccft", "feccft"):
        event["user_id"] = event["user_name"] = ""
    return event


# -- the table --------------------------------------------------------------------------------


def test_table_maps_every_known_code_and_nothing_else() -> None:
    assert set(OCSF_CLASS_BY_TYPE) == set(EVENT_TYPES)


def test_the_mapping_doc_shows_the_table_of_the_code() -> None:
    # GIVEN docs/ocsf-mapping.md, whose table sits between two markers
    text = DOC.read_text(encoding="utf-8")
    start, end = "<!-- mapping-table:start -->\n", "<!-- mapping-table:end -->"
    shown = text[text.index(start) + len(start) : text.index(end)]
    # THEN it is exactly the table rendered from OCSF_CLASS_BY_TYPE
    assert shown == mapping_table_markdown(), (
        "docs/ocsf-mapping.md is out of date: run `PYTHONPATH=src .venv/bin/python -m devtools.ocsf_mapping_doc`"
    )


# -- validation over every corpus -------------------------------------------------------------


def test_every_known_code_converts_to_a_valid_event() -> None:
    rng = random.Random(7)
    for code in EVENT_TYPES:
        for _ in range(3):
            validate_ocsf(
                to_ocsf(synthetic_event(code, rng), tenant=TENANT, watched_user_id=WATCHED),
                "event_types.py codes (synthetic events)",
            )


def test_every_real_sample_event_converts_to_a_valid_event(
    sample_events: list[dict[str, Any]],
) -> None:
    for raw in sample_events:
        event = to_ocsf(raw, tenant=TENANT, watched_user_id=WATCHED)
        validate_ocsf(event, "real sample events (150)")
        assert json.loads(event["raw_data"]) == raw  # nothing lost


def test_every_code_the_traffic_simulator_produces_converts_to_a_valid_event() -> None:
    # GIVEN ordinary traffic and attack bursts from the simulator, over several seeds
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 8, tzinfo=UTC)
    produced: set[str] = set()
    for seed in range(6):
        rng = random.Random(seed)
        events = traffic.generate_user_events(
            f"auth0|user{seed}", count=400, start=start, end=end, rng=rng
        )
        events += traffic.attack_burst(
            f"auth0|user{seed}", count=60, start=start, seconds=120, rng=rng, leaked_password=True
        )
        for i, raw in enumerate(events):
            raw = {**raw, "log_id": f"900{seed:04d}{i:049d}"}
            validate_ocsf(
                to_ocsf(raw, tenant=TENANT, watched_user_id=WATCHED), "devtools/traffic.py events"
            )
            produced.add(raw["type"])
    # THEN every code the simulator knows was produced and validated
    assert produced == {code for code, _ in traffic._TYPE_WEIGHTS}


# -- what the mapping says --------------------------------------------------------------------


def test_a_login_is_an_authentication_logon_with_user_source_and_agent(
    sample_events: list[dict[str, Any]],
) -> None:
    raw = sample_events[0]
    event = to_ocsf(raw, tenant=TENANT, watched_user_id=WATCHED)
    assert (event["class_uid"], event["activity_id"], event["status_id"]) == (3002, 1, 1)
    assert event["type_uid"] == 300201 and event["category_uid"] == 3
    assert event["user"]["uid"] == raw["user_id"] and event["user"]["name"] == raw["user_name"]
    assert event["src_endpoint"] == {"ip": raw["ip"]}
    assert event["http_request"]["user_agent"] == raw["user_agent"]
    assert event["service"] == {"uid": raw["client_id"], "name": raw["client_name"]}
    assert event["session"]["uid"] == raw["details"]["session_id"]
    assert event["metadata"]["uid"] == raw["log_id"] and event["metadata"]["event_code"] == "s"
    assert event["metadata"]["original_time"] == raw["date"] and event["time"] == 1635984910706
    assert event["metadata"]["product"] == {"name": "Auth0", "vendor_name": "Okta"}


def test_the_forwarder_additions_sit_in_unmapped_and_metadata() -> None:
    event = to_ocsf(synthetic_event("s", random.Random(1)), tenant=TENANT, watched_user_id=WATCHED)
    assert event["unmapped"]["_forwarder"] == {
        "format": 1, "tenant": TENANT, "watched_user_id": WATCHED, "type_name": "Success Login",
    }  # fmt: skip
    assert event["metadata"]["tenant_uid"] == TENANT


def test_location_becomes_the_source_location() -> None:
    event = to_ocsf(synthetic_event("s", random.Random(1)), tenant=TENANT, watched_user_id=WATCHED)
    assert event["src_endpoint"]["location"] == {
        "country": "DE",
        "city": "Berlin",
        "lat": 52.52,
        "long": 13.405,
    }


def test_a_management_api_write_is_api_activity_with_actor_and_request(
    sample_events: list[dict[str, Any]],
) -> None:
    raw = sample_events[60]  # sapi: "Create a log stream", POST /api/v2/log-streams
    event = to_ocsf(raw, tenant=TENANT, watched_user_id=WATCHED)
    assert (event["class_uid"], event["activity_id"], event["status_id"]) == (6003, 1, 1)
    assert event["api"]["operation"] == "Create a log stream"
    assert event["api"]["response"] == {"code": 200} and event["http_response"] == {"code": 200}
    assert event["actor"]["user"]["uid"] == raw["details"]["request"]["auth"]["user"]["user_id"]
    assert event["actor"]["app_uid"] == raw["client_id"] and "app_name" not in event["actor"]
    assert event["http_request"]["http_method"] == "POST"
    assert event["http_request"]["url"] == {"path": "/api/v2/log-streams"}
    assert event["src_endpoint"]["ip"] == raw["ip"]


@pytest.mark.parametrize(
    ("method", "activity"),
    [("post", 1), ("GET", 2), ("put", 3), ("patch", 3), ("delete", 4), ("head", 99), (None, 99)],
)
def test_api_activity_follows_the_http_method(method: str | None, activity: int) -> None:
    raw = {"type": "sapi", "ip": "192.0.2.1", "details": {"request": {"method": method}}}
    assert classify(raw).activity_id == activity


def test_an_api_event_without_any_source_address_falls_back_to_base() -> None:
    raw = {
        "date": "2026-11-25T10:00:00Z",
        "type": "fapi",
        "details": {"request": {"method": "post"}},
    }
    event = to_ocsf(raw, tenant=TENANT, watched_user_id=WATCHED)
    assert (event["class_uid"], event["status_id"]) == (0, 2)
    validate_ocsf(event)


def test_a_client_credentials_exchange_is_about_the_client(
    sample_events: list[dict[str, Any]],
) -> None:
    raw = next(e for e in sample_events if e["type"] == "seccft")
    event = to_ocsf(raw, tenant=TENANT, watched_user_id=WATCHED)
    assert event["user"] == {
        "uid": raw["client_id"],
        "name": raw["client_name"],
        "type_id": 99,
        "type": "Client",
    }
    assert (event["activity_id"], event["auth_protocol_id"]) == (4, 6)


def test_an_event_naming_no_user_is_attributed_to_the_watched_user(
    sample_events: list[dict[str, Any]],
) -> None:
    raw = sample_events[22]  # `f` callback mismatch: no user_id, no user_name
    event = to_ocsf(raw, tenant=TENANT, watched_user_id=WATCHED)
    assert event["user"]["uid"] == WATCHED and event["status_id"] == 2
    assert event["status_detail"].startswith("Callback URL mismatch")


@pytest.mark.parametrize(
    ("code", "class_uid", "activity_id"),
    [
        ("scp", 3001, 3), ("scpr", 3001, 4), ("gd_unenroll", 3001, 11), ("gd_enrollment_complete", 3001, 10),
        ("limit_wc", 3001, 9), ("ublkdu", 3001, 12), ("ss", 3001, 1), ("du", 3001, 6),
        ("slo", 3002, 2), ("sertft", 3002, 5), ("mfar", 3002, 6), ("depnote", 0, 99),
    ],
)  # fmt: skip
def test_account_and_session_codes_land_where_the_table_says(
    code: str, class_uid: int, activity_id: int
) -> None:
    event = to_ocsf(synthetic_event(code, random.Random(3)), tenant=TENANT, watched_user_id=WATCHED)
    assert (event["class_uid"], event["activity_id"]) == (class_uid, activity_id)


@pytest.mark.parametrize("code", ["brand_new_code", 42, None, ["s"], {"x": 1}])
def test_unknown_or_odd_codes_become_a_base_event_and_keep_the_original(code: object) -> None:
    raw = {"date": "2026-11-25T10:00:00Z", "type": code, "log_id": "900x", "ip": "not an ip"}
    event = to_ocsf(raw, tenant=TENANT, watched_user_id=WATCHED)
    assert (event["class_uid"], event["activity_id"], event["status_id"]) == (0, 99, 0)
    assert json.loads(event["raw_data"]) == raw
    validate_ocsf(event)


@pytest.mark.parametrize("date", [None, "", "yesterday", 17, {"$date": None}])
def test_an_unreadable_date_is_the_only_refusal(date: object) -> None:
    with pytest.raises(MalformedEvent):
        to_ocsf({"type": "s", "date": date}, tenant=TENANT, watched_user_id=WATCHED)


def test_the_validator_is_not_vacuous() -> None:
    # GIVEN valid events broken in the ways the checks exist for
    good = to_ocsf(synthetic_event("s", random.Random(2)), tenant=TENANT, watched_user_id=WATCHED)
    broken = [
        {k: v for k, v in good.items() if k != "user"},  # required attribute missing
        {**good, "type_uid": 300202},  # type_uid disagrees with activity_id
        {**good, "category_uid": 6},  # wrong category
        {**good, "severity_id": 7},  # outside the enum
        {**good, "metadata": {**good["metadata"], "version": "1.1.0"}},  # other schema version
        {**good, "src_endpoint": {"ip": "203.0.113.9", "geo": "x"}},  # attribute OCSF lacks
        {**good, "user": {"type_id": 1}},  # user names nobody
    ]
    for event in broken:
        with pytest.raises((InvalidFindingError, AssertionError, ValueError)):
            validate_ocsf(event)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=150, deadline=None)
@given(
    code=st.sampled_from(sorted(EVENT_TYPES)) | JSON,
    fields=st.dictionaries(
        st.sampled_from(
            ["ip", "details", "location_info", "user_id", "user_name", "client_id", "client_name",
             "hostname", "user_agent", "strategy", "description", "scope", "log_id"]
        ),
        JSON,
    ),
)  # fmt: skip
def test_odd_field_types_still_give_a_valid_event(code: object, fields: dict[str, Any]) -> None:
    raw = {**fields, "type": code, "date": "2026-11-25T10:00:00.000Z"}
    validate_ocsf(to_ocsf(raw, tenant=TENANT, watched_user_id=WATCHED))


def test_the_readme_shows_the_mapping_by_class_of_the_code() -> None:
    from pathlib import Path

    from devtools.ocsf_mapping_doc import class_summary_markdown

    readme = (Path(__file__).resolve().parents[2] / "docs" / "output.md").read_text(
        encoding="utf-8"
    )
    assert class_summary_markdown() in readme
