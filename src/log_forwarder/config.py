"""The function's configuration: read from the environment once, validated, frozen.

Every error names the variable and what it accepts, so a bad deployment fails on its first
invocation with a message an operator can act on.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from .detections import MAX_THRESHOLD, RULES, DetectionSettings
from .exceptions import ConfigError
from .filters import CATEGORIES, EventFilter, expand
from .ocsf_versions import DEFAULT_OCSF_VERSION, OCSF_VERSIONS, OcsfVersion
from .read_mode import READ_MODES, ReadMode
from .sinks.registry import BY_NAME, NAMES, REGISTRY
from .store import OWN_KEY_PREFIX

_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "host.docker.internal"})


def _is_local_host(host: str) -> bool:
    """A name for this machine, or an IP address one of its interfaces holds (Docker's bridge,
    where `make local-stack` listens on Linux): what is sent there never leaves the machine.
    An address is this machine's if a socket can be bound to it; a name is never resolved."""
    if host.lower() in _LOCAL_HOSTS:
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError:
            return False
    return True


# Characters no Auth0 user id holds but a mistyped list does: another separator, a JSON or YAML
# list pasted whole, quotes a shell kept, control characters from a copied file.
_MISTYPED = re.compile(r"[;\[\]\"'`\x00-\x1f\x7f]")
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9-]{1,63})+$"
)


@dataclass(frozen=True, slots=True)
class StartFrom:
    """Where a user with no checkpoint starts: the oldest retained event, now, or an instant."""

    mode: Literal["earliest", "now", "instant"]
    instant_ms: int | None = None

    def floor_ms(self, now_ms: int) -> int | None:
        """The first date a fresh cursor may forward (None: from the oldest retained event)."""
        if self.mode == "earliest":
            return None
        if self.mode == "now":
            return now_ms
        return self.instant_ms


