"""The one retry policy: capped exponential backoff with full jitter, and a bounded attempt count.

The Auth0 client, both sinks and the checkpoint store retry through it, so they back off the same
way and count attempts the same way. Full jitter spreads the retries of concurrent workers out
(AWS Architecture Blog, "Exponential Backoff And Jitter").
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .exceptions import OutOfTime

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Deadline:
    """When an invocation's work must be over, read from Lambda's remaining time.

    Every wait and every retry asks it first: a run that would outlive its timeout is killed by
    Lambda, and its report and metrics are lost with it.
    """

    remaining_ms: Callable[[], int]

    def left_s(self) -> float:
        return self.remaining_ms() / 1000

    def ensure(self, seconds: float, what: str) -> None:
        """Raise OutOfTime unless `seconds` more fit before the deadline."""
        left = self.left_s()
        if seconds > left:
            raise OutOfTime(
                f"{what} needs {max(seconds, 0):.1f} s and {max(left, 0):.1f} s are left before "
                "the invocation's deadline; the work resumes next run"
            )


UNLIMITED = Deadline(lambda: 10**12)
# Time an attempt is given at the least after a wait: no point waiting for a call with no time.
MIN_ATTEMPT_S = 1.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how far apart a call is retried, within the invocation's time left."""

    attempts: int = 5
    base_s: float = 0.2
    cap_s: float = 5.0
    # The longest one attempt may take (its client's connect and read timeouts): an attempt
    # starts only if that much time is left before the deadline.
    attempt_s: float = 1.0

    def backoff_s(self, retry: int, rng: random.Random | None = None) -> float:
        """The wait before retry number `retry` (1 for the first retry)."""
        ceiling = min(self.cap_s, self.base_s * 2 ** (retry - 1))
        return (rng or random).uniform(0, ceiling)


# AWS clients give up on a connection after 3 s and on an answer after 10 s (app.py): no AWS
# call can take longer than this, so none starts with less time left.
AWS_CONNECT_TIMEOUT_S = 3
AWS_READ_TIMEOUT_S = 10
AWS_ATTEMPT_S = AWS_CONNECT_TIMEOUT_S + AWS_READ_TIMEOUT_S
# Destinations: a few quick retries; a run that still fails is retried by the next run anyway.
SINK_RETRY = RetryPolicy(attempts=5, base_s=0.2, cap_s=5.0, attempt_s=AWS_ATTEMPT_S)


@dataclass(slots=True)
class Attempts:
    """The attempts of one operation: decides whether another is allowed, and waits before it."""

    policy: RetryPolicy
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random | None = None
    deadline: Deadline = UNLIMITED
    made: int = field(default=0, init=False)
    # Attempts the policy does not count: a retry its caller bounds itself (a token renewed
    # once after a 401 must not take the last attempt's place).
    spared: int = field(default=0, init=False)

    def start(self) -> int:
        """Count an attempt that is about to be made; returns its number (1-based). Raises
        OutOfTime when the attempt could outlast the deadline."""
        self.deadline.ensure(self.policy.attempt_s, "a call")
        self.made += 1
        return self.made

    @property
    def exhausted(self) -> bool:
        return self.made - self.spared >= self.policy.attempts

    def retry_after(self, wait_s: float | None = None) -> bool:
        """Wait before the next attempt and return True, or return False when none is left.

        `wait_s` overrides the backoff (a server said how long to wait). Raises OutOfTime when
        the wait and an attempt after it would outlast the deadline.
        """
        if self.exhausted:
            return False
        wait = self.policy.backoff_s(self.made, self.rng) if wait_s is None else wait_s
        self.deadline.ensure(wait + max(self.policy.attempt_s, MIN_ATTEMPT_S), "a retry")
        if wait > 0:
            self.sleep(wait)
        return True


@dataclass(frozen=True, slots=True)
class Settled(Generic[T]):
    """What a `resume` hook returns when nothing is left to retry: the call's result."""

    value: T


def retry_call(
    call: Callable[[], T],
    *,
    attempts: Attempts,
    errors: tuple[type[Exception], ...],
    retryable: Callable[[Exception], bool],
    fail: Callable[[Exception, int], Exception],
    on_retry: Callable[[Exception], float | None] = lambda _error: None,
    resume: Callable[[Exception], Settled[T] | None] = lambda _error: None,
    spared: Callable[[Exception], bool] = lambda _error: False,
) -> T:
    """`call()` until it returns, retrying the `errors` that are `retryable`: the one retry loop.

    Once another attempt is decided, `on_retry(error)` hears of it before the wait (to count
    it, say it, or return a wait a server asked for, which replaces the backoff); `resume(error)`
    runs after the wait, before the next attempt: it narrows what the next attempt sends (a
    partial failure's refused part, or what a lost answer did not write after all) and ends the
    loop with its `Settled` value when nothing is left. Any other error of `errors`, or the last
    one, is raised as `fail(error, attempts made)`; exceptions outside `errors` (bugs) propagate
    untouched. An error that is `spared` is retried without using up an attempt: the caller
    bounds those. Every wait and attempt respects the attempts' deadline (OutOfTime).
    """
    while True:
        attempts.start()
        try:
            return call()
        except errors as error:
            if retryable(error) and spared(error):
                attempts.spared += 1
            if not retryable(error) or attempts.exhausted:
                raise fail(error, attempts.made) from error
            attempts.retry_after(on_retry(error))
            settled = resume(error)
            if settled is not None:
                return settled.value
