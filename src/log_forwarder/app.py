"""The scheduled function's handler: one run over the watched users, its report and metrics.

Importing this module sets nothing up (no logging handler, no client): the runtime is built
from the environment on the first invocation (runtime.py, the one composition root) and reused
by warm ones, with its clients and the Auth0 token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools import single_metric
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from . import observability
from .config import Settings, check_user_id
from .exceptions import ConfigError, RunFailed
from .report import RunReport, findings_by_rule, metric_values
from .retry import Deadline
from .runtime import Runtime, build_runtime

__all__ = ["build_runtime", "forward", "lambda_handler", "reset_runtime", "watched_users"]

_runtime: Runtime | None = None
_runtime_clock: Callable[[], float] = time.time
_runtime_lock = threading.Lock()


def reset_runtime(*, clock: Callable[[], float] = time.time) -> None:
    """Forget the runtime earlier invocations built, as a new container starts without one.

    The next invocation builds a fresh one from the environment, with `clock` as its wall clock
    (the benchmark replays a day in seconds). For tests and local runs; Lambda never calls it.
    """
    global _runtime, _runtime_clock
    with _runtime_lock:
        _runtime = None
        _runtime_clock = clock


def _get_runtime() -> Runtime:
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            _runtime = build_runtime(Settings.from_env(), clock=_runtime_clock)
        return _runtime


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result: dict[str, Any] = _instrumented(event, context)
    return result


def _handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return forward(_get_runtime(), context)


def forward(runtime: Runtime, context: LambdaContext) -> dict[str, Any]:
    """One run over the runtime's watched users; publishes its metrics and returns its summary.

    Raises when some user failed, after every other user's progress is committed. The
    multi-tenant worker calls it once per tenant message.
    """
    margin_ms = runtime.settings.time_margin_ms
    if context.get_remaining_time_in_millis() <= margin_ms:
        # Otherwise every user would be deferred on every run, and nothing ever forwarded.
        raise ConfigError(
            f"TIME_MARGIN_SECONDS={margin_ms // 1000} must be below the function timeout "
            f"({context.get_remaining_time_in_millis() // 1000} s left at the start of this run)"
        )
    user_ids = watched_users(runtime)
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


def watched_users(runtime: Runtime) -> list[str]:
    """WATCHED_USER_IDS when set; else the watch list table and, from before it existed, the
    checkpoint items marked `watch = true`. A warning says what looks wrong (the metrics
    WatchedUsers and UnknownUsers count it)."""
    if runtime.settings.watched_user_ids:
        return list(runtime.settings.watched_user_ids)
    listed = runtime.watch_list.users() if runtime.watch_list is not None else []
    users = list(dict.fromkeys([*listed, *runtime.store.watched_users()]))
    if not users:
        observability.logger().warning(
            "No watched users: set WATCHED_USER_IDS, or add users with "
            "`auth0-log-forwarder watch add USER` (the WatchListTable)"
        )
    for user_id in users:
        try:
            check_user_id(user_id, "the watch list table")
        except ConfigError as error:
            # Still forwarded: Auth0 decides, and a 404 is reported as an unknown user.
            observability.logger().warning(str(error), extra={"user_id": user_id})
    return users


def _publish(report: RunReport) -> None:
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


_instrumented = observability.instrumented(
    _handle, correlation_id_path=correlation_paths.EVENT_BRIDGE
)
