"""Auth0 log events of any type code, generated from Auth0's own JSON Schemas of its log events.

Auth0 publishes one JSON Schema per log event type (auth0/auth0-log-schemas, 166 codes; a copy
is in `../shared/reference/auth0-log-schemas/`). `events_for_type(code, rng)` builds events of one
type that validate against that type's schema: every required field, a random share of the
optional ones, values of the declared types, formats, patterns, lengths and enums, and Auth0's own
examples where the schema gives them. The fields an analyst reads first (`date`, `log_id`,
`user_id`, `ip`, `user_agent`, `hostname`, the client, the connection, a Management API
request) get realistic values from documentation ranges and example.com, so no value is anyone's
personal data. `schema_problems(event)` says what the event's type schema refuses in an event.

Seeded and pure but for reading the schemas: the same `rng` state gives the same events.
`devtools/traffic.py` writes the common types by hand; this covers every type, for tests that
must meet each one (the OCSF mapping, detection rules).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Final

from devtools.traffic import iso

__all__ = ["SCHEMA_DIR", "event_codes", "events_for_type", "schema_for", "schema_problems"]

SCHEMA_DIR: Final = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "reference"
    / "auth0-log-schemas"
    / "schemas"
    / "log-types"
)
_START: Final = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
_MAX_DEPTH: Final = 6  # the delegation chain (`act`) nests five deep; stop before that
_OPTIONAL_SHARE: Final = 0.5
_PATTERN: Final = re.compile(r"^\^(?P<prefix>[A-Za-z0-9_]*)\[(?P<chars>[^\]]+)\]\{(?P<n>\d+)\}\$$")
_AGENTS: Final = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "python-requests/2.32.3",
)
_METHODS: Final = ("get", "post", "patch", "put", "delete")
_MANAGEMENT_CODES: Final = frozenset(
    {"sapi", "fapi", "mgmt_api_read", "kms_key_management_success", "kms_key_management_failure"}
)


class SchemaNotFound(LookupError):
    """No Auth0 log schema for this code, or no schema directory at all."""


def event_codes(directory: Path = SCHEMA_DIR) -> tuple[str, ...]:
    """Every type code Auth0's schemas define, sorted."""
    return tuple(sorted(_schemas(directory)))


def schema_for(code: str, directory: Path = SCHEMA_DIR) -> Mapping[str, Any]:
    schemas = _schemas(directory)
    if code not in schemas:
        raise SchemaNotFound(f"Auth0's log schemas in {directory} define no type {code!r}")
    return schemas[code]


def schema_problems(event: Mapping[str, Any], directory: Path = SCHEMA_DIR) -> list[str]:
    """What the schema of the event's `type` refuses in it (formats checked too); [] if valid."""
    validator = _validator(str(event.get("type")), directory)
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<event>'}: {error.message}"
        for error in validator.iter_errors(dict(event))
    ]


def events_for_type(
    code: str,
    rng: random.Random,
    *,
    count: int = 1,
    user_id: str = "auth0|5f7c8ec7c33c6c004bbafe82",
    start: datetime = _START,
    directory: Path = SCHEMA_DIR,
) -> list[dict[str, Any]]:
    """`count` events of type `code` about `user_id`, a few seconds apart from `start`, each
    valid against Auth0's schema for that type. Raises `SchemaNotFound` for a code it lacks."""
    schema = schema_for(code, directory)
    moments = _moments(start, count, rng)
    return [_event(code, schema, rng, user_id, moment) for moment in moments]


# -- one event --------------------------------------------------------------------------------


def _event(
    code: str, schema: Mapping[str, Any], rng: random.Random, user_id: str, when: datetime
) -> dict[str, Any]:
    event = _instance(schema, rng, (), 0)
    assert isinstance(event, dict)
    properties = schema["properties"]
    for name, value in _realistic(code, schema, rng, user_id, when):
        if name in properties and (name in event or name in _ALWAYS):
            event[name] = value
    request = _mapping(properties.get("details")).get("properties", {}).get("request")
    if code in _MANAGEMENT_CODES and request == {"type": "object"}:
        event["details"]["request"] = _management_request(rng, user_id, event.get("ip"))
        event["details"]["response"] = {"statusCode": 403 if code.startswith("f") else 200}
    return event


