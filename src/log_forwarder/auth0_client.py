"""The Auth0 Management API client: token, retries, pacing, and the log endpoints.

Failures are classified once, here, into the exception tree of `exceptions.py`; callers never see
an httpx error. No message built here contains a token or a client secret, nor a user id: a
request is named by its path's template (`GET /api/v2/users/{id}/logs`).

Every answer is read as a stream, with a limit (MAX_ANSWER_BYTES): whatever answers in Auth0's
place cannot take the function's 256 MB with one answer. A page of a user's log that is over it is
asked for again in pieces (PIECE entries, then one): a page with one huge entry still delivers the
other 99, and that entry becomes a placeholder the forwarder quarantines (a record in the
destinations). What cannot be cut smaller is an error that names the request and the bytes read.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import random
import socket
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from .answer_deadline import answer_by, deadline_client
from .exceptions import (
    Auth0AnswerTooLarge,
    Auth0AuthError,
    Auth0Error,
    Auth0MalformedResponse,
    Auth0NotFoundError,
    Auth0RequestError,
    Auth0ScopeError,
    Auth0SearchCapError,
    Auth0UnavailableError,
    OutOfTime,
)
from .pacing import Pacer, RateLimitHeaders
from .retry import MIN_ATTEMPT_S, Attempts, RetryPolicy, retry_call
from .source import PER_PAGE_MAX, CallScope, CallStats

__all__ = ["Auth0Client", "CallScope", "CallStats", "ClientCredentials"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

# Renew this long before expiry so a token never dies in the middle of a run; a short-lived token
# renews this fraction of its lifetime early instead (else it would be renewed on every call).
TOKEN_RENEW_MARGIN_S = 300
TOKEN_RENEW_FRACTION = 0.1
# The lifetimes a token answer's `expires_in` is held to. Auth0's default is 86,400 s and its
# maximum 2,592,000 s (30 days: "Update Access Token Lifetime"); it documents no minimum. An
# answer outside this (0, negative, a 401-digit integer) is odd: clamped and counted
# (OddTokenLifetimes). A minute at the least keeps a token answering 0 from costing one token
# request a call (the tenant's rate limit, and its M2M token quota); a token that dies sooner
# is renewed after its first 401, as a revoked one is.
MIN_TOKEN_LIFETIME_S = 60
MAX_TOKEN_LIFETIME_S = 2_592_000
DEFAULT_TOKEN_LIFETIME_S = 86_400
MAX_429_WAIT_S = 60.0
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)
# The most an answer of the log endpoints may hold, decoded. A page is at most 100 entries; the
# 150 real sample events (../shared/reference) are 0.4 to 6.9 KB, median 1.2 KB (a page of the
# largest: 0.7 MB), and Auth0's log schemas bound no field of `details`. The largest a single
# event can plausibly be is a Management API write (`sapi`) logging its request, and Auth0's API
# accepts payloads of at most 1 MB ("All endpoints accept a maximum payload size of 1 megabyte",
# Management API reference). 8 MiB holds such an event with its page around it, over ten times
# the largest sample page, and read whole and parsed (about 3.2 bytes of Python objects per byte
# of JSON, measured on the samples) it stays near 35 MB of the function's 256 MB. A page over it is
# read again in pieces; only one entry that is itself over it cannot be read.
MAX_ANSWER_BYTES = 8 * 2**20
# A token answer is a JWT and three short fields: a few KB.
MAX_TOKEN_ANSWER_BYTES = 64 * 2**10
# An error answer (4xx, 5xx) is read only for its message: the rest of it is left unread.
MAX_ERROR_BODY_BYTES = 64 * 2**10
# A page over the limit is asked for again as pages of this many entries, then of one.
PIECE = 10
# What identifies an entry too large to read: a digest of the first bytes of its answer (and
# those bytes, shortened, for the operator), the same on every read of it.
OVERSIZED_DIGEST_BYTES = 64 * 2**10
OVERSIZED_SHOWN_BYTES = 1024


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """The Management API client's id and secret; its repr never shows the secret."""

    client_id: str
    client_secret: str

    def __repr__(self) -> str:
        return f"ClientCredentials(client_id={self.client_id!r}, client_secret='***')"


