"""Detections: Sigma rules say which few of the watched users' events deserve a person's
attention. This module is the engine's glue: where the rules come from, where each one's state
lives, and the findings as records. The engine itself is sigma_plan.py (matching) and
sigma_step.py (correlations); docs/detections.md has the rules, docs/sigma.md the engine.

- **The plan** comes from one provider (`PlanSource`: a callable returning the active `Plan`
  within the run's deadline: a provider that reads a store must not wait past it),
  passed in by the composition root (runtime.build_runtime). The default is the pack the
  function ships with: `rules/default/*.yml`, compiled into `default_plan.json` (the function
  cannot import pySigma; tests/unit/test_default_pack.py keeps the two equal), tuned by the
  DETECTION_* settings (`default_plan`).
- **Where state lives** (`RuleSet` splits a plan): a rule's own findings and the correlations
  whose groups stay within one user (a group-by field is `user_id`) keep their state in that
  user's checkpoint (`DetectionState`), moved by the conditional write that moves the cursor
  (planner.py): a redelivery recomputes from the state before and repeats the same ids.
  Correlations whose groups span users (an IP) keep theirs in one item of the checkpoint table
  with a write-ahead outbox of its own (shared_correlations.py).
- **Tenant-wide** (DETECTIONS_TENANT_WIDE, off by default): where the function reads the whole
  tenant log anyway (the tenant stream, the real-time bus), rules whose events are of users nobody
  watches (`PlanRule.sees_unwatched_users`: Management API calls, signups) also run on the events
  of users not watched; their findings are written, the events are not. Their state is the
  shared item's.
- **What a rule did not see** (`Skipped`): an event a correlation could not count (too late,
  no group-by value) and a value a regex saw only part of are records in the destinations and
  metrics, not only log lines.

Pure, but for `default_plan` reading the packaged plan once. The engine's modules are imported
only when a plan is loaded or run: the handlers' cold import does not pay for them otherwise.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from .codec import Invalid, Key, Kind, Record, Schema
from .events import LogEvent, iso_ms
from .exceptions import CheckpointStateError

if TYPE_CHECKING:
    from .retry import Deadline
    from .sigma_plan import Plan, PlanCorrelation, PlanRule
    from .sigma_step import SigmaFinding, StepResult

Severity = Literal["info", "low", "medium", "high", "critical"]
PlanSource = Callable[["Deadline"], "Plan"]

FORMAT_VERSION: Final = 1
DEFAULT_PLAN_PATH: Final = Path(__file__).with_name("default_plan.json")
# The default pack's detections: one file of rules/default each, and the `rule` of their
# findings (DETECTIONS chooses among them).
RULES: Final = (
    "failed_login_burst",
    "credential_stuffing",
    "brute_force_protection",
    "mfa_weakened",
    "credential_change",
    "breached_password",
    "new_source",
    "admin_action",
    "mfa_removed_then_recovery_changed",
    "success_after_burst",
)
SEVERITY_OF_LEVEL: Final[Mapping[str, Severity]] = {
    "informational": "info",
    "low": "low",
    "medium": "medium",
    "high": "high",
    "critical": "critical",
}
MAX_THRESHOLD: Final = 50  # a correlation's group keeps 50 events (sigma_plan.MAX_GROUP_EVENTS)
MAX_TEXT_CHARS: Final = 200
MAX_RECORD_LOG_IDS: Final = 50  # log_ids a skipped-events record names (it counts them all)
MAX_STORED_ID: Final = 128  # a longer log_id is kept (and named) as a digest; real ones have 56
TOO_LATE, NO_GROUP_KEY, REGEX_INPUT_CUT = "too_late", "no_group_key", "regex_input_cut"
SKIPPED_REASONS: Final = (TOO_LATE, NO_GROUP_KEY, REGEX_INPUT_CUT)
_MINUTE, _DAY = 60_000, 86_400_000


@dataclass(frozen=True, slots=True)
class DetectionSettings:
    """Which of the default pack's detections run, their DETECTION_* tuning, and whether rules
    of unwatched users run tenant-wide (config.detection_settings reads them)."""

    rules: frozenset[str] = frozenset(RULES)
    failed_login_threshold: int = 10
    failed_login_window_ms: int = 60 * _MINUTE
    new_source_window_ms: int = 30 * _DAY
    dedup_ms: int = 60 * _MINUTE
    tenant_wide: bool = False


@dataclass(frozen=True, slots=True)
class Finding:
    """Something worth a look, with the events that triggered it."""

    finding_id: str
    rule: str  # the detection a person reads: its rule file's name (or the rule's id)
    title: str
    severity: Severity
    user_id: str  # the watched user whose events it names ("" for a tenant-wide finding)
    log_ids: tuple[str, ...]
    first_ms: int
    last_ms: int
    details: Mapping[str, Any] = field(hash=False)
    rule_id: str = ""  # the Sigma rule's (or correlation's) id
    level: str | None = None  # Sigma's level (informational ... critical)
    tags: tuple[str, ...] = ()  # Sigma's tags: attack.t1110 ...


@dataclass(frozen=True, slots=True)
class Skipped:
    """Events a rule did not see whole: a correlation could not count them (`too_late`,
    `no_group_key`), or its regex saw only part of a value (`regex_input_cut`)."""

    rule_id: str
    rule: str
    title: str
    reason: str
    log_ids: tuple[str, ...]  # at most MAX_RECORD_LOG_IDS
    count: int
    first_ms: int
    last_ms: int


# -- the state kept in a user's checkpoint ---------------------------------------------------


class JsonObject(Kind):
    """A JSON object kept as it is: the engine's own state (sigma_step.CorrelationState), which
    reads what it can and starts empty where it cannot."""

    __slots__ = ()

    def dump(self, value: Any) -> Any:
        return dict(value)

    def load(self, stored: Any) -> Any:
        if not isinstance(stored, Mapping):
            raise Invalid(f"must be an object, not {type(stored).__name__}")
        return dict(stored)


@dataclass(frozen=True, slots=True)
class DetectionState:
    """What the rules remember about one user between runs: the state of the correlations whose
    groups stay within the user (sigma_step.CorrelationState, as stored)."""

    correlations: Mapping[str, Any] = field(default_factory=dict)

    def to_state(self) -> dict[str, Any]:
        return DETECTION_STATE.encode(self)

    @classmethod
    def from_state(cls, state: object) -> DetectionState:
        """A stored state; the checkpoint holding it checked it as it was read
        (codec.versioned). Anything else that cannot be read starts empty: the rules are
        advisory, so it costs findings, never an event."""
        try:
            return DETECTION_STATE.decode(state, item="detection rules' state")
        except CheckpointStateError:
            return cls()


def _state_from_v1(state: dict[str, Any]) -> dict[str, Any]:
    """v1 was the state of the seven hand-written rules (failures of a burst, known countries,
    suppressed repeats). The Sigma rules count differently, so each user's rules start afresh:
    a burst under way when the release changes is counted from its next failure on, and the
    countries seen before are not remembered (docs/detections.md, "Upgrading")."""
    return {key: value for key, value in state.items() if key in ("v", "written_v")}


DETECTION_STATE: Final[Schema[DetectionState]] = Schema(
    "detection rules' state",
    Record(DetectionState, Key("c", "correlations", JsonObject())),
    version=2,
    # A release that reads v1 reads this as an empty v1 state (its rules start afresh, and its
    # write drops `c`): that costs findings, never an event, so older releases may read it.
    readable_from=1,
    upgrades={1: _state_from_v1},
)


# -- the plan and its parts ------------------------------------------------------------------


@functools.cache
def _default_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DEFAULT_PLAN_PATH.read_text(encoding="utf-8"))
    return document


@functools.lru_cache(maxsize=8)
def default_plan(settings: DetectionSettings) -> Plan:
    """The pack the function ships with, tuned by `settings` (see `tuned`)."""
    from .sigma_plan import load_plan

    return load_plan(tuned(_default_document(), settings))


def tuned(document: Mapping[str, Any], settings: DetectionSettings) -> dict[str, Any]:
    """The default pack's plan document with the detections `settings.rules` names only, and
    their DETECTION_* tuning: `failed_login_burst`'s count and window, `new_source`'s window, and
    the window of the correlations that report a rule once per window (an `event_count` of at
    least one, the pack's way to fold repeats): `dedup_ms`, or, at 0, none of them, their rules
    reporting every event. A chosen detection keeps what it counts from another file (the
    chain `success_after_burst` counts failed_login_burst.yml's `failed_login`)."""
    chosen = settings.rules
    correlations = []
    folded: set[str] = set()
    for item in document.get("correlations", []):
        if family(item.get("source", "")) not in chosen:
            continue
        correlation = dict(item)
        name = correlation.get("name")
        if name in ("failed_login_burst", "burst_before_success"):
            correlation["condition"] = {"gte": settings.failed_login_threshold}
            correlation["timespan_ms"] = settings.failed_login_window_ms
        elif name == "success_after_burst":
            correlation["timespan_ms"] = settings.failed_login_window_ms
        elif name == "new_source":
            correlation["timespan_ms"] = settings.new_source_window_ms
        elif _folds_repeats(correlation):
            if not settings.dedup_ms:
                folded.update(correlation["rules"])
                continue
            correlation["timespan_ms"] = settings.dedup_ms
        correlations.append(correlation)
    counted = {rule_id for c in correlations for rule_id in c["rules"]}
    rules = [
        dict(r)
        for r in document["rules"]
        if family(r.get("source", "")) in chosen or r["id"] in counted
    ]
    for rule in rules:
        if family(rule.get("source", "")) not in chosen:
            rule["standalone"] = False  # only counted here: its own detection is off
        elif rule["id"] in folded:
            rule["standalone"] = True
    return {**document, "rules": rules, "correlations": correlations}


def _folds_repeats(correlation: Mapping[str, Any]) -> bool:
    return correlation.get("type") == "event_count" and correlation.get("condition") == {"gte": 1}


def family(source: str) -> str:
    """The detection a rule belongs to: the name of its file (`credential_change.yml`)."""
    return Path(source).stem if source else ""


@dataclass(frozen=True)
class RuleSet:
    """One plan, cut by where each part keeps its state."""

    plan: Plan
    per_user: Plan  # rules' own findings; correlations grouped within one user
    shared: Plan | None  # correlations of watched users' events kept in the shared item
    tenant: Plan | None  # tenant-wide: rules and correlations run on unwatched users' events
    shared_ids: frozenset[str]  # correlations whose state is the shared item's

    @classmethod
    def of(cls, plan: Plan, *, tenant_wide: bool = False) -> RuleSet:
        unwatched = {rule.id for rule in plan.rules if rule.sees_unwatched_users}
        # A chain's outer counts its inner correlation as a rule: it sees unwatched users'
        # events when everything its inner counts does (the plan holds inners before outers).
        for correlation in plan.correlations:
            if all(rule_id in unwatched for rule_id in correlation.rule_ids):
                unwatched.add(correlation.id)

        def tenant_scope(correlation: PlanCorrelation) -> bool:
            return correlation.id in unwatched

        shared_ids = {
            c.id for c in plan.correlations if not c.per_user or (tenant_wide and tenant_scope(c))
        }
        # A chain stays in one part: one state, one finding per window (docs/sigma.md).
        by_id = {c.id: c for c in plan.correlations}
        grown = True
        while grown:
            grown = False
            for correlation in plan.correlations:
                inners = {i for i in correlation.rule_ids if i in by_id}
                chain = inners | {correlation.id}
                if chain & shared_ids and not chain <= shared_ids:
                    shared_ids |= chain
                    grown = True
        shared = [c for c in plan.correlations if c.id in shared_ids]
        ids = frozenset(shared_ids)
        everyone = [rule.id for rule in plan.rules]
        per_user = plan.part(
            [c for c in plan.correlations if c.id not in ids], findings_of=everyone
        )
        tenant = None
        if tenant_wide:
            tenant = plan.part([c for c in shared if tenant_scope(c)], findings_of=unwatched)
        return cls(
            plan,
            per_user,
            plan.part(shared, findings_of=()) if shared else None,
            tenant if tenant is not None and tenant.rules else None,
            ids,
        )


class Detections:
    """What a deployment's detection path holds: where the plan comes from (`plans`), and the
    settings. `rules()` is the active plan, cut into its parts once per plan the source returns
    (a source caches what it loads: rule_packs.py's keeps it a few minutes)."""

    def __init__(self, settings: DetectionSettings, plans: PlanSource | None = None) -> None:
        self.settings = settings
        self.plans: PlanSource = plans or (lambda _deadline: default_plan(settings))
        self._last: tuple[Plan, RuleSet] | None = None

    def rules(self, deadline: Deadline) -> RuleSet:
        plan = self.plans(deadline)
        last = self._last
        if last is not None and last[0] is plan:
            return last[1]
        rules = RuleSet.of(plan, tenant_wide=self.settings.tenant_wide)
        self._last = (plan, rules)
        return rules


# -- running the rules -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Detected:
    """What the rules made of one user's new events."""

    findings: tuple[Finding, ...]
    state: DetectionState
    skipped: tuple[Skipped, ...]
    shared: tuple[LogEvent, ...]  # the events the shared item's correlations take


def detect(
    rules: RuleSet, user_id: str, events: Sequence[LogEvent], state: DetectionState
) -> Detected:
    """The findings of the user's rules on `events` (one user's new events) and the state after
    them, what the rules did not see whole, and the events left to the shared item. Pure: the same
    arguments always give the same findings, with the same ids."""
    from .sigma_step import CorrelationState, step

    events = stored_ids(events)
    before = CorrelationState.from_state(state.correlations)
    result = step(rules.per_user, before, events)
    after = _kept(result, rules.per_user)
    shared = rules.shared
    handed = tuple(e for e in events if shared.matching(e.raw)) if shared is not None else ()
    return Detected(
        findings=tuple(sigma_finding(rules.plan, f, user_id) for f in result.findings),
        state=DetectionState(after.to_state()),
        skipped=skipped_of(rules.plan, result, events),
        shared=handed,
    )


def stored_ids(events: Sequence[LogEvent]) -> list[LogEvent]:
    """The events, those whose log_id is too long to keep in the rules' state under a digest of
    it (`sha256:…`, which their findings then name): the state stays bounded whatever Auth0
    sends."""
    return [
        event
        if len(event.log_id) <= MAX_STORED_ID
        else LogEvent(event.date_ms, "sha256:" + _digest(event.log_id), event.raw)
        for event in events
    ]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _kept(result: StepResult, plan: Plan) -> Any:
    """The step's state without the groups of correlations the plan no longer has (a pack
    removed): they would never expire."""
    from .sigma_step import CorrelationState

    state = result.state
    ids = {c.id for c in plan.correlations}
    return CorrelationState(
        state.watermark_ms, {cid: g for cid, g in state.groups.items() if cid in ids}
    )


def sigma_finding(plan: Plan, found: SigmaFinding, user_id: str) -> Finding:
    """A finding of the engine as this forwarder's record of it."""
    source = _owner(plan, found.rule_id)
    details: dict[str, Any] = {"kind": found.kind}
    if found.group:
        details["group"] = dict(found.group)
    if found.metric is not None:
        details["count"] = found.metric
    return Finding(
        finding_id=found.finding_id,
        rule=family(source.source) or found.rule_id,
        title=found.title[:MAX_TEXT_CHARS],
        severity=SEVERITY_OF_LEVEL.get(found.level or "", "medium"),
        user_id=user_id,
        log_ids=found.log_ids,
        first_ms=found.first_ms,
        last_ms=found.last_ms,
        details=details,
        rule_id=found.rule_id,
        level=found.level,
        tags=found.tags,
    )


def skipped_of(plan: Plan, result: StepResult, events: Iterable[LogEvent]) -> tuple[Skipped, ...]:
    """What the rules did not see whole among `events`, one record per rule and reason."""
    seen: dict[tuple[str, str], list[tuple[int, str]]] = {}
    for skip in result.skipped:
        seen.setdefault((skip.correlation_id, skip.reason), []).append((skip.date_ms, skip.log_id))
    for event in events:
        for rule_id in plan.regex_inputs_cut(event.raw):
            seen.setdefault((rule_id, REGEX_INPUT_CUT), []).append((event.date_ms, event.log_id))
    records = []
    for (rule_id, reason), dated in seen.items():
        owner = _owner(plan, rule_id)
        dated = sorted(set(dated))
        records.append(
            Skipped(
                rule_id=rule_id,
                rule=family(owner.source) or rule_id,
                title=owner.title[:MAX_TEXT_CHARS],
                reason=reason,
                log_ids=tuple(log_id for _, log_id in dated[:MAX_RECORD_LOG_IDS]),
                count=len(dated),
                first_ms=dated[0][0],
                last_ms=dated[-1][0],
            )
        )
    return tuple(records)


def _owner(plan: Plan, rule_id: str) -> PlanRule | PlanCorrelation:
    for correlation in plan.correlations:
        if correlation.id == rule_id:
            return correlation
    return plan.rule(rule_id)


# -- records ---------------------------------------------------------------------------------


def finding_id(rule: str, kind: str, user_id: str, log_ids: Iterable[str]) -> str:
    """Deterministic: the same rule, user and triggering events always give the same id (the
    forwarder's own findings; the engine's are sigma_step.finding_id)."""
    text = "\x1f".join((rule, kind, user_id, "\x1e".join(log_ids)))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def finding_record(finding: Finding, *, tenant: str, detected_at_ms: int) -> dict[str, Any]:
    """The finding as one output record: every field under `_forwarder`, like gap records."""
    return {
        "_forwarder": {
            "format": FORMAT_VERSION,
            "record_type": "finding",
            "tenant": tenant,
            "watched_user_id": finding.user_id or None,
            "finding_id": finding.finding_id,
            "rule": finding.rule,
            "rule_id": finding.rule_id or None,
            "title": finding.title,
            "severity": finding.severity,
            "level": finding.level,
            "tags": list(finding.tags),
            "log_ids": list(finding.log_ids),
            "first_seen": iso_ms(finding.first_ms),
            "last_seen": iso_ms(finding.last_ms),
            "details": dict(finding.details),
            "detected_at": iso_ms(detected_at_ms),
        }
    }


def skipped_record(
    skipped: Skipped, *, tenant: str, watched_user_id: str, detected_at_ms: int
) -> dict[str, Any]:
    """Events a rule did not see whole, as one output record (`detection_skipped`)."""
    return {
        "_forwarder": {
            "format": FORMAT_VERSION,
            "record_type": "detection_skipped",
            "tenant": tenant,
            "watched_user_id": watched_user_id or None,
            "rule": skipped.rule,
            "rule_id": skipped.rule_id,
            "title": skipped.title,
            "reason": skipped.reason,
            "events": skipped.count,
            "log_ids": list(skipped.log_ids),
            "first_seen": iso_ms(skipped.first_ms),
            "last_seen": iso_ms(skipped.last_ms),
            "detected_at": iso_ms(detected_at_ms),
        }
    }
