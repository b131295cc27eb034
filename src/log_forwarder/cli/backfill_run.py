"""Running a backfill: slices of the forwarder's run until the range is done (see backfill.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import boto3
from botocore.config import Config
from rich.console import Console

from log_forwarder.checkpoint_store import DynamoCheckpointStore
from log_forwarder.config import Settings
from log_forwarder.exceptions import ConfigError
from log_forwarder.forwarder import Forwarder
from log_forwarder.outputs import output_policy
from log_forwarder.sinks import CloudWatchSink, S3Sink, Sink

from .backfill import (
    BackfillOutcome,
    BackfillRange,
    BackfillStore,
    BoundedSource,
    Redelivering,
    SkippingPresentInS3,
    backfill_settings,
    effective_end,
)
from .environment import Environment
from .progress import Counters, CountingSink, CountingSource, ProgressDisplay, Stopper, watch_thread

# As the function's clients (app.AWS_CLIENT_CONFIG, which is not imported: that would set up the
# function's JSON logging): botocore retries nothing, retry.py and the sinks own every retry.
AWS_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5, read_timeout=20
)
# Each slice is one forwarder run, as one invocation of the function is: its leases end with
# it, so a backfill that was killed is free to resume a slice later at the most.
SLICE_S = 240.0


def _secrets(settings: Settings) -> Any:
    return boto3.client("secretsmanager") if settings.output.pii_key_secret else None


def destinations(env: Environment, counters: Counters) -> list[Sink]:
    settings = env.settings()
    sinks: list[Sink] = []
    if settings.log_group_name:
        logs = env.aws_client("logs", AWS_CLIENT_CONFIG)
        sinks.append(Redelivering(CloudWatchSink(settings.log_group_name, client=logs)))
    if settings.s3_bucket:
        s3 = env.aws_client("s3", AWS_CLIENT_CONFIG)
        inner = S3Sink(settings.s3_bucket, settings.s3_prefix, client=s3)
        sinks.append(SkippingPresentInS3(inner, s3, settings.s3_bucket, settings.s3_prefix))
    # Only the first counts events (each event goes to every destination).
    return [CountingSink(sink, counters, events=i == 0) for i, sink in enumerate(sinks)]


def run_backfill(
    env: Environment, span: BackfillRange, console: Console, limit_s: float
) -> BackfillOutcome:
    settings = env.settings()
    store = DynamoCheckpointStore(
        settings.checkpoint_table, client=env.aws_client("dynamodb", AWS_CLIENT_CONFIG)
    )
    live = store.load([span.user_id]).get(span.user_id)
    if live is None:
        # The user's first live run would forward from START_FROM, and knows nothing of what a
        # backfill wrote before it: the two would deliver the same events.
        raise ConfigError(
            f"{span.user_id!r} has no live checkpoint yet: watch it (watch add) and let one run "
            "write its checkpoint (START_FROM=now forwards nothing older), then backfill"
        )
    end_ms = effective_end(span, live, int(time.time() * 1000))
    outcome = BackfillOutcome(span, end_ms)
    if end_ms < span.since_ms:
        outcome.done = True
        return outcome
    counters = Counters()
    span_ms = max(1, end_ms - span.since_ms)
    forwarder = Forwarder(
        settings=backfill_settings(settings, span),
        source=CountingSource(BoundedSource(env.auth0_client(settings), end_ms), counters),
        store=BackfillStore(store, span, end_ms, counters),
        sinks=destinations(env, counters),
        # Filters, pseudonyms and OCSF as the live function writes; no detections: the events
        # were judged when they were first forwarded, and a backfill must not report them again.
        output=replace(output_policy(settings, _secrets(settings)), detections=None),
    )
    stopper = Stopper(limit_s, settings.time_margin_ms)
    with stopper.on_interrupt(console), ProgressDisplay(console, "backfill", span_ms) as bar:
        _slices(forwarder, outcome, stopper, lambda: bar.update(counters))
        if outcome.done:
            counters.done = span_ms
        bar.update(counters, final=True)
    outcome.written, outcome.present = dict(counters.written), dict(counters.present)
    return outcome


def _slices(
    forwarder: Forwarder, outcome: BackfillOutcome, stopper: Stopper, tick: Callable[[], None]
) -> None:
    """Forwarder runs of a slice each, until the range is done, time is up, or a run stops."""
    margin_ms = stopper.margin_ms
    while not stopper.stopped and stopper.remaining_ms() > margin_ms:
        report = watch_thread(
            lambda: forwarder.run([outcome.span.user_id], remaining_ms=_slice(stopper)), tick
        )
        user: Any = report.users[0]
        outcome.forwarded += user.forwarded
        if user.error or user.bug:
            outcome.errors = [user.error or repr(user.bug)]
            return
        if user.busy:
            outcome.busy_until = "the end of its lease (a few minutes at most)"
            return
        if not user.backlog and not user.deferred:
            outcome.done = True
            return


def _slice(stopper: Stopper) -> Any:
    end = time.time() + SLICE_S
    return lambda: min(stopper.remaining_ms(), int((end - time.time()) * 1000))
