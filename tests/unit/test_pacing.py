"""The pacer: at most a share of the tenant's rate limit, and slowing down before a 429.

Pure tests use a fake clock and a sleep that records the wait and moves that clock. One test uses
the real clock with a tiny interval, to check spacing under real threads; the last ones drive the
Auth0 client against the simulator's token bucket, again on a shared fake clock.
"""

from __future__ import annotations

import copy
import itertools
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from devtools.auth0_simulator import Auth0Simulator, RateLimit
from log_forwarder.auth0_client import Auth0Client, ClientCredentials
from log_forwarder.pacing import (
    PROBE_WAIT_S,
    SKEW_S,
    START_PER_SECOND,
    Answer,
    Pacer,
    RateEstimator,
    RateLimitHeaders,
    Ticket,
)
from tests.fakes import FakeClock

T0 = 1_795_600_000.0  # 2026-11-25T08:26:40Z
# Instants near T0 are floats with a resolution of ~2e-7 s, and the pacer adds intervals to them:
# comparisons of instants allow a few microseconds.
EPS = 1e-5


class RecordingSleep:
    """Records each requested wait and moves the fake clock by it."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.clock.advance(seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def sleep(clock: FakeClock) -> RecordingSleep:
    return RecordingSleep(clock)


class YieldingInstant(float):
    """An instant that lets other threads run whenever it is compared: the pacer compares `now`
    with its schedule between reading and writing it, so this widens any unguarded window."""

    def __gt__(self, other: object) -> bool:
        time.sleep(0)
        return float(self) > float(other)  # type: ignore[arg-type]

    def __lt__(self, other: object) -> bool:
        time.sleep(0)
        return float(self) < float(other)  # type: ignore[arg-type]

    def __ge__(self, other: object) -> bool:
        time.sleep(0)
        return float(self) >= float(other)  # type: ignore[arg-type]

    def __le__(self, other: object) -> bool:
        time.sleep(0)
        return float(self) <= float(other)  # type: ignore[arg-type]


def headers(limit: int, remaining: int, reset: float) -> RateLimitHeaders:
    return RateLimitHeaders(limit=limit, remaining=remaining, reset_epoch_s=reset)


def answer(
    pacer: Pacer,
    clock: FakeClock,
    *,
    limit: int,
    remaining: int,
    reset: float,
    travel: float = 0.0,
    limited: bool = False,
) -> Ticket:
    """One request through the pacer, answered `travel` seconds after it went with these headers."""
    ticket = pacer.take()
    clock.advance(travel)
    pacer.observe(headers(limit, remaining, reset), ticket=ticket, limited=limited)
    return ticket


def acquire_times(pacer: Pacer, clock: FakeClock, count: int) -> list[float]:
    times = []
    for _ in range(count):
        pacer.acquire()
        times.append(clock())
    return times


def max_in_window_violation(times: list[float], burst: float, rate: float) -> float:
    """The largest excess, over every window [t_i, t_j], of requests over burst + rate × length."""
    worst = float("-inf")
    ordered = sorted(times)
    for i in range(len(ordered)):
        for j in range(i, len(ordered)):
            allowed = burst + rate * (ordered[j] - ordered[i])
            worst = max(worst, (j - i + 1) - allowed)
    return worst


# -- the budget: share × rate sustained, share × bucket as burst --------------------------------


def test_before_any_headers_requests_are_evenly_spaced(
    clock: FakeClock, sleep: RecordingSleep
) -> None:
    # GIVEN a pacer for half of 16 requests/s that has not seen a rate-limit header yet
    pacer = Pacer(share=0.5, per_second=16, clock=clock, sleep=sleep)
    # WHEN five requests are acquired at once
    times = acquire_times(pacer, clock, 5)
    # THEN they go out 1/8 s apart: no burst until the bucket size is known
    assert [t - T0 for t in times] == pytest.approx([0, 0.125, 0.25, 0.375, 0.5], abs=EPS)
    assert sleep.waits == pytest.approx([0.125] * 4, abs=EPS)
    # AND each acquire reports the wait it cost (the run's pacing wait adds these up)
    assert pacer.acquire() == pytest.approx(0.125, abs=EPS)


def test_sustained_rate_and_burst_stay_within_the_share(
    clock: FakeClock, sleep: RecordingSleep
) -> None:
    # GIVEN share 0.5 of an Enterprise limit (16/s) and a learned bucket of 50
    pacer = Pacer(share=0.5, per_second=16, clock=clock, sleep=sleep)
    pacer.observe(headers(limit=50, remaining=50, reset=T0), now=T0)
    rng = random.Random(11)

    # WHEN 400 requests are acquired by a caller that sometimes works between them, once idles
    # for 20 s and then asks for 25 at once, and once meets a back-off and then does the same
    times: list[float] = []
    for n in range(400):
        if n == 150:
            clock.advance(20.0)
        elif n == 300:
            pacer.back_off_until(clock() + 5.0)
        elif not (150 <= n < 175 or 300 <= n < 325) and rng.random() < 0.3:
            clock.advance(rng.uniform(0, 0.4))
        pacer.acquire()
        times.append(clock())

    # THEN no window ever held more than share×burst + share×rate×its length
    assert max_in_window_violation(times, burst=25, rate=8) <= 0.001
    # AND the budget was really used: a bound one request tighter is broken (after the idle
    # period and after the back-off, the full burst of 25 went out at once)
    assert max_in_window_violation(times, burst=24, rate=8) > 0.5
    assert times[150:175] == pytest.approx([times[150]] * 25, abs=EPS)
    assert times[300:325] == pytest.approx([times[300]] * 25, abs=EPS)


def test_continuous_demand_runs_at_share_times_rate(
    clock: FakeClock, sleep: RecordingSleep
) -> None:
    # GIVEN share 0.25 of 20/s (5/s for us) and a learned bucket of 40 (burst 10 for us)
    pacer = Pacer(share=0.25, per_second=20, clock=clock, sleep=sleep)
    pacer.observe(headers(limit=40, remaining=40, reset=T0), now=T0)
    # WHEN 110 requests are acquired back to back
    times = acquire_times(pacer, clock, 110)
    # THEN the burst of 10 goes at once, then they run at exactly 5/s: 100 more take 20 s
    assert times[:10] == pytest.approx([T0] * 10, abs=EPS)
    assert times[10] - T0 == pytest.approx(0.2, abs=EPS)
    assert times[-1] - T0 == pytest.approx(100 / 5, abs=EPS)
    assert max_in_window_violation(times, burst=10, rate=5) <= 0.001


def test_concurrent_acquires_each_get_their_own_slot(clock: FakeClock) -> None:
    # GIVEN a frozen clock whose reads and instants yield to other threads (so a schedule read
    # and written without the lock would be caught), and a sleep that only records
    waits: list[float] = []
    waits_lock = threading.Lock()

    def yielding_clock() -> float:
        time.sleep(0)
        return YieldingInstant(clock())

    def record(seconds: float) -> None:
        with waits_lock:
            waits.append(seconds)

    pacer = Pacer(share=0.5, per_second=20, clock=yielding_clock, sleep=record)
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        for _ in range(25):
            pacer.acquire()

    # WHEN eight threads acquire 25 times each at the same instant
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    # THEN the 200 reservations are exactly the slots 0, 0.1 s, 0.2 s, ...: none shared, none lost
    slots = sorted([0.0] * (200 - len(waits)) + waits)  # a zero wait is not slept
    assert len(waits) == 199
    # (adding 0.1 s 200 times to an epoch-sized float drifts by a few tens of microseconds)
    assert slots == pytest.approx([k * 0.1 for k in range(200)], abs=1e-4)
    assert all(b - a > 0.09 for a, b in itertools.pairwise(slots))


def test_real_threads_respect_the_spacing() -> None:
    # GIVEN a pacer on the real clock allowing one request per 4 ms
    interval = 0.004
    pacer = Pacer(share=0.5, per_second=2 / interval, clock=time.monotonic, sleep=time.sleep)
    returned: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def worker() -> None:
        barrier.wait()
        for _ in range(15):
            pacer.acquire()
            now = time.monotonic()
            with lock:
                returned.append(now)

    # WHEN six threads acquire 15 times each, all starting together
    start = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    # THEN the k-th request to get through did so no earlier than k intervals after the start
    returned.sort()
    assert len(returned) == 90
    for k, when in enumerate(returned):
        assert when - start >= k * interval - 1e-4, f"request {k} came {when - start:.4f}s in"
    # AND it all took well under a second
    assert returned[-1] - start < 1.0


# -- what Auth0's headers say ---------------------------------------------------------------------


def test_low_remaining_waits_for_a_proven_refill(clock: FakeClock, sleep: RecordingSleep) -> None:
    # GIVEN a bucket of 40 seen to refill 10 tokens in 1 s, net of the request in between (which
    # took one, and of the token given away for a refill in steps: see RateEstimator)
    pacer = Pacer(share=0.5, clock=clock, sleep=sleep)
    answer(pacer, clock, limit=40, remaining=20, reset=T0 + 2)
    clock.advance(1.0)
    answer(pacer, clock, limit=40, remaining=31, reset=T0 + 2)
    assert pacer.state().lower_per_s == pytest.approx(10.0)
    # AND then others drain it to 4, though it will not be full for 100 s (we leave them 20)
    pacer.observe(headers(limit=40, remaining=4, reset=T0 + 100))
    # WHEN the next request is acquired
    sleep.waits.clear()
    pacer.acquire()
    # THEN it waits until the bucket has refilled to the reserve at the proven rate: 16 at 10/s
    assert sleep.waits == pytest.approx([1.6])


def test_without_a_proven_refill_rate_it_waits_for_the_reset(
    clock: FakeClock, sleep: RecordingSleep
) -> None:
    # GIVEN an empty bucket of 20 that resets in 0.4 s, and no refill rate proven yet (an assumed
    # rate is not trusted for this: a slower tenant would answer 429)
    pacer = Pacer(share=0.5, per_second=10, clock=clock, sleep=sleep)
    pacer.observe(headers(limit=20, remaining=0, reset=T0 + 0.4))
    # WHEN the next request is acquired THEN it waits until the reset, plus the clock skew allowed
    pacer.acquire()
    assert sleep.waits == pytest.approx([0.4 + SKEW_S])


def test_reset_in_the_past_falls_back_to_the_assumed_rate(
    clock: FakeClock, sleep: RecordingSleep
) -> None:
    # GIVEN an empty bucket whose reported reset is already past (a skewed clock): it says nothing
    pacer = Pacer(share=0.5, per_second=10, clock=clock, sleep=sleep)
    pacer.observe(headers(limit=20, remaining=0, reset=T0 - 5))
    # WHEN the next request is acquired THEN it waits for 10 tokens at the assumed 10/s
    pacer.acquire()
    assert sleep.waits == pytest.approx([1.0])


def test_remaining_at_the_reserve_adds_no_wait_and_teaches_the_burst(
    clock: FakeClock, sleep: RecordingSleep
) -> None:
    # GIVEN a bucket of 20 with exactly our reserve (10) left
    pacer = Pacer(share=0.5, per_second=10, clock=clock, sleep=sleep)
    pacer.observe(headers(limit=20, remaining=10, reset=T0 + 100))
    # WHEN eleven requests are acquired at once
    times = acquire_times(pacer, clock, 11)
    # THEN our burst of share × 20 = 10 goes at once, and the 11th waits one interval (0.2 s)
    assert times[:10] == pytest.approx([T0] * 10, abs=EPS)
    assert [w for w in sleep.waits if w > EPS] == pytest.approx([0.2], abs=EPS)


def test_a_later_full_bucket_does_not_cancel_a_pending_wait(
    clock: FakeClock, sleep: RecordingSleep
) -> None:
    # GIVEN a pending wait of 0.6 s, until the reset
    pacer = Pacer(share=0.5, per_second=10, clock=clock, sleep=sleep)
    pacer.observe(headers(limit=20, remaining=4, reset=T0 + 0.6 - SKEW_S))
    # WHEN a stale answer then reports a full bucket
    pacer.observe(headers(limit=20, remaining=20, reset=T0))
    # THEN the wait still holds
    pacer.acquire()
    assert sleep.waits == pytest.approx([0.6])


@pytest.mark.parametrize("seen", [None, headers(limit=0, remaining=0, reset=T0 + 30)])
def test_missing_or_empty_headers_change_nothing(
    clock: FakeClock, sleep: RecordingSleep, seen: RateLimitHeaders | None
) -> None:
    # GIVEN a pacer that is told nothing usable
    pacer = Pacer(share=0.5, per_second=10, clock=clock, sleep=sleep)
    pacer.observe(seen)
    # WHEN two requests are acquired THEN the first goes at once and no burst was learned
    acquire_times(pacer, clock, 2)
    assert sleep.waits == pytest.approx([0.2])


def test_back_off_until_holds_every_request_until_the_instant(
    clock: FakeClock, sleep: RecordingSleep
) -> None:
    # GIVEN a pacer with a learned burst of 5, told to back off for 5 s
    pacer = Pacer(share=0.5, per_second=10, clock=clock, sleep=sleep)
    pacer.observe(headers(limit=10, remaining=10, reset=T0))
    pacer.back_off_until(T0 + 5)
    # AND told an earlier instant afterwards, which must not shorten it
    pacer.back_off_until(T0 + 1)

    # WHEN six requests are acquired
    times = acquire_times(pacer, clock, 6)

    # THEN none went before the instant; the burst then resumes at the paced rate
    assert min(times) == pytest.approx(T0 + 5, abs=EPS)
    assert times[:5] == pytest.approx([T0 + 5] * 5, abs=EPS)
    assert times[5] - T0 == pytest.approx(5.2, abs=EPS)
    # AND a back-off to an instant already past costs nothing
    pacer.back_off_until(clock() - 10)
    clock.advance(10)
    before = len(sleep.waits)
    pacer.acquire()
    assert len(sleep.waits) == before


# -- the estimator, against a model of Auth0's bucket ---------------------------------------------


@dataclass
class TenantBucket:
    """Auth0's bucket as documented (and as the simulator has it): refills continuously; a request
    takes a token unless it is answered 429; `remaining` is the whole tokens left after it;
    `reset` the instant the bucket will be full, rounded up to a second, on Auth0's clock
    (`skew_s` ahead of ours)."""

    limit: int
    rate: float
    skew_s: float = 0.0
    level: float = -1.0
    at: float | None = None

    def take(self, now: float) -> tuple[int, float, bool]:
        if self.level < 0:
            self.level = float(self.limit)
        if self.at is not None:
            self.level = min(self.limit, self.level + (now - self.at) * self.rate)
        self.at = now
        limited = self.level < 1
        if not limited:
            self.level -= 1
        full = now + self.skew_s + (self.limit - self.level) / self.rate
        return math.floor(self.level), float(math.ceil(full)), limited


@dataclass(frozen=True)
class Sent:
    """One of our requests: when it went, how long it travelled to Auth0 and back, and whether
    its answer lost its rate-limit headers (a gateway in between)."""

    at: float
    out: float
    back: float
    headers: bool = True


def feed(
    estimator: RateEstimator,
    bucket: TenantBucket,
    ours: list[Sent],
    others: list[float] = (),  # type: ignore[assignment]
    check: Callable[[float], None] | None = None,
) -> int:
    """Plays the requests through the bucket in time order, other clients' takes included, and
    gives the estimator each answer as the pacer would (with what its ticket counted). Returns
    the 429s we got. `check(now)` runs after each answer."""
    handled = sorted(
        [(r.at + r.out, 0, i) for i, r in enumerate(ours)] + [(t, 1, -1) for t in others]
    )
    seen: dict[int, tuple[int, float, bool]] = {}
    for at, _, i in handled:
        taken = bucket.take(at)
        if i >= 0:
            seen[i] = taken
    answered = sorted(range(len(ours)), key=lambda i: ours[i].at + ours[i].out + ours[i].back)
    limited_count = 0
    for i in answered:
        request = ours[i]
        received = request.at + request.out + request.back
        remaining, reset, limited = seen[i]
        limited_count += limited
        if not request.headers:
            continue
        estimator.add(
            Answer(
                sent_at=request.at,
                received_at=received,
                limit=bucket.limit,
                remaining=remaining,
                reset_s=reset,
                took=not limited,
                # As the pacer counts them: our answers with headers, no 429, in before this went
                taken_before=sum(
                    1
                    for j, other in enumerate(ours)
                    if other.headers
                    and not seen[j][2]
                    and other.at + other.out + other.back <= request.at
                ),
                sent_by_answer=sum(1 for other in ours if other.at <= received),
            )
        )
        if limited:
            estimator.limited(received)
        if check is not None:
            check(received)
    return limited_count


def workers(
    start: float, count: int, *, concurrency: int, out: float, back: float, gap: float = 0.0
) -> list[Sent]:
    """`concurrency` workers each sending its next request when its answer is in (plus `gap`)."""
    free = [start] * concurrency
    sent = []
    for _ in range(count):
        k = free.index(min(free))
        sent.append(Sent(free[k], out, back))
        free[k] += out + back + gap
    return sent


def test_enterprise_burst_and_refill_bound_the_rate_on_both_sides() -> None:
    # GIVEN an Enterprise bucket (50, 16/s) drained by 4 workers 150 ms away, at 26 calls/s
    estimator = RateEstimator()
    bucket = TenantBucket(limit=50, rate=16)
    calls = workers(T0, 40, concurrency=4, out=0.1, back=0.05)
    # WHEN it sees their answers
    assert feed(estimator, bucket, calls) == 0
    # THEN the rate is proven to be at least 10/s (and at most some finite rate), and the pace
    # is 10 % above that lower bound (which, for the round trips it cannot see into, is low)
    lower, upper = estimator.bounds(calls[-1].at)
    assert 10 <= lower <= 16 <= upper < math.inf
    assert estimator.rate(calls[-1].at, assumed=START_PER_SECOND, share=0.5) == pytest.approx(
        lower * 1.1
    )
    # AND a client allowed all of the limit (share 1) is never paced above what is proven: with
    # nothing left to others, there would be no reserve to catch the difference before a 429
    assert estimator.rate(calls[-1].at, assumed=START_PER_SECOND, share=1.0) == pytest.approx(lower)


def test_the_first_answer_of_a_slow_tenant_lowers_the_assumed_rate() -> None:
    # GIVEN a slow tenant refilling one request in 2 s (its reset says when)
    estimator = RateEstimator()
    bucket = TenantBucket(limit=10, rate=0.5)
    # WHEN a single answer arrives, 100 ms after the request went at T0 + 0.3: handled at
    # T0 + 0.35, full 2 s later, reset T0 + 3
    feed(estimator, bucket, [Sent(T0 + 0.3, 0.05, 0.05)])
    # THEN the assumed 100/min gives way: the refill took at least 3 − 1 − 0.4 − SKEW_S s (so
    # at most 1/1.5 req/s) and at most 3 − 0.3 + SKEW_S s; the slowest is paced by, 1/2.8 req/s
    assert estimator.upper(T0 + 1) == pytest.approx(1 / (1.6 - SKEW_S))
    assert estimator.rate(T0 + 1, assumed=START_PER_SECOND) == pytest.approx(1 / (2.7 + SKEW_S))


def test_other_clients_draining_the_bucket_never_raise_the_lower_bound() -> None:
    # GIVEN a Free bucket (2, 2/s) that another client drains with bursts of takes while we send
    # one request a second for a minute
    rng = random.Random(4)
    estimator = RateEstimator()
    bucket = TenantBucket(limit=2, rate=2)
    ours = [Sent(T0 + k + rng.uniform(0, 0.3), 0.08, 0.04) for k in range(60)]
    others = sorted(T0 + rng.uniform(0, 60) for _ in range(70))

    def check(now: float) -> None:
        assert estimator.bounds(now)[0] <= 2.0

    # WHEN the estimator sees our answers THEN no bound ever says the bucket refills faster
    feed(estimator, bucket, ours, others, check)
    lower, upper = estimator.bounds(T0 + 61)
    assert 0 < lower <= 2 <= upper


@pytest.mark.parametrize("skew", [-30.0, -2.0, -0.5, 0.5, 2.0, 30.0])
def test_clock_skew_does_not_move_the_proven_bounds(skew: float) -> None:
    # GIVEN an Enterprise bucket whose resets come from a clock `skew` seconds off ours (-30: every
    # reset is in the past; +30: every bucket looks 30 s from full)
    estimator = RateEstimator()
    bucket = TenantBucket(limit=50, rate=16, skew_s=skew)
    calls = workers(T0, 60, concurrency=4, out=0.1, back=0.05, gap=0.2)
    # WHEN it sees their answers
    feed(estimator, bucket, calls)
    # THEN the proven bounds still hold and the pace learned from them is used
    lower, upper = estimator.bounds(calls[-1].at)
    assert 8 <= lower <= 16 <= upper
    rate = estimator.rate(calls[-1].at, assumed=START_PER_SECOND)
    assert lower <= rate <= 1.1 * lower


def test_answers_without_headers_are_skipped() -> None:
    # GIVEN 60 calls on an Enterprise bucket, one in three answered by a gateway without headers
    estimator = RateEstimator()
    bucket = TenantBucket(limit=50, rate=16)
    calls = [
        Sent(c.at, c.out, c.back, headers=k % 3 != 0)
        for k, c in enumerate(workers(T0, 60, concurrency=4, out=0.1, back=0.05))
    ]
    feed(estimator, bucket, calls)
    # THEN it learned from the others, and nothing wrong
    assert estimator.answers == 40
    lower, upper = estimator.bounds(calls[-1].at)
    assert 8 <= lower <= 16 <= upper


def test_a_new_bucket_size_starts_learning_again() -> None:
    # GIVEN an estimator that learned an Enterprise tenant
    estimator = RateEstimator()
    feed(
        estimator,
        TenantBucket(limit=50, rate=16),
        workers(T0, 40, concurrency=4, out=0.1, back=0.05),
    )
    assert estimator.lower > 8
    # WHEN the answers start saying the bucket holds 10 (another plan)
    later = workers(T0 + 100, 1, concurrency=1, out=0.1, back=0.05)
    feed(estimator, TenantBucket(limit=10, rate=100 / 60), later)
    # THEN nothing learned of the old bucket is kept
    assert estimator.limit == 10
    assert estimator.bounds(T0 + 101) == (0.0, math.inf)
    assert estimator.rate(T0 + 101, assumed=START_PER_SECOND) <= START_PER_SECOND


def test_a_rate_that_drops_under_the_same_bucket_size_is_learned_again() -> None:
    # GIVEN an estimator that learned 16/s on a bucket of 50
    estimator = RateEstimator()
    bucket = TenantBucket(limit=50, rate=16)
    first = workers(T0, 40, concurrency=4, out=0.1, back=0.05)
    feed(estimator, bucket, first)
    assert estimator.lower > 8
    # WHEN the same bucket now refills at 4/s and is drained at 10/s
    bucket.rate = 4
    second = workers(first[-1].at + 1, 60, concurrency=4, out=0.1, back=0.05, gap=0.25)
    feed(estimator, bucket, second)
    # THEN a proven upper bound contradicted the old lower bound, and what it knows now holds
    lower, upper = estimator.bounds(second[-1].at)
    assert lower <= 4 <= upper


def test_a_429_halves_what_is_assumed_for_five_minutes() -> None:
    estimator = RateEstimator()
    estimator.add(
        Answer(
            T0,
            T0 + 0.1,
            limit=50,
            remaining=0,
            reset_s=T0 + 1,
            took=False,
            taken_before=0,
            sent_by_answer=1,
        )
    )
    estimator.limited(T0 + 0.1)
    estimator.limited(T0 + 0.2)
    assert estimator.rate(T0 + 1, assumed=16) == pytest.approx(4)
    assert estimator.rate(T0 + 301, assumed=16) == pytest.approx(16)


def test_a_429_without_headers_still_makes_the_pacer_more_careful(clock: FakeClock) -> None:
    # GIVEN a pacer assuming 16/s, whose request is answered 429 by something that sends no
    # rate-limit headers
    pacer = Pacer(share=0.5, per_second=16, clock=clock, sleep=RecordingSleep(clock))
    pacer.observe(None, ticket=pacer.take(), limited=True)
    # THEN it assumes half as much, for five minutes
    assert pacer.state().rate_per_s == pytest.approx(8)
    clock.advance(301)
    pacer.observe(None, ticket=pacer.take())
    assert pacer.state().rate_per_s == pytest.approx(16)


def test_upper_bounds_kept_are_at_most_one_per_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN 600 answers of workers draining an Enterprise bucket at 26/s (with 429s), each pair
    # of answers giving bounds
    estimator = RateEstimator()
    added_by: list[int] = []  # the answer (by count) each kept upper bound came with
    monkeypatch.setattr(
        estimator._upper, "add", lambda at, value: added_by.append(estimator.answers)
    )
    feed(
        estimator,
        TenantBucket(limit=50, rate=16),
        workers(T0, 600, concurrency=4, out=0.1, back=0.05),
    )
    # THEN each answer added at most one (the window's memory is bounded by the answers of its
    # 5 minutes, however the bounds vary: rising ones are all kept)
    assert added_by
    assert len(added_by) == len(set(added_by))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    limit=st.integers(1, 100),
    rate=st.floats(0.05, 50),
    skew=st.floats(-5, 5),
    concurrency=st.integers(1, 6),
    travel=st.lists(
        st.tuples(st.floats(0.001, 0.4), st.floats(0.001, 0.4)), min_size=1, max_size=8
    ),
    gaps=st.lists(st.floats(0, 3), min_size=1, max_size=8),
    others=st.lists(st.floats(0, 60), max_size=80),
    lost=st.sets(st.integers(0, 119), max_size=30),
    count=st.integers(1, 120),
)
# A 429 on a tenant slower than assumed: the halved guess fell under the upper bound, skipped the
# slow-tenant choice, and the pace was faster than without the 429 (0.83/s against 0.48/s; found
# by CI; `rate` now halves after that choice).
@example(
    limit=1,
    rate=0.75,
    skew=0.0,
    concurrency=1,
    travel=[(0.25, 0.25)],
    gaps=[0.0, 1.5],
    others=[],
    lost=set(),
    count=3,
)
# One-token buckets, where a 429's reset bounds the rate from above only (found by seeds 37 and,
# in review, 7): the proven bounds hold, and the 429 does not make the pace faster.
@example(
    limit=1,
    rate=0.25,
    skew=0.0,
    concurrency=1,
    travel=[(0.25, 0.25)],
    gaps=[0.0],
    others=[0.0],
    lost=set(),
    count=1,
)
@example(
    limit=1,
    rate=0.5,
    skew=-0.0625,
    concurrency=1,
    travel=[(0.015625, 0.125)],
    gaps=[0.0],
    others=[],
    lost={0},
    count=2,
)
def test_bounds_hold_whatever_the_timing_the_skew_and_the_other_clients(
    limit: int,
    rate: float,
    skew: float,
    concurrency: int,
    travel: list[tuple[float, float]],
    gaps: list[float],
    others: list[float],
    lost: set[int],
    count: int,
) -> None:
    # GIVEN any bucket, Auth0's clock up to 5 s off ours, our workers sending with any travel
    # times and pauses, some answers without headers, and another client taking tokens at will
    estimator = RateEstimator()
    bucket = TenantBucket(limit=limit, rate=rate, skew_s=skew)
    free = [T0] * concurrency
    ours = []
    for k in range(count):
        w = free.index(min(free))
        out, back = travel[k % len(travel)]
        ours.append(Sent(free[w], out, back, headers=k not in lost))
        free[w] += out + back + gaps[k % len(gaps)]
    assumed = START_PER_SECOND

    def check(now: float) -> None:
        lower, upper = estimator.bounds(now)
        # THEN the proven bounds always hold
        assert lower <= rate * (1 + 1e-9)
        assert upper >= rate * (1 - 1e-9)
        # AND the pace is never above the assumed rate or 1.1 × the true one
        assert estimator.rate(now, assumed) <= max(assumed, 1.1 * rate) * (1 + 1e-9)
        # AND a 429 never makes the pace faster than the same answers would without it
        unlimited = copy.deepcopy(estimator)
        unlimited._limited_at.clear()
        assert estimator.rate(now, assumed) <= unlimited.rate(now, assumed)
        # AND with the clocks within the allowed skew, nor is the clock-dependent bound wrong,
        # and a tenant shown slower than assumed is paced at most 1.1 × its rate. Not for a
        # bucket of one token: a 429 leaves it with a deficit anywhere in (0, 1], so its reset
        # bounds the rate from above only (Auth0's documented buckets hold 2 or more).
        if abs(skew) <= SKEW_S:
            assert estimator.upper(now) >= rate * (1 - 1e-9)
            if estimator.upper(now) < assumed and limit >= 2:
                assert estimator.rate(now, assumed) <= 1.1 * rate * (1 + 1e-9)

    feed(estimator, bucket, ours, sorted(T0 + t for t in others), check)


# -- RateLimitHeaders.parse -----------------------------------------------------------------------


def test_parse_reads_the_three_headers() -> None:
    # GIVEN Auth0's headers, in any letter case
    raw = httpx.Headers(
        {
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "49",
            "X-RateLimit-Reset": "1795600003",
        }
    )
    # THEN they are parsed, the reset as UNIX seconds
    assert RateLimitHeaders.parse(raw) == headers(limit=50, remaining=49, reset=1_795_600_003.0)


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"x-ratelimit-remaining": "49", "x-ratelimit-reset": "1795600003"},
        {"x-ratelimit-limit": "50", "x-ratelimit-reset": "1795600003"},
        {"x-ratelimit-limit": "50", "x-ratelimit-remaining": "49"},
        {"x-ratelimit-limit": "fifty", "x-ratelimit-remaining": "49", "x-ratelimit-reset": "1"},
        {"x-ratelimit-limit": "", "x-ratelimit-remaining": "49", "x-ratelimit-reset": "1"},
        {"x-ratelimit-limit": "50", "x-ratelimit-remaining": "4.5", "x-ratelimit-reset": "1"},
        {"x-ratelimit-limit": "50", "x-ratelimit-remaining": "49", "x-ratelimit-reset": "soon"},
        {"x-ratelimit-limit": "50", "x-ratelimit-remaining": "49", "x-ratelimit-reset": "nan"},
        {"x-ratelimit-limit": "50", "x-ratelimit-remaining": "49", "x-ratelimit-reset": "inf"},
        {"x-ratelimit-limit": "50", "x-ratelimit-remaining": "49", "x-ratelimit-reset": "-inf"},
    ],
)
def test_parse_missing_or_garbage_headers_is_none(raw: dict[str, str]) -> None:
    # GIVEN headers with one of the three missing, or not a (finite) number
    # WHEN they are parsed, as httpx headers or as a plain mapping THEN there is nothing to learn
    assert RateLimitHeaders.parse(httpx.Headers(raw)) is None
    assert RateLimitHeaders.parse(raw) is None


# -- the client and the simulator's bucket ------------------------------------------------------


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[Auth0Simulator]:
    with Auth0Simulator(clock=clock, rate_limit=RateLimit(burst=10, per_second=20)) as simulator:
        simulator.add_event({"date": "2026-11-25T08:00:00.000Z", "type": "s", "user_id": "auth0|u"})
        yield simulator


def run_calls(
    sim: Auth0Simulator, clock: FakeClock, *, share: float, per_second: float, calls: int
) -> tuple[Auth0Client, list[int], float]:
    """`calls` user_logs calls, one after another; returns the client, every x-ratelimit-remaining
    seen, and the simulated seconds it took."""
    remaining: list[int] = []

    def watch(response: httpx.Response) -> None:
        if "x-ratelimit-remaining" in response.headers:
            remaining.append(int(response.headers["x-ratelimit-remaining"]))

    sleep = RecordingSleep(clock)
    with httpx.Client(timeout=5, event_hooks={"response": [watch]}) as http:
        client = Auth0Client(
            domain=sim.domain,
            base_url=sim.base_url,
            credentials=lambda _force: ClientCredentials(sim.client_id, sim.client_secret),
            pacer=Pacer(share=share, per_second=per_second, clock=clock, sleep=sleep),
            http=http,
            clock=clock,
            sleep=sleep,
            rng=random.Random(5),
        )
        start = clock()
        for _ in range(calls):
            assert len(client.user_logs("auth0|u", page=0)) == 1
        return client, remaining, clock() - start


def test_client_paced_at_its_share_never_meets_a_429(sim: Auth0Simulator, clock: FakeClock) -> None:
    # GIVEN a tenant bucket of 10 refilling at 20/s, and a client allowed half of it
    # WHEN the client makes 60 calls as fast as it may
    client, remaining, took = run_calls(sim, clock, share=0.5, per_second=20, calls=60)

    # THEN Auth0 never answered 429
    assert sim.stats.rate_limited == 0
    assert client.stats.rate_limited == 0
    assert sim.stats.requests[("user_logs", 200)] == 60
    # AND it left the other half of the bucket to the tenant's other tools
    assert min(remaining) >= 5
    # AND it still used its share: 5 at once, then 10/s
    assert took == pytest.approx((60 - 5) / 10, abs=0.01)


def test_client_paced_past_the_limit_does_meet_429s(sim: Auth0Simulator, clock: FakeClock) -> None:
    # GIVEN the same tenant, and a client told the tenant allows 200/s and all of it is ours
    # WHEN it makes 60 calls
    client, remaining, _ = run_calls(sim, clock, share=1.0, per_second=200, calls=60)
    # THEN the simulator's limit does bite (so the test above can fail), and every 429 was
    # waited out: all 60 calls still succeeded
    assert sim.stats.rate_limited > 0
    assert client.stats.rate_limited == sim.stats.rate_limited
    assert sim.stats.requests[("user_logs", 200)] == 60
    assert min(remaining) == 0


# -- zero configuration, end to end: the client and the simulator on one fake clock ------------


class Tenant:
    """A simulated tenant on a fake clock, our client's round trips (the clock moves `out` while a
    request travels to Auth0 and `back` while its answer returns), and optionally another client
    of the same tenant calling evenly at `neighbour_per_s`: each of its calls is made the moment
    the clock passes its instant (it sees no latency), so it runs concurrently with ours."""

    def __init__(
        self,
        clock: FakeClock,
        limit: RateLimit,
        *,
        out: float = 0.1,
        back: float = 0.05,
        neighbour_per_s: float = 0.0,
        skew_s: float = 0.0,
    ) -> None:
        self.clock = clock
        self.out, self.back = out, back
        self.sim = Auth0Simulator(clock=lambda: clock() + skew_s, rate_limit=limit)
        self.sim.start()
        self.sim.add_event({"date": "2026-11-25T08:00:00.000Z", "type": "s", "user_id": "auth0|u"})
        self.neighbour_per_s = neighbour_per_s
        self.neighbour_statuses: list[int] = []
        self._neighbour_due = clock() + 0.37
        self._neighbour = httpx.Client(base_url=self.sim.base_url, timeout=5)
        self._neighbour_token = ""
        self.http = httpx.Client(
            timeout=5,
            event_hooks={
                "request": [lambda _request: self.advance(self.out)],
                "response": [lambda _response: self.advance(self.back)],
            },
        )

    def client(self, pacer: Pacer) -> Auth0Client:
        return Auth0Client(
            domain=self.sim.domain,
            base_url=self.sim.base_url,
            credentials=lambda _force: ClientCredentials(
                self.sim.client_id, self.sim.client_secret
            ),
            pacer=pacer,
            http=self.http,
            clock=self.clock,
            sleep=self.advance,
            rng=random.Random(5),
        )

    def pacer(self, *, share: float = 0.5, per_second: float | None = None) -> Pacer:
        return Pacer(share=share, per_second=per_second, clock=self.clock, sleep=self.advance)

    def advance(self, seconds: float) -> None:
        """Move the clock, making the neighbour's calls that fall due on the way."""
        end = self.clock() + seconds
        while self.neighbour_per_s > 0 and self._neighbour_due <= end:
            self.clock.advance(max(0.0, self._neighbour_due - self.clock()))
            self._neighbour_call()
            self._neighbour_due += 1 / self.neighbour_per_s
        self.clock.advance(max(0.0, end - self.clock()))

    def _neighbour_call(self) -> None:
        if not self._neighbour_token:
            self._neighbour_token = self._neighbour.post(
                "/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": self.sim.client_id,
                    "client_secret": self.sim.client_secret,
                    "audience": f"https://{self.sim.domain}/api/v2/",
                },
            ).json()["access_token"]
        answer = self._neighbour.get(
            "/api/v2/logs", headers={"Authorization": f"Bearer {self._neighbour_token}"}
        )
        self.neighbour_statuses.append(answer.status_code)

    def close(self) -> None:
        self.http.close()
        self._neighbour.close()
        self.sim.stop()


