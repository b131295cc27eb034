"""The seam between the forwarder and Auth0: the log reads it makes, the one user lookup
(whether Auth0 knows a watched id: user_lookup.py), and what they cost.

`Auth0Client` is the real implementation of both; tests pass plain classes with the same methods.
Every call runs in the `CallScope` of the run that made it: it counts itself into that run's
stats (a warm container's runs never mix their figures) and waits only as long as the run's
deadline allows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol

from .retry import UNLIMITED, Deadline

# What Auth0's log endpoints allow (docs: auth0-logs-api.md): at most 100 entries a page, and no
# page past the first 1,000 results of a query.
PER_PAGE_MAX = 100
SEARCH_CAP = 1000


@dataclass(slots=True)
class CallStats:
    """What one run's Auth0 calls cost; shared by its worker threads."""

    api_calls: int = 0
    token_requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    pacing_wait_s: float = 0.0
    oversized_answers: int = 0  # answers over the client's limit (auth0_client.py)
    odd_token_lifetimes: int = 0  # token answers whose expires_in was clamped (auth0_client.py)
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def count(self, name: str, amount: float = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)


@dataclass(frozen=True, slots=True)
class CallScope:
    """What a run lends each of its calls: where to count it, and when it must be done by."""

    stats: CallStats = field(default_factory=CallStats)
    deadline: Deadline = UNLIMITED


class LogSource(Protocol):
    def user_logs(
        self, user_id: str, *, page: int, per_page: int, sort: str, scope: CallScope
    ) -> list[Any]:
        """One page of GET /api/v2/users/{id}/logs: the entries, malformed ones included."""
        ...

    def search_logs(
        self, query: str, *, page: int, per_page: int, sort: str, scope: CallScope
    ) -> list[Any]:
        """One page of tenant-wide search, GET /api/v2/logs?q=…"""
        ...

    def tenant_logs(self, after: str, *, take: int, scope: CallScope) -> list[Any]:
        """The tenant's log by checkpoint, GET /api/v2/logs?from=…&take=…: up to `take` events
        with a log_id after `after`, in log_id order."""
        ...

    def log_event(self, log_id: str, *, scope: CallScope) -> Any:
        """One entry by its id, GET /api/v2/logs/{id}; Auth0NotFoundError when it is gone."""
        ...


class UserDirectory(Protocol):
    def user_exists(self, user_id: str, *, scope: CallScope) -> bool:
        """GET /api/v2/users/{id} (read:users): True when Auth0 knows the id, False when it
        answers 404; Auth0ScopeError when the token lacks read:users."""
        ...
