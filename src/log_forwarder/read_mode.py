"""Per user or the tenant stream: which way a run reads Auth0, and the tenant item that says so.

Reading per user costs at least one Management API call per watched user and run (about
⌈new events / 100⌉ each). Reading the tenant's log by checkpoint costs ⌈tenant events / 100⌉
calls whatever the number of watched users. Which is cheaper depends on the tenant, so with
READ_MODE=auto every run estimates both from what the last runs saw and takes the cheaper one,
switching only when the other is clearly cheaper (by SWITCH_MARGIN), and never while some
user's events are pending (an interrupted batch is finished in the mode that started it).

Pure, like the planner: the tenant state, the estimates and the decision, and the tenant item
that holds the state (TenantRecord, written through the checkpoint store's port). stream_run.py
reads the stream and forwarder.py measures; both hand their figures here.

The tenant item lives in the checkpoint table under TENANT_KEY. Auth0 user ids are
`<provider>|<id>`, so a key starting with "#" is never one; it has no `watch` attribute, so the
watch-list scan never returns it (the scan also skips every key starting with "#").
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from .codec import FLOAT, INT, STR, Key, Record, Schema, checked, items, one_of, optional, row
from .cursor import StreamSeat
from .events import iso_ms
from .exceptions import CheckpointStateError, NewerStateError
from .retry import Deadline
from .roster import digest, unpack
from .store import (
    OWN_KEY_PREFIX,
    CheckpointStore,
    StoredCheckpoint,
    SummaryValue,
    VersionedItem,
)

logger = logging.getLogger(__name__)

TENANT_KEY = OWN_KEY_PREFIX + "tenant"

ReadMode = Literal["auto", "per-user", "stream"]
AUTO: ReadMode = "auto"
PER_USER: ReadMode = "per-user"
STREAM: ReadMode = "stream"
READ_MODES: tuple[ReadMode, ...] = (AUTO, PER_USER, STREAM)

TAKE = 100  # events per checkpoint read, Auth0's maximum
# Switch only when the other mode is estimated at most this share of the current one's cost:
# each switch costs something (joining users, ending an era), estimates are noisy.
SWITCH_MARGIN = 0.8
# Weight of the newest run in every estimate (exponentially weighted mean).
EWMA_WEIGHT = 0.5
DEFAULT_PERIOD_S = 300.0
# In per-user mode, how often one checkpoint read samples the tenant's event rate.
PROBE_EVERY_MS = 30 * 60_000
# How long a refused stream (no read:logs) is not tried again.
RECHECK_REFUSED_MS = 60 * 60_000
# Complete stream reads remembered, to know where the floor of a user who joined stops.
COMPLETE_READS_KEPT = 24


@dataclass(frozen=True, slots=True)
class Costs:
    """Management API calls a run is estimated to need in each mode (None: not known)."""

    per_user: float
    stream: float | None


@dataclass(frozen=True, slots=True)
class Decision:
    """The read mode a run chose, why, and the call estimates it chose from."""

    mode: ReadMode  # per-user or stream, never auto
    reason: str
    costs: Costs


@dataclass(frozen=True, slots=True)
class TenantState:
    """What the checkpoint table remembers about the tenant (not about any one user)."""

    mode: ReadMode = PER_USER
    reason: str = ""
    # Stream era: a new one at each switch to the stream; user seats of another era are void.
    epoch: int = 0
    # The stream checkpoint: every joined user holds every event up to this log_id (None: the
    # era has not found its start yet).
    position: str | None = None
    # Every event dated up to here was read by a complete stream read (its start less the
    # overlap window): where a lapse of the stream starts.
    verified_ms: int | None = None
    # (start, end position) of this era's complete reads, oldest first: the floor of a user who
    # joined at t holds up to the end of the first one started at or after t.
    complete_reads: tuple[tuple[int, str], ...] = ()
    # roster.pack of the users the stream last moved for, written with every move (roster.py);
    # None: nobody's seat in this era can be trusted yet.
    roster: str | None = None
    # Events the stream returned since the last complete read (for the tenant's event rate).
    read_since_complete: int = 0
    rate_eps: float | None = None  # tenant events per second
    per_user_calls: float | None = None  # per-user calls a run needs
    period_s: float | None = None  # time between runs
    last_run_ms: int | None = None
    # The per-user mode's sample of the tenant's rate: read on from here, dated from then.
    probe_position: str | None = None
    probe_since_ms: int | None = None
    probed_at_ms: int | None = None
    # Why the stream is unavailable (no read:logs), and since when.
    refused: str | None = None
    refused_at_ms: int | None = None
    # The tenant failing (report.TenantFailure: its cause and fix): since the first run of the
    # outage, as of the last; cleared by a run that reads a user.
    failure: str | None = None
    failure_fix: str | None = None
    failing_since_ms: int | None = None
    failed_at_ms: int | None = None

    # -- the decision --------------------------------------------------------------------------

    def costs(self, users: int) -> Costs:
        per_user = self.per_user_calls if self.per_user_calls is not None else float(users)
        if self.rate_eps is None:
            return Costs(per_user, None)
        period = self.period_s or DEFAULT_PERIOD_S
        # A checkpoint read stops at the first page shorter than TAKE: n events cost n//100 + 1.
        return Costs(per_user, float(math.floor(self.rate_eps * period / TAKE) + 1))

    def stream_refused(self, now_ms: int) -> bool:
        return self.refused is not None and now_ms < (self.refused_at_ms or 0) + RECHECK_REFUSED_MS

    def probe_due(self, now_ms: int) -> bool:
        return self.probed_at_ms is None or now_ms >= self.probed_at_ms + PROBE_EVERY_MS

    # -- the stream ----------------------------------------------------------------------------

    def new_era(self, now_ms: int) -> TenantState:
        """Switching to the stream: a new era, whose start is yet to be found. Its number is
        never one an earlier era had, even if the tenant item was deleted or unreadable (then
        the count starts over at 0, but the clock does not): a seat of that era stays void."""
        return replace(
            self,
            mode=STREAM,
            epoch=max(self.epoch + 1, now_ms),
            position=None,
            verified_ms=None,
            complete_reads=(),
            roster=None,
            read_since_complete=0,
        )

    def members(self) -> frozenset[bytes] | None:
        """The digests of the users the stream last moved for (None: none known)."""
        return None if self.roster is None else unpack(self.roster)

    def moved_for(self, user_id: str) -> bool:
        """Whether the user's seat in this era can be trusted: the stream moved with it."""
        members = self.members()
        return members is not None and digest(user_id) in members

    def floor_until(self, seat: StreamSeat, default: str) -> str:
        """Up to which log_id the floor still drops events for this seat (see StreamSeat):
        the end of the first complete read started after it joined; `default` (the end of the
        window at hand) while there has been none."""
        for started_ms, end in self.complete_reads:
            if started_ms >= seat.joined_ms:
                return end
        return default

    def after_complete_read(self, started_ms: int, *, overlap_ms: int) -> TenantState:
        """The stream reached the end of the log in a read started at `started_ms`."""
        assert self.position is not None
        rate = self.rate_eps
        if self.complete_reads:
            elapsed_s = (started_ms - self.complete_reads[-1][0]) / 1000
            if elapsed_s > 0:
                rate = _mean(rate, self.read_since_complete / elapsed_s)
        reads = (*self.complete_reads, (started_ms, self.position))[-COMPLETE_READS_KEPT:]
        return replace(
            self,
            verified_ms=started_ms - overlap_ms,
            complete_reads=reads,
            rate_eps=rate,
            read_since_complete=0,
        )

    # -- the per-user mode's sample of the tenant's rate ----------------------------------------

    def sampled(self, *, events: int, span_s: float, now_ms: int) -> TenantState:
        return replace(
            self, rate_eps=_mean(self.rate_eps, events / max(span_s, 1.0)), probed_at_ms=now_ms
        )

    # -- the tenant failing ----------------------------------------------------------------------

    def failing(self, cause: str, fix: str, *, now_ms: int) -> TenantState:
        since = self.failing_since_ms if self.failure is not None else None
        return replace(
            self,
            failure=cause,
            failure_fix=fix,
            failing_since_ms=since if since is not None else now_ms,
            failed_at_ms=now_ms,
        )

    def recovered(self) -> TenantState:
        return replace(
            self, failure=None, failure_fix=None, failing_since_ms=None, failed_at_ms=None
        )

    # -- after every run -----------------------------------------------------------------------

    def after_run(self, decision: Decision, *, per_user_calls: float, now_ms: int) -> TenantState:
        period = self.period_s
        if self.last_run_ms is not None and now_ms > self.last_run_ms:
            period = _mean(period, (now_ms - self.last_run_ms) / 1000)
        return replace(
            self,
            # Only a written era start (new_era) puts the item in stream mode: a stream run
            # whose start failed must not revive the last era's checkpoint and seats.
            mode=PER_USER if decision.mode == PER_USER else self.mode,
            reason=decision.reason,
            per_user_calls=_mean(self.per_user_calls, per_user_calls),
            period_s=period,
            last_run_ms=now_ms,
        )

    # -- storage ---------------------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return TENANT_STATE.encode(self)

    @classmethod
    def from_state(cls, state: Mapping[str, Any] | None) -> TenantState:
        """The stored tenant item (None: none yet), upgraded from the version that wrote it
        (codec.py); NewerStateError for a newer release's that this one cannot read."""
        return cls() if state is None else TENANT_STATE.decode(state, item="the tenant item")

    def summary(self, users: int) -> dict[str, str | int | float | bool | None]:
        """Readable attributes beside the state, for operators and the status listing."""
        costs = self.costs(users)
        return {
            "item_type": "tenant",
            "read_mode": self.mode,
            "read_mode_reason": self.reason,
            "stream_unavailable": self.refused,
            "stream_position": self.position,
            "stream_epoch": self.epoch,
            "stream_verified": iso_ms(self.verified_ms),
            "stream_members": None if self.roster is None else len(unpack(self.roster)),
            "tenant_events_per_second": None if self.rate_eps is None else round(self.rate_eps, 4),
            "calls_per_run_per_user_mode": round(costs.per_user, 1),
            "calls_per_run_stream_mode": None if costs.stream is None else round(costs.stream, 1),
            "last_run": iso_ms(self.last_run_ms),
            # When the last complete read of the stream started: it read every member.
            "stream_read_at": iso_ms(self.complete_reads[-1][0]) if self.complete_reads else None,
            "tenant_error": self.failure,
            "tenant_error_fix": self.failure_fix,
            "tenant_failing_since": iso_ms(self.failing_since_ms),
            "tenant_error_at": iso_ms(self.failed_at_ms),
        }