@pytest.fixture
def tenants(clock: FakeClock) -> Iterator[Callable[..., Tenant]]:
    made: list[Tenant] = []

    def make(limit: RateLimit, **kwargs: float) -> Tenant:
        made.append(Tenant(clock, limit, **kwargs))
        return made[-1]

    yield make
    for tenant in made:
        tenant.close()


def calls(client: Auth0Client, count: int) -> None:
    for _ in range(count):
        assert len(client.user_logs("auth0|u", page=0)) == 1


def test_zero_config_learns_an_enterprise_tenant(tenants: Callable[..., Tenant]) -> None:
    # GIVEN an Enterprise tenant (burst 50, 16/s) 30 ms away, and a pacer told nothing
    tenant = tenants(RateLimit(burst=50, per_second=16), out=0.02, back=0.01)
    pacer = tenant.pacer()
    client = tenant.client(pacer)
    # WHEN 200 calls are made one after another
    calls(client, 200)
    # THEN none was refused, and the rate it paces by is proven and near the tenant's
    assert tenant.sim.stats.rate_limited == 0
    assert client.stats.api_calls == 200
    state = pacer.state()
    assert state.bucket == 50
    assert state.lower_per_s <= 16 <= state.upper_per_s
    assert 0.7 * 16 <= state.rate_per_s <= 1.1 * 16


