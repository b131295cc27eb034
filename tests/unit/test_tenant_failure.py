"""A failure every user's read meets is the tenant's; one user's is that user's (the forwarder
over the in-memory fakes: the end-to-end cases are tests/e2e/test_tenant_failure.py)."""

from __future__ import annotations

import pytest

from log_forwarder.events import iso_ms
from log_forwarder.exceptions import Auth0UnavailableError, RunFailed
from log_forwarder.source import CallScope
from tests.fakes import FakeAuth0, InMemoryCheckpointStore, RecordingSink
from tests.property.test_cursor_properties import make_forwarder

BASE = 1_790_000_000_000
USERS = ["auth0|one", "auth0|two", "auth0|three"]


class DownFor(FakeAuth0):
    """Auth0 answering 5xx (after every retry) to every read of the users in `down`."""

    down: set[str]

    def _count(self, user_id: str, scope: CallScope) -> None:
        super()._count(user_id, scope)
        if user_id in self.down:
            raise Auth0UnavailableError("HTTP 503 from /api/v2/logs; gave up after 6 attempts")


def auth0(down: set[str]) -> DownFor:
    fake = DownFor(now_ms=BASE + 60_000)
    fake.down = down
    for i, user in enumerate(USERS):
        fake.add({"log_id": f"e{i}", "date": iso_ms(BASE + i), "user_id": user})
    return fake


def test_auth0_down_for_every_user_is_the_tenants_failure_and_clears_when_it_answers() -> None:
    # GIVEN Auth0 answering 503 for every user
    fake = auth0(set(USERS))
    store = InMemoryCheckpointStore()
    forwarder = make_forwarder(fake, [RecordingSink()], store, READ_MODE="per-user")
    # WHEN a run reads them
    report = forwarder.run(USERS, remaining_ms=lambda: 10**9)
    # THEN the run's failure is the tenant's, with the fix, and names no user
    assert report.tenant_failure is not None
    assert report.tenant_failure.cause.startswith("every user's read: Auth0UnavailableError")
    assert "the next run resumes from the checkpoints" in report.tenant_failure.fix
    with pytest.raises(RunFailed) as raised:
        report.raise_failures("failed")
    assert str(raised.value).startswith("the tenant failed: all users failed (3 of 3 not read")
    assert not any(user in str(raised.value) for user in USERS)
    # AND the tenant item says so for `status` (written although READ_MODE=per-user)
    tenant = store.item("#tenant")
    assert tenant["tenant_error"] == report.tenant_failure.cause
    assert tenant["tenant_failing_since"] == iso_ms(BASE + 60_000)
    # WHEN Auth0 answers again
    fake.down = set()
    fake.now_ms += 300_000
    again = forwarder.run(USERS, remaining_ms=lambda: 10**9)
    # THEN the tenant is fine, and its item says nothing of the outage any more
    assert again.tenant_failure is None and len(again.processed) == 3
    assert "tenant_error" not in store.item("#tenant")


def test_one_users_5xx_while_another_is_read_is_that_users_failure() -> None:
    # GIVEN Auth0 failing for one user only
    fake = auth0({USERS[0]})
    forwarder = make_forwarder(
        fake, [RecordingSink()], InMemoryCheckpointStore(), READ_MODE="per-user"
    )
    # WHEN a run reads all three
    report = forwarder.run(USERS, remaining_ms=lambda: 10**9)
    # THEN it is that user's failure, not the tenant's
    assert report.tenant_failure is None
    assert [u.user_id for u in report.failed] == [USERS[0]]
    with pytest.raises(RunFailed) as raised:
        report.raise_failures("failed")
    assert str(raised.value).startswith(f"1 of 3 users failed: {USERS[0]}")
