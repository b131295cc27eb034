"""Every boto3 client the functions use comes from the composition root with one of the project's
client configurations (aws_errors): botocore retries nothing behind retry_call's back. No adapter
builds a bare client of its own when given none."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.config import Config

from log_forwarder import fanout, worker
from log_forwarder.aws_errors import AWS_CLIENT_CONFIG, IDEMPOTENT_CLIENT_CONFIG
from log_forwarder.checkpoint_store import DynamoCheckpointStore
from log_forwarder.config import Settings
from log_forwarder.credentials import credentials_source, pseudonym_key
from log_forwarder.runtime import build_runtime
from log_forwarder.sinks.cloudwatch import CloudWatchSink
from log_forwarder.sinks.eventbridge import EventBridgeSink
from log_forwarder.sinks.firehose import FirehoseSink
from log_forwarder.sinks.s3 import S3Sink
from log_forwarder.watch_list import DynamoWatchList

ENV = {
    "AUTH0_DOMAIN": "acme.eu.auth0.com",
    "AUTH0_CREDENTIALS_SECRET": "auth0-user-log-forwarder/management-api",
    "CHECKPOINT_TABLE": "checkpoints",
    "WATCH_TABLE": "watch-list",
    "DESTINATIONS": "cloudwatch,s3,firehose",
    "LOG_GROUP_NAME": "/forwarded",
    "S3_BUCKET": "bucket",
    "FIREHOSE_STREAM_NAME": "stream",
    "FINDINGS_EVENT_BUS": "default",
}


class RecordingSession:
    """A boto3 session that records each client asked of it, with its configuration."""

    def __init__(self) -> None:
        self.made: list[tuple[str, Config | None]] = []

    def client(self, service: str, config: Config | None = None, **_kwargs: Any) -> Any:
        self.made.append((service, config))
        return SimpleNamespace(meta=SimpleNamespace(region_name="eu-west-1", endpoint_url=None))


@pytest.fixture
def no_bare_clients(monkeypatch: pytest.MonkeyPatch) -> None:
    """boto3's own ways to a client (the default session, a new session) fail the test."""

    def refuse(*args: Any, **_kwargs: Any) -> Any:
        raise AssertionError(f"a bare boto3 client was built: {args[1:] or args}")

    monkeypatch.setattr(boto3, "client", refuse)
    monkeypatch.setattr(boto3.session.Session, "client", refuse)


ADAPTERS: list[tuple[str, Callable[[], Any]]] = [
    ("CloudWatchSink", lambda: CloudWatchSink("/forwarded")),  # type: ignore[call-arg]
    ("S3Sink", lambda: S3Sink("bucket", "auth0-logs/")),  # type: ignore[call-arg]
    ("EventBridgeSink", lambda: EventBridgeSink("default")),  # type: ignore[call-arg]
    ("FirehoseSink", lambda: FirehoseSink("stream")),  # type: ignore[call-arg]
    ("DynamoCheckpointStore", lambda: DynamoCheckpointStore("checkpoints")),  # type: ignore[call-arg]
    ("DynamoWatchList", lambda: DynamoWatchList("watch-list")),  # type: ignore[call-arg]
    ("credentials_source", lambda: credentials_source(Settings.from_env(ENV), None)),
    ("pseudonym_key", lambda: pseudonym_key("auth0-user-log-forwarder/pii-key", None)),
]


@pytest.mark.usefixtures("no_bare_clients")
def test_no_client_is_built_but_by_the_composition_root_with_the_project_s_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN boto3's bare clients refused: an adapter given no client builds none of its own
    for name, build in ADAPTERS:
        try:
            build()
        except TypeError:
            continue
        pytest.fail(f"{name} was built without a client")
    # AND a session that records what is built
    session = RecordingSession()
    # WHEN the scheduled function's runtime, the worker and the fan-out are built from it
    build_runtime(Settings.from_env(ENV), session=session)  # type: ignore[arg-type]
    for name, value in {
        "TENANTS_PARAMETER": "/tenants",
        "TENANT_QUEUE_URL": "queue",
        "TENANT_DEAD_LETTER_QUEUE_URL": "dead-letters",
    }.items():
        monkeypatch.setenv(name, value)
    worker.build_worker(session=session)  # type: ignore[arg-type]
    fanout.build_scheduler(session)  # type: ignore[arg-type]
    # THEN every client has one of the project's configurations: delivery clients retry
    # nothing themselves (retry_call does), the idempotent reads a little
    assert sorted(service for service, _ in session.made) == sorted(
        [
            "dynamodb",
            "logs",
            "s3",
            "firehose",
            "events",
            "secretsmanager",
            "ssm",
            "sqs",
            "ssm",
            "sqs",
        ]
    )
    configs = {service: config for service, config in session.made}
    for service in ("dynamodb", "logs", "s3", "firehose", "events"):
        assert configs[service] is AWS_CLIENT_CONFIG, service
        assert AWS_CLIENT_CONFIG.retries == {"mode": "standard", "total_max_attempts": 1}
    for service in ("secretsmanager", "ssm"):
        assert configs[service] is IDEMPOTENT_CLIENT_CONFIG, service
    # the worker's SQS client only extends visibility (idempotent); the scheduler's sends under
    # its own retry loop (SEND_RETRY), so botocore retries nothing there
    sqs = [config for service, config in session.made if service == "sqs"]
    assert sqs == [IDEMPOTENT_CLIENT_CONFIG, AWS_CLIENT_CONFIG]
