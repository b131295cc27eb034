"""A failure every user's read meets is the tenant's, in every read mode (issue #22, item 1).

Through the template's handler (moto's server, the simulator) and the installed CLI's `status`:
a wrong client secret (a rotation half done), or a token without either logs scope, fails the
tenant once, for all users, naming none; `status` shows the tenant failing with the cause and
the fix, and no user as `ok`, each one's last real read unchanged; the fixed secret recovers
with nothing lost or repeated.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest

from devtools.auth0_simulator import Auth0Simulator
from devtools.harness import LocalDeployment
from devtools.local_aws import LocalAws
from tests.cli_support import once_each, run_cli
from tests.e2e.conftest import stack_name
from tests.e2e.test_cli_aws import add
from tests.e2e.test_faults import FAULT_LEDGER, FaultRow

pytestmark = pytest.mark.integration

ALICE, BOB, CAROL = "auth0|tenant-alice", "auth0|tenant-bob", "google-oauth2|tenant-carol"
WRONG = "Wr0ng-S3cret-after-rotation"


@pytest.fixture
def deploy(aws: LocalAws, sim: Auth0Simulator) -> Callable[..., LocalDeployment]:
    def make(**kwargs: Any) -> LocalDeployment:
        kwargs.setdefault("AUTH0_RATE_LIMIT_PER_SECOND", "400")
        return LocalDeployment(aws, sim, stack_name=stack_name("tenant"), **kwargs)

    return make


def status(
    stack: LocalDeployment, *, exits: int = 0
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """status --json's rows and notes; `exits` 1 while the tenant fails (a problem found)."""
    shown = run_cli("status", "--json", env=stack.env)
    assert shown.returncode == exits, shown.stderr
    parsed = json.loads(shown.stdout)
    assert parsed["tenant_failing"] is bool(exits)
    return {row["user_id"]: row for row in parsed["users"]}, parsed["notes"]


def set_secret(stack: LocalDeployment, secret: str) -> None:
    stack.aws.client("secretsmanager").put_secret_value(
        SecretId=stack.resources.secret_id,
        SecretString=json.dumps({"client_id": stack.simulator.client_id, "client_secret": secret}),
    )


