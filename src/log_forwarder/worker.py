"""Multi-tenant mode, the worker: one tenant per message, through the same Forwarder, runtime and
report as a single-tenant run (runtime.build_runtime, app.forward).

    SQS event (TenantQueue.fifo) → per record, in order:
      parse (PoisonMessage?) → keep the message invisible past this invocation → the tenant from
      the tenants document → its runtime (cached per tenant, keys prefixed `<domain>#`) → forward
      → done, or the record's id in batchItemFailures

A failed record is left to SQS: it comes back once its visibility ends, and after
maxReceiveCount receives it moves to the dead-letter queue (an alarm watches it). A poison record
(not a message the scheduler sends) goes to the dead-letter queue at once instead: no retry can
make it work, and while SQS retried it, its group (a tenant's, maybe) would get nothing else.
The template gives batches of one, so each tenant has a whole invocation; with larger batches,
the records after a failure are returned unprocessed, as FIFO ordering requires.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
import httpx
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from . import observability
from .app import forward
from .auth0_client import DEFAULT_TIMEOUT
from .aws_errors import IDEMPOTENT_CLIENT_CONFIG, error_code, session_clients
from .exceptions import ConfigError, ForwarderError, PoisonMessage
from .runtime import Runtime, build_runtime
from .tenant_message import TenantMessage
from .tenants import REFUSED_METRIC, Tenant, TenantsParameter, tenant_settings, tenants_parameter

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

# A message stays invisible this long past the invocation's own timeout: a worker that Lambda
# kills mid-tenant is retried soon after, and never while it is still running.
VISIBILITY_MARGIN_S = 30
MAX_VISIBILITY_S = 12 * 3600  # SQS's ceiling
# Runtimes (Auth0 client with its token and pacer, sinks, store) kept per warm container: each
# costs about 1.1 MB (its boto3 clients; the HTTP client is shared). Past this many, the least
# recently run tenant is built again when its turn comes (one more token request).
MAX_CACHED_TENANTS = 16


@dataclass
class Worker:
    tenants: TenantsParameter
    sqs: SQSClient
    queue_url: str
    dead_letter_url: str
    session: boto3.session.Session
    # One HTTP client for every tenant: an SSL context each would cost 0.7 MB and ~20 ms.
    # Requests carry their own token; connections and cookies are kept per host.
    http: httpx.Client
    clock: Callable[[], float] = time.time
    runtimes: OrderedDict[str, tuple[Tenant, Runtime]] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def runtime(self, tenant: Tenant, env: Mapping[str, str]) -> Runtime:
        """The tenant's runtime, built again when its entry in the document changed."""
        with self.lock:
            cached = self.runtimes.get(tenant.domain)
            if cached is None or cached[0] != tenant:
                settings = tenant_settings(env, tenant)
                runtime = build_runtime(
                    settings,
                    clock=self.clock,
                    session=self.session,
                    http=self.http,
                    key_prefix=tenant.key_prefix,
                )
                cached = (tenant, runtime)
            self.runtimes[tenant.domain] = cached
            self.runtimes.move_to_end(tenant.domain)
            while len(self.runtimes) > MAX_CACHED_TENANTS:
                self.runtimes.popitem(last=False)
            return cached[1]

    def hold(self, record: Mapping[str, Any], context: LambdaContext) -> None:
        """Keep the message invisible until this invocation is surely over. Best effort: the
        queue's own visibility timeout, equal to the function timeout, is nearly as long."""
        seconds = math.ceil(context.get_remaining_time_in_millis() / 1000) + VISIBILITY_MARGIN_S
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url,
                ReceiptHandle=str(record.get("receiptHandle", "")),
                VisibilityTimeout=min(seconds, MAX_VISIBILITY_S),
            )
        except (ClientError, BotoCoreError) as error:
            observability.logger().warning(
                "Could not extend the message's visibility", extra={"error": error_code(error)}
            )

    def bury(self, record: Mapping[str, Any], why: str) -> bool:
        """Move a poison record to the dead-letter queue, with why; False if that failed (SQS's
        own redrive then takes it there after its last receive)."""
        group = record.get("attributes", {}).get("MessageGroupId") or "poison"
        try:
            self.sqs.send_message(
                QueueUrl=self.dead_letter_url,
                MessageBody=str(record.get("body") or "(empty)"),
                MessageGroupId=str(group),
                MessageDeduplicationId=str(record.get("messageId", ""))[:128] or "poison",
                MessageAttributes={"reason": {"DataType": "String", "StringValue": why[:1024]}},
            )
        except (ClientError, BotoCoreError) as error:
            observability.logger().error(
                "Could not dead-letter the message", extra={"error": error_code(error)}
            )
            return False
        return True