@pytest.mark.parametrize(("out", "back"), [(0.1, 0.05), (0.01, 0.005)])
def test_zero_config_free_tenant_shared_with_a_client_using_45_percent(
    tenants: Callable[..., Tenant], out: float, back: float
) -> None:
    # GIVEN a Free tenant (burst 2, 2/s) that another client calls at 0.9/s all along
    tenant = tenants(RateLimit(burst=2, per_second=2), out=out, back=back, neighbour_per_s=0.9)
    pacer = tenant.pacer()
    client = tenant.client(pacer)
    # WHEN we make 60 calls
    calls(client, 60)
    # THEN neither we nor the other client was ever refused
    assert client.stats.rate_limited == 0
    assert tenant.sim.stats.rate_limited == 0
    assert len(tenant.neighbour_statuses) > 50
    assert set(tenant.neighbour_statuses) == {200}
    # AND we never assumed more than the tenant's 2/s
    assert pacer.state().rate_per_s <= 2


@pytest.mark.parametrize(
    "limit",
    [
        RateLimit(burst=2, per_second=0.5),
        RateLimit(burst=1, per_second=0.5),
        RateLimit(burst=10, per_second=0.2),
        RateLimit(burst=5, per_second=0.1),
    ],
    ids=str,
)
def test_zero_config_non_production_tenants_see_no_429(
    tenants: Callable[..., Tenant], limit: RateLimit
) -> None:
    # GIVEN a tenant slower than one request a second
    tenant = tenants(limit)
    pacer = tenant.pacer()
    client = tenant.client(pacer)
    # WHEN we make 30 calls THEN none is refused
    calls(client, 30)
    assert tenant.sim.stats.rate_limited == 0
    # AND the pace is bounded by what the headers proved
    state = pacer.state()
    assert state.lower_per_s <= limit.per_second <= state.upper_per_s


