"""Auth0 event -> one OCSF event (1.5.0, or 1.8.0 when asked), for SIEMs and data lakes.

Security tools increasingly ingest OCSF (Amazon Security Lake requires it). Each Auth0 log event
becomes exactly one OCSF event; none is dropped:

- Authentication (3002) for logins, logouts, silent authentication, token exchanges, MFA
  challenges and passwordless codes;
- Account Change (3001) for signups, deletions, password/email/phone changes, MFA enrolment and
  removal, and Auth0's account blocks and unblocks;
- API Activity (6003) for Management API operations (`sapi`, `fapi`, `mgmt_api_read`, ...);
- Base Event (0) for everything else: tenant notices, rate limits, Actions/Forms/Flows, unknown
  codes, and API events that lack what API Activity requires (a source address).

`OCSF_CLASS_BY_TYPE` is the whole decision, one row per code in event_types.py;
docs/ocsf-mapping.md renders it (a test keeps the two equal). The original event is kept whole in
`raw_data` (JSON text). What the forwarder adds (tenant, watched user) sits in
`unmapped._forwarder`, and the tenant also in `metadata.tenant_uid`. Pure and total: any mapping
with a readable `date` converts; odd field types are skipped, never trusted.

The OCSF release is the operator's choice (`OCSF_VERSION`). What differs between releases is held
in one `OcsfVersion` record per release, each fact of it checked against that release's schema
as OCSF's own compiler builds it (tests/unit/test_ocsf.py). A value a release does not define
never goes into the field that would refuse it: an HTTP method outside that release's list stays
in `unmapped` under Auth0's own name for it, and an id of 99 (Other) carries Auth0's own words in
its caption (`activity_name`, `status`), as OCSF asks.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from .event_types import describe
from .events import parse_date_ms

# The releases live apart (ocsf_versions.py: the settings name one whatever the format); named
# here too, as the mapping's callers and tests have always read them.
from .ocsf_versions import DEFAULT_OCSF_VERSION as DEFAULT_OCSF_VERSION
from .ocsf_versions import DETECTION_FINDING as DETECTION_FINDING
from .ocsf_versions import OCSF_VERSIONS as OCSF_VERSIONS
from .ocsf_versions import OcsfVersion as OcsfVersion

if TYPE_CHECKING:
    from .detections import Finding

FORMAT_VERSION: Final = 1
PRODUCT: Final = MappingProxyType({"name": "Auth0", "vendor_name": "Okta"})

# Classes (uid -> name, category uid, category name).
BASE, ACCOUNT_CHANGE, AUTHENTICATION, API_ACTIVITY = 0, 3001, 3002, 6003
CLASSES: Final = MappingProxyType(
    {
        BASE: ("Base Event", 0, "Uncategorized"),
        ACCOUNT_CHANGE: ("Account Change", 3, "Identity & Access Management"),
        AUTHENTICATION: ("Authentication", 3, "Identity & Access Management"),
        API_ACTIVITY: ("API Activity", 6, "Application Activity"),
    }
)
ACTIVITIES: Final = MappingProxyType(
    {
        BASE: {0: "Unknown", 99: "Other"},
        ACCOUNT_CHANGE: {
            1: "Create",
            2: "Enable",
            3: "Password Change",
            4: "Password Reset",
            5: "Disable",
            6: "Delete",
            7: "Attach Policy",
            8: "Detach Policy",
            9: "Lock",
            10: "MFA Factor Enable",
            11: "MFA Factor Disable",
            12: "Unlock",
            99: "Other",
        },
        AUTHENTICATION: {
            1: "Logon",
            2: "Logoff",
            3: "Authentication Ticket",
            4: "Service Ticket Request",
            5: "Service Ticket Renew",
            6: "Preauth",
            99: "Other",
        },
        API_ACTIVITY: {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 99: "Other"},
    }
)
STATUSES: Final = MappingProxyType({0: "Unknown", 1: "Success", 2: "Failure", 99: "Other"})
SEVERITIES: Final = MappingProxyType(
    {"info": (1, "Informational"), "warning": (2, "Low"), "error": (3, "Medium")}
)
BY_METHOD: Final = -1  # API Activity: the activity comes from details.request.method
_METHOD_ACTIVITY: Final = MappingProxyType({"POST": 1, "GET": 2, "PUT": 3, "PATCH": 3, "DELETE": 4})


@dataclass(frozen=True, slots=True)
class OcsfClassification:
    """Where one Auth0 code lands: class, activity (or BY_METHOD) and status."""

    class_uid: int
    activity_id: int
    status_id: int


S, F, O = 1, 2, 99  # noqa: E741 - status ids: success, failure, other
LOGON, LOGOFF, SERVICE_TICKET, RENEW, PREAUTH = 1, 2, 4, 5, 6
CREATE, PASSWORD_CHANGE, PASSWORD_RESET, DELETE, LOCK = 1, 3, 4, 6, 9
MFA_ENABLE, MFA_DISABLE, UNLOCK, OTHER = 10, 11, 12, 99

_A, _C, _P, _B = AUTHENTICATION, ACCOUNT_CHANGE, API_ACTIVITY, BASE
# (code, class, activity, status), in the order of event_types.py.
_ROWS: Final[tuple[tuple[str, int, int, int], ...]] = (
    # Login, silent authentication, cross-origin authentication
    ("s", _A, LOGON, S),
    ("f", _A, LOGON, F),
    ("fp", _A, LOGON, F),
    ("fu", _A, LOGON, F),
    ("w", _A, LOGON, O),
    ("ssa", _A, LOGON, S),
    ("fsa", _A, LOGON, F),
    ("scoa", _A, LOGON, S),
    ("fcoa", _A, LOGON, F),
    ("sdel", _A, LOGON, S),
    ("sdelsa", _A, LOGON, S),
    ("fdelsa", _A, LOGON, F),
    ("fco", _A, LOGON, F),
    ("fc", _A, LOGON, F),
    ("scv", _A, PREAUTH, S),
    ("mfar", _A, PREAUTH, O),
    ("pla", _A, PREAUTH, O),
    ("cs", _A, PREAUTH, S),
    ("cls", _A, PREAUTH, S),
    # Signup and invitations
    ("ss", _C, CREATE, S),
    ("fs", _C, CREATE, F),
    ("fpurh", _C, OTHER, F),
    ("si", _C, OTHER, S),
    ("fi", _C, OTHER, F),
    # Logout
    ("slo", _A, LOGOFF, S),
    ("flo", _A, LOGOFF, F),
    ("federated_logout_failed", _A, LOGOFF, F),
    ("oidc_backchannel_logout_succeeded", _A, LOGOFF, S),
    ("oidc_backchannel_logout_failed", _A, LOGOFF, F),
    ("universal_logout_succeeded", _A, LOGOFF, S),
    ("universal_logout_failed", _A, LOGOFF, F),
    # Token exchange at /oauth/token: an access token for an audience is OCSF's service ticket
    ("seacft", _A, SERVICE_TICKET, S),
    ("feacft", _A, SERVICE_TICKET, F),
    ("sdeleacft", _A, SERVICE_TICKET, S),
    ("fdeleacft", _A, SERVICE_TICKET, F),
    ("seccft", _A, SERVICE_TICKET, S),
    ("feccft", _A, SERVICE_TICKET, F),
    ("secte", _A, SERVICE_TICKET, S),
    ("fecte", _A, SERVICE_TICKET, F),
    ("sede", _A, SERVICE_TICKET, S),
    ("fede", _A, SERVICE_TICKET, F),
    ("sens", _A, LOGON, S),
    ("fens", _A, LOGON, F),
    ("seoobft", _A, SERVICE_TICKET, S),
    ("feoobft", _A, SERVICE_TICKET, F),
    ("seotpft", _A, SERVICE_TICKET, S),
    ("feotpft", _A, SERVICE_TICKET, F),
    ("sepft", _A, LOGON, S),
    ("fepft", _A, LOGON, F),
    ("fepotpft", _A, LOGON, F),
    ("sepkoobft", _A, SERVICE_TICKET, S),
    ("sepkotpft", _A, SERVICE_TICKET, S),
    ("sepkrcft", _A, SERVICE_TICKET, S),
    ("sercft", _A, SERVICE_TICKET, S),
    ("fercft", _A, SERVICE_TICKET, F),
    ("sertft", _A, RENEW, S),
    ("fertft", _A, RENEW, F),
    ("ferrt", _A, RENEW, F),
    ("seta", _A, SERVICE_TICKET, S),
    ("feta", _A, SERVICE_TICKET, F),
    ("success_on_behalf_of_token_exchange", _A, SERVICE_TICKET, S),
    ("failed_on_behalf_of_token_exchange", _A, SERVICE_TICKET, F),
    ("idjag_exchange_succeeded", _A, SERVICE_TICKET, S),
    ("idjag_exchange_failed", _A, SERVICE_TICKET, F),
    ("jwt_bearer_exchange_failed", _A, SERVICE_TICKET, F),
    ("ciba_start_succeeded", _A, PREAUTH, S),
    ("ciba_start_failed", _A, PREAUTH, F),
    ("ciba_exchange_succeeded", _A, SERVICE_TICKET, S),
    ("ciba_exchange_failed", _A, SERVICE_TICKET, F),
    ("fpar", _A, PREAUTH, F),
    ("srrt", _A, LOGOFF, S),
    ("sd", _A, SERVICE_TICKET, S),
    ("fd", _A, SERVICE_TICKET, F),
    # Device authorization flow
    ("fdeac", _A, PREAUTH, F),
    ("fdeaz", _A, PREAUTH, F),
    ("fdecc", _A, PREAUTH, F),
    # Account changes
    ("scp", _C, PASSWORD_CHANGE, S),
    ("fcp", _C, PASSWORD_CHANGE, F),
    ("scpr", _C, PASSWORD_RESET, S),
    ("fcpr", _C, PASSWORD_RESET, F),
    ("scph", _C, OTHER, S),
    ("fcph", _C, OTHER, F),
    ("sce", _C, OTHER, S),
    ("fce", _C, OTHER, F),
    ("scu", _C, OTHER, S),
    ("fcu", _C, OTHER, F),
    ("scpn", _C, OTHER, S),
    ("fcpn", _C, OTHER, F),
    ("sv", _C, OTHER, S),
    ("fv", _C, OTHER, F),
    ("svr", _C, OTHER, S),
    ("fvr", _C, OTHER, F),
    ("fn", _B, OTHER, F),
    ("wn", _B, OTHER, O),
    # User management
    ("du", _C, DELETE, S),
    ("sdu", _C, DELETE, S),
    ("fdu", _C, DELETE, F),
    ("sui", _C, CREATE, S),
    ("fui", _C, CREATE, F),
    ("wum", _C, OTHER, O),
    ("organization_member_added", _C, OTHER, S),
    ("sscim", _C, OTHER, S),
    ("fscim", _C, OTHER, F),
    ("directory_sync_started", _B, OTHER, O),
    ("directory_sync_completed", _B, OTHER, S),
    ("directory_sync_failed", _B, OTHER, F),
    ("connected_accounts_connection_succeeded", _C, OTHER, S),
    ("connected_accounts_connection_failed", _C, OTHER, F),
    ("connected_accounts_delete_succeeded", _C, OTHER, S),
    ("connected_accounts_delete_failed", _C, OTHER, F),
    ("my_account_authentication_method_succeeded", _C, OTHER, S),
    ("my_account_authentication_method_failed", _C, OTHER, F),
    # Attack protection
    ("limit_wc", _C, LOCK, S),
    ("limit_sul", _C, LOCK, S),
    ("limit_mu", _A, LOGON, F),
    ("ublkdu", _C, UNLOCK, S),
    ("pwd_leak", _A, LOGON, F),
    ("signup_pwd_leak", _C, CREATE, F),
    ("reset_pwd_leak", _C, PASSWORD_RESET, F),
    # Rate limits
    ("api_limit", _B, OTHER, F),
    ("api_limit_warning", _B, OTHER, O),
    ("limit_delegation", _B, OTHER, F),
    ("limit_phone", _B, OTHER, F),
    ("limit_ui", _B, OTHER, F),
    ("appi", _B, OTHER, O),
    # Multi-factor authentication (Guardian)
    ("gd_start_auth", _A, PREAUTH, O),
    ("gd_auth_succeed", _A, LOGON, S),
    ("gd_auth_failed", _A, LOGON, F),
    ("gd_auth_rejected", _A, LOGON, F),
    ("gd_otp_rate_limit_exceed", _C, LOCK, S),
    ("gd_recovery_succeed", _A, LOGON, S),
    ("gd_recovery_failed", _A, LOGON, F),
    ("gd_recovery_rate_limit_exceed", _C, LOCK, S),
    ("gd_start_enroll", _C, MFA_ENABLE, O),
    ("gd_start_enroll_failed", _C, MFA_ENABLE, F),
    ("gd_enrollment_complete", _C, MFA_ENABLE, S),
    ("gd_unenroll", _C, MFA_DISABLE, S),
    ("gd_update_device_account", _C, OTHER, S),
    ("gd_user_delete", _C, MFA_DISABLE, S),
    ("gd_module_switch", _P, 3, S),
    ("gd_tenant_update", _P, 3, S),
    ("gd_send_pn", _A, PREAUTH, S),
    ("gd_send_pn_failure", _A, PREAUTH, F),
    ("gd_send_sms", _A, PREAUTH, S),
    ("gd_send_sms_failure", _A, PREAUTH, F),
    ("gd_send_voice", _A, PREAUTH, S),
    ("gd_send_voice_failure", _A, PREAUTH, F),
    ("gd_send_email", _A, PREAUTH, S),
    ("gd_send_email_verification", _A, PREAUTH, S),
    ("gd_send_email_verification_failure", _A, PREAUTH, F),
    ("gd_auth_email_verification", _A, PREAUTH, S),
    ("gd_auth_fail_email_verification", _A, PREAUTH, F),
    ("gd_webauthn_challenge_failed", _A, LOGON, F),
    ("gd_webauthn_enrollment_failed", _C, MFA_ENABLE, F),
    ("too_many_records", _C, MFA_ENABLE, F),
    ("passkey_challenge_started", _A, PREAUTH, O),
    ("passkey_challenge_failed", _A, LOGON, F),
    ("passkey_register_started", _C, MFA_ENABLE, O),
    ("passkey_register_failed", _C, MFA_ENABLE, F),
    # Management API
    ("sapi", _P, BY_METHOD, S),
    ("fapi", _P, BY_METHOD, F),
    ("mgmt_api_read", _P, 2, S),
    ("kms_key_management_success", _P, BY_METHOD, S),
    ("kms_key_management_failure", _P, BY_METHOD, F),
    ("kms_key_state_changed", _B, OTHER, O),
    # Actions, Forms, Flows, consents, self-service SSO
    ("actions_execution_failed", _B, OTHER, F),
    ("flows_execution_completed", _B, OTHER, S),
    ("flows_execution_failed", _B, OTHER, F),
    ("forms_submission_succeeded", _B, OTHER, S),
    ("forms_submission_failed", _B, OTHER, F),
    ("rich_consents_access_error", _B, OTHER, F),
    ("ss_sso_success", _B, OTHER, S),
    ("ss_sso_info", _B, OTHER, O),
    ("ss_sso_failure", _B, OTHER, F),
    # Tenant, platform and connectors
    ("depnote", _B, OTHER, O),
    ("acul_sdk_notice", _B, OTHER, O),
    ("acls_summary", _B, OTHER, O),
    ("custom_domain_verification_failed", _B, OTHER, F),
    ("resource_cleanup", _B, OTHER, S),
    ("con", _B, OTHER, S),
    ("coff", _B, OTHER, F),
    ("fcpro", _B, OTHER, F),
    ("admin_update_launch", _B, OTHER, O),
    ("sys_update_start", _B, OTHER, O),
    ("sys_update_end", _B, OTHER, O),
    ("sys_os_update_start", _B, OTHER, O),
    ("sys_os_update_end", _B, OTHER, O),
)


def _build() -> Mapping[str, OcsfClassification]:
    table: dict[str, OcsfClassification] = {}
    for code, class_uid, activity_id, status_id in _ROWS:
        if code in table:
            raise ValueError(f"OCSF mapping lists {code!r} twice")
        table[code] = OcsfClassification(class_uid, activity_id, status_id)
    return MappingProxyType(table)


OCSF_CLASS_BY_TYPE: Final[Mapping[str, OcsfClassification]] = _build()
UNKNOWN_CODE: Final = OcsfClassification(BASE, OTHER, 0)

# Codes whose event is itself a second-factor step (is_mfa), and the factor when the code says it.
_MFA_CODES: Final = frozenset(
    {
        "gd_auth_succeed", "gd_auth_failed", "gd_auth_rejected", "gd_recovery_succeed",
        "gd_recovery_failed", "gd_webauthn_challenge_failed", "seoobft", "feoobft", "seotpft",
        "feotpft", "sepkoobft", "sepkotpft", "sepkrcft", "sercft", "fercft",
    }
)  # fmt: skip
_FACTOR_BY_PREFIX: Final = (
    ("gd_send_pn", 5, "Push Notification"),
    ("gd_send_sms", 1, "SMS"),
    ("gd_send_voice", 3, "Phone Call"),
    ("gd_send_email", 8, "Email"),
    ("gd_auth_email_verification", 8, "Email"),
    ("gd_auth_fail_email_verification", 8, "Email"),
    ("gd_webauthn", 10, "WebAuthn"),
    ("passkey_", 10, "WebAuthn"),
    ("seotpft", 7, "OTP"),
    ("feotpft", 7, "OTP"),
    ("sepkotpft", 7, "OTP"),
)
_FACTOR_BY_AUTHENTICATOR: Final = MappingProxyType(
    {
        "otp": (7, "OTP"),
        "push": (5, "Push Notification"),
        "sms": (1, "SMS"),
        "voice": (3, "Phone Call"),
        "phone": (3, "Phone Call"),
        "email": (8, "Email"),
        "webauthn-roaming": (10, "WebAuthn"),
        "webauthn-platform": (10, "WebAuthn"),
    }
)
# Connection strategies whose protocol is known; others report the strategy itself (99 Other).
_PROTOCOL_BY_STRATEGY: Final = MappingProxyType(
    {"samlp": (5, "SAML"), "oidc": (4, "OpenID"), "okta": (4, "OpenID"), "ad": (12, "LDAP")}
)
# OCSF's email_t pattern (the dictionary's regex), so an address it would refuse is not offered.
_EMAIL: Final = re.compile(r"^[a-zA-Z0-9!#$%&'*+-/=?^_`{|}~.]+@[a-zA-Z0-9-]+\.[a-zA-Z0-9-.]+$")
_IP_MAX_LEN: Final = 40  # OCSF's ip_t: a longer text (an IPv6 zone id) is no address to it
# Auth0 fields that no attribute of these classes holds: kept in `unmapped`, under their names.
_UNMAPPED_TEXT: Final = ("agent_id", "external_agent_id")
_UNMAPPED_FLAGS: Final = ("is_mobile", "isMobile")


# -- the conversion ---------------------------------------------------------------------------


def classify(raw: Mapping[str, Any]) -> OcsfClassification:
    """The class, activity and status an event gets, after method and fallback rules.

    The activity of an API call follows its method whichever release is written: PATCH is an
    Update (3) in 1.5.0 too, though 1.5.0 has no `http_method` value for it.
    """
    code = _text(raw.get("type"))
    found = OCSF_CLASS_BY_TYPE.get(code, UNKNOWN_CODE) if code else UNKNOWN_CODE
    if found.class_uid != API_ACTIVITY:
        return found
    if _api_source_ip(raw) is None:
        return OcsfClassification(BASE, OTHER, found.status_id)  # 6003 requires a source
    if found.activity_id == BY_METHOD:
        method = (_text(_request(raw).get("method")) or "").upper()
        return OcsfClassification(
            API_ACTIVITY, _METHOD_ACTIVITY.get(method, OTHER), found.status_id
        )
    return found


def to_ocsf(
    raw: Mapping[str, Any],
    *,
    tenant: str,
    watched_user_id: str,
    version: OcsfVersion = DEFAULT_OCSF_VERSION,
) -> dict[str, Any]:
    """One OCSF event of `version` for one Auth0 event.

    Raises `MalformedEvent` only for an unreadable date.
    """
    time_ms = parse_date_ms(raw.get("date"))
    code = _text(raw.get("type"))
    classification = classify(raw)
    event = _base(raw, code, classification, time_ms, tenant, watched_user_id, version)
    if classification.class_uid == AUTHENTICATION:
        event.update(_authentication(raw, code, tenant, watched_user_id, version))
    elif classification.class_uid == ACCOUNT_CHANGE:
        event.update(_account_change(raw, code, classification, watched_user_id, version))
    elif classification.class_uid == API_ACTIVITY:
        event.update(_api_activity(raw, code, watched_user_id, version))
    return event


def _base(
    raw: Mapping[str, Any],
    code: str | None,
    classification: OcsfClassification,
    time_ms: int,
    tenant: str,
    watched_user_id: str,
    version: OcsfVersion,
) -> dict[str, Any]:
    class_uid, activity_id, status_id = (
        classification.class_uid,
        classification.activity_id,
        classification.status_id,
    )
    class_name, category_uid, category_name = CLASSES[class_uid]
    activity = ACTIVITIES[class_uid][activity_id]
    event_type = describe(code if code is not None else raw.get("type"))
    severity_id, severity = SEVERITIES[event_type.severity]
    description = _text(raw.get("description"))
    type_uid = class_uid * 100 + activity_id
    # OCSF: beside an id of 99 (Other), the caption is the source's own words, not "Other". A
    # Base Event of activity Other has type_uid 99 itself, so its type_name says them too.
    activity_name = event_type.name if activity_id == OTHER else activity
    event: dict[str, Any] = {
        "class_uid": class_uid,
        "class_name": class_name,
        "category_uid": category_uid,
        "category_name": category_name,
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": type_uid,
        "type_name": f"{class_name}: {activity_name if type_uid == OTHER else activity}",
        "time": time_ms,
        "severity_id": severity_id,
        "severity": severity,
        "status_id": status_id,
        "status": event_type.name if status_id == OTHER else STATUSES[status_id],
        "message": description or event_type.name,
        "metadata": _metadata(raw, code, tenant, version),
        "raw_data": json.dumps(raw, ensure_ascii=False, separators=(",", ":"), default=str),
        "unmapped": {
            "_forwarder": {
                "format": FORMAT_VERSION,
                "tenant": tenant,
                "watched_user_id": watched_user_id,
                "type_name": event_type.name,
            },
            **_unmapped(raw, class_uid, version),
        },
    }
    if description and status_id != 1:
        event["status_detail"] = description
    return event


def _metadata(
    raw: Mapping[str, Any], code: str | None, tenant: str, version: OcsfVersion
) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "version": version.name,
        "product": dict(PRODUCT),
        "log_provider": "Auth0",
        "tenant_uid": tenant,
    }
    optional = {
        "uid": _text(raw.get("log_id")),
        "event_code": code,
        "original_time": _text(raw.get("date")),
    }
    metadata.update({key: value for key, value in optional.items() if value is not None})
    return metadata


def _unmapped(raw: Mapping[str, Any], class_uid: int, version: OcsfVersion) -> dict[str, Any]:
    """Auth0 values that have no attribute in this class and release, under Auth0's names."""
    kept: dict[str, Any] = {name: raw[name] for name in _UNMAPPED_TEXT if _text(raw.get(name))}
    kept.update({name: raw[name] for name in _UNMAPPED_FLAGS if isinstance(raw.get(name), bool)})
    context = _mapping(raw.get("security_context"))
    fingerprints = {name: context[name] for name in ("ja3", "ja4") if _text(context.get(name))}
    if fingerprints:  # TLS client fingerprints: these classes have no `tls` attribute
        kept["security_context"] = fingerprints
    method = _request(raw).get("method")
    if class_uid == API_ACTIVITY and _text(method) and _http_method(raw, version) is None:
        kept["details"] = {"request": {"method": method}}
    return kept


