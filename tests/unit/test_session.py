"""The session (session.py) itself, with the fakes: how a user's work in a run opens and ends,
as one outcome the session sets, whichever driver passes it its Opening."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from log_forwarder.chunk import Chunk, UserSpan
from log_forwarder.cursor import Cursor, Pending
from log_forwarder.events import LogEvent
from log_forwarder.exceptions import (
    Auth0AuthError,
    Auth0UnavailableError,
    CheckpointConflict,
    DeliveryError,
    OutOfTime,
)
from log_forwarder.forwarder import PUSH
from log_forwarder.per_user import PerUser
from log_forwarder.planner import OutputPolicy
from log_forwarder.report import Outcome, TenantFailure
from log_forwarder.session import Opening, RunContext, SessionEnv, UserSession, outcome_of
from log_forwarder.source import CallScope
from log_forwarder.stream_run import JOIN, MEMBER
from tests.cursors import with_pending
from tests.fakes import FakeAuth0, InMemoryCheckpointStore, RecordingSink
from tests.property.test_cursor_properties import BASE_MS, make_settings

USER = "auth0|u"


@dataclass
class Directory:
    """A UserDirectory that counts what it was asked."""

    asked: list[str] = field(default_factory=list)

    def user_exists(self, user_id: str, *, scope: CallScope) -> bool:
        self.asked.append(user_id)
        return True


@dataclass
class Given:
    store: InMemoryCheckpointStore = field(default_factory=InMemoryCheckpointStore)
    sink: RecordingSink = field(default_factory=RecordingSink)
    directory: Directory = field(default_factory=Directory)
    remaining_ms: int = 10**9
    run: RunContext = field(init=False)

    def __post_init__(self) -> None:
        # Every session of one Given is a user of the same run.
        self.run = RunContext(CallScope(), lambda: self.remaining_ms, 60_000, threading.Event())

    def session(self, **settings: str) -> UserSession:
        env = SessionEnv(
            make_settings(**settings),
            FakeAuth0(now_ms=BASE_MS),
            self.store,
            [self.sink],
            OutputPolicy(),
            lambda: BASE_MS,
            directory=self.directory,
        )
        return UserSession(USER, self.store.load([USER]).get(USER), env, self.run)


def chunk(*events: LogEvent) -> Chunk:
    return Chunk(list(events), "user_logs", UserSpan(True))


def ev(n: int) -> LogEvent:
    log_id = f"90000000{n}"
    return LogEvent(BASE_MS - 60_000 + n, log_id, {"log_id": log_id, "date": "x", "user_id": USER})


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (OutOfTime("a call needs 3 s"), Outcome.DEFERRED),
        (CheckpointConflict("another run wrote it first"), Outcome.BUSY),
        (Auth0AuthError("token refused", status=401), Outcome.TENANT),
        (Auth0UnavailableError("HTTP 503", status=503), Outcome.FAILED),
        (DeliveryError("s3: refused"), Outcome.FAILED),
        (KeyError("a bug"), Outcome.BUG),
    ],
)
def test_what_an_exception_means_is_decided_in_one_place(
    error: Exception, outcome: Outcome
) -> None:
    assert outcome_of(error) is outcome


def test_the_first_thing_that_stops_a_user_is_its_outcome() -> None:
    # GIVEN a session whose read ran out of time
    session = Given().session()
    assert session.open(PerUser())
    assert not session.guard(lambda: (_ for _ in ()).throw(OutOfTime("no time left")))
    # WHEN a destination then fails for it too
    assert not session.guard(lambda: (_ for _ in ()).throw(DeliveryError("s3: refused")))
    # THEN it stays deferred: one value, and its flags are read from it
    report = session.report
    assert report.outcome is Outcome.DEFERRED
    assert (report.deferred, report.busy, report.blocked, report.error) == (
        True,
        False,
        False,
        None,
    )
    assert not session.ok


def test_a_bug_is_the_outcome_whatever_came_first_so_that_the_run_fails_with_it() -> None:
    session = Given().session()
    assert session.open(PerUser())
    session.guard(lambda: (_ for _ in ()).throw(DeliveryError("s3: refused")))
    bug = KeyError("planner")
    session.guard(lambda: (_ for _ in ()).throw(bug))
    report = session.report
    assert report.outcome is Outcome.BUG and report.bug is bug
    assert report.error == "DeliveryError: s3: refused"  # what failed first is still said


def test_the_tenants_failure_blocks_the_user_and_says_so_once_for_the_tenant(
    caplog: pytest.LogCaptureFixture,
) -> None:
    given = Given()
    first, second = given.session(), given.session()
    refused = Auth0AuthError("token request refused with HTTP 401", status=401)
    for session in (first, second):
        session.guard(lambda: (_ for _ in ()).throw(refused))
    assert first.report.outcome is second.report.outcome is Outcome.TENANT
    assert first.report.blocked and first.report.error is not None
    assert first.report.error.startswith("the tenant failed: Auth0AuthError")
    assert given.run.tenant.failure is not None
    assert [r.getMessage() for r in caplog.records] == ["Tenant failed: no user can be read"]


def test_a_new_users_start_is_written_only_by_an_opening_that_fixes_it() -> None:
    # GIVEN a user with no checkpoint, START_FROM=now
    for opening, written in ((PerUser(), True), (JOIN, False), (MEMBER, False)):
        given = Given()
        session = given.session(START_FROM="now")
        # WHEN its session opens with the driver's opening
        assert session.open(opening)
        # THEN per user its start is fixed at first sight; a joining user's is written with
        # its seat by the stream, and nothing is written yet
        assert bool(given.store.item(USER)) is written, opening


def test_an_opening_runs_only_once_the_lease_is_checked() -> None:
    # GIVEN a user whose pending batch another run holds
    given = Given()
    lease = BASE_MS + 600_000
    held = with_pending(Cursor.fresh(BASE_MS - 3_600_000), Pending("b1", frozenset({"9"}), lease))
    given.store.save(USER, held.to_state(), expected_version=None)
    taken: list[str] = []

    @dataclass(frozen=True)
    class Noting(Opening):
        def taken(self, session: UserSession, out_of_time: Callable[[], bool]) -> None:
            taken.append(session.user_id)

    session = given.session()
    # WHEN its session opens
    opened = session.open(Noting())
    # THEN it is busy, and the driver's opening never ran
    assert not opened and session.report.outcome is Outcome.BUSY
    assert taken == []


def test_an_opening_that_stops_the_user_makes_open_say_false() -> None:
    @dataclass(frozen=True)
    class Failing(Opening):
        def taken(self, session: UserSession, out_of_time: Callable[[], bool]) -> None:
            session.guard(lambda: (_ for _ in ()).throw(DeliveryError("s3: refused")))

    given = Given()
    given.store.save(USER, Cursor.fresh(BASE_MS).to_state(), expected_version=None)
    session = given.session()
    assert not session.open(Failing())
    assert session.report.outcome is Outcome.FAILED


def test_the_report_keeps_the_cursors_backlog_once_open_or_what_the_driver_says() -> None:
    given = Given()
    # A new user read per user: its history is a backlog until a complete read
    opened = given.session()
    assert opened.open(PerUser())
    assert opened.close().backlog is True
    # A member of a stream that was read to its end: the driver says it is not behind
    member = given.session()
    member.open(MEMBER)
    assert member.close(behind=False).backlog is False
    # A session that never opened says nothing of a backlog
    blocked = given.session()
    blocked.block(TenantFailure("Auth0AuthError: refused", "fix the secret"))
    assert blocked.close().backlog is False


def test_a_push_opens_without_asking_auth0_about_the_user_and_keeps_its_dates() -> None:
    # GIVEN a user due a lookup (never looked up), with a checkpoint
    given = Given()
    given.store.save(USER, Cursor.fresh(BASE_MS - 3_600_000).to_state(), expected_version=None)
    pushed, read = given.session(), given.session()
    # WHEN a push opens one session, a per-user read another, and each delivers an event
    assert pushed.open(PUSH)
    assert pushed.deliver(chunk(ev(1)), BASE_MS)
    pushed.close()
    assert read.open(PerUser())
    read.close()
    # THEN only the read asked the directory; the push's report has the forwarded dates
    assert given.directory.asked == [USER]
    assert pushed.report.forwarded_dates == [ev(1).date_ms]
    assert read.report.forwarded_dates is None


def test_a_deferral_the_run_says_once_is_the_users_outcome_without_a_line_of_its_own(
    caplog: pytest.LogCaptureFixture,
) -> None:
    session = Given().session()
    session.defer("reading the user", logged=False)
    assert session.report.outcome is Outcome.DEFERRED
    assert not [r for r in caplog.records if "deferred" in r.getMessage()]
    logged = Given().session()
    logged.defer("joining the tenant stream")
    assert [r.getMessage() for r in caplog.records] == ["User deferred: out of time"]


def test_a_push_never_writes_a_users_start() -> None:
    # A push leaves new users to the reads (forwarder.push skips them); opened anyway, it
    # writes nothing
    given = Given()
    session = given.session()
    assert session.open(PUSH)
    session.close()
    assert given.store.item(USER) == {}