class Auth0Client:
    """Implements `source.LogSource`. Calls run in the `scope` they are given; without one, they
    count into the client's own `stats` and have no deadline (for direct use)."""

    def __init__(
        self,
        *,
        domain: str,
        base_url: str,
        credentials: Callable[[bool], ClientCredentials],
        pacer: Pacer,
        http: httpx.Client | None = None,
        max_attempts: int = 6,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        """`credentials(force_refresh)` returns the M2M client's id and secret."""
        self._domain = domain
        self._base_url = base_url.rstrip("/")
        self._credentials = credentials
        self._pacer = pacer
        self._http = http or deadline_client(timeout=DEFAULT_TIMEOUT, follow_redirects=False)
        # Full jitter over a capped exponential: retries of concurrent workers spread out.
        self._retry_policy = RetryPolicy(attempts=max_attempts, base_s=0.5, cap_s=20.0)
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._token_lock = threading.Lock()
        self._token: str | None = None
        self._token_renew_at = 0.0
        # The scopes the last token answer granted (None: it did not say).
        self._granted: frozenset[str] | None = None
        self.stats = CallStats()

    @property
    def granted_scopes(self) -> frozenset[str] | None:
        """The scopes the last token answer granted (None: none asked yet, or it did not say)."""
        return self._granted

    # -- the log endpoints ---------------------------------------------------------------------

    def user_logs(
        self,
        user_id: str,
        *,
        page: int,
        per_page: int = PER_PAGE_MAX,
        sort: str = "date:-1",
        scope: CallScope | None = None,
    ) -> list[Any]:
        """One page of GET /api/v2/users/{id}/logs. A page over MAX_ANSWER_BYTES, read newest
        first, is read again in pieces (`_in_pieces`); an entry over it alone comes back as a
        placeholder (an entry with no log_id or date: the forwarder quarantines it)."""
        # The id is one path segment: '|', '/', '@', '=' and spaces are all encoded.
        path = f"/api/v2/users/{quote(user_id, safe='')}/logs"
        scope = scope or CallScope(self.stats)

        def one(page: int, per_page: int) -> list[Any]:
            params = {"page": page, "per_page": per_page, "sort": sort, "include_totals": "false"}
            return _log_list(self._get((path, USER_LOGS), params, scope))

        return _paged(one, page, per_page, sort, USER_LOGS)

    def search_logs(
        self,
        query: str,
        *,
        page: int = 0,
        per_page: int = PER_PAGE_MAX,
        sort: str = "date:1",
        scope: CallScope | None = None,
    ) -> list[Any]:
        """One page of tenant-wide search, GET /api/v2/logs?q=… (needs the read:logs scope);
        over MAX_ANSWER_BYTES, read in pieces as `user_logs` is."""
        scope = scope or CallScope(self.stats)

        def one(page: int, per_page: int) -> list[Any]:
            params = {
                "q": query,
                "page": page,
                "per_page": per_page,
                "sort": sort,
                "include_totals": "false",
            }
            return _log_list(self._get(("/api/v2/logs", SEARCH), params, scope))

        return _paged(one, page, per_page, sort, SEARCH)

    def user_exists(self, user_id: str, *, scope: CallScope | None = None) -> bool:
        """GET /api/v2/users/{id} (read:users): True when Auth0 knows the id, False on 404.
        Only `user_id` is asked for, so no profile data is read. A token whose answer granted
        no read:users is Auth0ScopeError at once: a call Auth0 would refuse is not spent."""
        call = scope or CallScope(self.stats)
        self._access_token(call)
        granted = self._granted
        if granted is not None and "read:users" not in granted:
            raise Auth0ScopeError("the token grants no read:users scope (GET /api/v2/users/{id})")
        path = (f"/api/v2/users/{quote(user_id, safe='')}", "/api/v2/users/{id}")
        try:
            body = self._get(path, {"fields": "user_id", "include_fields": "true"}, call)
        except Auth0NotFoundError:
            return False
        if not isinstance(body, dict):
            raise Auth0MalformedResponse(
                f"GET /api/v2/users/{{id}} answered a {type(body).__name__}"
            )
        return True

    def authenticate(self, scope: CallScope | None = None) -> None:
        """Get a token now, as the first call of a run would (the CLI's `check`)."""
        self._access_token(scope or CallScope(self.stats))

    def tenant_logs(
        self, after: str, *, take: int = PER_PAGE_MAX, scope: CallScope | None = None
    ) -> list[Any]:
        """One page of the tenant's log by checkpoint, GET /api/v2/logs?from=…&take=… (needs
        read:logs): events with a log_id after `after`, in log_id order. Auth0 ignores every
        other parameter here, `q` included, so nothing else is sent. A page over
        MAX_ANSWER_BYTES is read again in pieces, each from the last log_id of the one before;
        an entry over it alone cannot be passed (the next `from` is its log_id): the error."""
        scope = scope or CallScope(self.stats)

        def one(after: str, take: int) -> list[Any]:
            params = {"from": after, "take": take}
            return _log_list(self._get(("/api/v2/logs", TENANT_LOG), params, scope))

        try:
            return one(after, take)
        except Auth0AnswerTooLarge as too_large:
            # One entry over the limit: no `from` passes it but its own log_id. (The token's
            # answer is no page to cut.)
            if take <= 1 or too_large.tenant_wide:
                raise
        entries: list[Any] = []
        while len(entries) < take:
            want = min(PIECE if take > PIECE else 1, take - len(entries))
            piece = self.tenant_logs(after, take=want, scope=scope)  # cut smaller if need be
            entries.extend(piece)
            if len(piece) < want:
                break  # the end of the log
            after = _last_log_id(piece)
        return entries

    def log_event(self, log_id: str, *, scope: CallScope | None = None) -> Any:
        """One entry by its id, GET /api/v2/logs/{id} (read:logs or read:logs_users);
        Auth0NotFoundError when Auth0 no longer has it ("Log not found.")."""
        return self._get(
            (f"/api/v2/logs/{quote(log_id, safe='')}", LOG_BY_ID),
            {},
            scope or CallScope(self.stats),
        )

    # -- transport -----------------------------------------------------------------------------

    def _get(self, target: tuple[str, str], params: Mapping[str, Any], scope: CallScope) -> Any:
        """GET `target` (the path, and its template: what messages name) within `scope`."""
        path, name = target
        refreshed_after_401 = False

        def attempt() -> Any:
            nonlocal refreshed_after_401
            token = self._access_token(scope)
            ticket = self._pacer.take(scope.deadline)
            scope.stats.count("pacing_wait_s", ticket.waited_s)
            scope.stats.count("api_calls")
            response = self._send(
                scope,
                ("GET", path, name),
                MAX_ANSWER_BYTES,
                params=dict(params),
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            )
            status = response.status_code
            # The pacer learns the tenant's rate limit from every answer and what it was sent with.
            self._pacer.observe(
                RateLimitHeaders.parse(response.headers), ticket=ticket, limited=status == 429
            )
            action = _classify(status, token_request=False)
            if action is _Action.OK:
                return _json(response, name)
            if action is _Action.REAUTHENTICATE and not refreshed_after_401:
                # Expired or revoked: one new token, one retry. A second 401 is a real refusal.
                refreshed_after_401 = True
                self._invalidate_token(token)
                raise _Again(f"401 from {name}", wait_s=0.0, counted=False)
            if action is _Action.RATE_LIMITED:
                scope.stats.count("rate_limited")
                self._pacer.back_off_until(self._clock() + self._wait_after_429(response))
                raise _Again(f"429 from {name}", wait_s=0.0)  # the pacer holds the next call
            if action is _Action.TRANSIENT:
                raise _Again(f"HTTP {status} from {name}")
            raise _client_error(status, name, response)

        return self._retried(attempt, scope)

    def _retried(self, attempt: Callable[[], T], scope: CallScope) -> T:
        """`attempt` through the one retry loop: what Auth0 or the network said is transient
        (`_Again`) is retried with the client's backoff, or the wait the answer asked for."""
        failed: list[_Again] = []  # each failure retried, the last one last

        def on_retry(error: Exception) -> float | None:
            assert isinstance(error, _Again)
            failed.append(error)
            if error.counted:
                scope.stats.count("retries")
                logger.warning(
                    "Auth0 call failed, retrying",
                    extra={"reason": str(error), "attempt": attempts.made},
                )
            return error.wait_s

        def fail(error: Exception, made: int) -> Exception:
            return Auth0UnavailableError(f"{error}; gave up after {made} attempts")

        attempts = self._attempts(scope)
        try:
            return retry_call(
                attempt,
                attempts=attempts,
                errors=(_Again,),
                retryable=lambda _error: True,
                fail=fail,
                on_retry=on_retry,
                # A new token or a fresh read of the secret, once per call (the attempts bound it).
                spared=lambda error: isinstance(error, _Again) and not error.counted,
            )
        except OutOfTime:
            # Auth0 failed (5xx, the network, no answer within the client's whole timeout) and
            # no time is left to try again: that is Auth0 unavailable, said as such (the
            # tenant's failure when it is every user's), not a user merely deferred. A 429's
            # wait is the pacer's, and a timeout the deadline shortened only ran out of time:
            # deferred.
            failures = [e for e in failed if e.counted and e.wait_s is None and not e.cut_short]
            if not failures or failed[-1].wait_s is not None:
                raise
            raise Auth0UnavailableError(
                f"{failures[-1]}; gave up after {attempts.made} attempts (no time left for another)"
            ) from failures[-1]

    def _send(
        self, scope: CallScope, target: tuple[str, str, str], limit: int, **request: Any
    ) -> httpx.Response:
        """One HTTP exchange (`target`: method, path and the path's template) within the time
        left, its answer read up to `limit` bytes. A failure below HTTP is `_Again` (retried):
        callers never see an httpx exception. A 200 over the limit is Auth0AnswerTooLarge, not
        retried: the same request gets the same answer."""
        method, path, name = target
        left = scope.deadline.left_s()
        scope.deadline.ensure(MIN_ATTEMPT_S, f"a call to {self._host}{name}")
        # Never wait for an answer past the deadline: the run must end in time to report.
        timeout = httpx.Timeout(
            min(DEFAULT_TIMEOUT.read or left, left),
            connect=min(DEFAULT_TIMEOUT.connect or left, left),
        )
        try:
            return self._exchange(scope, (method, self._base_url + path), timeout, request, limit)
        except httpx.RequestError as exc:
            # Transport failures, timeouts, and bodies that cannot be decoded (DecodingError
            # is not a TransportError).
            # A timeout the deadline shortened says only that time ran out, not that Auth0 failed.
            cut_short = isinstance(exc, httpx.TimeoutException) and left < (
                DEFAULT_TIMEOUT.read or left
            )
            raise _Again(
                f"{type(exc).__name__} calling {self._host}{name}", cut_short=cut_short
            ) from exc
        except _CutAtDeadline as cut:
            raise OutOfTime(
                f"{self._host}{name} was still answering at the invocation's deadline ("
                f"{cut.bytes_read:,} bytes read): the connection was cut and the work resumes "
                "next run"
            ) from None
        except _UnreadableEncoding as odd:
            shown = _request_shown(method, name, request.get("params") or {})
            raise Auth0MalformedResponse(
                f"{shown} answered with content-encoding {str(odd)[:80]!r}: the client asks for "
                f"{ACCEPTED_ENCODINGS} and reads one of them at most, never a chain or another "
                "coding (each layer multiplies what a few bytes may decode to)"
            ) from None
        except _TooLarge as cut:
            scope.stats.count("oversized_answers")
            shown = _request_shown(method, name, request.get("params") or {})
            logger.warning(
                "Auth0 answer over the limit: the rest was not read",
                extra={"request": shown, "bytes_read": cut.bytes_read, "limit": limit},
            )
            raise Auth0AnswerTooLarge(
                f"{shown} answered more than {_mib(limit)} ({cut.bytes_read:,} bytes read before "
                f"the client stopped): an answer may hold at most {_mib(limit)}",
                request=shown,
                bytes_read=cut.bytes_read,
                limit=limit,
                head=cut.head,
            ) from None

    def _exchange(
        self,
        scope: CallScope,
        target: tuple[str, str],
        timeout: httpx.Timeout,
        request: dict[str, Any],
        limit: int,
    ) -> httpx.Response:
        """The response, read within the deadline: httpx's timeouts bound each wait between two
        bytes, not the whole answer, so a watchdog cuts the connection at the deadline (an answer
        sent a byte at a time ends there, `_CutAtDeadline`). The body is read raw and decoded
        here, a network chunk at a time with a bounded output (`_Inflater`), so a compressed
        answer counts at its real size and a compression bomb stops at `limit`; leaving the
        stream unread closes the connection, so the rest is never received. An error answer is
        kept only up to MAX_ERROR_BODY_BYTES, for its message."""
        method, url = target
        headers = {**request.get("headers", {}), "Accept-Encoding": ACCEPTED_ENCODINGS}
        request = {**request, "headers": headers}
        # The connection keeps to the deadline too (answer_deadline): headers dripped a byte at
        # a time, before any response exists for the watchdog to cut, end there as well.
        with (
            answer_by(scope.deadline.left_s()),
            self._http.stream(method, url, timeout=timeout, **request) as response,
        ):
            keep = limit if response.status_code == 200 else min(limit, MAX_ERROR_BODY_BYTES)
            if response.is_stream_consumed:  # an event hook read it already
                if response.status_code == 200 and len(response.content) > keep:
                    raise _TooLarge(
                        len(response.content), response.content[:OVERSIZED_DIGEST_BYTES]
                    )
                return response
            try:
                inflater = _Inflater.of(response.headers.get("content-encoding"))
            except _UnreadableEncoding:
                if response.status_code == 200:
                    raise
                # An error answer is read for its message only: its status still says what
                # happened (a gateway's 503 is retried as any other).
                return httpx.Response(
                    response.status_code,
                    # Its headers still count (retry-after, x-ratelimit-reset); not the body's.
                    headers=[h for h in response.headers.items() if h[0].lower() not in _BODY],
                    request=response.request,
                )
            body = bytearray()
            with _Watchdog(response, scope.deadline.left_s()) as watchdog:
                try:
                    for raw in response.iter_raw():
                        body += inflater.inflate(raw, keep + 1 - len(body))
                        if len(body) > keep:
                            if response.status_code == 200:
                                raise _TooLarge(len(body), bytes(body[:OVERSIZED_DIGEST_BYTES]))
                            del body[keep:]
                            break
                        scope.deadline.ensure(0, f"reading the answer of {self._host}")
                except httpx.RequestError:
                    if watchdog.fired:
                        raise _CutAtDeadline(len(body)) from None
                    raise
            kept = response.headers.copy()
            # The body is decoded already: the rebuilt answer must not be decoded again.
            kept.pop("content-encoding", None)
            return httpx.Response(
                response.status_code,
                headers=kept,
                content=bytes(body),
                request=response.request,
            )

    @property
    def _host(self) -> str:
        return httpx.URL(self._base_url).host

    def _attempts(self, scope: CallScope) -> Attempts:
        return Attempts(
            self._retry_policy, sleep=self._sleep, rng=self._rng, deadline=scope.deadline
        )

    def _wait_after_429(self, response: httpx.Response) -> float:
        retry_after = response.headers.get("retry-after")
        if retry_after is not None and retry_after.strip().isdigit():
            return min(MAX_429_WAIT_S, float(retry_after))
        limits = RateLimitHeaders.parse(response.headers)
        if limits is not None:
            until_reset = limits.reset_epoch_s - self._clock()
            # A reset that is already past (clock skew, a stale header) must not turn into an
            # immediate retry that is sure to be refused again: fall through to the default.
            if until_reset > 0:
                return min(MAX_429_WAIT_S, until_reset)
        return 1.0

    # -- token -----------------------------------------------------------------------------------

    def _access_token(self, scope: CallScope) -> str:
        with self._token_lock:
            if self._token is None or self._clock() >= self._token_renew_at:
                # The lifetime counts from when the token was asked for, not from when the
                # (possibly retried) answer arrived.
                requested_at = self._clock()
                try:
                    self._token, lifetime = self._request_token(scope)
                except Auth0Error as error:
                    # Without a token no user can be read: whatever kept it is the tenant's.
                    error.tenant_wide = True
                    raise
                margin = min(TOKEN_RENEW_MARGIN_S, lifetime * TOKEN_RENEW_FRACTION)
                self._token_renew_at = requested_at + lifetime - margin
            return self._token

    def _invalidate_token(self, token: str) -> None:
        with self._token_lock:
            # Another worker may already have replaced it.
            if self._token == token:
                self._token = None

    def _request_token(self, scope: CallScope) -> tuple[str, float]:
        """POST /oauth/token. A refusal (401/403) reads the credentials again once, in case the
        secret was rotated; outages (network, 5xx, 408, 429) are retried like API calls and end
        in Auth0UnavailableError, never in Auth0AuthError: they say nothing about the secret."""
        credentials = self._credentials(False)
        reread = False

        def attempt() -> tuple[str, float]:
            nonlocal credentials, reread
            scope.stats.count("token_requests")
            response = self._send(
                scope,
                ("POST", "/oauth/token", "/oauth/token"),
                MAX_TOKEN_ANSWER_BYTES,
                data={
                    "grant_type": "client_credentials",
                    "client_id": credentials.client_id,
                    "client_secret": credentials.client_secret,
                    # Always the tenant's own audience, even when talking to another base URL.
                    "audience": f"https://{self._domain}/api/v2/",
                },
            )
            status = response.status_code
            action = _classify(status, token_request=True)
            if action is _Action.OK:
                self._granted = _granted_scopes(response)
                token, lifetime, odd = _token_answer(response)
                if odd is not None:
                    scope.stats.count("odd_token_lifetimes")
                    logger.warning(
                        "Token answer with an odd expires_in: clamped",
                        extra={"expires_in": odd, "lifetime_s": lifetime},
                    )
                return token, lifetime
            if action is _Action.REAUTHENTICATE and not reread:
                # The secret may have been rotated since we cached it: read it again, once.
                reread = True
                credentials = self._credentials(True)
                raise _Again(f"HTTP {status} requesting a token", wait_s=0.0, counted=False)
            if action is _Action.RATE_LIMITED:
                scope.stats.count("rate_limited")
                raise _Again("429 requesting a token", wait_s=self._wait_after_429(response))
            if action is _Action.TRANSIENT:
                raise _Again(f"HTTP {status} requesting a token")
            raise _token_refusal(status, response, credentials.client_id)

        return self._retried(attempt, scope)


class _Action(Enum):
    """What an answer's status means for the call that got it."""

    OK = "ok"
    REAUTHENTICATE = "reauthenticate"  # once: a new token, or credentials read again
    RATE_LIMITED = "rate limited"  # retried after the wait the answer asks for
    TRANSIENT = "transient"  # retried with backoff
    REFUSED = "refused"  # the request itself is refused: a specific Auth0 error


def _classify(status: int, *, token_request: bool) -> _Action:
    """The one reading of an Auth0 status, for API calls and the token request alike."""
    if status == 200:
        return _Action.OK
    if status == 401 or (token_request and status == 403):
        return _Action.REAUTHENTICATE
    if status == 429:
        return _Action.RATE_LIMITED
    if status >= 500 or status == 408:
        return _Action.TRANSIENT
    return _Action.REFUSED


# What messages call each endpoint: its path's template, never a user id or a log_id.
USER_LOGS = "/api/v2/users/{id}/logs"
SEARCH = "/api/v2/logs (search)"
TENANT_LOG = "/api/v2/logs (checkpoint)"
LOG_BY_ID = "/api/v2/logs/{id}"
# Parameters a request is shown with (`q` names a user; none of these is secret).
_SHOWN_PARAMS = ("page", "per_page", "sort", "from", "take")


class _TooLarge(Exception):
    """An answer went past its limit after `bytes_read` bytes; `head`: its first bytes."""

    def __init__(self, bytes_read: int, head: bytes) -> None:
        super().__init__(f"{bytes_read} bytes")
        self.bytes_read = bytes_read
        self.head = head


class _CutAtDeadline(Exception):
    """The deadline came while an answer was still arriving: the watchdog cut its connection."""

    def __init__(self, bytes_read: int) -> None:
        super().__init__(f"{bytes_read} bytes")
        self.bytes_read = bytes_read


class _UnreadableEncoding(Exception):
    """An answer's content-encoding is none the client asked for, or a chain of them."""


# What the client asks for and reads: one of these at most. gzip saves Auth0's bandwidth and
# ours (a page of the sample events shrinks 11.6 times) and is bounded here as it is decoded; a
# chain (`gzip, gzip`) is refused, since each layer multiplies what a few bytes may become.
ACCEPTED_ENCODINGS = "gzip, deflate"


class _Inflater:
    """Decodes an answer's body a network chunk at a time, never producing more than it is asked
    for: a 100 KB gzip bomb of 100 MB yields the limit and one byte, never the 100 MB."""

    def __init__(self, wbits: int | None) -> None:
        self._wbits = wbits
        self._zlib = None if wbits is None else zlib.decompressobj(wbits)
        self._started = False

    @classmethod
    def of(cls, content_encoding: str | None) -> _Inflater:
        codings = [c.strip().lower() for c in (content_encoding or "").split(",")]
        codings = [c for c in codings if c not in ("", "identity")]
        if not codings:
            return cls(None)
        if len(codings) == 1 and codings[0] in _WBITS:
            return cls(_WBITS[codings[0]])
        raise _UnreadableEncoding(content_encoding)

    def inflate(self, data: bytes, most: int) -> bytes:
        """What `data` decodes to, `most` bytes of it at the most (the caller stops there: what
        is left in the decoder is never decoded)."""
        if self._zlib is None:
            return data
        try:
            out = self._zlib.decompress(data, most)
        except zlib.error as error:
            if self._started or self._wbits != zlib.MAX_WBITS:
                raise httpx.DecodingError(f"a body that does not decode: {error}") from None
            # `deflate` is zlib's format by the RFC, but some servers send a raw stream.
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            out = self._zlib.decompress(data, most)
        self._started = True
        return out


_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class _Watchdog:
    """Cuts an answer's connection when `seconds` have passed: a read blocked on a server that
    drips its answer ends then, not a read timeout later. Without a socket (a test transport)
    it does nothing and the deadline is checked between chunks only."""

    def __init__(self, response: httpx.Response, seconds: float) -> None:
        stream = response.extensions.get("network_stream")
        self._socket = stream.get_extra_info("socket") if stream is not None else None
        self._timer = threading.Timer(min(max(seconds, 0.0), threading.TIMEOUT_MAX), self._cut)
        self._timer.daemon = True
        self.fired = False

    def _cut(self) -> None:
        self.fired = True
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> _Watchdog:
        if self._socket is not None:
            self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()


class _Placeholders:
    """Stand-ins for the entries of one page that are each over the limit on their own. One is
    an entry Auth0 logged very large; a second means the answers are not log entries at all (a
    host answering in Auth0's place), and the page fails rather than cost a call per entry."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._used = False

    def stand_in(self, too_large: Auth0AnswerTooLarge) -> dict[str, Any]:
        if self._used:
            raise _said_more(
                too_large,
                "a second entry of the same page is too: these answers are not Auth0 log events "
                "(check AUTH0_DOMAIN and AUTH0_BASE_URL)",
            )
        self._used = True
        head = too_large.head
        logger.warning(
            "An entry over the limit on its own: quarantined in its place",
            extra={"request": too_large.request, "endpoint": self._name},
        )
        # No log_id and no date: the forwarder quarantines it (a record in every destination,
        # once: what identifies it is the same on every read).
        return {
            "oversized_entry": {
                # Nothing that differs between the endpoints that return it (search, the user's
                # own log), so a second read of it is known for the same entry.
                "why": f"a log entry larger than the {_mib(too_large.limit)} an answer may hold: "
                "it was not read, and this stands in its place",
                "limit_bytes": too_large.limit,
                "first_bytes_sha256": hashlib.sha256(head).hexdigest(),
                "first_bytes": head[:OVERSIZED_SHOWN_BYTES].decode("utf-8", errors="replace"),
            }
        }


PageReader = Callable[[int, int], list[Any]]  # (page, per_page) → the entries of that page


def _paged(one: PageReader, page: int, per_page: int, sort: str, name: str) -> list[Any]:
    """Page `page` of an offset-paged list (`one` reads one), in pieces if it is over the limit.

    Newest first (`date:-1`), pieces cannot skip an entry: what becomes visible between two of
    them sorts before what they read (newer, or late and inserted above), which only repeats an
    entry (dropped by its log_id), and what expires meanwhile is the oldest, after them. In any
    other order an entry that expires before the pieces are read moves every later one down by
    one, and a piece would start past one nobody read: the first entry of the list, the same
    before and after the pieces, proves that none did (else the read fails, and the next run
    reads it again)."""
    try:
        return one(page, per_page)
    except Auth0AnswerTooLarge as too_large:
        if too_large.tenant_wide:
            raise  # the token's answer, not this page's: no piece would be any smaller
        if per_page == 1:
            return [_Placeholders(name).stand_in(too_large)]
        cut = too_large
    if sort == "date:-1":
        return _pieces(one, page, per_page, _Placeholders(name))
    first = _in_pieces(one, 0, 1, _Placeholders(name))
    entries = _pieces(one, page, per_page, _Placeholders(name))
    if _in_pieces(one, 0, 1, _Placeholders(name)) != first:
        raise _said_more(
            cut,
            "read again in pieces, but the list's first entry changed meanwhile (an entry "
            "expired: the pieces may have skipped one), so it is read again next run",
        )
    return entries


def _in_pieces(one: PageReader, page: int, per_page: int, placeholders: _Placeholders) -> list[Any]:
    """Page `page` of `per_page` entries; over the limit, `_pieces`; a single entry over it, a
    placeholder."""
    try:
        return one(page, per_page)
    except Auth0AnswerTooLarge as too_large:
        if too_large.tenant_wide:
            raise
        if per_page == 1:
            return [placeholders.stand_in(too_large)]
    return _pieces(one, page, per_page, placeholders)


def _pieces(one: PageReader, page: int, per_page: int, placeholders: _Placeholders) -> list[Any]:
    """The entries of page `page` of `per_page`, as pages of PIECE entries, then of one."""
    size = PIECE if per_page > PIECE and per_page % PIECE == 0 else 1
    entries: list[Any] = []
    for index in range(page * per_page // size, (page + 1) * per_page // size):
        piece = _in_pieces(one, index, size, placeholders)
        entries.extend(piece)
        if len(piece) < size:
            break  # the end of the list
    return entries


def _said_more(too_large: Auth0AnswerTooLarge, more: str) -> Auth0AnswerTooLarge:
    """The same answer too large, and what followed from it."""
    return Auth0AnswerTooLarge(
        f"{too_large}; {more}",
        request=too_large.request,
        bytes_read=too_large.bytes_read,
        limit=too_large.limit,
        head=too_large.head,
    )


def _last_log_id(entries: list[Any]) -> str:
    ids = [e["log_id"] for e in entries if isinstance(e, dict) and _is_text(e.get("log_id"))]
    if not ids:
        raise Auth0MalformedResponse(f"a page of {len(entries)} log entries holds no log_id")
    return str(max(ids))


def _is_text(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _request_shown(method: str, name: str, params: Mapping[str, Any]) -> str:
    shown = ", ".join(f"{key}={params[key]}" for key in _SHOWN_PARAMS if key in params)
    return f"{method} {name}" + (f" ({shown})" if shown else "")


def _mib(size: int) -> str:
    return f"{size / 2**20:g} MiB" if size >= 2**20 else f"{size / 2**10:g} KiB"


class _Again(Exception):
    """Try the call again: Auth0 or the network failed in a way that may pass. `wait_s`
    replaces the backoff; `counted`: a retry for the stats and the logs (a token refreshed
    after a 401 is not); `cut_short`: a timeout shorter than the client's, for the time left."""

    def __init__(
        self,
        reason: str,
        *,
        wait_s: float | None = None,
        counted: bool = True,
        cut_short: bool = False,
    ) -> None:
        super().__init__(reason)
        self.wait_s = wait_s
        self.counted = counted
        self.cut_short = cut_short  # a timeout the deadline shortened


def _json(response: httpx.Response, path: str) -> Any:
    content_type = response.headers.get("content-type", "")
    try:
        # NaN, Infinity and numbers too large for a float (1e400) are not JSON numbers a line
        # can carry: kept as the text they were, so every forwarded line stays valid JSON and
        # the event keeps what it said.
        return json.loads(
            response.content,
            parse_constant=str,
            parse_float=_finite_or_text,
            parse_int=_int_or_text,
        )
    except (ValueError, RecursionError) as exc:  # RecursionError: nesting deeper than a stack
        raise Auth0MalformedResponse(
            f"{path} answered HTTP {response.status_code} with a body that is not JSON "
            f"({content_type or 'no content type'}, {len(response.content)} bytes)",
            status=response.status_code,
        ) from exc


def _finite_or_text(text: str) -> float | str:
    value = float(text)
    return value if math.isfinite(value) else text


# Python refuses to read an integer of more digits than this (a ValueError, which would make the
# whole page unreadable, every run): such a number is kept as its text, as 1e400 is.
_MAX_INT_DIGITS = 4000


def _int_or_text(text: str) -> int | str:
    return int(text) if len(text) <= _MAX_INT_DIGITS else text


def _token_answer(response: httpx.Response) -> tuple[str, float, str | None]:
    """The token, its lifetime in seconds, and the `expires_in` shown shortened when it was odd
    (not a number, or outside MIN/MAX_TOKEN_LIFETIME_S: clamped)."""
    body = _json(response, "/oauth/token")
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise Auth0MalformedResponse("token answer has no access_token")
    if "expires_in" not in body:
        return token, float(DEFAULT_TOKEN_LIFETIME_S), None
    expires_in = body["expires_in"]
    if isinstance(expires_in, bool) or not isinstance(expires_in, int | float):
        return token, float(DEFAULT_TOKEN_LIFETIME_S), repr(expires_in)[:40]
    # Compared before any conversion: an integer too large for a float is valid JSON.
    lifetime = min(max(expires_in, MIN_TOKEN_LIFETIME_S), MAX_TOKEN_LIFETIME_S)
    odd = None if lifetime == expires_in else repr(expires_in)[:40]
    return token, float(lifetime), odd


_BODY = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def _fields(response: httpx.Response) -> dict[str, Any]:
    """The answer's top-level object, for the few fields read to explain it; {} when it is not
    one (not JSON, nested past the stack: RecursionError, another shape). The answer itself, when
    it is needed, is read by _json, which names what is wrong."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return {}
    return body if isinstance(body, dict) else {}


def _granted_scopes(response: httpx.Response) -> frozenset[str] | None:
    """The token answer's `scope` (space-separated), or None when it names none."""
    scope = _fields(response).get("scope")
    return frozenset(scope.split()) if isinstance(scope, str) else None


def _log_list(body: Any) -> list[Any]:
    """The entries of a log list, as returned. Both documented shapes: a bare array, or {start,
    limit, length, total, logs}. `total` is never read: under log search v3 it may count only
    the page. An entry that is not an event (null, a string) is kept: the caller quarantines it
    rather than lose the page around it."""
    logs = body.get("logs") if isinstance(body, dict) else body
    if not isinstance(logs, list):
        raise Auth0MalformedResponse(
            f"log list answer is a {type(body).__name__} without a 'logs' array"
        )
    return logs


def _token_refusal(status: int, response: httpx.Response, client_id: str) -> Auth0AuthError:
    """Auth0's own words on why (`error`, `error_description`): "Unauthorized" (wrong secret)
    and "Client is not authorized to access …" (not authorised for this API) need different
    fixes. The description names no secret; it is cut short in case it ever grows."""
    body = _fields(response)
    error = str(body.get("error") or "")[:80]
    description = str(body.get("error_description") or "")[:300]
    said = ": ".join(part for part in (error, description) if part) or "no reason given"
    hint = {
        401: "check the client id and secret in the credentials secret (after rotating the "
        "secret in Auth0, store the new one there: the next run reads it)",
        403: "authorise the application for the Auth0 Management API (its audience) and grant "
        "it read:logs and read:logs_users",
    }.get(status, "check the Auth0 application")
    return Auth0AuthError(
        f"token request refused with HTTP {status} for client {_shown(client_id)} ({said})",
        status=status,
        fix=hint,
    )


def _shown(client_id: str) -> str:
    """The client id, shortened: it is no secret, but a secret pasted into its place must not
    travel into logs and failure queues whole."""
    return repr(client_id) if len(client_id) <= 16 else repr(client_id[:8] + "…")


def _client_error(status: int, path: str, response: httpx.Response) -> Exception:
    message = str(_fields(response).get("message", ""))[:300]
    text = f"HTTP {status} from {path}: {message or 'no message'}"
    if status == 403:
        return Auth0ScopeError(
            text,
            status=status,
            fix="grant the application read:logs_users (each user's log) and read:logs (tenant "
            "search, the tenant stream) on the Auth0 Management API",
        )
    if status == 401:
        return Auth0AuthError(
            text,
            status=status,
            fix="Auth0 refused a token it had just issued: check that the application is still "
            "authorised for the Auth0 Management API",
        )
    if status == 404:
        return Auth0NotFoundError(text, status=status)
    if status == 400 and ("1000" in message or "page" in message.lower()) and "exceeds" in message:
        return Auth0SearchCapError(text, status=status)
    return Auth0RequestError(text, status=status)