def _authentication(
    raw: Mapping[str, Any],
    code: str | None,
    tenant: str,
    watched_user_id: str,
    version: OcsfVersion,
) -> dict[str, Any]:
    out: dict[str, Any] = {"user": _subject(raw, code, watched_user_id, version)}
    out.update(_endpoints_and_request(raw))
    service = _drop_empty(
        {"uid": _text(raw.get("client_id")), "name": _text(raw.get("client_name"))}
    )
    if service:
        out["service"] = service
    elif "dst_endpoint" not in out:
        out["service"] = {"name": tenant}  # OCSF wants a service or a destination
    out.update(_protocol(raw, code))
    if code in _MFA_CODES:
        out["is_mfa"] = True
    factor = _factor(raw, code)
    if factor:
        out["auth_factors"] = [factor]
    session = _text(_mapping(raw.get("details")).get("session_id"))
    if session:
        out["session"] = {"uid": session}
    return out


def _account_change(
    raw: Mapping[str, Any],
    code: str | None,
    classification: OcsfClassification,
    watched_user_id: str,
    version: OcsfVersion,
) -> dict[str, Any]:
    out: dict[str, Any] = {"user": _subject(raw, code, watched_user_id, version)}
    out.update(_endpoints_and_request(raw))
    out.pop("dst_endpoint", None)  # Account Change has no destination endpoint
    factor = _factor(raw, code)
    mfa_change = classification.activity_id in (MFA_ENABLE, MFA_DISABLE)
    if factor and mfa_change and version.account_change_factors:
        out["auth_factors"] = [factor]
    return out


