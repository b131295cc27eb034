"""EventBridge: each finding as an event on a bus (the account's default bus by default), so
users route findings to SNS, Slack or a ticketing system with a rule of their own.

Only the batch's finding records are sent; events and other records are the other sinks'.
PutEvents is not idempotent and EventBridge cannot be read back, so a batch redelivered after an
interrupted run may send a finding twice: consumers deduplicate by `finding_id`, which is stable.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from log_forwarder.detections import MAX_TEXT_CHARS, Finding, finding_record
from log_forwarder.records import Delivery, DeliveryReport, OutputLine
from log_forwarder.retry import SINK_RETRY, RetryPolicy
from log_forwarder.sinks.partial import send_until_taken

if TYPE_CHECKING:
    from mypy_boto3_events.client import EventBridgeClient

# PutEvents takes at most 10 entries (and 256 KB) per call; each entry is kept under 256 KB.
ENTRIES_PER_CALL = 10
# EventBridge refuses an entry over 256 KB; a finding lists at most this many log_ids there.
MAX_EVENTBRIDGE_LOG_IDS: Final = 50
EVENTBRIDGE_ENTRY_LIMIT: Final = 256 * 1024
EVENTBRIDGE_SOURCE: Final = "auth0-user-log-forwarder"
EVENTBRIDGE_DETAIL_TYPE: Final = "Auth0 watched-user finding"


class EventBridgeSink:
    name = "eventbridge"

    def __init__(
        self,
        event_bus: str,
        client: EventBridgeClient,
        *,
        sleep: Callable[[float], None] = time.sleep,
        retry: RetryPolicy = SINK_RETRY,
    ) -> None:
        self.event_bus = event_bus
        self._client = client
        self._sleep = sleep
        self._retry_policy = retry

    def deliver(self, delivery: Delivery) -> DeliveryReport:
        entries = [
            eventbridge_entry_for(body, self.event_bus) for body in _findings(delivery.lines)
        ]
        # EventBridge cannot be read back: a redelivery sends its findings again.
        repeated = len(entries) if delivery.redelivery else 0

        def resent(count: int) -> None:
            nonlocal repeated
            repeated += count

        for start in range(0, len(entries), ENTRIES_PER_CALL):
            self._put(entries[start : start + ENTRIES_PER_CALL], delivery, resent)
        return DeliveryReport(destination=self.name, accepted=len(entries), repeated=repeated)

    def _put(
        self, entries: list[dict[str, Any]], delivery: Delivery, resent: Callable[[int], None]
    ) -> None:
        """PutEvents, sending again only the entries EventBridge reports as failed."""

        def send(left: Sequence[dict[str, Any]]) -> list[str | None]:
            response = self._client.put_events(Entries=list(left))  # type: ignore[arg-type]
            results = list(response.get("Entries", []))
            results += [{}] * (len(left) - len(results))  # an entry not answered: taken
            return [str(r.get("ErrorCode")) if r.get("ErrorCode") else None for r in results]

        send_until_taken(
            entries,
            send,
            what=f"EventBridge PutEvents on bus {self.event_bus!r}",
            refused=lambda count, codes: (
                f"EventBridge refused {count} finding(s) on bus {self.event_bus!r} for user "
                f"{delivery.user_id!r}: {codes}"
            ),
            policy=self._retry_policy,
            deadline=delivery.deadline,
            sleep=self._sleep,
            resent=resent,
        )


def _findings(lines: Sequence[OutputLine]) -> list[dict[str, Any]]:
    bodies = []
    for line in lines:
        if line.record_key is None or not line.record_key.startswith("finding:"):
            continue
        record = json.loads(line.line)
        # A finding in OCSF (a Detection Finding) holds the forwarder's record in `unmapped`.
        body = record.get("_forwarder") or record.get("unmapped", {}).get("_forwarder")
        if isinstance(body, dict):
            bodies.append(body)
    return bodies


def eventbridge_entry(
    finding: Finding,
    *,
    tenant: str,
    detected_at_ms: int,
    event_bus_name: str | None = None,
) -> dict[str, Any]:
    """A `PutEvents` entry for the finding, kept under EventBridge's 256 KB entry limit."""
    body = finding_record(finding, tenant=tenant, detected_at_ms=detected_at_ms)["_forwarder"]
    return eventbridge_entry_for(body, event_bus_name)


def eventbridge_entry_for(
    record_body: Mapping[str, Any], event_bus_name: str | None = None
) -> dict[str, Any]:
    """The entry for a finding record's `_forwarder` body (as written to the destinations).

    At most MAX_EVENTBRIDGE_LOG_IDS log_ids are listed, with `log_id_count` giving them all; if
    the details still made the entry too large, they are replaced by a note.
    """
    body = dict(record_body)
    log_ids = list(body.get("log_ids") or [])
    body["log_id_count"] = len(log_ids)
    body["log_ids"] = log_ids[:MAX_EVENTBRIDGE_LOG_IDS]
    entry = _entry(body, event_bus_name)
    if eventbridge_entry_size(entry) > EVENTBRIDGE_ENTRY_LIMIT:
        body["details"] = {"truncated": "details too large for EventBridge"}
        body["title"] = str(body.get("title", ""))[:MAX_TEXT_CHARS]
        entry = _entry(body, event_bus_name)
    return entry


def _entry(body: Mapping[str, Any], event_bus_name: str | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "Source": EVENTBRIDGE_SOURCE,
        "DetailType": EVENTBRIDGE_DETAIL_TYPE,
        "Detail": json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str),
        "Resources": [],
    }
    if event_bus_name:
        entry["EventBusName"] = event_bus_name
    return entry


def eventbridge_entry_size(entry: Mapping[str, Any]) -> int:
    """Size as EventBridge counts it: Source, DetailType, Detail and Resources in UTF-8."""
    parts = [entry.get("Source", ""), entry.get("DetailType", ""), entry.get("Detail", "")]
    parts += list(entry.get("Resources") or [])
    return sum(len(str(part).encode("utf-8", "surrogatepass")) for part in parts)
