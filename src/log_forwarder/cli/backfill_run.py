"""Running a backfill: slices of the forwarder's run until the range is done (see backfill.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from rich.console import Console

from log_forwarder.aws_errors import AWS_CLIENT_CONFIG
from log_forwarder.checkpoint_store import DynamoCheckpointStore
from log_forwarder.exceptions import ConfigError
from log_forwarder.forwarder import Forwarder
from log_forwarder.runtime import Overrides, build_runtime
from log_forwarder.sinks import Sink
from log_forwarder.sinks.registry import BY_NAME, Redelivery

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
from .progress import (
    Counters,
    CountingSink,
    CountingSource,
    ProgressDisplay,
    Stopper,
    check_time_limit,
    watch_thread,
)

# Each slice is one forwarder run, as one invocation of the function is: its leases end with
# it, so a backfill that was killed is free to resume a slice later at the most.
SLICE_S = 240.0


def left_out(destinations: tuple[str, ...]) -> list[str]:
    """The chosen destinations a backfill leaves out: those that cannot be read back (the
    registry: they may repeat), where the range would be delivered again over what they hold."""
    return [name for name in destinations if BY_NAME[name].redelivery is Redelivery.MAY_REPEAT]


def wrapped(sinks: list[Sink], env: Environment, counters: Counters) -> list[Sink]:
    """The function's destinations, told what a backfill needs: each that skips what it holds
    is told every batch may be there in part (CloudWatch then reads the stream before writing),
    S3 skips what a live run wrote (its own redelivery compares only the batch's keys, and a
    live run wrote the range under other batch ids); the rest (left_out, and the findings: a
    backfill raises none) are left out. Only the first counts events (each event goes to every
    destination)."""
    settings = env.settings()
    backfilling: list[Sink] = []
    for sink in sinks:
        destination = BY_NAME.get(sink.name)
        if destination is None or destination.redelivery is not Redelivery.SKIPS_HELD:
            continue
        if destination.name == "s3":
            s3 = env.aws_client("s3", AWS_CLIENT_CONFIG)
            bucket, prefix = settings.setting("S3_BUCKET"), settings.setting("S3_PREFIX")
            backfilling.append(SkippingPresentInS3(sink, s3, bucket or "", prefix or ""))
        else:
            backfilling.append(Redelivering(sink))
    return [CountingSink(sink, counters, events=i == 0) for i, sink in enumerate(backfilling)]


def run_backfill(
    env: Environment, span: BackfillRange, console: Console, limit_s: float
) -> BackfillOutcome:
    settings = env.settings()
    check_time_limit(limit_s, settings.time_margin_ms)
    if settings.destinations and not set(settings.destinations) - set(
        left_out(settings.destinations)
    ):
        # Nothing would be written, and the range would be recorded as backfilled.
        raise ConfigError(
            f"DESTINATIONS={','.join(settings.destinations)} holds no destination a backfill can "
            "write: each may repeat (it cannot be read back, so the backfill could not tell what "
            "it holds). Backfill into cloudwatch or s3 (DESTINATIONS for this command only)"
        )
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
    now_ms = int(time.time() * 1000)
    end_ms = effective_end(span, live, now_ms)
    skipped = left_out(settings.destinations)
    outcome = BackfillOutcome(span, end_ms, left_out=skipped)
    outcome.retained_from_ms = now_ms - settings.log_retention_ms
    outcome.retention_hours = settings.log_retention_ms // 3_600_000
    outcome.compared = [name for name in settings.destinations if name not in skipped]
    if end_ms < span.since_ms:
        outcome.done = True
        return outcome
    counters = Counters()
    span_ms = max(1, end_ms - span.since_ms)
    own_store = BackfillStore(store, span, end_ms, counters)
    runtime = build_runtime(
        backfill_settings(settings, span),
        overrides=Overrides(
            store=own_store,
            sinks=lambda sinks: wrapped(sinks, env, counters),
            source=lambda auth0: CountingSource(BoundedSource(auth0, end_ms), counters),
            # Filters, pseudonyms and OCSF as the live function writes; no detections: the
            # events were judged when they were first forwarded, and a backfill must not
            # report them again.
            output=lambda output: replace(output, detections=None),
            clients=env.aws_client,
            # Its item is not the user's checkpoint: the live runs look the user up.
            look_up_users=False,
        ),
    )
    forwarder = runtime.forwarder
    stopper = Stopper(limit_s, settings.time_margin_ms)
    with stopper.on_interrupt(console), ProgressDisplay(console, "backfill", span_ms) as bar:
        _slices(forwarder, outcome, stopper, lambda: bar.update(counters))
        if outcome.done:
            counters.done = span_ms
        bar.update(counters, final=True)
    outcome.written, outcome.present = dict(counters.written), dict(counters.present)
    outcome.again, outcome.resumed_from_ms = own_store.again, own_store.resumed_from_ms
    outcome.interrupted = stopper.stopped and not outcome.done
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
        outcome.fetched += user.fetched
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
