"""What a handler module sets up on first use: the functions' logger and metrics (Powertools),
and what it builds from the environment (its `Lazy`: a runtime, the worker, the scheduler).

Importing a handler module sets nothing up: no handler on any logger, no metrics buffer, no
client. The first invocation builds them, once per container, and wraps the handler with
Powertools' decorators (the correlation id, the EMF flush, the cold-start metric) the same way
every time.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

SERVICE = "auth0-user-log-forwarder"
NAMESPACE = "Auth0LogForwarder"

Handler = Callable[[dict[str, Any], Any], Any]
T = TypeVar("T")


def service() -> str:
    return os.getenv("POWERTOOLS_SERVICE_NAME") or SERVICE


@functools.cache
def logger() -> Any:
    """The functions' JSON logger; the package's module loggers write through its formatter
    (library loggers, botocore's and httpx's, stay out: they would log every request)."""
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    built = Logger(service=service())
    # The package's own logger, registered here: the modules' loggers, created before or after
    # (the first invocation imports most of them), write through it. An include set found
    # empty would make Powertools configure every library logger instead.
    logging.getLogger("log_forwarder")
    copy_config_to_registered_loggers(source_logger=built, include={"log_forwarder"})
    return built


@functools.cache
def metrics() -> Any:
    """The metrics, with the service named explicitly: the alarms and the dashboard need the
    dimension, whatever was imported before the environment was set."""
    from aws_lambda_powertools import Metrics

    return Metrics(
        namespace=os.getenv("POWERTOOLS_METRICS_NAMESPACE") or NAMESPACE, service=service()
    )


def instrumented(
    handle: Handler, *, correlation_id_path: str, with_metrics: bool = True
) -> Handler:
    """`handle` as a handler module's `lambda_handler` calls it: wrapped with Powertools'
    decorators on the first invocation, and then every time."""

    @functools.cache
    def wrapped_once() -> Handler:
        wrapped: Handler = handle
        if with_metrics:
            wrapped = metrics().log_metrics(capture_cold_start_metric=True)(wrapped)
        return logger().inject_lambda_context(correlation_id_path=correlation_id_path)(wrapped)  # type: ignore[no-any-return]

    def call(event: dict[str, Any], context: Any) -> Any:
        return wrapped_once()(event, context)

    return call


class Lazy(Generic[T]):
    """What a handler module builds from the environment on its first invocation and keeps for
    the warm ones (its clients, the Auth0 token): `build(clock)`, `clock` the wall clock it is
    built with. `reset` forgets it, as a new container starts without it: tests, local runs and
    the benchmark (which replays a day in seconds on its own clock); Lambda never calls it."""

    def __init__(self, build: Callable[[Callable[[], float]], T]) -> None:
        self._build = build
        self._clock: Callable[[], float] = time.time
        self._built: T | None = None
        self._lock = threading.Lock()

    def get(self) -> T:
        with self._lock:
            if self._built is None:
                self._built = self._build(self._clock)
            return self._built

    def reset(self, *, clock: Callable[[], float] = time.time, built: T | None = None) -> None:
        """Build again on the next `get`, with `clock`; or use `built` (made by the caller)."""
        with self._lock:
            self._clock, self._built = clock, built
