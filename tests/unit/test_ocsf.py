"""OCSF output, validated against OCSF itself: each release compiled by OCSF's own compiler.

`devtools/ocsf_schema.py` applies the OCSF Server's event validator to the compiled schema JSON
(types, required attributes, enums and their captions, closed classes and objects, profiles,
arrays, nested objects, constraints, class/category/type_uid consistency, schema version). 1.5.0
is read from `../shared/reference/ocsf/` (tests skip with the reason when it is absent); 1.8.0
is committed beside these tests (`tests/data/ocsf/`, see its SOURCE.md). Every code in
event_types.py, an event of every type Auth0's schemas define, every real sample event, every
code the traffic simulator produces and odd field types from hypothesis are validated for each
release the operator can choose; the figures are printed at the end of the run.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools import traffic
from devtools.ocsf_mapping_doc import mapping_table_markdown
from devtools.ocsf_schema import CompiledSchema
from log_forwarder.event_types import EVENT_TYPES
from log_forwarder.events import MalformedEvent
from log_forwarder.ocsf import (
    ACTIVITIES,
    CLASSES,
    DEFAULT_OCSF_VERSION,
    OCSF_CLASS_BY_TYPE,
    OCSF_VERSIONS,
    SEVERITIES,
    STATUSES,
    classify,
    to_ocsf,
)
from tests.conftest import REFERENCE_DIR

DOC = Path(__file__).resolve().parents[2] / "docs" / "ocsf-mapping.md"
SCHEMA_FILES = {
    "1.5.0": REFERENCE_DIR / "ocsf" / "compiled-ocsf-1.5.0.json.gz",
    "1.8.0": Path(__file__).resolve().parents[1] / "data" / "ocsf" / "compiled-ocsf-1.8.0.json.gz",
}
RELEASES = sorted(OCSF_VERSIONS)
TENANT = "example.eu.auth0.com"
WATCHED = "auth0|watched"
# corpus -> OCSF class name -> [events validated, codes seen]
OCSF_LEDGER: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(lambda: [0, set()]))


def compiled(release: str) -> CompiledSchema:
    path = SCHEMA_FILES[release]
    if not path.exists() and path.is_relative_to(REFERENCE_DIR):
        pytest.skip(f"compiled OCSF {release} not found at {path} (../shared is not checked out)")
    return CompiledSchema.load(path)


def validate_ocsf(event: dict[str, Any], corpus: str | None = None) -> None:
    """Raise unless the release `event` names accepts it; count it under `corpus`."""
    json.dumps(event, allow_nan=False)
    release = event["metadata"]["version"]
    problems = compiled(release).problems(event)
    assert not problems, "\n".join(str(p) for p in problems)
    if corpus is not None:
        row = OCSF_LEDGER[f"OCSF {release}: {corpus}"][
            f"{event['class_name']} ({event['class_uid']})"
        ]
        row[0] += 1
        row[1].add(event["metadata"].get("event_code"))


def convert(raw: dict[str, Any], release: str = "1.5.0") -> dict[str, Any]:
    return to_ocsf(raw, tenant=TENANT, watched_user_id=WATCHED, version=OCSF_VERSIONS[release])


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


# -- the releases -----------------------------------------------------------------------------


def test_the_default_release_is_1_5_0_and_1_8_0_can_be_chosen() -> None:
    assert DEFAULT_OCSF_VERSION.name == "1.5.0"
    assert RELEASES == ["1.5.0", "1.8.0"]
    assert all(name == version.name for name, version in OCSF_VERSIONS.items())


@pytest.mark.parametrize("release", RELEASES)
def test_what_each_release_record_says_is_what_its_compiled_schema_defines(release: str) -> None:
    # GIVEN the release as OCSF's compiler built it, and the mapping's record of it
    schema, version = compiled(release), OCSF_VERSIONS[release]
    assert schema.version == release
    http_method = schema.object_named("http_request")["attributes"]["http_method"]
    user_types = schema.object_named("user")["attributes"]["type_id"]["enum"]
    # THEN each fact the mapping relies on is the schema's own
    assert version.http_methods == set(http_method["enum"])
    assert version.service_user_type == (user_types.get("4", {}).get("caption") == "Service")
    factors = "auth_factors" in schema.class_named(3001)["attributes"]
    assert version.account_change_factors == factors
    # AND so are the class, category, activity, status and severity captions the mapping writes
    for class_uid, (class_name, category_uid, category_name) in CLASSES.items():
        found = schema.class_named(class_uid)
        attributes = found["attributes"]
        assert (found["caption"], found["category_uid"]) == (class_name, category_uid)
        assert attributes["category_uid"]["enum"][str(category_uid)]["caption"] == category_name
        activities = {int(k): v["caption"] for k, v in attributes["activity_id"]["enum"].items()}
        assert ACTIVITIES[class_uid].items() <= activities.items()
        statuses = {int(k): v["caption"] for k, v in attributes["status_id"]["enum"].items()}
        assert statuses == STATUSES
        severities = {int(k): v["caption"] for k, v in attributes["severity_id"]["enum"].items()}
        assert {i: caption for i, caption in SEVERITIES.values()}.items() <= severities.items()


def test_the_operator_picks_the_release_with_ocsf_version() -> None:
    from log_forwarder.config import OutputSettings
    from log_forwarder.exceptions import ConfigError

    # GIVEN no OCSF_VERSION, an empty one (the template's), and each release by name
    assert OutputSettings.from_env({}).ocsf_version is DEFAULT_OCSF_VERSION
    assert OutputSettings.from_env({"OCSF_VERSION": ""}).ocsf_version is DEFAULT_OCSF_VERSION
    for name in RELEASES:
        settings = OutputSettings.from_env({"OUTPUT_FORMAT": "ocsf", "OCSF_VERSION": name})
        assert settings.ocsf_version is OCSF_VERSIONS[name]
    # THEN a release the mapping does not know is refused, naming the variable and the choices
    for wrong in ("1.6.0", "1.8", "latest"):
        with pytest.raises(
            ConfigError, match=r"OCSF_VERSION='.*' is not allowed.*1\.5\.0, 1\.8\.0"
        ):
            OutputSettings.from_env({"OUTPUT_FORMAT": "ocsf", "OCSF_VERSION": wrong})


def test_the_committed_1_8_0_schema_is_the_one_its_source_note_names() -> None:
    import hashlib

    path = SCHEMA_FILES["1.8.0"]
    note = (path.parent / "SOURCE.md").read_text(encoding="utf-8")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert digest in note, "tests/data/ocsf/SOURCE.md names another file: regenerate or update it"


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


# -- validation over every corpus, for each release -------------------------------------------


@pytest.mark.parametrize("release", RELEASES)
def test_every_known_code_converts_to_a_valid_event(release: str) -> None:
    rng = random.Random(7)
    for code in EVENT_TYPES:
        for _ in range(3):
            validate_ocsf(
                convert(synthetic_event(code, rng), release),
                "event_types.py codes (synthetic events)",
            )


@pytest.mark.parametrize("release", RELEASES)
def test_an_event_of_every_type_auth0s_schemas_define_converts_to_a_valid_event(
    release: str,
) -> None:
    from devtools.schema_events import SCHEMA_DIR, event_codes, events_for_type

    if not SCHEMA_DIR.is_dir():
        pytest.skip(f"Auth0's log schemas not found at {SCHEMA_DIR} (../shared is not checked out)")
    for code in event_codes():
        for seed in range(4):
            for raw in events_for_type(code, random.Random(seed), count=2, user_id=WATCHED):
                event = convert(raw, release)
                validate_ocsf(event, "Auth0's log schemas, every type (devtools/schema_events.py)")
                assert json.loads(event["raw_data"]) == raw


@pytest.mark.parametrize("release", RELEASES)
def test_every_real_sample_event_converts_to_a_valid_event(
    release: str, sample_events: list[dict[str, Any]]
) -> None:
    for raw in sample_events:
        event = convert(raw, release)
        validate_ocsf(event, "real sample events (150)")
        assert json.loads(event["raw_data"]) == raw  # nothing lost


@pytest.mark.parametrize("release", RELEASES)
def test_every_code_the_traffic_simulator_produces_converts_to_a_valid_event(
    release: str,
) -> None:
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
            validate_ocsf(convert(raw, release), "devtools/traffic.py events")
            produced.add(raw["type"])
    # THEN every code the simulator knows was produced and validated
    assert produced == {code for code, _ in traffic._TYPE_WEIGHTS}


# -- values a release does not define ---------------------------------------------------------


def api_call(method: object, **extra: Any) -> dict[str, Any]:
    return {
        "date": "2026-11-25T10:00:00.000Z",
        "type": "sapi",
        "log_id": "900patch",
        "ip": "192.0.2.44",
        "description": "Update a user",
        "details": {"request": {"method": method, "path": "/api/v2/users/x"}},
        **extra,
    }


def test_a_patch_request_in_1_5_0_keeps_its_method_in_unmapped_not_in_http_method() -> None:
    # GIVEN a Management API PATCH, which OCSF 1.5.0's http_method does not list
    event = convert(api_call("patch"), "1.5.0")
    # THEN it is still an Update, the method is in unmapped under Auth0's name, and 1.5.0 accepts it
    assert (event["class_uid"], event["activity_id"]) == (6003, 3)
    assert "http_method" not in event["http_request"]
    assert event["unmapped"]["details"] == {"request": {"method": "patch"}}
    validate_ocsf(event)


def test_a_patch_request_in_1_8_0_is_http_method_patch() -> None:
    event = convert(api_call("patch"), "1.8.0")
    assert event["http_request"]["http_method"] == "PATCH"
    assert "details" not in event["unmapped"]
    validate_ocsf(event)


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("method", ["get ", "FETCH", "pätch", ""])
def test_a_method_no_release_defines_goes_to_unmapped(release: str, method: str) -> None:
    event = convert(api_call(method), release)
    assert "http_method" not in event.get("http_request", {})
    if method:
        assert event["unmapped"]["details"]["request"]["method"] == method
    validate_ocsf(event)


@pytest.mark.parametrize("release", RELEASES)
def test_status_other_says_what_auth0_said_not_other(release: str) -> None:
    # GIVEN a login warning: neither a success nor a failure, so status 99 (Other)
    raw = synthetic_event("w", random.Random(1))
    event = convert(raw, release)
    # THEN status holds Auth0's words for it, as OCSF asks beside a 99
    assert (event["status_id"], event["status"]) == (99, "Warning During Login")
    validate_ocsf(event)


@pytest.mark.parametrize("release", RELEASES)
def test_a_base_event_of_activity_other_names_the_auth0_event_in_type_name(release: str) -> None:
    event = convert(synthetic_event("depnote", random.Random(1)), release)
    assert (event["class_uid"], event["type_uid"]) == (0, 99)
    assert event["activity_name"] == "Deprecation Notice"
    assert event["type_name"] == "Base Event: Deprecation Notice"
    validate_ocsf(event)


def test_a_client_credentials_exchange_is_a_service_account_where_the_release_has_one(
    sample_events: list[dict[str, Any]],
) -> None:
    raw = next(e for e in sample_events if e["type"] == "seccft")
    old, new = convert(raw, "1.5.0"), convert(raw, "1.8.0")
    client = {"uid": raw["client_id"], "name": raw["client_name"]}
    assert old["user"] == {**client, "type_id": 99, "type": "Client"}
    assert new["user"] == {**client, "type_id": 4, "type": "Service"}
    validate_ocsf(old)
    validate_ocsf(new)


def test_an_mfa_enrolment_names_its_factor_where_account_change_can_carry_one() -> None:
    raw = {
        **synthetic_event("gd_enrollment_complete", random.Random(1)),
        "details": {"authenticator": {"type": "otp"}},
    }
    old, new = convert(raw, "1.5.0"), convert(raw, "1.8.0")
    assert (new["activity_id"], new["auth_factors"]) == (
        10,
        [{"factor_type_id": 7, "factor_type": "OTP"}],
    )
    assert "auth_factors" not in old
    validate_ocsf(old)
    validate_ocsf(new)


@pytest.mark.parametrize("release", RELEASES)
def test_newer_auth0_fields_without_an_ocsf_attribute_stay_in_unmapped(release: str) -> None:
    raw = {
        **synthetic_event("sdel", random.Random(1)),
        "agent_id": "agent_7Hq2",
        "external_agent_id": "crm-bot-4",
        "is_mobile": False,
        "security_context": {
            "ja3": "a0e9f5d64349fb13191bc781f81f42e1",
            "ja4": "t13d1516h2_8daaf6152771_e5627efa2ab1",
            "x": 1,
        },
    }
    event = convert(raw, release)
    assert {k: event["unmapped"][k] for k in ("agent_id", "external_agent_id", "is_mobile")} == {
        "agent_id": "agent_7Hq2", "external_agent_id": "crm-bot-4", "is_mobile": False,
    }  # fmt: skip
    assert event["unmapped"]["security_context"] == {
        "ja3": raw["security_context"]["ja3"], "ja4": raw["security_context"]["ja4"],
    }  # fmt: skip
    validate_ocsf(event)
    # AND odd types there are skipped, never trusted
    odd = convert({**raw, "agent_id": 7, "is_mobile": "yes", "security_context": "x"}, release)
    assert not {"agent_id", "is_mobile", "security_context"} & set(odd["unmapped"])


@pytest.mark.parametrize("release", RELEASES)
def test_values_ocsf_would_refuse_are_not_offered(release: str) -> None:
    # GIVEN a user name OCSF's email pattern refuses, and an IPv6 address too long for ip_t
    raw = {
        **synthetic_event("s", random.Random(1)),
        "user_name": "jürgen@example.com",
        "ip": "fe80::1%" + "x" * 40,
    }
    event = convert(raw, release)
    # THEN neither is written where OCSF would refuse it, and the rest of the event is kept
    assert "email_addr" not in event["user"] and event["user"]["name"] == "jürgen@example.com"
    assert "src_endpoint" not in event
    validate_ocsf(event)


# -- the validator itself ---------------------------------------------------------------------


def test_the_validator_refuses_each_thing_it_exists_to_refuse() -> None:
    schema = compiled("1.5.0")
    good = convert(api_call("post", client_id="c1"), "1.5.0")
    login = convert(synthetic_event("s", random.Random(2)), "1.5.0")
    assert schema.problems(good) == [] and schema.problems(login) == []
    metadata = good["metadata"]
    broken = {
        "attribute_required_missing": {k: v for k, v in good.items() if k != "api"},
        "attribute_unknown": {**good, "geo": "x"},
        "attribute_wrong_type": {**good, "time": "2026-11-25"},
        "attribute_enum_value_unknown": {**good, "http_request": {"http_method": "PATCH"}},
        "attribute_enum_sibling_incorrect": {**good, "class_name": "Authentication"},
        "attribute_enum_sibling_suspicious_other": {**login, "status_id": 99, "status": "Other"},
        "type_uid_incorrect": {**good, "type_uid": 600302},
        "version_incompatible": {**good, "metadata": {**metadata, "version": "1.1.0"}},
        "profile_unknown": {**good, "metadata": {**metadata, "profiles": ["nope"]}},
        "attribute_value_regex_not_matched": {
            **login,
            "user": {**login["user"], "email_addr": "a b"},
        },
        "attribute_value_exceeds_max_len": {**good, "src_endpoint": {"ip": "1.2.3.4" + " " * 40}},
        "constraint_failed": {**good, "src_endpoint": {"port": 443}},
        "attribute_value_null": {**good, "src_endpoint": {"ip": "192.0.2.1", "location": None}},
    }
    for kind, event in broken.items():
        kinds = {p.kind for p in schema.problems(event)}
        assert kind in kinds, (kind, kinds)
    # AND nested objects, arrays and profiles are walked, not only the top level
    nested = {**login, "src_endpoint": {"ip": "192.0.2.1", "location": {"city": "x", "planet": 3}}}
    assert any(p.path == "src_endpoint.location.planet" for p in schema.problems(nested))
    array = {**login, "auth_factors": {"factor_type_id": 7}}
    assert any(p.kind == "attribute_wrong_type" for p in schema.problems(array))
    element = {**login, "auth_factors": [{"factor_type_id": 7}, {"factor_type_id": 1000}]}
    assert any(p.path == "auth_factors[1].factor_type_id" for p in schema.problems(element))
    profiled = {**login, "time_dt": "2026-11-25T10:00:00.000Z"}
    assert {p.kind for p in schema.problems(profiled)} == {"attribute_unknown"}
    with_profile = {**profiled, "metadata": {**login["metadata"], "profiles": ["datetime"]}}
    assert schema.problems(with_profile) == []


def test_the_validator_knows_what_changed_between_releases() -> None:
    # GIVEN a PATCH API event written as 1.8.0, then relabelled as 1.5.0
    event = convert(api_call("patch"), "1.8.0")
    relabelled = {**event, "metadata": {**event["metadata"], "version": "1.5.0"}}
    assert compiled("1.8.0").problems(event) == []
    # THEN 1.5.0 refuses exactly the method it does not define
    assert [(p.path, p.kind) for p in compiled("1.5.0").problems(relabelled)] == [
        ("http_request.http_method", "attribute_enum_value_unknown")
    ]


# -- what the mapping says --------------------------------------------------------------------


def test_a_login_is_an_authentication_logon_with_user_source_and_agent(
    sample_events: list[dict[str, Any]],
) -> None:
    raw = sample_events[0]
    event = convert(raw)
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
    event = convert(synthetic_event("s", random.Random(1)))
    assert event["unmapped"]["_forwarder"] == {
        "format": 1, "tenant": TENANT, "watched_user_id": WATCHED, "type_name": "Success Login",
    }  # fmt: skip
    assert event["metadata"]["tenant_uid"] == TENANT


def test_location_becomes_the_source_location() -> None:
    event = convert(synthetic_event("s", random.Random(1)))
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
    event = convert(raw)
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
    event = convert(raw)
    assert (event["class_uid"], event["status_id"]) == (0, 2)
    validate_ocsf(event)


def test_a_client_credentials_exchange_is_about_the_client(
    sample_events: list[dict[str, Any]],
) -> None:
    raw = next(e for e in sample_events if e["type"] == "seccft")
    event = convert(raw)
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
    event = convert(raw)
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
    event = convert(synthetic_event(code, random.Random(3)))
    assert (event["class_uid"], event["activity_id"]) == (class_uid, activity_id)


@pytest.mark.parametrize("code", ["brand_new_code", 42, None, ["s"], {"x": 1}])
def test_unknown_or_odd_codes_become_a_base_event_and_keep_the_original(code: object) -> None:
    raw = {"date": "2026-11-25T10:00:00Z", "type": code, "log_id": "900x", "ip": "not an ip"}
    event = convert(raw)
    assert (event["class_uid"], event["activity_id"], event["status_id"]) == (0, 99, 0)
    assert json.loads(event["raw_data"]) == raw
    validate_ocsf(event)


@pytest.mark.parametrize("date", [None, "", "yesterday", 17, {"$date": None}])
def test_an_unreadable_date_is_the_only_refusal(date: object) -> None:
    with pytest.raises(MalformedEvent):
        to_ocsf({"type": "s", "date": date}, tenant=TENANT, watched_user_id=WATCHED)


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
             "hostname", "user_agent", "strategy", "description", "scope", "log_id",
             "security_context", "agent_id", "external_agent_id", "is_mobile", "isMobile"]
        ),
        JSON,
    ),
)  # fmt: skip
def test_odd_field_types_still_give_a_valid_event(code: object, fields: dict[str, Any]) -> None:
    raw = {**fields, "type": code, "date": "2026-11-25T10:00:00.000Z"}
    for release in RELEASES:
        validate_ocsf(convert(raw, release))


def test_the_readme_shows_the_mapping_by_class_of_the_code() -> None:
    from pathlib import Path

    from devtools.ocsf_mapping_doc import class_summary_markdown

    readme = (Path(__file__).resolve().parents[2] / "docs" / "output.md").read_text(
        encoding="utf-8"
    )
    assert class_summary_markdown() in readme


# -- hostile values in the places the mapping reads (issue #21 review: attack/ocsf_fuzz.py) ----

# Where the mapping reads a value, as a path into the event.
READ_PLACES = [
    ("details", "response", "statusCode"),
    ("location_info", "latitude"),
    ("location_info", "longitude"),
    ("location_info", "country_code"),
    ("location_info", "city_name"),
    ("details", "request", "method"),
    ("details", "request", "path"),
    ("details", "request", "auth"),
    ("details", "request", "auth", "user"),
    ("details", "request", "auth", "user", "email"),
    ("details", "request", "auth", "user", "user_id"),
    ("details", "request", "auth", "user", "name"),
    ("details", "authenticator", "type"),
    ("ip",),
    ("user_name",),
    ("user_id",),
    ("client_id",),
    ("client_name",),
    ("strategy",),
    ("hostname",),
    ("description",),
    ("log_id",),
]
# Values no Auth0 event should hold, each valid JSON: numbers past every integer and float type
# OCSF has (10**400 reads as a Python int), off the globe, not a status; odd strings and types.
HOSTILE = st.sampled_from(
    [10**20, 10**400, -(10**400), 2**31, -(2**63) - 1, -5, 0, 1e308, -1e308, 91.5, -200.0,
     "", "x" * 300, "fe80::1%eth0", "fe80::1%" + "x" * 40, "::ffff:1.2.3.4", "a@b.co\n",
     "a@b..c", "patch", "PROPFIND", "FRA", None, True, [], {}, ["n"], {"email": "x@y.z"}]
) | st.recursive(
    # What the client can hand over: it reads NaN, Infinity and 1e400 as their text.
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)  # fmt: skip


def _bases() -> list[dict[str, Any]]:
    """The real sample events and an event of each type Auth0's schemas define (those present)."""
    from devtools.schema_events import SCHEMA_DIR, event_codes, events_for_type
    from tests.conftest import SAMPLE_EVENTS

    bases = []
    if SAMPLE_EVENTS.exists():
        lines = SAMPLE_EVENTS.read_text(encoding="utf-8").splitlines()
        bases += [json.loads(line) for line in lines if line]
    if SCHEMA_DIR.is_dir():
        rng = random.Random(7)
        bases += [e for code in event_codes() for e in events_for_type(code, rng, count=1)]
    return bases or [synthetic_event("sapi", random.Random(1))]


