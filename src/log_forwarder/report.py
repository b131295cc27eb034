"""What a run did, per user and in total, and the metrics it is published as.

Every metric the function emits is a row of METRICS, so the names live in one table (the
template's alarms and docs/operations.md's list read from the same names).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any

from .cursor import Cursor, Selection
from .detections import NO_GROUP_KEY, REGEX_INPUT_CUT, TOO_LATE, Skipped
from .events import iso_ms
from .exceptions import (
    Auth0AnswerTooLarge,
    Auth0Error,
    Auth0MalformedResponse,
    Auth0UnavailableError,
    CheckpointError,
    ForwarderError,
    NewerStateError,
    PushedMemoryMissing,
    RunFailed,
)
from .planner import Batch
from .records import DeliveryReport, Gap
from .shared_correlations import Applied
from .sinks.registry import NAMES
from .source import CallStats

if TYPE_CHECKING:
    from .rule_packs import ActivePlan


class Outcome(Enum):
    """How a user's work in a run ended: one value, set by its session (session.outcome_of
    decides what an exception means)."""

    DONE = "done"
    DEFERRED = "deferred"  # out of time: resumes next run
    BUSY = "busy"  # another run wrote first: it owns the user (or the item) now
    TENANT = "tenant"  # the tenant's failure (the token, its scopes): no user's read can work
    FAILED = "failed"  # a ForwarderError: this work failed, the rest goes on
    BUG = "bug"  # anything else: the run fails loudly once the rest is done


@dataclass(frozen=True, slots=True)
class TenantFailure:
    """A failure no user's read escapes (the token, its scopes, Auth0 down for every user, the
    tenant stream stopped): the tenant's, said once for all its users. `cause` names no user."""

    cause: str
    fix: str

    @classmethod
    def of(cls, error: BaseException, doing: str | None = None) -> TenantFailure:
        reason = error.reason if isinstance(error, Auth0Error) else str(error)
        cause = f"{type(error).__name__}: {reason}"
        fix = error.fix if isinstance(error, Auth0Error) else None
        return cls(f"{doing}: {cause}" if doing else cause, fix or _fix_for(error))

    def as_dict(self) -> dict[str, str]:
        return {"cause": self.cause, "fix": self.fix}


def _fix_for(error: BaseException) -> str:
    if isinstance(error, Auth0UnavailableError):
        return (
            "none if it passes: Auth0 did not answer; the next run resumes from the "
            "checkpoints, and nothing is lost while an outage is shorter than the tenant's log "
            "retention. If it lasts, check that AUTH0_DOMAIN (or AUTH0_BASE_URL) reaches the tenant"
        )
    if isinstance(error, Auth0MalformedResponse | Auth0AnswerTooLarge):
        return "these answers are not Auth0's: check AUTH0_DOMAIN (and AUTH0_BASE_URL)"
    if isinstance(error, CheckpointError):
        return "check the checkpoint table (CHECKPOINT_TABLE) and the function's access to it"
    return "see the cause; the next run tries again from the checkpoints"