@pytest.mark.parametrize("read_mode", ["auto", "per-user", "stream"])
def test_a_refused_secret_fails_the_tenant_for_all_users_and_status_shows_it(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator, read_mode: str
) -> None:
    # GIVEN two users forwarded by a first run (auto picks the tenant stream here)
    expected = {ALICE: add(sim, ALICE, 12, hours=0.5), BOB: add(sim, BOB, 8, hours=0.5)}
    stack = deploy(watched_user_ids=[ALICE, BOB], READ_MODE=read_mode)
    first = stack.invoke(cold=True)
    assert first.error is None, first.error
    assert first.result is not None
    assert first.result["read_mode"] == ("per-user" if read_mode == "per-user" else "stream")
    before, _ = status(stack)
    assert {u: r["state"] for u, r in before.items()} == {ALICE: "ok", BOB: "ok"}
    assert before[ALICE]["last_read"] is not None and before[BOB]["last_read"] is not None
    # AND a third user added, without a checkpoint yet, and new events for everyone
    stack.env["WATCHED_USER_IDS"] = ",".join([ALICE, BOB, CAROL])
    expected[CAROL] = add(sim, CAROL, 5, hours=0.167)
    for user in (ALICE, BOB):
        expected[user] |= add(sim, user, 3, hours=0.0333)
    # WHEN the secret is rotated in Auth0 but the credentials secret still holds the old one
    set_secret(stack, WRONG)
    failed = stack.invoke(cold=True)
    # THEN the run fails as the tenant's, for all users, with Auth0's reason and the fix, naming
    # no user and no secret
    message = str(failed.error)
    assert message.startswith("the tenant failed: all users failed (3 of 3 not read this run)")
    assert "token request refused with HTTP 401" in message
    assert "Fix: check the client id and secret in the credentials secret" in message
    assert not any(user in message for user in (ALICE, BOB, CAROL)) and WRONG not in message
    metrics = failed.metrics()
    assert (metrics["TenantFailed"], metrics["UsersProcessed"], metrics["UsersFailed"]) == (1, 0, 3)
    # AND status shows the tenant failing with the cause and the fix, and no user as ok: each is
    # blocked, its last real read what it was before the outage
    rows, notes = status(stack, exits=1)
    assert {u: r["state"] for u, r in rows.items()} == {u: "blocked" for u in (ALICE, BOB, CAROL)}
    tenant = [n for n in notes if n.startswith("the tenant is failing, for all users")]
    assert len(tenant) == 1, notes
    assert "token request refused with HTTP 401" in tenant[0]
    assert "Fix: check the client id and secret" in tenant[0] and WRONG not in tenant[0]
    for user in (ALICE, BOB):
        assert rows[user]["last_read"] == before[user]["last_read"], user
    assert rows[CAROL]["last_read"] is None  # never read
    table = run_cli("status", env=stack.env).stdout
    assert "blocked" in table and " ok " not in table.replace("│", " ")
    # WHEN the new secret is stored
    set_secret(stack, sim.client_secret)
    recovered = stack.invoke(cold=True)
    # THEN the next run reads every user: nothing lost, nothing repeated, the tenant fine again
    assert recovered.error is None, recovered.error
    assert recovered.metrics()["TenantFailed"] == 0
    rows, notes = status(stack)
    assert {u: r["state"] for u, r in rows.items()} == {u: "ok" for u in (ALICE, BOB, CAROL)}
    assert not any(n.startswith("the tenant is failing") for n in notes)
    for user, ids in expected.items():
        for name, records in (
            ("cloudwatch", stack.cloudwatch_records(user)),
            ("s3", stack.s3_records(user)),
        ):
            assert once_each(records, ids) == (len(ids), 0, 0), (read_mode, user, name)
    total = sum(len(ids) for ids in expected.values())
    FAULT_LEDGER.append(
        FaultRow(
            f"client secret refused (rotation half done), READ_MODE={read_mode}",
            "both",
            total,
            total,
            0,
            0,
            0,
            "the tenant failed: all users failed (3 of 3 not read this run): … HTTP 401 … Fix: "
            "check the client id and secret; status: 3 blocked, last read kept; TenantFailed=1",
        )
    )


