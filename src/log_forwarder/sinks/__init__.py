"""Destinations: the port every destination implements, and nothing that does I/O.

A sink takes one Delivery and either accepts every line or raises DeliveryError, so the caller
moves the checkpoint only after every destination has acknowledged the batch. Line contents are
personal data: log messages here carry counts, ids and names, never lines.

The adapters are modules of their own, imported by whoever builds them (runtime.py):
cloudwatch.py, s3.py (over objects.py), eventbridge.py; batching.py is their pure arithmetic.
Importing this package, or the orchestration that names `Sink`, loads no AWS library.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from log_forwarder.records import Delivery, DeliveryReport

__all__ = ["PrefixedSink", "Sink"]


class Sink(Protocol):
    name: str

    def deliver(self, delivery: Delivery) -> DeliveryReport: ...


class PrefixedSink:
    """A sink that names each user `prefix + user id`: with many tenants in one deployment, one
    user id in two tenants gets two CloudWatch streams and two S3 key segments, never one.

    Only the names change; the lines (and their `_forwarder.watched_user_id`) are untouched.
    """

    def __init__(self, inner: Sink, prefix: str) -> None:
        self.name = inner.name
        self.inner = inner
        self.prefix = prefix

    def deliver(self, delivery: Delivery) -> DeliveryReport:
        return self.inner.deliver(replace(delivery, user_id=self.prefix + delivery.user_id))
