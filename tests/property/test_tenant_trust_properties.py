"""The tenants document against whoever can write it: whatever entries it holds, every tenant that
runs names an Auth0 host (or a custom domain the stack's owner listed), reads the secret named after
its own domain, and is reached at a base URL only where a local run lists it; every other entry is
left out with a reason naming it. Nothing an entry says can point a secret anywhere else."""

from __future__ import annotations

import json
import os
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from log_forwarder.tenants import TenantRules, parse_tenants

SCALE = int(os.environ.get("PROPERTY_SCALE", "1"))
PREFIX = "auth0-user-log-forwarder/"
LISTED_CUSTOM = "login.acme.example"
LISTED_BASE_URL = "http://127.0.0.1:8080"
RULES = TenantRules(
    secrets_prefix=PREFIX,
    custom_domains=frozenset({LISTED_CUSTOM}),
    local_base_urls=frozenset({LISTED_BASE_URL}),
)
AUTH0_HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.(us|eu|au|jp|ca|uk))?\.auth0\.com")

labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
auth0_hosts = st.builds(
    lambda label, region: f"{label}.{region}auth0.com",
    labels,
    st.sampled_from(["", "us.", "eu.", "au.", "jp.", "ca.", "uk.", "de.", "guardian.us."]),
)
hostile_hosts = st.one_of(
    st.builds(lambda label: f"{label}.example.net", labels),
    st.builds(lambda host: f"{host}.example.net", auth0_hosts),  # Auth0's name, another's host
    st.builds(lambda label: f"{label}.auth0.com.example.net", labels),
    st.just("login.other.example"),
)
domains = st.one_of(auth0_hosts, hostile_hosts, st.just(LISTED_CUSTOM)).flatmap(
    lambda domain: st.sampled_from([domain, domain.upper(), f" {domain} "])
)


@st.composite
def entries(draw: st.DrawFn, other_domains: list[str]) -> dict[str, Any]:
    domain = draw(domains)
    entry: dict[str, Any] = {"domain": domain}
    secret = draw(
        st.sampled_from(
            ["absent", "own", "another's", "unprefixed", "other text"]
            if other_domains
            else ["absent", "own", "unprefixed", "other text"]
        )
    )
    if secret == "own":
        entry["credentials_secret"] = PREFIX + domain.strip().lower()
    elif secret == "another's":
        entry["credentials_secret"] = PREFIX + draw(st.sampled_from(other_domains))
    elif secret == "unprefixed":
        entry["credentials_secret"] = domain.strip().lower()
    elif secret == "other text":
        entry["credentials_secret"] = draw(st.text(max_size=20))
    base_url = draw(
        st.sampled_from(
            [
                None,
                LISTED_BASE_URL,
                LISTED_BASE_URL + "/",
                "http://127.0.0.1:9999",
                "https://collector.example.net",
                7,
            ]
        )
    )
    if base_url is not None:
        entry["auth0_base_url"] = base_url
    return entry


@st.composite
def documents(draw: st.DrawFn) -> list[dict[str, Any]]:
    victims = draw(st.lists(auth0_hosts, min_size=0, max_size=3))
    return draw(st.lists(entries(victims), min_size=1, max_size=6))


@settings(max_examples=150 * SCALE, deadline=None)
@given(documents())
def test_no_entry_can_send_a_secret_anywhere_but_its_own_tenant(entries: list[Any]) -> None:
    config = parse_tenants(json.dumps({"tenants": entries}), source="doc", rules=RULES)
    for tenant in config.tenants:
        # Its host is Auth0's, or the owner's listed custom domain
        assert AUTH0_HOST.fullmatch(tenant.domain) or tenant.domain == LISTED_CUSTOM, tenant
        # Its secret is its own
        assert tenant.credentials_secret == PREFIX + tenant.domain
        # It is reached at its domain, or at a base URL the run lists
        assert tenant.auth0_base_url in (None, LISTED_BASE_URL)
    # Every entry either runs or is left out with a reason naming it (or, listed twice, its
    # domain): none vanishes without one
    named = {i for i in range(len(entries)) if any(f"doc tenants[{i}]" in e for e in config.errors)}
    repeated = {e.domain for e in config.left_out if "is listed" in e.reason}
    unnamed = [entry["domain"].strip().lower() for i, entry in enumerate(entries) if i not in named]
    assert sorted(t.domain for t in config.tenants) == sorted(
        domain for domain in unnamed if domain not in repeated
    )
