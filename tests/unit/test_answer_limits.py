"""Auth0 answers are read with a limit, as a stream: over real HTTP against the simulator, whose
oversized answers (`oversize_next`, `inflate`) are streamed and say how much of them was sent.

GIVEN a client and a simulator on one fake clock (no real waits), WHEN an answer is longer than
the client reads, THEN the client stops at the limit, names the request and the bytes read, and
either reads the same entries as smaller pages or fails with Auth0AnswerTooLarge.
"""

from __future__ import annotations

import gzip
import json
import socketserver
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from devtools.auth0_simulator import Auth0Simulator
from log_forwarder import auth0_client
from log_forwarder.auth0_client import MAX_ANSWER_BYTES, Auth0Client, ClientCredentials
from log_forwarder.events import parse_page
from log_forwarder.exceptions import (
    Auth0AnswerTooLarge,
    Auth0Error,
    Auth0MalformedResponse,
    Auth0UnavailableError,
    OutOfTime,
)
from log_forwarder.pacing import Pacer
from log_forwarder.retry import Deadline
from log_forwarder.source import CallScope, CallStats
from tests.fakes import FakeClock, socket_slack

T0 = 1_795_600_000.0
USER = "auth0|5f1e2d3c4b5a69788796a5b4"
ENCODED = "auth0%7C5f1e2d3c4b5a69788796a5b4"


# The client read at most the limit, so at most this much more was ever sent.
SOCKET_SLACK = socket_slack()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[Auth0Simulator]:
    with Auth0Simulator(clock=clock, rate_limit=None) as simulator:
        yield simulator


def client_of(
    sim: Auth0Simulator, clock: FakeClock, http: httpx.Client | None = None
) -> Auth0Client:
    return Auth0Client(
        domain=sim.domain,
        base_url=sim.base_url,
        credentials=lambda _force: ClientCredentials(sim.client_id, sim.client_secret),
        pacer=Pacer(share=1.0, per_second=1000.0, clock=clock, sleep=clock.advance),
        http=http,
        clock=clock,
        sleep=clock.advance,
    )


def events(sim: Auth0Simulator, count: int) -> list[dict[str, Any]]:
    """`count` events of USER, one a second, the newest a minute before T0."""
    return sim.add_events(
        {"date": _iso(T0 - 60 - i), "type": "s", "user_id": USER, "description": f"login {i}"}
        for i in range(count)
    )


def _streamed_when(sim: Auth0Simulator, count: int) -> list[Any]:
    """The simulator's streamed answers once it has recorded `count` of them (2 s at most)."""
    until = time.monotonic() + 2
    while len(sim.stats.streamed) < count and time.monotonic() < until:
        time.sleep(0.01)
    return sim.stats.streamed


