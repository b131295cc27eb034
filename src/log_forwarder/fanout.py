"""Multi-tenant mode, the scheduled side: one message per tenant on the FIFO tenant queue.

    EventBridge tick → ForwarderFunction (this handler, chosen by the template when
    TenantsParameterName is set) → the tenants document (SSM), validated
      → TenantQueue.fifo: one message per tenant, its group the tenant's
      → TenantWorkerFunction (worker.py): one tenant per invocation, at most one per tenant

It reads Auth0 nowhere and writes no checkpoint: its role holds ssm:GetParameter and
sqs:SendMessage only. A tenant whose entry is invalid is left out and the invocation fails
after the others are enqueued, so the Errors alarm and the failure queue see it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from . import observability
from .aws_errors import AWS_CLIENT_CONFIG, IDEMPOTENT_CLIENT_CONFIG, error_code, session_clients
from .exceptions import ConfigError, FanoutError
from .retry import AWS_ATTEMPT_S, Attempts, RetryPolicy, Settled, retry_call
from .tenant_message import TenantMessage, dedup_id, group_id
from .tenants import REFUSED_METRIC, TenantsParameter, tenants_parameter

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

SEND_BATCH_LIMIT = 10  # SendMessageBatch takes at most ten entries
SEND_ATTEMPTS = 3  # per entry the queue refuses (throttled, internal error)
# The scheduler has seconds to spare: a short jittered backoff between the attempts.
SEND_RETRY = RetryPolicy(attempts=SEND_ATTEMPTS, base_s=0.1, cap_s=1.0, attempt_s=AWS_ATTEMPT_S)


class TenantQueue:
    """The FIFO queue of tenant messages."""

    def __init__(
        self, url: str, client: SQSClient, *, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.url = url
        self._client = client
        self._sleep = sleep

    def enqueue(self, messages: Sequence[TenantMessage]) -> None:
        """Send every message; FanoutError naming the tenants the queue would not take."""
        refused: list[str] = []
        for start in range(0, len(messages), SEND_BATCH_LIMIT):
            refused += self._send(messages[start : start + SEND_BATCH_LIMIT])
        if refused:
            raise FanoutError(
                f"tenant queue refused the messages of {len(refused)} tenant(s) after "
                f"{SEND_ATTEMPTS} attempts: {'; '.join(refused[:5])}; they run at the next tick"
            )

    def _send(self, messages: Sequence[TenantMessage]) -> list[str]:
        """Send a batch, again for what the queue refused (a resend is safe: the deduplication
        ids make SQS drop what it already holds); the tenants still refused, and why."""
        pending = {str(index): message for index, message in enumerate(messages)}

        def send() -> list[str]:
            entries: list[SendMessageBatchRequestEntryTypeDef] = [
                {
                    "Id": entry_id,
                    "MessageBody": message.body(),
                    "MessageGroupId": group_id(message.tenant),
                    "MessageDeduplicationId": dedup_id(message.tick, message.tenant),
                }
                for entry_id, message in pending.items()
            ]
            response = self._client.send_message_batch(QueueUrl=self.url, Entries=entries)
            failed = {item["Id"]: item.get("Code", "error") for item in response.get("Failed", [])}
            if failed:
                raise _Refused(failed)
            return []

        def resume(error: Exception) -> Settled[list[str]] | None:
            nonlocal pending
            if isinstance(error, _Refused):
                pending = {key: value for key, value in pending.items() if key in error.codes}
            return None

        def refused(error: Exception, _made: int) -> Exception:
            # The last attempt's own refusals: what it sent and SQS took is not refused.
            if isinstance(error, _Refused):
                return error
            return _Refused(dict.fromkeys(pending, error_code(error)))

        try:
            return retry_call(
                send,
                attempts=Attempts(SEND_RETRY, sleep=self._sleep),
                errors=(ClientError, BotoCoreError, _Refused),
                retryable=lambda _error: True,
                fail=refused,
                resume=resume,
            )
        except _Refused as gave_up:
            return [f"{pending[key].tenant}: {code}" for key, code in gave_up.codes.items()]


class _Refused(Exception):
    """SQS refused some entries of a batch (or the whole call failed): their codes, by id."""

    def __init__(self, codes: dict[str, str]) -> None:
        super().__init__(", ".join(sorted(set(codes.values()))))
        self.codes = codes


@dataclass(frozen=True)
class Scheduler:
    tenants: TenantsParameter
    queue: TenantQueue


_scheduler = observability.Lazy(lambda _clock: build_scheduler())


def build_scheduler(session: boto3.session.Session | None = None) -> Scheduler:
    """From TENANTS_PARAMETER, TENANT_QUEUE_URL and the rules of tenants.TenantRules."""
    names = ("TENANTS_PARAMETER", "TENANT_QUEUE_URL")
    missing = [name for name in names if not os.environ.get(name, "").strip()]
    if missing:
        raise ConfigError(
            f"{' and '.join(missing)} must be set in multi-tenant mode (the template sets them "
            "when TenantsParameterName is given)"
        )
    clients = session_clients(session)
    tenants = tenants_parameter(
        os.environ,
        clients("ssm", IDEMPOTENT_CLIENT_CONFIG),
        max_age_s=0,  # every tick reads it: a changed document applies at the next tick
    )
    queue_url = os.environ["TENANT_QUEUE_URL"].strip()
    # No botocore retries under SEND_RETRY's: one loop, and its count is the one said.
    return Scheduler(tenants, TenantQueue(queue_url, clients("sqs", AWS_CLIENT_CONFIG)))


def reset_runtime(**_ignored: Any) -> None:
    """Forget the scheduler built so far, as a new container would (tests and local runs)."""
    _scheduler.reset()


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result: dict[str, Any] = _instrumented(event, context)
    return result


def _handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    scheduler = _scheduler.get()
    config = scheduler.tenants.load(force=True)
    tick = str(event.get("id") or context.aws_request_id)
    now = datetime.fromtimestamp(time.time(), tz=UTC).isoformat(timespec="milliseconds")
    messages = [TenantMessage(tenant.domain, tick, now) for tenant in config.tenants]
    scheduler.queue.enqueue(messages)
    summary = {
        "scheduled": [message.tenant for message in messages],
        "left_out": list(config.errors),
    }
    observability.logger().info("Tenants scheduled", extra={"summary": summary})
    metrics = observability.metrics()
    metrics.add_metric(name="TenantsScheduled", unit=MetricUnit.Count, value=len(messages))
    metrics.add_metric(name=REFUSED_METRIC, unit=MetricUnit.Count, value=len(config.errors))
    if config.errors:
        # The others are on their way; now fail loudly for the ones left out.
        raise ConfigError(
            f"{len(config.errors)} tenant(s) left out of this tick: " + "; ".join(config.errors)
        )
    return summary


_instrumented = observability.instrumented(
    _handle, correlation_id_path=correlation_paths.EVENT_BRIDGE
)
