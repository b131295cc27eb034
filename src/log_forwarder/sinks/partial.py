"""A batch API whose answer may refuse some of its entries (EventBridge's PutEvents, Firehose's
PutRecordBatch): the call sent again with only what was refused, until every entry is taken,
through the one retry loop (retry.retry_call, its `resume` hook)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from log_forwarder.aws_errors import AWS_ERRORS, error_code, is_transient, outcome_unknown
from log_forwarder.exceptions import DeliveryError
from log_forwarder.retry import Attempts, Deadline, RetryPolicy, Settled, retry_call

E = TypeVar("E")


def send_until_taken(
    entries: Sequence[E],
    send: Callable[[Sequence[E]], Sequence[str | None]],
    *,
    what: str,
    refused: Callable[[int, str], str],
    policy: RetryPolicy,
    deadline: Deadline,
    sleep: Callable[[float], None] = time.sleep,
    resent: Callable[[int], None] = lambda _count: None,
    refused_may_be_taken: bool = False,
) -> None:
    """`send(entries)` answers each entry's error code (None: taken); the refused ones, and all
    of them after a transient failure of the call, are sent again as the policy allows.
    `resent(n)` hears of each n entries sent again that the service may have taken already: after
    a lost answer (outcome_unknown), and after a refusal where the service says a refused entry
    may have been taken all the same (`refused_may_be_taken`: Firehose's "might have failed").
    DeliveryError when the attempts run out: `what` names the call, `refused(count, codes)` says
    what it refused."""
    pending: Sequence[E] = entries

    def call() -> None:
        codes = send(pending)
        left = [entry for entry, code in zip(pending, codes, strict=True) if code]
        if left:
            raise _Refused(left, sorted({code for code in codes if code}))

    def resume(error: Exception) -> Settled[None] | None:
        nonlocal pending
        if isinstance(error, _Refused):
            pending = error.entries  # only what was refused goes again
            if refused_may_be_taken:
                resent(len(pending))
        elif outcome_unknown(error):
            resent(len(pending))
        return None

    def fail(error: Exception, made: int) -> Exception:
        tries = f" after {made} attempts" if made > 1 else ""
        if isinstance(error, _Refused):
            return DeliveryError(f"{refused(len(error.entries), ', '.join(error.codes))}{tries}")
        return DeliveryError(f"{what} failed: {error_code(error)}{tries}")

    retry_call(
        call,
        attempts=Attempts(policy, sleep=sleep, deadline=deadline),
        errors=(*AWS_ERRORS, _Refused),
        retryable=lambda error: isinstance(error, _Refused) or is_transient(error),
        fail=fail,
        resume=resume,
    )


class _Refused(Exception, Generic[E]):
    """Some entries of a batch call were refused (the call itself went through)."""

    def __init__(self, entries: list[E], codes: list[str]) -> None:
        super().__init__(", ".join(codes))
        self.entries = entries
        self.codes = codes
