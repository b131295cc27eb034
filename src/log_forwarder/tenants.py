"""Many tenants in one deployment: the tenants document, read from SSM and validated once per read.

The document is JSON in an SSM Parameter Store parameter of type String (TENANTS_PARAMETER):

    {"tenants": [
      {"domain": "acme.eu.auth0.com",
       "credentials_secret": "auth0-user-log-forwarder/acme",
       "watched_user_ids": ["auth0|64b7f0c2e4a1d9a3c1f00d44", "samlp|corp|ana"]},
      {"domain": "acme-staging.eu.auth0.com",
       "credentials_secret": "auth0-user-log-forwarder/acme-staging",
       "rate_limit_per_second": 15, "log_retention_hours": 240}
    ]}

A parameter rather than a variable: a tenant is added or a watch list changed without a
redeploy (the next tick reads it), the parameter keeps a history of its versions, and Lambda's
4 KB budget for all variables would cap the watch lists. It holds secret *names* only, never a
secret. A tenant without `watched_user_ids` watches the table's items with watch = true whose key
starts with its prefix (`<domain>#`).

Each tenant is checked on its own: one with a bad field is left out (its error names the tenant
and the field) and the others still run; a document that is not JSON or has no tenant list fails
as a whole.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from .aws_errors import error_code
from .config import Settings
from .exceptions import ConfigError

if TYPE_CHECKING:
    from mypy_boto3_ssm.client import SSMClient

logger = logging.getLogger(__name__)

# The separator between a tenant's domain and a user id in checkpoint keys, stream names and S3
# key segments. A domain never contains it, so the prefix ends at its first occurrence.
KEY_SEPARATOR = "#"
_DOMAIN = re.compile(
    r"^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)+$"
)
_SECRET_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$")
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "host.docker.internal"})
_FIELDS = (
    "domain",
    "credentials_secret",
    "watched_user_ids",
    "rate_limit_per_second",
    "log_retention_hours",
    "auth0_base_url",
)
SHAPE = '{"tenants": [{"domain": "...", "credentials_secret": "...", "watched_user_ids": ["..."]}]}'


@dataclass(frozen=True, slots=True)
class Tenant:
    """One tenant of the document, validated. Optional fields left out take the deployment's."""

    domain: str
    credentials_secret: str
    watched_user_ids: tuple[str, ...] | None = None  # None: the table's watch items
    rate_limit_per_second: float | None = None
    log_retention_hours: int | None = None
    auth0_base_url: str | None = None  # local runs only (the simulator)

    @property
    def key_prefix(self) -> str:
        """What its checkpoint keys, stream names and S3 key segments start with."""
        return self.domain + KEY_SEPARATOR


@dataclass(frozen=True, slots=True)
class TenantsConfig:
    tenants: tuple[Tenant, ...]
    errors: tuple[str, ...] = ()  # one per tenant left out, naming the tenant and the field

    def get(self, domain: str) -> Tenant | None:
        return next((t for t in self.tenants if t.domain == domain.lower()), None)


def parse_tenants(text: str, *, source: str, secrets_prefix: str) -> TenantsConfig:
    """The document `text` (read from `source`, named in errors) as frozen tenants.

    ConfigError when the document as a whole is unusable; a bad tenant is left out with its
    error in `errors`.
    """
    try:
        document = json.loads(text)
    except ValueError as error:
        raise ConfigError(
            f"{source} is not JSON ({error}); expected {SHAPE}. Store it as a String parameter "
            "(it holds secret names, not secrets)"
        ) from None
    entries = document.get("tenants") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{source} must be a JSON object with a non-empty tenant list: {SHAPE}")
    unknown = sorted(set(document) - {"tenants"})
    if unknown:
        raise ConfigError(f"{source} has unknown top-level field(s) {unknown}; only 'tenants'")
    tenants: list[Tenant] = []
    errors: list[str] = []
    for index, entry in enumerate(entries):
        label = f"{source} tenants[{index}]"
        try:
            tenants.append(_tenant(entry, label, secrets_prefix))
        except ConfigError as error:
            errors.append(str(error))
    return _without_repeats(tenants, errors, source)


def _without_repeats(tenants: list[Tenant], errors: list[str], source: str) -> TenantsConfig:
    """Two entries for one domain would share checkpoints and pacing: both are left out."""
    seen: dict[str, int] = {}
    for tenant in tenants:
        seen[tenant.domain] = seen.get(tenant.domain, 0) + 1
    repeated = sorted(domain for domain, count in seen.items() if count > 1)
    errors.extend(
        f"{source} tenant {domain!r}: domain is listed {seen[domain]} times; list each tenant "
        "once (both entries are left out)"
        for domain in repeated
    )
    kept = tuple(t for t in tenants if t.domain not in repeated)
    return TenantsConfig(tenants=kept, errors=tuple(errors))


