"""Auth0 log event type codes: a short English name and a severity for each `type`.

Every Auth0 log event carries a terse `type` code (`s`, `fp`, `gd_auth_failed`, ...). This module
turns a code into something a person reading CloudWatch can act on.

Where the data comes from:

- **Codes** cover every type in Auth0's own JSON Schemas of its log events
  (auth0/auth0-log-schemas, one schema per code, 166 codes at its commit of 2026-07-13; a test
  over `../shared/reference/auth0-log-schemas/` fails on a code this table lacks). The table
  also keeps older codes those schemas no longer list, because stored and replayed events still
  carry them. Codes Auth0 added in July 2026 (delegated logins `sdel`, `sdelsa`, `fdelsa`,
  `sdeleacft`, `fdeleacft`; `fscim`; `limit_phone`) take their names from those schemas' own
  descriptions, shortened to this table's style.
- **Names** follow the "Event" column of Auth0's "Log Event Type Codes" page
  (https://auth0.com/docs/deploy-monitor/logs/log-event-type-codes). Where that page gives
  several codes the same name ("Success Exchange", "Failed Exchange", "Blocked Account",
  "WebAuthn browser error", ...), the name here adds a qualifier in parentheses, taken from the
  page's description column, so that it says, for instance, what was exchanged. Codes that
  Auth0 has removed from the page but that older events still carry (`du`, `fapi`, `limit_ui`,
  `con`/`coff`, `sys_*`, ...) take their names from Auth0's earlier versions of the page and from
  its log extensions (auth0-log-extension-tools, `src/logTypes.js`).
- **Severities** follow Auth0's own grouping of the codes. The Dashboard's "Filter Log Events"
  page sorts them into error, warning and success filters, and the log extensions' `logTypes.js`
  gives each code a severity. Every failure, block, rate limit and breached-password event is an
  `error`. Deprecation notices, login warnings, failed user imports and MFA "too many failures"
  events are a `warning`, as Auth0 files them, and so are the newer codes that Auth0 itself names
  as warnings or notices (`api_limit_warning`, `wn`, `wum`, `acul_sdk_notice`). Everything else,
  including successes, is `info`. The code's first letter does not decide this: `fui` is a
  warning, `flows_execution_completed` is info, and `ublkdu` (a block was released) is info. One
  difference from the log extension is deliberate: it files `du` ("Deleted User") as an error,
  but a completed deletion is not a failure, and Auth0's Dashboard lists user deletion among its
  success filters, so `du` is info here.

Unknown codes: Auth0 adds new codes without notice, and events also arrive from tenants on
newer releases than this table. A forwarder that failed on a code it had not seen would stop
delivering every later event of that user, which is far worse than one event without a friendly
name. So `describe` never raises. An unknown code, or a value that is not even a string, comes
back as "Unknown event type" with severity `info`. The event itself is forwarded unchanged, so
nothing is lost, and the table can catch up later.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

Severity = Literal["error", "warning", "info"]

UNKNOWN_NAME: Final = "Unknown event type"


@dataclass(frozen=True, slots=True)
class EventType:
    """One Auth0 log `type` code, with its short English name and severity."""

    code: str
    name: str
    severity: Severity


# (code, name, severity). Grouped by area; within a group, in the order of Auth0's page.
_TABLE: Final[tuple[tuple[str, str, Severity], ...]] = (
    # Login, silent authentication, cross-origin authentication
    ("s", "Success Login", "info"),
    ("f", "Failed Login", "error"),
    ("fp", "Failed Login (Incorrect Password)", "error"),
    ("fu", "Failed Login (Invalid Email/Username)", "error"),
    ("w", "Warning During Login", "warning"),
    ("ssa", "Success Silent Auth", "info"),
    ("fsa", "Failed Silent Auth", "error"),
    ("scoa", "Success cross-origin authentication", "info"),
    ("fcoa", "Failed cross-origin authentication", "error"),
    # Delegated logins: an agent acting on a user's behalf (details.actor)
    ("sdel", "Successful Delegated Login", "info"),
    ("sdelsa", "Successful Delegated Silent Auth", "info"),
    ("fdelsa", "Failed Delegated Silent Auth", "error"),
    ("fco", "Failed by CORS", "error"),
    ("fc", "Failed by Connector", "error"),
    ("scv", "Success Credential Validation", "info"),
    ("mfar", "MFA Required", "info"),
    ("pla", "Pre-login assessment", "info"),
    # Passwordless
    ("cs", "Code Sent", "info"),
    ("cls", "Code/Link Sent", "info"),
    # Signup and invitations
    ("ss", "Success Signup", "info"),
    ("fs", "Failed Signup", "error"),
    ("fpurh", "Failed Post User Registration Hook", "error"),
    ("si", "Successfully accepted a user invite", "info"),
    ("fi", "Failed invite accept", "error"),
    # Logout
    ("slo", "Success Logout", "info"),
    ("flo", "Failed Logout", "error"),
    ("federated_logout_failed", "Failed Federated Logout", "error"),
    ("oidc_backchannel_logout_succeeded", "Successful OIDC Back-Channel Logout request", "info"),
    ("oidc_backchannel_logout_failed", "Failed OIDC Back-Channel Logout request", "error"),
    ("universal_logout_succeeded", "Successful Universal Logout request", "info"),
    ("universal_logout_failed", "Failed Universal Logout request", "error"),
    # Token exchange at /oauth/token
    ("seacft", "Success Exchange (Authorization Code for Access Token)", "info"),
    ("feacft", "Failed Exchange (Authorization Code for Access Token)", "error"),
    ("sdeleacft", "Success Exchange (Delegated Authorization Code for Access Token)", "info"),
    ("fdeleacft", "Failed Exchange (Delegated Authorization Code for Access Token)", "error"),
    ("seccft", "Success Exchange (Client Credentials for Access Token)", "info"),
    ("feccft", "Failed Exchange (Client Credentials for Access Token)", "error"),
    ("secte", "Success Exchange (Custom Token Exchange)", "info"),
    ("fecte", "Failed Exchange (Custom Token Exchange)", "error"),
    ("sede", "Success Exchange (Device Code for Access Token)", "info"),
    ("fede", "Failed Exchange (Device Code for Access Token)", "error"),
    ("sens", "Success Exchange (Native Social Login)", "info"),
    ("fens", "Failed Exchange (Native Social Login)", "error"),
    ("seoobft", "Success Exchange (Password and OOB Challenge for Access Token)", "info"),
    ("feoobft", "Failed Exchange (Password and OOB Challenge for Access Token)", "error"),
    ("seotpft", "Success Exchange (Password and OTP Challenge for Access Token)", "info"),
    ("feotpft", "Failed Exchange (Password and OTP Challenge for Access Token)", "error"),
    ("sepft", "Success Exchange (Password for Access Token)", "info"),
    ("fepft", "Failed Exchange (Password for Access Token)", "error"),
    ("fepotpft", "Failed Exchange (Passwordless OTP for Access Token)", "error"),
    ("sepkoobft", "Success Exchange (Passkey and OOB Challenge for Access Token)", "info"),
    ("sepkotpft", "Success Exchange (Passkey and OTP Challenge for Access Token)", "info"),
    ("sepkrcft", "Success Exchange (Passkey and MFA Recovery Code for Access Token)", "info"),
    ("sercft", "Success Exchange (Password and MFA Recovery Code for Access Token)", "info"),
    ("fercft", "Failed Exchange (Password and MFA Recovery Code for Access Token)", "error"),
    ("sertft", "Success Exchange (Refresh Token for Access Token)", "info"),
    ("fertft", "Failed Exchange (Refresh Token for Access Token)", "error"),
    ("ferrt", "Failed Exchange (Rotating Refresh Token)", "error"),
    ("seta", "Success Exchange (Token Vault)", "info"),
    ("feta", "Failed Exchange (Token Vault)", "error"),
    (
        "success_on_behalf_of_token_exchange",
        "Success Exchange (On-Behalf-Of Token Exchange)",
        "info",
    ),
    (
        "failed_on_behalf_of_token_exchange",
        "Failed Exchange (On-Behalf-Of Token Exchange)",
        "error",
    ),
    (
        "idjag_exchange_succeeded",
        "Success Exchange (Identity Assertion Authorization Grant)",
        "info",
    ),
    ("idjag_exchange_failed", "Failed Exchange (Identity Assertion Authorization Grant)", "error"),
    ("jwt_bearer_exchange_failed", "Failed Exchange (JWT Bearer Assertion)", "error"),
    ("ciba_start_succeeded", "Successful CIBA Start", "info"),
    ("ciba_start_failed", "Failed CIBA Start", "error"),
    ("ciba_exchange_succeeded", "Successful CIBA Exchange", "info"),
    ("ciba_exchange_failed", "Failed CIBA Exchange", "error"),
    ("fpar", "Failed Pushed Authorization Request", "error"),
    ("srrt", "Successfully revoked a refresh token", "info"),
    ("sd", "Success Delegation", "info"),
    ("fd", "Failed Delegation", "error"),
    # Device authorization flow
    ("fdeac", "Failed Device Activation", "error"),
    ("fdeaz", "Failed Device Authorization Request", "error"),
    ("fdecc", "User Canceled Device Confirmation", "error"),
    # Account changes: password, email, username, phone number, verification
    ("scp", "Success Change Password", "info"),
    ("fcp", "Failed Change Password", "error"),
    ("scpr", "Success Change Password Request", "info"),
    ("fcpr", "Failed Change Password Request", "error"),
    ("scph", "Success Post Change Password Hook", "info"),
    ("fcph", "Failed Post Change Password Hook", "error"),
    ("sce", "Success Change Email", "info"),
    ("fce", "Failed Change Email", "error"),
    ("scu", "Success Change Username", "info"),
    ("fcu", "Failed Change Username", "error"),
    ("scpn", "Success Change Phone Number", "info"),
    ("fcpn", "Failed Change Phone Number", "error"),
    ("sv", "Success Verification Email", "info"),
    ("fv", "Failed Verification Email", "error"),
    ("svr", "Success Verification Email Request", "info"),
    ("fvr", "Failed Verification Email Request", "error"),
    ("fn", "Failed Sending Notification", "error"),
    ("wn", "Warning Sending Notification", "warning"),
    # User management
    ("du", "Deleted User", "info"),
    ("sdu", "Success User Deletion", "info"),
    ("fdu", "Failed User Deletion", "error"),
    ("sui", "Successfully imported users", "info"),
    ("fui", "Failed users import", "warning"),
    ("wum", "Warning User Management", "warning"),
    ("organization_member_added", "Organization Member Added", "info"),
    ("sscim", "Successful SCIM Operation", "info"),
    ("fscim", "Failed SCIM Operation", "error"),
    ("directory_sync_started", "Inbound Directory Sync Started", "info"),
    ("directory_sync_completed", "Inbound Directory Sync Completed", "info"),
    ("directory_sync_failed", "Inbound Directory Sync Failed", "error"),
    (
        "connected_accounts_connection_succeeded",
        "Successful Connected Account Connection",
        "info",
    ),
    ("connected_accounts_connection_failed", "Failed Connected Account Connection", "error"),
    ("connected_accounts_delete_succeeded", "Successful Connected Account Delete", "info"),
    ("connected_accounts_delete_failed", "Failed Connected Account Delete", "error"),
    (
        "my_account_authentication_method_succeeded",
        "Successful authentication method operation in My Account API",
        "info",
    ),
    (
        "my_account_authentication_method_failed",
        "Failed authentication method operation in My Account API",
        "error",
    ),
    # Attack protection: blocks, breached passwords
    ("limit_wc", "Blocked Account", "error"),
    ("limit_sul", "Blocked Account (Too Many Logins from One IP)", "error"),
    ("limit_mu", "Blocked IP Address", "error"),
    ("ublkdu", "User login block released", "info"),
    ("pwd_leak", "Breached password", "error"),
    ("signup_pwd_leak", "Breached Password on Signup", "error"),
    ("reset_pwd_leak", "Breached Password on Reset", "error"),
    # Rate limits
    ("api_limit", "Rate Limit on the Authentication or Management APIs", "error"),
    (
        "api_limit_warning",
        "Rate Limit Warning on the Authentication or Management APIs",
        "warning",
    ),
    ("limit_delegation", "Too Many Calls to /delegation", "error"),
    ("limit_phone", "Blocked Phone Delivery (Too Many SMS or Voice Deliveries)", "error"),
    ("limit_ui", "Too Many Calls to /userinfo", "error"),
    ("appi", "Notice for API Peak Performance initiated", "info"),
    # Multi-factor authentication (Guardian)
    ("gd_start_auth", "Second factor started", "info"),
    ("gd_auth_succeed", "MFA Auth success", "info"),
    ("gd_auth_failed", "MFA Auth failed", "error"),
    ("gd_auth_rejected", "MFA Auth rejected", "error"),
    ("gd_otp_rate_limit_exceed", "Too many MFA failures", "warning"),
    ("gd_recovery_succeed", "MFA recovery success", "info"),
    ("gd_recovery_failed", "Recovery failed", "error"),
    (
        "gd_recovery_rate_limit_exceed",
        "Multi-factor recovery code has failed too many times",
        "warning",
    ),
    ("gd_start_enroll", "MFA Enroll started", "info"),
    ("gd_start_enroll_failed", "MFA Enrollment Failed", "error"),
    ("gd_enrollment_complete", "MFA enrollment complete", "info"),
    ("gd_unenroll", "Unenroll device account", "info"),
    ("gd_update_device_account", "Update device account", "info"),
    ("gd_user_delete", "User delete", "info"),
    ("gd_module_switch", "Module switch", "info"),
    ("gd_tenant_update", "Guardian tenant update", "info"),
    ("gd_send_pn", "Push notification sent", "info"),
    ("gd_send_pn_failure", "Error Sending MFA Push Notification", "error"),
    ("gd_send_sms", "MFA SMS Sent", "info"),
    ("gd_send_sms_failure", "Error Sending MFA SMS", "error"),
    ("gd_send_voice", "MFA voice call success", "info"),
    ("gd_send_voice_failure", "MFA voice call failed", "error"),
    ("gd_send_email", "MFA Email Sent", "info"),
    ("gd_send_email_verification", "Email Verification Sent", "info"),
    ("gd_send_email_verification_failure", "Email Verification Failed (Sending)", "error"),
    ("gd_auth_email_verification", "Email Verification Confirmed", "info"),
    ("gd_auth_fail_email_verification", "Email Verification Failed", "error"),
    ("gd_webauthn_challenge_failed", "WebAuthn browser error (Challenge)", "error"),
    ("gd_webauthn_enrollment_failed", "WebAuthn browser error (Enrollment)", "error"),
    ("too_many_records", "Max Amount of Authenticators", "info"),
    ("passkey_challenge_started", "Passkey Challenge Started", "info"),
    ("passkey_challenge_failed", "Passkey Challenge Failed", "error"),
    ("passkey_register_started", "Passkey Registration Started", "info"),
    ("passkey_register_failed", "Passkey Registration Failed", "error"),
    # Management API
    ("sapi", "Success API Operation", "info"),
    ("fapi", "Failed API Operation", "error"),
    ("mgmt_api_read", "Management API read Operation", "info"),
    ("kms_key_management_success", "Success KMS API Operation", "info"),
    ("kms_key_management_failure", "Failed KMS API Operation", "error"),
    ("kms_key_state_changed", "KMS Key State Change", "info"),
    # Actions, Forms, Flows, consents
    ("actions_execution_failed", "Actions Execution Failed", "error"),
    ("flows_execution_completed", "Flows Execution Completed", "info"),
    ("flows_execution_failed", "Flows Execution Failed", "error"),
    ("forms_submission_succeeded", "Forms Submission Succeeded", "info"),
    ("forms_submission_failed", "Forms Submission Failed", "error"),
    ("rich_consents_access_error", "Rich Consents Access Error", "error"),
    # Self-service SSO
    ("ss_sso_success", "Success SS-SSO Operation", "info"),
    ("ss_sso_info", "Information from an SS-SSO Operation", "info"),
    ("ss_sso_failure", "Failed SS-SSO Operation", "error"),
    # Tenant, platform and connectors
    ("depnote", "Deprecation Notice", "warning"),
    ("acul_sdk_notice", "ACUL SDK Notice", "warning"),
    ("acls_summary", "Network ACLs Summary", "info"),
    ("custom_domain_verification_failed", "Custom Domain Verification Failed", "error"),
    ("resource_cleanup", "Success Resource Cleanup", "info"),
    ("con", "Connector Online", "info"),
    ("coff", "Connector Offline", "error"),
    ("fcpro", "Failed Connector Provisioning", "error"),
    ("admin_update_launch", "Auth0 Update Launched", "info"),
    ("sys_update_start", "Auth0 Update Started", "info"),
    ("sys_update_end", "Auth0 Update Ended", "info"),
    ("sys_os_update_start", "Auth0 OS Update Started", "info"),
    ("sys_os_update_end", "Auth0 OS Update Ended", "info"),
)


def _build(rows: Iterable[tuple[str, str, Severity]]) -> Mapping[str, EventType]:
    """Index rows by code, refusing a repeated code (a typo would otherwise hide a row)."""
    table: dict[str, EventType] = {}
    for code, name, severity in rows:
        if code in table:
            raise ValueError(f"event type code listed twice: {code!r}")
        table[code] = EventType(code=code, name=name, severity=severity)
    return MappingProxyType(table)


EVENT_TYPES: Final[Mapping[str, EventType]] = _build(_TABLE)


def _as_text(code: object) -> str:
    """`str(code)`, or the type's name if even that fails: describing must never raise."""
    try:
        return str(code)
    except Exception:
        return f"<{type(code).__name__}>"


def describe(code: object) -> EventType:
    """Name and severity for an Auth0 log `type` value.

    Never raises: a code this table does not know, or a value that is not a string at all,
    comes back as "Unknown event type" with severity `info`.
    """
    if isinstance(code, str):
        try:
            known = EVENT_TYPES.get(code)
        except Exception:  # a str subclass with a broken __hash__ or __eq__
            known = None
        if known is not None:
            return known
    return EventType(code=_as_text(code), name=UNKNOWN_NAME, severity="info")
