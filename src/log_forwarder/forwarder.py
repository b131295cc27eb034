"""One run: decide how to read Auth0, then drive every watched user's session.

    load every checkpoint and the tenant item (one batched read)
    decide: per user, or the tenant stream (read_mode.py, from the tenant item)
    per user  → per_user.py: each user's read, chunk by chunk, through its session
    stream    → stream_run.py: the tenant's log, window by window, one chunk per member
    record the tenant item: the mode, why, the figures the next run decides on, and whether
              the tenant failed (a failure every user's read meets: said once, for all)

A push (the real-time function, realtime.py) is the third way in: the events Auth0's log stream
pushed, one chunk per watched user, against the same checkpoints.

Both modes, and a push, deliver through session.py, which holds the per-user lifecycle (open,
deliver each chunk through the planner and the executor, close); this module only chooses and
reports.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from .chunk import Chunk
from .config import Settings
from .events import LogEvent
from .exceptions import ForwarderError, OutOfTime
from .per_user import read_users
from .planner import OutputPolicy
from .pushed import PushedLedger
from .read_mode import AUTO, PER_USER, STREAM, TENANT_KEY, Decision, TenantRecord, decide
from .read_mode import per_user_calls as per_user_calls_for
from .report import Outcome, ReadReport, RunReport, UserReport, tenant_outage
from .retry import AWS_ATTEMPT_S, Attempts, Deadline, RetryPolicy
from .session import (
    Opening,
    RunContext,
    SessionEnv,
    UserSession,
    evaluate_tenant_wide,
    outcome_of,
)
from .shared_correlations import TENANT_FINDINGS, SharedCorrelations
from .sinks import Sink
from .source import CallScope, CallStats, LogSource, UserDirectory
from .store import CheckpointStore
from .stream import sample_rate

logger = logging.getLogger(__name__)


# Kept back from the invocation's timeout for what comes after the last wait: releasing leases,
# publishing the metrics, returning. Waits and retries end before it.
FINISH_RESERVE_MS = 5_000
# A scheduled run's waits and retries also end one AWS call before that: the tenant item, which
# `status` reads, must still be writable once every user's read failed (an Auth0 that hangs
# until the deadline would leave the failure the run reports recorded nowhere).
# Never more than TIME_MARGIN_SECONDS, the time the operator keeps for finishing: a margin
# below 20 s (the template allows 10) leaves the tenant item a write only if it fits.
RECORD_RESERVE_MS = FINISH_RESERVE_MS + int(AWS_ATTEMPT_S * 1000) + 2_000
# A push that finds its user busy waits this way before it tries again (about 3.5 s in all, on
# average, at most 7): another invocation holds the user's checkpoint only from its intent to
# its commit, a few hundred milliseconds.
PUSH_BUSY_RETRY = RetryPolicy(attempts=8, base_s=0.1, cap_s=2.0, attempt_s=AWS_ATTEMPT_S)
# A push's users delivered at once, at least (MAX_CONCURRENT_USERS paces the reads of Auth0,
# which a push does not call): one wave sharing one S3 object (sinks/gathering.py), within the
# AWS clients' 10 pooled connections.
PUSH_USERS_AT_ONCE = 8
# Opening a user's session for a push: its state is taken as it stands, the reads look it up,
# and its report keeps the dates it forwarded (the push's latency).
PUSH = Opening(looks_up=False, keeps_dates=True)


class Forwarder:
    def __init__(
        self,
        *,
        settings: Settings,
        source: LogSource,
        store: CheckpointStore,
        sinks: Sequence[Sink],
        clock: Callable[[], float] = time.time,
        output: OutputPolicy | None = None,
        directory: UserDirectory | None = None,
        sleep: Callable[[float], None] = time.sleep,
        pushed: PushedLedger | None = None,
    ) -> None:
        """`directory`: whom to ask whether Auth0 knows a watched user (user_lookup.py)."""
        self._settings = settings
        self._sleep = sleep
        self._store = store
        self._clock = clock
        output = output or OutputPolicy()
        self._env = SessionEnv(
            settings,
            source,
            store,
            list(sinks),
            output,
            self._now_ms,
            directory=directory,
            pushed=pushed,
            shared=SharedCorrelations(store, self._now_ms) if output.detections else None,
        )

    def run(self, user_ids: Sequence[str], *, remaining_ms: Callable[[], int]) -> RunReport:
        # Loading and the tenant item's write keep only the finish reserve: the time the reads
        # keep back for that write is not yet needed (a run that cannot load records nothing).
        finishing = Deadline(lambda: remaining_ms() - FINISH_RESERVE_MS)
        loaded = self._store.load([*user_ids, TENANT_KEY], deadline=finishing)
        reserve_ms = min(RECORD_RESERVE_MS, self._settings.time_margin_ms)
        run = self._new_run(remaining_ms, reserve_ms=reserve_ms)
        tenant = TenantRecord(self._store, loaded.pop(TENANT_KEY, None), run.scope.deadline)
        sessions = [UserSession(user, loaded.get(user), self._env, run) for user in user_ids]
        decision = self._decide(tenant, sessions, run)
        logger.info("Read mode", extra={"read_mode": decision.mode, "why": decision.reason})
        read = ReadReport(decision.mode, decision.reason)
        tenant_wide = None
        if decision.mode == STREAM:
            # Imported in its mode only: a per-user run never loads the stream's roster and
            # results (bench/sigma.py measures the cold start).
            from .stream_run import StreamRun

            stream = StreamRun(self._env, run, tenant).run(sessions)
            tenant_wide = stream.tenant_wide
            if stream.fallback is not None:  # read per user after all (no read:logs)
                decision, read = stream.fallback, ReadReport(PER_USER, stream.fallback.reason)
            else:
                read.stream_events = stream.events_read
                read.stream_complete = stream.complete
                read.error = stream.error
        else:
            read_users(sessions, run, tenant.state)
        read.stream_unavailable = tenant.state.refused
        users = [session.report for session in sessions]
        read.tenant_item_newer = tenant.refused is not None
        report = RunReport(
            users=users,
            calls=run.scope.stats,
            finished_ms=self._now_ms(),
            read=read,
            realtime=self._settings.realtime_event_source is not None,
            tenant_failure=run.tenant.failure or tenant_outage(users),
            tenant_wide=tenant_wide,
        )
        # The reads' deadline is past; the tenant item may use the time kept for it.
        tenant.deadline = finishing
        self._record(tenant, decision, report)
        return report

    def push(
        self,
        pushed: Mapping[str, Chunk],
        *,
        remaining_ms: Callable[[], int],
        others: Sequence[LogEvent] = (),
    ) -> RunReport:
        """Events Auth0's log stream pushed, a chunk per watched user (chunk.RealtimeSpan), each
        through the user's session against the checkpoint the reads use. A user with no
        checkpoint yet is left to the reads: they fix where it starts (START_FROM).

        A user found busy (another push or a run between its intent and its commit, for a few
        hundred milliseconds) is tried again after a short wait, within the invocation's time;
        what is still busy after PUSH_BUSY_RETRY is said so in its report, and the caller hands
        it back to the queue rather than to the schedule.

        `others`: what was pushed of users nobody watches, for the tenant-wide rules
        (DETECTIONS_TENANT_WIDE); a failure of theirs is raised, for the queue to hand the
        batch back (the rules skip what they saw)."""
        # Imported here: only the real-time function gathers its users' objects.
        from .sinks.gathering import Gathering

        run = self._new_run(remaining_ms)
        reports: dict[str, UserReport] = {}
        waiting = list(pushed)
        # The intents each user's attempts wrote: a retry finding one is its own to deliver.
        claimed: dict[str, set[str]] = {user: set() for user in pushed}

        def attempt() -> None:
            try:
                loaded = self._store.load(waiting, deadline=run.scope.deadline)
            except ForwarderError as error:
                if reports:
                    raise  # the busy retry's: what the first attempt delivered is reported
                # Out of time, or the table failing: every user is said so, and its messages
                # go back to the queue (not the whole batch, as a raise would send them).
                logger.error(
                    "Checkpoints not loaded", extra={"users": len(waiting), "error": _said(error)}
                )
                reports.update((user, _unloaded(user, error)) for user in waiting)
                waiting.clear()
                return

            # The users' batches share one S3 object (sinks/gathering.py): a PUT per push, not
            # per user and push.
            gathering = Gathering() if len(waiting) > 1 else None
            env = self._env
            if gathering is not None:
                env = replace(env, sinks=tuple(gathering.sinks(env.sinks)))

            def deliver(user: str) -> UserReport:
                oldest = min((e.date_ms for e in pushed[user].events), default=None)
                shared_object = gathering.seat(user) if gathering is not None else None
                try:
                    session = UserSession(
                        user,
                        loaded.get(user),
                        env,
                        run,
                        pushed_from_ms=oldest,
                        claimed=claimed[user],
                        shared_object=shared_object,
                    )
                    if not session.is_new and session.open(PUSH):
                        session.deliver(pushed[user], self._now_ms())
                finally:
                    if gathering is not None:
                        gathering.leave(user)  # nobody waits for what it will not deliver
                return session.close()

            # Users side by side, as a stream run's members are: a batch's latency is its
            # slowest user's, not the sum of them all. The busiest first, whose events are most
            # of the batch's.
            busiest_first = sorted(waiting, key=lambda user: -pushed[user].returned)
            at_once = max(PUSH_USERS_AT_ONCE, self._settings.max_concurrent_users)
            workers = max(1, min(len(busiest_first), at_once))
            if gathering is not None:
                for user in busiest_first[:workers]:  # the first the pool starts, together
                    gathering.seat(user)
            with ThreadPoolExecutor(max_workers=workers) as pool:
                for user, report in zip(
                    busiest_first, pool.map(deliver, busiest_first), strict=True
                ):
                    if user in reports:
                        report.after(reports[user])
                    reports[user] = report
                    if not report.busy:
                        waiting.remove(user)

        attempt()  # once whatever time is left: every user pushed gets a report
        attempts = Attempts(PUSH_BUSY_RETRY, sleep=self._sleep, deadline=run.scope.deadline)
        attempts.made = 1
        try:
            while waiting and attempts.retry_after():
                attempts.start()
                attempt()
        except ForwarderError as error:
            # Out of time, or the checkpoints unreadable for the retry: the users still busy
            # go back to the queue, and what the others delivered is still reported and counted.
            if not isinstance(error, OutOfTime):
                logger.warning("Busy users not tried again", extra={"error": str(error)})
        try:
            tenant_wide = evaluate_tenant_wide(self._env, run, others, "log_stream_push")
        except ForwarderError as error:
            # The watched users are delivered, and counted: only the unwatched users' events go
            # back to the queue for the tenant-wide rules (which skip what they saw).
            tenant_wide = UserReport(TENANT_FINDINGS)
            tenant_wide.end(Outcome.FAILED, error=_said(error), failure=error)
            logger.error("Tenant-wide rules not run", extra={"error": _said(error)})
        return RunReport(
            users=[reports[user] for user in pushed],
            calls=run.scope.stats,
            finished_ms=self._now_ms(),
            realtime=True,
            tenant_wide=tenant_wide,
        )

    def _new_run(
        self, remaining_ms: Callable[[], int], *, reserve_ms: int | None = None
    ) -> RunContext:
        margin_ms = self._settings.time_margin_ms
        if reserve_ms is None:
            reserve_ms = min(FINISH_RESERVE_MS, margin_ms // 2)
        deadline = Deadline(lambda: remaining_ms() - reserve_ms)
        return RunContext(
            CallScope(CallStats(), deadline),
            remaining_ms,
            margin_ms,
            threading.Event(),
        )

    def _decide(
        self, tenant: TenantRecord, sessions: Sequence[UserSession], run: RunContext
    ) -> Decision:
        now_ms = self._now_ms()
        setting = self._settings.read_mode
        state = tenant.state
        if tenant.refused is not None:
            # The stream's state is a newer release's: this one reads per user, and never
            # writes over it.
            why = f"{tenant.refused}; reading per user"
            return Decision(PER_USER, why, state.costs(len(sessions)))
        # In per-user mode nothing else measures the tenant's event rate.
        measure = setting == AUTO and state.mode != STREAM and not state.stream_refused(now_ms)
        if measure and state.probe_due(now_ms):
            tenant.state = sample_rate(self._env.source, state, now_ms=now_ms, scope=run.scope)
        pending = sum(bool(s.found and s.found.outbox) for s in sessions)
        return decide(setting, tenant.state, users=len(sessions), pending=pending, now_ms=now_ms)

    def _record(self, tenant: TenantRecord, decision: Decision, report: RunReport) -> None:
        """The tenant item after the run: the mode, why, the figures the next run decides on,
        and the tenant's failure (kept until a run reads a user: `status` shows it).
        READ_MODE=per-user keeps no figures: the item is written only to end a stream era, and
        when the tenant fails or recovers. A newer release's item is never written."""
        if tenant.refused is not None:
            return
        now_ms = self._now_ms()
        state = tenant.state
        failure = report.tenant_failure
        if failure is not None:
            state = state.failing(failure.cause, failure.fix, now_ms=now_ms)
        elif report.processed:
            state = state.recovered()
        tenant.users = len(report.users)
        if self._settings.read_mode == PER_USER and tenant.state.mode == PER_USER:
            tenant.write_best_effort(state, "the tenant's failure is not recorded; the run says it")
            return
        forwarded = {u.user_id: u.forwarded for u in report.users}
        state = state.after_run(
            decision, per_user_calls=per_user_calls_for(forwarded, len(report.users)), now_ms=now_ms
        )
        tenant.write_best_effort(state, "the figures of this run are lost; nothing else")

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def _said(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def _unloaded(user: str, error: ForwarderError) -> UserReport:
    """The report of a pushed user whose checkpoint could not be loaded: deferred when out of
    time, else failed with the error (session.outcome_of decides, as for any user)."""
    report = UserReport(user)
    outcome = outcome_of(error)
    if outcome is Outcome.DEFERRED:
        report.end(outcome)
    else:
        report.end(outcome, error=_said(error), failure=error)
    return report