@dataclass(frozen=True, slots=True)
class Settings:
    """The function's settings, read once from its environment (Settings.from_env)."""

    auth0_domain: str
    auth0_base_url: str
    credentials_secret: str | None
    local_client_id: str | None
    local_client_secret: str | None
    watched_user_ids: tuple[str, ...] | None
    # The watch list table (WatchListTable); read when WATCHED_USER_IDS is unset.
    watch_table: str | None
    checkpoint_table: str
    # The destinations chosen (sinks/registry.py names them), in the registry's order.
    destinations: tuple[str, ...]
    # The destinations' settings (sinks/registry.py), by variable: every one of the chosen
    # destinations, and those with a default of the others (S3_PREFIX: `run --local` too).
    destination_settings: Mapping[str, str]
    start_from: StartFrom
    overlap_window_ms: int
    rate_limit_share: float
    # None: learn the tenant's rate from Auth0's headers; else a cap on the rate assumed.
    rate_limit_per_second: float | None
    max_concurrent_users: int
    time_margin_ms: int
    log_retention_ms: int
    output: OutputSettings = field(default_factory=lambda: OutputSettings())
    read_mode: ReadMode = "auto"
    # The partner event source of Auth0's log stream (template parameter): the real-time path
    # is on, and the scheduled runs reconcile what it missed. None: off.
    realtime_event_source: str | None = None
    # The real-time path's memory of what it delivered (pushed.py); set with it.
    pushed_events_table: str | None = None
    # The real-time queue (its URL): what a push hands back only busy is made visible again
    # soon (requeue.py). None: handed back messages wait out the queue's visibility timeout.
    realtime_queue_url: str | None = None
    # The installed rule packs (rule_packs.py), read again every max age; None: the shipped
    # default pack alone.
    rule_packs_table: str | None = None
    rule_packs_max_age_s: int = 300

    def setting(self, variable: str) -> str | None:
        """A destination's setting (sinks/registry.py), None when it has no value."""
        return self.destination_settings.get(variable)

    def __repr__(self) -> str:
        # The local client secret must never reach a log line through a repr.
        secret = "***" if self.local_client_secret else None
        return (
            f"Settings(auth0_domain={self.auth0_domain!r}, destinations={self.destinations!r}, "
            f"local_client_secret={secret!r}, ...)"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, aws: bool = True) -> Settings:
        """`aws=False`: for the CLI's `check` and `run --local`, which reach Auth0 only: the
        table and the destinations are not required, nor is AWS_ENDPOINT_URL for a local
        Auth0 (nothing is written to AWS)."""
        env = os.environ if env is None else env
        domain = _required(env, "AUTH0_DOMAIN", "a tenant domain such as example.eu.auth0.com")
        if not _DOMAIN.match(domain):
            raise ConfigError(
                f"AUTH0_DOMAIN={domain!r} is not a host name; expected a tenant domain such as "
                "example.eu.auth0.com (no scheme, no path)"
            )
        base_url = _optional(env, "AUTH0_BASE_URL") or f"https://{domain}"
        url = re.match(r"^(https?)://(\[[^\]]+\]|[^/:\s]+)(:\d+)?(/.*)?$", base_url)
        if not url:
            raise ConfigError(
                f"AUTH0_BASE_URL={base_url!r} must be an http(s) URL such as http://127.0.0.1:8080"
            )
        local = _is_local_host(url.group(2))
        if url.group(1) == "http" and not local:
            # The client secret travels in the token request: plain HTTP only to this machine.
            raise ConfigError(
                f"AUTH0_BASE_URL={base_url!r} must use https unless it points at a local host "
                f"({', '.join(sorted(_LOCAL_HOSTS))}, or an address of this machine)"
            )

        if aws and local and not _optional(env, "AWS_ENDPOINT_URL"):
            # A local Auth0 means a local run (the simulator). Without a local AWS endpoint it
            # would read and write the real account of whatever credentials the host has.
            raise ConfigError(
                f"AUTH0_BASE_URL={base_url!r} points at a local host but AWS_ENDPOINT_URL is not "
                "set, so this run would write to a real AWS account; set AWS_ENDPOINT_URL to the "
                "local AWS (http://host.docker.internal:8081 with `make local-stack`), or leave "
                "AUTH0_BASE_URL empty to read a real tenant"
            )

        secret_id = _optional(env, "AUTH0_CREDENTIALS_SECRET")
        client_id = _optional(env, "AUTH0_CLIENT_ID")
        client_secret = _optional(env, "AUTH0_CLIENT_SECRET")
        if not secret_id and not (client_id and client_secret):
            raise ConfigError(
                "AUTH0_CREDENTIALS_SECRET is required: the Secrets Manager id of a JSON "
                '{"client_id","client_secret"} (AUTH0_CLIENT_ID and AUTH0_CLIENT_SECRET are '
                "accepted instead for local runs only)"
            )
        if bool(client_id) != bool(client_secret):
            raise ConfigError("AUTH0_CLIENT_ID and AUTH0_CLIENT_SECRET must be set together")

        destinations = _destinations(env) if aws else ()

        return cls(
            auth0_domain=domain,
            auth0_base_url=base_url.rstrip("/"),
            credentials_secret=secret_id,
            local_client_id=client_id if not secret_id else None,
            local_client_secret=client_secret if not secret_id else None,
            watched_user_ids=_watch_list(env),
            watch_table=_optional(env, "WATCH_TABLE"),
            checkpoint_table=_required(env, "CHECKPOINT_TABLE", "a DynamoDB table name")
            if aws
            else _optional(env, "CHECKPOINT_TABLE") or "",
            destinations=destinations,
            destination_settings=_destination_settings(env, destinations),
            start_from=parse_start_from(_optional(env, "START_FROM") or "earliest"),
            overlap_window_ms=_integer(env, "OVERLAP_WINDOW_SECONDS", 600, 0, 7 * 86400) * 1000,
            rate_limit_share=_number(env, "AUTH0_RATE_LIMIT_SHARE", 0.5, 0.01, 1.0),
            rate_limit_per_second=_rate_cap(env, "AUTH0_RATE_LIMIT_PER_SECOND"),
            max_concurrent_users=_integer(env, "MAX_CONCURRENT_USERS", 4, 1, 64),
            time_margin_ms=_integer(env, "TIME_MARGIN_SECONDS", 60, 1, 900) * 1000,
            log_retention_ms=_integer(env, "AUTH0_LOG_RETENTION_HOURS", 24, 1, 24 * 366)
            * 3_600_000,
            output=OutputSettings.from_env(env),
            read_mode=_read_mode(env),
            realtime_event_source=_optional(env, "REALTIME_EVENT_SOURCE"),
            pushed_events_table=_optional(env, "PUSHED_EVENTS_TABLE"),
            realtime_queue_url=_optional(env, "REALTIME_QUEUE_URL"),
            rule_packs_table=_optional(env, "RULE_PACKS_TABLE"),
            rule_packs_max_age_s=_integer(env, "RULE_PACKS_MAX_AGE_SECONDS", 300, 1, 3600),
        )


