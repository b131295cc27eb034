"""The tenant queue's message: what the scheduler sends and the worker accepts, nothing else.

    body               {"format": 1, "tenant": "<domain>", "tick": "<EventBridge event id>",
                        "scheduled_at": "<ISO-8601>"}
    MessageGroupId     group_id(domain): one group per tenant, so FIFO hands a tenant's messages
                       out one at a time (per-tenant concurrency 1)
    DeduplicationId    dedup_id(tick, domain): a tick delivered twice to the scheduler enqueues
                       each tenant once (SQS drops a repeated id for five minutes)

A message that does not parse, or whose group is not its tenant's, is a PoisonMessage: running
it could put one tenant in two groups, i.e. two workers at once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .exceptions import PoisonMessage

FORMAT = 1
# SQS caps MessageGroupId and MessageDeduplicationId at 128 characters; a domain may have 253.
_MAX_ID_CHARS = 128


def group_id(domain: str) -> str:
    """The tenant's message group: its domain, or a digest of a domain too long for SQS."""
    if len(domain) <= _MAX_ID_CHARS:
        return domain
    return "sha256-" + hashlib.sha256(domain.encode("utf-8")).hexdigest()


def dedup_id(tick: str, domain: str) -> str:
    return hashlib.sha256(f"{tick}\n{domain}".encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class TenantMessage:
    tenant: str  # the tenant's domain, as in the tenants document
    tick: str
    scheduled_at: str

    def body(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "tenant": self.tenant,
                "tick": self.tick,
                "scheduled_at": self.scheduled_at,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> TenantMessage:
        """The message an SQS event record carries; PoisonMessage when it is not one of ours."""
        try:
            body = json.loads(record.get("body") or "")
        except (ValueError, RecursionError):
            raise PoisonMessage("its body is not JSON") from None
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise PoisonMessage(f"its body is not a format-{FORMAT} tenant message")
        tenant, tick, at = (body.get(k) for k in ("tenant", "tick", "scheduled_at"))
        if not (isinstance(tenant, str) and isinstance(tick, str) and isinstance(at, str)):
            raise PoisonMessage("its body lacks tenant, tick or scheduled_at")
        if not (tenant and tick and at):
            raise PoisonMessage("its body has an empty tenant, tick or scheduled_at")
        message = cls(tenant, tick, at)
        group = record.get("attributes", {}).get("MessageGroupId")
        if group != group_id(message.tenant):
            # Another group's lock would not keep this tenant's runs apart.
            raise PoisonMessage(
                f"its MessageGroupId {group!r} is not tenant {message.tenant!r}'s group"
            )
        return message
