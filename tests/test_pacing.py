"""The pacer: at most a share of the tenant's rate limit, and slowing down before a 429.

Pure tests use a fake clock and a sleep that records the wait and moves that clock. One test uses
the real clock with a tiny interval, to check spacing under real threads; the last ones drive the
Auth0 client against the simulator's token bucket, again on a shared fake clock.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from devtools.auth0_simulator import Auth0Simulator, RateLimit
from log_forwarder.auth0_client import Auth0Client, ClientCredentials
from log_forwarder.pacing import SKEW_S, Pacer, RateLimitHeaders, Ticket

from .fakes import FakeClock

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