@dataclass(frozen=True, slots=True)
class OutputSettings:
    """What is written besides the events as Auth0 sent them, and how."""

    format: Literal["auth0", "ocsf"] = "auth0"
    ocsf_version: OcsfVersion = DEFAULT_OCSF_VERSION  # the OCSF release written, with "ocsf"
    events: EventFilter = field(default_factory=EventFilter)
    pii_paths: tuple[str, ...] = ()
    pii_key_secret: str | None = None
    detections: DetectionSettings | None = None  # None: no rule runs
    findings_event_bus: str | None = None  # None: findings are not sent to EventBridge

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OutputSettings:
        output_format = (_optional(env, "OUTPUT_FORMAT") or "auth0").lower()
        if output_format not in ("auth0", "ocsf"):
            raise ConfigError(
                f"OUTPUT_FORMAT={output_format!r} is not allowed; use 'auth0' (the events as "
                "Auth0 sends them, the default) or 'ocsf' (OCSF events, of OCSF_VERSION)"
            )
        ocsf_version = _optional(env, "OCSF_VERSION") or DEFAULT_OCSF_VERSION.name
        if ocsf_version not in OCSF_VERSIONS:
            raise ConfigError(
                f"OCSF_VERSION={ocsf_version!r} is not allowed; use one of "
                f"{', '.join(OCSF_VERSIONS)} (the OCSF release of OUTPUT_FORMAT=ocsf, "
                f"{DEFAULT_OCSF_VERSION.name} by default)"
            )
        detections = detection_settings(env)
        bus = _optional(env, "FINDINGS_EVENT_BUS")
        return cls(
            format=output_format,  # type: ignore[arg-type]
            ocsf_version=OCSF_VERSIONS[ocsf_version],
            events=EventFilter(
                include=_event_codes(env, "EVENTS_INCLUDE"),
                exclude=_event_codes(env, "EVENTS_EXCLUDE") or frozenset(),
            ),
            pii_paths=_pii_paths(env),
            pii_key_secret=_optional(env, "PII_KEY_SECRET"),
            detections=detections if detections.rules else None,
            findings_event_bus=None if bus is None or bus.lower() == "none" else bus,
        )._checked()

    def _checked(self) -> OutputSettings:
        if self.pii_paths and not self.pii_key_secret:
            raise ConfigError(
                "PII_FIELDS needs PII_KEY_SECRET: the Secrets Manager id of the key the "
                'pseudonyms are made with ({"key": "<at least 32 random characters>"})'
            )
        return self


def _event_codes(env: Mapping[str, str], name: str) -> frozenset[str] | None:
    raw = _optional(env, name)
    if raw is None:
        return None
    entries = [entry.strip() for entry in raw.split(",")]
    for entry in entries:
        looks_like_a_category = "." in entry or entry in ("actions", "other")
        if not re.fullmatch(r"[a-z][a-z0-9_.]*", entry) or (
            looks_like_a_category and entry not in CATEGORIES
        ):
            raise ConfigError(
                f"{name}={raw!r}: {entry!r} is neither an Auth0 log type code (such as fp, "
                "sapi) nor a Log Streams category (" + ", ".join(sorted(CATEGORIES)) + ")"
            )
    return expand(entries)


def _pii_paths(env: Mapping[str, str]) -> tuple[str, ...]:
    raw = _optional(env, "PII_FIELDS")
    if raw is None:
        return ()
    paths = tuple(part.strip() for part in raw.split(","))
    for path in paths:
        if not re.fullmatch(r"[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*", path):
            raise ConfigError(
                f"PII_FIELDS={raw!r}: {path!r} is not a field name; use names such as ip, "
                "user_name, user_agent or location_info.city_name, separated by commas"
            )
    return paths