@dataclass
class UserReport:
    """What a run did for one watched user: counts, gaps, findings, and its error if any."""

    user_id: str
    fetched: int = 0
    forwarded: int = 0
    delivered: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    # Events the real-time path delivered first that a read returned for the first time
    # (counted once its chunk is committed, and once over every read: session._confirm).
    confirmed: int = 0
    # Events a read delivered that the real-time path could have delivered first (not history):
    # what the stream dropped, or had not pushed yet (planner.RECONCILE_HORIZON_MS).
    reconciled: int = 0
    late: int = 0
    max_lateness_ms: int = 0
    quarantined: int = 0  # malformed entries recorded for the first time
    filtered: int = 0  # new events the filter kept out (remembered, not forwarded)
    findings: Counter[str] = field(default_factory=Counter)  # by rule
    # Events the detection rules did not see whole, by reason (detections.SKIPPED_REASONS).
    detection_skipped: Counter[str] = field(default_factory=Counter)
    skipped_records: int = 0  # the `detection_skipped` records written for them
    # Other users' batches the shared detection item forgot before their hour (its 512 cap).
    shared_forgotten: int = 0
    # Why the shared detection state could not be used (a newer release's, unreadable).
    detection_state_unavailable: str | None = None
    future_dated: int = 0
    restamped: int = 0
    oversized: int = 0
    recovered: int = 0
    # Lines a redelivery sent again to a destination that cannot be read back: each may now be
    # there twice (DeliveryReport.repeated).
    possible_repeats: int = 0
    abandoned: int = 0
    gaps: list[Gap] = field(default_factory=list)
    newest_forwarded_ms: int | None = None
    # The date of each event forwarded, kept for a push's latency only (None: not kept, so a
    # scheduled run's report does not grow with its backlog).
    forwarded_dates: list[int] | None = None
    # How the user's work ended (the first thing that stopped it, or DONE); its session sets
    # it, once (`end`), and the details below with it.
    outcome: Outcome = Outcome.DONE
    backlog: bool = False  # its history is not read to the end yet
    # FAILED: the ForwarderError, said; TENANT: "the tenant failed: …", so that whatever counts
    # failed users counts it (RunReport.tenant_failure says why, once).
    error: str | None = None
    failure: ForwarderError | None = None  # the error itself
    # Its checkpoint was written by a newer release this one cannot read (left untouched).
    newer_state: bool = False
    bug: BaseException | None = None  # BUG: the run fails loudly once all are done
    cursor: Cursor | None = None

    def end(
        self,
        outcome: Outcome,
        *,
        error: str | None = None,
        failure: ForwarderError | None = None,
        bug: BaseException | None = None,
    ) -> bool:
        """The user's work ended so (the session says it); False when it had ended already:
        the first end is the outcome, but for a bug, which always is (the run fails with it)."""
        if outcome is Outcome.BUG:
            self.outcome, self.bug = outcome, bug
            return True
        if self.outcome is not Outcome.DONE:
            return False
        self.outcome, self.error, self.failure = outcome, error, failure
        self.newer_state = isinstance(failure, NewerStateError)
        return True

    @property
    def deferred(self) -> bool:
        """Stopped by the time budget; resumes next run."""
        return self.outcome is Outcome.DEFERRED

    @property
    def busy(self) -> bool:
        """Another run holds the user (a live lease, or it wrote first)."""
        return self.outcome is Outcome.BUSY

    @property
    def blocked(self) -> bool:
        """Not read (further): the tenant failed, not this user."""
        return self.outcome is Outcome.TENANT

    def add_read(self, selection: Selection) -> None:
        """What a read returned, counted as it happens (every run reads afresh)."""
        self.duplicates += selection.duplicates
        self.late += selection.late
        self.max_lateness_ms = max(self.max_lateness_ms, selection.max_lateness_ms)

    def add_delivery(self, outcome: DeliveryReport) -> None:
        """One destination accepted a batch (counted even if a later one then fails)."""
        name = outcome.destination
        self.delivered[name] = self.delivered.get(name, 0) + outcome.accepted
        self.restamped += outcome.restamped
        self.oversized += outcome.oversized
        self.possible_repeats += outcome.repeated

    def add_batch(self, batch: Batch) -> None:
        """A batch committed: what it forwarded and reported is now true, and counted once."""
        self.abandoned += batch.abandoned
        self.gaps.extend(batch.gaps)
        self.quarantined += len(batch.quarantined)
        self.filtered += batch.filtered
        self.findings.update(finding.rule for finding in batch.findings)
        self._add_skipped(batch.skipped)
        self.future_dated += batch.future_dated
        self.forwarded += len(batch.events)
        self.reconciled += batch.reconciled
        if self.forwarded_dates is not None:
            self.forwarded_dates.extend(event.date_ms for event in batch.events)
        if batch.redelivery:
            self.recovered += len(batch.events)
        if batch.events:
            newest = batch.events[-1].date_ms
            self.newest_forwarded_ms = max(self.newest_forwarded_ms or newest, newest)

    def add_shared(self, applied: Applied) -> None:
        """What the shared correlations found in a batch of this user's, delivered already."""
        self.findings.update(finding.rule for finding in applied.findings)
        self._add_skipped(applied.skipped)
        self.shared_forgotten += applied.forgotten
        if applied.unavailable is not None:
            self.detection_state_unavailable = applied.unavailable

    def after(self, earlier: UserReport) -> None:
        """This report, of a push tried again, takes in what its earlier attempt delivered
        before it found the user busy (a later batch of its plan refused): those batches are
        committed, and this attempt read their events as duplicates of its own."""
        self.forwarded += earlier.forwarded
        # (the events its filter kept out are recorded too: known to the retry as well)
        self.duplicates = max(0, self.duplicates - earlier.forwarded - earlier.filtered)
        for name, accepted in earlier.delivered.items():
            self.delivered[name] = self.delivered.get(name, 0) + accepted
        for counter in (
            "quarantined", "filtered", "skipped_records", "future_dated", "reconciled",
            "recovered", "restamped", "oversized", "possible_repeats", "abandoned",
            "shared_forgotten",
        ):  # fmt: skip
            setattr(self, counter, getattr(self, counter) + getattr(earlier, counter))
        self.findings.update(earlier.findings)
        self.detection_skipped.update(earlier.detection_skipped)
        self.gaps[:0] = earlier.gaps
        if self.forwarded_dates is not None and earlier.forwarded_dates:
            self.forwarded_dates[:0] = earlier.forwarded_dates
        newest = [m for m in (self.newest_forwarded_ms, earlier.newest_forwarded_ms) if m]
        self.newest_forwarded_ms = max(newest) if newest else None

    def _add_skipped(self, records: Sequence[Skipped]) -> None:
        self.skipped_records += len(records)
        for skipped in records:
            self.detection_skipped[skipped.reason] += skipped.count

    @property
    def missing(self) -> bool:
        """Auth0 says the user does not exist (deleted, or a wrong id)."""
        return self.cursor is not None and self.cursor.status.missing_since_ms is not None

    @property
    def unknown(self) -> bool:
        """Missing, and nothing was ever forwarded for it: most likely a wrong id."""
        return self.missing and self.cursor is not None and self.cursor.status.forwarded_total == 0

    def as_dict(self) -> dict[str, Any]:
        cursor = self.cursor
        return {
            "user_id": self.user_id,
            "outcome": self.outcome.value,
            "fetched": self.fetched,
            "forwarded": self.forwarded,
            "delivered": dict(self.delivered),
            "duplicates_dropped": self.duplicates,
            "realtime_confirmed": self.confirmed,
            "reconciled": self.reconciled,
            "late_events": self.late,
            "quarantined": self.quarantined,
            "filtered": self.filtered,
            "findings": dict(self.findings),
            "detection_skipped": dict(self.detection_skipped),
            "future_dated": self.future_dated,
            "restamped": self.restamped,
            "oversized": self.oversized,
            "recovered": self.recovered,
            "possible_repeats": self.possible_repeats,
            "abandoned": self.abandoned,
            "gaps": [
                {"from": iso_ms(g.from_ms), "to": iso_ms(g.to_ms), "reason": g.reason}
                for g in self.gaps
            ],
            "deferred": self.deferred,
            "busy": self.busy,
            "blocked": self.blocked,
            "missing": self.missing,
            "backlog": self.backlog,
            "error": self.error,
            "newer_release": self.newer_state,
            "checkpoint": cursor.summary() if cursor else None,
        }


