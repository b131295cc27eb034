"""A deadline on the connection itself, for every byte an Auth0 call sends or waits for.

httpx's timeouts bound each wait between two bytes, never a whole exchange: a host that sends one
byte of its headers within each wait holds a call without bound (0.1 s a byte took a call with a
3 s deadline to 27.9 s), and the invocation into Lambda's timeout, losing the run's report. So
the client's connections are opened through `DeadlineBackend`, whose streams clip each wait to
the time left before the deadline the calling thread set with `answer_by` (and fail at once past
it, as a read timeout: the call is cut short by the deadline, the user deferred).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

_by = threading.local()


@contextmanager
def answer_by(seconds: float) -> Iterator[None]:
    """Every wait of this thread's calls made inside ends within `seconds` from now."""
    _by.at = time.monotonic() + max(seconds, 0.0)
    try:
        yield
    finally:
        _by.at = None


def _clipped(timeout: float | None, error: type[Exception]) -> float | None:
    at: float | None = getattr(_by, "at", None)
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise error("the invocation's deadline passed while Auth0 was answering")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clipped(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clipped(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        tls = self._inner.start_tls(
            ssl_context, server_hostname, _clipped(timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(tls)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _clipped(timeout, httpcore.ConnectTimeout), local_address, socket_options
        )
        return _DeadlineStream(stream)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(
            path, _clipped(timeout, httpcore.ConnectTimeout), socket_options
        )
        return _DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def deadline_client(**options: Any) -> httpx.Client:
    """An httpx client whose connections keep to `answer_by`. httpx 0.28 (pinned) takes no
    network backend, so it is set on the transport's connection pool; a test checks it is."""
    client = httpx.Client(**options)
    pool = getattr(client._transport, "_pool", None)
    if isinstance(pool, httpcore.ConnectionPool):
        pool._network_backend = DeadlineBackend(pool._network_backend)
    return client
