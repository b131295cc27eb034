"""Tests for log_forwarder.event_types: names and severities of Auth0 log `type` codes."""

from __future__ import annotations

import dataclasses
import re
import types
from typing import get_args

import pytest

from log_forwarder import event_types
from log_forwarder.event_types import EVENT_TYPES, UNKNOWN_NAME, EventType, Severity, describe

# The groups that docs/auth0-logs-api.md ("The event" -> "Severity groups") lists by code.
DOCUMENTED_ERRORS = [
    "f",
    "fu",
    "fp",
    "fs",
    "fn",
    "fcp",
    "fco",
    "flo",
    "limit_wc",
    "limit_mu",
    "pwd_leak",
    "gd_auth_failed",
    "api_limit",
    "feacft",
]
DOCUMENTED_WARNINGS = ["depnote", "w", "fui", "gd_otp_rate_limit_exceed"]

# Auth0's "Filter Log Events" page (Dashboard error filters), resolved from filter name to code.
DASHBOARD_ERROR_FILTERS = [
    "limit_wc",
    "limit_mu",
    "pwd_leak",
    "fdecc",
    "gd_send_pn_failure",
    "gd_send_sms_failure",
    "fapi",
    "fce",
    "fcp",
    "fcpr",
    "fcpn",
    "fcu",
    "fcpro",
    "fd",
    "fecte",
    "fens",
    "feacft",
    "feccft",
    "fepft",
    "fertft",
    "feoobft",
    "feotpft",
    "fercft",
    "fede",
    "f",
    "fu",
    "fp",
    "flo",
    "oidc_backchannel_logout_failed",
    "fcph",
    "fpurh",
    "fn",
    "fs",
    "fsa",
    "fdu",
    "fv",
    "fvr",
    "fco",
    "fc",
    "fcoa",
    "fdeac",
    "fdeaz",
    "gd_start_enroll_failed",
    "gd_auth_failed",
    "gd_auth_rejected",
    "api_limit",
    "gd_recovery_failed",
    "limit_delegation",
    "limit_ui",
]
DASHBOARD_WARNING_FILTERS = [
    "depnote",
    "gd_otp_rate_limit_exceed",
    "gd_recovery_rate_limit_exceed",
    "fui",
    "w",
]


@pytest.mark.parametrize("code", DOCUMENTED_ERRORS)
def test_documented_error_codes_are_errors(code: str) -> None:
    # GIVEN a code that the project's Auth0 notes put in the error group
    # WHEN it is described
    # THEN it is an error
    assert describe(code).severity == "error"


@pytest.mark.parametrize("code", DOCUMENTED_WARNINGS)
def test_documented_warning_codes_are_warnings(code: str) -> None:
    assert describe(code).severity == "warning"


@pytest.mark.parametrize("code", DASHBOARD_ERROR_FILTERS)
def test_dashboard_error_filter_codes_are_errors(code: str) -> None:
    assert describe(code).severity == "error"


def test_warnings_are_exactly_auth0s_warning_filters_and_codes_named_as_warnings() -> None:
    # GIVEN the table
    # WHEN every code with severity "warning" is collected
    warnings = {code for code, event in EVENT_TYPES.items() if event.severity == "warning"}
    # THEN it is the Dashboard's warning filters plus the newer codes Auth0 names as warnings
    newer = {"api_limit_warning", "wn", "wum", "acul_sdk_notice"}
    assert warnings == set(DASHBOARD_WARNING_FILTERS) | newer


@pytest.mark.parametrize(
    ("code", "severity"),
    [
        # The first letter does not decide the severity.
        ("fui", "warning"),
        ("flows_execution_completed", "info"),
        ("forms_submission_succeeded", "info"),
        ("failed_on_behalf_of_token_exchange", "error"),
        # A released block is good news, a connector going offline is not.
        ("ublkdu", "info"),
        ("coff", "error"),
        ("limit_sul", "error"),
        ("gd_send_sms_failure", "error"),
        # A completed deletion is not a failure, whatever the old log extension said.
        ("du", "info"),
        ("s", "info"),
        ("sapi", "info"),
        ("seacft", "info"),
        ("mgmt_api_read", "info"),
    ],
)
def test_severity_of_codes_that_a_prefix_rule_would_get_wrong(code: str, severity: str) -> None:
    assert describe(code).severity == severity


