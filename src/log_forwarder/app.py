"""Lambda entry point: wires configuration, clients and the forwarder together, and reports.

Everything expensive (settings, boto3 clients, the Auth0 token) is built once per container and
reused by warm invocations.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
import httpx
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from .auth0_client import Auth0Client
from .checkpoint_store import DynamoCheckpointStore
from .config import Settings
from .credentials import credentials_source
from .exceptions import ConfigError, RunFailed
from .forwarder import Forwarder
from .pacing import Pacer
from .report import RunReport, metric_values
from .sinks import CloudWatchSink, S3Sink, Sink

SERVICE = "auth0-user-log-forwarder"
logger = Logger(service=os.getenv("POWERTOOLS_SERVICE_NAME") or SERVICE)
metrics = Metrics(namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE") or "Auth0LogForwarder")
# The package's module loggers write through the same JSON formatter; library loggers (botocore,
# httpx) stay out, they would log every request.
copy_config_to_registered_loggers(
    source_logger=logger,
    include={
        name
        for name in logging.root.manager.loggerDict
        if name.startswith(__package__ or "log_forwarder")
    },
)

# botocore retries nothing on its own: every retry goes through retry.py, which knows the
# deadline and, for PutLogEvents, checks what a lost answer may already have written.
AWS_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1},
    connect_timeout=5,
    read_timeout=20,
)
# Reading the secret is idempotent and outside any delivery: botocore may retry it.
SECRETS_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=5, read_timeout=10
)


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    forwarder: Forwarder
    store: DynamoCheckpointStore


_runtime: Runtime | None = None
_runtime_clock: Callable[[], float] = time.time
_runtime_lock = threading.Lock()


def build_runtime(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    session: boto3.session.Session | None = None,
    http: httpx.Client | None = None,
) -> Runtime:
    """Everything an invocation needs, built once per container. Tests and local runs may pass
    their own clock, boto3 session and HTTP client."""
    session = session or boto3.session.Session()
    store = DynamoCheckpointStore(
        settings.checkpoint_table, client=session.client("dynamodb", config=AWS_CLIENT_CONFIG)
    )
    sinks: list[Sink] = []
    if settings.log_group_name:
        logs = session.client("logs", config=AWS_CLIENT_CONFIG)
        sinks.append(CloudWatchSink(settings.log_group_name, client=logs))
    if settings.s3_bucket:
        s3 = session.client("s3", config=AWS_CLIENT_CONFIG)
        sinks.append(S3Sink(settings.s3_bucket, settings.s3_prefix, client=s3))
    secrets = (
        session.client("secretsmanager", config=SECRETS_CLIENT_CONFIG)
        if settings.credentials_secret
        else None
    )
    client = Auth0Client(
        domain=settings.auth0_domain,
        base_url=settings.auth0_base_url,
        credentials=credentials_source(settings, secrets),
        pacer=Pacer(share=settings.rate_limit_share, per_second=settings.rate_limit_per_second),
        http=http,
    )
    forwarder = Forwarder(settings=settings, source=client, store=store, sinks=sinks, clock=clock)
    return Runtime(settings=settings, forwarder=forwarder, store=store)


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


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    runtime = _get_runtime()
    margin_ms = runtime.settings.time_margin_ms
    if context.get_remaining_time_in_millis() <= margin_ms:
        # Otherwise every user would be deferred on every run, and nothing ever forwarded.
        raise ConfigError(
            f"TIME_MARGIN_SECONDS={margin_ms // 1000} must be below the function timeout "
            f"({context.get_remaining_time_in_millis() // 1000} s left at the start of this run)"
        )
    user_ids = list(runtime.settings.watched_user_ids or runtime.store.watched_users())
    if not user_ids:
        logger.warning("No watched users: set WATCHED_USER_IDS or mark table items with watch=true")
    report = runtime.forwarder.run(user_ids, remaining_ms=context.get_remaining_time_in_millis)
    _publish(report)
    summary = report.as_dict()
    logger.info(
        "Run finished", extra={"summary": {k: v for k, v in summary.items() if k != "users"}}
    )
    if report.bugs:
        # Every user's progress is committed and the metrics are out; now fail loudly.
        raise report.bugs[0]
    if report.failed:
        # Fail the invocation so the Errors alarm and the on-failure destination see it; every
        # other user's progress is already committed.
        raise RunFailed(
            f"{len(report.failed)} of {len(report.users)} users failed: "
            + "; ".join(f"{u.user_id}: {u.error}" for u in report.failed[:5])
        )
    if report.read is not None and report.read.error is not None:
        # The tenant stream stopped: its checkpoint could not be written.
        raise RunFailed(f"tenant stream stopped: {report.read.error}")
    return summary


def _publish(report: RunReport) -> None:
    for name, unit, value in metric_values(report):
        metrics.add_metric(name=name, unit=MetricUnit(unit), value=value)
