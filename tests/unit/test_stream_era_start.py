"""A switch to the stream whose era start fails or runs out of time.

Such a run must say that its users wait (UsersDeferred), not that they were processed; and it
must not leave the tenant item in stream mode with the last era's checkpoint and seats, which the
next run would resume instead of starting a new era (README: each switch starts one). Both were
found by an adversarial review; each test failed before the fix.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from log_forwarder.exceptions import Auth0UnavailableError, OutOfTime
from log_forwarder.read_mode import TENANT_KEY, TenantState
from log_forwarder.report import metric_values
from log_forwarder.store import decode_state
from tests.fakes import FakeAuth0, InMemoryCheckpointStore, RecordingSink
from tests.property.test_cursor_properties import make_forwarder
from tests.unit.test_stream_overlaps import BASE, MIN, U, V, event


class SlowSearch:
    """Every tenant search would outlast the invocation (a 429 wait, say)."""

    def __init__(self, fake: FakeAuth0) -> None:
        self.fake = fake

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fake, name)

    def search_logs(self, *args: Any, **kwargs: Any) -> Any:
        raise OutOfTime("simulated: a 429 wait would outlast the invocation")


def test_an_era_start_out_of_time_defers_every_user_and_says_so() -> None:
    fake = FakeAuth0()
    store = InMemoryCheckpointStore()
    sink = RecordingSink()
    fake.add(event(1, U, BASE), visible_at_ms=BASE)
    # WHEN five runs in a row cannot find where the stream starts
    for i in range(5):
        fake.now_ms = BASE + (i + 1) * 300_000
        report = make_forwarder(SlowSearch(fake), [sink], store, READ_MODE="stream").run(
            [U], remaining_ms=lambda: 10**9
        )
    # THEN nothing was forwarded, and the last run says its user is deferred
    metrics = {name: value for name, _unit, value in metric_values(report)}
    assert sink.log_ids() == []
    assert metrics["UsersDeferred"] == 1
    assert [u.deferred for u in report.users] == [True]


class FailSearchOnce:
    def __init__(self, fake: FakeAuth0, error: Exception) -> None:
        self.fake, self.error = fake, error

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fake, name)

    def search_logs(self, *args: Any, **kwargs: Any) -> Any:
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        return self.fake.search_logs(*args, **kwargs)


def tenant(store: InMemoryCheckpointStore) -> TenantState:
    return TenantState.from_state(decode_state(TENANT_KEY, store.item(TENANT_KEY)["state"]))


@pytest.mark.parametrize("how", ["out_of_time", "auth0_down"])
def test_a_failed_era_start_does_not_revive_the_last_era(how: str) -> None:
    fake = FakeAuth0()
    store = InMemoryCheckpointStore()
    sink = RecordingSink()

    def run(users: list[str], mode: str, source: Any = None) -> Any:
        f = make_forwarder(source or fake, [sink], store, READ_MODE=mode)
        return f.run(users, remaining_ms=lambda: 10**9)

    n = 0

    def add(user: str, at: int) -> None:
        nonlocal n
        n += 1
        fake.add(event(n, user, at), visible_at_ms=at)

    # era 1: U and V on the stream
    add(U, BASE)
    add(V, BASE)
    fake.now_ms = BASE + 5 * MIN
    run([U, V], "stream")
    fake.now_ms = BASE + 10 * MIN
    run([U, V], "stream")
    era1 = tenant(store)
    assert era1.mode == "stream" and era1.position is not None
    # per-user for two hours: lots of tenant traffic, U active
    for k in range(1, 25):
        add(U, BASE + 10 * MIN + k * 5 * MIN)
        for _ in range(40):
            add("auth0|other", BASE + 10 * MIN + k * 5 * MIN)
        fake.now_ms = BASE + 10 * MIN + k * 5 * MIN + MIN
        run([U, V], "per-user")
    # back to the stream: the era start fails/defers
    error = (
        OutOfTime("simulated") if how == "out_of_time" else Auth0UnavailableError("simulated 503")
    )
    fake.now_ms += 5 * MIN
    run([U, V], "stream", FailSearchOnce(fake, error))
    fake.now_ms += 5 * MIN
    run([U, V], "stream")
    now = tenant(store)
    counts = Counter(sink.log_ids())
    dups = {k: v for k, v in counts.items() if v > 1}
    # A switch to the stream starts a new era: the old epoch must not come back
    assert now.epoch != era1.epoch, (
        "the next run resumed era 1 (old epoch, old position, old roster)"
    )
    assert not dups
