"""`make bench`, the real-time path: latency from an event becoming visible to delivered, and
what a million events cost with the path on.

Each event is pushed as Auth0's stream would (devtools/log_stream.py) onto the partner bus on
moto's server, routed by the template's rule to the local stand-in of its Lambda target, and
delivered by the real handler, one event per invocation as EventBridge invokes the function.
Latency is measured from the moment the simulator holds the event (visible) to the end of the
invocation that delivered it (both destinations and the checkpoint written). It leaves out what
AWS adds on the way: Auth0's push to EventBridge and EventBridge's own delivery to Lambda.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from bench.footprint import Row
from devtools.auth0_simulator import Auth0Simulator, RateLimit
from devtools.harness import LocalDeployment
from devtools.local_aws import LocalAws
from devtools.realtime_stack import RealtimePath
from devtools.traffic import generate_user_events

# Prices (us-east-1, December 2026 list prices): Lambda arm64, EventBridge partner events,
# DynamoDB on-demand, S3 Standard PUT.
LAMBDA_REQUEST = 0.20 / 1e6
LAMBDA_GB_S = 0.0000133334
EVENTBRIDGE_EVENT = 1.00 / 1e6
DYNAMODB_WRU = 1.25 / 1e6
DYNAMODB_RRU = 0.25 / 1e6
S3_PUT = 0.005 / 1000
MEMORY_GB = 0.25  # template.yaml's MemorySize


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def realtime_rows(aws: LocalAws, *, quick: bool) -> list[Row]:
    count = 40 if quick else 300
    users = [f"auth0|bench-rt-{i}" for i in range(5)]
    rng = random.Random(9)
    with Auth0Simulator(rate_limit=RateLimit(burst=50, per_second=16)) as sim:
        stack = LocalDeployment(
            aws,
            sim,
            stack_name=f"bench-rt-{int(time.time())}",
            watched_user_ids=users,
            READ_MODE="per-user",
        )
        path = RealtimePath(stack)
        stack.invoke()  # the scheduled run fixes every user's start
        emitter = path.emitter()
        latencies: list[float] = []
        durations: list[float] = []
        for _ in range(count):
            now = datetime.now(UTC)
            event = generate_user_events(
                rng.choice(users), count=1, start=now - timedelta(milliseconds=5), end=now, rng=rng
            )[:1]
            visible = time.monotonic()
            added = sim.add_events(event)
            emitter.emit(added)
            started = time.monotonic()
            invocations = path.deliver_pushed(batch=1)
            done = time.monotonic()
            if invocations and invocations[0].error is None:
                latencies.append(done - visible)
                durations.append(done - started)
        sizes = [_item_bytes(aws, stack, user) for user in users]
    item_kb = statistics.mean(sizes) / 1024
    duration_s = statistics.median(durations)
    per_event = {
        "Lambda requests": LAMBDA_REQUEST,
        "Lambda duration": duration_s * MEMORY_GB * LAMBDA_GB_S,
        "EventBridge": EVENTBRIDGE_EVENT,
        # A push reads the checkpoint once and writes it twice (intent, commit), whole.
        "DynamoDB": 2 * max(1, round(item_kb + 0.5)) * DYNAMODB_WRU
        + max(1, round(item_kb / 4 + 0.5)) * DYNAMODB_RRU,
        "S3 PUT": S3_PUT,  # an object per push (the scheduled runs write one per batch)
    }
    total = sum(per_event.values()) * 1e6
    parts = ", ".join(f"{name} ${value * 1e6:.2f}" for name, value in per_event.items())
    return [
        Row(
            f"Real time: visible → delivered, {len(latencies)} events pushed one per invocation "
            "through moto's bus, the template's rule and the handler (Auth0's push and "
            "EventBridge's delivery not included)",
            f"p50 **{percentile(latencies, 0.5):.2f} s**, p95 **{percentile(latencies, 0.95):.2f} "
            f"s**, max {max(latencies):.2f} s; handler {duration_s * 1000:.0f} ms median",
            "p95 ≤ 5 s",
        ),
        Row(
            "Real time: cost per million watched events, one invocation each (arm64, 256 MB, "
            f"checkpoint item {item_kb:.1f} KB after the run)",
            f"**${total:.2f}** ({parts}); EventBridge bills every tenant event the stream "
            "pushes, watched or not; CloudWatch ingestion is what the scheduled runs pay anyway",
            "known, per million",
        ),
    ]


def _item_bytes(aws: LocalAws, stack: LocalDeployment, user: str) -> int:
    item = (
        aws.client("dynamodb")
        .get_item(
            TableName=stack.resources.table_name, Key={"user_id": {"S": user}}, ConsistentRead=True
        )
        .get("Item", {})
    )
    # DynamoDB's item size: attribute names plus values (binary as stored, the rest as text).
    size = 0
    for name, value in item.items():
        ((kind, raw),) = value.items()
        size += len(name) + (len(raw) if kind == "B" else len(json.dumps(raw)))
    return size
