"""The Auth0 simulator, tested through real HTTP, and the traffic generator behind it.

Time is a fake clock throughout: token expiry, rate-limit refill, late visibility and retention are
driven by moving it, never by sleeping. Only the latency test waits, for a fraction of a second.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.auth0_simulator import Auth0Simulator, QueryError, RateLimit, parse_log_query
from devtools.traffic import attack_burst, generate_user_events, iso

REFERENCE = Path(__file__).resolve().parents[3] / "shared" / "reference"
OPENAPI = REFERENCE / "auth0-management-logs.openapi.json"
SAMPLES = REFERENCE / "auth0-sample-events.jsonl"

T0 = 1_795_600_000.0  # 2026-11-25T08:26:40Z, a fixed "now" for the fake clock
USER = "auth0|5f1e2d3c4b5a69788796a5b4"


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def at(seconds_from_t0: float) -> str:
    return iso(datetime.fromtimestamp(T0 + seconds_from_t0, UTC))


def event(user_id: str = USER, seconds_from_t0: float = -60, **extra: Any) -> dict[str, Any]:
    return {"date": at(seconds_from_t0), "type": "s", "user_id": user_id, **extra}


def user_path(user_id: str) -> str:
    return f"/api/v2/users/{quote(user_id, safe='')}/logs"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sim(clock: FakeClock) -> Iterator[Auth0Simulator]:
    # No rate limit unless a test is about it: the fake clock never refills the bucket.
    with Auth0Simulator(clock=clock, rate_limit=None) as simulator:
        yield simulator


@pytest.fixture
def http(sim: Auth0Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sim.base_url, timeout=10) as client:
        yield client


def token_form(sim: Auth0Simulator, **overrides: str) -> dict[str, str]:
    form = {
        "grant_type": "client_credentials",
        "client_id": sim.client_id,
        "client_secret": sim.client_secret,
        "audience": f"https://{sim.domain}/api/v2/",
    }
    form.update(overrides)
    return form


def new_token(http: httpx.Client, sim: Auth0Simulator) -> str:
    response = http.post("/oauth/token", data=token_form(sim))
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    assert isinstance(token, str)
    return token


@pytest.fixture
def auth(http: httpx.Client, sim: Auth0Simulator) -> dict[str, str]:
    return {"Authorization": f"Bearer {new_token(http, sim)}"}


def assert_error(response: httpx.Response, status: int, error_code: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"statusCode", "error", "message", "errorCode"}
    assert body["statusCode"] == status
    if error_code is not None:
        assert body["errorCode"] == error_code


# -- OpenAPI validation -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    if not OPENAPI.exists():
        pytest.skip(f"Auth0 OpenAPI extract not found at {OPENAPI} (../shared is not checked out)")
    loaded: dict[str, Any] = json.loads(OPENAPI.read_text(encoding="utf-8"))
    return loaded


def validate(spec: dict[str, Any], schema_name: str, body: Any) -> None:
    import jsonschema

    # Wrapping the components lets "#/components/schemas/..." refs resolve inside one document.
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": f"#/components/schemas/{schema_name}",
        "components": spec["components"],
    }
    jsonschema.Draft202012Validator(schema).validate(body)


# -- tokens -----------------------------------------------------------------------------------


def test_token_flow_checks_credentials_grant_and_audience(
    http: httpx.Client, sim: Auth0Simulator
) -> None:
    # GIVEN the simulator's client credentials
    # WHEN a token is requested with the tenant-domain audience (not the 127.0.0.1 base URL)
    ok = http.post("/oauth/token", data=token_form(sim))
    # THEN the documented answer comes back
    assert ok.status_code == 200
    body = ok.json()
    assert set(body) == {"access_token", "expires_in", "scope", "token_type"}
    assert body["expires_in"] == 86400
    assert body["token_type"] == "Bearer"
    assert set(body["scope"].split()) == {"read:logs", "read:logs_users"}

    # AND wrong credentials, grant or audience are refused with OAuth-style JSON
    wrong_secret = http.post("/oauth/token", data=token_form(sim, client_secret="nope"))
    assert wrong_secret.status_code == 401
    assert wrong_secret.json() == {"error": "access_denied", "error_description": "Unauthorized"}
    wrong_grant = http.post("/oauth/token", data=token_form(sim, grant_type="password"))
    assert wrong_grant.status_code in (400, 403)
    assert "error" in wrong_grant.json()
    local_audience = http.post(
        "/oauth/token", data=token_form(sim, audience=f"{sim.base_url}/api/v2/")
    )
    assert local_audience.status_code == 403
    assert local_audience.json()["error"] == "access_denied"
    assert http.get("/oauth/token").status_code == 405
    assert sim.stats.requests[("token", 200)] == 1
    assert sim.stats.calls() == 0  # token requests are not API calls


def test_missing_unknown_revoked_and_expired_tokens_get_401(
    http: httpx.Client, sim: Auth0Simulator, clock: FakeClock
) -> None:
    # GIVEN a valid token
    sim.token_ttl_s = 3600
    token = new_token(http, sim)
    good = {"Authorization": f"Bearer {token}"}
    assert http.get(user_path(USER), headers=good).status_code == 200

    # THEN no token, an unknown token and a wrong scheme are 401 with Auth0's 4-key body
    assert_error(http.get(user_path(USER)), 401)
    assert_error(http.get(user_path(USER), headers={"Authorization": "Bearer forged"}), 401)
    assert_error(http.get(user_path(USER), headers={"Authorization": f"Basic {token}"}), 401)

    # WHEN the clock passes the token's lifetime THEN it is refused
    clock.advance(3600)
    expired = http.get("/api/v2/logs", headers=good)
    assert_error(expired, 401)
    assert expired.json()["message"] == "Invalid token."

    # WHEN tokens are revoked THEN a fresh one stops working too
    fresh = {"Authorization": f"Bearer {new_token(http, sim)}"}
    assert http.get(user_path(USER), headers=fresh).status_code == 200
    sim.revoke_tokens()
    assert_error(http.get(user_path(USER), headers=fresh), 401)
    # AND a token issued afterwards works
    after = {"Authorization": f"Bearer {new_token(http, sim)}"}
    assert http.get(user_path(USER), headers=after).status_code == 200


def test_scopes_gate_the_two_endpoints(http: httpx.Client, sim: Auth0Simulator) -> None:
    # GIVEN a token with read:logs_users only
    sim.set_scopes(["read:logs_users"])
    only_users = {"Authorization": f"Bearer {new_token(http, sim)}"}
    # THEN the per-user endpoint works but the tenant-wide one is forbidden
    assert http.get(user_path(USER), headers=only_users).status_code == 200
    forbidden = http.get("/api/v2/logs", headers=only_users, params={"q": "type:s"})
    assert_error(forbidden, 403, "insufficient_scope")
    assert http.get("/api/v2/logs", headers=only_users, params={"take": 5}).status_code == 403

    # GIVEN a token with neither scope THEN even the per-user endpoint is forbidden
    sim.set_scopes([])
    none = {"Authorization": f"Bearer {new_token(http, sim)}"}
    response = http.get(user_path(USER), headers=none)
    assert_error(response, 403, "insufficient_scope")
    assert response.json()["message"] == (
        "Insufficient scope; expected any of: read:logs, read:logs_users."
    )


# -- paging, the cap, sorting, shapes ---------------------------------------------------------


def test_per_page_bounds_and_paging_off(
    http: httpx.Client, sim: Auth0Simulator, auth: dict[str, str]
) -> None:
    # GIVEN 60 events for one user
    sim.add_events(event(seconds_from_t0=-i) for i in range(60))
    path = user_path(USER)
    # THEN per_page outside 1..100 is a 400 with Auth0's JSON body
    for bad in ("0", "101", "-1", "ten"):
        assert_error(http.get(path, headers=auth, params={"per_page": bad}), 400)
    assert_error(http.get(path, headers=auth, params={"page": "-1", "per_page": 10}), 400)
    assert len(http.get(path, headers=auth, params={"per_page": 1}).json()) == 1
    assert len(http.get(path, headers=auth, params={"per_page": 100}).json()) == 60
    # AND without per_page paging is off: the first 50, whatever the page
    assert len(http.get(path, headers=auth).json()) == 50
    off = http.get(path, headers=auth, params={"page": 1}).json()
    assert off == http.get(path, headers=auth).json()


def test_thousand_result_cap_on_both_endpoints(
    http: httpx.Client, sim: Auth0Simulator, auth: dict[str, str]
) -> None:
    # GIVEN more than 1,000 retained events for one user
    sim.add_events(event(seconds_from_t0=-i) for i in range(1005))
    for path in (user_path(USER), "/api/v2/logs"):
        # WHEN page 9 of 100 is asked (results 901..1000) THEN it is served in full
        last_allowed = http.get(path, headers=auth, params={"page": 9, "per_page": 100})
        assert last_allowed.status_code == 200
        assert len(last_allowed.json()) == 100
        # WHEN page 10 is asked THEN Auth0's 400 names that page
        past = http.get(path, headers=auth, params={"page": 10, "per_page": 100})
        assert past.status_code == 400
        assert past.json() == {
            "statusCode": 400,
            "error": "Bad Request",
            "message": "Requesting page 10 exceeds the allowed maximum of 1000 records: "
            "please consider searching by checkpoint",
            "errorCode": "invalid_paging",
        }
        # AND the cap is about records, not pages
        by_50 = http.get(path, headers=auth, params={"page": 20, "per_page": 50})
        assert "Requesting page 20 " in by_50.json()["message"]
        assert http.get(path, headers=auth, params={"page": 19, "per_page": 50}).status_code == 200

    # AND with date:1 the newest events of this user are out of reach
    oldest_first = http.get(
        user_path(USER), headers=auth, params={"page": 9, "per_page": 100, "sort": "date:1"}
    ).json()
    newest = max(e["date"] for e in sim.visible_events(USER))
    assert newest not in {e["date"] for e in oldest_first}


def test_sort_both_ways_is_stable_across_pages_with_equal_dates(
    http: httpx.Client, sim: Auth0Simulator, auth: dict[str, str]
) -> None:
    # GIVEN 12 events on only 4 distinct dates, inserted out of date order
    dates = [-30, -10, -30, -20, -10, -30, -20, -10, -20, -30, -10, -20]
    stored = sim.add_events(event(seconds_from_t0=d, n=i) for i, d in enumerate(dates))

    def all_pages(sort: str) -> list[int]:
        seen: list[int] = []
        for page in range(4):
            params: dict[str, Any] = {"sort": sort, "per_page": 3, "page": page}
            seen += [e["n"] for e in http.get(user_path(USER), headers=auth, params=params).json()]
        return seen

    # WHEN paging 3 at a time oldest first THEN equal dates keep insertion order
    expected = [e["n"] for e in sorted(stored, key=lambda e: e["date"])]  # sorted() is stable
    assert all_pages("date:1") == expected
    # AND newest first is exactly the reverse: no event skipped or repeated at page edges
    assert all_pages("date:-1") == expected[::-1]
    assert all_pages("date:-1") == all_pages("date:-1")
    # AND the default order is newest first, and log_id works as a sort field
    default = [e["n"] for e in http.get(user_path(USER), headers=auth).json()]
    assert default == expected[::-1]
    by_id = http.get(user_path(USER), headers=auth, params={"sort": "log_id:1"}).json()
    assert [e["log_id"] for e in by_id] == sorted(e["log_id"] for e in stored)
    # AND a malformed sort is a 400
    for bad in ("date", "date:2", "date:asc", ":1"):
        assert_error(http.get(user_path(USER), headers=auth, params={"sort": bad}), 400)


@pytest.fixture(scope="module")
def shared() -> Iterator[tuple[Auth0Simulator, httpx.Client, dict[str, str]]]:
    # One server for all property examples; each example uses its own user.
    with (
        Auth0Simulator(clock=FakeClock(), rate_limit=None) as sim,
        httpx.Client(base_url=sim.base_url, timeout=10) as http,
    ):
        yield sim, http, {"Authorization": f"Bearer {new_token(http, sim)}"}


_example_users = itertools.count()


@settings(max_examples=40, deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=30),
    per_page=st.integers(min_value=1, max_value=8),
)
def test_paging_either_way_visits_every_event_once(
    shared: tuple[Auth0Simulator, httpx.Client, dict[str, str]], offsets: list[int], per_page: int
) -> None:
    # GIVEN events on a handful of dates (so many ties), inserted in random date order
    sim, http, auth = shared
    user_id = f"auth0|prop-{next(_example_users)}"
    stored = sim.add_events(event(user_id, seconds_from_t0=-o, n=i) for i, o in enumerate(offsets))
    expected = [e["n"] for e in sorted(stored, key=lambda e: e["date"])]
    pages = range(math.ceil(len(offsets) / per_page))
    for sort, order in (("date:1", expected), ("date:-1", expected[::-1])):
        # WHEN every page is read THEN the pages concatenate to one stable, complete order
        seen = [
            e["n"]
            for page in pages
            for e in http.get(
                user_path(user_id),
                headers=auth,
                params={"sort": sort, "per_page": per_page, "page": page},
            ).json()
        ]
        assert seen == order


def test_both_response_shapes(
    http: httpx.Client, sim: Auth0Simulator, auth: dict[str, str]
) -> None:
    # GIVEN 30 events for a user
    sim.add_events(event(seconds_from_t0=-i) for i in range(30))
    path = user_path(USER)
    # WHEN include_totals is absent or false THEN a bare array comes back
    bare = http.get(path, headers=auth, params={"per_page": 10, "include_totals": "false"}).json()
    assert isinstance(bare, list)
    assert len(bare) == 10
    # WHEN include_totals=true THEN the paginated object comes back
    wrapped = http.get(
        path, headers=auth, params={"per_page": 10, "page": 2, "include_totals": "true"}
    ).json()
    assert set(wrapped) == {"start", "limit", "length", "total", "logs"}
    assert (wrapped["start"], wrapped["limit"], wrapped["length"]) == (20, 10, 10)
    assert wrapped["total"] == 30
    assert (
        wrapped["logs"] == http.get(path, headers=auth, params={"per_page": 10, "page": 2}).json()
    )
    # AND totals can be made to count only the page, as log search v3 may do
    sim.totals_page_only = True
    page_only = http.get(path, headers=auth, params={"per_page": 10, "include_totals": "true"})
    assert page_only.json()["total"] == 10
    assert_error(http.get(path, headers=auth, params={"include_totals": "yes"}), 400)


def test_every_200_body_validates_against_openapi(
    http: httpx.Client, sim: Auth0Simulator, auth: dict[str, str], openapi: dict[str, Any]
) -> None:
    # GIVEN realistic traffic for two users
    start = datetime(2026, 11, 24, tzinfo=UTC)
    rng = random.Random(7)
    sim.add_events(
        generate_user_events(USER, count=60, start=start, end=start + timedelta(1), rng=rng)
    )
    sim.add_events(attack_burst("auth0|victim", count=60, start=start, seconds=30, rng=rng))
    # WHEN each endpoint answers in each of its shapes and modes THEN the body fits the schema
    user_params: list[dict[str, Any]] = [
        {},
        {"per_page": 25, "page": 1, "sort": "date:1"},
        {"per_page": 25, "include_totals": "true"},
        {"include_totals": "true"},
    ]
    for params in user_params:
        response = http.get(user_path(USER), headers=auth, params=params)
        assert response.status_code == 200
        validate(openapi, "UserListLogResponseContent", response.json())
    empty = http.get(user_path("auth0|nobody"), headers=auth, params={"include_totals": "true"})
    validate(openapi, "UserListLogResponseContent", empty.json())
    log_params: list[dict[str, Any]] = [
        {"q": f'user_id:"{USER}"', "per_page": 100},
        {"q": "type:fp OR type:limit_wc", "include_totals": "true", "per_page": 5},
        {"fields": "date,log_id,user_id", "include_fields": "true"},
        {"take": 100},
        {"from": "0", "take": 3},
    ]
    for params in log_params:
        response = http.get("/api/v2/logs", headers=auth, params=params)
        assert response.status_code == 200
        validate(openapi, "ListLogResponseContent", response.json())


# -- rate limit, latency, faults --------------------------------------------------------------


def test_rate_limit_headers_429_and_refill(clock: FakeClock) -> None:
    # GIVEN a bucket of 3 that refills 1 per second, on a fake clock
    with (
        Auth0Simulator(clock=clock, rate_limit=RateLimit(burst=3, per_second=1.0)) as sim,
        httpx.Client(base_url=sim.base_url) as http,
    ):
        headers = {"Authorization": f"Bearer {new_token(http, sim)}"}

        def call() -> httpx.Response:
            return http.get(user_path(USER), headers=headers)

        # WHEN the burst is spent THEN remaining counts down and reset is when it is full again
        for remaining in (2, 1, 0):
            response = call()
            assert response.status_code == 200
            assert response.headers["x-ratelimit-limit"] == "3"
            assert response.headers["x-ratelimit-remaining"] == str(remaining)
            assert response.headers["x-ratelimit-reset"] == str(math.ceil(T0 + 3 - remaining))
        # THEN the next call is a 429 with Auth0's exact body
        limited = call()
        assert limited.status_code == 429
        assert limited.json() == {
            "statusCode": 429,
            "error": "Too Many Requests",
            "message": "Global limit has been reached",
            "errorCode": "too_many_requests",
        }
        assert limited.headers["x-ratelimit-remaining"] == "0"
        assert int(limited.headers["x-ratelimit-reset"]) == math.ceil(T0 + 3)
        assert sim.stats.rate_limited == 1
        # WHEN one second passes THEN one call fits again
        clock.advance(1.0)
        assert call().status_code == 200
        assert call().status_code == 429
        # WHEN long enough passes THEN the bucket is full (and never more than full)
        clock.advance(60)
        assert call().headers["x-ratelimit-remaining"] == "2"
        # AND the token endpoint is outside the limit; a new policy starts full
        assert http.post("/oauth/token", data=token_form(sim)).status_code == 200
        sim.rate_limit = RateLimit(burst=1, per_second=0.5)
        assert call().headers["x-ratelimit-limit"] == "1"
        assert call().status_code == 429
        sim.rate_limit = None
        unlimited = call()
        assert unlimited.status_code == 200
        assert "x-ratelimit-limit" not in unlimited.headers


def test_latency_applies_per_request_and_requests_overlap(clock: FakeClock) -> None:
    # GIVEN 0.25 s of latency per API request
    with Auth0Simulator(clock=clock, rate_limit=None, latency_s=0.25) as sim:
        with httpx.Client(base_url=sim.base_url) as http:
            headers = {"Authorization": f"Bearer {new_token(http, sim)}"}
            started = time.perf_counter()
            assert http.get(user_path(USER), headers=headers).status_code == 200
            assert time.perf_counter() - started >= 0.25

        # WHEN four clients call at once THEN they wait side by side, not in a queue
        statuses: list[int] = []

        def worker() -> None:
            with httpx.Client(base_url=sim.base_url) as own:
                statuses.append(own.get(user_path(USER), headers=headers).status_code)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses == [200] * 4
        assert time.perf_counter() - started < 0.8


def test_fault_injection_html_json_path_filter_and_random(
    http: httpx.Client, sim: Auth0Simulator, auth: dict[str, str]
) -> None:
    # GIVEN two injected gateway failures
    sim.fail_next(2)
    # THEN the token endpoint is unaffected and two API calls get an HTML 503
    assert http.post("/oauth/token", data=token_form(sim)).status_code == 200
    for _ in range(2):
        failed = http.get(user_path(USER), headers=auth)
        assert failed.status_code == 503
        assert failed.headers["content-type"].startswith("text/html")
        assert failed.text.lstrip().startswith("<html>")
        with pytest.raises(json.JSONDecodeError):
            failed.json()
    assert http.get(user_path(USER), headers=auth).status_code == 200

    # GIVEN a JSON failure for /api/v2/logs only THEN the user endpoint passes untouched
    sim.fail_next(1, status=500, html=False, path_contains="/api/v2/logs")
    assert http.get(user_path(USER), headers=auth).status_code == 200
    assert_error(http.get("/api/v2/logs", headers=auth), 500)

    # GIVEN a failure aimed at the token endpoint THEN it fails once
    sim.fail_next(1, status=502, path_contains="/oauth/token")
    assert http.post("/oauth/token", data=token_form(sim)).status_code == 502
    assert http.post("/oauth/token", data=token_form(sim)).status_code == 200

    # GIVEN random failures THEN they use the given statuses, and 0 turns them off
    sim.fail_randomly(1.0, statuses=(500, 503))
    assert {http.get(user_path(USER), headers=auth).status_code for _ in range(10)} <= {500, 503}
    sim.fail_randomly(0.0)
    assert http.get(user_path(USER), headers=auth).status_code == 200


# -- visibility, retention, ids ---------------------------------------------------------------


def test_late_event_is_hidden_until_visible(
    http: httpx.Client, sim: Auth0Simulator, auth: dict[str, str], clock: FakeClock
) -> None:
    # GIVEN an event dated a minute ago that only shows up in five minutes
    sim.add_event(event(seconds_from_t0=-10, n="on time"))
    late = sim.add_event(event(seconds_from_t0=-60, n="late"), visible_at=T0 + 300)
    # THEN no endpoint returns it yet
    assert [e["n"] for e in http.get(user_path(USER), headers=auth).json()] == ["on time"]
    assert len(http.get("/api/v2/logs", headers=auth, params={"take": 100}).json()) == 1
    assert [e["n"] for e in sim.visible_events(USER)] == ["on time"]
    # WHEN the clock reaches visible_at THEN it appears, in its date's place
    clock.advance(300)
    assert [e["n"] for e in http.get(user_path(USER), headers=auth).json()] == ["on time", "late"]
    assert late["log_id"] in {e["log_id"] for e in sim.visible_events()}


def test_retention_drops_expired_events(
    http: httpx.Client, sim: Auth0Simulator, auth: dict[str, str], clock: FakeClock
) -> None:
    # GIVEN one day of retention and events from 2 days, 23 hours and 1 hour ago
    sim.retention_s = 86400
    for hours in (48, 23, 1):
        sim.add_event(event(seconds_from_t0=-hours * 3600, n=hours))
    # THEN the 2-day-old event is gone from every endpoint
    assert [e["n"] for e in http.get(user_path(USER), headers=auth).json()] == [1, 23]
    assert len(http.get("/api/v2/logs", headers=auth, params={"take": 10}).json()) == 2
    # WHEN two more hours pass THEN the 23-hour-old event expires too
    clock.advance(2 * 3600)
    assert [e["n"] for e in sim.visible_events()] == [1]


def test_checkpoint_mode_orders_by_log_id_and_ignores_other_parameters(
    http: httpx.Client, sim: Auth0Simulator, auth: dict[str, str], clock: FakeClock
) -> None:
    # GIVEN three events, then a late one dated before all of them
    first = sim.add_events(event(seconds_from_t0=s, n=s) for s in (-30, -20, -10))
    clock.advance(5)
    late = sim.add_event(event(seconds_from_t0=-40, n="late"))
    ids = [e["log_id"] for e in [*first, late]]
    assert all(len(i) == 56 and i.isdigit() and i.startswith("900") for i in ids)
    assert ids == sorted(ids)  # ids follow ingestion, not date

    # WHEN reading by checkpoint THEN the late event comes last (log_id order, not date)
    everything = http.get("/api/v2/logs", headers=auth, params={"take": 100}).json()
    assert [e["n"] for e in everything] == [-30, -20, -10, "late"]
    after_two = http.get("/api/v2/logs", headers=auth, params={"from": ids[1], "take": 1}).json()
    assert [e["n"] for e in after_two] == [-10]
    # AND q, sort, page and include_totals are ignored
    ignored = http.get(
        "/api/v2/logs",
        headers=auth,
        params={"from": ids[0], "q": "type:nothing", "sort": "date:-1", "include_totals": "true"},
    ).json()
    assert [e["n"] for e in ignored] == [-20, -10, "late"]
    # AND take is 1..100, default 50
    for bad in ("0", "101", "x"):
        assert_error(http.get("/api/v2/logs", headers=auth, params={"take": bad}), 400)
    sim.add_events(event(seconds_from_t0=-1) for _ in range(60))
    assert len(http.get("/api/v2/logs", headers=auth, params={"from": ids[0]}).json()) == 50


def test_event_visible_later_gets_an_id_after_events_visible_before_it(
    http: httpx.Client, sim: Auth0Simulator, auth: dict[str, str], clock: FakeClock
) -> None:
    # GIVEN an event delayed by 5 minutes, then events that are visible at once
    delayed = sim.add_event(event(seconds_from_t0=-100, n="delayed"), visible_at=T0 + 300)
    prompt = sim.add_events(event(seconds_from_t0=-50, n=i) for i in range(3))
    # WHEN a checkpoint reader has read everything visible now
    seen = http.get("/api/v2/logs", headers=auth, params={"take": 100}).json()
    assert [e["n"] for e in seen] == [0, 1, 2]
    # THEN, once the delayed event shows up, reading on from its checkpoint still finds it
    clock.advance(300)
    more = http.get("/api/v2/logs", headers=auth, params={"from": seen[-1]["log_id"]}).json()
    assert [e["log_id"] for e in more] == [delayed["log_id"]]
    assert delayed["log_id"] > max(e["log_id"] for e in prompt)
    # AND events inserted afterwards still get ids above it
    assert sim.add_event(event())["log_id"] > delayed["log_id"]


def test_checkpoint_mode_answers_as_documented_for_unknown_and_expired_ids(
    http: httpx.Client, sim: Auth0Simulator, auth: dict[str, str], clock: FakeClock
) -> None:
    # Auth0 documents `from` as "retrieve log events newer than a given log_id", ordered by
    # log_id, `take` "Default 50, max 100" (docs "Retrieve Log Events Using the Management API";
    # OpenAPI `take`). It does not say what an id it does not hold returns; Elastic's Auth0
    # integration sends ids it builds from a timestamp and reads on from them, so `from` is a
    # bound, not a lookup. GIVEN a day of retention and events ingested as they happened
    sim.retention_s = 86400
    ids = []
    for hours in (30, 20, 10, 1):
        clock.now = T0 - hours * 3600
        ids.append(sim.add_event(event(seconds_from_t0=-hours * 3600, n=hours))["log_id"])
    clock.now = T0

    def read(params: dict[str, Any]) -> list[Any]:
        response = http.get("/api/v2/logs", headers=auth, params=params)
        assert response.status_code == 200, response.text
        return [e["n"] for e in response.json()]

    # WHEN `from` names an id no event has (between the second and third)
    between = ids[1] + "0"
    assert ids[1] < between < ids[2]
    # THEN the events after it come back, in log_id order
    assert read({"from": between, "take": 100}) == [10, 1]
    # WHEN `from` is an id that expired (the 30-hour-old event, past the day of retention)
    # THEN the retained events after it come back: nothing tells the reader what expired
    assert read({"from": ids[0], "take": 100}) == [20, 10, 1]
    # AND a `from` built from a timestamp (Elastic's "900" + YYYYMMDDhhmmss + zeros) is a bound
    # too: on the simulator it works by construction, its ids being built that way
    built = "900" + datetime.fromtimestamp(T0 - 15 * 3600, UTC).strftime("%Y%m%d%H%M%S")
    assert read({"from": built + "0" * 39, "take": 100}) == [10, 1]
    # AND take must be 1..100; without it, 50 come back
    for bad in ("0", "101", "-1", "x"):
        assert_error(
            http.get("/api/v2/logs", headers=auth, params={"from": ids[2], "take": bad}), 400
        )
    assert read({"from": ids[2], "take": 1}) == [1]


def test_checkpoint_answers_carry_the_next_link(
    http: httpx.Client, sim: Auth0Simulator, auth: dict[str, str]
) -> None:
    # "Each subsequent request should be made using the next relation URL inside of the Link
    # header"; an empty result "returns an empty array, and the next relation matches the URL of
    # the most recent request" (same docs page). GIVEN three events
    ids = [sim.add_event(event(seconds_from_t0=-s))["log_id"] for s in (30, 20, 10)]
    # WHEN a page of two is read
    first = http.get("/api/v2/logs", headers=auth, params={"from": ids[0][:-1] + "0", "take": 2})
    # THEN its next link reads on from the last id returned, with the same take
    assert first.headers["link"] == (
        f'<{sim.base_url}/api/v2/logs?from={ids[1]}&take=2>; rel="next"'
    )
    # AND past the end, the answer is empty and the link is the request's own
    last = http.get("/api/v2/logs", headers=auth, params={"from": ids[2], "take": 2})
    assert last.json() == []
    assert last.headers["link"] == f'<{sim.base_url}/api/v2/logs?from={ids[2]}&take=2>; rel="next"'


def test_a_stricter_server_can_refuse_an_unknown_checkpoint(
    http: httpx.Client, sim: Auth0Simulator, auth: dict[str, str]
) -> None:
    # What Auth0 answers for a `from` it does not hold is undocumented: the simulator can also
    # refuse it, so that clients are tested against both readings
    known = sim.add_event(event())["log_id"]
    sim.unknown_from_status = 400
    assert http.get("/api/v2/logs", headers=auth, params={"from": known}).status_code == 200
    assert_error(
        http.get("/api/v2/logs", headers=auth, params={"from": "900" + "0" * 53}),
        400,
        "inexistent_log",
    )


def test_given_log_ids_are_kept(sim: Auth0Simulator) -> None:
    # GIVEN an event that carries its own log_id, twice (sources repeat events)
    given = "90020211104001144643223441133851203963552710102024716354"
    sim.add_event(event(log_id=given))
    sim.add_event(event(log_id=given))
    # THEN both are kept as given
    assert [e["log_id"] for e in sim.visible_events()] == [given, given]
    with pytest.raises(ValueError, match="date"):
        sim.add_event({"user_id": USER, "date": "yesterday"})


def test_one_event_by_its_id(http: httpx.Client, sim: Auth0Simulator, clock: FakeClock) -> None:
    # GET /api/v2/logs/{id}, as the OpenAPI extract gives it: 200 with the event, 404 "Log not
    # found.", 403 without either logs scope (read:logs_users is enough)
    stored = sim.add_event(event())
    hidden = sim.add_event(event(), visible_at=clock.now + 60)
    sim.set_scopes(["read:logs_users"])
    auth = {"Authorization": f"Bearer {new_token(http, sim)}"}
    # WHEN an event is asked for by its id THEN it is returned as stored
    found = http.get(f"/api/v2/logs/{quote(stored['log_id'], safe='')}", headers=auth)
    assert found.status_code == 200
    assert found.json() == stored
    # AND one not visible yet, or unknown, is not found
    for log_id in (hidden["log_id"], "900" + "0" * 53):
        missing = http.get(f"/api/v2/logs/{log_id}", headers=auth)
        assert_error(missing, 404, "inexistent_log")
        assert missing.json()["message"] == "Log not found."
    # AND a token with neither scope is refused
    sim.set_scopes([])
    none = {"Authorization": f"Bearer {new_token(http, sim)}"}
    assert_error(http.get(f"/api/v2/logs/{stored['log_id']}", headers=none), 403)


# -- tenant-wide search -----------------------------------------------------------------------


def test_search_query_language(
    http: httpx.Client, sim: Auth0Simulator, auth: dict[str, str]
) -> None:
    # GIVEN events of two users at known instants, one user id full of special characters
    other = 'samlp|acme|o"brien\\x'
    sim.add_event(event(seconds_from_t0=-300, n="u-300"))
    sim.add_event(event(seconds_from_t0=-200, n="u-200", type="f"))
    sim.add_event(event(seconds_from_t0=-100, n="u-100"))
    sim.add_event(event(other, seconds_from_t0=-200, n="o-200"))

    def search(q: str, sort: str = "date:1") -> list[str]:
        response = http.get("/api/v2/logs", headers=auth, params={"q": q, "sort": sort})
        assert response.status_code == 200, response.text
        return [e["n"] for e in response.json()]

    user = f'user_id:"{USER}"'
    # THEN inclusive [ ] and exclusive { } bounds, and * open ends, behave like Lucene
    assert search(f"{user} AND date:[{at(-200)} TO *]") == ["u-200", "u-100"]
    assert search(f"{user} AND date:{{{at(-200)} TO *]") == ["u-100"]
    assert search(f"{user} AND date:[* TO {at(-200)}}}") == ["u-300"]
    assert search(f"{user} AND date:[{at(-300)} TO {at(-100)}]") == ["u-300", "u-200", "u-100"]
    assert search(f"{user} AND date:{{{at(-300)} TO {at(-100)}}}") == ["u-200"]
    # AND quoted ids with escaped quotes and backslashes match exactly
    escaped = other.replace("\\", "\\\\").replace('"', '\\"')
    assert search(f'user_id:"{escaped}"') == ["o-200"]
    # AND OR, parentheses and NOT combine terms
    # (u-200 and o-200 share a date: descending is the exact reverse of insertion order)
    either = f'{user} OR user_id:"{escaped}"'
    assert search(either, sort="date:-1") == ["u-100", "o-200", "u-200", "u-300"]
    assert search(f"({user} AND type:f) OR date:[{at(-100)} TO *]") == ["u-200", "u-100"]
    assert search(f"{user} AND NOT type:s") == ["u-200"]
    assert search("") == ["u-300", "u-200", "o-200", "u-100"]
    # AND a query that cannot be parsed is a 400, including terms without an operator
    for bad in ('user_id:"unterminated', "date:[x TO *]", "(type:s", f"{user} type:s", "AND"):
        assert_error(http.get("/api/v2/logs", headers=auth, params={"q": bad}), 400)
    # AND fields/include_fields trim the events
    trimmed = http.get(
        "/api/v2/logs", headers=auth, params={"q": user, "fields": "n,date", "per_page": 1}
    ).json()
    assert [set(e) for e in trimmed] == [{"n", "date"}]
    assert sim.stats.calls(endpoint="logs", user_id=other) == 2


def test_equal_dates_sort_deterministically_in_search(
    http: httpx.Client, sim: Auth0Simulator, auth: dict[str, str]
) -> None:
    # GIVEN two events of different users on the same millisecond
    sim.add_event(event(seconds_from_t0=-5, n="first"))
    sim.add_event(event("auth0|other", seconds_from_t0=-5, n="second"))
    params: dict[str, Any] = {"sort": "date:1", "per_page": 1}
    # THEN paging one at a time yields each exactly once, in insertion order
    pages = [
        http.get("/api/v2/logs", headers=auth, params={**params, "page": p}).json()[0]["n"]
        for p in range(2)
    ]
    assert pages == ["first", "second"]


def test_parse_log_query_handles_escapes_and_rejects_garbage() -> None:
    assert parse_log_query("   ") is None
    assert parse_log_query('user_id:"a\\"b\\\\c"') is not None
    for bad in ('user_id:"x" AND', "date:[2026-01-01 TO", "x", "date:[a TO b]"):
        with pytest.raises(QueryError):
            parse_log_query(bad)


def test_over_long_query_is_414(
    http: httpx.Client, sim: Auth0Simulator, auth: dict[str, str]
) -> None:
    long_q = " OR ".join(f'user_id:"auth0|{i:030d}"' for i in range(60))
    assert len(long_q) > 2000
    assert_error(http.get("/api/v2/logs", headers=auth, params={"q": long_q}), 414)


# -- paths, users, stats ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "user_id",
    [
        "auth0|5f1e2d3c",
        "google-oauth2|109876543210",
        "samlp|acme-corp|jane.doe@acme.example",
        "oidc|corp/eu|x=y+z",
        "waad|Contoso Ltd|J Doe",
        "email|%percent%",
    ],
)
def test_percent_encoded_user_ids(
    http: httpx.Client, sim: Auth0Simulator, auth: dict[str, str], user_id: str
) -> None:
    # GIVEN an event for a user whose id has |, /, @, =, +, % or spaces
    sim.add_event(event(user_id))
    sim.add_event(event("auth0|someone-else"))
    # WHEN the id is percent-encoded as one path segment THEN exactly that user's event comes back
    body = http.get(user_path(user_id), headers=auth).json()
    assert [e["user_id"] for e in body] == [user_id]
    assert sim.stats.calls(endpoint="user_logs", user_id=user_id) == 1


def test_unencoded_slash_unknown_user_and_unknown_routes(
    http: httpx.Client, sim: Auth0Simulator, auth: dict[str, str]
) -> None:
    sim.add_event(event("oidc|corp/eu|jane"))
    # GIVEN an id whose '/' was left raw THEN the path is another route: 404
    assert_error(http.get("/api/v2/users/oidc%7Ccorp/eu%7Cjane/logs", headers=auth), 404)
    # GIVEN an unknown user THEN an empty list by default, or a 404 when configured so
    assert http.get(user_path("auth0|nobody"), headers=auth).json() == []
    sim.unknown_user_status = 404
    assert_error(http.get(user_path("auth0|nobody"), headers=auth), 404)
    sim.add_user("auth0|quiet")
    assert http.get(user_path("auth0|quiet"), headers=auth).json() == []
    # AND unknown routes and wrong methods are JSON errors
    assert_error(http.get("/api/v2/clients", headers=auth), 404)
    assert_error(http.post("/api/v2/logs", headers=auth), 405)
    assert_error(http.delete(user_path(USER), headers=auth), 405)


def test_stats_count_calls_per_endpoint_and_user(
    http: httpx.Client, sim: Auth0Simulator, auth: dict[str, str]
) -> None:
    http.get(user_path(USER), headers=auth)
    http.get(user_path(USER), headers=auth)
    http.get("/api/v2/logs", headers=auth, params={"q": f'user_id:"{USER}" OR user_id:"b"'})
    http.get("/api/v2/logs", headers={"Authorization": "Bearer nope"})
    assert sim.stats.calls() == 4
    assert sim.stats.calls(endpoint="user_logs") == 2
    assert sim.stats.calls(user_id=USER) == 3
    assert sim.stats.calls(endpoint="logs", user_id="b") == 1
    assert sim.stats.requests == Counter(
        {("token", 200): 1, ("user_logs", 200): 2, ("logs", 200): 1, ("logs", 401): 1}
    )
    sim.stats.reset()
    assert sim.stats.calls() == 0
    assert sim.stats.requests == Counter()


def test_concurrent_clients_are_served_consistently(sim: Auth0Simulator) -> None:
    # GIVEN events being added while eight clients read
    with httpx.Client(base_url=sim.base_url) as http:
        headers = {"Authorization": f"Bearer {new_token(http, sim)}"}
    failures: list[int] = []

    def reader() -> None:
        with httpx.Client(base_url=sim.base_url) as own:
            for _ in range(15):
                response = own.get(user_path(USER), headers=headers, params={"per_page": 100})
                if response.status_code != 200:
                    failures.append(response.status_code)

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for thread in threads:
        thread.start()
    sim.add_events(event(seconds_from_t0=-i) for i in range(200))
    for thread in threads:
        thread.join()
    # THEN every request succeeded and was counted once
    assert failures == []
    assert sim.stats.calls(endpoint="user_logs", user_id=USER) == 120
    assert len({e["log_id"] for e in sim.visible_events()}) == 200


def test_stop_closes_the_server(clock: FakeClock) -> None:
    sim = Auth0Simulator(clock=clock)
    base_url = sim.start()
    assert httpx.post(f"{base_url}/oauth/token", data=token_form(sim)).status_code == 200
    sim.stop()
    with pytest.raises(httpx.TransportError):
        httpx.post(f"{base_url}/oauth/token", data=token_form(sim), timeout=2)


# -- real sample events -----------------------------------------------------------------------


def test_real_sample_events_are_served_back_unchanged(
    http: httpx.Client, sim: Auth0Simulator, auth: dict[str, str]
) -> None:
    if not SAMPLES.exists():
        pytest.skip(f"Auth0 sample events not found at {SAMPLES} (../shared is not checked out)")
    samples = [json.loads(line) for line in SAMPLES.read_text(encoding="utf-8").splitlines()]
    assert len(samples) == 150
    # GIVEN all 150 real events, repeated log_ids and all
    sim.add_events(samples)
    # WHEN they are read back through tenant-wide search, two pages
    served: list[dict[str, Any]] = []
    for page in range(2):
        params: dict[str, Any] = {"per_page": 100, "page": page, "sort": "date:1"}
        served += http.get("/api/v2/logs", headers=auth, params=params).json()
    # THEN every event comes back exactly as given, log_id included
    canonical = Counter(json.dumps(e, sort_keys=True) for e in samples)
    assert Counter(json.dumps(e, sort_keys=True) for e in served) == canonical
    # AND each user's events come back through the per-user endpoint
    for user_id in {e["user_id"] for e in samples if e.get("user_id")}:
        mine = http.get(user_path(user_id), headers=auth, params={"per_page": 100}).json()
        assert len(mine) == sum(1 for e in samples if e.get("user_id") == user_id)


# -- the traffic generator --------------------------------------------------------------------


TRAFFIC_START = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def make_traffic(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    start = TRAFFIC_START
    ordinary = generate_user_events(
        "google-oauth2|1098", count=400, start=start, end=start + timedelta(days=1), rng=rng
    )
    attack = attack_burst(
        "auth0|victim", count=300, start=start, seconds=90, rng=rng, leaked_password=True
    )
    return ordinary + attack


def test_generated_traffic_is_realistic_and_deterministic() -> None:
    start, make = TRAFFIC_START, make_traffic
    events = make(3)
    # THEN the same seed gives the same events, and another seed other events
    assert events == make(3)
    assert events != make(4)
    ordinary, attack = events[:400], events[400:]
    for batch in (ordinary, attack):
        dates = [e["date"] for e in batch]
        assert dates == sorted(dates)
        assert len(set(dates)) < len(dates)  # equal dates happen
        assert all(len(d) == 24 and d.endswith("Z") for d in dates)
    # AND events look like Auth0's: a mix of types, no log_id, some extras
    types = Counter(e["type"] for e in ordinary)
    assert {"s", "seacft", "fp", "slo"} <= set(types)
    assert types["s"] > types["fp"]
    assert all("log_id" not in e for e in events)
    assert any("security_context" in e for e in events)
    assert all(start <= datetime.fromisoformat(e["date"]) < start + timedelta(1) for e in ordinary)
    # AND the attack is failures from many addresses, some blocks, then the leaked password
    attack_types = Counter(e["type"] for e in attack)
    assert attack_types["fp"] + attack_types["f"] + attack_types["fu"] > 250
    assert attack_types["limit_wc"] >= 1
    assert attack[-1]["type"] == "pwd_leak"
    assert len({e["ip"] for e in attack}) >= 20
    assert datetime.fromisoformat(attack[-1]["date"]) < start + timedelta(seconds=90)


def test_generated_traffic_fits_the_log_schema(openapi: dict[str, Any]) -> None:
    for e in make_traffic(5):
        validate(openapi, "Log", e)


def test_iso_format() -> None:
    assert iso(datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)) == "2026-11-25T10:00:00.123Z"
    assert iso(datetime(2026, 11, 25, 10)) == "2026-11-25T10:00:00.000Z"
    cet = datetime(2026, 11, 25, 11, tzinfo=datetime.fromisoformat("2026-01-01T00:00+01:00").tzinfo)
    assert iso(cet) == "2026-11-25T10:00:00.000Z"


# -- events against Auth0's own schema of each type -------------------------------------------


@pytest.fixture(scope="module")
def log_schemas() -> Path:
    from devtools.schema_events import SCHEMA_DIR

    if not SCHEMA_DIR.is_dir():
        pytest.skip(f"Auth0's log schemas not found at {SCHEMA_DIR} (../shared is not checked out)")
    return SCHEMA_DIR


def test_every_event_the_simulator_serves_is_valid_for_its_types_schema(
    http: httpx.Client, sim: Auth0Simulator, auth: dict[str, str], log_schemas: Path
) -> None:
    from devtools.schema_events import schema_problems
    from devtools.traffic import _TYPE_WEIGHTS

    # GIVEN ordinary traffic and attack bursts over several seeds, stored in the simulator
    for seed in range(2):
        sim.add_events(make_traffic(seed))
    # WHEN they are read back over HTTP in checkpoint mode, as the forwarder reads them
    served: list[dict[str, Any]] = []
    while True:
        params: dict[str, Any] = {"take": 100, "from": served[-1]["log_id"] if served else "0"}
        response = http.get("/api/v2/logs", params=params, headers=auth)
        assert response.status_code == 200, response.text
        if not response.json():
            break
        served += response.json()
    # THEN each one is valid against Auth0's schema for its type, every type generated included
    problems = {e["log_id"]: p for e in served if (p := schema_problems(e, log_schemas))}
    assert not problems, list(problems.items())[:3]
    assert {e["type"] for e in served} == {code for code, _ in _TYPE_WEIGHTS}
    assert len(served) == 2 * 700


def test_schema_events_make_a_valid_event_of_every_type_auth0_defines(log_schemas: Path) -> None:
    from devtools.schema_events import event_codes, events_for_type, schema_problems

    codes = event_codes(log_schemas)
    assert len(codes) == 166
    for code in codes:
        for seed in range(3):
            # GIVEN events of one type made from its schema, with optional fields chosen at random
            events = events_for_type(code, random.Random(seed), count=2, directory=log_schemas)
            for e in events:
                # THEN each is valid for that type, and carries what a reader looks for first
                assert schema_problems(e, log_schemas) == [], (code, seed)
                assert e["type"] == code and e["log_id"].startswith("900")
                assert e["date"] < events[-1]["date"] or e is events[-1]
    # AND the same seed gives the same events, another seed other ones
    assert events_for_type("sapi", random.Random(1)) == events_for_type("sapi", random.Random(1))
    assert events_for_type("sapi", random.Random(1)) != events_for_type("sapi", random.Random(2))


def test_schema_problems_names_what_a_types_schema_refuses(log_schemas: Path) -> None:
    from devtools.schema_events import SchemaNotFound, events_for_type, schema_problems

    good = events_for_type("sdel", random.Random(3), directory=log_schemas)[0]
    assert schema_problems(good, log_schemas) == []
    # GIVEN the same event broken three ways: a required field gone, a wrong type, a bad address
    missing = {k: v for k, v in good.items() if k != "tenant_name"}
    wrong = {**good, "is_mobile": "yes"}
    bad_ip = {**good, "ip": "999.1.1.1"}
    assert any("tenant_name" in p for p in schema_problems(missing, log_schemas))
    assert any(p.startswith("is_mobile:") for p in schema_problems(wrong, log_schemas))
    assert any(p.startswith("ip:") for p in schema_problems(bad_ip, log_schemas))
    # AND a code Auth0 defines no schema for is named, not guessed
    with pytest.raises(SchemaNotFound, match="'brand_new'"):
        events_for_type("brand_new", random.Random(1), directory=log_schemas)


def test_get_a_user_answers_as_auth0_documents_it(
    http: httpx.Client, sim: Auth0Simulator, clock: FakeClock
) -> None:
    # GIVEN a user with an event, a user known without events, and a token with read:users
    odd = "samlp|corp|carol/admin@example.com"
    sim.add_event(event(odd))
    sim.add_user("auth0|quiet")
    sim.set_scopes(["read:logs", "read:users"])
    headers = {"Authorization": f"Bearer {new_token(http, sim)}"}

    def get(user_id: str, **params: str) -> httpx.Response:
        return http.get(f"/api/v2/users/{quote(user_id, safe='')}", headers=headers, params=params)

    # THEN known users are 200, and `fields`/`include_fields` choose what is returned
    assert get(odd).json()["user_id"] == odd
    assert get("auth0|quiet", fields="user_id", include_fields="true").json() == {
        "user_id": "auth0|quiet"
    }
    # AND an unknown or deleted user is Auth0's 404, whatever the logs' setting
    assert_error(get("auth0|nobody"), 404, "inexistent_user")
    assert get("auth0|nobody").json()["message"] == "The user does not exist."
    sim.delete_user(odd)
    assert_error(get(odd), 404, "inexistent_user")
    # AND without read:users it is a 403, like every endpoint's missing scope
    sim.set_scopes(["read:logs", "read:logs_users"])
    plain = {"Authorization": f"Bearer {new_token(http, sim)}"}
    refused = http.get(f"/api/v2/users/{quote('auth0|quiet', safe='')}", headers=plain)
    assert_error(refused, 403, "insufficient_scope")
    assert sim.stats.calls(endpoint="user") == 6
