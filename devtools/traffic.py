"""Realistic, seeded Auth0 log events for the demo, the benchmark and tests.

The shapes follow real tenant events (field names, `details` layouts, descriptions, type codes), so
converters and forwarders meet what Auth0 sends: missing optional fields, an empty `description`,
`security_context` on some events only, extra fields the schema does not name, and several events
sharing one millisecond. Once the simulator gives it a `log_id`, each event is valid against
Auth0's own JSON Schema for its type (auth0/auth0-log-schemas; tests/unit/test_simulator.py
checks every type generated here); `devtools/schema_events.py` makes events of every other type.
Addresses come from the documentation ranges (RFC 5737 / RFC 3849) and names from example.com,
so nothing here is anyone's personal data. No `log_id` is set: the simulator assigns one when the
event is ingested, as Auth0 does.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

__all__ = ["attack_burst", "generate_user_events", "iso"]

Event = dict[str, Any]


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def iso(dt: datetime) -> str:
    """Auth0's date format: UTC, milliseconds, `Z` ("2026-11-25T10:00:00.123Z"). Naive is UTC."""
    moment = _utc(dt)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


# -- the tenant's fixed cast ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Client:
    client_id: str
    client_name: str
    mobile: bool


_CLIENTS: Final = (
    _Client("kX3vT9qLm2Rb7WcYp4Nd8FhJs6Ug1ZaE", "Customer Portal", mobile=False),
    _Client("Qe5Gn8Vw2Ks4Lt7Mx9Pz3Hc6Bj1Rd0Fy", "Acme Mobile", mobile=True),
    _Client("Ta4Wm7Yq1Ne8Sx5Kb2Vh9Lc3Gp6Jr0Dz", "Partner API", mobile=False),
)
_DASHBOARD: Final = _Client("uQ2wE4rT6yU8iO0pA1sD3fG5hJ7kL9zX", "", mobile=False)

_BROWSERS: Final = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0",
)
_PHONES: Final = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
)
_SCRIPTS: Final = ("python-requests/2.32.3", "curl/8.5.0", "Go-http-client/2.0", "okhttp/4.12.0")

# (country_code, country_code3, country_name, city_name, latitude, longitude, time_zone, continent)
_PLACES: Final = (
    ("US", "USA", "United States", "Seattle", 47.6062, -122.3321, "America/Los_Angeles", "NA"),
    ("US", "USA", "United States", "Chicago", 41.8781, -87.6298, "America/Chicago", "NA"),
    ("GB", "GBR", "United Kingdom", "London", 51.5072, -0.1276, "Europe/London", "EU"),
    ("DE", "DEU", "Germany", "Berlin", 52.52, 13.405, "Europe/Berlin", "EU"),
    ("FR", "FRA", "France", "Lyon", 45.764, 4.8357, "Europe/Paris", "EU"),
    ("BR", "BRA", "Brazil", "São Paulo", -23.5558, -46.6396, "America/Sao_Paulo", "SA"),
    ("IN", "IND", "India", "Bengaluru", 12.9716, 77.5946, "Asia/Kolkata", "AS"),
    ("JP", "JPN", "Japan", "Osaka", 34.6937, 135.5023, "Asia/Tokyo", "AS"),
    ("AU", "AUS", "Australia", "Melbourne", -37.8136, 144.9631, "Australia/Melbourne", "OC"),
    ("ZA", "ZAF", "South Africa", "Cape Town", -33.9249, 18.4241, "Africa/Johannesburg", "AF"),
    ("VN", "VNM", "Vietnam", "Hanoi", 21.0278, 105.8342, "Asia/Ho_Chi_Minh", "AS"),
    ("RU", "RUS", "Russia", "Novosibirsk", 55.0084, 82.9357, "Asia/Novosibirsk", "AS"),
)