def test_names_that_say_failed_or_error_are_errors_and_success_names_are_info() -> None:
    # GIVEN every entry of the table
    for event in EVENT_TYPES.values():
        # THEN a failure by name is an error and a success by name is info
        # (Auth0 files a failed user import as a warning: the import job reports per user.)
        if re.match(r"(Failed|Error)\b", event.name) and event.code != "fui":
            assert event.severity == "error", event
        if re.match(r"Success(ful|fully)?\b", event.name):
            assert event.severity == "info", event


@pytest.mark.parametrize(
    ("code", "name"),
    [
        ("s", "Success Login"),
        ("f", "Failed Login"),
        ("fp", "Failed Login (Incorrect Password)"),
        ("fu", "Failed Login (Invalid Email/Username)"),
        ("sapi", "Success API Operation"),
        ("seacft", "Success Exchange (Authorization Code for Access Token)"),
        ("seccft", "Success Exchange (Client Credentials for Access Token)"),
        ("limit_wc", "Blocked Account"),
        ("pwd_leak", "Breached password"),
        ("gd_auth_failed", "MFA Auth failed"),
        ("depnote", "Deprecation Notice"),
        ("slo", "Success Logout"),
        ("ss", "Success Signup"),
        ("fs", "Failed Signup"),
        ("sv", "Success Verification Email"),
        ("fn", "Failed Sending Notification"),
        ("gd_tenant_update", "Guardian tenant update"),
        ("ublkdu", "User login block released"),
    ],
)
def test_known_names(code: str, name: str) -> None:
    # GIVEN a known code
    # WHEN it is described
    event = describe(code)
    # THEN the entry carries Auth0's name and the code itself
    assert event == EventType(code=code, name=name, severity=event.severity)
    assert event is EVENT_TYPES[code]


@pytest.mark.parametrize("code", ["brand_new_code_2031", "", "S", " s", "s ", "SAPI"])
def test_unknown_string_codes_are_info_and_keep_the_code(code: str) -> None:
    # GIVEN a code the table does not know (Auth0 adds codes; codes are case-sensitive)
    # WHEN it is described
    event = describe(code)
    # THEN it does not raise, and says "unknown" at severity info, keeping the code as given
    assert event == EventType(code=code, name=UNKNOWN_NAME, severity="info")


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


class _BrokenStr(str):
    __slots__ = ()

    def __hash__(self) -> int:
        raise RuntimeError("unhashable today")


@pytest.mark.parametrize(
    ("value", "expected_code"),
    [
        (None, "None"),
        (42, "42"),
        (1.5, "1.5"),
        (True, "True"),
        (b"s", "b's'"),
        (["s"], "['s']"),
        ({"type": "s"}, "{'type': 's'}"),
        (_Unprintable(), "<_Unprintable>"),
    ],
)
def test_non_string_codes_do_not_raise(value: object, expected_code: str) -> None:
    # GIVEN a `type` value that is not a string (the schema is not always followed)
    # WHEN it is described
    event = describe(value)
    # THEN it is an unknown event at severity info, even when the value is "s" in disguise
    assert event == EventType(code=expected_code, name=UNKNOWN_NAME, severity="info")


def test_str_subclass_with_broken_hash_does_not_raise() -> None:
    event = describe(_BrokenStr("s"))
    assert event.name == UNKNOWN_NAME
    assert event.severity == "info"
    assert event.code == "s"


