"""The functions' logger and metrics (Powertools), set up on first use.

Importing a handler module sets nothing up: no handler on any logger, no metrics buffer. The
first invocation builds both, once per container, and wraps the handler with Powertools'
decorators (the correlation id, the EMF flush, the cold-start metric) the same way every time.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from typing import Any

SERVICE = "auth0-user-log-forwarder"
NAMESPACE = "Auth0LogForwarder"

Handler = Callable[[dict[str, Any], Any], Any]


def service() -> str:
    return os.getenv("POWERTOOLS_SERVICE_NAME") or SERVICE


@functools.cache
def logger() -> Any:
    """The functions' JSON logger; the package's module loggers write through its formatter
    (library loggers, botocore's and httpx's, stay out: they would log every request)."""
    from aws_lambda_powertools import Logger
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    built = Logger(service=service())
    copy_config_to_registered_loggers(
        source_logger=built,
        include={n for n in logging.root.manager.loggerDict if n.startswith("log_forwarder")},
    )
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