@dataclass
class ReadReport:
    """How the run read Auth0, and why (read_mode.py decides)."""

    mode: str  # "per-user" or "stream"
    reason: str
    stream_unavailable: str | None = None  # why the tenant stream cannot be read (no read:logs)
    stream_events: int = 0  # entries the tenant stream returned, every user's
    stream_complete: bool | None = None  # the stream was read to its end (None: not read)
    error: str | None = None  # the stream could not go on (its checkpoint not written)
    # The tenant item was written by a newer release this one cannot read (left untouched).
    tenant_item_newer: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "read_mode": self.mode,
            "read_mode_reason": self.reason,
            "stream_unavailable": self.stream_unavailable,
            "stream_events": self.stream_events,
            "stream_complete": self.stream_complete,
            "stream_error": self.error,
            "tenant_item_newer": self.tenant_item_newer,
        }


@dataclass
class RunReport:
    """What a run did: each user's report, the calls it made, and what failed for the tenant."""

    users: list[UserReport]
    calls: CallStats = field(default_factory=CallStats)
    finished_ms: int = 0
    read: ReadReport | None = None
    # The real-time path is on (REALTIME_EVENT_SOURCE): this run reconciles what it missed.
    realtime: bool = False
    tenant_failure: TenantFailure | None = None  # every user's read failed the same way
    # The detection plan the run evaluated, and the installed packs left out of it, with why.
    rule_packs: ActivePlan | None = None
    # DETECTIONS_TENANT_WIDE: findings in events of users nobody watches (not a watched user).
    tenant_wide: UserReport | None = None

    @property
    def detection_reports(self) -> list[UserReport]:
        """The reports whose findings and skipped events the detection metrics count."""
        return [*self.users, *([self.tenant_wide] if self.tenant_wide else [])]

    @property
    def realtime_stalled(self) -> bool:
        """The reads delivered events the real-time path could have delivered first (not a
        backlog or history), and found not one it had: Auth0's stream is paused, broken, or not
        associated with the event bus."""
        reconciled = sum(u.reconciled for u in self.users)
        return self.realtime and reconciled > 0 and not any(u.confirmed for u in self.users)

    @property
    def lag_s(self) -> float | None:
        """Age of the newest event forwarded for the user furthest behind (None: none sent)."""
        newest = [u.newest_forwarded_ms for u in self.users if u.newest_forwarded_ms is not None]
        return (self.finished_ms - min(newest)) / 1000 if newest else None

    @property
    def failed(self) -> list[UserReport]:
        return [u for u in self.users if u.error is not None or u.bug is not None]

    @property
    def bugs(self) -> list[BaseException]:
        return [u.bug for u in self.users if u.bug is not None]

    @property
    def processed(self) -> list[UserReport]:
        """The users read as far as their newest event, or as the time allowed, without error."""
        return [
            u
            for u in self.users
            if u.error is None and u.bug is None and not (u.deferred or u.busy or u.blocked)
        ]

    def raise_failures(self, failed: str) -> None:
        """Once every user's progress is committed and the metrics are out: fail loudly with a
        bug, or with the tenant's failure, or with the users that failed (`failed` says what
        that means), for the Errors alarm and the on-failure destination."""
        if self.bugs:
            raise self.bugs[0]
        tenant = self.tenant_failure
        if tenant is not None:
            unread = len(self.users) - len(self.processed)
            raise RunFailed(
                f"the tenant failed: all users {failed} ({unread} of {len(self.users)} not read "
                f"this run): {tenant.cause}. Fix: {tenant.fix}"
            )
        if self.failed:
            raise RunFailed(
                f"{len(self.failed)} of {len(self.users)} users {failed}: "
                + "; ".join(f"{u.user_id}: {u.error}" for u in self.failed[:5])
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "users": [u.as_dict() for u in self.users],
            "api_calls": self.calls.api_calls,
            "rate_limited": self.calls.rate_limited,
            "retries": self.calls.retries,
            "token_requests": self.calls.token_requests,
            "pacing_wait_s": round(self.calls.pacing_wait_s, 3),
            "forwarded": sum(u.forwarded for u in self.users),
            "gaps": sum(len(u.gaps) for u in self.users),
            "failed_users": [u.user_id for u in self.failed],
            "tenant_failure": self.tenant_failure.as_dict() if self.tenant_failure else None,
            "tenant_wide_findings": dict(self.tenant_wide.findings) if self.tenant_wide else None,
            **(self.read.as_dict() if self.read else {}),
            **(self.rule_packs.as_dict() if self.rule_packs else {}),
        }