# Fields an event of Auth0 carries whenever its schema has them, required or not.
_ALWAYS: Final = frozenset(
    {"date", "log_id", "user_id", "user_name", "ip", "user_agent", "hostname", "client_id"}
)


def _realistic(
    code: str, schema: Mapping[str, Any], rng: random.Random, user_id: str, when: datetime
) -> Iterator[tuple[str, Any]]:
    agent = rng.choice(_AGENTS)
    yield "date", iso(when)
    # Auth0's observed log_id shape: 900, a UTC time, then digits (56 characters in all).
    yield "log_id", f"900{when:%Y%m%d%H%M%S}{rng.randrange(10**39):039d}"
    yield "user_id", user_id
    yield "user_name", "watched.user@example.com"
    yield "ip", _ip(rng)
    yield "user_agent", agent
    yield "is_mobile", "Mobile" in agent
    yield "hostname", "demo-tenant.us.auth0.com"
    yield "client_id", "kX3vT9qLm2Rb7WcYp4Nd8FhJs6Ug1ZaE"
    yield "client_name", "Customer Portal"
    yield "connection", "Username-Password-Authentication"
    yield "connection_id", "con_1a5wCUmAs6VOU17n"
    yield "strategy", "auth0"
    yield "strategy_type", "database"
    yield "tenant_name", "demo-tenant"
    yield "environment_name", "prod-us-1"
    title = _mapping(schema["properties"].get("type")).get("description")
    yield "description", title if isinstance(title, str) else code


def _management_request(rng: random.Random, user_id: str, ip: object) -> dict[str, Any]:
    method = rng.choice(_METHODS)
    return {
        "method": method,
        "path": f"/api/v2/users/auth0|{rng.randrange(16**24):024x}",
        "query": {},
        "userAgent": _AGENTS[0],
        "body": {"blocked": False} if method in ("post", "patch", "put") else None,
        "channel": "https://manage.auth0.com/",
        "ip": ip if isinstance(ip, str) else _ip(rng),
        "auth": {
            "user": {"user_id": user_id, "name": "Watched User", "email": "watched@example.com"},
            "strategy": "jwt",
            "credentials": {"jti": f"{rng.randrange(16**32):032x}"},
        },
    }


# -- a JSON Schema instance -------------------------------------------------------------------


def _instance(
    schema: Mapping[str, Any], rng: random.Random, path: tuple[str, ...], depth: int
) -> Any:
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(schema["enum"])
    if "allOf" in schema:
        return _instance(_merged(schema), rng, path, depth)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            branches = schema[key]
            usable = [b for b in branches if b.get("type") != "null"] or branches
            if depth >= _MAX_DEPTH and any(b.get("type") == "null" for b in branches):
                return None
            return _instance(rng.choice(usable), rng, path, depth)
    example = _example(schema, rng)
    if example is not _NONE:
        return example
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"] or kind
        kind = kinds[0] if depth or rng.random() < 0.9 else rng.choice(kind)
    if kind == "object":
        return _object(schema, rng, path, depth)
    if kind == "array":
        items = schema.get("items") or {"type": "string"}
        return [_instance(items, rng, (*path, "[]"), depth + 1) for _ in range(rng.randrange(3))]
    if kind == "string":
        return _string(schema, rng, path)
    if kind == "number":
        return rng.randrange(1, 2_000) if not path[-1:] or "At" not in path[-1] else _epoch_ms(rng)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    raise ValueError(f"schema at {'.'.join(path) or '<event>'}: unknown type {kind!r}")


def _object(
    schema: Mapping[str, Any], rng: random.Random, path: tuple[str, ...], depth: int
) -> dict[str, Any]:
    required = set(schema.get("required", ()))
    out: dict[str, Any] = {}
    for name, sub in schema.get("properties", {}).items():
        if name in required or (depth < _MAX_DEPTH and rng.random() < _OPTIONAL_SHARE):
            out[name] = _instance(sub, rng, (*path, name), depth + 1)
    extra = schema.get("additionalProperties")
    if isinstance(extra, Mapping) and rng.random() < _OPTIONAL_SHARE:
        out[f"key{rng.randrange(100)}"] = _instance(extra, rng, (*path, "*"), depth + 1)
    return out