@pytest.mark.parametrize("skew", [-30.0, -1.0, 1.0, 30.0])
@pytest.mark.parametrize(
    "limit", [RateLimit(burst=50, per_second=16), RateLimit(burst=2, per_second=2)], ids=str
)
def test_zero_config_with_auth0s_clock_off_ours(
    tenants: Callable[..., Tenant], limit: RateLimit, skew: float
) -> None:
    # GIVEN a tenant whose clock (and so its resets) is `skew` seconds off ours, 30 ms away
    tenant = tenants(limit, skew_s=skew, out=0.02, back=0.01)
    pacer = tenant.pacer()
    client = tenant.client(pacer)
    # WHEN we make 60 calls THEN none is refused and the proven bounds hold
    calls(client, 60)
    assert tenant.sim.stats.rate_limited == 0
    state = pacer.state()
    assert state.lower_per_s <= limit.per_second <= state.upper_per_s
    # AND the pace is never above the assumed 100/min or the tenant's rate, whichever is higher
    # (with Auth0's clock ahead, a small bucket's is lower: a reset that far away reads as a
    # slower tenant, and every answer of a bucket of 2 says the same thing)
    assert state.rate_per_s <= max(START_PER_SECOND, 1.1 * limit.per_second)
    if limit.burst == 50:
        assert state.rate_per_s > 10