def _total(attribute: str) -> Callable[[RunReport], float]:
    return lambda run: sum(getattr(u, attribute) for u in run.users)


def _skipped(reason: str) -> Callable[[RunReport], float]:
    return lambda run: sum(u.detection_skipped[reason] for u in run.detection_reports)


def _delivered(destination: str) -> Callable[[RunReport], float]:
    return lambda run: sum(u.delivered.get(destination, 0) for u in run.users)


# (name, unit, value). Units are CloudWatch's names ("Count", "Seconds"); None: not emitted.
METRICS: tuple[tuple[str, str, Callable[[RunReport], float | None]], ...] = (
    ("UsersProcessed", "Count", lambda run: len(run.processed)),
    ("WatchedUsers", "Count", lambda run: len(run.users)),
    ("UsersFailed", "Count", lambda run: len(run.failed)),
    ("TenantFailed", "Count", lambda run: float(run.tenant_failure is not None)),
    ("NewerReleaseItems", "Count", lambda run: _newer_release_items(run)),
    ("PushedMemoryMissing", "Count", lambda run: _failed_with(run, PushedMemoryMissing)),
    ("UsersDeferred", "Count", _total("deferred")),
    ("UsersBusy", "Count", _total("busy")),
    ("UsersMissing", "Count", _total("missing")),
    ("UnknownUsers", "Count", _total("unknown")),
    ("UsersInBacklog", "Count", _total("backlog")),
    ("EventsFetched", "Count", _total("fetched")),
    ("EventsForwarded", "Count", _total("forwarded")),
    *((f"EventsDelivered_{d}", "Count", _delivered(d)) for d in NAMES),
    ("DuplicatesDropped", "Count", _total("duplicates")),
    ("LateEvents", "Count", _total("late")),
    ("Quarantined", "Count", _total("quarantined")),
    ("EventsFiltered", "Count", _total("filtered")),
    ("FutureDatedEvents", "Count", _total("future_dated")),
    ("RestampedEvents", "Count", _total("restamped")),
    ("OversizedEvents", "Count", _total("oversized")),
    ("RecoveredEvents", "Count", _total("recovered")),
    ("PossibleRepeats", "Count", _total("possible_repeats")),
    ("AbandonedPendingEvents", "Count", _total("abandoned")),
    ("Gaps", "Count", lambda run: sum(len(u.gaps) for u in run.users)),
    # Events the detection rules did not see whole (a record in the destinations says which).
    *(
        (name, "Count", _skipped(reason))
        for name, reason in (
            ("DetectionTooLate", TOO_LATE),
            ("DetectionNoGroupKey", NO_GROUP_KEY),
            ("DetectionRegexInputCut", REGEX_INPUT_CUT),
        )
    ),
    (
        "DetectionStateUnavailable",
        "Count",
        lambda run: sum(u.detection_state_unavailable is not None for u in run.detection_reports),
    ),
    # The shared item's memory of applied batches is full (MAX_APPLIED within its hour): a
    # batch it forgot, delivered again, would count twice in the cross-user correlations.
    ("SharedBatchesForgotten", "Count", _total("shared_forgotten")),
    ("Auth0ApiCalls", "Count", lambda run: run.calls.api_calls),
    ("Auth0RateLimited", "Count", lambda run: run.calls.rate_limited),
    ("Auth0Retries", "Count", lambda run: run.calls.retries),
    ("Auth0PacingWaitSeconds", "Seconds", lambda run: run.calls.pacing_wait_s),
    ("OversizedAnswers", "Count", lambda run: run.calls.oversized_answers),
    ("OddTokenLifetimes", "Count", lambda run: run.calls.odd_token_lifetimes),
    (
        "MaxLatenessSeconds",
        "Seconds",
        lambda run: max((u.max_lateness_ms for u in run.users), default=0) / 1000,
    ),
    ("LagSeconds", "Seconds", lambda run: run.lag_s),
    ("StreamMode", "Count", lambda run: float(run.read is not None and run.read.mode == "stream")),
    ("StreamEventsRead", "Count", lambda run: run.read.stream_events if run.read else 0),
    # With the real-time path on: what it delivered first, what only the reads delivered that it
    # could have (what the stream dropped, or had not pushed yet; not history), and whether it
    # delivered nothing at all. Their ratio is RealtimeLeftToReadsAlarm's share.
    ("RealtimeConfirmedEvents", "Count", lambda run: _if_realtime(run, _total("confirmed"))),
    ("ReconciledEvents", "Count", lambda run: _if_realtime(run, _total("reconciled"))),
    ("RealtimeStalled", "Count", lambda run: _if_realtime(run, lambda r: r.realtime_stalled)),
    # With RULE_PACKS_TABLE: installed packs that did not run (each named in the report).
    (
        "RulePackErrors",
        "Count",
        lambda run: len(run.rule_packs.problems) if run.rule_packs else None,
    ),
)


