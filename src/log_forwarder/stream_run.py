"""A run that reads the tenant's log by checkpoint, once, instead of each watched user's.

1. era     a switch to the stream starts one: its start is found (stream.start_position)
           and written to the tenant item before anyone joins it
2. joins   users who may join at once get a seat: new users, and, while the era starts,
           users a complete per-user read verified in the last hours (the era starts before
           what that read could miss). Others are read per user first, then join (at most
           half the run's time)
3. windows the log is read on from the stream checkpoint, up to 1,000 events at a time;
           each joined user's events in a window are one chunk through the planner and the
           executor, exactly as a per-user read's: intent, destinations, commit
4. commit  the stream checkpoint moves past a window only once every user with events in
           it committed them. A user that could not (an error, another run's lease, time)
           is left out for the rest of the run and the checkpoint stays before its events;
           the others go on, and a window read again is deduplicated by their seats
5. end     a read that reached the end of the log with nobody left out is recorded: dates
           before its start (less the overlap window) are verified, and it ends the floor
           zone of the users who joined before it (cursor.StreamSeat)

The stream is one read for every member: when it cannot start or go on (Auth0 refusing the
token, down, answering what cannot be read), the tenant failed, not one user. An answer too
large to read makes the stream unavailable instead, as a refused scope does: the users are read
per user, where a single entry too large is quarantined and the rest forwarded.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TypeVar

from .chunk import Chunk, StreamSpan
from .cursor import Cursor, StreamSeat
from .events import LogEvent, Malformed
from .exceptions import Auth0AnswerTooLarge, Auth0ScopeError, ForwarderError
from .gaps import ReadFacts
from .per_user import read_first, read_users
from .read_mode import PER_USER, STREAM, Decision, TenantRecord, TenantState
from .report import Outcome, TenantFailure, UserReport, merged
from .roster import digest, pack
from .session import Opening, RunContext, SessionEnv, UserSession, evaluate_tenant_wide, outcome_of
from .stream import (
    STREAM_SOURCE,
    CheckpointUnknown,
    StreamRead,
    StreamRefused,
    Window,
    read_windows,
    start_position,
)

logger = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

# A user joins without a per-user read only if one verified it this recently (cursor.verified_ms
# moves in steps of an hour): the era then starts that far back, and reads those events again.
JOIN_LOOKBACK_MS = 3 * 3_600_000
# Share of the run's time the per-user reads of joining users may take: the stream needs the rest.
JOIN_SHARE = 0.5


# What a tenant failure says when Auth0 refuses the stream of an established era.
_REFUSED_MID_ERA = "reading the tenant stream (the next run reads per user)"

# Opening a member's session: its seat holds, and the stream's windows are its reads.
MEMBER = Opening()


@dataclass(frozen=True)
class _Join(Opening):
    """Opening a user about to be seated: the caller writes its seat (and a new user's start
    with it)."""

    def taken(self, session: UserSession, out_of_time: Callable[[], bool]) -> None:
        checkpoint = session.checkpoint
        assert checkpoint is not None
        checkpoint.value = replace(checkpoint.cursor, seat=None)


JOIN = _Join()


@dataclass
class Roster:
    """Where each watched user stands at the start of a stream run."""

    members: list[UserSession] = field(default_factory=list)  # on the stream already
    join_now: list[UserSession] = field(default_factory=list)  # may join without a read
    # Read per user, then join: users with no seat to join from, and seated users the stream
    # may have moved without (roster.py) or past their pending events.
    read_first: list[UserSession] = field(default_factory=list)


@dataclass
class StreamResult:
    """What a stream run did besides each user's report."""

    events_read: int = 0  # entries the stream returned, every user's
    complete: bool | None = None  # read to the end of the log (None: the stream was not read)
    fallback: Decision | None = None  # set when the run read per user after all
    error: str | None = None  # the stream could not go on: the run fails after its report
    # DETECTIONS_TENANT_WIDE: what the rules found in events of users nobody watches.
    tenant_wide: UserReport | None = None