def parse_start_from(value: str) -> StartFrom:
    text = value.strip()
    if text.lower() in ("earliest", "now"):
        return StartFrom(mode=text.lower())  # type: ignore[arg-type]
    try:
        instant = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        instant = None
    if instant is None or instant.tzinfo is None:
        raise ConfigError(
            f"START_FROM={value!r} is not allowed; use 'earliest', 'now' or an ISO-8601 instant "
            "with a time zone, such as 2026-11-01T00:00:00Z"
        )
    return StartFrom(mode="instant", instant_ms=int(instant.astimezone(UTC).timestamp() * 1000))


def _optional(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name, "").strip()
    return value or None


def _required(env: Mapping[str, str], name: str, what: str) -> str:
    value = _optional(env, name)
    if value is None:
        raise ConfigError(f"{name} is required: {what}")
    return value


def _destinations(env: Mapping[str, str]) -> tuple[str, ...]:
    allowed = (
        f"one or more of {', '.join(map(repr, NAMES))}, comma-separated, each once "
        f"(such as {','.join(NAMES)!r})"
    )
    raw = _required(env, "DESTINATIONS", allowed)
    chosen = [part.strip().lower() for part in raw.split(",") if part.strip()]
    unknown = [part for part in chosen if part not in BY_NAME]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        raise ConfigError(f"DESTINATIONS={raw!r} is not allowed; use {allowed}")
    return tuple(name for name in NAMES if name in chosen)


def _destination_settings(env: Mapping[str, str], chosen: tuple[str, ...]) -> dict[str, str]:
    """The chosen destinations' settings, and the others' that have a default; ConfigError
    naming a chosen one's that is missing. One with a default may be set empty (S3_PREFIX: no
    prefix)."""
    values: dict[str, str] = {}
    for destination in REGISTRY:
        for setting in destination.settings:
            if setting.default is not None:
                value = env.get(setting.variable, setting.default)
            elif destination.name not in chosen:
                continue
            elif (set_value := _optional(env, setting.variable)) is not None:
                value = set_value
            else:
                raise ConfigError(
                    f"{setting.variable} is required when DESTINATIONS includes "
                    f"{destination.name}: {setting.meaning}"
                )
            values[setting.variable] = setting.normalise(value) if setting.normalise else value
    return values


def _watch_list(env: Mapping[str, str]) -> tuple[str, ...] | None:
    raw = env.get("WATCHED_USER_IDS")
    if raw is None or not raw.strip():
        return None
    ids = [check_user_id(part, "WATCHED_USER_IDS") for part in raw.split(",")]
    # Keep the operator's order but drop repeats: one user, one cursor.
    return tuple(dict.fromkeys(ids))


def check_user_id(user_id: str, where: str) -> str:
    """`user_id` unchanged, or ConfigError naming the entry when it looks mistyped.

    Nothing is silently trimmed: ' auth0|abc' would be a different user to Auth0 (a 404 every
    run), and an entry holding ';', brackets or quotes is a list typed in another syntax.
    """
    example = "comma-separated user ids such as 'auth0|abc,google-oauth2|123'"
    if not user_id.strip():
        raise ConfigError(f"{where} has an empty entry; expected {example}")
    if user_id != user_id.strip():
        raise ConfigError(
            f"{where} entry {user_id!r} starts or ends with a space; no Auth0 user id does "
            f"(expected {example}, with no space after the commas)"
        )
    bad = _MISTYPED.search(user_id)
    if bad:
        raise ConfigError(
            f"{where} entry {user_id!r} contains {bad.group()!r}, which no Auth0 user id "
            f"holds; expected {example}, without quotes or brackets"
        )
    if user_id.startswith(OWN_KEY_PREFIX):
        # The checkpoint table keeps the forwarder's own items under such keys (read_mode.py);
        # no Auth0 user id has this shape ("<provider>|<id>").
        raise ConfigError(
            f"{where} has {user_id!r}: ids starting with {OWN_KEY_PREFIX!r} are the "
            "forwarder's own checkpoint items, not Auth0 user ids"
        )
    return user_id


def _read_mode(env: Mapping[str, str]) -> ReadMode:
    raw = _optional(env, "READ_MODE") or "auto"
    for mode in READ_MODES:
        if raw.lower() == mode:
            return mode
    raise ConfigError(
        f"READ_MODE={raw!r} is not allowed; use 'auto' (the cheaper of the two, run by run), "
        "'per-user' or 'stream'"
    )