def test_table_is_read_only() -> None:
    # GIVEN the module's table
    assert isinstance(EVENT_TYPES, types.MappingProxyType)
    # WHEN someone tries to change it THEN that fails
    with pytest.raises(TypeError):
        EVENT_TYPES["s"] = EventType("s", "Hacked", "error")  # type: ignore[index]
    with pytest.raises(TypeError):
        del EVENT_TYPES["s"]  # type: ignore[attr-defined]
    # AND the entries themselves are frozen
    entry: EventType = EVENT_TYPES["s"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.name = "Hacked"  # type: ignore[misc]
    assert not hasattr(entry, "__dict__")
    assert describe("s").name == "Success Login"


def test_every_code_is_unique_and_well_formed() -> None:
    # GIVEN the rows the table is built from
    codes = [code for code, _, _ in event_types._TABLE]
    # THEN no code is listed twice, so no row hides another
    assert len(codes) == len(set(codes)) == len(EVENT_TYPES)
    for code, event in EVENT_TYPES.items():
        # AND each key is the entry's own code, non-empty, in Auth0's lower-case form
        assert event.code == code
        assert re.fullmatch(r"[a-z][a-z0-9_]*", code), code


def test_no_name_is_empty_and_severities_are_valid() -> None:
    allowed = set(get_args(Severity))
    for event in EVENT_TYPES.values():
        assert event.name.strip() == event.name != "", event
        assert event.name != UNKNOWN_NAME
        assert event.severity in allowed, event


def test_table_covers_auth0s_list() -> None:
    # Auth0 documents about 150 codes, plus older ones that past events still carry.
    assert len(EVENT_TYPES) >= 150


def test_build_refuses_a_repeated_code() -> None:
    rows: list[tuple[str, str, Severity]] = [("s", "One", "info"), ("s", "Two", "error")]
    with pytest.raises(ValueError, match="'s'"):
        event_types._build(rows)


# -- Auth0's own log schemas -------------------------------------------------------------------

# Codes the table keeps although Auth0's schemas (auth0/auth0-log-schemas, 2026-07-13) no longer
# list them: stored and replayed events still carry them. A code leaving the schemas shows up here.
OLDER_CODES = {
    "admin_update_launch", "coff", "con", "du", "fapi", "fc", "gd_auth_fail_email_verification",
    "gd_module_switch", "gd_recovery_rate_limit_exceed", "gd_send_email_verification_failure",
    "gd_user_delete", "limit_ui", "passkey_register_failed", "passkey_register_started", "scph",
    "signup_pwd_leak", "sys_os_update_end", "sys_os_update_start", "sys_update_end",
    "sys_update_start", "too_many_records",
}  # fmt: skip


@pytest.fixture(scope="module")
def schema_codes() -> set[str]:
    from devtools.schema_events import SCHEMA_DIR, event_codes

    if not SCHEMA_DIR.is_dir():
        pytest.skip(f"Auth0's log schemas not found at {SCHEMA_DIR} (../shared is not checked out)")
    return set(event_codes())


def test_every_code_in_auth0s_schemas_has_a_name_a_severity_and_an_ocsf_class(
    schema_codes: set[str],
) -> None:
    from log_forwarder.ocsf import OCSF_CLASS_BY_TYPE

    # GIVEN the 166 type codes of Auth0's own log schemas
    assert len(schema_codes) == 166
    # THEN each has a row here: a name of its own, a severity, and an OCSF class
    missing = sorted(schema_codes - set(EVENT_TYPES))
    assert not missing, f"codes Auth0's schemas define and event_types.py lacks: {missing}"
    for code in schema_codes:
        assert describe(code).name != UNKNOWN_NAME
        assert code in OCSF_CLASS_BY_TYPE, code
    # AND the codes kept beyond them are exactly the older ones named above
    assert set(EVENT_TYPES) - schema_codes == OLDER_CODES


def test_a_code_no_schema_defines_takes_the_documented_unknown_path() -> None:
    from log_forwarder.ocsf import UNKNOWN_CODE, classify

    # An unknown code: a name saying so, info, and a Base Event of status Unknown (0), never a raise
    assert describe("brand_new_2031") == EventType("brand_new_2031", UNKNOWN_NAME, "info")
    assert classify({"type": "brand_new_2031"}) == UNKNOWN_CODE


@pytest.mark.parametrize(
    ("code", "name", "severity"),
    [
        ("sdel", "Successful Delegated Login", "info"),
        ("sdelsa", "Successful Delegated Silent Auth", "info"),
        ("fdelsa", "Failed Delegated Silent Auth", "error"),
        ("sdeleacft", "Success Exchange (Delegated Authorization Code for Access Token)", "info"),
        ("fdeleacft", "Failed Exchange (Delegated Authorization Code for Access Token)", "error"),
        ("fscim", "Failed SCIM Operation", "error"),
        ("limit_phone", "Blocked Phone Delivery (Too Many SMS or Voice Deliveries)", "error"),
    ],
)
def test_the_codes_auth0_added_in_july_2026(code: str, name: str, severity: str) -> None:
    assert describe(code) == EventType(code, name, severity)