class TenantRecord(VersionedItem[TenantState]):
    """The tenant item as last read or written."""

    def __init__(
        self, store: CheckpointStore, stored: StoredCheckpoint | None, deadline: Deadline
    ) -> None:
        refused = None
        try:
            state = TenantState.from_state(stored.readable_state() if stored else None)
        except NewerStateError as error:
            # Not this release's to write: the run reads per user, the item stays as it is.
            logger.error("Tenant item not read; reading per user", extra={"error": str(error)})
            state, refused = TenantState(), error
        except CheckpointStateError as error:
            # Starting over costs a new stream era (every user read per user once), not events.
            logger.error("Tenant item unreadable; starting over", extra={"error": str(error)})
            state = TenantState()
        version = stored.version if stored else None
        super().__init__(store, TENANT_KEY, state, version, deadline, refused=refused)
        self.users = 0  # watched users, for the item's summary

    @property
    def state(self) -> TenantState:
        return self.value

    @state.setter
    def state(self, state: TenantState) -> None:
        self.value = state

    def summary_of(self, value: TenantState) -> Mapping[str, SummaryValue]:
        return value.summary(self.users)


def decide(
    setting: ReadMode, state: TenantState, *, users: int, pending: int, now_ms: int
) -> Decision:
    """The mode of this run. `pending`: users with events pending from an interrupted run."""
    costs = state.costs(users)
    if setting != PER_USER and state.stream_refused(now_ms):
        why = f"the tenant stream is unavailable ({state.refused}); reading per user"
        return Decision(PER_USER, why, costs)
    if setting != AUTO:
        wanted, why = setting, f"READ_MODE={setting}"
    else:
        wanted, why = _cheaper(state.mode, costs)
    if wanted != state.mode and pending:
        # An interrupted batch is finished in the mode that read it: a per-user read could not
        # find a late stream event below its floor, nor the stream one a per-user read saw.
        return Decision(
            state.mode,
            f"{why}; switch postponed: {pending} users have pending events from an interrupted run",
            costs,
        )
    return Decision(wanted, why, costs)


