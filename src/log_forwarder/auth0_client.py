"""The Auth0 Management API client: token, retries, pacing, and the two log endpoints.

Failures are classified once, here, into the exception tree of `exceptions.py`; callers never see
an httpx error. No message built here contains a token or a client secret.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from .exceptions import (
    Auth0AuthError,
    Auth0MalformedResponse,
    Auth0RequestError,
    Auth0ScopeError,
    Auth0SearchCapError,
    Auth0UnavailableError,
)
from .pacing import Pacer, RateLimitHeaders
from .retry import Attempts, RetryPolicy
from .source import CallStats

__all__ = ["Auth0Client", "CallStats", "ClientCredentials"]

logger = logging.getLogger(__name__)

PER_PAGE_MAX = 100
SEARCH_CAP = 1000
# Renew this long before expiry so a token never dies in the middle of a run; a short-lived token
# renews this fraction of its lifetime early instead (else it would be renewed on every call).
TOKEN_RENEW_MARGIN_S = 300
TOKEN_RENEW_FRACTION = 0.1
MAX_429_WAIT_S = 60.0
DEFAULT_TIMEOUT = httpx.Timeout(15.0, connect=5.0)


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    client_id: str
    client_secret: str

    def __repr__(self) -> str:
        return f"ClientCredentials(client_id={self.client_id!r}, client_secret='***')"


class Auth0Client:
    """Implements `source.LogSource`. Calls count into the `stats` they are given; without one,
    into the client's own `stats` (for direct use)."""

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
        self._http = http or httpx.Client(timeout=DEFAULT_TIMEOUT, follow_redirects=False)
        # Full jitter over a capped exponential: retries of concurrent workers spread out.
        self._retry_policy = RetryPolicy(attempts=max_attempts, base_s=0.5, cap_s=20.0)
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._token_lock = threading.Lock()
        self._token: str | None = None
        self._token_renew_at = 0.0
        self.stats = CallStats()

    # -- the two endpoints ---------------------------------------------------------------------

    def user_logs(
        self,
        user_id: str,
        *,
        page: int,
        per_page: int = PER_PAGE_MAX,
        sort: str = "date:-1",
        stats: CallStats | None = None,
    ) -> list[dict[str, Any]]:
        """One page of GET /api/v2/users/{id}/logs."""
        # The id is one path segment: '|', '/', '@', '=' and spaces are all encoded.
        path = f"/api/v2/users/{quote(user_id, safe='')}/logs"
        params = {"page": page, "per_page": per_page, "sort": sort, "include_totals": "false"}
        return _log_list(self._get(path, params, stats or self.stats))

    def search_logs(
        self,
        query: str,
        *,
        page: int = 0,
        per_page: int = PER_PAGE_MAX,
        sort: str = "date:1",
        stats: CallStats | None = None,
    ) -> list[dict[str, Any]]:
        """One page of tenant-wide search, GET /api/v2/logs?q=… (needs the read:logs scope)."""
        params = {
            "q": query,
            "page": page,
            "per_page": per_page,
            "sort": sort,
            "include_totals": "false",
        }
        return _log_list(self._get("/api/v2/logs", params, stats or self.stats))

    # -- transport -----------------------------------------------------------------------------

    def _get(self, path: str, params: Mapping[str, Any], stats: CallStats) -> Any:
        refreshed_after_401 = False
        attempts = self._attempts()
        while True:
            attempts.start()
            token = self._access_token(stats)
            stats.count("pacing_wait_s", self._pacer.acquire())
            stats.count("api_calls")
            try:
                response = self._http.get(
                    self._base_url + path,
                    params=dict(params),
                    headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
                )
            except httpx.RequestError as exc:
                # Transport failures, timeouts, and bodies that cannot be decoded (DecodingError
                # is not a TransportError): callers must never see an httpx exception.
                self._retry_or_raise(attempts, stats, f"{type(exc).__name__} calling {path}")
                continue
            self._pacer.observe(RateLimitHeaders.parse(response.headers))

            status = response.status_code
            if status == 200:
                return _json(response, path)
            if status == 401 and not refreshed_after_401:
                # Expired or revoked: one new token, one retry. A second 401 is a real refusal.
                refreshed_after_401 = True
                self._invalidate_token(token)
                continue
            if status == 429:
                stats.count("rate_limited")
                self._pacer.back_off_until(self._clock() + self._wait_after_429(response))
                self._retry_or_raise(attempts, stats, f"429 from {path}", wait=0.0)
                continue
            if status >= 500 or status == 408:
                self._retry_or_raise(attempts, stats, f"HTTP {status} from {path}")
                continue
            raise _client_error(status, path, response)

    def _attempts(self) -> Attempts:
        return Attempts(self._retry_policy, sleep=self._sleep, rng=self._rng)

    def _retry_or_raise(
        self, attempts: Attempts, stats: CallStats, what: str, wait: float | None = None
    ) -> None:
        if attempts.exhausted:
            raise Auth0UnavailableError(f"{what}; gave up after {attempts.made} attempts")
        stats.count("retries")
        logger.warning(
            "Auth0 call failed, retrying", extra={"reason": what, "attempt": attempts.made}
        )
        attempts.retry_after(wait)

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

    def _access_token(self, stats: CallStats) -> str:
        with self._token_lock:
            if self._token is None or self._clock() >= self._token_renew_at:
                # The lifetime counts from when the token was asked for, not from when the
                # (possibly retried) answer arrived.
                requested_at = self._clock()
                self._token, lifetime = self._request_token(stats)
                margin = min(TOKEN_RENEW_MARGIN_S, lifetime * TOKEN_RENEW_FRACTION)
                self._token_renew_at = requested_at + lifetime - margin
            return self._token

    def _invalidate_token(self, token: str) -> None:
        with self._token_lock:
            # Another worker may already have replaced it.
            if self._token == token:
                self._token = None

    def _request_token(self, stats: CallStats) -> tuple[str, float]:
        """POST /oauth/token. A refusal (401/403) reads the credentials again once, in case the
        secret was rotated; outages (network, 5xx, 408, 429) are retried like API calls and end
        in Auth0UnavailableError, never in Auth0AuthError: they say nothing about the secret."""
        credentials = self._credentials(False)
        reread = False
        attempts = self._attempts()
        while True:
            attempts.start()
            stats.count("token_requests")
            try:
                response = self._http.post(
                    f"{self._base_url}/oauth/token",
                    data={
                        "grant_type": "client_credentials",
                        "client_id": credentials.client_id,
                        "client_secret": credentials.client_secret,
                        # Always the tenant's own audience, even when talking to another base URL.
                        "audience": f"https://{self._domain}/api/v2/",
                    },
                )
            except httpx.RequestError as exc:
                self._retry_or_raise(attempts, stats, f"{type(exc).__name__} requesting a token")
                continue
            status = response.status_code
            if status == 200:
                return _token_answer(response)
            if status in (401, 403) and not reread:
                # The secret may have been rotated since we cached it: read it again, once.
                reread = True
                credentials = self._credentials(True)
                continue
            if status == 429:
                stats.count("rate_limited")
                wait = self._wait_after_429(response)
                self._retry_or_raise(attempts, stats, "429 requesting a token", wait=wait)
                continue
            if status >= 500 or status == 408:
                self._retry_or_raise(attempts, stats, f"HTTP {status} requesting a token")
                continue
            raise Auth0AuthError(
                f"token request refused with HTTP {status} for client {credentials.client_id!r}",
                status=status,
            )


