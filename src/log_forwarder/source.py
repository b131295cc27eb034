"""The seam between the forwarder and Auth0: the two log reads it makes, and what they cost.

`Auth0Client` is the real implementation; tests pass plain classes with the same two methods.
Every call counts itself into the `CallStats` of the run that made it, so a warm container's
runs never mix their figures.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class CallStats:
    """What one run's Auth0 calls cost; shared by its worker threads."""

    api_calls: int = 0
    token_requests: int = 0
    rate_limited: int = 0
    retries: int = 0
    pacing_wait_s: float = 0.0
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def count(self, name: str, amount: float = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)


class LogSource(Protocol):
    def user_logs(
        self, user_id: str, *, page: int, per_page: int, sort: str, stats: CallStats
    ) -> list[dict[str, Any]]:
        """One page of GET /api/v2/users/{id}/logs."""
        ...

    def search_logs(
        self, query: str, *, page: int, per_page: int, sort: str, stats: CallStats
    ) -> list[dict[str, Any]]:
        """One page of tenant-wide search, GET /api/v2/logs?q=…"""
        ...