def _tenant(entry: object, label: str, secrets_prefix: str) -> Tenant:
    if not isinstance(entry, dict):
        raise ConfigError(f"{label} must be a JSON object such as {SHAPE[13:-2]}")
    raw_domain = entry.get("domain")
    if not isinstance(raw_domain, str) or not _DOMAIN.match(raw_domain.strip().lower()):
        raise ConfigError(
            f"{label}: domain {raw_domain!r} is not a tenant domain; expected a host name such as "
            "acme.eu.auth0.com (no scheme, no path)"
        )
    domain = raw_domain.strip().lower()
    where = f"{label} ({domain})"
    unknown = sorted(set(entry) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed: {', '.join(_FIELDS)}")
    return Tenant(
        domain=domain,
        credentials_secret=_secret(entry.get("credentials_secret"), where, secrets_prefix),
        watched_user_ids=_watch_list(entry.get("watched_user_ids"), where),
        rate_limit_per_second=_optional_number(entry, "rate_limit_per_second", where, 0.01, 10_000),
        log_retention_hours=_optional_hours(entry.get("log_retention_hours"), where),
        auth0_base_url=_base_url(entry.get("auth0_base_url"), where),
    )


def _secret(value: object, where: str, prefix: str) -> str:
    if not isinstance(value, str) or not _SECRET_NAME.match(value):
        raise ConfigError(
            f"{where}: credentials_secret is required: the name of a Secrets Manager secret "
            'holding {"client_id", "client_secret"} (got ' + repr(value) + ")"
        )
    if not value.startswith(prefix):
        # The functions' role reads only secrets under the prefix: say so now, not AccessDenied.
        raise ConfigError(
            f"{where}: credentials_secret {value!r} must start with {prefix!r} "
            "(TENANT_SECRETS_PREFIX): the functions may read only secrets under that prefix"
        )
    return value


def _watch_list(value: object, where: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(item, str) and item.strip() for item in value)
    ):
        raise ConfigError(
            f"{where}: watched_user_ids must be a non-empty list of user ids such as "
            '["auth0|abc"]; leave it out to watch the table\'s items with watch = true'
        )
    return tuple(dict.fromkeys(item.strip() for item in value))


def _optional_number(
    entry: Mapping[str, Any], name: str, where: str, low: float, high: float
) -> float | None:
    value = entry.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ConfigError(f"{where}: {name} {value!r} must be a number from {low} to {high}")
    return float(value)


def _optional_hours(value: object, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 24 * 366:
        raise ConfigError(
            f"{where}: log_retention_hours {value!r} must be a whole number from 1 to 8784"
        )
    return value


def _base_url(value: object, where: str) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: auth0_base_url {value!r} must be an http(s) URL")
    if parts.scheme == "http" and parts.hostname not in _LOCAL_HOSTS:
        # The client secret travels in the token request: plain HTTP only to this machine.
        raise ConfigError(f"{where}: auth0_base_url {value!r} must use https unless it is local")
    return str(value).rstrip("/")


def tenant_settings(env: Mapping[str, str], tenant: Tenant) -> Settings:
    """The deployment's settings (table, destinations, pacing share...) for this tenant.

    Built through Settings.from_env, so every deployment-wide check (the local-AWS guard
    included) applies to each tenant as it does to a single-tenant deployment.
    """
    overlay = {
        **env,
        "AUTH0_DOMAIN": tenant.domain,
        "AUTH0_BASE_URL": tenant.auth0_base_url or "",
        "AUTH0_CREDENTIALS_SECRET": tenant.credentials_secret,
        "AUTH0_CLIENT_ID": "",
        "AUTH0_CLIENT_SECRET": "",
        "WATCHED_USER_IDS": "",
    }
    if tenant.rate_limit_per_second is not None:
        overlay["AUTH0_RATE_LIMIT_PER_SECOND"] = repr(tenant.rate_limit_per_second)
    if tenant.log_retention_hours is not None:
        overlay["AUTH0_LOG_RETENTION_HOURS"] = str(tenant.log_retention_hours)
    try:
        settings = Settings.from_env(overlay)
    except ConfigError as error:
        raise ConfigError(f"tenant {tenant.domain!r}: {error}") from None
    return replace(settings, watched_user_ids=tenant.watched_user_ids)


class TenantsParameter:
    """The tenants document in SSM, read at most once per `max_age_s` (force: read now)."""

    def __init__(
        self,
        name: str,
        client: SSMClient,
        *,
        secrets_prefix: str,
        max_age_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._client = client
        self._secrets_prefix = secrets_prefix
        self._max_age_s = max_age_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, TenantsConfig] | None = None

    def load(self, *, force: bool = False) -> TenantsConfig:
        with self._lock:
            now = self._clock()
            if force or self._cached is None or now - self._cached[0] >= self._max_age_s:
                self._cached = (now, self._read())
            return self._cached[1]

    def _read(self) -> TenantsConfig:
        source = f"TENANTS_PARAMETER {self.name!r}"
        region = self._client.meta.region_name
        try:
            parameter = self._client.get_parameter(Name=self.name)["Parameter"]
        except (ClientError, BotoCoreError) as error:
            raise _parameter_error(error, source, region) from None
        if parameter.get("Type") == "SecureString":
            raise ConfigError(
                f"{source} is a SecureString; store it as a String parameter (it holds secret "
                "names, not secrets, and the functions are not granted the key to decrypt it)"
            )
        return parse_tenants(
            parameter.get("Value", ""), source=source, secrets_prefix=self._secrets_prefix
        )


def _parameter_error(error: Exception, source: str, region: str) -> ConfigError:
    code = error_code(error)
    fixes = {
        "ParameterNotFound": (
            f"does not exist in region {region}: create it (aws ssm put-parameter --region "
            f"{region} --type String --name <name> --value file://tenants.json)"
        ),
        "AccessDeniedException": (
            "cannot be read by the function's role: it may read only the parameter named by "
            "TenantsParameterName"
        ),
    }
    return ConfigError(f"{source} {fixes.get(code, f'could not be read ({code})')}")