def _iso(epoch_s: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def test_a_100_mb_answer_is_cut_at_the_limit_and_named_without_a_retry(
    sim: Auth0Simulator, clock: FakeClock
) -> None:
    # GIVEN a host answering every page of the user's log with 100 MB
    events(sim, 5)
    sim.oversize_next(1000, megabytes=100, path_contains=ENCODED)
    client = client_of(sim, clock)
    # WHEN the page is read
    with pytest.raises(Auth0AnswerTooLarge) as raised:
        client.user_logs(USER, page=0)
    error = raised.value
    # THEN the error names the request by its template (no user id), its page, and the bytes
    # read, and says the limit
    text = str(error)
    assert text.startswith("GET /api/v2/users/{id}/logs (page=") and "sort=date:-1" in text
    assert "more than 8 MiB" in text and f"{error.bytes_read:,} bytes read" in text
    assert USER not in text and ENCODED not in text
    assert MAX_ANSWER_BYTES < error.bytes_read <= MAX_ANSWER_BYTES + 2**20
    assert not error.tenant_wide  # one user's answers: that user's failure
    # AND the page was asked for again in pieces (10 entries, then 1), and a second single entry
    # over the limit ended it: four answers, none retried as transient (the simulator records
    # an answer when its handler notices the hang-up, which may be just after the client raised)
    streamed = _streamed_when(sim, 4)
    assert [a.target.split("&sort")[0].split("?")[1] for a in streamed] == [
        "page=0&per_page=100",
        "page=0&per_page=10",
        "page=0&per_page=1",
        "page=1&per_page=1",
    ]
    assert "a second entry of the same page is too" in text
    assert client.stats.oversized_answers == 4 and client.stats.retries == 0
    # AND of each 100 MB answer the simulator could send little more than the limit before the
    # client hung up (deterministic bound: what was sent = what was read + socket buffers)
    for answer in streamed:
        assert answer.size > 100_000_000  # the whole answer, had it been read
        assert MAX_ANSWER_BYTES <= answer.sent <= MAX_ANSWER_BYTES + SOCKET_SLACK, answer


def test_a_page_with_one_huge_event_delivers_the_others_and_a_placeholder_for_it(
    sim: Auth0Simulator, clock: FakeClock
) -> None:
    # GIVEN 30 events of the user, one of them logged 20 MB long
    stored = events(sim, 30)
    huge = stored[12]
    sim.inflate(huge["log_id"], megabytes=20)
    client = client_of(sim, clock)
    # WHEN the newest page is read, twice
    first = client.user_logs(USER, page=0)
    second = client.user_logs(USER, page=0)
    # THEN it holds the 29 other events as Auth0 sent them, in order, and one placeholder in the
    # huge one's place: no log_id, no date, so the forwarder quarantines it (a record in the
    # destinations), and the same on every read (so it is recorded once)
    page = parse_page(first)
    by_id = {e["log_id"]: e for e in stored}
    assert [e.log_id for e in page.events] == [
        e["log_id"] for e in sorted(stored, key=lambda e: e["date"], reverse=True) if e != huge
    ]
    assert all(e.raw == by_id[e.log_id] for e in page.events)
    assert len(first) == 30 and len(page.malformed) == 1
    placeholder = page.malformed[0].raw
    assert isinstance(placeholder, dict) and set(placeholder) == {"oversized_entry"}
    assert first == second
    stand_in = placeholder["oversized_entry"]
    assert "larger than the 8 MiB an answer may hold" in stand_in["why"]
    assert stand_in["limit_bytes"] == MAX_ANSWER_BYTES
    # its first bytes show which event it is (Auth0 sends the date first)
    assert stand_in["first_bytes"].startswith('[{"date":"' + huge["date"])
    # AND only the pieces holding it were asked for again: page, its piece of 10, its entry
    cut = [a.target.split("&sort")[0].split("?")[1] for a in sim.stats.streamed[:3]]
    assert cut == ["page=0&per_page=100", "page=1&per_page=10", "page=12&per_page=1"]


def test_the_tenant_log_is_read_in_pieces_and_an_entry_no_piece_holds_is_the_error(
    sim: Auth0Simulator, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a limit of 1 MB and a tenant log of 50 events, three of them 0.6 MB long (a page of
    # them is over the limit, a piece of 10 holding one is not)
    monkeypatch.setattr(auth0_client, "MAX_ANSWER_BYTES", 2**20)
    stored = events(sim, 50)
    for index in (3, 25, 41):
        sim.inflate(stored[index]["log_id"], megabytes=0.6)
    client = client_of(sim, clock)
    # WHEN the log is read from its start
    entries = client.tenant_logs("", take=100)
    # THEN every entry comes back, in log_id order, each once, padded as Auth0 sent it
    assert [e["log_id"] for e in entries] == sorted(e["log_id"] for e in stored)
    assert sum("padding" in e for e in entries) == 3
    # AND an entry larger than the limit on its own cannot be passed (the next `from` is its
    # log_id): the error, naming the checkpoint request
    sim.inflate(stored[30]["log_id"], megabytes=1.5)
    with pytest.raises(Auth0AnswerTooLarge) as raised:
        client.tenant_logs("", take=100)
    assert str(raised.value).startswith("GET /api/v2/logs (checkpoint) (from=")
    assert "take=1)" in str(raised.value)


def test_an_oversized_token_answer_fails_the_tenant(sim: Auth0Simulator, clock: FakeClock) -> None:
    # GIVEN a token endpoint answering 5 MB
    events(sim, 2)
    sim.oversize_next(5, megabytes=5, path_contains="/oauth/token")
    # WHEN a page is read
    with pytest.raises(Auth0AnswerTooLarge) as raised:
        client_of(sim, clock).user_logs(USER, page=0)
    # THEN it stopped at the token's limit (64 KiB): every user's read needs that token
    assert str(raised.value).startswith("POST /oauth/token answered more than 64 KiB")
    assert raised.value.tenant_wide
    assert all(a.sent <= 64 * 2**10 + SOCKET_SLACK for a in sim.stats.streamed)


def test_a_compressed_answer_counts_at_its_decoded_size(clock: FakeClock) -> None:
    # GIVEN an answer of 9 MiB that gzip makes 9 KB
    decoded = json.dumps([{"log_id": "1", "date": _iso(T0), "padding": "x" * 9 * 2**20}])
    body = gzip.compress(decoded.encode())
    assert len(body) < 64 * 2**10

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 86400})
        return httpx.Response(200, content=body, headers={"content-encoding": "gzip"})

    http = httpx.Client(transport=httpx.MockTransport(answer))
    client = Auth0Client(
        domain="t.auth0.com",
        base_url="https://t.auth0.com",
        credentials=lambda _force: ClientCredentials("id", "secret"),
        pacer=Pacer(share=1.0, per_second=1000.0, clock=clock, sleep=clock.advance),
        http=http,
        clock=clock,
        sleep=clock.advance,
    )
    # WHEN the tenant's log is read (one entry: no piece can be smaller)
    # THEN the decoded size is what counts
    with pytest.raises(Auth0AnswerTooLarge):
        client.tenant_logs("", take=1)
    # AND an answer under the limit, compressed, is read whole and decoded once
    small = json.dumps([{"log_id": "1", "date": _iso(T0)}]).encode()
    body = gzip.compress(small)
    assert client.tenant_logs("", take=1) == json.loads(small)


# -- compression bombs and drips (issue #21 review) ------------------------------------------

# What reading a bomb may allocate at its peak (Python's own allocations, tracemalloc): the
# 8 MiB limit, the bytes of the rebuilt answer and the decoder's window, never the 100 MB.
BOMB_PEAK_BOUND_MB = 40


def _peak_mb(call: Callable[[], Any]) -> tuple[float, BaseException | None]:
    tracemalloc.start()
    try:
        call()
    except Exception as error:  # what the call raised, for the test to judge
        raised: BaseException | None = error
    else:
        raised = None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak / 2**20, raised


@pytest.mark.parametrize(
    ("encoding", "status", "expected", "said"),
    [
        # A page of one entry that decodes past the limit: the piece reads end in a placeholder,
        # and the second such entry of one page is these answers not being Auth0 log events.
        ("gzip", 200, Auth0AnswerTooLarge, "these answers are not Auth0 log events"),
        ("deflate", 200, Auth0AnswerTooLarge, "these answers are not Auth0 log events"),
        # An error answer is read for its message only (64 KiB): retried, then given up.
        ("gzip", 500, Auth0UnavailableError, "HTTP 500 from /api/v2/users/{id}/logs"),
        # A chain of codings is refused before a byte of it is decoded.
        ("gzip, gzip", 200, Auth0MalformedResponse, "content-encoding 'gzip, gzip'"),
    ],
)
def test_a_compression_bomb_is_decoded_no_further_than_the_limit(
    sim: Auth0Simulator,
    clock: FakeClock,
    encoding: str,
    status: int,
    expected: type[Exception],
    said: str,
) -> None:
    # GIVEN a host answering every page of the user with 100 MB that compress to 100 KB (or, in
    # a chain of two gzips, to 436 bytes)
    sim.bomb_next(1000, encoding=encoding, status=status, path_contains=ENCODED)
    client = client_of(sim, clock)
    # WHEN the user's page is read
    peak_mb, raised = _peak_mb(lambda: client.user_logs(USER, page=0))
    # THEN a named error, and the client never held more than about the limit
    assert isinstance(raised, expected), raised
    assert said in str(raised)
    assert peak_mb < BOMB_PEAK_BOUND_MB, f"{peak_mb:.0f} MB allocated at the peak"


def test_a_compression_bomb_as_the_token_answer_fails_the_tenant_at_the_token_limit(
    sim: Auth0Simulator, clock: FakeClock
) -> None:
    sim.bomb_next(5, path_contains="/oauth/token")
    peak_mb, raised = _peak_mb(lambda: client_of(sim, clock).user_logs(USER, page=0))
    assert isinstance(raised, Auth0AnswerTooLarge) and raised.tenant_wide
    assert str(raised).startswith("POST /oauth/token answered more than 64 KiB")
    assert peak_mb < BOMB_PEAK_BOUND_MB


def test_an_answer_dripped_a_byte_at_a_time_is_cut_at_the_deadline(
    sim: Auth0Simulator, clock: FakeClock
) -> None:
    # GIVEN a user's page dripped one byte every 0.5 s (a minute or more in all), each byte well
    # within the client's 15 s read timeout
    events(sim, 3)
    sim.drip_next(1, interval_s=0.5, path_contains=ENCODED)
    client = client_of(sim, clock)
    client.authenticate()  # the token first: only the page's answer is timed
    # WHEN it is read with 3 s left before the deadline
    started = time.monotonic()
    scope = CallScope(CallStats(), Deadline(lambda: int((started + 3 - time.monotonic()) * 1000)))
    # (cut mid-answer it is "still answering at the invocation's deadline"; on a loaded machine
    # the last byte's wait can end first, and then no retry fits before it: both stop there)
    with pytest.raises(OutOfTime, match="the invocation's deadline"):
        client.user_logs(USER, page=0, scope=scope)
    # THEN the call ended at the deadline, not a read timeout (or the whole answer) later
    elapsed = time.monotonic() - started
    assert elapsed < 3.5, f"the call ended {elapsed:.1f} s after it began, for a 3 s deadline"


def test_an_error_answer_in_a_chain_of_codings_is_still_retried_by_its_status(
    sim: Auth0Simulator, clock: FakeClock
) -> None:
    # GIVEN a host answering the user's page twice with a 503 whose body is `gzip, gzip`
    events(sim, 3)
    sim.bomb_next(2, encoding="gzip, gzip", status=503, path_contains=ENCODED)
    client = client_of(sim, clock)
    # WHEN the page is read THEN the 503s are retried as any (the body is read for a message
    # only), and the third answer is read
    assert len(client.user_logs(USER, page=0)) == 3
    assert client.stats.retries == 2


def test_a_429_in_a_coding_not_asked_for_still_waits_as_its_retry_after_says(
    sim: Auth0Simulator, clock: FakeClock
) -> None:
    # GIVEN a host answering the user's page once with a 429 whose body is `gzip, gzip` (a
    # coding the client refuses to decode) and whose retry-after is 20 s
    events(sim, 3)
    sim.bomb_next(1, encoding="gzip, gzip", status=429, path_contains=ENCODED,
                  headers={"retry-after": "20"})  # fmt: skip
    client = client_of(sim, clock)
    started = clock()
    # WHEN the page is read
    assert len(client.user_logs(USER, page=0)) == 3
    # THEN the retry waited the 20 s the answer asked for (the headers were dropped with the
    # body before: a 1 s guess, and the tenant's limit asked again at once)
    assert clock() - started >= 20
    assert client.stats.retries == 1


@pytest.mark.parametrize("status", [200, 401, 400])
def test_json_nested_past_the_stack_in_a_token_or_error_answer_is_a_named_error(
    clock: FakeClock, status: int
) -> None:
    # GIVEN answers of 59 KB of [[[…]]]: under every size limit, deeper than Python's stack
    nested = b"[" * 30_000 + b"]" * 30_000

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            if status == 400:
                return httpx.Response(200, json={"access_token": "t", "expires_in": 86400})
            return httpx.Response(status, content=nested)
        return httpx.Response(400, content=nested)

    client = Auth0Client(
        domain="t.auth0.com",
        base_url="https://t.auth0.com",
        credentials=lambda _force: ClientCredentials("id", "secret"),
        pacer=Pacer(share=1.0, per_second=1000.0, clock=clock, sleep=clock.advance),
        http=httpx.Client(transport=httpx.MockTransport(answer)),
        clock=clock,
        sleep=clock.advance,
    )
    # WHEN a page is read / THEN the failure is one of Auth0's, named, never a RecursionError
    # that took the run down (and, at the token, the tenant's: one token request, not one per user)
    with pytest.raises(Auth0Error) as raised:
        client.user_logs(USER, page=0)
    assert raised.value.tenant_wide is (status != 400)


class _HeaderDrip(socketserver.ThreadingTCPServer):
    """Answers the token request at once, and every other request with headers sent one byte
    each 0.1 s, for as long as the client listens: no response ever exists to cut."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _HeaderDripHandler)


class _HeaderDripHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while True:
            received = b""
            while b"\r\n\r\n" not in received:
                chunk = self.request.recv(65536)
                if not chunk:
                    return
                received += chunk
            if received.startswith(b"POST /oauth/token"):
                body = json.dumps({"access_token": "t", "expires_in": 86400}).encode()
                self.request.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    + f"content-length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                continue
            try:
                self.request.sendall(b"HTTP/1.1 200 OK\r\nx-pad: ")
                for _ in range(600):  # a minute at most
                    self.request.sendall(b"a")
                    time.sleep(0.1)
            except OSError:
                return
            return


def test_headers_dripped_a_byte_at_a_time_are_cut_at_the_deadline(clock: FakeClock) -> None:
    # GIVEN a host that answers the log request's headers one byte every 0.1 s, each byte well
    # within the client's 15 s read timeout (the watchdog only sees a response once they end)
    with _HeaderDrip() as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        host, port = server.server_address
        client = Auth0Client(
            domain="t.auth0.com",
            base_url=f"http://{host}:{port}",
            credentials=lambda _force: ClientCredentials("id", "secret"),
            pacer=Pacer(share=1.0, per_second=1000.0, clock=clock, sleep=clock.advance),
            clock=clock,
            sleep=clock.advance,
        )
        client.authenticate()
        # WHEN the page is read with 3 s left before the deadline
        started = time.monotonic()
        left = Deadline(lambda: int((started + 3 - time.monotonic()) * 1000))
        with pytest.raises((OutOfTime, Auth0Error)):
            client.user_logs(USER, page=0, scope=CallScope(CallStats(), left))
        # THEN the call ended at the deadline (before: 27.9 s for a 3 s deadline)
        elapsed = time.monotonic() - started
        server.shutdown()
    assert elapsed < 3.5, f"the call ended {elapsed:.1f} s after it began, for a 3 s deadline"


def test_the_clients_connections_are_opened_through_the_deadline_backend() -> None:
    import httpcore

    from log_forwarder.answer_deadline import DeadlineBackend, deadline_client

    # httpx 0.28 takes no network backend: if a new httpx moves its pool, this says so
    pool = deadline_client()._transport._pool  # type: ignore[attr-defined]
    assert isinstance(pool, httpcore.ConnectionPool)
    assert isinstance(pool._network_backend, DeadlineBackend)