class StreamRun:
    def __init__(self, env: SessionEnv, run: RunContext, tenant: TenantRecord) -> None:
        self._env = env
        self._settings = env.settings
        self._run = run
        self._tenant = tenant
        self._sessions: list[UserSession] = []
        self._members: dict[str, UserSession] = {}
        self._left_out: set[str] = set()
        self._read_per_user: set[str] = set()  # users read per user to their newest event
        self._started_ms = 0
        self._result = StreamResult()

    def run(self, sessions: Sequence[UserSession]) -> StreamResult:
        self._sessions = list(sessions)
        self._tenant.users = len(sessions)
        self._started_ms = self._env.now_ms()
        state = self._tenant.state
        starting = state.mode != STREAM or state.position is None
        era = state.new_era(self._started_ms) if starting else state
        roster = self._roster(era)
        try:
            if starting and not self._start_era(roster):
                self._finish()
                return self._result
        except StreamRefused as refused:
            # Nothing was written yet: this run reads every user per user instead.
            self._refused(str(refused))
            return self._result
        try:
            self._join(roster.join_now)
            for member in roster.members:
                # A member another run holds stays one (the roster keeps it), but delivers
                # nothing: the first window with its events holds the stream checkpoint back.
                member.open(MEMBER)
                self._members[member.user_id] = member
            self._read_first(roster.read_first)
            if self._adopt_roster():
                self._read_stream()
        except StreamRefused as refused:
            # Mid-run (a scope withdrawn): what was committed stays; the next run reads per user.
            self._note_refused(str(refused))
            if isinstance(refused.__cause__, Auth0ScopeError):
                # Nobody was read past here: the tenant's failure in this run (its alarm, the
                # note `status` shows), as a refused scope is in a per-user read; not a run that
                # says every member was read.
                self._stopped(refused.__cause__, _REFUSED_MID_ERA, defer=False, tenant=True)
        finally:
            self._finish()
        return self._result

    # -- 1. the era ------------------------------------------------------------------------------

    def _roster(self, era: TenantState) -> Roster:
        roster = Roster()
        previous = era.members()
        starting = era.position is None
        now_ms = self._env.now_ms()
        for session in self._sessions:
            cursor = session.found
            if session.is_new:
                # New users join at once while the era starts (it starts before START_FROM) or
                # with START_FROM=now; an earlier start needs their history read per user.
                if starting or self._settings.start_from.mode == "now":
                    roster.join_now.append(session)
                else:
                    roster.read_first.append(session)
            elif cursor is not None and cursor.on_stream(era.epoch):
                if _seat_holds(session.user_id, cursor, era, previous):
                    roster.members.append(session)
                else:
                    # Its pending events are read back by id (read_back.py), and nothing the
                    # stream verified counts as its own (session.py), then it joins.
                    logger.warning("The stream moved without this user: read per user first",
                                   extra={"user_id": session.user_id})  # fmt: skip
                    roster.read_first.append(session)
            elif cursor is not None and starting and _joins_at_once(cursor, now_ms):
                roster.join_now.append(session)
            else:
                roster.read_first.append(session)
        return roster

    def _adopt_roster(self) -> bool:
        """The members go into the tenant item before the stream moves, and with every move, in
        the same conditional write: a run whose view of the members is stale cannot move it
        (roster.py). Written now, not with the first move: a run whose time ends before it moves
        the stream must not leave the seats it wrote unknown to the next run, which would read
        every such user per user again. A watched user that is not a member (its join failed,
        another run had it) is left off, so that the next run, seeing it seated, reads it per
        user first. False when the write failed: the stream stops for this run."""
        state = self._tenant.state
        members = pack(self._members)
        if state.roster == members:
            return True
        return self._write_tenant(replace(state, roster=members), "recording the stream's members")

    def _start_era(self, roster: Roster) -> bool:
        """Find where the new era starts and write it down before anyone joins: a seat is only
        ever at a position the tenant item knows."""
        now_ms = self._env.now_ms()
        since = _since(roster.join_now, now_ms - self._settings.overlap_window_ms)
        try:
            position = start_position(self._env.source, since, self._run.scope)
        except Auth0AnswerTooLarge as error:
            if error.tenant_wide:
                self._stopped(error, "starting the tenant stream", tenant=True)
                return False
            raise StreamRefused(str(error)) from error
        except ForwarderError as error:
            # Auth0 unavailable, or out of time: nothing started, nobody joined; next run.
            self._stopped(error, "starting the tenant stream", tenant=True)
            return False
        if position is None:
            logger.info("The tenant's log is empty; the stream starts once it holds an event")
            self._result.complete = True
            self._first_sight(roster.join_now)
            return False
        # Dates before `since` were verified by per-user reads, or are before START_FROM; what
        # is past the retention's reach already is not this era's to report (as the known limits
        # in docs/guarantees.md say of a START_FROM older than the retention).
        cut = self._retention_cut()
        era = replace(
            self._tenant.state.new_era(now_ms),
            position=position,
            verified_ms=cut if since is None else max(since, cut),
        )
        if not self._write_tenant(era, "starting the tenant stream"):
            return False
        logger.info("Tenant stream era started", extra={"epoch": era.epoch, "from": position})
        return True

    def _first_sight(self, sessions: Sequence[UserSession]) -> None:
        """Fix new users' start at first sight, seatless: with START_FROM=now, a user must not
        see "now" move on while the era waits for a first event (they join once it starts)."""
        for session in sessions:
            if session.is_new and session.open(JOIN):
                session.write(session.cursor)

    # -- 2. joins --------------------------------------------------------------------------------

    def _join(self, sessions: Sequence[UserSession]) -> None:
        """Seat each user at the stream checkpoint (a checkpoint write each)."""
        state = self._tenant.state
        assert state.position is not None
        seat = StreamSeat(state.epoch, self._env.now_ms(), state.position)

        def join(session: UserSession) -> None:
            if self._run.time_is_up():
                # The margin is the stream's: its members must be written down (_adopt_roster)
                # before the run ends, or the next run cannot trust the seats written here.
                session.defer("joining the tenant stream")
                return
            opened = session.checkpoint is not None or session.open(JOIN)
            if opened and session.write(replace(session.cursor, seat=seat)):
                self._members[session.user_id] = session

        self._each(join, sessions)

    def _read_first(self, sessions: Sequence[UserSession]) -> None:
        """Per-user reads of users who cannot join at once; those read to their newest event,
        with nothing pending, join. They may use JOIN_SHARE of the time left."""
        if not sessions:
            return
        run = self._run
        share = int(run.remaining_ms() * JOIN_SHARE)
        budget = replace(run, margin_ms=run.margin_ms + share, out_of_time=threading.Event())
        read_first(sessions, budget, self._tenant.state)
        self._read_per_user = {s.user_id for s in sessions if s.ok}
        joining = [
            s
            for s in sessions
            if s.ok and s.checkpoint is not None and not s.cursor.status.backlog
            and not s.cursor.outbox
        ]  # fmt: skip
        self._join(joining)

    # -- 3. and 4. windows -----------------------------------------------------------------------

    def _read_stream(self) -> None:
        state = self._tenant.state
        if not self._members or state.position is None or self._run.tenant.failure is not None:
            return
        started_ms = self._env.now_ms()
        self._result.complete = False
        try:
            hold = self._windows_delivered(started_ms, state.position)
        except Auth0AnswerTooLarge as error:
            if error.tenant_wide:
                self._stopped(error, "reading the tenant stream", defer=False, tenant=True)
                return
            # One entry no page of the stream can hold: the stream cannot pass it (the next
            # `from` is its log_id). Read per user, which quarantines it.
            raise StreamRefused(str(error)) from error
        except ForwarderError as error:
            # Out of time (what was committed stays, the rest waits), or Auth0 kept failing or
            # answered what cannot be read: the users' commits stand, and the run fails after
            # its report (the Errors alarm) as the tenant's: no member was read past here.
            self._stopped(error, "reading the tenant stream", defer=False, tenant=True)
            return
        if self._result.complete and hold is None:
            self._completed(started_ms)

    def _windows_delivered(self, started_ms: int, position: str) -> str | None:
        """Read and deliver windows until the end of the log or of the time; returns where the
        checkpoint was held back (None: nobody was left out)."""
        read = StreamRead(self._env.source, self._run.scope, self._run.time_is_up)
        hold: str | None = None  # the checkpoint stays here: a left-out user's events follow
        first = True
        for window in self._windows(read, position):
            self._result.events_read += window.returned
            unread = self._unread(window) if first else None
            first = False
            delivered = self._deliver(self._chunks(window, unread), started_ms)
            if not (delivered and self._tenant_wide(window)) and hold is None:
                hold = window.after
            if not self._move(hold or window.to, window.returned):
                self._result.complete = False
                return hold or window.after
            self._result.complete = window.complete
        return hold

    def _windows(self, read: StreamRead, position: str) -> Iterator[Window]:
        try:
            yield from read_windows(read, position)
        except CheckpointUnknown as unknown:
            # A `from` Auth0 refused (undocumented; it documents a bound). Start again from what
            # the stream verified: the seats drop what their users already hold.
            since = self._tenant.state.verified_ms
            logger.warning(
                "Auth0 refused the stream checkpoint; reading again from what was verified",
                extra={"reason": str(unknown), "since": since},
            )
            margin = self._settings.overlap_window_ms
            restart = start_position(
                self._env.source, since, self._run.scope, held_margin_ms=margin
            )
            if restart is None:
                return
            try:
                yield from read_windows(read, restart)
            except CheckpointUnknown as again:
                self._result.error = f"Auth0 refused the stream checkpoint twice ({again})"
                logger.error("The tenant stream cannot go on", extra={"error": self._result.error})

    def _unread(self, window: Window) -> tuple[int, int] | None:
        """The span a lapse of the stream may have lost (gaps.ReadFacts.unread_span): dates from
        what was verified up to the retention's reach, and never past an event still returned
        (one is retained, so everything dated after it is)."""
        verified = self._tenant.state.verified_ms
        retention_cut = self._retention_cut()
        if verified is None or verified >= retention_cut:
            return None
        oldest = min((e.date_ms for e in window.events), default=retention_cut)
        return verified, min(retention_cut, oldest)

    def _retention_cut(self) -> int:
        """What AUTH0_LOG_RETENTION_HOURS says may have expired, as of the run's start: one
        instant for the whole run, so that an era started at the retention's edge does not
        see it move between its start and its first window."""
        return self._started_ms - self._settings.log_retention_ms

    def _chunks(self, window: Window, unread: tuple[int, int] | None) -> dict[str, Chunk]:
        active = {u: s for u, s in self._members.items() if u not in self._left_out}
        events = window.by_user(active.__contains__)
        malformed: dict[str, list[Malformed]] = {}
        for entry in window.malformed:
            owner = entry.owner
            if owner in active:
                malformed.setdefault(owner, []).append(entry)
            elif owner is None:
                # Not a user's: no per-user read would have returned it either.
                logger.warning("Log entry naming no user skipped", extra={"reason": entry.reason})
        chunks: dict[str, Chunk] = {}
        for user, session in active.items():
            mine, bad = events.get(user, []), malformed.get(user, [])
            # The last window also settles pending events it did not return (gone from Auth0).
            closing = window.complete and bool(session.cursor.outbox)
            if mine or bad or unread is not None or closing:
                chunks[user] = self._chunk(window, session.cursor, (mine, bad), unread)
        return chunks

    def _chunk(
        self,
        window: Window,
        cursor: Cursor,
        found: tuple[list[LogEvent], list[Malformed]],
        unread: tuple[int, int] | None,
    ) -> Chunk:
        assert cursor.seat is not None
        mine, bad = found
        floor_until = self._tenant.state.floor_until(cursor.seat, default=window.to)
        return Chunk(
            mine,
            STREAM_SOURCE,
            StreamSpan(window.after, window.to, floor_until),
            ReadFacts(unread_span=unread),
            returned=len(mine) + len(bad),
            malformed=bad,
        )

    def _deliver(self, chunks: Mapping[str, Chunk], started_ms: int) -> bool:
        """Every user's chunk of a window through its session; False when a user could not
        commit its own (it is left out for the rest of the run)."""
        members = self._members

        def deliver(user: str) -> bool:
            session = members[user]
            return session.ok and session.deliver(chunks[user], started_ms)

        done = self._each(deliver, list(chunks))
        failed = {user for user, ok in zip(chunks, done, strict=True) if not ok}
        self._left_out |= failed
        return not failed

    def _tenant_wide(self, window: Window) -> bool:
        """DETECTIONS_TENANT_WIDE: the window's events of users nobody watches through the rules
        of such users, before the checkpoint moves past them; False when that failed (the
        checkpoint stays before the window, which is read again: the rules skip what they saw)."""
        watched = {session.user_id for session in self._sessions}
        others = [e for e in window.events if e.user_id not in watched]
        try:
            found = evaluate_tenant_wide(self._env, self._run, others, STREAM_SOURCE)
        except ForwarderError as error:
            logger.error(
                "Tenant-wide detections failed; the stream waits for them",
                extra={"error": f"{type(error).__name__}: {error}"},
            )
            self._result.error = self._result.error or f"tenant-wide detections: {error}"
            return False
        if found is not None:
            self._result.tenant_wide = merged(self._result.tenant_wide, found)
        return True

    def _move(self, position: str, returned: int) -> bool:
        """Write the stream checkpoint; False if another run moved it first (it owns the
        stream now; everything this run delivered is in its users' seats)."""
        state = self._tenant.state
        moved = replace(
            state, position=position, read_since_complete=state.read_since_complete + returned
        )
        return self._write_tenant(moved, "moving the stream checkpoint")

    def _write_tenant(self, state: TenantState, doing: str) -> bool:
        """A tenant item write; False when it failed, and the stream stops for this run. What
        users committed stays in their seats: a window read again is dropped by them."""
        try:
            self._tenant.write(state)
        except ForwarderError as error:
            self._stopped(error, doing)
            return False
        return True

    def _stopped(
        self, error: ForwarderError, doing: str, *, defer: bool = True, tenant: bool = False
    ) -> None:
        """The stream stops for this run, and says why as the outcome of `error` decides.
        `tenant`: the stream's reading stopped (not a write of its item): a failure of it leaves
        every member unread, and is the tenant's."""
        outcome = outcome_of(error)
        if outcome is Outcome.TENANT or (tenant and outcome is Outcome.FAILED):
            failure = TenantFailure.of(error, doing)
            if self._run.tenant.note(failure):
                logger.error(
                    "Tenant failed: the tenant stream cannot be read",
                    extra={"cause": failure.cause, "fix": failure.fix},
                )
            if outcome is Outcome.TENANT:
                return
        if outcome is Outcome.BUSY:
            # Another run owns the stream now; nothing failed.
            logger.warning(f"Another run wrote the tenant item first ({doing}); leaving it to it")
        elif outcome is Outcome.DEFERRED:
            # The next run goes on; what users committed is in their seats.
            logger.warning(f"Tenant stream deferred ({doing}): out of time",
                           extra={"why": str(error)})  # fmt: skip
            if defer:
                for session in self._sessions:
                    session.defer(doing, logged=False)  # said once, above
        else:
            self._result.error = f"{doing}: {type(error).__name__}: {error}"
            logger.error("The tenant stream stopped", extra={"error": self._result.error})

    # -- 5. the end ------------------------------------------------------------------------------

    def _completed(self, started_ms: int) -> None:
        state = self._tenant.state
        done = state.after_complete_read(started_ms, overlap_ms=self._settings.overlap_window_ms)
        self._write_tenant(done, "recording a complete read")

    def _finish(self) -> None:
        """Every session closed, in parallel as the joins are (a first run settles every user it
        seated): a member read to the end of the log has a complete history (no backlog), and
        the error a past run noted for `status` is over, as after a per-user read."""
        complete = self._result.complete
        members = self._members

        failure = self._run.tenant.failure if complete is not True else None

        def close(session: UserSession) -> None:
            member = session.user_id in members
            if failure and session.ok and session.user_id not in self._read_per_user:
                session.block(failure)  # nothing read it this run: the tenant failed
            settle = self._settled if member and complete is True else None
            session.close(settle, behind=complete is False if member else None)

        self._each(close, self._sessions)

    def _settled(self, cursor: Cursor) -> Cursor:
        """A member after a read of the stream to its end: its history is complete, and the
        error a past run noted is over. When that is a change (a write anyway), the read is its
        last read too; an idle member's is the tenant item's (`stream_read_at`), not a write."""
        status = replace(cursor.status, backlog=False).without_error()
        settled = replace(cursor.released(), status=status)
        if settled == cursor:
            return cursor
        return replace(settled, status=status.read_at(self._started_ms, exact=True))

    def _refused(self, reason: str) -> None:
        """No read:logs: this run reads per user after all, and the tenant item says why."""
        state = self._note_refused(reason)
        why = f"the tenant stream is unavailable ({reason}); reading per user"
        self._result.fallback = Decision(PER_USER, why, state.costs(len(self._sessions)))
        self._result.complete = None
        read_users(self._sessions, self._run, state)

    def _note_refused(self, reason: str) -> TenantState:
        logger.warning("The tenant stream is unavailable", extra={"reason": reason})
        state = replace(self._tenant.state, refused=reason, refused_at_ms=self._env.now_ms())
        self._tenant.state = state  # written with the run's figures (forwarder._record)
        return state

    def _each(self, work: Callable[[T], R], items: Iterable[T]) -> list[R]:
        with ThreadPoolExecutor(max_workers=self._settings.max_concurrent_users) as pool:
            return list(pool.map(work, items))


