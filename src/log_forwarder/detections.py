"""Detections on a watched user's own events: findings an analyst should look at.

The forwarder already delivers every event; these rules say which few of them matter. They run on
one user's new events at a time, in (date, log_id) order, and carry a small state from run to run
inside that user's checkpoint (a DynamoDB item shared with the cursor, 400 KB at most). So the
state is bounded by explicit caps, a few KB with the defaults and under 16 KB at the largest
settings, and everything here is pure: no clock, no I/O. The same events with the same state give
the same findings with the same ids, which makes a redelivery after a crash harmless.

Rules (see docs/detections.md for the reasoning and the public sources behind each default):

- `failed_login_burst`: N failed logins within T minutes (default 10 in 60, like Panther's Auth0
  brute-force rule and Auth0's own 10-attempt block). Failures are Auth0's Log Streams category
  "Login - Failure" (`f fc fco fcoa fens fp fu`) plus `fepft`, the password grant's failure at
  /oauth/token. It fires once when the N-th failure lands in the window, then, while the burst
  goes on (each failure within T of the previous one), only when its total doubles (2N, 4N, ...),
  so a 10,000-failure attack yields about ten findings, not a thousand. T minutes without a
  failure end the burst. A successful login while a burst is live fires once more, at `high`
  (Datadog's "failures then success" signal).
- `brute_force_protection`: Auth0's attack protection blocked something: `limit_wc`, `limit_sul`,
  `limit_mu`, and the MFA lockouts `gd_otp_rate_limit_exceed`, `gd_recovery_rate_limit_exceed`.
- `mfa_weakened`: a second factor removed (`gd_unenroll`, `gd_user_delete`) or bypassed with a
  recovery code (`gd_recovery_succeed`, `sercft`, `sepkrcft`). `mfar` is "MFA required", not a
  reset, and is not a finding.
- `credential_change`: successful `scp sce scpn scu scpr`. Failed attempts do not fire: they
  change nothing, and failed logins have their own rule.
- `breached_password`: Auth0's breached-password detection fired (`pwd_leak`, `reset_pwd_leak`,
  `signup_pwd_leak`).
- `new_source`: a successful login (`s scoa sens sepft`) from a country (or, if chosen, an IPv4
  /24 or IPv6 /48) not seen for this user in D days (default 30). Warm-up: the user's first K
  successful logins (default 5) only build the baseline, so a new user never fires.
- `admin_action`: a Management API operation (`sapi fapi mgmt_api_read gd_tenant_update
  kms_key_management_*`) whose actor is the watched user. The actor is
  `details.request.auth.user.user_id`, else `details.request.auth.subject`, else the top-level
  `user_id`; a call made by someone else, or by a machine client, is not this user's action.

Every rule but the burst suppresses repeats of the same (rule, key) within a dedup window
(default 60 minutes, Panther's usual DedupPeriodMinutes); the next finding for that key says how
many were suppressed. For `new_source` the key is the kind of source, so a user hopping through
many networks in an hour yields one finding, not one per login.

Odd events (a `type` that is not a string, `details` as a string, `location_info` null, no ip)
never raise; what cannot be read is treated as absent.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from .codec import BOOL, INT, STR, Key, Record, Schema, items, optional, row
from .event_types import describe
from .events import LogEvent, iso_ms
from .exceptions import CheckpointStateError

Severity = Literal["info", "low", "medium", "high", "critical"]

FORMAT_VERSION: Final = 1
RULES: Final = (
    "failed_login_burst",
    "brute_force_protection",
    "mfa_weakened",
    "credential_change",
    "breached_password",
    "new_source",
    "admin_action",
)
SOURCE_KINDS: Final = ("country", "network")

# Caps that bound the state (the checkpoint item is shared and limited to 400 KB).
MAX_THRESHOLD: Final = 50  # failures remembered for the burst window
MAX_SOURCES: Final = 20  # known login sources per user; the least recently seen is evicted
MAX_DEDUP_KEYS: Final = 32  # (rule, key) suppression entries; the oldest is evicted
MAX_STORED_ID: Final = 128  # longer log_ids are stored as a digest
MAX_KEY_CHARS: Final = 120
MAX_TEXT_CHARS: Final = 200  # strings copied into a finding's details

FAILED_LOGIN_CODES: Final = frozenset({"f", "fc", "fco", "fcoa", "fens", "fp", "fu", "fepft"})
SUCCESS_LOGIN_CODES: Final = frozenset({"s", "scoa", "sens", "sepft"})
ADMIN_CODES: Final = frozenset(
    {
        "sapi",
        "fapi",
        "mgmt_api_read",
        "gd_tenant_update",
        "kms_key_management_success",
        "kms_key_management_failure",
    }
)

# (rule, code) -> (severity, title) for the rules that look at one event at a time.
_SINGLE: Final[Mapping[str, tuple[str, Severity, str]]] = {
    "limit_wc": ("brute_force_protection", "high", "Auth0 blocked an IP for this account"),
    "limit_sul": ("brute_force_protection", "medium", "Auth0 blocked logins from one IP"),
    "limit_mu": ("brute_force_protection", "medium", "Auth0 blocked an IP address"),
    "gd_otp_rate_limit_exceed": ("brute_force_protection", "high", "Too many wrong MFA codes"),
    "gd_recovery_rate_limit_exceed": (
        "brute_force_protection",
        "high",
        "Too many wrong MFA recovery codes",
    ),
    "gd_unenroll": ("mfa_weakened", "high", "MFA device unenrolled"),
    "gd_user_delete": ("mfa_weakened", "high", "MFA enrolment deleted"),
    "gd_recovery_succeed": ("mfa_weakened", "medium", "MFA bypassed with a recovery code"),
    "sercft": ("mfa_weakened", "medium", "MFA recovery code exchanged for a token"),
    "sepkrcft": ("mfa_weakened", "medium", "MFA recovery code exchanged for a token"),
    "sce": ("credential_change", "high", "Email address changed"),
    "scp": ("credential_change", "medium", "Password changed"),
    "scpn": ("credential_change", "medium", "Phone number changed"),
    "scu": ("credential_change", "low", "Username changed"),
    "scpr": ("credential_change", "low", "Password reset requested"),
    "pwd_leak": ("breached_password", "high", "Login attempted with a breached password"),
    "reset_pwd_leak": ("breached_password", "medium", "Password reset to a breached password"),
    "signup_pwd_leak": ("breached_password", "medium", "Signup with a breached password"),
}

# Management API paths whose writes change who can get in, or what gets logged. Learned from
# Panther's Auth0 rules (MFA policy, attack protection, risk assessment, roles, actions,
# integrations, tenant members) plus log streams and a user's own factors.
_SENSITIVE_PATHS: Final = (
    "/api/v2/guardian",
    "/api/v2/attack-protection",
    "/api/v2/risk-assessment",
    "/api/v2/roles",
    "/api/v2/users/*/roles",
    "/api/v2/users/*/permissions",
    "/api/v2/users/*/authenticators",
    "/api/v2/users/*/authentication-methods",
    "/api/v2/users/*/multifactor",
    "/api/v2/users/*/recovery-code-regeneration",
    "/api/v2/actions",
    "/api/v2/integrations",
    "/api/v2/log-streams",
    "/api/v2/keys",
    "/api/v2/tenants",
    "/api/tenants",
)
_VERSION_SEGMENT = re.compile(r"^v\d+$")


@dataclass(frozen=True, slots=True)
class DetectionSettings:
    """Which rules run, and their thresholds (config.detection_settings reads them)."""

    rules: frozenset[str] = frozenset(RULES)
    failed_login_threshold: int = 10
    failed_login_window_ms: int = 60 * 60_000
    new_source_window_ms: int = 30 * 86_400_000
    new_source_warmup_logins: int = 5
    new_source_by: tuple[str, ...] = ("country",)
    dedup_ms: int = 60 * 60_000


@dataclass(frozen=True, slots=True)
class Finding:
    """Something worth a look, with the events that triggered it."""

    finding_id: str
    rule: str
    title: str
    severity: Severity
    user_id: str
    log_ids: tuple[str, ...]
    first_ms: int
    last_ms: int
    details: Mapping[str, Any] = field(hash=False)


@dataclass(frozen=True, slots=True)
class _Failure:
    date_ms: int
    log_id: str
    ip: str | None


@dataclass(frozen=True, slots=True)
class _Burst:
    """A live burst: it started at `start_ms`, counts `count` failures, fires next at `next_at`."""

    start_ms: int
    count: int
    next_at: int
    success_fired: bool = False


@dataclass(frozen=True, slots=True)
class DetectionState:
    """What the rules remember about one user between runs. Every part has a cap."""

    failures: tuple[_Failure, ...] = ()  # the newest failures within the window, <= threshold
    last_failure_ms: int | None = None
    burst: _Burst | None = None
    logins_seen: int = 0  # successful logins, counted up to the warm-up
    sources: tuple[tuple[str, int], ...] = ()  # (source key, last seen ms), sorted by key
    dedup: tuple[tuple[str, int, int], ...] = ()  # (rule|key, last finding ms, suppressed since)

    def to_state(self) -> dict[str, Any]:
        return DETECTION_STATE.encode(self)

    @classmethod
    def from_state(cls, state: object) -> DetectionState:
        """A stored state, cut to the caps. The checkpoint holding it checked it as it was read
        (codec.versioned); anything else that cannot be read (missing, hand-edited) is an empty
        state: the rules are advisory, so it costs findings, never an event."""
        try:
            return DETECTION_STATE.decode(state, item="detection rules' state").bounded()
        except CheckpointStateError:
            return cls()

    def bounded(self) -> DetectionState:
        """Within the caps, whatever wrote it (larger caps, a hand edit)."""
        return replace(
            self,
            failures=tuple(
                replace(f, log_id=f.log_id[:200], ip=_short(f.ip, 45))
                for f in self.failures[-MAX_THRESHOLD:]
            ),
            logins_seen=max(0, self.logins_seen),
            sources=_bounded_sources({key[:MAX_KEY_CHARS]: ms for key, ms in self.sources}),
            dedup=_bounded_dedup(
                {key[:MAX_KEY_CHARS]: (ms, max(0, n)) for key, ms, n in self.dedup}
            ),
        )


DETECTION_STATE: Final[Schema[DetectionState]] = Schema(
    "detection rules' state",
    Record(
        DetectionState,
        Key("fl", "failures", items(row(INT, STR, optional(STR), into=_Failure))),
        Key("lf", "last_failure_ms", optional(INT)),
        Key("b", "burst", optional(row(INT, INT, INT, BOOL, into=_Burst))),
        Key("n", "logins_seen", INT),
        Key("src", "sources", items(row(STR, INT))),
        Key("dd", "dedup", items(row(STR, INT, INT))),
    ),
    version=1,
    readable_from=1,
    upgrades={},
)


# -- evaluation -------------------------------------------------------------------------------


def evaluate(
    user_id: str,
    events: Sequence[LogEvent],
    state: DetectionState,
    settings: DetectionSettings,
) -> tuple[list[Finding], DetectionState]:
    """The findings among `events` (one user's new events) and the state after them.

    Events are taken in (date, log_id) order, a log_id given twice counts once. Pure: the same
    arguments always give the same findings, with the same ids.
    """
    findings: list[Finding] = []
    seen: set[str] = set()
    for event in sorted(events, key=lambda e: e.key):
        if event.log_id in seen:
            continue
        seen.add(event.log_id)
        found, state = _evaluate_one(user_id, event, state, settings)
        findings.extend(found)
    return findings, state


def _evaluate_one(
    user_id: str, event: LogEvent, state: DetectionState, settings: DetectionSettings
) -> tuple[list[Finding], DetectionState]:
    code = _text(event.raw.get("type"))
    found: list[Finding] = []
    rules = settings.rules
    if "failed_login_burst" in rules and code in FAILED_LOGIN_CODES:
        finding, state = _on_failure(user_id, event, state, settings)
        found += [finding] if finding else []
    if code in SUCCESS_LOGIN_CODES:
        if "failed_login_burst" in rules:
            finding, state = _on_success_after_burst(user_id, event, state, settings)
            found += [finding] if finding else []
        if "new_source" in rules:
            finding, state = _on_login(user_id, event, state, settings)
            found += [finding] if finding else []
    single = _SINGLE.get(code or "")
    if single is not None and single[0] in rules:
        rule, severity, title = single
        details = _event_details(event.raw, code or "")
        finding, state = _deduplicated(
            user_id, event, state, settings, rule, code or "", severity, title, details
        )
        found += [finding] if finding else []
    if "admin_action" in rules and code in ADMIN_CODES:
        finding, state = _on_admin_action(user_id, event, state, settings, code or "")
        found += [finding] if finding else []
    return found, state


# -- failed_login_burst -----------------------------------------------------------------------


def _on_failure(
    user_id: str, event: LogEvent, state: DetectionState, settings: DetectionSettings
) -> tuple[Finding | None, DetectionState]:
    stored_id = _stored_id(event.log_id)
    if any(f.log_id == stored_id for f in state.failures):
        return None, state  # the same failure again: already counted
    window = settings.failed_login_window_ms
    burst = state.burst
    if state.last_failure_ms is not None and event.date_ms - state.last_failure_ms > window:
        burst = None  # T minutes without a failure: the burst is over
    newest = max(event.date_ms, state.last_failure_ms or event.date_ms)
    failure = _Failure(event.date_ms, stored_id, _short(_ip(event.raw), 45))
    failures = sorted((*state.failures, failure), key=lambda f: (f.date_ms, f.log_id))
    failures = [f for f in failures if f.date_ms > newest - window]
    failures = failures[-settings.failed_login_threshold :]
    state = replace(state, failures=tuple(failures), last_failure_ms=newest, burst=burst)
    threshold = settings.failed_login_threshold
    if burst is None:
        if len(failures) < threshold:
            return None, state
        burst = _Burst(start_ms=failures[0].date_ms, count=len(failures), next_at=2 * threshold)
        kind, title = "burst", f"{threshold} failed logins within {window // 60_000} minutes"
    else:
        burst = replace(burst, count=burst.count + 1)
        if burst.count < burst.next_at:
            return None, replace(state, burst=burst)
        burst = replace(burst, next_at=burst.next_at * 2)
        kind, title = "escalation", f"Failed-login burst reached {burst.count} failures"
    state = replace(state, burst=burst)
    finding = _burst_finding(user_id, failures, burst, settings, kind, title, "medium", ())
    return finding, state


def _on_success_after_burst(
    user_id: str, event: LogEvent, state: DetectionState, settings: DetectionSettings
) -> tuple[Finding | None, DetectionState]:
    burst = state.burst
    if burst is None or burst.success_fired or state.last_failure_ms is None:
        return None, state
    if event.date_ms - state.last_failure_ms > settings.failed_login_window_ms:
        return None, state
    if event.date_ms < burst.start_ms:
        return None, state  # a late success from before the burst started
    state = replace(state, burst=replace(burst, success_fired=True))
    title = "Successful login after a burst of failed logins"
    success = (event.log_id, event.date_ms, _ip(event.raw))
    finding = _burst_finding(
        user_id,
        list(state.failures),
        burst,
        settings,
        "success_after_burst",
        title,
        "high",
        success,
    )
    return finding, state


def _burst_finding(
    user_id: str,
    failures: list[_Failure],
    burst: _Burst,
    settings: DetectionSettings,
    kind: str,
    title: str,
    severity: Severity,
    success: tuple[str, int, str | None] | tuple[()],
) -> Finding:
    log_ids = [f.log_id for f in failures]
    dates = [f.date_ms for f in failures]
    details: dict[str, Any] = {
        "kind": kind,
        "failures": burst.count,
        "threshold": settings.failed_login_threshold,
        "window_minutes": settings.failed_login_window_ms // 60_000,
        "burst_started": iso_ms(burst.start_ms),
        "ips": sorted({f.ip for f in failures if f.ip})[:5],
    }
    if success:
        log_ids.append(success[0])
        dates.append(success[1])
        details["success_ip"] = success[2]
    return _finding(user_id, "failed_login_burst", kind, title, severity, log_ids, dates, details)


# -- new_source -------------------------------------------------------------------------------


def _on_login(
    user_id: str, event: LogEvent, state: DetectionState, settings: DetectionSettings
) -> tuple[Finding | None, DetectionState]:
    keys = _source_keys(event.raw, settings.new_source_by)
    horizon = event.date_ms - settings.new_source_window_ms
    known = {key: ms for key, ms in state.sources if ms >= horizon}
    warm = state.logins_seen >= settings.new_source_warmup_logins
    new = [key for key in keys if key not in known]
    finding = None
    if warm and new:
        details = {
            "new_sources": new,
            "known_sources": sorted(known)[:10],
            "window_days": settings.new_source_window_ms // 86_400_000,
            **_event_details(event.raw, _text(event.raw.get("type")) or ""),
        }
        title = "Login from a source not seen for this user: " + ", ".join(new)
        kinds = "+".join(sorted({key.split(":", 1)[0] for key in new}))
        finding, state = _deduplicated(
            user_id, event, state, settings, "new_source", kinds, "medium", title, details
        )
    for key in keys:
        known[key] = max(known.get(key, event.date_ms), event.date_ms)
    logins = min(state.logins_seen + 1, settings.new_source_warmup_logins)
    state = replace(
        state, sources=_bounded_sources(known), logins_seen=max(logins, state.logins_seen)
    )
    return finding, state


def _source_keys(raw: Mapping[str, Any], kinds: Iterable[str]) -> list[str]:
    keys: list[str] = []
    for kind in kinds:
        if kind == "country":
            location = raw.get("location_info")
            code = _text(location.get("country_code")) if isinstance(location, Mapping) else None
            if code and len(code) <= 3:
                keys.append(f"country:{code.upper()}")
        elif kind == "network":
            network = _network(_ip(raw))
            if network:
                keys.append(f"net:{network}")
    return keys


def _network(ip: str | None) -> str | None:
    """The /24 (IPv4) or /48 (IPv6) around an address: a stand-in for the ASN Auth0 omits."""
    if ip is None:
        return None
    try:
        address = ipaddress.ip_address(ip.strip())
    except ValueError:
        return None
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


# -- admin_action -----------------------------------------------------------------------------


def _on_admin_action(
    user_id: str,
    event: LogEvent,
    state: DetectionState,
    settings: DetectionSettings,
    code: str,
) -> tuple[Finding | None, DetectionState]:
    actor, actor_field = acting_user(event.raw)
    if actor != user_id:
        return None, state  # someone else's call (or a machine client's), not this user's
    request = _mapping(_mapping(event.raw.get("details")).get("request"))
    method = (_text(request.get("method")) or "").upper()
    path = _text(request.get("path")) or ""
    template = _path_template(path)
    sensitive = code == "gd_tenant_update" or any(
        template == p or template.startswith(p + "/") for p in _SENSITIVE_PATHS
    )
    severity = _admin_severity(code, sensitive)
    details = {
        **_event_details(event.raw, code),
        "method": method or None,
        "path": _short(path, MAX_TEXT_CHARS),
        "status": _status_code(event.raw),
        "actor_field": actor_field,
        "sensitive": sensitive,
    }
    operation = f"{method} {template}".strip() or describe(code).name
    title = f"Management API operation by the watched user: {operation}"[:MAX_TEXT_CHARS]
    key = f"{code}:{method}:{template}"
    return _deduplicated(
        user_id, event, state, settings, "admin_action", key, severity, title, details
    )


def acting_user(raw: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """Who performed a Management API call, and which field said so.

    `details.request.auth.user.user_id` names a dashboard or API user; Guardian's own API puts the
    caller in `details.request.auth.subject`; otherwise the top-level `user_id`, which Auth0
    documents as the user "executing the action" for management events. A machine client has an
    empty `auth.user` and no top-level user: then nobody is returned.
    """
    auth = _mapping(_mapping(_mapping(raw.get("details")).get("request")).get("auth"))
    candidates = (
        (_text(_mapping(auth.get("user")).get("user_id")), "details.request.auth.user.user_id"),
        (_text(auth.get("subject")), "details.request.auth.subject"),
        (_text(raw.get("user_id")), "user_id"),
    )
    for value, name in candidates:
        if value:
            return value, name
    return None, None


def _admin_severity(code: str, sensitive: bool) -> Severity:
    if code in ("gd_tenant_update", "kms_key_management_success"):
        return "high"
    if code in ("fapi", "kms_key_management_failure"):
        return "medium" if sensitive else "low"
    if code == "mgmt_api_read":
        return "medium"  # Auth0 logs a read only when it returned secrets
    return "high" if sensitive else "medium"


def _path_template(path: str) -> str:
    """`/api/v2/users/auth0|abc/roles` -> `/api/v2/users/*/roles`: ids become `*`."""
    parts = path.split("?", 1)[0].rstrip("/").split("/")
    out = [
        "*"
        if part and not _VERSION_SEGMENT.match(part) and re.search(r"[0-9|@:%=]", part)
        else part
        for part in parts
    ]
    return "/".join(out)[:MAX_KEY_CHARS]


def _status_code(raw: Mapping[str, Any]) -> int | None:
    status = _mapping(_mapping(raw.get("details")).get("response")).get("statusCode")
    return status if isinstance(status, int) and not isinstance(status, bool) else None


# -- single-event rules and their suppression --------------------------------------------------


def _deduplicated(
    user_id: str,
    event: LogEvent,
    state: DetectionState,
    settings: DetectionSettings,
    rule: str,
    key: str,
    severity: Severity,
    title: str,
    details: dict[str, Any],
) -> tuple[Finding | None, DetectionState]:
    """One finding per (rule, key) per dedup window; repeats are counted, not reported."""
    dedup_key = f"{rule}|{key}"[:MAX_KEY_CHARS]
    entries = {k: (ms, count) for k, ms, count in state.dedup}
    previous = entries.get(dedup_key)
    if previous is not None and abs(event.date_ms - previous[0]) < settings.dedup_ms:
        entries[dedup_key] = (previous[0], previous[1] + 1)
        return None, replace(state, dedup=_bounded_dedup(entries))
    if previous is not None and previous[1]:
        details = {**details, "suppressed_before": previous[1]}
    entries[dedup_key] = (event.date_ms, 0)
    finding = _finding(
        user_id,
        rule,
        key,
        title[:MAX_TEXT_CHARS],
        severity,
        [event.log_id],
        [event.date_ms],
        details,
    )
    return finding, replace(state, dedup=_bounded_dedup(entries))


def _bounded_dedup(entries: Mapping[str, tuple[int, int]]) -> tuple[tuple[str, int, int], ...]:
    newest = sorted(entries.items(), key=lambda item: (-item[1][0], item[0]))[:MAX_DEDUP_KEYS]
    return tuple(sorted((key, ms, count) for key, (ms, count) in newest))


# -- findings and their records ---------------------------------------------------------------


def _finding(
    user_id: str,
    rule: str,
    kind: str,
    title: str,
    severity: Severity,
    log_ids: Sequence[str],
    dates: Sequence[int],
    details: Mapping[str, Any],
) -> Finding:
    return Finding(
        finding_id=finding_id(rule, kind, user_id, log_ids),
        rule=rule,
        title=title,
        severity=severity,
        user_id=user_id,
        log_ids=tuple(log_ids),
        first_ms=min(dates),
        last_ms=max(dates),
        details={k: v for k, v in details.items() if v is not None},
    )


def finding_id(rule: str, kind: str, user_id: str, log_ids: Iterable[str]) -> str:
    """Deterministic: the same rule, user and triggering events always give the same id."""
    text = "\x1f".join((rule, kind, user_id, "\x1e".join(log_ids)))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def finding_record(finding: Finding, *, tenant: str, detected_at_ms: int) -> dict[str, Any]:
    """The finding as one output record: every field under `_forwarder`, like gap records."""
    return {
        "_forwarder": {
            "format": FORMAT_VERSION,
            "record_type": "finding",
            "tenant": tenant,
            "watched_user_id": finding.user_id,
            "finding_id": finding.finding_id,
            "rule": finding.rule,
            "title": finding.title,
            "severity": finding.severity,
            "log_ids": list(finding.log_ids),
            "first_seen": iso_ms(finding.first_ms),
            "last_seen": iso_ms(finding.last_ms),
            "details": dict(finding.details),
            "detected_at": iso_ms(detected_at_ms),
        }
    }


# -- reading odd events safely ----------------------------------------------------------------


def _event_details(raw: Mapping[str, Any], code: str) -> dict[str, Any]:
    location = _mapping(raw.get("location_info"))
    return {
        "code": code or None,
        "event": describe(code).name if code else None,
        "ip": _short(_ip(raw), 45),
        "country": _short(_text(location.get("country_code")), 8),
        "city": _short(_text(location.get("city_name")), 80),
        "description": _short(_text(raw.get("description")), MAX_TEXT_CHARS),
    }


def _ip(raw: Mapping[str, Any]) -> str | None:
    return _text(raw.get("ip"))


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _short(value: str | None, limit: int) -> str | None:
    return None if value is None else value[:limit]


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _stored_id(log_id: str) -> str:
    if len(log_id) <= MAX_STORED_ID:
        return log_id
    return "sha256:" + hashlib.sha256(log_id.encode("utf-8", "surrogatepass")).hexdigest()


def _bounded_sources(known: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    newest = sorted(known.items(), key=lambda item: (-item[1], item[0]))[:MAX_SOURCES]
    return tuple(sorted(newest))


# -- configuration ----------------------------------------------------------------------------