# Auth0 adds fields without notice; a forwarder must carry them along untouched.
_EXTRA_FIELDS: Final[tuple[tuple[str, Callable[[random.Random], Any]], ...]] = (
    ("organization_id", lambda rng: f"org_{_token(rng, 16)}"),
    ("organization_name", lambda rng: "Example Org"),
    ("$event_schema", lambda rng: {"version": "1.0.0"}),
    ("risk_assessment", lambda rng: {"confidence": rng.choice(["low", "medium", "high"])}),
)

# Relative frequencies for one user's ordinary traffic.
_TYPE_WEIGHTS: Final = (
    ("s", 30),
    ("seacft", 16),
    ("slo", 9),
    ("fp", 8),
    ("ssa", 6),
    ("sapi", 3),
    ("mgmt_api_read", 3),
    ("f", 2),
    ("fu", 2),
    ("gd_auth_failed", 2),
    ("sv", 2),
    ("w", 2),
    ("scp", 1.5),
    ("ss", 1),
    ("fn", 1),
    ("depnote", 1),
    ("limit_wc", 0.5),
    ("pwd_leak", 0.5),
)


def _token(rng: random.Random, length: int) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(rng.choice(alphabet) for _ in range(length))


def _hex(rng: random.Random, length: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(length))


def _doc_ip(rng: random.Random) -> str:
    if rng.random() < 0.1:
        return f"2001:db8:{rng.randrange(0x10000):x}::{rng.randrange(1, 0x10000):x}"
    prefix = rng.choice(("192.0.2", "198.51.100", "203.0.113"))
    return f"{prefix}.{rng.randrange(1, 255)}"


def _ms(dt: datetime) -> int:
    return int(_utc(dt).timestamp() * 1000)


# -- one user's identity ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Identity:
    user_id: str
    user_name: str
    connection: str
    connection_id: str
    strategy: str
    strategy_type: str

    @classmethod
    def of(cls, user_id: str, user_name: str | None) -> _Identity:
        provider, _, rest = user_id.partition("|")
        if provider == "samlp" or provider == "oidc" or provider == "waad":
            connection, _, _ = rest.partition("|")
            strategy, strategy_type = provider, "enterprise"
        elif provider in ("google-oauth2", "github", "apple", "facebook", "windowslive"):
            connection, strategy, strategy_type = provider, provider, "social"
        elif provider in ("sms", "email"):
            connection, strategy, strategy_type = provider, provider, "passwordless"
        else:
            connection, strategy, strategy_type = (
                "Username-Password-Authentication",
                "auth0",
                "database",
            )
        digest = hashlib.sha256(user_id.encode()).hexdigest()
        if user_name is None:
            if provider == "sms":
                user_name = f"+1555555{int(digest[:8], 16) % 10000:04d}"
            else:
                last = rest.rpartition("|")[2].partition("@")[0]
                local = re.sub(r"[^a-z0-9]+", ".", last.lower()).strip(".")[:24] or "user"
                user_name = f"{local}@example.com"
        connection_id = f"con_{digest[8:24]}"
        return cls(user_id, user_name, connection, connection_id, strategy, strategy_type)


@dataclass(slots=True)
class _Persona:
    """Where and how a user usually signs in: mostly the same places and devices."""

    identity: _Identity
    hostname: str
    places: list[tuple[Any, ...]]
    ips: list[str]
    agents: list[str]
    logins: int

    @classmethod
    def of(cls, identity: _Identity, hostname: str, rng: random.Random) -> _Persona:
        places = rng.sample(_PLACES, 2)
        agents = [rng.choice(_BROWSERS), rng.choice(_PHONES)]
        ips = [_doc_ip(rng) for _ in range(3)]
        return cls(identity, hostname, places, ips, agents, rng.randrange(1, 400))


def _location(place: tuple[Any, ...]) -> dict[str, Any]:
    code, code3, country, city, lat, lon, tz, continent = place
    return {
        "country_code": code,
        "country_code3": code3,
        "country_name": country,
        "city_name": city,
        "latitude": lat,
        "longitude": lon,
        "time_zone": tz,
        "continent_code": continent,
    }


