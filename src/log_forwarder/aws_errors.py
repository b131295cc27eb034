"""How AWS errors are read, in one place: their code, their HTTP status, and whether to retry.

botocore raises ClientError for an answer that is an error and BotoCoreError subclasses for
everything below HTTP (connection refused, read timeout, a body that cannot be parsed). Nothing
above the sinks and the checkpoint store sees either.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

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
# For calls that are idempotent and outside any delivery (a secret, the tenants parameter, SQS
# sends with deduplication ids): botocore may retry them.
IDEMPOTENT_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=5, read_timeout=10
)

AWS_ERRORS: tuple[type[Exception], ...] = (ClientError, BotoCoreError)

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