def _newer_release_items(run: RunReport) -> float:
    """Items a newer release wrote that this one cannot read: users' checkpoints (those users
    failed) and the tenant item (the run read per user)."""
    tenant = run.read is not None and run.read.tenant_item_newer
    return float(sum(u.newer_state for u in run.users) + tenant)


def _failed_with(run: RunReport, kind: type[ForwarderError]) -> float:
    """Users that failed with this error."""
    return float(sum(isinstance(u.failure, kind) for u in run.users))


def _if_realtime(run: RunReport, value_of: Callable[[RunReport], float]) -> float | None:
    return float(value_of(run)) if run.realtime else None


def tenant_outage(users: list[UserReport]) -> TenantFailure | None:
    """Auth0 unavailable for the whole tenant: nobody was read, and every user that failed
    failed so (5xx, 429, the network, after every retry). One user's endpoint failing while
    another's answers is that user's."""
    reports = RunReport(users)
    failures = [u.failure for u in reports.failed]
    if reports.processed or not failures or any(u.blocked for u in users):
        return None
    if not all(isinstance(f, Auth0UnavailableError) for f in failures):
        return None
    assert failures[0] is not None
    return TenantFailure.of(failures[0], "every user's read")


def findings_by_rule(run: RunReport) -> Counter[str]:
    """`Findings`, published per rule (dimension `rule`) beside the metrics above."""
    total: Counter[str] = Counter()
    for user in run.detection_reports:
        total.update(user.findings)
    return total


def merged(first: UserReport | None, second: UserReport) -> UserReport:
    """Two reports of the tenant-wide rules (windows of one run) as one."""
    if first is None:
        return second
    first.findings.update(second.findings)
    first.detection_skipped.update(second.detection_skipped)
    first.skipped_records += second.skipped_records
    for name, count in second.delivered.items():
        first.delivered[name] = first.delivered.get(name, 0) + count
    first.detection_state_unavailable = (
        first.detection_state_unavailable or second.detection_state_unavailable
    )
    return first


def metric_values(run: RunReport) -> Iterator[tuple[str, str, float]]:
    """Every metric the run emits, as (name, unit, value)."""
    for name, unit, value_of in METRICS:
        value = value_of(run)
        if value is not None:
            yield name, unit, float(value)