def test_a_limit_that_changes_mid_run(tenants: Callable[..., Tenant]) -> None:
    # GIVEN a pacer that learned an Enterprise tenant
    tenant = tenants(RateLimit(burst=50, per_second=16), out=0.02, back=0.01)
    pacer = tenant.pacer()
    client = tenant.client(pacer)
    calls(client, 100)
    assert pacer.state().rate_per_s > 10
    # WHEN the tenant becomes a Free one, then the same bucket refills at 4/s, then 16/s again
    tenant.sim.rate_limit = RateLimit(burst=2, per_second=2)
    calls(client, 20)
    assert pacer.state().rate_per_s <= 2
    tenant.sim.rate_limit = RateLimit(burst=50, per_second=4)
    calls(client, 100)
    state = pacer.state()
    assert state.lower_per_s <= 4 <= state.upper_per_s
    tenant.sim.rate_limit = RateLimit(burst=50, per_second=16)
    calls(client, 100)
    # (a faster refill only shows when something drains the bucket: the next run's burst)
    tenant.advance(300)
    calls(client, 100)
    # THEN no call was refused, and it is back to the faster pace
    assert tenant.sim.stats.rate_limited == 0
    assert pacer.state().rate_per_s > 10


def test_a_429_storm_slows_the_pacer_down_and_it_recovers(tenants: Callable[..., Tenant]) -> None:
    # GIVEN a pacer that learned an Enterprise tenant
    tenant = tenants(RateLimit(burst=50, per_second=16), out=0.02, back=0.01)
    pacer = tenant.pacer()
    client = tenant.client(pacer)
    calls(client, 100)
    learned = pacer.state().rate_per_s
    # WHEN five answers in a row are 429s (someone else is hammering the tenant)
    tenant.sim.fail_next(5, status=429, html=False)
    calls(client, 1)
    # THEN it got through in the end, and paces more slowly
    assert client.stats.rate_limited == 5
    assert pacer.state().rate_per_s < learned / 2
    # AND the next run (whose burst drains the bucket enough to show the refill) learns it back
    tenant.advance(300)
    calls(client, 100)
    assert pacer.state().rate_per_s > 10
    assert client.stats.rate_limited == 5