def _http_method(raw: Mapping[str, Any], version: OcsfVersion) -> str | None:
    """The request's method as `http_method`, if `version` defines that value."""
    method = (_text(_request(raw).get("method")) or "").upper()
    return method if method in version.http_methods else None


def _api_activity(
    raw: Mapping[str, Any], code: str | None, watched_user_id: str, version: OcsfVersion
) -> dict[str, Any]:
    request = _request(raw)
    method = (_text(request.get("method")) or "").upper()
    path = _text(request.get("path"))
    status = _http_status(_mapping(_mapping(raw.get("details")).get("response")).get("statusCode"))
    operation = _text(raw.get("description")) or f"{method} {path or ''}".strip()
    api: dict[str, Any] = {
        "operation": operation or describe(code).name,
        "service": {"name": "Auth0 Management API"},
    }
    if status is not None:
        api["response"] = {"code": status}
    out: dict[str, Any] = {"actor": _actor(raw, watched_user_id), "api": api}
    source = _network_endpoint(_api_source_ip(raw), raw.get("location_info"))
    out["src_endpoint"] = source
    http = _drop_empty(
        {
            "http_method": _http_method(raw, version),
            "url": {"path": path} if path else None,
            "user_agent": _text(raw.get("user_agent")) or _text(request.get("userAgent")),
        }
    )
    if http:
        out["http_request"] = http
    if status is not None:
        out["http_response"] = {"code": status}
    hostname = _text(raw.get("hostname"))
    if hostname:
        out["dst_endpoint"] = {"hostname": hostname}
    return out


