"""The tenants document: validated into frozen tenants, each error naming the tenant and the field,
one bad tenant left out while the others run; the trust rules (an Auth0 host or a listed custom
domain, the secret named after the domain, a base URL only where a local run lists it); and the
per-tenant settings built from it."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from log_forwarder.exceptions import ConfigError
from log_forwarder.tenants import (
    Tenant,
    TenantRules,
    TenantsParameter,
    parse_tenants,
    tenant_settings,
)

PREFIX = "auth0-user-log-forwarder/"
RULES = TenantRules(secrets_prefix=PREFIX)
SIMULATOR = "http://127.0.0.1:8080"
SOURCE = "TENANTS_PARAMETER '/t'"
DEPLOYMENT_ENV = {
    "CHECKPOINT_TABLE": "table",
    "DESTINATIONS": "s3",
    "S3_BUCKET": "bucket",
    "AUTH0_RATE_LIMIT_PER_SECOND": "2",
    "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
}


def document(*tenants: dict[str, Any]) -> str:
    return json.dumps({"tenants": list(tenants)})


def acme(**fields: Any) -> dict[str, Any]:
    return {
        "domain": "acme.eu.auth0.com",
        "credentials_secret": PREFIX + "acme.eu.auth0.com",
        **fields,
    }


def parse(text: str, rules: TenantRules = RULES) -> Any:
    return parse_tenants(text, source=SOURCE, rules=rules)


def test_a_valid_document_becomes_frozen_tenants() -> None:
    # GIVEN two tenants, one with a watch list and its own rate limit, one reading the table
    text = document(
        acme(watched_user_ids=["auth0|a", " auth0|b ", "auth0|a"], rate_limit_per_second=15),
        {"domain": "Beta.US.auth0.com"},
    )
    # WHEN it is parsed
    config = parse(text)
    # THEN both are there, domains lower case, repeats dropped, nothing reported
    assert config.errors == ()
    first, second = config.tenants
    assert first == Tenant(
        domain="acme.eu.auth0.com",
        credentials_secret=PREFIX + "acme.eu.auth0.com",
        watched_user_ids=("auth0|a", "auth0|b"),
        rate_limit_per_second=15.0,
    )
    assert second.domain == "beta.us.auth0.com" and second.watched_user_ids is None
    # (its secret, left out, is the one named after its domain)
    assert second.credentials_secret == PREFIX + "beta.us.auth0.com"
    assert config.get("BETA.us.auth0.com") == second
    assert first.key_prefix == "acme.eu.auth0.com#"
    with pytest.raises(AttributeError):
        first.domain = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        (acme(credentials_secret=7), "credentials_secret 7 is not this tenant's secret"),
        (acme(credentials_secret="other/acme"), "credentials_secret 'other/acme' is not this"),
        (acme(watched_user_ids="auth0|a"), "watched_user_ids must be a non-empty list"),
        (acme(watched_user_ids=[]), "watched_user_ids must be a non-empty list"),
        (acme(watched_user_ids=["auth0|a", ""]), "watched_user_ids must be a non-empty list"),
        (acme(rate_limit_per_second=0), "rate_limit_per_second 0 must be a number"),
        (acme(rate_limit_per_second="2"), "rate_limit_per_second '2' must be a number"),
        (acme(log_retention_hours=2.5), "log_retention_hours 2.5 must be a whole number"),
        (acme(log_retention_hours=True), "log_retention_hours True must be a whole number"),
        (acme(auth0_base_url=SIMULATOR), "auth0_base_url is honoured only by a local run"),
        (acme(watched_users=["auth0|a"]), "unknown field(s) ['watched_users']"),
    ],
)
def test_a_bad_field_leaves_its_tenant_out_naming_the_tenant_and_the_field(
    entry: dict[str, Any], says: str
) -> None:
    # GIVEN a good tenant and a bad one
    good = {"domain": "good.eu.auth0.com", "credentials_secret": PREFIX + "good.eu.auth0.com"}
    # WHEN the document is parsed
    config = parse(document(good, entry))
    # THEN the good one runs, and the error names the bad one's position, domain and field
    assert [t.domain for t in config.tenants] == ["good.eu.auth0.com"]
    (error,) = config.errors
    assert error.startswith(f"{SOURCE} tenants[1] (acme.eu.auth0.com): ")
    assert says in error


@pytest.mark.parametrize("domain", [None, "", "https://acme.eu.auth0.com", "acme", "a b.com", 7])
def test_a_bad_domain_is_named_with_the_tenant_s_position(domain: Any) -> None:
    config = parse(document(acme(domain=domain), {"domain": "ok.auth0.com"}))
    assert [t.domain for t in config.tenants] == ["ok.auth0.com"]
    (error,) = config.errors
    assert error.startswith(f"{SOURCE} tenants[0]: domain {domain!r} is not a tenant domain")


def test_a_domain_listed_twice_leaves_both_out() -> None:
    # Two entries for one tenant would share its checkpoints: neither may run.
    config = parse(document(acme(), acme(domain="ACME.eu.auth0.com"), {"domain": "b.auth0.com"}))
    assert [t.domain for t in config.tenants] == ["b.auth0.com"]
    assert config.errors == (
        f"{SOURCE} tenant 'acme.eu.auth0.com': domain is listed 2 times; list each tenant once "
        "(both entries are left out)",
    )
    assert config.refusal("ACME.eu.auth0.com") == config.errors[0]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{not json", "is not JSON"),
        ("[" * 200_000 + "]" * 200_000, "is not JSON"),  # nested past the stack
        ("[]", "must be a JSON object with a non-empty tenant list"),
        ('{"tenants": []}', "must be a JSON object with a non-empty tenant list"),
        ('{"tenants": {"domain": "a.b"}}', "must be a JSON object with a non-empty tenant list"),
        (document(acme()).replace("{", '{"version": 2, ', 1), "unknown top-level field"),
    ],
)
def test_a_document_without_a_tenant_list_fails_as_a_whole(text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says) as raised:
        parse(text)
    assert SOURCE in str(raised.value)


def test_an_entry_that_is_not_an_object_is_named() -> None:
    config = parse(document(acme(), "acme.eu.auth0.com"))  # type: ignore[arg-type]
    assert config.errors[0].startswith(f"{SOURCE} tenants[1] must be a JSON object")


@pytest.mark.parametrize(
    "domain",
    [
        "collector.example.net",  # any host at all
        "acme.eu.auth0.com.example.net",  # Auth0's name as a subdomain of another's
        "acme.de.auth0.com",  # no such region
        "acme.eu-auth0.com",
        "x.guardian.us.auth0.com",  # Auth0's, but no tenant's
        "login.acme.example",  # a custom domain nobody listed
    ],
)
def test_a_domain_that_is_not_an_auth0_host_gets_no_entry(domain: str) -> None:
    # GIVEN an entry whose domain is not one Auth0 gives a tenant (its secret would go there)
    config = parse(document({"domain": domain}, {"domain": "good.eu.auth0.com"}))
    # THEN it is left out, naming itself and the rule; the other tenant runs
    assert [t.domain for t in config.tenants] == ["good.eu.auth0.com"]
    reason = config.refusal(domain)
    assert reason is not None and reason.startswith(f"{SOURCE} tenants[0] ({domain}): ")
    assert "is not an Auth0 host (<tenant>.auth0.com or <tenant>.<us|eu|au|jp|ca|uk>" in reason
    assert "nor one of TENANT_CUSTOM_DOMAINS" in reason


@pytest.mark.parametrize(
    "domain", ["acme.auth0.com", "acme.us.auth0.com", "a-b-3.jp.auth0.com", "acme.uk.auth0.com"]
)
def test_every_public_cloud_form_of_an_auth0_host_is_a_tenant_domain(domain: str) -> None:
    assert parse(document({"domain": domain})).tenants[0].domain == domain


def test_a_custom_domain_runs_once_the_stack_s_owner_lists_it() -> None:
    text = document({"domain": "Login.Acme.Example"})
    rules = TenantRules.from_env(
        {"TENANT_SECRETS_PREFIX": PREFIX, "TENANT_CUSTOM_DOMAINS": " login.acme.example ,x.example"}
    )
    (tenant,) = parse(text, rules).tenants
    assert tenant.domain == "login.acme.example"
    assert tenant.credentials_secret == PREFIX + "login.acme.example"


def test_no_entry_can_name_another_tenant_s_secret() -> None:
    # GIVEN one entry naming its own secret, one leaving it out, one naming the first one's
    victim = {"domain": "victim.eu.auth0.com", "credentials_secret": PREFIX + "victim.eu.auth0.com"}
    thief = {"domain": "thief.eu.auth0.com", "credentials_secret": PREFIX + "victim.eu.auth0.com"}
    config = parse(document(victim, {"domain": "quiet.auth0.com"}, thief))
    # THEN the first two read their own secrets; the third is refused, naming the secret it may use
    assert [(t.domain, t.credentials_secret) for t in config.tenants] == [
        ("victim.eu.auth0.com", PREFIX + "victim.eu.auth0.com"),
        ("quiet.auth0.com", PREFIX + "quiet.auth0.com"),
    ]
    reason = config.refusal("thief.eu.auth0.com")
    assert reason == (
        f"{SOURCE} tenants[2] (thief.eu.auth0.com): credentials_secret "
        f"'{PREFIX}victim.eu.auth0.com' is not this tenant's secret: a tenant's secret is named "
        f"after its domain, '{PREFIX}thief.eu.auth0.com' (TENANT_SECRETS_PREFIX and the domain), "
        "so that no entry can borrow another tenant's; leave the field out, or give that name"
    )


def test_a_base_url_is_honoured_only_where_a_local_run_lists_it() -> None:
    entry = acme(auth0_base_url=SIMULATOR + "/")
    # GIVEN a run that lists the simulator's base URL (a local run; the template never does)
    local = TenantRules.from_env(
        {"TENANT_SECRETS_PREFIX": PREFIX, "TENANT_LOCAL_BASE_URLS": f"{SIMULATOR}, http://[::1]:9"}
    )
    # THEN an entry naming it is reached there, and one naming another is refused
    (tenant,) = parse(document(entry), local).tenants
    assert tenant.auth0_base_url == SIMULATOR
    elsewhere = parse(document(acme(auth0_base_url="http://127.0.0.1:9999")), local)
    assert elsewhere.tenants == ()
    assert (
        "auth0_base_url 'http://127.0.0.1:9999' is not one of TENANT_LOCAL_BASE_URLS ("
        in (elsewhere.errors[0])
    )
    # AND where nothing lists one (AWS), any base URL is refused, naming where it would go
    (reason,) = parse(document(entry)).errors
    assert reason == (
        f"{SOURCE} tenants[0] (acme.eu.auth0.com): auth0_base_url is honoured only by a local "
        "run that lists it in TENANT_LOCAL_BASE_URLS (the template never sets it), and this one "
        "lists none: leave it out, and the tenant is reached at https://acme.eu.auth0.com"
    )


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"TENANT_CUSTOM_DOMAINS": "https://login.acme.example"}, "TENANT_CUSTOM_DOMAINS: 'https:"),
        ({"TENANT_LOCAL_BASE_URLS": "https://collector.example.net"}, "not a base URL on this"),
        ({"TENANT_LOCAL_BASE_URLS": "http://127.0.0.1:8080/x"}, "not a base URL on this machine"),
        ({"TENANT_LOCAL_BASE_URLS": "http://u:p@127.0.0.1:8080"}, "not a base URL on this"),
        ({"TENANT_LOCAL_BASE_URLS": "http://127.0.0.1:port"}, "not a base URL on this machine"),
        ({"TENANT_LOCAL_BASE_URLS": "ftp://127.0.0.1"}, "not a base URL on this machine"),
    ],
)
def test_the_owner_s_rules_are_checked_naming_the_variable(env: dict[str, str], says: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(says)):
        TenantRules.from_env(env)


def test_tenant_settings_are_the_deployment_s_with_the_tenant_s_own_fields() -> None:
    # GIVEN a tenant with its own rate limit and retention, and a local Auth0
    tenant = Tenant(
        domain="acme.eu.auth0.com",
        credentials_secret=PREFIX + "acme",
        watched_user_ids=("auth0|a",),
        rate_limit_per_second=15.0,
        log_retention_hours=240,
        auth0_base_url="http://127.0.0.1:8080",
    )
    # WHEN its settings are built from the deployment's variables (which name another tenant's
    # local credentials, as a misconfigured worker might)
    env = {**DEPLOYMENT_ENV, "AUTH0_CLIENT_ID": "x", "AUTH0_CLIENT_SECRET": "y"}
    settings = tenant_settings(env, tenant)
    # THEN the tenant's fields win, credentials come from its secret only, the rest is shared
    assert settings.auth0_domain == "acme.eu.auth0.com"
    assert settings.auth0_base_url == "http://127.0.0.1:8080"
    assert settings.credentials_secret == PREFIX + "acme"
    assert settings.local_client_id is None and settings.local_client_secret is None
    assert settings.watched_user_ids == ("auth0|a",)
    assert settings.rate_limit_per_second == 15.0
    assert settings.log_retention_ms == 240 * 3_600_000
    assert (settings.checkpoint_table, settings.setting("S3_BUCKET")) == ("table", "bucket")
    # AND a tenant without its own fields gets the deployment's
    plain = tenant_settings(env, Tenant("b.auth0.com", PREFIX + "b"))
    assert plain.rate_limit_per_second == 2.0 and plain.watched_user_ids is None
    assert plain.auth0_base_url == "https://b.auth0.com"


def test_a_local_tenant_without_a_local_aws_is_refused_naming_the_tenant() -> None:
    tenant = Tenant("acme.eu.auth0.com", PREFIX + "acme", auth0_base_url="http://127.0.0.1:8080")
    env = {k: v for k, v in DEPLOYMENT_ENV.items() if k != "AWS_ENDPOINT_URL"}
    with pytest.raises(
        ConfigError, match=r"^tenant 'acme\.eu\.auth0\.com': AUTH0_BASE_URL=.*local"
    ):
        tenant_settings(env, tenant)


class FakeSsm:
    def __init__(self, answer: dict[str, Any] | Exception) -> None:
        self.answer = answer
        self.calls = 0
        self.meta = SimpleNamespace(region_name="eu-west-1")

    def get_parameter(self, *, Name: str) -> dict[str, Any]:
        self.calls += 1
        if isinstance(self.answer, Exception):
            raise self.answer
        return {"Parameter": {"Name": Name, **self.answer}}


def reader(client: FakeSsm, clock: list[float]) -> TenantsParameter:
    return TenantsParameter(
        "/t",
        client,  # type: ignore[arg-type]
        rules=RULES,
        max_age_s=60,
        clock=lambda: clock[0],
    )


def test_the_parameter_is_read_at_most_once_a_minute_unless_forced() -> None:
    client = FakeSsm({"Type": "String", "Value": document(acme())})
    clock = [0.0]
    parameter = reader(client, clock)
    assert parameter.load().tenants[0].domain == "acme.eu.auth0.com"
    clock[0] = 59
    parameter.load()
    assert client.calls == 1
    parameter.load(force=True)
    clock[0] = 200
    parameter.load()
    assert client.calls == 3


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        ({"Type": "SecureString", "Value": "AQIC..."}, "is a SecureString; store it as a String"),
        (
            ClientError({"Error": {"Code": "ParameterNotFound"}}, "GetParameter"),
            "does not exist in region eu-west-1: create it (aws ssm put-parameter",
        ),
        (
            ClientError({"Error": {"Code": "AccessDeniedException"}}, "GetParameter"),
            "cannot be read by the function's role",
        ),
    ],
)
def test_an_unreadable_parameter_names_itself_and_the_fix(
    answer: dict[str, Any] | Exception, says: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        reader(FakeSsm(answer), [0.0]).load()
    assert str(raised.value).startswith("TENANTS_PARAMETER '/t' ")
    assert says in str(raised.value)
