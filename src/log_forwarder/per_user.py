"""Per-user mode: each watched user's own read (fetch.py), chunk by chunk, through its session.

Users are read by a bounded pool of threads, starting at a random one: when the time budget
cannot cover every user, the same ones are not always the ones left for later. Once the time is
up, the users not started yet are deferred to the next run; once the tenant failed (its token
refused, say), they are not read at all: each would fail the same way.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from .events import iso_ms
from .fetch import UserRead, read_user
from .read_mode import TenantState
from .session import RunContext, Start, UserSession

logger = logging.getLogger(__name__)


def read_users(sessions: Sequence[UserSession], run: RunContext, tenant: TenantState) -> None:
    """Read and close every session's user (the stream's joining users are closed by it)."""
    _pooled(sessions, lambda session: _read_and_close(session, run, tenant))


def read_first(sessions: Sequence[UserSession], run: RunContext, tenant: TenantState) -> None:
    """Read each user per user, leaving the sessions open (the stream seats those it can)."""
    _pooled(sessions, lambda session: read_user_session(session, run, tenant))


def read_user_session(session: UserSession, run: RunContext, tenant: TenantState) -> None:
    """Open the session and deliver the user's new events, oldest first, as far as time allows."""
    report = session.report
    if run.tenant.failure is not None:
        report.block(run.tenant.failure)
        return
    if run.out_of_time.is_set() or run.time_is_up():
        run.out_of_time.set()
        report.deferred = True
        return
    if session.open(Start.PER_USER, tenant, within=run):
        cursor = session.cursor
        read = UserRead(
            session.env.source,
            session.user_id,
            floor_ms=cursor.position.floor_ms,
            backlog=cursor.status.backlog,
            scope=run.scope,
            out_of_time=run.time_is_up,
            missing=cursor.status.missing_since_ms is not None,
        )
        complete = session.deliver_all(read_user(read), session.env.now_ms())
        if session.ok:
            # The read stopped before the newest events (here, or inside fetch between pages).
            report.deferred = not complete and run.time_is_up()
        report.backlog = session.cursor.status.backlog
        if session.cursor.position.at_capacity:
            logger.warning(
                "Overlap window narrowed: too many recent events to remember",
                extra={
                    "user_id": session.user_id,
                    "floor": iso_ms(session.cursor.position.floor_ms),
                },
            )
    if report.deferred:
        run.out_of_time.set()


def _read_and_close(session: UserSession, run: RunContext, tenant: TenantState) -> None:
    read_user_session(session, run, tenant)
    session.close()


def _pooled(sessions: Sequence[UserSession], work: object) -> None:
    if not sessions:
        return
    workers = sessions[0].env.settings.max_concurrent_users
    offset = random.randrange(len(sessions))
    ordered = [*sessions[offset:], *sessions[:offset]]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(work, ordered))  # type: ignore[arg-type]