def _json(response: httpx.Response, path: str) -> Any:
    content_type = response.headers.get("content-type", "")
    try:
        return response.json()
    except ValueError as exc:
        raise Auth0MalformedResponse(
            f"{path} answered HTTP {response.status_code} with a body that is not JSON "
            f"({content_type or 'no content type'}, {len(response.content)} bytes)",
            status=response.status_code,
        ) from exc


def _token_answer(response: httpx.Response) -> tuple[str, float]:
    body = _json(response, "/oauth/token")
    token = body.get("access_token") if isinstance(body, dict) else None
    if not isinstance(token, str) or not token:
        raise Auth0MalformedResponse("token answer has no access_token")
    expires_in = body.get("expires_in", 86400)
    lifetime = float(expires_in) if isinstance(expires_in, int | float) else 86400.0
    return token, lifetime


def _log_list(body: Any) -> list[dict[str, Any]]:
    # Both documented shapes: a bare array, or {start, limit, length, total, logs}. `total` is
    # never read: under log search v3 it may count only the page.
    logs = body.get("logs") if isinstance(body, dict) else body
    if not isinstance(logs, list):
        raise Auth0MalformedResponse(
            f"log list answer is a {type(body).__name__} without a 'logs' array"
        )
    for entry in logs:
        if not isinstance(entry, dict):
            # Callers read event.get(...): a non-object entry must not reach them.
            raise Auth0MalformedResponse(
                f"log list holds a {type(entry).__name__} where a log event object belongs"
            )
    return logs


def _client_error(status: int, path: str, response: httpx.Response) -> Exception:
    message = ""
    try:
        body = response.json()
        if isinstance(body, dict):
            message = str(body.get("message", ""))[:300]
    except ValueError:
        pass
    text = f"HTTP {status} from {path}: {message or 'no message'}"
    if status == 403:
        return Auth0ScopeError(text, status=status)
    if status == 401:
        return Auth0AuthError(text, status=status)
    if status == 400 and ("1000" in message or "page" in message.lower()) and "exceeds" in message:
        return Auth0SearchCapError(text, status=status)
    return Auth0RequestError(text, status=status)