def _cheaper(current: ReadMode, costs: Costs) -> tuple[ReadMode, str]:
    if costs.stream is None:
        return current, "auto: the tenant's event rate is not known yet"
    why = (
        f"auto: about {costs.per_user:.0f} calls a run per user, {costs.stream:.0f} "
        "reading the tenant stream"
    )
    if current == STREAM and costs.per_user < costs.stream * SWITCH_MARGIN:
        return PER_USER, why
    if current != STREAM and costs.stream < costs.per_user * SWITCH_MARGIN:
        return STREAM, why
    return current, why


def per_user_calls(forwarded: Mapping[str, int], users: int) -> float:
    """What reading per user would have cost for what this run forwarded: one call per user,
    one more per further 100 new events."""
    extra = sum(max(0, math.ceil(n / TAKE) - 1) for n in forwarded.values())
    return float(users + extra)


def _mean(old: float | None, new: float) -> float:
    return new if old is None else (1 - EWMA_WEIGHT) * old + EWMA_WEIGHT * new


OPTIONAL_INT = optional(INT)
OPTIONAL_FLOAT = optional(FLOAT)
OPTIONAL_STR = optional(STR)

TENANT_STATE: Schema[TenantState] = Schema(
    "tenant item state",
    Record(
        TenantState,
        Key("mode", "mode", one_of(PER_USER, STREAM)),
        Key("reason", "reason", STR),
        Key("epoch", "epoch", INT),
        Key("position", "position", OPTIONAL_STR),
        Key("verified", "verified_ms", OPTIONAL_INT),
        Key("complete_reads", "complete_reads", items(row(INT, STR))),
        # Unreadable, the whole item is: the stream starts over (a new era).
        Key("roster", "roster", optional(checked(STR, unpack))),
        Key("read_since_complete", "read_since_complete", INT),
        Key("rate_eps", "rate_eps", OPTIONAL_FLOAT),
        Key("per_user_calls", "per_user_calls", OPTIONAL_FLOAT),
        Key("period_s", "period_s", OPTIONAL_FLOAT),
        Key("last_run", "last_run_ms", OPTIONAL_INT),
        Key("probe_position", "probe_position", OPTIONAL_STR),
        Key("probe_since", "probe_since_ms", OPTIONAL_INT),
        Key("probed_at", "probed_at_ms", OPTIONAL_INT),
        Key("refused", "refused", OPTIONAL_STR),
        Key("refused_at", "refused_at_ms", OPTIONAL_INT),
        Key("failure", "failure", OPTIONAL_STR),
        Key("failure_fix", "failure_fix", OPTIONAL_STR),
        Key("failing_since", "failing_since_ms", OPTIONAL_INT),
        Key("failed_at", "failed_at_ms", OPTIONAL_INT),
    ),
    version=1,
    readable_from=1,
    upgrades={},
    hint=f"delete the item {TENANT_KEY!r} to start over (every user is then read per user once)",
)
