"""The Auth0 client, tested through real HTTP against the local Auth0 simulator.

Time is one fake clock shared by the simulator, the client and its pacer. Every sleep is recorded
and moves that clock instead of waiting, so token expiry, retry back-off and 429 waits cost no real
time. httpx.MockTransport is used only for answers the simulator cannot give: a 200 whose body is
not JSON or not the documented shape, the include_totals=true object, Retry-After, and timeouts.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, quote

import httpx
import pytest

from devtools.auth0_simulator import Auth0Simulator, RateLimit
from devtools.traffic import generate_user_events, iso
from log_forwarder.auth0_client import Auth0Client, CallScope, CallStats, ClientCredentials
from log_forwarder.exceptions import (
    Auth0AuthError,
    Auth0Error,
    Auth0MalformedResponse,
    Auth0NotFoundError,
    Auth0RequestError,
    Auth0ScopeError,
    Auth0SearchCapError,
    Auth0UnavailableError,
)
from log_forwarder.pacing import Pacer
from tests.fakes import FakeClock

T0 = 1_795_600_000.0  # 2026-11-25T08:26:40Z
DOMAIN = "acme-prod.eu.auth0.com"
AUDIENCE = f"https://{DOMAIN}/api/v2/"
CLIENT_ID = "fwd-m2m-client-id"
# Distinctive, so a leak is found by a plain substring search.
SECRET = "Zq9-SECRET-do-not-leak-7c1f2e"
USER = "auth0|5f1e2d3c4b5a69788796a5b4"
OTHER = "auth0|someone-else"


class Credentials:
    """The `credentials(force_refresh)` callable; records how it was called."""

    def __init__(self, secret: str = SECRET, *, refreshed_secret: str | None = None) -> None:
        self.secret = secret
        self.refreshed_secret = refreshed_secret
        self.calls: list[bool] = []

    def __call__(self, force_refresh: bool) -> ClientCredentials:
        self.calls.append(force_refresh)
        if force_refresh and self.refreshed_secret is not None:
            return ClientCredentials(CLIENT_ID, self.refreshed_secret)
        return ClientCredentials(CLIENT_ID, self.secret)


@dataclass
class Sent:
    at: float
    request: httpx.Request


@dataclass
class Received:
    at: float
    response: httpx.Response


@dataclass
class Harness:
    """A started simulator plus everything a test needs to watch the client talk to it."""

    sim: Auth0Simulator | None  # None: the client talks to an httpx.MockTransport
    clock: FakeClock
    client_sleeps: list[float] = field(default_factory=list)  # retry back-off (client's sleep)
    pacer_sleeps: list[float] = field(default_factory=list)  # pacing and 429 waits
    sent: list[Sent] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    tokens_issued: list[str] = field(default_factory=list)
    _http_clients: list[httpx.Client] = field(default_factory=list)

    def client_sleep(self, seconds: float) -> None:
        self.client_sleeps.append(seconds)
        self.clock.advance(seconds)

    def pacer_sleep(self, seconds: float) -> None:
        self.pacer_sleeps.append(seconds)
        self.clock.advance(seconds)

    def _on_request(self, request: httpx.Request) -> None:
        self.sent.append(Sent(self.clock(), request))

    def _on_response(self, response: httpx.Response) -> None:
        response.read()
        self.received.append(Received(self.clock(), response))
        if response.request.url.path == "/oauth/token" and response.status_code == 200:
            token = response.json().get("access_token")
            if token:
                self.tokens_issued.append(token)

    def http(self, transport: httpx.BaseTransport | None = None) -> httpx.Client:
        http = httpx.Client(
            timeout=5.0,
            transport=transport,
            event_hooks={"request": [self._on_request], "response": [self._on_response]},
        )
        self._http_clients.append(http)
        return http

    def client(
        self,
        *,
        credentials: Callable[[bool], ClientCredentials] | None = None,
        base_url: str | None = None,
        share: float = 1.0,
        per_second: float = 1000.0,
        max_attempts: int = 6,
        rng: random.Random | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> Auth0Client:
        return Auth0Client(
            domain=DOMAIN,
            base_url=base_url or self.simulator.base_url,
            credentials=credentials or Credentials(),
            pacer=Pacer(
                share=share, per_second=per_second, clock=self.clock, sleep=self.pacer_sleep
            ),
            http=self.http(transport),
            max_attempts=max_attempts,
            clock=self.clock,
            sleep=self.client_sleep,
            rng=rng or random.Random(1),
        )

    @property
    def simulator(self) -> Auth0Simulator:
        assert self.sim is not None
        return self.sim

    def api_requests(self) -> list[Sent]:
        return [s for s in self.sent if s.request.url.path != "/oauth/token"]

    def token_requests(self) -> list[Sent]:
        return [s for s in self.sent if s.request.url.path == "/oauth/token"]

    def close(self) -> None:
        for http in self._http_clients:
            http.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[Auth0Simulator]:
    # No rate limit unless a test is about it: a fake clock that only sleeps move would otherwise
    # make the bucket's refill depend on the pacer.
    with Auth0Simulator(
        domain=DOMAIN, client_id=CLIENT_ID, client_secret=SECRET, clock=clock, rate_limit=None
    ) as simulator:
        yield simulator


@pytest.fixture
def h(sim: Auth0Simulator, clock: FakeClock) -> Iterator[Harness]:
    harness = Harness(sim=sim, clock=clock)
    yield harness
    harness.close()


@pytest.fixture
def mock(clock: FakeClock) -> Iterator[Harness]:
    harness = Harness(sim=None, clock=clock)
    yield harness
    harness.close()


def at(seconds_from_t0: float) -> str:
    return iso(datetime.fromtimestamp(T0 + seconds_from_t0, UTC))


def event(user_id: str = USER, seconds_from_t0: float = -60, **extra: Any) -> dict[str, Any]:
    return {"date": at(seconds_from_t0), "type": "s", "user_id": user_id, **extra}


def query_of(sent: Sent) -> dict[str, list[str]]:
    return parse_qs(sent.request.url.query.decode(), keep_blank_values=True)


def raw_path_of(sent: Sent) -> str:
    return sent.request.url.raw_path.decode().partition("?")[0]


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # nothing listens on it any more: connecting is refused


# -- a client over httpx.MockTransport, for what the simulator cannot answer ------------------

MOCK_BASE = f"https://{DOMAIN}"
MOCK_TOKEN = "mock-access-token-4b7e91"


def token_answer(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        json={"access_token": MOCK_TOKEN, "expires_in": 86400, "token_type": "Bearer"},
    )


def mock_api(
    api: Callable[[httpx.Request], httpx.Response],
    token: Callable[[httpx.Request], httpx.Response] = token_answer,
) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return token(request)
        return api(request)

    return httpx.MockTransport(handler)


# == 1. the token ============================================================================


def test_token_is_a_client_credentials_form_with_the_tenant_audience(h: Harness) -> None:
    # GIVEN a client whose base URL is the local simulator, not the tenant's domain
    h.simulator.add_event(event())
    client = h.client()
    assert h.simulator.base_url.startswith("http://127.0.0.1:")

    # WHEN it makes its first call
    logs = client.user_logs(USER, page=0)

    # THEN it first POSTed a form-encoded client-credentials grant to /oauth/token
    assert [e["user_id"] for e in logs] == [USER]
    (token_request,) = h.token_requests()
    request = token_request.request
    assert request.method == "POST"
    assert request.url.path == "/oauth/token"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    form = parse_qs(request.content.decode(), strict_parsing=True)
    # AND the audience is the tenant's own, even though requests go to 127.0.0.1
    assert form == {
        "grant_type": ["client_credentials"],
        "client_id": [CLIENT_ID],
        "client_secret": [SECRET],
        "audience": [AUDIENCE],
    }
    # AND the API call carried the issued token as a Bearer token
    (api_request,) = h.api_requests()
    assert api_request.request.headers["authorization"] == f"Bearer {h.tokens_issued[0]}"
    assert h.simulator.stats.requests[("token", 200)] == 1


def test_one_token_serves_many_calls(h: Harness) -> None:
    # GIVEN a client and a user with events
    h.simulator.add_events(event(seconds_from_t0=-i) for i in range(3))
    client = h.client()

    # WHEN it makes twelve calls on both endpoints
    for page in range(6):
        client.user_logs(USER, page=page, per_page=1)
        client.search_logs(f'user_id:"{USER}"', page=page, per_page=1)

    # THEN one token request served all of them
    assert h.simulator.stats.requests[("token", 200)] == 1
    assert h.simulator.stats.calls() == 12
    assert client.stats.token_requests == 1
    assert client.stats.api_calls == 12
    assert {s.request.headers["authorization"] for s in h.api_requests()} == {
        f"Bearer {h.tokens_issued[0]}"
    }


def test_token_is_renewed_shortly_before_it_expires(h: Harness, clock: FakeClock) -> None:
    # GIVEN tokens that live 10 minutes, and a warm client holding one
    h.simulator.token_ttl_s = 600
    client = h.client()
    client.user_logs(USER, page=0)
    assert client.stats.token_requests == 1

    # WHEN calls come 8 and then 9 minutes later THEN the token is still reused
    clock.advance(480)
    client.user_logs(USER, page=0)
    clock.advance(50)
    client.user_logs(USER, page=0)
    assert client.stats.token_requests == 1

    # WHEN the next call comes 30 s before expiry THEN a new token is fetched before the old one
    # dies, and the call never meets a 401
    clock.advance(40)
    client.user_logs(USER, page=0)
    assert client.stats.token_requests == 2
    assert len(set(h.tokens_issued)) == 2
    assert h.api_requests()[-1].request.headers["authorization"] == f"Bearer {h.tokens_issued[1]}"

    # AND the renewed token is reused again: no 401 ever happened
    clock.advance(400)
    client.user_logs(USER, page=0)
    assert client.stats.token_requests == 2
    assert h.simulator.stats.requests[("user_logs", 401)] == 0
    assert h.simulator.stats.requests[("user_logs", 200)] == 5


def test_short_lived_token_is_not_fetched_again_for_every_call(
    h: Harness, clock: FakeClock
) -> None:
    # GIVEN tokens that live 2 minutes (shorter than the usual renewal margin)
    h.simulator.token_ttl_s = 120
    client = h.client()

    # WHEN five calls are made within the first minute
    for _ in range(5):
        client.user_logs(USER, page=0)
        clock.advance(10)

    # THEN one token served them all
    assert client.stats.token_requests == 1
    assert h.simulator.stats.requests[("token", 200)] == 1

    # AND once the token is about to expire it is still renewed before it dies
    clock.advance(65)  # 115 s after issue
    client.user_logs(USER, page=0)
    assert client.stats.token_requests == 2
    assert h.simulator.stats.requests[("user_logs", 401)] == 0


def test_revoked_token_of_a_warm_client_is_replaced_once(h: Harness) -> None:
    # GIVEN a warm client holding a token
    h.simulator.add_event(event())
    client = h.client()
    client.user_logs(USER, page=0)
    old_token = h.tokens_issued[0]

    # WHEN every token is revoked and the client calls again
    h.simulator.revoke_tokens()
    logs = client.user_logs(USER, page=0)

    # THEN the call succeeds after exactly one new token
    assert [e["user_id"] for e in logs] == [USER]
    assert client.stats.token_requests == 2
    assert h.simulator.stats.requests[("token", 200)] == 2
    assert h.simulator.stats.requests[("user_logs", 401)] == 1
    assert client.stats.api_calls == 3
    # AND the retry used the new token, not the revoked one
    new_token = h.tokens_issued[1]
    assert new_token != old_token
    assert h.api_requests()[-1].request.headers["authorization"] == f"Bearer {new_token}"
    # AND no back-off sleep was spent on a 401
    assert h.client_sleeps == []


def test_second_consecutive_401_raises_auth_error(h: Harness) -> None:
    # GIVEN an API that refuses even a freshly issued token
    client = h.client()
    h.simulator.fail_next(2, status=401, html=False)

    # WHEN the client calls
    with pytest.raises(Auth0AuthError) as raised:
        client.user_logs(USER, page=0)

    # THEN it fetched one new token, tried once more, and gave up with the 401
    assert raised.value.status == 401
    assert "401" in str(raised.value)
    assert client.stats.token_requests == 2
    assert h.simulator.stats.requests[("user_logs", 401)] == 2
    assert h.simulator.stats.calls() == 2


def test_a_401_on_the_last_attempt_still_gets_its_one_new_token(h: Harness) -> None:
    # GIVEN a client allowed 3 attempts, and an API that fails twice, then refuses the token
    h.simulator.add_event(event())
    client = h.client(max_attempts=3)
    client.user_logs(USER, page=0)
    h.simulator.fail_next(2, status=503, html=True)
    h.simulator.fail_next(1, status=401, html=False)

    # WHEN the client calls
    logs = client.user_logs(USER, page=0)

    # THEN the 401 on its last attempt led to a new token and one more request, which succeeded
    # (it was an outage "after 3 attempts" before the renewal was spared)
    assert [e["user_id"] for e in logs] == [USER]
    assert client.stats.token_requests == 2
    assert h.simulator.stats.requests[("user_logs", 401)] == 1
    assert h.simulator.stats.requests[("user_logs", 503)] == 2
    assert h.api_requests()[-1].request.headers["authorization"] == f"Bearer {h.tokens_issued[1]}"


def test_a_refused_secret_on_the_last_token_attempt_is_still_read_again(h: Harness) -> None:
    # GIVEN a rotated secret, and a token endpoint that is down for all attempts but the last
    h.simulator.add_event(event())
    credentials = Credentials(secret="rotated-away", refreshed_secret=SECRET)
    client = h.client(credentials=credentials, max_attempts=3)
    h.simulator.fail_next(2, status=503, html=True, path_contains="/oauth/token")

    # WHEN the client calls
    logs = client.user_logs(USER, page=0)

    # THEN the refusal on the last attempt still led to the one fresh read, and the call succeeded
    assert [e["user_id"] for e in logs] == [USER]
    assert credentials.calls == [False, True]
    assert h.simulator.stats.requests[("token", 401)] == 1
    assert h.simulator.stats.requests[("token", 200)] == 1


def test_wrong_secret_is_read_again_once_then_auth_error(h: Harness) -> None:
    # GIVEN credentials whose secret is wrong, even when read again
    credentials = Credentials(secret="stale-" + SECRET, refreshed_secret="still-wrong")
    client = h.client(credentials=credentials)

    # WHEN the client needs a token
    with pytest.raises(Auth0AuthError) as raised:
        client.user_logs(USER, page=0)

    # THEN the credentials were read again with force_refresh=True exactly once
    assert credentials.calls == [False, True]
    assert raised.value.status == 401
    # AND each secret was tried once; no API call was made
    forms = [parse_qs(s.request.content.decode()) for s in h.token_requests()]
    assert [f["client_secret"] for f in forms] == [["stale-" + SECRET], ["still-wrong"]]
    assert h.simulator.stats.requests[("token", 401)] == 2
    assert h.simulator.stats.calls() == 0
    assert h.client_sleeps == []


def test_rotated_secret_is_picked_up_by_reading_the_credentials_again(h: Harness) -> None:
    # GIVEN a cached secret that was rotated: only a fresh read returns the current one
    h.simulator.add_event(event())
    credentials = Credentials(secret="rotated-away", refreshed_secret=SECRET)
    client = h.client(credentials=credentials)

    # WHEN the client calls
    logs = client.user_logs(USER, page=0)

    # THEN the refused secret led to one fresh read, and the call succeeded
    assert [e["user_id"] for e in logs] == [USER]
    assert credentials.calls == [False, True]
    assert h.simulator.stats.requests[("token", 401)] == 1
    assert h.simulator.stats.requests[("token", 200)] == 1


def test_token_endpoint_outage_is_retried_not_reported_as_bad_credentials(h: Harness) -> None:
    # GIVEN a gateway in front of /oauth/token that answers 503 twice
    h.simulator.add_event(event())
    h.simulator.fail_next(2, status=503, html=True, path_contains="/oauth/token")
    credentials = Credentials()
    client = h.client(credentials=credentials)

    # WHEN the client calls THEN the token request is retried with back-off and the call succeeds
    assert len(client.user_logs(USER, page=0)) == 1
    assert h.simulator.stats.requests[("token", 503)] == 2
    assert h.simulator.stats.requests[("token", 200)] == 1
    assert len(h.client_sleeps) == 2
    assert client.stats.retries == 2
    # AND the credentials were not needlessly re-read: a 503 says nothing about the secret
    assert credentials.calls == [False]


def test_persistent_token_endpoint_outage_is_unavailable_not_auth_error(h: Harness) -> None:
    # GIVEN /oauth/token answering 502 for good
    h.simulator.fail_next(100, status=502, html=True, path_contains="/oauth/token")
    client = h.client(max_attempts=3)

    # WHEN the client calls THEN it gives up as "unavailable", not as "credentials refused"
    with pytest.raises(Auth0UnavailableError) as raised:
        client.user_logs(USER, page=0)
    assert not isinstance(raised.value, Auth0AuthError)
    assert "502" in str(raised.value)
    assert h.simulator.stats.requests[("token", 502)] == 3
    assert h.simulator.stats.calls() == 0


def test_token_endpoint_429_waits_and_is_counted(h: Harness) -> None:
    # GIVEN the token endpoint rate-limits the first request (no x-ratelimit-* headers)
    h.simulator.fail_next(1, status=429, html=False, path_contains="/oauth/token")
    client = h.client()
    # WHEN the client calls THEN it waits 1 s, gets its token and the call succeeds
    assert client.user_logs(USER, page=0) == []
    assert h.client_sleeps == [1.0]
    assert client.stats.rate_limited == 1
    assert client.stats.token_requests == 2
    assert h.simulator.stats.requests[("token", 429)] == 1


def test_token_endpoint_400_is_auth_error_without_retry_or_reread(h: Harness) -> None:
    # GIVEN the token endpoint refuses the request itself
    h.simulator.fail_next(1, status=400, html=False, path_contains="/oauth/token")
    credentials = Credentials()
    client = h.client(credentials=credentials)
    # WHEN the client calls THEN an auth error carries the status; nothing is retried
    with pytest.raises(Auth0AuthError) as raised:
        client.user_logs(USER, page=0)
    assert raised.value.status == 400
    # The client id is not a secret, and helps: its start is named (a secret pasted into its
    # place must not travel whole into logs and failure queues)
    assert f"'{CLIENT_ID[:8]}…'" in str(raised.value)
    assert credentials.calls == [False]
    assert h.simulator.stats.requests[("token", 400)] == 1
    assert h.client_sleeps == []


def test_token_answer_without_access_token_is_malformed(mock: Harness) -> None:
    # GIVEN a token endpoint that answers 200 with JSON lacking access_token
    transport = mock_api(
        lambda r: httpx.Response(200, json=[]),
        token=lambda r: httpx.Response(200, json={"token_type": "Bearer", "expires_in": 60}),
    )
    client = mock.client(base_url=MOCK_BASE, transport=transport)

    # WHEN the client calls THEN the answer is reported as malformed
    with pytest.raises(Auth0MalformedResponse, match="access_token"):
        client.user_logs(USER, page=0)


def _exception_texts(exc: BaseException) -> list[str]:
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), *map(repr, current.args)]
        current = current.__cause__ or current.__context__
    return texts


def test_secret_and_tokens_never_appear_in_errors_or_logs(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    raised: list[Auth0Error] = []

    def expect_failure(call: Callable[[], object]) -> None:
        with pytest.raises(Auth0Error) as info:
            call()
        raised.append(info.value)

    # GIVEN a client whose cached secret is stale and whose fresh read is wrong too
    stale = h.client(
        credentials=Credentials(secret=SECRET + "-old", refreshed_secret=SECRET + "-older")
    )
    expect_failure(lambda: stale.user_logs(USER, page=0))
    # AND a client whose token endpoint is down
    h.simulator.fail_next(2, status=503, html=True, path_contains="/oauth/token")
    expect_failure(lambda: h.client(max_attempts=2).user_logs(USER, page=0))

    # AND a working client that then meets revocation, refusal, an outage and a missing scope
    client = h.client(max_attempts=3)
    client.user_logs(USER, page=0)
    h.simulator.revoke_tokens()
    client.user_logs(USER, page=0)
    h.simulator.fail_next(2, status=401, html=False)
    expect_failure(lambda: client.user_logs(USER, page=0))
    h.simulator.fail_next(3, status=503, html=True)
    expect_failure(lambda: client.user_logs(USER, page=0))
    h.simulator.set_scopes(["read:logs_users"])
    h.simulator.revoke_tokens()
    expect_failure(lambda: client.search_logs(f'user_id:"{USER}"'))
    h.simulator.fail_next(1, status=400, html=False)
    expect_failure(lambda: client.user_logs(USER, page=0))

    # THEN tokens were issued, errors were raised and things were logged: the check is not empty
    assert len(h.tokens_issued) >= 3
    assert [type(e) for e in raised] == [
        Auth0AuthError,
        Auth0UnavailableError,
        Auth0AuthError,
        Auth0UnavailableError,
        Auth0ScopeError,
        Auth0RequestError,
    ]
    assert any(r.name == "log_forwarder.auth0_client" for r in caplog.records)
    # AND neither the secret nor any token shows up in any message, repr, cause or log record
    texts = [t for exc in raised for t in _exception_texts(exc)]
    texts += [caplog.text]
    texts += [r.getMessage() for r in caplog.records]
    texts += [repr(vars(r)) for r in caplog.records]
    texts += [repr(ClientCredentials(CLIENT_ID, SECRET))]
    for text in texts:
        assert SECRET not in text
        for token in h.tokens_issued:
            assert token not in text


# == 2. requests =============================================================================


@pytest.mark.parametrize(
    "user_id",
    [
        "auth0|5f1e2d3c",
        "samlp|acme-corp|jane.doe@acme.example",
        "oidc|corp/eu|x=y+z",
        "waad|Contoso Ltd|J Doe",
        "email|%2F already/escaped%",
    ],
)
def test_user_id_is_percent_encoded_as_one_path_segment(h: Harness, user_id: str) -> None:
    # GIVEN events of this user and of another one
    h.simulator.add_event(event(user_id, n=1))
    h.simulator.add_event(event(OTHER, n=2))
    client = h.client()

    # WHEN the user's logs are read
    logs = client.user_logs(user_id, page=0)

    # THEN exactly that user's event comes back (a raw '/' would have been a 404)
    assert [(e["user_id"], e["n"]) for e in logs] == [(user_id, 1)]
    assert h.simulator.stats.calls(endpoint="user_logs", user_id=user_id) == 1
    # AND the id travelled as one segment with nothing left unencoded
    (sent,) = h.api_requests()
    segment = raw_path_of(sent).removeprefix("/api/v2/users/").removesuffix("/logs")
    assert segment == quote(user_id, safe="")
    assert not set("|/@= +") & set(segment)


def test_user_logs_pages_newest_first_with_100_per_page(h: Harness) -> None:
    # GIVEN 250 realistic events of a user, and another user's events
    start = datetime.fromtimestamp(T0, UTC) - timedelta(days=1)
    mine = h.simulator.add_events(
        generate_user_events(
            USER, count=250, start=start, end=start + timedelta(hours=20), rng=random.Random(3)
        )
    )
    h.simulator.add_events(
        generate_user_events(
            OTHER, count=30, start=start, end=start + timedelta(hours=20), rng=random.Random(4)
        )
    )
    client = h.client()

    # WHEN three pages are read
    pages = [client.user_logs(USER, page=p) for p in range(3)]

    # THEN they hold 100, 100 and 50 events, newest first, each of the user's events once
    assert [len(p) for p in pages] == [100, 100, 50]
    everything = [e for p in pages for e in p]
    dates = [e["date"] for e in everything]
    assert dates == sorted(dates, reverse=True)
    assert sorted(e["log_id"] for e in everything) == sorted(e["log_id"] for e in mine)
    # AND every request asked for 100 per page, newest first, as a bare array
    for page, sent in enumerate(h.api_requests()):
        assert query_of(sent) == {
            "page": [str(page)],
            "per_page": ["100"],
            "sort": ["date:-1"],
            "include_totals": ["false"],
        }


def test_search_logs_sends_the_query_oldest_first(h: Harness) -> None:
    # GIVEN a user's events on both sides of an instant, and another user's
    h.simulator.add_events(event(seconds_from_t0=-s, n=s) for s in (300, 200, 100, 50))
    h.simulator.add_event(event(OTHER, seconds_from_t0=-10))
    client = h.client()
    query = f'user_id:"{USER}" AND date:[{at(-200)} TO *]'

    # WHEN the tenant-wide search is used for that user since that instant
    logs = client.search_logs(query)

    # THEN only the matching events come back, oldest first
    assert [e["n"] for e in logs] == [200, 100, 50]
    (sent,) = h.api_requests()
    assert sent.request.url.path == "/api/v2/logs"
    assert query_of(sent) == {
        "q": [query],
        "page": ["0"],
        "per_page": ["100"],
        "sort": ["date:1"],
        "include_totals": ["false"],
    }


def test_tenant_logs_reads_by_checkpoint_and_sends_nothing_else(h: Harness) -> None:
    # GIVEN events of two users, one made visible late (a larger log_id, an older date)
    first = h.simulator.add_events(event(seconds_from_t0=-s, n=s) for s in (300, 200))
    h.simulator.add_event(event(OTHER, seconds_from_t0=-100, n="other"))
    h.simulator.add_event(event(seconds_from_t0=-400, n="late"))
    client = h.client()

    # WHEN the tenant's log is read from the first event's id
    logs = client.tenant_logs(first[0]["log_id"], take=100)

    # THEN every later event of the tenant comes back in log_id order, the late one last
    assert [e["n"] for e in logs] == [200, "other", "late"]
    # AND the request holds from and take only: Auth0 ignores q and the rest in this mode
    (sent,) = h.api_requests()
    assert sent.request.url.path == "/api/v2/logs"
    assert query_of(sent) == {"from": [first[0]["log_id"]], "take": ["100"]}


def test_log_event_reads_one_entry_by_its_id_and_a_gone_one_is_not_found(h: Harness) -> None:
    # GIVEN an event whose id the stream handed out
    stored = h.simulator.add_event(event(n="one"))
    client = h.client()
    # WHEN it is read back by id THEN it is the event, asked for at its own path
    assert client.log_event(stored["log_id"])["n"] == "one"
    (sent,) = h.api_requests()
    assert sent.request.url.path == f"/api/v2/logs/{stored['log_id']}"
    # AND an id Auth0 no longer has is Auth0NotFoundError, not a failure to retry
    with pytest.raises(Auth0NotFoundError, match="Log not found"):
        client.log_event("900" + "0" * 53)
    assert len(h.api_requests()) == 2


def test_unknown_user_with_an_empty_list_is_an_empty_page(h: Harness) -> None:
    # GIVEN a tenant that answers an unknown user with an empty list
    client = h.client()
    # WHEN that user's logs are read THEN the page is empty
    assert client.user_logs("auth0|nobody", page=0) == []
    assert h.simulator.stats.requests[("user_logs", 200)] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"start": 0, "limit": 100, "length": 2, "total": 2},
        {"start": 0, "limit": 100, "length": 2, "total": 0},  # v3: total may count nothing useful
        {"start": 0, "limit": 100, "length": 2, "total": 5000},
        {"start": 0, "limit": 100, "length": 2},  # no total at all
    ],
)
def test_include_totals_object_is_accepted_and_total_is_ignored(
    mock: Harness, body: dict[str, Any]
) -> None:
    # GIVEN an API answering the {start, limit, length, total, logs} shape
    logs = [event(n=1, log_id="90020261125A"), event(n=2, log_id="90020261125B")]
    transport = mock_api(lambda r: httpx.Response(200, json={**body, "logs": logs}))
    client = mock.client(base_url=MOCK_BASE, transport=transport)

    # WHEN a page is read through either endpoint
    # THEN exactly the `logs` array is returned, whatever `total` says
    assert client.user_logs(USER, page=0) == logs
    assert client.search_logs(f'user_id:"{USER}"') == logs


def test_paging_past_the_1000_result_cap_raises_search_cap_error(h: Harness) -> None:
    # GIVEN more than 1,000 retained events for the user
    h.simulator.add_events(event(seconds_from_t0=-i) for i in range(1005))
    client = h.client()

    # WHEN page 9 (results 901..1000) is read THEN it is served
    assert len(client.user_logs(USER, page=9)) == 100
    # WHEN page 10 is read, on either endpoint THEN the cap error is raised, without retries
    with pytest.raises(Auth0SearchCapError) as per_user:
        client.user_logs(USER, page=10)
    with pytest.raises(Auth0SearchCapError) as tenant_wide:
        client.search_logs(f'user_id:"{USER}"', page=10)
    for raised in (per_user, tenant_wide):
        assert raised.value.status == 400
        assert "exceeds the allowed maximum of 1000 records" in str(raised.value)
    assert h.simulator.stats.requests[("user_logs", 400)] == 1
    assert h.simulator.stats.requests[("logs", 400)] == 1
    assert client.stats.retries == 0


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"sort": "date"}, "sort"),  # malformed sort
        ({"per_page": 101}, "per_page"),  # more than the API takes
    ],
)
def test_other_400_is_a_request_error_not_the_cap(
    h: Harness, kwargs: dict[str, Any], fragment: str
) -> None:
    # GIVEN a request the API's validator refuses
    client = h.client()
    # WHEN it is sent THEN it is a plain request error with Auth0's message, not a cap error
    with pytest.raises(Auth0RequestError) as raised:
        client.user_logs(USER, page=0, **kwargs)
    assert not isinstance(raised.value, Auth0SearchCapError)
    assert raised.value.status == 400
    assert "Query validation error" in str(raised.value)
    assert fragment in str(raised.value)
    assert h.simulator.stats.calls() == 1


def test_missing_read_logs_scope_raises_scope_error(h: Harness) -> None:
    # GIVEN a client application granted read:logs_users only
    h.simulator.set_scopes(["read:logs_users"])
    h.simulator.add_event(event())
    client = h.client()

    # WHEN the per-user endpoint is used THEN it works
    assert len(client.user_logs(USER, page=0)) == 1
    # WHEN the tenant-wide search is used THEN a scope error is raised, without retries
    with pytest.raises(Auth0ScopeError) as raised:
        client.search_logs(f'user_id:"{USER}"')
    assert raised.value.status == 403
    assert "Insufficient scope" in str(raised.value)
    assert h.simulator.stats.requests[("logs", 403)] == 1
    assert client.stats.retries == 0


def test_unknown_user_404_is_a_request_error_without_retries(h: Harness) -> None:
    # GIVEN a tenant that answers unknown users with 404
    h.simulator.unknown_user_status = 404
    client = h.client()
    # WHEN an unknown user's logs are read THEN a request error (the not-found kind, which the
    # forwarder reads as "deleted or a wrong id") names the answer
    with pytest.raises(Auth0RequestError) as raised:
        client.user_logs("auth0|nobody", page=0)
    assert type(raised.value) is Auth0NotFoundError
    assert raised.value.status == 404
    assert "The user does not exist." in str(raised.value)
    assert h.simulator.stats.calls() == 1
    assert h.client_sleeps == []


def test_over_long_query_is_a_request_error(h: Harness) -> None:
    # GIVEN a search query longer than the front end accepts
    client = h.client()
    query = " OR ".join(f'user_id:"auth0|{i:030d}"' for i in range(60))
    # WHEN it is sent THEN 414 is a request error, not retried
    with pytest.raises(Auth0RequestError) as raised:
        client.search_logs(query)
    assert raised.value.status == 414
    assert h.simulator.stats.calls() == 1


def test_non_json_200_is_malformed_with_status_and_content_type(mock: Harness) -> None:
    # GIVEN a 200 whose body is an HTML page (a captive proxy, a misrouted base URL)
    page = b"<html><body>Please log in</body></html>"
    transport = mock_api(
        lambda r: httpx.Response(200, content=page, headers={"content-type": "text/html"})
    )
    client = mock.client(base_url=MOCK_BASE, transport=transport)

    # WHEN a page of logs is read THEN the error names the status, the content type and the size
    with pytest.raises(Auth0MalformedResponse) as raised:
        client.user_logs(USER, page=0)
    message = str(raised.value)
    assert raised.value.status == 200
    assert "HTTP 200" in message
    assert "text/html" in message
    assert "not JSON" in message
    assert f"{len(page)} bytes" in message
    # AND it is not retried: the same answer would come back
    assert client.stats.api_calls == 1


@pytest.mark.parametrize(
    "body",
    [
        {"statusCode": 200, "message": "ok"},  # an object without `logs`
        {"logs": {"0": {}}},  # `logs` is not an array
        "a string",
        None,
    ],
)
def test_json_of_the_wrong_shape_is_malformed(mock: Harness, body: Any) -> None:
    # GIVEN a 200 with JSON that is not a list of log events in either documented shape
    raw = json.dumps(body).encode()
    transport = mock_api(
        lambda r: httpx.Response(200, content=raw, headers={"content-type": "application/json"})
    )
    client = mock.client(base_url=MOCK_BASE, transport=transport)
    # WHEN a page is read, on either endpoint THEN it is reported as malformed
    with pytest.raises(Auth0MalformedResponse):
        client.user_logs(USER, page=0)
    with pytest.raises(Auth0MalformedResponse):
        client.search_logs("type:s")


@pytest.mark.parametrize(
    "body",
    [
        [1, 2, 3],  # an array, but not of events
        [{"log_id": "1", "date": "2026-11-25T08:00:00.000Z"}, "not an event"],
        {"logs": [None]},
    ],
)
def test_entries_that_are_not_events_are_returned_for_the_caller_to_quarantine(
    mock: Harness, body: Any
) -> None:
    # GIVEN a page whose array holds entries that are not event objects
    raw = json.dumps(body).encode()
    transport = mock_api(
        lambda r: httpx.Response(200, content=raw, headers={"content-type": "application/json"})
    )
    client = mock.client(base_url=MOCK_BASE, transport=transport)
    # WHEN it is read THEN the page is not lost: every entry comes back as it was
    entries = client.user_logs(USER, page=0)
    expected = body["logs"] if isinstance(body, dict) else body
    assert entries == expected
    assert client.stats.api_calls == 1


def test_nan_and_infinity_are_kept_as_text_so_every_line_stays_json(mock: Harness) -> None:
    # GIVEN an event whose body uses the non-JSON constants Python's parser would accept
    raw = b'[{"log_id":"1","date":"2026-11-25T08:00:00.000Z","x":NaN,"y":-Infinity}]'
    transport = mock_api(
        lambda r: httpx.Response(200, content=raw, headers={"content-type": "application/json"})
    )
    # WHEN it is read THEN they arrive as the text they were
    (event,) = mock.client(base_url=MOCK_BASE, transport=transport).user_logs(USER, page=0)
    assert (event["x"], event["y"]) == ("NaN", "-Infinity")


# == 3. retries ==============================================================================


def test_gateway_503_is_retried_with_jittered_backoff(h: Harness) -> None:
    # GIVEN a gateway that answers two HTML 503 pages before Auth0 answers
    h.simulator.add_event(event())
    h.simulator.fail_next(2, status=503, html=True)
    client = h.client(rng=random.Random(42))

    # WHEN the client calls
    logs = client.user_logs(USER, page=0)

    # THEN it succeeded on the third attempt
    assert [e["user_id"] for e in logs] == [USER]
    assert h.simulator.stats.requests[("user_logs", 503)] == 2
    assert h.simulator.stats.requests[("user_logs", 200)] == 1
    assert client.stats.retries == 2
    assert client.stats.api_calls == 3
    # AND it slept twice, full jitter under a cap that doubles: 0.5 s, then 1 s
    expected = random.Random(42)
    assert h.client_sleeps == pytest.approx([expected.uniform(0, 0.5), expected.uniform(0, 1.0)])
    assert 0 < h.client_sleeps[0] <= 0.5
    assert 0 < h.client_sleeps[1] <= 1.0
    # AND each retry was sent after its back-off had passed
    api = h.api_requests()
    assert api[1].at - api[0].at >= h.client_sleeps[0] - 1e-6
    assert api[2].at - api[1].at >= h.client_sleeps[1] - 1e-6


class WorstCaseRng(random.Random):
    """Always draws the top of the jitter range, so the cap itself is visible."""

    def uniform(self, a: float, b: float) -> float:
        return b


def test_backoff_doubles_up_to_a_cap_then_gives_up(h: Harness) -> None:
    # GIVEN Auth0 answering 500 (JSON) for good, and the largest jitter every time
    h.simulator.fail_next(100, status=500, html=False)
    client = h.client(max_attempts=9, rng=WorstCaseRng())

    # WHEN the client calls THEN it gives up after max_attempts as unavailable
    with pytest.raises(Auth0UnavailableError) as raised:
        client.user_logs(USER, page=0)
    assert "HTTP 500" in str(raised.value)
    assert "9 attempts" in str(raised.value)
    # AND the waits doubled from 0.5 s and never exceeded the 20 s cap
    assert h.client_sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 20.0]
    assert h.simulator.stats.requests[("user_logs", 500)] == 9
    assert client.stats.retries == 8


def test_persistent_5xx_gives_unavailable_after_max_attempts(h: Harness) -> None:
    # GIVEN a gateway answering 502 to every request
    h.simulator.fail_next(100, status=502, html=True)
    client = h.client(max_attempts=4)

    # WHEN the client calls
    with pytest.raises(Auth0UnavailableError) as raised:
        client.search_logs("type:s")

    # THEN exactly max_attempts requests were made, with a back-off between each two
    assert raised.value.status is None
    assert "502" in str(raised.value)
    assert h.simulator.stats.requests[("logs", 502)] == 4
    assert len(h.client_sleeps) == 3
    assert client.stats.retries == 3


def test_408_is_retried(h: Harness) -> None:
    # GIVEN one request timeout answered by Auth0
    h.simulator.fail_next(1, status=408, html=False)
    client = h.client()
    # WHEN the client calls THEN it retries and succeeds
    assert client.user_logs(USER, page=0) == []
    assert client.stats.retries == 1
    assert h.simulator.stats.requests[("user_logs", 408)] == 1


def test_connection_refused_is_retried_then_unavailable(h: Harness) -> None:
    # GIVEN a base URL where nothing listens
    client = h.client(base_url=f"http://127.0.0.1:{closed_port()}", max_attempts=3)

    # WHEN the client calls
    with pytest.raises(Auth0UnavailableError) as raised:
        client.user_logs(USER, page=0)

    # THEN it tried three times, backing off in between, and names the failure and the host
    assert "ConnectError calling 127.0.0.1/oauth/token" in str(raised.value)
    assert len(h.sent) == 3
    assert len(h.client_sleeps) == 2
    assert client.stats.retries == 2


def test_auth0_going_away_mid_run_is_retried_then_unavailable(h: Harness) -> None:
    # GIVEN a warm client that already holds a token
    client = h.client(max_attempts=3)
    client.user_logs(USER, page=0)

    # WHEN Auth0 stops answering
    h.simulator.stop()
    with pytest.raises(Auth0UnavailableError):
        client.user_logs(USER, page=0)

    # THEN the call was attempted max_attempts times with back-off in between
    assert client.stats.api_calls == 1 + 3
    assert client.stats.token_requests == 1
    assert len(h.client_sleeps) == 2


def test_timeouts_are_retried_then_unavailable(mock: Harness) -> None:
    # GIVEN an API whose reads always time out
    attempts: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        attempts.append(request.url.path)
        raise httpx.ReadTimeout("timed out", request=request)

    client = mock.client(base_url=MOCK_BASE, transport=mock_api(api), max_attempts=4)

    # WHEN the client calls THEN it tries max_attempts times and reports unavailability
    with pytest.raises(Auth0UnavailableError, match="ReadTimeout"):
        client.user_logs(USER, page=0)
    assert len(attempts) == 4
    assert len(mock.client_sleeps) == 3


def test_a_timeout_then_an_answer_succeeds(mock: Harness) -> None:
    # GIVEN an API whose first read times out
    answers: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        answers.append("timeout" if not answers else "ok")
        if answers[-1] == "timeout":
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200, json=[event()])

    client = mock.client(base_url=MOCK_BASE, transport=mock_api(api))
    # WHEN the client calls THEN the retry's answer is returned
    assert [e["user_id"] for e in client.user_logs(USER, page=0)] == [USER]
    assert answers == ["timeout", "ok"]
    assert client.stats.retries == 1


def test_token_request_timeout_is_retried(mock: Harness) -> None:
    # GIVEN a token endpoint whose first connection attempt times out
    token_calls: list[int] = []

    def token(request: httpx.Request) -> httpx.Response:
        token_calls.append(1)
        if len(token_calls) == 1:
            raise httpx.ConnectTimeout("timed out", request=request)
        return token_answer(request)

    transport = mock_api(lambda r: httpx.Response(200, json=[]), token=token)
    client = mock.client(base_url=MOCK_BASE, transport=transport)
    # WHEN the client calls THEN the token is fetched on the second try and the call succeeds
    assert client.user_logs(USER, page=0) == []
    assert len(token_calls) == 2
    assert len(mock.client_sleeps) == 1


def test_undecodable_body_is_retried_then_unavailable_not_an_httpx_error(mock: Harness) -> None:
    # GIVEN an API answering a body that claims gzip but is not
    transport = mock_api(
        lambda r: httpx.Response(
            200, content=b"not gzip at all", headers={"content-encoding": "gzip"}
        )
    )
    client = mock.client(base_url=MOCK_BASE, transport=transport, max_attempts=2)
    # WHEN the client calls THEN the caller sees the client's own error, never httpx's
    with pytest.raises(Auth0UnavailableError, match="DecodingError"):
        client.user_logs(USER, page=0)


def drain_bucket(h: Harness) -> None:
    """Another client of the tenant takes the one token of its bucket."""
    with httpx.Client() as other:
        drained = other.get(
            f"{h.simulator.base_url}/api/v2/logs",
            headers={"Authorization": f"Bearer {h.tokens_issued[-1]}"},
        )
    assert drained.status_code == 200


def test_429_waits_until_the_reset_then_succeeds(h: Harness) -> None:
    # GIVEN a client that has seen a fast tenant, whose bucket of 1 then refills every 2 s and
    # is emptied by someone else
    h.simulator.rate_limit = RateLimit(burst=1, per_second=100)
    h.simulator.add_event(event())
    client = h.client(share=1.0, per_second=100.0)
    client.user_logs(USER, page=0)
    h.simulator.rate_limit = RateLimit(burst=1, per_second=0.5)
    drain_bucket(h)

    # WHEN the client calls again
    logs = client.user_logs(USER, page=0)

    # THEN the second met a 429, waited for x-ratelimit-reset, and then succeeded
    assert [e["user_id"] for e in logs] == [USER]
    statuses = [r.response.status_code for r in h.received if r.response.url.path != "/oauth/token"]
    assert statuses == [200, 429, 200]
    limited = next(r for r in h.received if r.response.status_code == 429)
    reset = float(limited.response.headers["x-ratelimit-reset"])
    retry = h.api_requests()[2]
    # (not before the reset; after it, at the next slot of the pace the 429 halved)
    assert reset <= retry.at < reset + 1
    assert 0 < reset - limited.at <= 60
    assert client.stats.rate_limited == 1
    assert h.simulator.stats.rate_limited == 1
    # AND the wait was the pacer's (so every worker waits), not a jittered back-off
    assert h.client_sleeps == []
    assert max(h.pacer_sleeps) == pytest.approx(retry.at - limited.at)


def test_429_wait_is_capped_at_60_seconds_and_persistent_429_gives_up(h: Harness) -> None:
    # GIVEN a client that has seen a fast tenant, whose bucket then takes 1,000 s to refill one
    # request and is emptied by someone else
    h.simulator.rate_limit = RateLimit(burst=1, per_second=100)
    client = h.client(share=1.0, per_second=100.0, max_attempts=3)
    client.user_logs(USER, page=0)
    h.simulator.rate_limit = RateLimit(burst=1, per_second=0.001)
    drain_bucket(h)

    # WHEN the next call is rate limited every time
    with pytest.raises(Auth0UnavailableError, match="429"):
        client.user_logs(USER, page=0)

    # THEN each wait was cut at 60 s although x-ratelimit-reset was 800+ s away
    limited = [r for r in h.received if r.response.status_code == 429]
    assert len(limited) == 3
    assert all(float(r.response.headers["x-ratelimit-reset"]) - r.at > 800 for r in limited)
    long_waits = [s for s in h.pacer_sleeps if s > 1]
    assert long_waits == pytest.approx([60.0, 60.0])
    assert max(h.pacer_sleeps) <= 60.0
    assert client.stats.rate_limited == 3
    assert h.simulator.stats.rate_limited == 3


def test_429_without_rate_limit_headers_waits_one_second(h: Harness) -> None:
    # GIVEN one 429 answered with Auth0's body but no x-ratelimit-* headers
    h.simulator.fail_next(1, status=429, html=False)
    client = h.client()
    # WHEN the client calls THEN it waits 1 s and succeeds
    assert client.user_logs(USER, page=0) == []
    assert h.pacer_sleeps == pytest.approx([1.0])
    assert client.stats.rate_limited == 1


@pytest.mark.parametrize(
    ("headers", "expected_wait"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "3600"}, 60.0),
        # A reset already in the past (clock skew) must not become an instant retry.
        (
            {
                "x-ratelimit-limit": "10",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(int(T0) - 30),
            },
            1.0,
        ),
        (
            {
                "x-ratelimit-limit": "10",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(int(T0) + 12),
            },
            12.0,
        ),
    ],
)
def test_429_wait_follows_retry_after_or_reset(
    mock: Harness, headers: dict[str, str], expected_wait: float
) -> None:
    # GIVEN an API answering one 429 with these headers, then the logs
    answers: list[int] = []

    def api(request: httpx.Request) -> httpx.Response:
        answers.append(429 if not answers else 200)
        if answers[-1] == 429:
            return httpx.Response(429, json={"statusCode": 429}, headers=headers)
        return httpx.Response(200, json=[])

    client = mock.client(base_url=MOCK_BASE, transport=mock_api(api), share=1.0, per_second=1e6)
    # WHEN the client calls THEN it waits as the headers say (at most 60 s) and succeeds
    assert client.user_logs(USER, page=0) == []
    assert answers == [429, 200]
    assert sum(mock.pacer_sleeps) == pytest.approx(expected_wait)


# == stats and concurrency ===================================================================


def counts(stats: CallStats) -> tuple[int, int, int, int]:
    return (stats.api_calls, stats.token_requests, stats.rate_limited, stats.retries)


def test_each_run_counts_its_calls_into_the_stats_it_passes(h: Harness) -> None:
    # GIVEN a client whose first run made calls, one of them retried
    h.simulator.fail_next(1, status=503)
    client = h.client()
    first_run = CallStats()
    client.user_logs(USER, page=0, scope=CallScope(first_run))
    client.user_logs(USER, page=1, scope=CallScope(first_run))
    # THEN that run's stats hold its counts: (api calls, token requests, 429s, retries)
    assert counts(first_run) == (3, 1, 0, 1)
    # WHEN a second run passes stats of its own THEN they start from zero, the first stay put,
    # and the client's own default stats saw none of it
    second_run = CallStats()
    client.user_logs(USER, page=2, scope=CallScope(second_run))
    assert counts(second_run) == (1, 0, 0, 0)
    assert counts(first_run) == (3, 1, 0, 1)
    assert counts(client.stats) == (0, 0, 0, 0)


def test_concurrent_workers_share_one_token_and_one_refresh(h: Harness) -> None:
    # GIVEN one client shared by eight workers
    h.simulator.add_events(event(seconds_from_t0=-i) for i in range(5))
    client = h.client()
    failures: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        try:
            barrier.wait()
            for _ in range(5):
                assert len(client.user_logs(USER, page=0)) == 5
        except BaseException as exc:  # collected, asserted below
            failures.append(exc)

    # WHEN they all call at once, twice, with the tokens revoked in between
    for _ in range(2):
        threads = [threading.Thread(target=worker) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
        barrier.reset()
        h.simulator.revoke_tokens()

    # THEN every call succeeded, the first round used one token, and the eight workers that met
    # the revoked token replaced it with a single token request between them
    assert failures == []
    assert h.simulator.stats.requests[("user_logs", 200)] == 80
    assert h.simulator.stats.requests[("token", 200)] == 2
    assert client.stats.token_requests == 2


def test_user_exists_asks_for_the_id_alone_and_spends_no_call_without_read_users(
    h: Harness,
) -> None:
    # GIVEN a tenant with one user and a token granting read:users
    h.simulator.add_user("auth0|known")
    h.simulator.set_scopes(["read:logs", "read:logs_users", "read:users"])
    client = h.client()
    # THEN a known id is True, an unknown one False, each one call asking for user_id only
    assert client.user_exists("auth0|known") is True
    assert client.user_exists("auth0|nobody") is False
    (first, _second) = h.api_requests()
    assert query_of(first) == {"fields": ["user_id"], "include_fields": ["true"]}
    assert raw_path_of(first) == "/api/v2/users/auth0%7Cknown"
    # WHEN the token's answer grants no read:users / THEN the scope error costs no call
    h.simulator.set_scopes(["read:logs", "read:logs_users"])
    h.simulator.revoke_tokens()
    fresh = h.client()
    with pytest.raises(Auth0ScopeError, match="read:users"):
        fresh.user_exists("auth0|known")
    assert h.simulator.stats.calls(endpoint="user") == 2


# -- odd numbers in answers (issue #21 review) -----------------------------------------------


def _mock_client(answer: Callable[[httpx.Request], httpx.Response]) -> Auth0Client:
    return Auth0Client(
        domain="t.auth0.com",
        base_url="https://t.auth0.com",
        credentials=lambda _force: ClientCredentials("id", "s"),
        pacer=Pacer(share=1.0, per_second=1000.0),
        http=httpx.Client(transport=httpx.MockTransport(answer)),
    )


@pytest.mark.parametrize(
    ("expires_in", "tokens", "odd"),
    [
        ("1" + "0" * 400, 1, 1),  # was OverflowError on every read
        ("0", 1, 1),  # was a token request before every call
        ("-60", 1, 1),
        ("true", 1, 1),
        ('"3600"', 1, 1),
        ("3600", 1, 0),
    ],
)
def test_an_odd_token_lifetime_is_clamped_and_counted(
    expires_in: str, tokens: int, odd: int
) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            body = '{"access_token":"t","expires_in":' + expires_in + "}"
            return httpx.Response(200, content=body.encode(), headers={"content-type": "json"})
        return httpx.Response(200, json=[])

    client = _mock_client(answer)
    for _ in range(5):
        assert client.user_logs(USER, page=0) == []
    assert (client.stats.token_requests, client.stats.odd_token_lifetimes) == (tokens, odd)


def test_an_integer_python_cannot_read_is_kept_as_its_text_and_the_page_read() -> None:
    # GIVEN a page whose one event holds an integer of 5,000 digits (valid JSON; Python's int()
    # refuses more than 4,300 digits, which made the whole page unreadable every run)
    huge = "9" * 5000
    page = '[{"log_id":"1","date":"2026-01-01T00:00:00.000Z","n":' + huge + ',"m":10}]'

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 86400})
        return httpx.Response(200, content=page.encode())

    # WHEN it is read THEN the page is read, the number kept as the text it was, the rest as is
    [entry] = _mock_client(answer).user_logs(USER, page=0)
    assert entry["n"] == huge and entry["m"] == 10