def test_a_token_without_either_logs_scope_fails_the_tenant_once_not_each_user(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    # GIVEN three forwarded users, read per user, one at a time
    expected = {user: add(sim, user, 4, hours=0.333) for user in (ALICE, BOB, CAROL)}
    stack = deploy(
        watched_user_ids=[ALICE, BOB, CAROL], READ_MODE="per-user", MAX_CONCURRENT_USERS="1"
    )
    assert stack.invoke(cold=True).error is None
    # WHEN the application loses both logs scopes (its next token has neither)
    sim.set_scopes(["read:users"])
    sim.revoke_tokens()
    for user in expected:
        expected[user] |= add(sim, user, 2, hours=0.0167)
    sim.stats.reset()
    failed = stack.invoke()
    # THEN the tenant failed, saying which scopes to grant; the first refusal stopped the run:
    # no user's read after it was started (one user asked for, not each)
    message = str(failed.error)
    assert message.startswith("the tenant failed: all users failed")
    assert "Auth0ScopeError: HTTP 403 from /api/v2/users/{id}/logs" in message
    assert "Fix: grant the application read:logs_users" in message
    assert not any(user in message for user in expected)
    asked = [user for user in expected if sim.stats.calls("user_logs", user_id=user)]
    assert len(asked) == 1, asked
    _rows, notes = status(stack, exits=1)
    assert any("Fix: grant the application read:logs_users" in n for n in notes)
    # AND once granted again, everything comes, once
    sim.set_scopes(["read:logs", "read:logs_users"])
    sim.revoke_tokens()
    assert stack.invoke().error is None
    for user, ids in expected.items():
        assert once_each(stack.s3_records(user), ids) == (len(ids), 0, 0), user


@pytest.mark.parametrize("read_mode", ["auto", "stream"])
def test_a_grant_revoked_during_a_stream_era_fails_the_tenant_in_that_run(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator, read_mode: str
) -> None:
    # GIVEN two users read from the tenant stream by a first run (an era with its checkpoint)
    expected = {ALICE: add(sim, ALICE, 8, hours=0.5), BOB: add(sim, BOB, 8, hours=0.5)}
    stack = deploy(watched_user_ids=[ALICE, BOB], READ_MODE=read_mode)
    first = stack.invoke(cold=True)
    assert first.error is None, first.error
    assert first.result is not None and first.result["read_mode"] == "stream"
    before, _ = status(stack)
    # WHEN the application loses every scope (its next token has none) and new events come
    sim.set_scopes([])
    sim.revoke_tokens()
    for user in expected:
        expected[user] |= add(sim, user, 2, hours=0.0167)
    failed = stack.invoke(cold=True)
    # THEN that very run is the tenant's failure, with Auth0's reason and the fix, not a run
    # that counts every member processed with nothing fetched
    message = str(failed.error)
    assert message.startswith("the tenant failed: all users failed (2 of 2 not read this run)")
    assert "HTTP 403" in message and "Fix: grant the application" in message
    metrics = failed.metrics()
    assert (metrics["TenantFailed"], metrics["UsersProcessed"]) == (1, 0), metrics
    # AND status shows it: no user ok, the tenant note, each user's last real read kept
    rows, notes = status(stack, exits=1)
    assert {u: r["state"] for u, r in rows.items()} == {ALICE: "blocked", BOB: "blocked"}
    assert any(n.startswith("the tenant is failing, for all users") for n in notes), notes
    for user in (ALICE, BOB):
        assert rows[user]["last_read"] == before[user]["last_read"], user
    # AND once granted again, every event comes, once
    sim.set_scopes(["read:logs", "read:logs_users"])
    sim.revoke_tokens()
    assert stack.invoke(cold=True).error is None
    assert stack.invoke(cold=True).error is None
    for user, ids in expected.items():
        assert once_each(stack.s3_records(user), ids) == (len(ids), 0, 0), user
    total = sum(len(ids) for ids in expected.values())
    FAULT_LEDGER.append(
        FaultRow(
            f"every scope revoked during a stream era, READ_MODE={read_mode}",
            "s3",
            total,
            total,
            0,
            0,
            0,
            "that run: the tenant failed: all users failed (2 of 2 not read this run): … HTTP 403 "
            "… Fix: grant the application …; status: 2 blocked + the tenant note; TenantFailed=1",
        )
    )


def test_an_auth0_that_hangs_until_a_short_deadline_is_a_tenant_failure_status_shows(
    deploy: Callable[..., LocalDeployment], sim: Auth0Simulator
) -> None:
    # GIVEN two users forwarded per user, and a function with 40 s to live (margin 30 s): the
    # reads may use 20 of them, one whole attempt (the client's 15 s read timeout) and a bit
    expected = {ALICE: add(sim, ALICE, 5, hours=0.5), BOB: add(sim, BOB, 5, hours=0.5)}
    stack = deploy(watched_user_ids=[ALICE, BOB], READ_MODE="per-user", TIME_MARGIN_SECONDS="30")
    assert stack.invoke(cold=True).error is None
    # WHEN Auth0 answers after 16 s (past the client's 15 s read timeout), every call
    sim.latency_s = 16
    ends = time.monotonic() + 40
    failed = stack.invoke(cold=True, remaining_ms=lambda: int((ends - time.monotonic()) * 1000))
    left_s = ends - time.monotonic()
    sim.latency_s = 0
    # THEN the run ends before its deadline, as the tenant's failure (Auth0 did not answer), not
    # as users merely deferred
    assert left_s > 0, f"the run ended {-left_s:.1f} s after its deadline"
    message = str(failed.error)
    assert message.startswith("the tenant failed: all users failed (2 of 2 not read this run)")
    assert "ReadTimeout" in message and "no time left for another" in message
    assert failed.metrics()["TenantFailed"] == 1
    # AND the failure is recorded where status reads it: no user ok, the tenant note
    rows, notes = status(stack, exits=1)
    assert {u: r["state"] for u, r in rows.items()} == {ALICE: "blocked", BOB: "blocked"}
    assert any(n.startswith("the tenant is failing, for all users") for n in notes), notes
    # AND once Auth0 answers, every event comes, once
    assert stack.invoke(cold=True).error is None
    for user, ids in expected.items():
        assert once_each(stack.s3_records(user), ids) == (len(ids), 0, 0), user