# -- the parts --------------------------------------------------------------------------------


def _subject(
    raw: Mapping[str, Any], code: str | None, watched_user_id: str, version: OcsfVersion
) -> dict[str, Any]:
    """The account the event is about. A client-credentials exchange is about the client: a
    service account where the release has that type (4), else Other (99) "Client".

    When Auth0 names nobody, the user is the watched user: the forwarder read the event from that
    user's logs, so that is who it concerns.
    """
    uid, name = _text(raw.get("user_id")), _text(raw.get("user_name"))
    if not uid and not name and code in ("seccft", "feccft"):
        client = _drop_empty(
            {"uid": _text(raw.get("client_id")), "name": _text(raw.get("client_name"))}
        )
        if client:
            kind = (4, "Service") if version.service_user_type else (99, "Client")
            return {**client, "type_id": kind[0], "type": kind[1]}
    user: dict[str, Any] = {"uid": uid or (None if name else watched_user_id), "name": name}
    if name and _EMAIL.match(name):
        user["email_addr"] = name
    return {**_drop_empty(user), "type_id": 1, "type": "User"}


def _actor(raw: Mapping[str, Any], watched_user_id: str) -> dict[str, Any]:
    auth = _mapping(_request(raw).get("auth"))
    auth_user = _mapping(auth.get("user"))
    uid = _text(auth_user.get("user_id")) or _text(auth.get("subject")) or _text(raw.get("user_id"))
    email = _text(auth_user.get("email"))
    email = email if email and _EMAIL.match(email) else None
    name = _text(auth_user.get("name"))
    user = _drop_empty(
        {
            "uid": uid,
            # OCSF's user names at least an account, a name or a uid: one known by its email
            # alone is named by it.
            "name": name or (email if uid is None else None),
            "email_addr": email,
        }
    )
    actor = _drop_empty(
        {
            "user": user or None,
            "app_uid": _text(raw.get("client_id")),
            "app_name": _text(raw.get("client_name")),
        }
    )
    return actor or {"user": {"uid": watched_user_id}}