BASES = _bases()


def _put(event: dict[str, Any], path: tuple[str, ...], value: object) -> dict[str, Any]:
    mutated = json.loads(json.dumps(event))
    at = mutated
    for key in path[:-1]:
        if not isinstance(at.get(key), dict):
            at[key] = {}
        at = at[key]
    at[path[-1]] = value
    return mutated


@settings(max_examples=200, deadline=None)
@given(
    base=st.sampled_from(range(len(BASES))),
    changes=st.lists(st.tuples(st.sampled_from(READ_PLACES), HOSTILE), min_size=1, max_size=3),
)
def test_hostile_values_where_the_mapping_reads_still_give_a_valid_event(
    base: int, changes: list[tuple[tuple[str, ...], object]]
) -> None:
    raw = BASES[base]
    for path, value in changes:
        raw = _put(raw, path, value)
    for release in RELEASES:
        event = convert(raw, release)
        validate_ocsf(event)
        # AND nothing of the event is lost: it is all in raw_data
        assert json.loads(event["raw_data"]) == raw


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("location_info", "latitude"), 10**400),
        (("location_info", "longitude"), -(10**400)),
        (("details", "response", "statusCode"), 10**20),
        (("details", "response", "statusCode"), -5),
        (("details", "request", "auth", "user"), {"email": "x@y.z", "user_id": 5, "name": ["n"]}),
    ],
)
def test_the_reviewers_hostile_values_are_refused_by_the_mapping_not_copied(
    release: str, path: tuple[str, ...], value: object
) -> None:
    raw = _put({**synthetic_event("sapi", random.Random(3)), "user_id": None}, path, value)
    event = convert(raw, release)
    validate_ocsf(event)
    location = event.get("src_endpoint", {}).get("location", {})
    assert "lat" not in location or -90 <= location["lat"] <= 90
    assert "long" not in location or -180 <= location["long"] <= 180
    for code in (event.get("api", {}).get("response", {}), event.get("http_response", {})):
        assert code.get("code", 200) in range(100, 600)
