"""Pacing: use at most a share of the tenant's Management API rate limit; slow down before a 429.

Auth0's limit is one token bucket for the whole tenant, shared with every other admin tool of the
customer. Its size and sustained rate differ per plan (Free 2 and 2/s, Essentials 10 and 100/min,
Enterprise 50 and 16/s, Enterprise non-production 10 and 2/s) and nobody should have to look them
up, so the pacer learns them from the `x-ratelimit-*` headers of its own answers:

- the bucket size is `x-ratelimit-limit`;
- the sustained rate is bracketed by bounds that each hold whatever other clients do
  (`RateEstimator`): how far the bucket refilled between two of our answers (`remaining` against
  time, counting our own requests in between), and how `x-ratelimit-reset` (when the bucket will
  be full, in whole seconds) moves against the deficit between two answers. Both use only
  differences of our own clock, so they do not depend on how far Auth0's clock is from ours;
- a single answer's reset, read against our clock (so assuming the clocks agree to SKEW_S),
  brackets the refill time too: used only to slow down, for tenants slower than assumed.

It assumes the slowest production plan's rate (or the configured cap, when one is set) until the
bounds exclude it, either way. It then spends its own budget, `share × rate` sustained with a
burst of `share × bucket`, spacing requests by a generic cell rate algorithm so that concurrent
workers never exceed it together; and when `x-ratelimit-remaining` drops below the part of the
bucket left to others, it waits for the bucket to refill before sending more.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .retry import MIN_ATTEMPT_S, UNLIMITED, Deadline

logger = logging.getLogger(__name__)

# What the pacer assumes before the headers say more: Essentials/Professional's 100 requests a
# minute, the slowest production plan, so that no production tenant sees more than our share.
START_PER_SECOND = 100 / 60
# How far Auth0's clock may be from ours, for the only bound that reads the reset against our
# clock (an upper bound: it can only slow us down, and only on tenants slower than assumed).
SKEW_S = 0.1
# ... and that bound alone never takes the pace below this: Auth0's clock far ahead of ours would
# otherwise stall the pacer before a second answer could show it wrong.
CLOCK_BOUND_FLOOR = 0.1
# Refill bounds give one token away: Auth0 may add tokens in whole steps rather than continuously.
SLACK_TOKENS = 1.0
# Lower bounds are pessimistic by a round trip over a few seconds of refill: pace up to this much
# above the proven lower bound, never above a proven upper bound.
OPTIMISM = 1.1
# Upper bounds expire (the tenant's plan may be raised); lower bounds are kept until contradicted.
UPPER_BOUND_WINDOW_S = 300.0
# Answers each new one is compared with: seconds of a fast tenant, minutes of a slow one.
HISTORY = 64
# Never paced slower than this, whatever a 429 storm halved (the configuration's lowest cap).
MIN_RATE = 0.01
# A 429 halves what the pacer assumes, for this long.
LIMITED_MEMORY_S = 300.0
# Until the first answer arrives, one request at a time: the next ones wait for what it teaches
# (the bucket size above all), polling this often, at most this long.
PROBE_POLL_S = 0.02
PROBE_WAIT_S = 2.0


@dataclass(frozen=True, slots=True)
class RateLimitHeaders:
    """An Auth0 answer's rate-limit headers: the bucket's limit, what remains, when it refills."""

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


@dataclass(frozen=True, slots=True)
class Ticket:
    """One request let through: when, and what the pacer had counted by then."""

    waited_s: float
    sent_at: float
    # Our answers that took a token and had arrived before this request was sent: all of them
    # were handled by Auth0 before this one.
    taken_before: int


@dataclass(frozen=True, slots=True)
class Answer:
    """An answer with rate-limit headers, and when its request was sent and answered (our clock).

    Auth0 handled it at some unknown instant between the two. After it, the bucket held
    `remaining` tokens (and less than one more), and would be full at `reset_s` (rounded up).
    """

    sent_at: float
    received_at: float
    limit: int
    remaining: int
    reset_s: float
    took: bool  # False for a 429, which takes no token
    taken_before: int  # Ticket.taken_before
    sent_by_answer: int  # our requests sent before this answer arrived (it included)

    @property
    def deficit_low(self) -> float:
        """Tokens missing from a full bucket after this answer, at least."""
        if self.took and self.remaining == self.limit - 1:
            # It took a token and left limit - 1: the bucket was exactly full before it.
            return 1.0
        return max(0.0, self.limit - self.remaining - 1.0)

    @property
    def deficit_high(self) -> float:
        return max(0.0, float(self.limit - self.remaining))


class _RecentMin:
    """The smallest value added within the last `window_s` seconds (a monotonic deque)."""

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._items: deque[tuple[float, float]] = deque()

    def add(self, at: float, value: float) -> None:
        while self._items and self._items[-1][1] >= value:
            self._items.pop()
        self._items.append((at, value))

    def value(self, now: float) -> float:
        while self._items and self._items[0][0] < now - self._window_s:
            self._items.popleft()
        return self._items[0][1] if self._items else math.inf

    def clear(self) -> None:
        self._items.clear()


class RateEstimator:
    """Bounds on the tenant's sustained rate (tokens per second) from the answers' headers.

    The model is Auth0's: a bucket of `limit` tokens refilling at the rate; each answer other than
    a 429 took one token; `remaining` is the whole tokens left after it; `reset` is the instant,
    rounded up to a second, at which the bucket will be full. Every bound below holds whatever
    other clients take, however late an answer travels, and whatever the offset between Auth0's
    clock and ours, except the one marked as assuming that offset is under SKEW_S.

    Not thread-safe: the pacer calls it under its lock. Times are passed in, never read.
    """

    def __init__(self) -> None:
        self.limit: int | None = None
        self.lower = 0.0  # proven: the rate is at least this
        self._upper = _RecentMin(UPPER_BOUND_WINDOW_S)  # proven: at most this
        self._upper_if_synced = _RecentMin(UPPER_BOUND_WINDOW_S)  # at most this if |skew| < SKEW_S
        self._lower_if_synced = _RecentMin(UPPER_BOUND_WINDOW_S)  # minus: at least this, if so
        self._history: deque[Answer] = deque(maxlen=HISTORY)
        self._limited_at: deque[float] = deque()
        self.answers = 0

    def bounds(self, now: float) -> tuple[float, float]:
        """The proven bounds: the rate is at least the first, at most the second."""
        return self.lower, self._upper.value(now)

    def upper(self, now: float) -> float:
        """The proven upper bound, tightened by the clock-dependent one unless that contradicts
        a proven lower bound (then the clocks are further apart than assumed: it is ignored)."""
        upper = self._upper.value(now)
        synced = max(CLOCK_BOUND_FLOOR, self._upper_if_synced.value(now))
        return min(upper, synced) if synced >= self.lower else upper

    def rate(self, now: float, assumed: float, share: float = 1.0) -> float:
        """The rate to pace by: `assumed` unless the bounds exclude it, halved per recent 429,
        raised toward the upper bound by at most OPTIMISM above the lower one, and never so far
        that our budget (`share` of it) would exceed the proven rate."""
        while self._limited_at and self._limited_at[0] < now - LIMITED_MEMORY_S:
            self._limited_at.popleft()
        upper = self.upper(now)
        if upper < assumed:
            # Slower than assumed: by how much, the resets tell only to within a second, and
            # requests paced at whole seconds all read them at the same phase. Take the slowest
            # rate they allow (with the clocks within SKEW_S), so as to stay within the share.
            slowest = max(-self._lower_if_synced.value(now), self.lower)
            assumed = min(upper, slowest) if slowest > 0 else upper
        # A 429 halves the rate chosen, whichever it is: halving the guess before the choice
        # above would let a halved guess slip under the upper bound, skip the choice, and pace
        # faster than with no 429 at all.
        guess = max(MIN_RATE, assumed * 0.5 ** len(self._limited_at))
        learned = min(self.lower * min(OPTIMISM, 1 / share), upper)
        return max(MIN_RATE, guess, learned, self.lower)

    def add(self, answer: Answer) -> None:
        if answer.limit != self.limit:
            # Another plan, or the first answer: nothing learned so far applies.
            self._forget(answer.limit)
        if not 0 <= answer.remaining <= answer.limit:
            return  # not a state of this bucket
        self.answers += 1
        # The smallest upper bound of the pairs only: one entry per answer in the window.
        upper = min((self._compare(earlier, answer) for earlier in self._history), default=math.inf)
        if upper < math.inf:
            self._upper.add(answer.received_at, upper)
        self._bound_by_reset(answer)
        self._history.append(answer)
        if self.lower > self._upper.value(answer.received_at):
            # A proven lower bound above a proven upper bound: the rate changed in between (a
            # pair of answers either side of the change proves nothing, either way), or the model
            # does not fit. Learn again from the answers that come next.
            logger.info(
                "Auth0 rate limit changed; learning it again",
                extra={"learned_per_s": round(self.lower, 3)},
            )
            self._forget(answer.limit, keep_limited=True)

    def limited(self, now: float) -> None:
        """A 429: someone took more than the bounds allowed for. Be more careful for a while."""
        self._limited_at.append(now)
        self.lower /= 2
        self._history.clear()

    def _forget(self, limit: int, *, keep_limited: bool = False) -> None:
        self.limit = limit
        self.lower = 0.0
        self._upper.clear()
        self._upper_if_synced.clear()
        self._lower_if_synced.clear()
        self._history.clear()
        if not keep_limited:
            self._limited_at.clear()

    def _compare(self, a: Answer, b: Answer) -> float:
        """Bounds from a pair of answers, `b` the newer: raises the lower bound, returns the
        upper bound (inf if none)."""
        self._bound_by_refill(a, b)
        return min(self._bound_by_resets(a, b), self._bound_by_resets(b, a))

    def _bound_by_refill(self, a: Answer, b: Answer) -> None:
        """Between the two answers the bucket gained `rate × elapsed` and lost every token taken
        in between: at least ours, which are counted. So rate ≥ (net gain + ours) / elapsed."""
        if a.received_at > b.sent_at:
            return  # they overlapped: which Auth0 handled first is unknown
        # Ours in between: taken before b was sent, and not sent before a came back.
        ours = max(0, b.taken_before - a.sent_by_answer)
        exact = a.took and a.remaining == a.limit - 1  # then a left exactly limit - 1 tokens
        known = b.remaining - a.remaining - (0 if exact else 1) + ours + int(b.took)
        gained = known - SLACK_TOKENS
        elapsed = b.received_at - a.sent_at
        if gained > 0 and elapsed > 0:
            self.lower = max(self.lower, gained / elapsed)

    def _bound_by_resets(self, x: Answer, y: Answer) -> float:
        """With `full(i) = handled(i) + deficit(i) / rate` on Auth0's clock and
        `reset(i) - 1 < full(i) ≤ reset(i)`, the difference of two answers cancels the clocks'
        offset: (deficit(x) − deficit(y)) / rate is within the difference of their resets, widened
        by a second and by the time each request spent travelling."""
        if x.deficit_low > y.deficit_high:
            span = (x.reset_s - x.sent_at) - (y.reset_s - 1 - y.received_at)
            if span > 0:
                self.lower = max(self.lower, (x.deficit_low - y.deficit_high) / span)
        if x.deficit_high > y.deficit_low:
            span = (x.reset_s - 1 - x.received_at) - (y.reset_s - y.sent_at)
            if span > 0:
                return (x.deficit_high - y.deficit_low) / span
        return math.inf

    def _bound_by_reset(self, a: Answer) -> None:
        """One answer alone: reset(a) − 1 < full(a) ≤ reset(a) on Auth0's clock. Read against
        ours, assuming the two differ by less than SKEW_S, the deficit took at least
        `reset − 1 − answered − SKEW_S` to refill, and at most `reset − sent + SKEW_S`."""
        span = a.reset_s - 1 - a.received_at - SKEW_S
        if a.deficit_high > 0 and span > 0:
            self._upper_if_synced.add(a.received_at, a.deficit_high / span)
        span = a.reset_s - a.sent_at + SKEW_S
        if a.deficit_low > 0 and span > 0:
            self._lower_if_synced.add(a.received_at, -a.deficit_low / span)


@dataclass(frozen=True, slots=True)
class PacerState:
    """What the pacer assumes and knows, for logs, tests and the benchmark."""

    rate_per_s: float  # the tenant's sustained rate it paces by (its own budget is share × this)
    bucket: int | None
    lower_per_s: float  # proven bounds on that rate
    upper_per_s: float


class Pacer:
    """`per_second`: an optional cap on the tenant rate assumed; when set, the pacer also assumes it
    until the headers prove the tenant slower. Unset, it learns the rate (see the module doc)."""

    def __init__(
        self,
        *,
        share: float,
        per_second: float | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._share = share
        self._cap = per_second
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._estimator = RateEstimator()
        self._rate = self._assumed
        self._interval = 1.0 / (share * self._rate)
        self._burst = 1.0  # until Auth0 tells us the bucket size
        self._theoretical_arrival = 0.0
        self._not_before = 0.0
        self._sent = 0
        self._taken = 0
        self._answered = False
        self._probe_sent_at: float | None = None

    @property
    def _assumed(self) -> float:
        return START_PER_SECOND if self._cap is None else self._cap

    def state(self) -> PacerState:
        with self._lock:
            lower, upper = self._estimator.bounds(self._clock())
            return PacerState(
                rate_per_s=self._rate,
                bucket=self._estimator.limit,
                lower_per_s=lower,
                upper_per_s=upper,
            )

    def acquire(self, deadline: Deadline = UNLIMITED) -> float:
        """Block until one more request fits in the budget; returns the seconds waited.

        Raises OutOfTime, without taking the slot, when the wait would outlast the deadline.
        For callers that do not report each answer with its ticket (see `take`)."""
        return self._take(deadline, probe=False).waited_s

    def take(self, deadline: Deadline = UNLIMITED) -> Ticket:
        """As `acquire`, for a request whose answer will be passed to `observe` with the ticket:
        that is what the rate is learned from."""
        return self._take(deadline, probe=True)

    def _take(self, deadline: Deadline, *, probe: bool) -> Ticket:
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                probing = probe and self._probing(now)
                wait = PROBE_POLL_S if probing else self._next_slot(now) - now
                deadline.ensure(wait + MIN_ATTEMPT_S, "waiting for the rate-limit share")
                ticket = None if probing else self._reserve(now, waited)
                if ticket is not None and probe and not self._answered:
                    self._probe_sent_at = ticket.sent_at
            if wait > 0:
                self._sleep(wait)
                waited += wait
            if ticket is not None:
                return ticket

    def _probing(self, now: float) -> bool:
        """Whether the first request is still out and unanswered (and not for too long)."""
        sent = self._probe_sent_at
        return not self._answered and sent is not None and now - sent < PROBE_WAIT_S

    def _next_slot(self, now: float) -> float:
        tolerance = (self._burst - 1.0) * self._interval
        start = max(self._theoretical_arrival, now)
        return max(now, start - tolerance, self._not_before)

    def _reserve(self, now: float, waited: float) -> Ticket:
        """Take the next slot of the budget (under the lock)."""
        slot = self._next_slot(now)
        self._theoretical_arrival = max(self._theoretical_arrival, slot) + self._interval
        self._sent += 1
        wait = slot - now
        return Ticket(waited_s=waited + wait, sent_at=slot, taken_before=self._taken)

    def observe(
        self,
        headers: RateLimitHeaders | None,
        *,
        ticket: Ticket | None = None,
        limited: bool = False,
        now: float | None = None,
    ) -> None:
        """Learn from an answer: its rate-limit headers (None if it had none), the ticket its
        request was sent with, and whether it was a 429."""
        now = self._clock() if now is None else now
        usable = headers if headers is not None and headers.limit > 0 else None
        with self._lock:
            self._answered = self._answered or ticket is not None
            if usable is not None:
                self._burst = max(1.0, self._share * usable.limit)
                if ticket is not None:
                    self._estimator.add(self._answer(usable, ticket, now, limited))
                if not limited:
                    self._taken += 1  # a 429 takes no token
            if limited:
                # Even without headers: someone took more than the bounds allowed for.
                self._estimator.limited(now)
            self._set_rate(now)
            if usable is not None:
                self._leave_reserve(usable, now)

    def _answer(
        self, headers: RateLimitHeaders, ticket: Ticket, now: float, limited: bool
    ) -> Answer:
        return Answer(
            sent_at=ticket.sent_at,
            received_at=max(now, ticket.sent_at),
            limit=headers.limit,
            remaining=headers.remaining,
            reset_s=headers.reset_epoch_s,
            took=not limited,
            taken_before=ticket.taken_before,
            sent_by_answer=self._sent,
        )

    def _set_rate(self, now: float) -> None:
        """Pace by the estimate (never above the cap). A schedule already running ahead of now
        is rescaled, so that the requests it still owes are owed at the new pace."""
        rate = self._estimator.rate(now, self._assumed, self._share)
        if self._cap is not None:
            rate = min(rate, self._cap)
        if rate == self._rate:
            return
        interval = 1.0 / (self._share * rate)
        ahead = self._theoretical_arrival - now
        if ahead > 0:
            self._theoretical_arrival = now + ahead * interval / self._interval
        if not 0.8 < rate / self._rate < 1.25:
            logger.debug("Auth0 rate limit estimate", extra={"per_s": round(rate, 3)})
        self._rate, self._interval = rate, interval

    def _leave_reserve(self, headers: RateLimitHeaders, now: float) -> None:
        """Others (or we) drained the bucket below what we leave them: wait until it has refilled
        that far. The bucket is full by the reset (on our clock, give or take SKEW_S); before
        that, only a proven refill rate is trusted. A reset already past says nothing."""
        reserve = (1.0 - self._share) * headers.limit
        if headers.remaining >= reserve:
            return
        missing = reserve - headers.remaining
        candidates = []
        full = headers.reset_epoch_s + SKEW_S
        if full > now:
            candidates.append(full)
        if self._estimator.lower > 0:
            candidates.append(now + missing / self._estimator.lower)
        until = min(candidates) if candidates else now + missing / self._rate
        self._not_before = max(self._not_before, until)

    def back_off_until(self, instant: float) -> None:
        """After a 429: nobody in this process sends before `instant`."""
        with self._lock:
            self._not_before = max(self._not_before, instant)


__all__ = [
    "START_PER_SECOND",
    "Answer",
    "Pacer",
    "PacerState",
    "RateEstimator",
    "RateLimitHeaders",
    "Ticket",
]