_worker = observability.Lazy(lambda clock: build_worker(clock=clock))


def build_worker(
    *, clock: Callable[[], float] = time.time, session: boto3.session.Session | None = None
) -> Worker:
    names = ("TENANTS_PARAMETER", "TENANT_QUEUE_URL", "TENANT_DEAD_LETTER_QUEUE_URL")
    missing = [name for name in names if not os.environ.get(name, "").strip()]
    if missing:
        raise ConfigError(f"{', '.join(missing)} must be set for the tenant worker")
    session = session or boto3.session.Session()
    clients = session_clients(session)
    tenants = tenants_parameter(os.environ, clients("ssm", IDEMPOTENT_CLIENT_CONFIG))
    sqs = clients("sqs", IDEMPOTENT_CLIENT_CONFIG)
    queue_url = os.environ["TENANT_QUEUE_URL"].strip()
    dead_letter_url = os.environ["TENANT_DEAD_LETTER_QUEUE_URL"].strip()
    http = httpx.Client(timeout=DEFAULT_TIMEOUT, follow_redirects=False)
    return Worker(tenants, sqs, queue_url, dead_letter_url, session, http, clock)


def reset_runtime(*, clock: Callable[[], float] = time.time) -> None:
    """Forget the worker and its tenants' runtimes, as a new container starts without them."""
    _worker.reset(clock=clock)


def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    result: dict[str, Any] = _instrumented(event, context)
    return result


def _handle(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    worker = _worker.get()
    failures: list[str] = []
    for record in event.get("Records", []):
        message_id = str(record.get("messageId", ""))
        # FIFO: after a failure the rest of the batch goes back unprocessed, in order.
        if failures or not _process(worker, record, context):
            failures.append(message_id)
    return {"batchItemFailures": [{"itemIdentifier": item} for item in failures]}


def _process(worker: Worker, record: Mapping[str, Any], context: LambdaContext) -> bool:
    """One record; True when it is done with (forwarded, or for a tenant no longer listed)."""
    message_id = record.get("messageId")
    try:
        message = TenantMessage.from_record(record)
    except PoisonMessage as error:
        observability.logger().error(
            "Poison message: no run can process it; moved to the dead-letter queue",
            extra={"message_id": message_id, "error": str(error)},
        )
        return worker.bury(record, str(error))
    observability.logger().append_keys(tenant=message.tenant, tick=message.tick)
    try:
        worker.hold(record, context)
        tenant = _tenant(worker, message.tenant)
        if tenant is None:
            return True
        forward(worker.runtime(tenant, os.environ), context)
    except ForwarderError as error:
        observability.logger().error(
            "Tenant not forwarded; SQS will retry the message",
            extra={"error": f"{type(error).__name__}: {error}"},
        )
        return False
    except Exception:  # a bug: this message fails, with its traceback; the others still run
        observability.logger().exception(
            "Tenant not forwarded: unexpected error; SQS will retry the message"
        )
        return False
    finally:
        observability.logger().remove_keys(["tenant", "tick"])
    return True


def _tenant(worker: Worker, domain: str) -> Tenant | None:
    """The tenant's current entry; None when the document no longer lists it (a warning) or
    refuses its entry (an error naming the rule, and the TenantsRefused metric)."""
    config = worker.tenants.load()
    if config.get(domain) is None:
        # Maybe added or fixed since this container last read the document: read it again
        # before concluding it is gone.
        config = worker.tenants.load(force=True)
    tenant = config.get(domain)
    refusal = config.refusal(domain) if tenant is None else None
    if refusal is not None:
        # Dropped rather than retried: only a change of the document helps, and the scheduler
        # enqueues the tenant again at the first tick after it.
        observability.logger().error(
            "Tenant not forwarded: its entry in the tenants document is refused; message dropped",
            extra={"error": refusal},
        )
        observability.metrics().add_metric(name=REFUSED_METRIC, unit=MetricUnit.Count, value=1)
    elif tenant is None:
        observability.logger().warning(
            "Tenant is not in the tenants document (removed since this tick); message dropped"
        )
    return tenant


_instrumented = observability.instrumented(_handle, correlation_id_path="Records[0].messageId")
