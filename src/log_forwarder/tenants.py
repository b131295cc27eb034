"""Many tenants in one deployment: the tenants document, read from SSM and validated once per read.

The document is JSON in an SSM Parameter Store parameter of type String (TENANTS_PARAMETER):

    {"tenants": [
      {"domain": "acme.eu.auth0.com",
       "watched_user_ids": ["auth0|64b7f0c2e4a1d9a3c1f00d44", "samlp|corp|ana"]},
      {"domain": "acme-staging.eu.auth0.com",
       "rate_limit_per_second": 15, "log_retention_hours": 240}
    ]}

A parameter rather than a variable: a tenant is added or a watch list changed without a
redeploy (the next tick reads it), the parameter keeps a history of its versions, and Lambda's
4 KB budget for all variables would cap the watch lists. It holds no secret. A tenant without
`watched_user_ids` watches the table's items with watch = true whose key starts with its prefix
(`<domain>#`).

Whoever can write the parameter must not thereby be able to read a secret, so an entry names
nothing a secret is sent to or read from but its own tenant (TenantRules, set by the stack's
owner, never by the document):
- its `domain` is an Auth0 host, or a custom domain the stack's owner listed;
- its secret is the one named after that domain under the prefix, never another tenant's;
- `auth0_base_url` (the simulator) is honoured only where a local run lists it.
An entry is vetted before anything of it is read or sent.

Each tenant is checked on its own: one with a bad field is left out (its error names the tenant
and the rule it broke) and the others still run; a document that is not JSON or has no tenant
list fails as a whole.
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
# The hosts Auth0's public cloud gives a tenant (its "Public Cloud Service Endpoints" page):
# <tenant>.auth0.com (US tenants of before the regional names) and <tenant>.<region>.auth0.com.
# One label before them: the other hosts under auth0.com (login., cdn., guardian.) are not
# tenants. Private Cloud and custom domains have other names: the stack's owner lists those.
AUTH0_REGIONS = ("us", "eu", "au", "jp", "ca", "uk")
_AUTH0_HOST = re.compile(
    r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.(?:" + "|".join(AUTH0_REGIONS) + r"))?\.auth0\.com$"
)
AUTH0_HOST_FORMS = f"<tenant>.auth0.com or <tenant>.<{'|'.join(AUTH0_REGIONS)}>.auth0.com"
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "host.docker.internal"})
# The metric of entries left out (the scheduler's every tick, the worker's per message).
REFUSED_METRIC = "TenantsRefused"
_FIELDS = (
    "domain",
    "credentials_secret",
    "watched_user_ids",
    "rate_limit_per_second",
    "log_retention_hours",
    "auth0_base_url",
)
SHAPE = '{"tenants": [{"domain": "<tenant>.eu.auth0.com", "watched_user_ids": ["..."]}]}'


@dataclass(frozen=True, slots=True)
class TenantRules:
    """What an entry may name, as the stack's owner set it (variables, never the document)."""

    secrets_prefix: str = ""  # TENANT_SECRETS_PREFIX: a tenant's secret is this + its domain
    custom_domains: frozenset[str] = frozenset()  # TENANT_CUSTOM_DOMAINS (TenantCustomDomains)
    local_base_urls: frozenset[str] = frozenset()  # TENANT_LOCAL_BASE_URLS: local runs only

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TenantRules:
        return cls(
            secrets_prefix=env.get("TENANT_SECRETS_PREFIX", ""),
            custom_domains=frozenset(
                _custom_domain(item) for item in _items(env.get("TENANT_CUSTOM_DOMAINS", ""))
            ),
            local_base_urls=frozenset(
                _local_base_url(item) for item in _items(env.get("TENANT_LOCAL_BASE_URLS", ""))
            ),
        )

    def secret_name(self, domain: str) -> str:
        """The tenant's secret: named after its domain, so no entry can name another's."""
        return self.secrets_prefix + domain


