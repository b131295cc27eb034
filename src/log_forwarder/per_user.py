"""Per-user mode: each watched user's own read (fetch.py), chunk by chunk, through its session.

Users are read by a bounded pool of threads, starting at a random one: when the time budget
cannot cover every user, the same ones are not always the ones left for later. Once the time is
up, the users not started yet are deferred to the next run; once the tenant failed (its token
refused, say), they are not read at all: each would fail the same way.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .events import iso_ms
from .exceptions import OutOfTime
from .fetch import UserRead, read_user
from .read_back import read_back
from .read_mode import TenantState
from .session import Opening, RunContext, UserSession

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PerUser(Opening):
    """Opening a user read per user: a new user's start is fixed at first sight, and a user
    leaving the stream has its pending events read back by id (read_back.py) and its seat ends.
    `tenant`: the tenant item, which says what the stream verified for whom."""

    tenant: TenantState = field(default_factory=TenantState)

    def new(self, session: UserSession) -> None:
        # With START_FROM=now, a user who stays quiet must not see "now" move forward with
        # every run. (A user joining the stream has its start written with its seat.)
        checkpoint = session.checkpoint
        assert checkpoint is not None
        checkpoint.write(checkpoint.cursor)

    def taken(self, session: UserSession, out_of_time: Callable[[], bool]) -> None:
        cursor, tenant = session.cursor, self.tenant
        if cursor.seat is None:
            return
        # What the stream verified counts as verified for a user it moved with (gaps.py reads
        # it); not for one it moved without (off the watch list meanwhile), whose expired
        # events are a gap.
        moved_with = cursor.on_stream(tenant.epoch) and tenant.moved_for(session.user_id)
        verified = tenant.verified_ms if moved_with else None
        scope = session.run.scope
        chunk = read_back(
            session.env.source, cursor, scope, verified_ms=verified, out_of_time=out_of_time
        )
        if session.deliver(chunk, session.env.now_ms()) and session.cursor.seat is not None:
            raise OutOfTime("reading back the pending events of a seat: the rest next run")


def read_users(sessions: Sequence[UserSession], run: RunContext, tenant: TenantState) -> None:
    """Read and close every session's user (the stream's joining users are closed by it)."""
    _pooled(sessions, lambda session: _read_and_close(session, run, tenant))


def read_first(sessions: Sequence[UserSession], run: RunContext, tenant: TenantState) -> None:
    """Read each user per user, leaving the sessions open (the stream seats those it can)."""
    _pooled(sessions, lambda session: read_user_session(session, run, tenant))


def read_user_session(session: UserSession, run: RunContext, tenant: TenantState) -> None:
    """Open the session and deliver the user's new events, oldest first, as far as time allows."""
    if run.tenant.failure is not None:
        session.block(run.tenant.failure)
        return
    if run.out_of_time.is_set() or run.time_is_up():
        run.out_of_time.set()
        session.defer("reading the user", logged=False)  # the run's UsersDeferred says it
        return
    if session.open(PerUser(tenant=tenant), within=run):
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
        if session.ok and not complete and run.time_is_up():
            # The read stopped before the newest events (here, or inside fetch between pages).
            session.defer("reading the user's new events", logged=False)
        if session.cursor.position.at_capacity:
            logger.warning(
                "Overlap window narrowed: too many recent events to remember",
                extra={
                    "user_id": session.user_id,
                    "floor": iso_ms(session.cursor.position.floor_ms),
                },
            )
    if session.report.deferred:
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
