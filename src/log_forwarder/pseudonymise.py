"""Keyed pseudonyms for chosen personal fields (`ip`, `user_name`, `user_agent`, …).

An unkeyed hash (what Auth0 Log Streams offers, xxhash) can be reversed by hashing a guess: an
email address or an IPv4 address is a small space to search. An HMAC-SHA-256 keyed with a secret
only the deployer holds cannot, while the same value still gives the same pseudonym, so events
still correlate (the same IP across a burst, the same user agent on two accounts).

Off by default: the original fields are forwarded untouched unless `PII_FIELDS` names some.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

PREFIX = "hmac-sha256:"
# 128 bits of the HMAC: collisions are out of reach for any log volume, and lines stay short.
DIGEST_CHARS = 32


@dataclass(frozen=True, slots=True)
class Pseudonymiser:
    """Replaces the value at each dotted path (`location_info.city_name`) with its pseudonym."""

    key: bytes
    paths: tuple[str, ...]

    def __repr__(self) -> str:
        return f"Pseudonymiser(paths={self.paths!r}, key=***)"

    def pseudonym(self, value: object) -> str:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
        mac = hmac.new(self.key, text.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return PREFIX + mac.hexdigest()[:DIGEST_CHARS]

    def apply(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of `record` with every named field that is present (and not null) replaced.

        Only the containers on a path are copied: the rest of the record is shared, untouched.
        """
        result = dict(record)
        for path in self.paths:
            self._replace(result, path.split("."))
        return result

    def _replace(self, container: dict[str, Any], parts: list[str]) -> None:
        head, rest = parts[0], parts[1:]
        value = container.get(head)
        if value is None:
            return
        if not rest:
            container[head] = self.pseudonym(value)
        elif isinstance(value, Mapping):
            child = dict(value)
            container[head] = child
            self._replace(child, rest)
