"""EventBridge: each finding as an event on a bus (the account's default bus by default), so
users route findings to SNS, Slack or a ticketing system with a rule of their own.

Only the batch's finding records are sent; events and other records are the other sinks'.
PutEvents is not idempotent and EventBridge cannot be read back, so a batch redelivered after an
interrupted run may send a finding twice: consumers deduplicate by `finding_id`, which is stable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import boto3

from log_forwarder.aws_errors import AWS_ERRORS, error_code, is_transient
from log_forwarder.detections import eventbridge_entry_for
from log_forwarder.exceptions import DeliveryError
from log_forwarder.records import Delivery, DeliveryReport, OutputLine
from log_forwarder.retry import SINK_RETRY, Attempts, RetryPolicy, Settled, retry_call

if TYPE_CHECKING:
    from mypy_boto3_events.client import EventBridgeClient

# PutEvents takes at most 10 entries (and 256 KB) per call; each entry is kept under 256 KB.
ENTRIES_PER_CALL = 10


class EventBridgeSink:
    name = "eventbridge"

    def __init__(
        self,
        event_bus: str,
        client: EventBridgeClient | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        retry: RetryPolicy = SINK_RETRY,
    ) -> None:
        self.event_bus = event_bus
        self._client: EventBridgeClient = client if client is not None else boto3.client("events")
        self._sleep = sleep
        self._retry_policy = retry

    def deliver(self, delivery: Delivery) -> DeliveryReport:
        entries = [
            eventbridge_entry_for(body, self.event_bus) for body in _findings(delivery.lines)
        ]
        for start in range(0, len(entries), ENTRIES_PER_CALL):
            self._put(entries[start : start + ENTRIES_PER_CALL], delivery)
        return DeliveryReport(destination=self.name, accepted=len(entries))

    def _put(self, entries: list[dict[str, Any]], delivery: Delivery) -> None:
        """PutEvents, sending again only the entries EventBridge reports as failed."""
        left = entries

        def put() -> None:
            response = self._client.put_events(Entries=left)  # type: ignore[arg-type]
            results = response.get("Entries", [])
            failed = [e for e, r in zip(left, results, strict=False) if r.get("ErrorCode")]
            if failed:
                codes = sorted({str(r.get("ErrorCode")) for r in results if r.get("ErrorCode")})
                raise _Refused(failed, codes)

        def resume(error: Exception) -> Settled[None] | None:
            nonlocal left
            if isinstance(error, _Refused):
                left = error.entries  # only what EventBridge refused goes again
            return None

        def fail(error: Exception, made: int) -> Exception:
            tries = f" after {made} attempts" if made > 1 else ""
            if isinstance(error, _Refused):
                return DeliveryError(
                    f"EventBridge refused {len(error.entries)} finding(s) on bus "
                    f"{self.event_bus!r} for user {delivery.user_id!r}: "
                    f"{', '.join(error.codes)}{tries}"
                )
            what = f"EventBridge PutEvents on bus {self.event_bus!r}"
            return DeliveryError(f"{what} failed: {error_code(error)}{tries}")

        retry_call(
            put,
            attempts=Attempts(self._retry_policy, sleep=self._sleep, deadline=delivery.deadline),
            errors=(*AWS_ERRORS, _Refused),
            retryable=lambda error: isinstance(error, _Refused) or is_transient(error),
            fail=fail,
            resume=resume,
        )


class _Refused(Exception):
    """Some entries of a PutEvents call failed (the call itself went through)."""

    def __init__(self, entries: list[dict[str, Any]], codes: list[str]) -> None:
        super().__init__(", ".join(codes))
        self.entries = entries
        self.codes = codes


def _findings(lines: Sequence[OutputLine]) -> list[dict[str, Any]]:
    bodies = []
    for line in lines:
        if line.record_key is None or not line.record_key.startswith("finding:"):
            continue
        body = json.loads(line.line).get("_forwarder")
        if isinstance(body, dict):
            bodies.append(body)
    return bodies