def _base(
    kind: str,
    when: datetime,
    persona: _Persona,
    rng: random.Random,
    *,
    ip: str,
    agent: str,
    place: tuple[Any, ...],
    client: _Client,
) -> Event:
    who = persona.identity
    event: Event = {
        "date": iso(when),
        "type": kind,
        "description": None,
        "connection": who.connection,
        "connection_id": who.connection_id,
        "client_id": client.client_id,
        "client_name": client.client_name,
        "ip": ip,
        "user_agent": agent,
        "details": {},
        "hostname": persona.hostname,
        "user_id": who.user_id,
        "user_name": who.user_name,
        "strategy": who.strategy,
        "strategy_type": who.strategy_type,
        "isMobile": "Mobile" in agent or client.mobile,
        "location_info": _location(place),
        # Required by Auth0's current schemas; the 2021 sample events predate them.
        "tenant_name": "demo-tenant",
        "environment_name": "prod-us-1",
    }
    if rng.random() < 0.4:
        event["security_context"] = {
            "ja3": _hex(rng, 32),
            "ja4": f"t13d{rng.randrange(1010, 2020)}h2_{_hex(rng, 12)}_{_hex(rng, 12)}",
        }
    if rng.random() < 0.05:
        name, make = rng.choice(_EXTRA_FIELDS)
        event[name] = make(rng)
    return event


# -- per-type details -------------------------------------------------------------------------