def test_answers_without_headers_do_not_stop_the_learning(clock: FakeClock) -> None:
    # GIVEN an Enterprise tenant behind a gateway that drops the rate-limit headers of one
    # answer in three
    class DropHeaders(httpx.BaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.HTTPTransport()
            self.count = 0

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            response = self.inner.handle_request(request)
            self.count += 1
            if self.count % 3 == 0:
                for name in ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"):
                    del response.headers[name]
            return response

    tenant = Tenant(clock, RateLimit(burst=50, per_second=16), out=0.02, back=0.01)
    try:
        tenant.http = httpx.Client(transport=DropHeaders(), timeout=5)
        pacer = tenant.pacer()
        client = tenant.client(pacer)
        # WHEN 150 calls are made THEN none is refused and the rate is learned all the same
        for _ in range(150):
            tenant.advance(0.03)
            assert len(client.user_logs("auth0|u", page=0)) == 1
        assert tenant.sim.stats.rate_limited == 0
        assert 0.7 * 16 <= pacer.state().rate_per_s <= 1.1 * 16
    finally:
        tenant.close()


def test_until_the_first_answer_one_request_at_a_time(clock: FakeClock) -> None:
    # GIVEN a pacer that has not heard from Auth0 yet, and a first request out
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.advance(seconds)

    pacer = Pacer(share=0.5, clock=clock, sleep=sleep)
    first = pacer.take()

    # WHEN its answer (bucket 50) comes 0.3 s later, while a second request waits
    def answer_later(seconds: float) -> None:
        sleep(seconds)
        if clock() - T0 >= 0.3 and not answered:
            answered.append(True)
            pacer.observe(headers(limit=50, remaining=49, reset=T0 + 1), ticket=first)

    answered: list[bool] = []
    pacer._sleep = answer_later
    second = pacer.take()
    # THEN the second went as soon as the answer was in (the burst of 25 allows it), not after
    # the 1.2 s the assumed 100/min would have spaced it by
    assert second.sent_at - T0 == pytest.approx(0.3, abs=0.03)
    # AND without an answer at all, the next goes after PROBE_WAIT_S
    lonely = Pacer(share=0.5, clock=clock, sleep=sleep)
    start = clock()
    lonely.take()
    assert lonely.take().sent_at - start == pytest.approx(PROBE_WAIT_S, abs=0.03)
