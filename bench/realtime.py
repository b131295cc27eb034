"""`make bench`, the real-time path: latency from an event becoming visible to delivered, one
event at a time.

Each event is pushed as Auth0's stream would (devtools/log_stream.py) onto the partner bus on
moto's server, routed by the template's rule to the real-time queue, and delivered by the real
handler, one event at a time (a batch of one message). The cost, and a burst, are
bench/realtime_burst.py's.
Latency is measured from the moment the simulator holds the event (visible) to the end of the
invocation that delivered it (both destinations and the checkpoint written). It leaves out what
AWS adds on the way: Auth0's push to EventBridge and EventBridge's own delivery to Lambda.
"""

from __future__ import annotations

import contextlib
import random
import statistics
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta

from bench.footprint import Row
from devtools.auth0_simulator import Auth0Simulator, RateLimit
from devtools.harness import LocalDeployment
from devtools.local_aws import LocalAws
from devtools.realtime_stack import RealtimePath
from devtools.traffic import generate_user_events


@contextlib.contextmanager
def started_stack(
    aws: LocalAws, users: Sequence[str], name: str, *, fifo: bool = False
) -> Iterator[RealtimePath]:
    """A stack with the real-time path on, every user's start fixed by a first scheduled run,
    against an Auth0 simulator that lives as long as the block."""
    with Auth0Simulator(rate_limit=RateLimit(burst=50, per_second=16)) as sim:
        stack = LocalDeployment(
            aws,
            sim,
            stack_name=f"{name}-{int(time.time())}",
            watched_user_ids=users,
            READ_MODE="per-user",
        )
        path = RealtimePath(stack, fifo=fifo)
        stack.invoke()  # the scheduled run fixes every user's start
        yield path


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def realtime_rows(aws: LocalAws, *, quick: bool) -> list[Row]:
    count = 40 if quick else 300
    users = [f"auth0|bench-rt-{i}" for i in range(5)]
    rng = random.Random(9)
    with started_stack(aws, users, "bench-rt") as path:
        sim = path.stack.simulator
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
    duration_s = statistics.median(durations)
    return [
        Row(
            f"Real time: visible → delivered, {len(latencies)} events pushed one at a time "
            "through moto's bus, the template's rule, the queue and the handler (Auth0's push, "
            "EventBridge's delivery and the queue's batching window not included)",
            f"p50 **{percentile(latencies, 0.5):.2f} s**, p95 **{percentile(latencies, 0.95):.2f} "
            f"s**, max {max(latencies):.2f} s; handler {duration_s * 1000:.0f} ms median",
            "p95 ≤ 5 s",
        ),
    ]