def _items(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _custom_domain(item: str) -> str:
    domain = item.lower()
    if not _DOMAIN.match(domain):
        raise ConfigError(
            f"TENANT_CUSTOM_DOMAINS: {item!r} is not a host name; list the custom domains a "
            "tenant may use, comma-separated, such as login.example.com (no scheme, no path)"
        )
    return domain


def _local_base_url(item: str) -> str:
    parts = urlsplit(item)
    try:
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        parts = urlsplit("")
    if (
        parts.scheme not in ("http", "https")
        or parts.hostname not in _LOCAL_HOSTS
        or "@" in parts.netloc
        or item.rstrip("/") != f"{parts.scheme}://{parts.netloc}"  # no path, no parameters
    ):
        raise ConfigError(
            f"TENANT_LOCAL_BASE_URLS: {item!r} is not a base URL on this machine such as "
            "http://127.0.0.1:8080; it lets local runs reach the simulator, and only there "
            f"({', '.join(sorted(_LOCAL_HOSTS))}); the template never sets it"
        )
    return item.rstrip("/")


@dataclass(frozen=True, slots=True)
class LeftOut:
    """An entry the document may not run, and why (naming the entry and the rule it broke)."""

    reason: str
    domain: str | None = None  # None when the entry has no usable domain


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
    left_out: tuple[LeftOut, ...] = ()

    @property
    def errors(self) -> tuple[str, ...]:
        """One per entry left out, naming the entry and the rule it broke."""
        return tuple(entry.reason for entry in self.left_out)

    def get(self, domain: str) -> Tenant | None:
        return next((t for t in self.tenants if t.domain == domain.lower()), None)

    def refusal(self, domain: str) -> str | None:
        """Why the entry for `domain` is left out, if it is."""
        wanted = domain.lower()
        return next((e.reason for e in self.left_out if e.domain == wanted), None)


def parse_tenants(text: str, *, source: str, rules: TenantRules) -> TenantsConfig:
    """The document `text` (read from `source`, named in errors) as frozen tenants.

    ConfigError when the document as a whole is unusable; a bad tenant is left out with its
    error in `errors`.
    """
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as error:  # RecursionError: nested past the stack
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
    left_out: list[LeftOut] = []
    for index, entry in enumerate(entries):
        label = f"{source} tenants[{index}]"
        try:
            domain = _domain(entry, label)
        except ConfigError as error:
            left_out.append(LeftOut(str(error)))
            continue
        try:
            tenants.append(_tenant(entry, domain, f"{label} ({domain})", rules))
        except ConfigError as error:
            left_out.append(LeftOut(str(error), domain))
    return _without_repeats(tenants, left_out, source)


def _without_repeats(tenants: list[Tenant], left_out: list[LeftOut], source: str) -> TenantsConfig:
    """Two entries for one domain would share checkpoints and pacing: both are left out."""
    seen: dict[str, int] = {}
    for tenant in tenants:
        seen[tenant.domain] = seen.get(tenant.domain, 0) + 1
    repeated = sorted(domain for domain, count in seen.items() if count > 1)
    left_out.extend(
        LeftOut(
            f"{source} tenant {domain!r}: domain is listed {seen[domain]} times; list each "
            "tenant once (both entries are left out)",
            domain,
        )
        for domain in repeated
    )
    kept = tuple(t for t in tenants if t.domain not in repeated)
    return TenantsConfig(tenants=kept, left_out=tuple(left_out))


def _domain(entry: object, label: str) -> str:
    if not isinstance(entry, dict):
        raise ConfigError(f"{label} must be a JSON object such as {SHAPE[13:-2]}")
    raw_domain = entry.get("domain")
    if not isinstance(raw_domain, str) or not _DOMAIN.match(raw_domain.strip().lower()):
        raise ConfigError(
            f"{label}: domain {raw_domain!r} is not a tenant domain; expected a host name such as "
            "acme.eu.auth0.com (no scheme, no path)"
        )
    return raw_domain.strip().lower()


def _tenant(entry: dict[str, Any], domain: str, where: str, rules: TenantRules) -> Tenant:
    """The entry as a Tenant: first the hosts it would send a secret to and the secret it would
    read, then its other fields."""
    unknown = sorted(set(entry) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; allowed: {', '.join(_FIELDS)}")
    _vet_host(domain, where, rules)
    base_url = _base_url(entry.get("auth0_base_url"), domain, where, rules)
    return Tenant(
        domain=domain,
        credentials_secret=_secret(entry.get("credentials_secret"), domain, where, rules),
        watched_user_ids=_watch_list(entry.get("watched_user_ids"), where),
        rate_limit_per_second=_optional_number(entry, "rate_limit_per_second", where, 0.01, 10_000),
        log_retention_hours=_optional_hours(entry.get("log_retention_hours"), where),
        auth0_base_url=base_url,
    )


def _vet_host(domain: str, where: str, rules: TenantRules) -> None:
    """The token request carries the tenant's client secret to this host."""
    if _AUTH0_HOST.fullmatch(domain) or domain in rules.custom_domains:
        return
    raise ConfigError(
        f"{where}: domain {domain!r} is not an Auth0 host ({AUTH0_HOST_FORMS}) nor one of "
        "TENANT_CUSTOM_DOMAINS (the stack's TenantCustomDomains parameter): its client secret "
        "would be sent there. A custom domain or a Private Cloud host is accepted once the "
        "stack's owner lists it"
    )


def _base_url(value: object, domain: str, where: str, rules: TenantRules) -> str | None:
    """Honoured only where a local run lists it: in AWS every tenant is reached at its domain."""
    if value is None:
        return None
    if not rules.local_base_urls:
        raise ConfigError(
            f"{where}: auth0_base_url is honoured only by a local run that lists it in "
            "TENANT_LOCAL_BASE_URLS (the template never sets it), and this one lists none: "
            f"leave it out, and the tenant is reached at https://{domain}"
        )
    if not isinstance(value, str) or value.rstrip("/") not in rules.local_base_urls:
        raise ConfigError(
            f"{where}: auth0_base_url {value!r} is not one of TENANT_LOCAL_BASE_URLS "
            f"({', '.join(sorted(rules.local_base_urls))}): a local run honours only the base "
            "URLs it lists"
        )
    return value.rstrip("/")


def _secret(value: object, domain: str, where: str, rules: TenantRules) -> str:
    own = rules.secret_name(domain)
    if value is None or value == own:
        return own
    raise ConfigError(
        f"{where}: credentials_secret {value!r} is not this tenant's secret: a tenant's secret "
        f"is named after its domain, {own!r} (TENANT_SECRETS_PREFIX and the domain), so that no "
        "entry can borrow another tenant's; leave the field out, or give that name"
    )


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
        rules: TenantRules,
        max_age_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._client = client
        self._rules = rules
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
        return parse_tenants(parameter.get("Value", ""), source=source, rules=self._rules)


def tenants_parameter(
    env: Mapping[str, str], client: SSMClient, *, max_age_s: float = 60.0
) -> TenantsParameter:
    """The document TENANTS_PARAMETER names, vetted by the rules the other variables set."""
    return TenantsParameter(
        env["TENANTS_PARAMETER"].strip(),
        client,
        rules=TenantRules.from_env(env),
        max_age_s=max_age_s,
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