def _fill(event: Event, when: datetime, persona: _Persona, rng: random.Random) -> None:
    """Set the description and details Auth0 writes for this event's type."""
    who = persona.identity
    kind = event["type"]
    at = _ms(when)
    session = _token(rng, 32)
    if kind == "s":
        persona.logins += 1
        started = at - rng.randrange(2_000, 40_000)
        event["description"] = ""  # older success logins carried none; the schema asks for one
        event["details"] = {
            "prompts": [
                {
                    "name": "prompt-authenticate",
                    "completedAt": at - 200,
                    "connection": who.connection,
                    "connection_id": who.connection_id,
                    "strategy": who.strategy,
                    "identity": who.user_id.rpartition("|")[2],
                    "stats": {"loginsCount": persona.logins},
                    "elapsedTime": None,
                    "requiredCaptcha": False,
                    "session_id": session,
                },
                {
                    "name": "login",
                    "flow": "universal-login",
                    "initiatedAt": started,
                    "completedAt": at - 150,
                    "timers": {"rules": rng.randrange(1, 9)},
                    "user_id": who.user_id,
                    "user_name": who.user_name,
                    "elapsedTime": at - 150 - started,
                    "requiredCaptcha": False,
                    "session_id": session,
                },
            ],
            "initiatedAt": started,
            "completedAt": at,
            "elapsedTime": at - started,
            "session_id": session,
            "stats": {"loginsCount": persona.logins},
        }
    elif kind == "seacft":
        event["description"] = ""
        event["user_agent"] = rng.choice(
            ("Go-http-client/2.0", "node-fetch/1.0", event["user_agent"])
        )
        event["details"] = {"code": "*" * 42 + _token(rng, 3)}
        event["audience"] = "https://api.example.com/"
        event["scope"] = "openid profile email offline_access"
    elif kind == "ssa":
        event["description"] = "Successful silent authentication"
        event["details"] = {
            "prompts": [],
            "completedAt": at,
            "elapsedTime": None,
            "session_id": session,
        }
    elif kind == "slo":
        event["description"] = "User successfully logged out"
        event["details"] = {
            "return_to": "https://portal.example.com/",
            "allowed_logout_url": ["https://portal.example.com/"],
            "session_id": session,
        }
    elif kind in ("fp", "fu", "f"):
        message = "Wrong email or password."
        if kind == "f" and rng.random() < 0.5:
            message = "Invalid authorization code"
        event["description"] = message
        event["details"] = {"error": {"message": message}}
        if kind == "f":
            event["details"]["error"]["oauthError"] = (
                "invalid_grant" if message.startswith("Invalid") else "access_denied"
            )
    elif kind == "gd_auth_failed":
        event["description"] = "Wrong OTP code."
        factor = rng.choice(("otp", "push", "sms"))
        event["details"] = {
            "error": {"message": "Invalid otp_code."},
            "authenticator": {"id": f"{factor}|dev_{session[:16]}", "type": factor},
            "request": {
                "method": "POST",
                "path": "/mfa/challenge",
                "query": "",
                "ip": event["ip"],
                "userAgent": event["user_agent"],
                "body": {"code": "******"},
                "auth": {"scopes": ["openid"], "strategy": "jwt"},
            },
            "response": {"statusCode": 403},
        }
    elif kind == "sv":
        event["description"] = "Your email was verified. You can continue using the application."
        event["details"] = {
            "title": "Email Verification",
            "email": who.user_name,
            "body": {"ticket": _token(rng, 32), "tenant": "demo-tenant"},
        }
    elif kind == "scp":
        event["description"] = "Password changed successfully"
        event["details"] = {"title": "Password Change", "email": who.user_name, "body": {}}
    elif kind == "ss":
        event["description"] = ""
        event["details"] = {
            "body": {
                "client_id": event["client_id"],
                "tenant": "demo-tenant",
                "email": who.user_name,
                "password": "*****",
                "connection": who.connection,
            }
        }
    elif kind == "fn":
        event["description"] = f"To: {who.user_name}"
        event["details"] = {
            "email_type": rng.choice(("verify_email", "reset_email", "mfa_oob")),
            "notification_type": "email",
            "to": who.user_name,
            "error": "the email provider rejected the message",
        }
    elif kind == "w":
        event["description"] = "Warning during login"
        event["details"] = {"warnings": ["The user's email address is not verified."]}
        event["audience"] = "https://api.example.com/"
    elif kind == "depnote":
        event["description"] = "Legacy Lock API: This feature is being deprecated."
        event["details"] = {
            "feature": {
                "id": "legacy_lock_api",
                "name": "Legacy Lock API",
                "description": "Lock.js and the /usernamepassword/login endpoint",
                "documentation": "https://auth0.com/docs/troubleshoot/product-lifecycle/deprecations-and-migrations",
            },
            "info": "Please migrate to Universal Login.",
        }
    elif kind == "limit_wc":
        event["description"] = (
            f"Too many failed login attempts. The account {who.user_name} has been blocked."
        )
        event["details"] = {"error": {"message": "Too many failed login attempts"}}
    elif kind == "pwd_leak":
        event["description"] = (
            f"Someone behind the IP address: {event['ip']} attempted to login with a "
            "leaked password."
        )
        event["details"] = {"breached_password_detection": {"stage": "pre-login"}}
    elif kind in ("sapi", "mgmt_api_read"):
        write = kind == "sapi"
        target = f"/api/v2/users/{_token(rng, 24)}"
        event["description"] = "Update a user" if write else "Get a user"
        event["client_id"], event["client_name"] = _DASHBOARD.client_id, _DASHBOARD.client_name
        for absent in ("connection", "connection_id", "strategy", "strategy_type", "user_name"):
            del event[absent]
        event["details"] = {
            "request": {
                "method": "patch" if write else "get",
                "path": target,
                "query": {},
                "userAgent": event["user_agent"],
                "body": {"blocked": False} if write else None,
                "channel": "https://manage.auth0.com/",
                "ip": event["ip"],
                "auth": {
                    "user": {"user_id": who.user_id, "name": who.user_name, "email": who.user_name},
                    "strategy": "jwt",
                    "credentials": {"jti": _hex(rng, 32)},
                },
            },
            "response": {"statusCode": 200, "body": {"user_id": target.rpartition("/")[2]}},
        }
        if not write:
            event["details"]["accessedSecrets"] = []


# -- timing -----------------------------------------------------------------------------------


