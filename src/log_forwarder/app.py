"""The scheduled function's handler: one run over the watched users, its report and metrics.

Importing this module sets nothing up (no logging handler, no client): the runtime is built
from the environment on the first invocation (runtime.py, the one composition root) and reused
by warm ones, with its clients and the Auth0 token.

It imports nothing of the run either: the composition root and what it builds (httpx, the
settings, the sinks, the forwarder, Powertools) are imported by the first invocation, which
builds the runtime from them anyway, as observability.py already does for Powertools' logger and
metrics. The cold start does the same work; the module's import (which bench/sigma.py holds to
1.6× a bare `import boto3`) does only its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import observability

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext

    from .report import RunReport
    from .runtime import Runtime

__all__ = ["forward", "lambda_handler", "reset_runtime"]

# Powertools' `correlation_paths.EVENT_BRIDGE` (the event's `id`), spelled here: importing the
# constant imports Powertools' logger, metrics and tracer, which the first invocation does.
EVENT_BRIDGE_ID = "id"


def _build(clock: Callable[[], float]) -> Runtime:
    from .config import Settings
    from .runtime import build_runtime

    return build_runtime(Settings.from_env(), clock=clock)


_runtime = observability.Lazy(_build)


def reset_runtime(*, clock: Callable[[], float] = time.time) -> None:
    """Forget the runtime earlier invocations built, as a new container starts without one
    (observability.Lazy): the next invocation builds one from the environment, on `clock`."""
    _runtime.reset(clock=clock)


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result: dict[str, Any] = _instrumented(event, context)
    return result


def _handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return forward(_runtime.get(), context)


def forward(runtime: Runtime, context: LambdaContext) -> dict[str, Any]:
    """One run over the runtime's watched users; publishes its metrics and returns its summary.

    Raises when some user failed, after every other user's progress is committed. The
    multi-tenant worker calls it once per tenant message.
    """
    from .exceptions import ConfigError, RunFailed
    from .retry import Deadline
    from .watch_list import watched_users

    margin_ms = runtime.settings.time_margin_ms
    if context.get_remaining_time_in_millis() <= margin_ms:
        # Otherwise every user would be deferred on every run, and nothing ever forwarded.
        raise ConfigError(
            f"TIME_MARGIN_SECONDS={margin_ms // 1000} must be below the function timeout "
            f"({context.get_remaining_time_in_millis() // 1000} s left at the start of this run)"
        )
    user_ids = watched_users(runtime.settings, runtime.watch_list, runtime.store)
    # Read before the run (at most every RULE_PACKS_MAX_AGE_SECONDS): the report names the plan.
    packs = None
    if runtime.rule_packs is not None:
        left_ms = context.get_remaining_time_in_millis
        packs = runtime.rule_packs.active(Deadline(lambda: left_ms() - margin_ms))
    report = runtime.forwarder.run(user_ids, remaining_ms=context.get_remaining_time_in_millis)
    report.rule_packs = packs
    _publish(report)
    summary = report.as_dict()
    observability.logger().info(
        "Run finished", extra={"summary": {k: v for k, v in summary.items() if k != "users"}}
    )
    report.raise_failures("failed")
    if report.read is not None and report.read.error is not None:
        # The tenant stream stopped: its checkpoint could not be written.
        raise RunFailed(f"tenant stream stopped: {report.read.error}")
    return summary


def _publish(report: RunReport) -> None:
    from aws_lambda_powertools import single_metric
    from aws_lambda_powertools.metrics import MetricUnit

    from .report import findings_by_rule, metric_values

    metrics = observability.metrics()
    for name, unit, value in metric_values(report):
        metrics.add_metric(name=name, unit=MetricUnit(unit), value=value)
    for rule, count in sorted(findings_by_rule(report).items()):
        # A dimension of its own, so one metric carries every rule (the dashboard's search).
        with single_metric(
            name="Findings",
            unit=MetricUnit.Count,
            value=count,
            namespace=metrics.namespace,
            default_dimensions={"service": observability.service()},
        ) as finding:
            finding.add_dimension(name="rule", value=rule)


_instrumented = observability.instrumented(_handle, correlation_id_path=EVENT_BRIDGE_ID)
