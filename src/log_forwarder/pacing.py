"""Pacing: use at most a share of the tenant's Management API rate limit; slow down before a 429.

Auth0's limit is one bucket for the whole tenant, shared with every other admin tool of the
customer. The pacer therefore combines two signals:

- its own budget: `share × sustained rate`, with a burst of `share × bucket size` (the bucket size
  is learned from `x-ratelimit-limit`); requests are spaced by a generic cell rate algorithm, so
  concurrent workers never exceed it together;
- the tenant's bucket as Auth0 reports it: when `x-ratelimit-remaining` drops below the part of the
  bucket this tool must leave to others, it waits for the bucket to refill before sending more.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .retry import MIN_ATTEMPT_S, UNLIMITED, Deadline


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    limit: int
    remaining: int
    reset_epoch_s: float

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> RateLimitHeaders | None:
        """The three headers, or None if any is missing or not a number."""
        try:
            parsed = cls(
                limit=int(headers["x-ratelimit-limit"]),
                remaining=int(headers["x-ratelimit-remaining"]),
                reset_epoch_s=float(headers["x-ratelimit-reset"]),
            )
        except (KeyError, ValueError, TypeError):
            return None
        # float() accepts "nan" and "inf": neither is an instant to wait for.
        return parsed if math.isfinite(parsed.reset_epoch_s) else None


class Pacer:
    def __init__(
        self,
        *,
        share: float,
        per_second: float,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._share = share
        self._interval = 1.0 / (share * per_second)
        self._per_second = per_second
        self._burst = 1.0  # until Auth0 tells us the bucket size
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._theoretical_arrival = 0.0
        self._not_before = 0.0

    def acquire(self, deadline: Deadline = UNLIMITED) -> float:
        """Block until one more request fits in the budget; returns the seconds waited.

        Raises OutOfTime, without taking the slot, when the wait would outlast the deadline.
        """
        with self._lock:
            now = self._clock()
            tolerance = (self._burst - 1.0) * self._interval
            start = max(self._theoretical_arrival, now)
            slot = max(now, start - tolerance, self._not_before)
            wait = max(0.0, slot - now)
            deadline.ensure(wait + MIN_ATTEMPT_S, "waiting for the rate-limit share")
            self._theoretical_arrival = max(start, slot) + self._interval
        if wait > 0:
            self._sleep(wait)
        return wait

    def observe(self, headers: RateLimitHeaders | None, *, now: float | None = None) -> None:
        """Learn from the rate-limit headers of an answer."""
        if headers is None or headers.limit <= 0:
            return
        now = self._clock() if now is None else now
        with self._lock:
            self._burst = max(1.0, self._share * headers.limit)
            reserve = (1.0 - self._share) * headers.limit
            if headers.remaining < reserve:
                # Others (or we) drained the bucket below what we leave them: wait until it has
                # refilled that far, at the tenant's sustained rate, never past the reset instant.
                refill = (reserve - headers.remaining) / self._per_second
                until = min(now + refill, max(headers.reset_epoch_s, now))
                self._not_before = max(self._not_before, until)

    def back_off_until(self, instant: float) -> None:
        """After a 429: nobody in this process sends before `instant`."""
        with self._lock:
            self._not_before = max(self._not_before, instant)
