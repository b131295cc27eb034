"""Auth0's Amazon EventBridge log stream, simulated: what Auth0 pushes, onto the local event bus.

Auth0 sends each tenant log event to the partner event source it gave the stream, as an
EventBridge event whose `detail` is `{"log_id", "data": <the log event>}` (Log Streams' event
shape; https://auth0.com/docs/customize/log-streams/stream-logs-to-amazon-eventbridge). What
the stream documents, and this emitter reproduces with a seeded random source:

- at least once: an event may arrive twice (`duplicate`);
- in no promised order: a batch is shuffled (`reorder`);
- some never: events lost on the way (`drop`), and every event sent while the stream is paused
  (Auth0 pauses a stream after repeated delivery failures and does not replay it).

The local path ends in an SQS queue instead of the function (moto does not invoke Lambda
targets): `RealtimeStack.deliver_pushed` drains it into the real-time handler, as the rule's
Lambda target would.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

DETAIL_TYPE = "Auth0 log"
PUT_EVENTS_MAX = 10  # entries per PutEvents call


@dataclass
class LogStreamEmitter:
    """Pushes Auth0 log events to `bus` as Auth0's stream would; records what it lost."""

    events_client: Any
    bus: str
    source: str
    rng: random.Random = field(default_factory=lambda: random.Random(1))
    drop: float = 0.0
    duplicate: float = 0.0
    reorder: bool = False
    paused: bool = False
    sent: int = 0  # entries put on the bus, duplicates included
    dropped: list[str] = field(default_factory=list)  # log_ids never sent
    duplicated: list[str] = field(default_factory=list)

    def emit(self, events: Iterable[Mapping[str, Any]]) -> None:
        batch: list[Mapping[str, Any]] = []
        for event in events:
            if self.paused or self.rng.random() < self.drop:
                self.dropped.append(str(event["log_id"]))
                continue
            batch.append(event)
            if self.rng.random() < self.duplicate:
                self.duplicated.append(str(event["log_id"]))
                batch.append(event)
        if self.reorder:
            self.rng.shuffle(batch)
        entries = [self.entry(event) for event in batch]
        for start in range(0, len(entries), PUT_EVENTS_MAX):
            answer = self.events_client.put_events(Entries=entries[start : start + PUT_EVENTS_MAX])
            if answer.get("FailedEntryCount"):
                raise RuntimeError(f"the local event bus refused entries: {answer['Entries']}")
            self.sent += len(entries[start : start + PUT_EVENTS_MAX])

    def entry(self, event: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "EventBusName": self.bus,
            "Source": self.source,
            "DetailType": DETAIL_TYPE,
            "Detail": json.dumps({"log_id": event["log_id"], "data": event}),
        }


def eventbridge_event(
    event: Mapping[str, Any], source: str, *, account: str = "123456789012"
) -> dict[str, Any]:
    """The event a Lambda target of the rule receives for one Auth0 log event."""
    return {
        "version": "0",
        "id": f"{event['log_id'][-12:]}-0000-0000-0000-000000000000",
        "detail-type": DETAIL_TYPE,
        "source": source,
        "account": account,
        "time": str(event.get("date", ""))[:19] + "Z",
        "region": "us-east-1",
        "resources": [],
        "detail": {"log_id": event["log_id"], "data": dict(event)},
    }