def _instants(
    count: int, start: datetime, span_ms: int, rng: random.Random, tie_rate: float
) -> list[datetime]:
    """`count` ascending instants in [start, start + span), some sharing one millisecond."""
    if count <= 0:
        return []
    offsets = sorted(rng.randrange(max(span_ms, 1)) for _ in range(count))
    for i in range(1, count):
        if rng.random() < tie_rate:
            offsets[i] = offsets[i - 1]
    if count >= 3 and len(set(offsets)) == count:
        # Equal dates must show up in every sizeable sample, not just by luck.
        j = rng.randrange(1, count)
        offsets[j] = offsets[j - 1]
    origin = _utc(start)
    origin = origin.replace(microsecond=origin.microsecond // 1000 * 1000)
    return [origin + timedelta(milliseconds=offset) for offset in offsets]


# -- public generators ------------------------------------------------------------------------


def generate_user_events(
    user_id: str,
    *,
    count: int,
    start: datetime,
    end: datetime,
    rng: random.Random,
    user_name: str | None = None,
    tenant_hostname: str = "demo-tenant.auth0.local",
) -> list[dict[str, Any]]:
    """One user's ordinary traffic: `count` events dated in [start, end), oldest first."""
    persona = _Persona.of(_Identity.of(user_id, user_name), tenant_hostname, rng)
    span_ms = _ms(end) - _ms(start)
    kinds = [k for k, _ in _TYPE_WEIGHTS]
    weights = [w for _, w in _TYPE_WEIGHTS]
    events: list[Event] = []
    for when in _instants(count, start, span_ms, rng, tie_rate=0.06):
        kind = rng.choices(kinds, weights)[0]
        usual = rng.random() < 0.9
        place = persona.places[0 if usual else 1]
        ip = rng.choice(persona.ips) if usual else _doc_ip(rng)
        agent = rng.choice(persona.agents)
        client = _CLIENTS[1] if "Mobile" in agent else rng.choice((_CLIENTS[0], _CLIENTS[2]))
        event = _base(kind, when, persona, rng, ip=ip, agent=agent, place=place, client=client)
        _fill(event, when, persona, rng)
        events.append(event)
    return events


def attack_burst(
    user_id: str,
    *,
    count: int,
    start: datetime,
    seconds: float,
    rng: random.Random,
    user_name: str | None = None,
    tenant_hostname: str = "demo-tenant.auth0.local",
    leaked_password: bool | None = None,
) -> list[dict[str, Any]]:
    """A credential-stuffing burst against one account, oldest first.

    Mostly failed logins (`fp`, some `f`/`fu`) from many addresses and tools, a `limit_wc` now and
    then as brute-force protection blocks an address, and, if `leaked_password` (by default:
    decided by `rng`), one `pwd_leak` at the end. Timestamps are dense, so equal dates are common.
    """
    persona = _Persona.of(_Identity.of(user_id, user_name), tenant_hostname, rng)
    if leaked_password is None:
        leaked_password = rng.random() < 0.5
    failures = count - 1 if leaked_password and count > 0 else count
    attackers = [_doc_ip(rng) for _ in range(max(4, failures // 6))]
    events: list[Event] = []
    instants = _instants(max(count, 0), start, int(seconds * 1000), rng, tie_rate=0.15)
    for n, when in enumerate(instants[:failures]):
        roll = rng.random()
        kind = (
            "limit_wc" if n >= 10 and roll < 0.05 else rng.choices(("fp", "f", "fu"), (8, 1, 1))[0]
        )
        agent = rng.choice(_SCRIPTS if rng.random() < 0.7 else _BROWSERS)
        place = rng.choice(_PLACES)
        event = _base(
            kind,
            when,
            persona,
            rng,
            ip=rng.choice(attackers),
            agent=agent,
            place=place,
            client=_CLIENTS[0],
        )
        _fill(event, when, persona, rng)
        events.append(event)
    if leaked_password and count > 0:
        when = instants[-1]
        event = _base(
            "pwd_leak",
            when,
            persona,
            rng,
            ip=rng.choice(attackers),
            agent=rng.choice(_SCRIPTS),
            place=rng.choice(_PLACES),
            client=_CLIENTS[0],
        )
        _fill(event, when, persona, rng)
        events.append(event)
    return events
