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
from aws_lambda_powertools import Logger, Metrics, single_metric
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config

from .auth0_client import Auth0Client
from .checkpoint_store import DynamoCheckpointStore
from .config import Settings, check_user_id
from .credentials import credentials_source
from .exceptions import ConfigError, RunFailed
from .forwarder import Forwarder
from .outputs import output_policy
from .pacing import Pacer
from .report import RunReport, findings_by_rule, metric_values
from .retry import AWS_CONNECT_TIMEOUT_S, AWS_READ_TIMEOUT_S
from .sinks import CloudWatchSink, EventBridgeSink, PrefixedSink, S3Sink, Sink
from .watch_list import DynamoWatchList

SERVICE = "auth0-user-log-forwarder"
logger = Logger(service=os.getenv("POWERTOOLS_SERVICE_NAME") or SERVICE)
# The service (the metrics' one dimension, which the alarms and the dashboard name) is given
# rather than left to Powertools' own reading of the variable, like the logger's: the same
# value, and no module imported before the environment is set can end up without it.
metrics = Metrics(
    namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE") or "Auth0LogForwarder",
    service=os.getenv("POWERTOOLS_SERVICE_NAME") or SERVICE,
)
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
    connect_timeout=AWS_CONNECT_TIMEOUT_S,
    read_timeout=AWS_READ_TIMEOUT_S,
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
    watch_list: DynamoWatchList | None = None


_runtime: Runtime | None = None
_runtime_clock: Callable[[], float] = time.time
_runtime_lock = threading.Lock()


def build_runtime(
    settings: Settings,
    *,
    clock: Callable[[], float] = time.time,
    session: boto3.session.Session | None = None,
    http: httpx.Client | None = None,
    key_prefix: str = "",
) -> Runtime:
    """Everything an invocation needs, built once per container. Tests and local runs may pass
    their own clock, boto3 session and HTTP client.

    `key_prefix` (multi-tenant mode: the tenant's `<domain>#`) starts every checkpoint key,
    stream name and S3 user segment, so tenants sharing the table and destinations stay apart.
    """
    session = session or boto3.session.Session()
    dynamodb = session.client("dynamodb", config=AWS_CLIENT_CONFIG)
    store = DynamoCheckpointStore(settings.checkpoint_table, client=dynamodb, key_prefix=key_prefix)
    # The watch list table names users of one tenant: with many tenants, each one's watch list
    # is in the tenants document (or its prefixed checkpoint items).
    watch_list = (
        DynamoWatchList(settings.watch_table, dynamodb)
        if settings.watch_table and not key_prefix
        else None
    )
    sinks: list[Sink] = []
    if settings.log_group_name:
        logs = session.client("logs", config=AWS_CLIENT_CONFIG)
        sinks.append(CloudWatchSink(settings.log_group_name, client=logs))
    if settings.s3_bucket:
        s3 = session.client("s3", config=AWS_CLIENT_CONFIG)
        sinks.append(S3Sink(settings.s3_bucket, settings.s3_prefix, client=s3))
    output = settings.output
    if output.detections is not None and output.findings_event_bus:
        events = session.client("events", config=AWS_CLIENT_CONFIG)
        # Last: a finding goes out once the destinations hold the events it names.
        sinks.append(EventBridgeSink(output.findings_event_bus, client=events))
    secrets = (
        session.client("secretsmanager", config=SECRETS_CLIENT_CONFIG)
        if settings.credentials_secret or output.pii_key_secret
        else None
    )
    client = Auth0Client(
        domain=settings.auth0_domain,
        base_url=settings.auth0_base_url,
        credentials=credentials_source(settings, secrets),
        # One pacer per container: what it learns of the tenant's limit serves every warm run.
        pacer=Pacer(share=settings.rate_limit_share, per_second=settings.rate_limit_per_second),
        http=http,
    )
    if key_prefix:
        sinks = [PrefixedSink(sink, key_prefix) for sink in sinks]
    forwarder = Forwarder(
        settings=settings,
        source=client,
        store=store,
        sinks=sinks,
        clock=clock,
        output=output_policy(settings, secrets),
    )
    return Runtime(settings=settings, forwarder=forwarder, store=store, watch_list=watch_list)


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


def watched_users(runtime: Runtime) -> list[str]:
    """WATCHED_USER_IDS when set; else the watch list table and, from before it existed, the
    checkpoint items marked `watch = true`. A warning says what looks wrong (the metrics
    WatchedUsers and UnknownUsers count it)."""
    if runtime.settings.watched_user_ids:
        return list(runtime.settings.watched_user_ids)
    listed = runtime.watch_list.users() if runtime.watch_list is not None else []
    users = list(dict.fromkeys([*listed, *runtime.store.watched_users()]))
    if not users:
        logger.warning(
            "No watched users: set WATCHED_USER_IDS, or add users with "
            "`auth0-log-forwarder watch add USER` (the WatchListTable)"
        )
    for user_id in users:
        try:
            check_user_id(user_id, "the watch list table")
        except ConfigError as error:
            # Still forwarded: Auth0 decides, and a 404 is reported as an unknown user.
            logger.warning(str(error), extra={"user_id": user_id})
    return users


def _publish(report: RunReport) -> None:
    for name, unit, value in metric_values(report):
        metrics.add_metric(name=name, unit=MetricUnit(unit), value=value)
    for rule, count in sorted(findings_by_rule(report).items()):
        # A dimension of its own, so one metric carries every rule (the dashboard's search).
        with single_metric(
            name="Findings",
            unit=MetricUnit.Count,
            value=count,
            namespace=metrics.namespace,
            default_dimensions={"service": logger.service},
        ) as finding:
            finding.add_dimension(name="rule", value=rule)