def _string(schema: Mapping[str, Any], rng: random.Random, path: tuple[str, ...]) -> str:
    fmt = schema.get("format")
    if fmt in ("ipv4", "ipv6"):
        return _ip(rng, v6=fmt == "ipv6")
    if fmt == "date-time":
        return iso(_START - timedelta(seconds=rng.randrange(86_400)))
    if "pattern" in schema:
        return _from_pattern(schema["pattern"], rng)
    name = path[-1] if path else ""
    if name == "ja3":  # TLS client fingerprints, shaped as JA3 (an MD5) and JA4 print them
        return f"{rng.randrange(16**32):032x}"
    if name == "ja4":
        ciphers, extensions = rng.randrange(16**12), rng.randrange(16**12)
        return f"t13d{rng.randrange(1010, 2020)}h2_{ciphers:012x}_{extensions:012x}"
    text = f"{path[-1] if path else 'value'}-{rng.randrange(10**6)}"
    return text[: schema.get("maxLength", len(text))]


def _from_pattern(pattern: str, rng: random.Random) -> str:
    """A string for the simple patterns Auth0's schemas use: `^prefix[class]{n}$`."""
    match = _PATTERN.match(pattern)
    if match is None:
        raise ValueError(f"no generator for the schema pattern {pattern!r}")
    alphabet = _expand(match["chars"])
    body = "".join(rng.choice(alphabet) for _ in range(int(match["n"])))
    return match["prefix"] + body


def _expand(chars: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(chars):
        if (
            i + 2 < len(chars)
            and chars[i + 1] == "-"
            and chars[i].isalnum()
            and chars[i + 2].isalnum()
        ):
            out.extend(chr(c) for c in range(ord(chars[i]), ord(chars[i + 2]) + 1))
            i += 3
        else:
            out.append(chars[i])
            i += 1
    return "".join(out)


_NONE: Final = object()


def _example(schema: Mapping[str, Any], rng: random.Random) -> Any:
    """One of the schema's own examples that fits its type, or _NONE.

    Auth0's schemas sometimes give a list of candidates as one example (`strategy`:
    [["auth0", "waad", ...]]), so lists are opened for a scalar type.
    """
    candidates: list[Any] = []
    for example in schema.get("examples", ()):
        candidates.extend(example if isinstance(example, list) else [example])
    kind = schema.get("type")
    kinds = set(kind) if isinstance(kind, list) else {kind}
    fitting = [c for c in candidates if _json_type(c) in kinds]
    return rng.choice(fitting) if fitting and rng.random() < 0.8 else _NONE


def _merged(schema: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
    for part in schema["allOf"]:
        for key, value in part.items():
            if key == "properties":
                merged.setdefault("properties", {}).update(value)
            elif key == "required":
                merged["required"] = [*merged.get("required", ()), *value]
            else:
                merged.setdefault(key, value)
    return merged


def _json_type(value: object) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def _ip(rng: random.Random, *, v6: bool | None = None) -> str:
    if v6 if v6 is not None else rng.random() < 0.1:
        return f"2001:db8:{rng.randrange(0x10000):x}::{rng.randrange(1, 0x10000):x}"
    prefix = rng.choice(("192.0.2", "198.51.100", "203.0.113"))
    return f"{prefix}.{rng.randrange(1, 255)}"


def _epoch_ms(rng: random.Random) -> int:
    return int(_START.timestamp() * 1000) - rng.randrange(60_000)


def _moments(start: datetime, count: int, rng: random.Random) -> list[datetime]:
    moment, out = start.astimezone(UTC), list[datetime]()
    for _ in range(count):
        moment += timedelta(milliseconds=rng.randrange(1, 5_000))
        out.append(moment)
    return out


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@cache
def _validator(code: str, directory: Path) -> Any:
    import jsonschema  # a development dependency; the forwarder never validates events

    checker = jsonschema.Draft7Validator.FORMAT_CHECKER
    return jsonschema.Draft7Validator(schema_for(code, directory), format_checker=checker)


@cache
def _schemas(directory: Path) -> Mapping[str, Mapping[str, Any]]:
    if not directory.is_dir():
        raise SchemaNotFound(f"Auth0's log schemas are not at {directory} (../shared is absent)")
    return {
        path.name.removesuffix(".schema.json"): json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(directory.glob("*.schema.json"))
    }
