"""How AWS errors are read, in one place: their code, their HTTP status, and whether to retry.

botocore raises ClientError for an answer that is an error and BotoCoreError subclasses for
everything below HTTP (connection refused, read timeout, a body that cannot be parsed). Nothing
above the sinks and the checkpoint store sees either.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
)

from .exceptions import ForwarderError
from .retry import AWS_CONNECT_TIMEOUT_S, AWS_READ_TIMEOUT_S, Attempts, retry_call

T = TypeVar("T")

# botocore retries nothing on its own: every retry goes through retry.py, which knows the
# deadline and, for PutLogEvents, checks what a lost answer may already have written.
AWS_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1},
    connect_timeout=AWS_CONNECT_TIMEOUT_S,
    read_timeout=AWS_READ_TIMEOUT_S,
)
# For calls that are idempotent, outside any delivery and under no retry_call (a secret, the
# tenants parameter): botocore may retry them.
IDEMPOTENT_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=5, read_timeout=10
)

AWS_ERRORS: tuple[type[Exception], ...] = (ClientError, BotoCoreError)

# `clients(service, config)`: a boto3 client, always with one of the configurations above.
ClientFactory = Callable[[str, Config], Any]


def session_clients(session: boto3.session.Session | None) -> ClientFactory:
    """Where every boto3 client of the functions comes from (runtime.build_runtime, the fan-out
    and the worker): no adapter builds a bare one, whose botocore retries would nest under
    retry_call's."""
    chosen = session or boto3.session.Session()
    return lambda service, config: chosen.client(service, config=config)  # type: ignore[call-overload]


# Codes that say "try again later" rather than "this request is wrong".
TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "ServiceUnavailableException",
        "ServiceUnavailable",
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "SlowDown",
        "RequestTimeout",
        # S3: another conditional write to the same key is in flight; the loser retries.
        "ConditionalRequestConflict",
    }
)


def error_code(error: Exception) -> str:
    """The AWS error code of an answer, or the exception's type for a failure below HTTP."""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", "")) or "error"
    return type(error).__name__


def http_status(error: Exception) -> int | None:
    if not isinstance(error, ClientError):
        return None
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None


def is_transient(error: Exception) -> bool:
    """Worth retrying: a network-level failure, a 5xx, or a throttling/transient code."""
    if isinstance(error, BotoCoreError):
        return True
    if not isinstance(error, ClientError):
        return False
    status = http_status(error)
    return error_code(error) in TRANSIENT_CODES or (status is not None and status >= 500)


def outcome_unknown(error: Exception) -> bool:
    """The request may have been applied though no answer says so: the answer was lost (a read
    timeout, a closed connection) or the service failed after taking it (5xx). A request that
    never left (no connection) or was refused (4xx, throttling included) was not applied."""
    if isinstance(error, ConnectTimeoutError | EndpointConnectionError):
        return False
    if isinstance(error, BotoCoreError):
        return True
    status = http_status(error)
    return status is None or status >= 500


def call_aws(
    call: Callable[[], T], *, what: str, error: type[ForwarderError], attempts: Attempts
) -> T:
    """`call()`, retried on transient failures as `attempts` allows; any failure that remains
    becomes `error`, naming `what` was attempted and the AWS error code (never a payload)."""

    def fail(cause: Exception, attempts: int) -> ForwarderError:
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        return error(f"{what} failed: {error_code(cause)}{tries}")

    return retry_call(
        call,
        attempts=attempts,
        errors=AWS_ERRORS,
        retryable=is_transient,
        fail=fail,
    )


# The request parameter that names what a call is about, as each service spells it.
_RESOURCE_PARAMS = {
    "TableName": "table",
    "Bucket": "bucket",
    "logGroupName": "log group",
    "SecretId": "secret",
    "Name": "parameter",
    "QueueUrl": "queue",
}
_FAILED_CALL = "ForwarderFailedCall"  # where an error answer carries its FailedCall


@dataclass(frozen=True)
class FailedCall:
    """The call an AWS error answered: botocore's ClientError names only the operation."""

    service: str  # as AWS names it: "DynamoDB", "S3", "CloudWatch Logs"
    operation: str
    resource_kind: str | None  # "table", "bucket"...
    resource: str | None  # the name the call gave
    region: str | None

    def __str__(self) -> str:
        about = f" of {self.resource_kind} {self.resource!r}" if self.resource else ""
        return f"{self.service} {self.operation}{about} in region {self.region or '(none set)'}"


def remember_failed_calls(client: Any) -> Any:
    """`client`, its error answers carrying the FailedCall they answer (`failed_call` reads it):
    which resource and region, for a message an operator can act on."""
    meta = client.meta

    def keep_resource(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        named = next(
            ((kind, params[key]) for key, kind in _RESOURCE_PARAMS.items() if key in params), None
        )
        tables = params.get("RequestItems")  # DynamoDB's batch calls: {table: requests}
        if named is None and isinstance(tables, dict) and len(tables) == 1:
            named = ("table", next(iter(tables)))
        context[_FAILED_CALL] = named

    def attach(
        http_response: Any, parsed: Any, model: Any, context: dict[str, Any], **_: Any
    ) -> None:
        if http_response is None or http_response.status_code < 300 or not isinstance(parsed, dict):
            return
        kind, name = context.get(_FAILED_CALL) or (None, None)
        parsed[_FAILED_CALL] = FailedCall(
            meta.service_model.service_id,
            model.name,
            kind,
            None if name is None else str(name),
            meta.region_name,
        )

    meta.events.register("before-parameter-build", keep_resource)
    meta.events.register("after-call", attach)
    return client


def aws_error_behind(error: BaseException) -> Exception | None:
    """The AWS error `error` is, or was raised from (directly or while handling it)."""
    seen: BaseException | None = error
    for _ in range(10):  # a chain is short; a cycle in one must not hang the message
        if seen is None or isinstance(seen, AWS_ERRORS):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def failed_call(error: BaseException) -> FailedCall | None:
    """The FailedCall behind `error`, if a client that `remember_failed_calls` prepared made
    the call."""
    behind = aws_error_behind(error)
    call = behind.response.get(_FAILED_CALL) if isinstance(behind, ClientError) else None
    return call if isinstance(call, FailedCall) else None