def _seat_holds(
    user: str, cursor: Cursor, era: TenantState, members: frozenset[bytes] | None
) -> bool:
    """The stream moved with this user (it is on the roster), and nothing it has pending lies at
    or below the stream checkpoint (which the stream would then never read again)."""
    if members is None or digest(user) not in members:
        return False
    position = era.position
    return position is None or all(log_id > position for log_id in cursor.outbox.log_ids)


def _joins_at_once(cursor: Cursor, now_ms: int) -> bool:
    """Nothing of the user is pending, and the era can start before whatever it lacks: a
    complete per-user read verified it recently, or nothing was forwarded yet (its floor, fixed
    at first sight, is all it needs)."""
    if cursor.outbox:
        return False
    if _untouched(cursor):
        return True
    verified = cursor.position.verified_ms
    recent = verified is not None and verified >= now_ms - JOIN_LOOKBACK_MS
    return recent and not cursor.status.backlog


def _untouched(cursor: Cursor) -> bool:
    return (
        cursor.status.forwarded_total == 0
        and not cursor.position.recent
        and cursor.position.verified_ms is None
    )


def _since(joining: Iterable[UserSession], default: int) -> int | None:
    """The date the era starts before: the oldest its joiners need (None: the oldest event)."""
    dates: list[int | None] = []
    for session in joining:
        cursor = session.cursor
        untouched = session.is_new or _untouched(cursor)
        dates.append(cursor.position.floor_ms if untouched else cursor.position.verified_ms)
    if not dates:
        return default
    if any(date is None for date in dates):
        return None
    return min(date for date in dates if date is not None)
