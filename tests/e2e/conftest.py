"""What every end-to-end test stands on: moto's server as the AWS account, the project's Auth0
simulator as the tenant, and stack names that never collide.

A module's tests share one server (moto's state is the process's anyway: tests are kept apart by
stack names, which `stack_name` makes unique). Each test gets a simulator of its own, with a
generous rate limit: these tests are about what reaches the destinations; pacing has its own
tests and the benchmark. A module that needs another simulator (a fake clock, 404 for unknown
users) defines its own `sim` (`simulator_on(clock)` for the first).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from devtools.auth0_simulator import Auth0Simulator, RateLimit
from devtools.harness import Invocation, LocalDeployment
from devtools.local_aws import LocalAws

GENEROUS = RateLimit(burst=200, per_second=500)
_numbers = itertools.count()


def stack_name(prefix: str) -> str:
    """A stack name no other test of this run (or of an earlier run on the same server) uses."""
    return f"{prefix}{next(_numbers)}-{int(time.time())}"


@pytest.fixture(scope="module")
def aws() -> Iterator[LocalAws]:
    with LocalAws() as server:
        yield server


@pytest.fixture
def sim() -> Iterator[Auth0Simulator]:
    with Auth0Simulator(rate_limit=GENEROUS) as simulator:
        yield simulator


def simulator_on(clock: Clock) -> Iterator[Auth0Simulator]:
    """A module's `sim` on the test's clock, which the test moves with its stacks'."""
    with Auth0Simulator(rate_limit=GENEROUS, clock=clock) as simulator:
        yield simulator


def deployer(
    aws: LocalAws, sim: Auth0Simulator, clock: Clock, prefix: str, **defaults: Any
) -> Callable[..., LocalDeployment]:
    """A module's `deploy` fixture: stacks on the shared clock, with the module's defaults."""

    def make(**kwargs: Any) -> LocalDeployment:
        options = {**defaults, **kwargs}
        return LocalDeployment(aws, sim, stack_name=stack_name(prefix), clock=clock, **options)

    return make


class Clock:
    """Wall time plus an offset the test moves: shared by a simulator and the functions."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self(), UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def ok(invocation: Invocation) -> dict[str, Any]:
    """The result of an invocation that must have succeeded."""
    assert invocation.error is None, f"run failed: {invocation.error!r}"
    assert invocation.result is not None
    return dict(invocation.result)
