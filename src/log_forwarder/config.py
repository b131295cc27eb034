"""The function's configuration: read from the environment once, validated, frozen.

Every error names the variable and what it accepts, so a bad deployment fails on its first
invocation with a message an operator can act on.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from .exceptions import ConfigError
from .read_mode import OWN_KEY_PREFIX, READ_MODES, ReadMode

Destination = Literal["cloudwatch", "s3"]
_DESTINATIONS: tuple[Destination, ...] = ("cloudwatch", "s3")
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "[::1]", "host.docker.internal"})
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
    auth0_domain: str
    auth0_base_url: str
    credentials_secret: str | None
    local_client_id: str | None
    local_client_secret: str | None
    watched_user_ids: tuple[str, ...] | None
    checkpoint_table: str
    destinations: tuple[Destination, ...]
    log_group_name: str | None
    s3_bucket: str | None
    s3_prefix: str
    start_from: StartFrom
    overlap_window_ms: int
    rate_limit_share: float
    rate_limit_per_second: float
    max_concurrent_users: int
    time_margin_ms: int
    log_retention_ms: int
    read_mode: ReadMode = "auto"

    def __repr__(self) -> str:
        # The local client secret must never reach a log line through a repr.
        secret = "***" if self.local_client_secret else None
        return (
            f"Settings(auth0_domain={self.auth0_domain!r}, destinations={self.destinations!r}, "
            f"local_client_secret={secret!r}, ...)"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
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
        if url.group(1) == "http" and url.group(2).lower() not in _LOCAL_HOSTS:
            # The client secret travels in the token request: plain HTTP only to this machine.
            raise ConfigError(
                f"AUTH0_BASE_URL={base_url!r} must use https unless it points at a local host "
                f"({', '.join(sorted(_LOCAL_HOSTS))})"
            )

        if url.group(2).lower() in _LOCAL_HOSTS and not _optional(env, "AWS_ENDPOINT_URL"):
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

        destinations = _destinations(env)
        log_group = _optional(env, "LOG_GROUP_NAME")
        bucket = _optional(env, "S3_BUCKET")
        if "cloudwatch" in destinations and not log_group:
            raise ConfigError("LOG_GROUP_NAME is required when DESTINATIONS includes cloudwatch")
        if "s3" in destinations and not bucket:
            raise ConfigError("S3_BUCKET is required when DESTINATIONS includes s3")

        return cls(
            auth0_domain=domain,
            auth0_base_url=base_url.rstrip("/"),
            credentials_secret=secret_id,
            local_client_id=client_id if not secret_id else None,
            local_client_secret=client_secret if not secret_id else None,
            watched_user_ids=_watch_list(env),
            checkpoint_table=_required(env, "CHECKPOINT_TABLE", "a DynamoDB table name"),
            destinations=destinations,
            log_group_name=log_group if "cloudwatch" in destinations else None,
            s3_bucket=bucket if "s3" in destinations else None,
            s3_prefix=_s3_prefix(env),
            start_from=parse_start_from(_optional(env, "START_FROM") or "earliest"),
            overlap_window_ms=_integer(env, "OVERLAP_WINDOW_SECONDS", 600, 0, 7 * 86400) * 1000,
            rate_limit_share=_number(env, "AUTH0_RATE_LIMIT_SHARE", 0.5, 0.01, 1.0),
            rate_limit_per_second=_number(env, "AUTH0_RATE_LIMIT_PER_SECOND", 2.0, 0.01, 10_000),
            max_concurrent_users=_integer(env, "MAX_CONCURRENT_USERS", 4, 1, 64),
            time_margin_ms=_integer(env, "TIME_MARGIN_SECONDS", 60, 1, 900) * 1000,
            log_retention_ms=_integer(env, "AUTH0_LOG_RETENTION_HOURS", 24, 1, 24 * 366)
            * 3_600_000,
            read_mode=_read_mode(env),
        )


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


def _destinations(env: Mapping[str, str]) -> tuple[Destination, ...]:
    raw = _required(env, "DESTINATIONS", "'cloudwatch', 's3' or 'cloudwatch,s3'")
    chosen = [part.strip().lower() for part in raw.split(",") if part.strip()]
    unknown = [part for part in chosen if part not in _DESTINATIONS]
    if unknown or not chosen or len(set(chosen)) != len(chosen):
        raise ConfigError(
            f"DESTINATIONS={raw!r} is not allowed; use 'cloudwatch', 's3' or 'cloudwatch,s3'"
        )
    return tuple(d for d in _DESTINATIONS if d in chosen)


def _watch_list(env: Mapping[str, str]) -> tuple[str, ...] | None:
    raw = env.get("WATCHED_USER_IDS")
    if raw is None or not raw.strip():
        return None
    ids = [part.strip() for part in raw.split(",")]
    if any(not part for part in ids):
        raise ConfigError(
            f"WATCHED_USER_IDS has an empty entry; expected comma-separated user ids such as "
            f"'auth0|abc,google-oauth2|123' (got {len(ids)} entries)"
        )
    own = [part for part in ids if part.startswith(OWN_KEY_PREFIX)]
    if own:
        # The checkpoint table keeps the forwarder's own items under such keys (read_mode.py);
        # no Auth0 user id has this shape ("<provider>|<id>").
        raise ConfigError(
            f"WATCHED_USER_IDS has {own[0]!r}: ids starting with {OWN_KEY_PREFIX!r} are the "
            "forwarder's own checkpoint items, not Auth0 user ids"
        )
    # Keep the operator's order but drop repeats: one user, one cursor.
    return tuple(dict.fromkeys(ids))


def _read_mode(env: Mapping[str, str]) -> ReadMode:
    raw = _optional(env, "READ_MODE") or "auto"
    for mode in READ_MODES:
        if raw.lower() == mode:
            return mode
    raise ConfigError(
        f"READ_MODE={raw!r} is not allowed; use 'auto' (the cheaper of the two, run by run), "
        "'per-user' or 'stream'"
    )


def _s3_prefix(env: Mapping[str, str]) -> str:
    prefix = env.get("S3_PREFIX", "auth0-logs/").strip().lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return prefix


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


def _integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = _optional(env, name)
    if raw is None:
        return default
    if not re.fullmatch(r"\d+", raw) or not low <= int(raw) <= high:
        raise ConfigError(
            f"{name}={raw!r} is not allowed; expected a whole number from {low} to {high}"
        )
    return int(raw)
