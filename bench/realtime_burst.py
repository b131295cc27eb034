"""`make bench`, the real-time path under a burst: one watched user at 50 events/s for 10 minutes
(30,000 events) and 4 others at 1/s, destinations answering in 30-100 ms, pushes handled up to 8
at once. What share the push path delivers, how fast, in what space, and at what cost.

The checkpoint table (and, for the queued shapes, the partner bus, the template's rule and the
queue) are on moto's server over HTTP; the destinations are in-memory stand-ins that take 30-100
ms to answer, so the figures measure the forwarder's protocol, not moto's speed. The real-time
handler runs in-process with its runtime built by `runtime.build_runtime`, as in Lambda.

Shapes (`--shape`):
- `direct`: EventBridge invokes the function with one event per invocation, up to 8 at once (the
  shape of #16);
- `standard`: the rule's target is a standard SQS queue read by an event source mapping with a
  batching window (BATCH_WINDOW_S) and up to 8 concurrent batches;
- `fifo`: a FIFO queue, message group = the user id (the most EventBridge could give: its SQS
  target takes one fixed group id), 10 messages a batch, no window (FIFO has none).

Run alone: `python -m bench.realtime_burst --scale 0.1` (one minute) or at full scale.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import math
import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from queue import Empty, Queue
from typing import Any

from bench.footprint import Row
from bench.realtime import percentile, started_stack
from devtools.harness import FakeLambdaContext, _environment
from devtools.local_aws import LocalAws, load_template
from devtools.log_stream import eventbridge_event
from devtools.realtime_stack import RealtimePath, sqs_event
from log_forwarder.records import Delivery, DeliveryReport
from log_forwarder.retry import Deadline
from log_forwarder.sinks import Sink
from log_forwarder.sinks.batching import SHARED_FOLDER
from log_forwarder.sinks.objects import ObjectSink

HOT_RATE = 50.0  # events/s of the user under attack
QUIET_RATE = 1.0  # events/s of each of the others
QUIET_USERS = 4
DURATION_S = 600.0
CONCURRENCY = 8
SINK_S = (0.030, 0.100)

# Prices (us-east-1, December 2026 list prices), as bench/realtime.py.
LAMBDA_REQUEST = 0.20 / 1e6
LAMBDA_GB_S = 0.0000133334
MEMORY_GB = 0.25
EVENTBRIDGE_EVENT = 1.00 / 1e6
SQS_REQUEST = 0.40 / 1e6
# DynamoDB on demand: halved in November 2024 (from $1.25 and $0.25), as third-party pages
# report it (airbyte.com's DynamoDB pricing guide); AWS's own pricing page is rendered by script
# and its figure could not be read here: docs/realtime.md says so.
DYNAMODB_WRU = 0.625 / 1e6
DYNAMODB_RRU = 0.125 / 1e6
S3_PUT = 0.005 / 1000

# The real-time function's timeout, as the template sets it: what each invocation has.
_FUNCTION = load_template()["Resources"]["RealtimeFunction"]["Properties"]
FUNCTION_TIMEOUT_MS = int(_FUNCTION["Timeout"]) * 1000

# Measured with `--shape direct --scale 1` at 096dcca, the code before the queued path (#25).
TODAY = {
    "shape": "direct",
    "pushed_share": 0.154,
    "p50_s": 0.19,
    "p95_s": 11.08,
    "largest_item_bytes": 31_448,
    "wru_per_1000": 6_761.0,
    "s3_objects_per_1000": 154.0,
    # $12.11 at the pre-November-2024 DynamoDB prices; its $9.84 of DynamoDB halved.
    "cost_per_million": 7.19,
}


class DelayedSink:
    """A destination that answers in 30-100 ms and remembers when it took each event."""

    def __init__(self, name: str, rng: random.Random) -> None:
        self.name = name
        self._rng = rng
        self._lock = threading.Lock()
        self.deliveries = 0
        self.accepted_at: dict[str, float] = {}
        self.copies: dict[str, int] = {}

    def deliver(self, delivery: Delivery) -> DeliveryReport:
        with self._lock:
            delay = self._rng.uniform(*SINK_S)
        time.sleep(delay)
        now = time.monotonic()
        accepted = 0
        with self._lock:
            self.deliveries += 1
            for line in delivery.lines:
                if line.log_id is None:
                    continue
                if delivery.redelivery and line.log_id in self.copies:
                    continue
                self.copies[line.log_id] = self.copies.get(line.log_id, 0) + 1
                self.accepted_at.setdefault(line.log_id, now)
                accepted += 1
        return DeliveryReport(self.name, accepted=accepted)


class DelayedObjects:
    """S3 as the object sink sees it (sinks/objects.py's seam): each PUT answering in 30-100 ms,
    a key written once; it counts the PUTs and remembers when it took each event. The real
    ObjectSink runs over it, so a push's users share one object as in the function."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._lock = threading.Lock()
        self._objects: dict[str, bytes] = {}
        self.deliveries = 0  # PUTs that wrote an object
        self.accepted_at: dict[str, float] = {}
        self.copies: dict[str, int] = {}

    def put_if_absent(self, key: str, body: bytes, deadline: Deadline) -> bool:
        with self._lock:
            delay = self._rng.uniform(*SINK_S)
        time.sleep(delay)
        now = time.monotonic()
        lines = gzip.decompress(body).decode("utf-8").splitlines()
        with self._lock:
            if key in self._objects:
                return False
            self._objects[key] = body
            self.deliveries += 1
            for line in lines:
                log_id = json.loads(line).get("log_id")
                if isinstance(log_id, str):
                    self.copies[log_id] = self.copies.get(log_id, 0) + 1
                    self.accepted_at.setdefault(log_id, now)
        return True

    def get(self, key: str, deadline: Deadline) -> bytes:
        with self._lock:
            return self._objects[key]

    def stored_keys(self) -> list[str]:
        with self._lock:
            return list(self._objects)


@dataclass
class DynamoMeter:
    """DynamoDB capacity the functions used, read from their requests (moto reports none)."""

    write_units: int = 0
    read_units: float = 0.0
    largest_item: int = 0
    writes: int = 0
    # Write units by what was written: a user's checkpoint, the shared detection item
    # (`#detections`), another "#" item, or a table's own items (the pushed-events table's).
    units_by_item: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _count(self, params: dict[str, Any], item: dict[str, Any], size: int) -> None:
        units = max(1, math.ceil(size / 1024))
        with self.lock:
            self.writes += 1
            self.write_units += units
            self.largest_item = max(self.largest_item, size)
            self.units_by_item[_written(item)] += units

    def attach(self, client: Any) -> Any:
        client.meta.events.register("provide-client-params.dynamodb.*", self._params)
        client.meta.events.register("after-call.dynamodb.*", self._answer)
        return client

    def _params(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        name = model.name
        if name in ("UpdateItem", "PutItem"):
            self._count(params, params.get("Key") or params.get("Item", {}), _item_bytes(params))
        elif name == "BatchWriteItem":
            for requests in params.get("RequestItems", {}).values():
                for request in requests:
                    put = request.get("PutRequest")
                    size = _attributes_bytes(put["Item"]) if put else 100
                    item = put["Item"] if put else request.get("DeleteRequest", {}).get("Key", {})
                    self._count(params, item, size)

    def _answer(self, http_response: Any, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        name = model.name
        units = 0.0
        if name == "BatchGetItem":
            for items in parsed.get("Responses", {}).values():
                units += sum(max(1, math.ceil(_attributes_bytes(i) / 4096)) for i in items)
        elif name == "Query":
            size = sum(_attributes_bytes(i) for i in parsed.get("Items", []))
            units += max(1, math.ceil(size / 4096))
        elif name == "GetItem":
            units += max(1, math.ceil(_attributes_bytes(parsed.get("Item", {})) / 4096))
        with self.lock:
            self.read_units += units


def _written(item: dict[str, Any]) -> str:
    key = item.get("user_id", {}).get("S", "")
    if "batch" in item:  # the pushed-events table's sort key
        return "pushed-events items"
    if key == "#detections":
        return "shared detection item"
    return "other # items" if key.startswith("#") else "checkpoints"


def _attributes_bytes(item: dict[str, Any]) -> int:
    size = 0
    for name, value in item.items():
        size += len(name) + _value_bytes(value)
    return size


def _value_bytes(value: dict[str, Any]) -> int:
    ((kind, raw),) = value.items()
    if kind == "B":
        return len(raw)
    if kind in ("SS", "NS", "BS"):
        return sum(len(v) for v in raw)
    if kind == "L":
        return sum(_value_bytes(v) for v in raw) + 3
    if kind == "M":
        return _attributes_bytes(raw) + 3
    return len(str(raw))


def _item_bytes(params: dict[str, Any]) -> int:
    """The item an UpdateItem (SET of every attribute the forwarder keeps, REMOVE of the
    summary's cleared ones: checkpoint_store._update_expression) or PutItem leaves, what
    DynamoDB bills the write by. The names an expression removes and the values only its
    condition reads (`:expected`) are not in the item: counting them (before) made a quiet
    user's 0.97 KB checkpoint a 1.1 KB one, two write units where DynamoDB bills one."""
    if "Item" in params:
        return _attributes_bytes(params["Item"])
    names = params.get("ExpressionAttributeNames", {})
    values = params.get("ExpressionAttributeValues", {})
    size = _attributes_bytes(params.get("Key", {}))
    expression = params.get("UpdateExpression", "")
    if not expression.startswith("SET "):  # a read's ADD to a pushed batch: all it names
        return size + sum(map(len, names.values())) + sum(map(_value_bytes, values.values()))
    for assignment in expression.split(" REMOVE ")[0].removeprefix("SET ").split(","):
        name, value = (part.strip() for part in assignment.split("="))
        size += len(names.get(name, name)) + _value_bytes(values[value])
    return size


@dataclass
class Burst:
    """What one burst measured."""

    shape: str
    events: int
    pushed: int = 0
    left: int = 0
    retried: int = 0  # messages handed back to the queue (delivered by a later batch)
    duplicates: int = 0
    invocations: int = 0
    invocation_s: float = 0.0
    sqs_requests: int = 0
    latencies: list[float] = field(default_factory=list)
    meter: DynamoMeter = field(default_factory=DynamoMeter)
    s3_objects: int = 0
    s3_shared: int = 0  # of them, objects a push's users shared (the others: a user's own)
    cloudwatch_puts: int = 0
    repeated: int = 0  # events a destination holds twice (must be 0)
    errors: list[str] = field(default_factory=list)

    def per_1000(self, value: float) -> float:
        return 1000 * value / self.events

    def cost_per_million(self) -> tuple[float, dict[str, float]]:
        parts = {
            "Lambda requests": self.invocations * LAMBDA_REQUEST,
            "Lambda duration": self.invocation_s * MEMORY_GB * LAMBDA_GB_S,
            "EventBridge": self.events * EVENTBRIDGE_EVENT,
            "SQS": self.sqs_requests * SQS_REQUEST,
            "DynamoDB": self.meter.write_units * DYNAMODB_WRU
            + self.meter.read_units * DYNAMODB_RRU,
            "S3 PUT": self.s3_objects * S3_PUT,
        }
        per_million = {name: value * 1e6 / self.events for name, value in parts.items()}
        return sum(per_million.values()), per_million

    def figures(self) -> dict[str, Any]:
        total, _ = self.cost_per_million()
        return {
            "shape": self.shape,
            "pushed_share": self.pushed / self.events,
            "p50_s": percentile(self.latencies, 0.5),
            "p95_s": percentile(self.latencies, 0.95),
            "largest_item_bytes": self.meter.largest_item,
            "wru_per_1000": self.per_1000(self.meter.write_units),
            "s3_objects_per_1000": self.per_1000(self.s3_objects),
            "cost_per_million": total,
            "write_units_per_1000_by_item": {
                name: round(self.per_1000(units), 1)
                for name, units in sorted(self.meter.units_by_item.items())
            },
        }


def arrivals(
    users: Sequence[str], duration_s: float, rng: random.Random
) -> list[tuple[float, str]]:
    """(offset in seconds, user) of every event: the first user at HOT_RATE, the rest at
    QUIET_RATE, evenly spread with a little jitter."""
    due: list[tuple[float, str]] = []
    for index, user in enumerate(users):
        rate = HOT_RATE if index == 0 else QUIET_RATE
        count = int(duration_s * rate)
        due += [((n + rng.random()) / rate, user) for n in range(count)]
    return sorted(due)


def _event(user: str, n: int) -> dict[str, Any]:
    now = datetime.now(UTC)
    return {
        # Auth0's log ids grow with time: a date-led id, unique per event.
        "log_id": f"9{int(now.timestamp() * 1e6):020d}{n:08d}{abs(hash(user)) % 10**8:08d}",
        "date": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "type": "f" if n % 3 else "s",
        "description": "Wrong email or password.",
        "client_id": "bench",
        "ip": f"203.0.113.{n % 250 + 1}",
        "user_agent": "Mozilla/5.0 (bench)",
        "user_id": user,
        "user_name": f"{user.rsplit('|', 1)[-1]}@example.com",
        "connection": "Username-Password-Authentication",
    }


def run_burst(aws: LocalAws, *, shape: str, scale: float, seed: int = 25) -> Burst:
    rng = random.Random(seed)
    users = [f"auth0|burst-{i}" for i in range(QUIET_USERS + 1)]
    due = arrivals(users, DURATION_S * scale, rng)
    burst = Burst(shape, events=len(due))
    cloudwatch, objects = DelayedSink("cloudwatch", random.Random(seed + 1)), DelayedObjects(rng)
    sinks: list[Sink] = [cloudwatch, ObjectSink(objects, "auth0-logs/", "s3")]
    shape_stack = started_stack(aws, users, f"bench-burst-{shape}", fifo=shape == "fifo")
    with shape_stack as path, _environment(path.env), _quiet():
        handler = _handler(aws, sinks, burst.meter)
        visible: dict[str, float] = {}
        feed: Queue[dict[str, Any] | None] = Queue()
        done = threading.Event()
        if shape == "direct":
            workers = [
                threading.Thread(target=_direct_worker, args=(handler, feed, burst))
                for _ in range(CONCURRENCY)
            ]
        else:
            mapping = path.mapping
            batch = 10 if shape == "fifo" else int(mapping["BatchSize"])
            window = 0.0 if shape == "fifo" else float(mapping["MaximumBatchingWindowInSeconds"])
            concurrency = int(mapping["ScalingConfig"]["MaximumConcurrency"])
            workers = [
                threading.Thread(
                    target=_queue_worker, args=(handler, path, batch, window, done, burst)
                )
                for _ in range(min(concurrency, CONCURRENCY))
            ]
        for worker in workers:
            worker.start()
        emitter = path.emitter()
        started = time.monotonic()
        for n, (offset, user) in enumerate(due):
            wait = started + offset - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            event = _event(user, n)
            visible[event["log_id"]] = time.monotonic()
            if shape == "direct":
                feed.put(eventbridge_event(event, path.source))
            elif shape == "fifo":
                # The best FIFO could do: a group per user (a rule's target has one group).
                body = json.dumps(eventbridge_event(event, path.source))
                path.sqs.send_message(
                    QueueUrl=path.queue_url, MessageBody=body, MessageGroupId=user
                )
            else:
                emitter.emit([event])  # the bus, the template's rule, the queue
            burst.sqs_requests += shape != "direct"
        for _ in workers:
            feed.put(None)
        _drained(path, shape, time.monotonic() + 180)
        done.set()
        for worker in workers:
            worker.join()
    burst.latencies = [at - visible[i] for i, at in objects.accepted_at.items() if i in visible]
    burst.s3_objects = objects.deliveries
    burst.s3_shared = sum(f"/{SHARED_FOLDER}/" in key for key in objects.stored_keys())
    burst.cloudwatch_puts = cloudwatch.deliveries
    burst.repeated = sum(c > 1 for meter in (cloudwatch, objects) for c in meter.copies.values())
    return burst


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The handlers' JSON logs and EMF lines are not the bench's output."""
    from log_forwarder import observability

    with open(os.devnull, "w") as devnull:
        log_handler = observability.logger().registered_handler
        previous = log_handler.setStream(devnull)
        try:
            with contextlib.redirect_stdout(devnull):
                yield
        finally:
            log_handler.setStream(previous)


def _handler(
    aws: LocalAws, sinks: list[Sink], meter: DynamoMeter
) -> Callable[[dict[str, Any], Any], Any]:
    """The real-time handler, its runtime built with the delayed destinations and a metered
    DynamoDB client."""
    import boto3

    from log_forwarder import realtime
    from log_forwarder.config import Settings
    from log_forwarder.runtime import Overrides, build_runtime

    session = boto3.session.Session()

    def clients(service: str, config: Any) -> Any:
        client = session.client(service, config=config)  # type: ignore[call-overload]
        return meter.attach(client) if service == "dynamodb" else client

    runtime = build_runtime(
        Settings.from_env(),
        overrides=Overrides(sinks=lambda _real: list(sinks), clients=clients),
    )
    realtime.reset_runtime(runtime=runtime)
    return realtime.lambda_handler


def _direct_worker(
    handler: Callable[[dict[str, Any], Any], Any],
    feed: Queue[dict[str, Any] | None],
    burst: Burst,
) -> None:
    while True:
        try:
            event = feed.get(timeout=1)
        except Empty:
            continue
        if event is None:
            return
        _invoke(handler, event, burst)


def _queue_worker(
    handler: Callable[[dict[str, Any], Any], Any],
    path: RealtimePath,
    batch: int,
    window_s: float,
    done: threading.Event,
    burst: Burst,
) -> None:
    """One of the event source's concurrent batches: gather, invoke, delete what succeeded."""
    while not done.is_set():
        messages = path.receive(batch, window_s=window_s)
        with burst.meter.lock:
            burst.sqs_requests += max(1, math.ceil(len(messages) / 10))
        if not messages:
            time.sleep(0.05)
            continue
        summary = _invoke(handler, sqs_event(messages), burst)
        path.settle(messages, summary)
        with burst.meter.lock:
            burst.sqs_requests += math.ceil(len(messages) / 10)


def _drained(path: RealtimePath, shape: str, until: float) -> None:
    """Until the queue holds nothing, visible or in flight (or `until`)."""
    if shape == "direct":
        return
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    while time.monotonic() < until:
        counts = path.sqs.get_queue_attributes(QueueUrl=path.queue_url, AttributeNames=names)
        if not any(int(v) for v in counts["Attributes"].values()):
            return
        time.sleep(0.2)


def _invoke(
    handler: Callable[[dict[str, Any], Any], Any], event: dict[str, Any], burst: Burst
) -> Any:
    context = FakeLambdaContext(remaining_ms=FUNCTION_TIMEOUT_MS, function_name="RealtimeFunction")
    started = time.monotonic()
    try:
        summary = handler(event, context)
    except Exception as error:  # a failed invocation: its events are left to the reads
        summary = None
        burst.errors.append(f"{type(error).__name__}: {error}"[:200])
    took = time.monotonic() - started
    with burst.meter.lock:
        burst.invocations += 1
        # Lambda bills each invocation rounded up to the millisecond.
        burst.invocation_s += math.ceil(took * 1000) / 1000
        if summary is not None:
            burst.pushed += summary["RealtimeEvents"]
            burst.left += summary["RealtimeLeftToReads"]
            burst.duplicates += summary["RealtimeDuplicates"]
            burst.retried += len(summary.get("batchItemFailures", ()))
        else:
            burst.left += len(event.get("Records") or [event])
    return summary


def rows(bursts: Sequence[Burst]) -> list[Row]:
    result: list[Row] = []
    for burst in bursts:
        figures = burst.figures()
        total, parts = burst.cost_per_million()
        spent = ", ".join(f"{name} ${value:.2f}" for name, value in parts.items())
        result.append(
            Row(
                f"Real time under a burst ({burst.shape}): {burst.events:,} events, one user at "
                f"{HOT_RATE:g}/s and {QUIET_USERS} at {QUIET_RATE:g}/s, destinations 30-100 ms, "
                f"up to {CONCURRENCY} at once",
                f"push path **{figures['pushed_share']:.1%}** ({burst.pushed:,} pushed, "
                f"{burst.left:,} left to reads, {burst.retried:,} retried); visible → delivered p50 "
                f"{figures['p50_s']:.2f} s, p95 **{figures['p95_s']:.2f} s**; largest checkpoint "
                f"item **{figures['largest_item_bytes']:,} B**; per 1,000 events "
                f"{figures['wru_per_1000']:,.0f} write units, "
                f"{figures['s3_objects_per_1000']:,.0f} S3 objects ({burst.s3_shared:,} of the "
                f"{burst.s3_objects:,} shared by a push's users, the rest a user's own: a busy "
                f"user's retry, a push of one user); **${total:.2f}** per million "
                f"({spent}); write units per 1,000 events by item: "
                f"{_by_item(figures)}; {burst.invocations:,} invocations; "
                f"repeated {burst.repeated}",
                "≥ 99 %, p95 ≤ 5 s, ≤ 16 KB, ≤ $2 per million",
            )
        )
    return result


def closing_note(bursts: Sequence[Burst]) -> str:
    lines = ["", "Before (#16's direct shape, measured by this script at 096dcca) and now:"]
    keys = list(TODAY)
    for key in keys:
        now = ", ".join(_shown(b.figures()[key]) for b in bursts)
        lines.append(f"  {key:22} before {_shown(TODAY[key]):>12}   now {now}")
    return "\n".join(lines)


def _by_item(figures: dict[str, Any]) -> str:
    parts = figures["write_units_per_1000_by_item"].items()
    return ", ".join(f"{name} {units:,.0f}" for name, units in parts) or "none"


def _shown(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def burst_rows(aws: LocalAws, *, quick: bool) -> tuple[list[Row], str]:
    """`make bench`'s burst row (the deployed shape, a standard queue) and its closing note."""
    burst = run_burst(aws, shape="standard", scale=0.05 if quick else 1.0)
    return rows([burst]), closing_note([burst])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--scale", type=float, default=1.0, help="share of the 10 minutes")
    parser.add_argument("--shape", action="append", choices=("direct", "standard", "fifo"))
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args(argv)
    bursts = []
    with LocalAws() as aws:
        for shape in args.shape or ["standard"]:
            print(f"running: burst, {shape} …", file=sys.stderr)
            bursts.append(run_burst(aws, shape=shape, scale=args.scale))
    print("\n| measurement | result | target |\n|---|---|---|")
    for row in rows(bursts):
        print(f"| {row.measure} | {row.figure} | {row.target} |")
    print(closing_note(bursts))
    if args.json:
        print(json.dumps([b.figures() for b in bursts]))
    for burst in bursts:
        for error in sorted(set(burst.errors))[:5]:
            print(f"  {burst.shape} error: {error}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