def _number(env: Mapping[str, str], name: str, default: float, low: float, high: float) -> float:
    raw = _optional(env, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise ConfigError(f"{name}={raw!r} is not allowed; expected a number from {low} to {high}")
    return value


def _rate_cap(env: Mapping[str, str], name: str) -> float | None:
    """Unset, empty or 0 (the template's default: a CloudFormation number cannot be empty): None."""
    raw = _optional(env, name)
    if raw is None or re.fullmatch(r"0+(\.0*)?|\.0+", raw):
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0.01 <= value <= 10_000:
        raise ConfigError(
            f"{name}={raw!r} is not allowed; expected a number from 0.01 to 10000 requests per "
            "second, or 0 or nothing to learn the tenant's rate limit from Auth0's headers"
        )
    return value


def _integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = _optional(env, name)
    if raw is None:
        return default
    if not re.fullmatch(r"\d+", raw) or not low <= int(raw) <= high:
        raise ConfigError(
            f"{name}={raw!r} is not allowed; expected a whole number from {low} to {high}"
        )
    return int(raw)


def detection_settings(env: Mapping[str, str]) -> DetectionSettings:
    """Which of the default pack's detections run, their thresholds (the DETECTION* variables),
    and whether rules of unwatched users run tenant-wide (DETECTIONS_TENANT_WIDE)."""
    _no_longer_read(env)
    return DetectionSettings(
        rules=_rules(env),
        failed_login_threshold=_integer(
            env, "DETECTION_FAILED_LOGIN_THRESHOLD", 10, 2, MAX_THRESHOLD
        ),
        failed_login_window_ms=_integer(env, "DETECTION_FAILED_LOGIN_WINDOW_MINUTES", 60, 1, 1440)
        * 60_000,
        new_source_window_ms=_integer(env, "DETECTION_NEW_SOURCE_DAYS", 30, 1, 365) * 86_400_000,
        dedup_ms=_integer(env, "DETECTION_DEDUP_MINUTES", 60, 0, 1440) * 60_000,
        tenant_wide=_switch(env, "DETECTIONS_TENANT_WIDE"),
    )


def _rules(env: Mapping[str, str]) -> frozenset[str]:
    raw = env.get("DETECTIONS", "").strip()
    allowed = "'all', 'none' or a comma-separated list of " + ", ".join(RULES)
    if not raw or raw.lower() == "all":
        return frozenset(RULES)
    if raw.lower() == "none":
        return frozenset()
    chosen = [part.strip().lower() for part in raw.split(",")]
    if any(not part for part in chosen):
        raise ConfigError(f"DETECTIONS={raw!r} has an empty entry; use {allowed}")
    unknown = [part for part in chosen if part not in RULES]
    if unknown:
        raise ConfigError(
            f"DETECTIONS={raw!r} names unknown rule(s) {', '.join(unknown)}; use {allowed}"
        )
    return frozenset(chosen)


def _no_longer_read(env: Mapping[str, str]) -> None:
    """What the hand-written rules took and their Sigma versions cannot (docs/detections.md):
    refused by name rather than silently ignored."""
    warmup = _optional(env, "DETECTION_NEW_SOURCE_WARMUP_LOGINS")
    if warmup is not None:
        raise ConfigError(
            f"DETECTION_NEW_SOURCE_WARMUP_LOGINS={warmup!r} is no longer read: the Sigma rule "
            "new_source has no warm-up (a Sigma correlation counts a window, not a user's "
            "history); unset it"
        )
    source = _optional(env, "DETECTION_NEW_SOURCE_BY")
    if source is not None and source.lower() != "country":
        raise ConfigError(
            f"DETECTION_NEW_SOURCE_BY={source!r} is not allowed: new_source counts countries "
            "only (a Sigma correlation counts a field's values, and no event field holds a "
            "network); use 'country' or unset it"
        )


def _switch(env: Mapping[str, str], name: str) -> bool:
    raw = (_optional(env, name) or "false").lower()
    if raw not in ("true", "false"):
        raise ConfigError(f"{name}={raw!r} is not allowed; use 'true' or 'false' (the default)")
    return raw == "true"