def _endpoints_and_request(raw: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    source = _network_endpoint(_valid_ip(raw.get("ip")), raw.get("location_info"))
    if source:
        out["src_endpoint"] = source
    hostname = _text(raw.get("hostname"))
    if hostname:
        out["dst_endpoint"] = {"hostname": hostname}
    agent = _text(raw.get("user_agent"))
    if agent:
        out["http_request"] = {"user_agent": agent}
    return out


def _network_endpoint(ip: str | None, location_info: object) -> dict[str, Any]:
    """`{ip, location}`; empty without an address (OCSF needs one for an endpoint)."""
    if ip is None:
        return {}
    endpoint: dict[str, Any] = {"ip": ip}
    location = _location(location_info)
    if location:
        endpoint["location"] = location
    return endpoint


def _location(value: object) -> dict[str, Any]:
    info = _mapping(value)
    country = _text(info.get("country_code"))
    location = _drop_empty(
        {
            "country": country.upper() if country and len(country) == 2 else None,
            "city": _text(info.get("city_name")),
        }
    )
    if not location:
        return {}  # OCSF: a location names at least a city, country, region or postal code
    for ours, theirs, bound in (("lat", "latitude", 90), ("long", "longitude", 180)):
        number = info.get(theirs)
        if isinstance(number, bool) or not isinstance(number, int | float):
            continue
        # Compared before any conversion: an integer too large for a float (10**400 is valid
        # JSON) is refused here like any other value off the globe, never an OverflowError.
        if -bound <= number <= bound:
            location[ours] = float(number)
    return location


def _protocol(raw: Mapping[str, Any], code: str | None) -> dict[str, Any]:
    classification = OCSF_CLASS_BY_TYPE.get(code or "")
    token_grant = classification is not None and classification.activity_id in (
        SERVICE_TICKET,
        RENEW,
    )
    if token_grant or code in ("sepft", "fepft", "fepotpft"):
        return {"auth_protocol_id": 6, "auth_protocol": "OAUTH 2.0"}
    strategy = _text(raw.get("strategy"))
    if strategy is None:
        return {}
    protocol_id, name = _PROTOCOL_BY_STRATEGY.get(strategy, (99, strategy[:100]))
    return {"auth_protocol_id": protocol_id, "auth_protocol": name}


def _factor(raw: Mapping[str, Any], code: str | None) -> dict[str, Any] | None:
    kind = _text(_mapping(_mapping(raw.get("details")).get("authenticator")).get("type"))
    if kind and kind.lower() in _FACTOR_BY_AUTHENTICATOR:
        factor_id, name = _FACTOR_BY_AUTHENTICATOR[kind.lower()]
        return {"factor_type_id": factor_id, "factor_type": name}
    for prefix, factor_id, name in _FACTOR_BY_PREFIX:
        if code and code.startswith(prefix):
            return {"factor_type_id": factor_id, "factor_type": name}
    return None


def _api_source_ip(raw: Mapping[str, Any]) -> str | None:
    return _valid_ip(raw.get("ip")) or _valid_ip(_request(raw).get("ip"))


def _request(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    return _mapping(_mapping(raw.get("details")).get("request"))


def _valid_ip(value: object) -> str | None:
    text = _text(value)
    if text is None:
        return None
    try:
        address = str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return None
    return address if len(address) <= _IP_MAX_LEN else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _http_status(value: object) -> int | None:
    """An HTTP status code (100 to 599), else None: OCSF's `code` is an integer_t (32 bits), and
    a value no HTTP answer has is no status (the whole event stays in `raw_data`)."""
    if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
        return value
    return None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _drop_empty(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


# -- the forwarder's findings: Detection Finding (2004) ------------------------------------------

FINDING_SEVERITIES: Final = MappingProxyType(
    {
        "info": (1, "Informational"),
        "low": (2, "Low"),
        "medium": (3, "Medium"),
        "high": (4, "High"),
        "critical": (5, "Critical"),
    }
)
# The finding's product is this forwarder, which ran the rule; the events it names are Auth0's.
FINDING_PRODUCT: Final = MappingProxyType(
    {"name": "auth0-user-log-forwarder", "vendor_name": "auth0-user-log-forwarder"}
)
# Sigma's ATT&CK tags name tactics by MITRE's short names (attack.credential-access).
_TACTICS: Final = MappingProxyType(
    {
        "reconnaissance": "Reconnaissance",
        "resource-development": "Resource Development",
        "initial-access": "Initial Access",
        "execution": "Execution",
        "persistence": "Persistence",
        "privilege-escalation": "Privilege Escalation",
        "defense-evasion": "Defense Evasion",
        "credential-access": "Credential Access",
        "discovery": "Discovery",
        "lateral-movement": "Lateral Movement",
        "collection": "Collection",
        "command-and-control": "Command and Control",
        "exfiltration": "Exfiltration",
        "impact": "Impact",
    }
)
_TECHNIQUE = re.compile(r"^attack\.(t\d{4})(?:\.(\d{3}))?$")


def detection_finding(
    finding: Finding,
    forwarder: Mapping[str, Any],
    *,
    tenant: str,
    detected_at_ms: int,
    version: OcsfVersion = DEFAULT_OCSF_VERSION,
) -> dict[str, Any]:
    """A finding of the detection rules as an OCSF Detection Finding (2004) of `version`, with
    the forwarder's own record of it (`forwarder`) in `unmapped._forwarder`. Sigma's level is the
    severity (the same five captions), the rule the analytic, its ATT&CK tags the attacks, the
    events it names the related events."""
    severity_id, caption = FINDING_SEVERITIES.get(finding.severity, (99, finding.severity))
    rule = finding.rule
    info: dict[str, Any] = {
        "uid": finding.finding_id,
        "title": finding.title,
        "analytic": {"uid": finding.rule_id or rule, "name": rule, "type_id": 1, "type": "Rule"},
        "created_time": detected_at_ms,
        "first_seen_time": finding.first_ms,
        "last_seen_time": finding.last_ms,
        "related_events": [{"uid": log_id} for log_id in finding.log_ids],
    }
    attacks = _attacks(finding.tags)
    if attacks:
        info["attacks"] = attacks
    return {
        "class_uid": DETECTION_FINDING,
        "class_name": "Detection Finding",
        "category_uid": 2,
        "category_name": "Findings",
        "activity_id": 1,
        "activity_name": "Create",
        "type_uid": DETECTION_FINDING * 100 + 1,
        "type_name": "Detection Finding: Create",
        "time": detected_at_ms,
        "severity_id": severity_id,
        "severity": caption,
        "status_id": 1,
        "status": "New",
        "is_alert": True,
        "message": finding.title,
        "count": len(finding.log_ids),
        "start_time": finding.first_ms,
        "end_time": finding.last_ms,
        "finding_info": info,
        "metadata": {
            "version": version.name,
            "product": dict(FINDING_PRODUCT),
            "log_provider": "Auth0",
            "tenant_uid": tenant,
            "uid": finding.finding_id,
        },
        "unmapped": {"_forwarder": dict(forwarder)},
    }


def _attacks(tags: tuple[str, ...]) -> list[dict[str, Any]]:
    """ATT&CK tactics and techniques from Sigma's tags (`attack.t1110.004`: technique T1110,
    sub-technique T1110.004); other tags are not ATT&CK's."""
    attacks: list[dict[str, Any]] = []
    for tag in tags:
        lowered = tag.lower()
        technique = _TECHNIQUE.match(lowered)
        if technique is not None:
            base = technique.group(1).upper()
            attack: dict[str, Any] = {"technique": {"uid": base}}
            if technique.group(2):
                attack["sub_technique"] = {"uid": f"{base}.{technique.group(2)}"}
            attacks.append(attack)
        elif lowered.removeprefix("attack.") in _TACTICS and lowered.startswith("attack."):
            attacks.append({"tactic": {"name": _TACTICS[lowered.removeprefix("attack.")]}})
    return attacks
