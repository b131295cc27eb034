"""The pure step of the Sigma engine: (state, events) -> (state', findings). No clock, no I/O.

A detection rule gives one finding per matching event. A correlation (`event_count`,
`value_count`, `temporal`, `temporal_ordered`) keeps, per group-by key, the recent events of the
rules it names, and gives one finding per correlation window (docs/sigma.md, "Correlations"):

- **Sliding windows, as the Sigma correlation spec asks** ("the time frame should not be
  restricted to boundaries"; static boundaries "could cause false negatives"): at each event the
  condition is judged over the window that ends at that event, `[date - timespan, date]` (both
  ends included), the frame pySigma's SQLite backend uses (`RANGE BETWEEN timespan PRECEDING AND
  CURRENT ROW`).
- **One finding per window.** That backend reports every qualifying event; a burst of 10,000
  failures would be 10,000 alerts. Here the first qualifying event *triggers* a finding and opens
  its window `[trigger, trigger + timespan]`: qualifying events inside it are that finding's, and
  the first one after it triggers the next. A credential-stuffing burst gives one finding per
  timespan it lasts. Every event the backend would report lies in some finding's window, and every
  trigger is an event the backend reports (tests/property/test_sigma_correlation_properties.py).
- **Stable ids.** A finding's id is a digest of the correlation, the group key and the trigger's
  (date, log_id): the same events from the same state give the same ids, so replaying a batch after
  a crash repeats ids instead of inventing findings.
- **Bounded, expiring state.** An event older than the newest seen (the watermark) by more than
  the timespan is not counted (`too_late`); events leave the state 2 x timespan behind the
  watermark; a group keeps at most `max_group_events` events, a correlation `max_groups` groups,
  and the whole state `max_entries` events (the groups seen longest ago go first).

- **Chains.** A correlation that counts another one (an inner correlation, earlier in the plan)
  takes as its events every point at which the inner condition holds, one per group and
  millisecond, fed to it in the same millisecond and kept in the same state (docs/sigma.md,
  "Chains").

Events come in (date, log_id) order within a call; a log_id given twice counts once. Windows are
judged once every event of their last millisecond is in; events of one millisecond that arrive in
two calls are judged as they come (the second call judges that millisecond again). A finding's
trigger, and a chain's point, is the first event of its millisecond, so that second judgement
names the same one: the same finding id, and no second point.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from .events import LogEvent
from .sigma_plan import (
    MAX_GROUP_EVENTS,
    Plan,
    PlanCorrelation,
    PlanRule,
    fold_case,
    json_text,
    values_at,
)

STATE_VERSION: Final = 1
TOO_LATE: Final = "too_late"
NO_GROUP_KEY: Final = "no_group_key"
MAX_FINDING_LOG_IDS: Final = 50


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps on the correlation state (see docs/sigma.md for the bytes they cost)."""

    max_group_events: int = MAX_GROUP_EVENTS  # load_plan refuses a count past it
    max_groups: int = 64  # per correlation
    max_entries: int = 1_000  # over all correlations: about 80 KB of JSON at most


@dataclass(frozen=True, slots=True)
class SigmaFinding:
    """A rule or a correlation fired: what, on which events, with a deterministic id."""

    finding_id: str
    rule_id: str
    kind: str  # "rule", or the correlation's type
    title: str
    level: str | None
    tags: tuple[str, ...]
    log_ids: tuple[str, ...]
    first_ms: int
    last_ms: int
    group: Mapping[str, str] = field(default_factory=dict, hash=False)
    metric: int | None = None


@dataclass(frozen=True, slots=True)
class _Entry:
    """An event a correlation counts, as its window keeps it."""

    date_ms: int
    log_id: str
    slot: int  # which of the correlation's rules the event matched
    value: str | None  # value_count: the counted field's value, lowercased


@dataclass(frozen=True, slots=True)
class _Group:
    """A correlation group's events in its window, and when it last fired."""

    entries: tuple[_Entry, ...]
    fired_ms: int | None  # the latest finding's trigger: its window is [fired, fired + span]


@dataclass(frozen=True, slots=True)
class CorrelationState:
    """What correlations remember between calls: the watermark and each group's recent events."""

    watermark_ms: int | None = None
    groups: Mapping[str, Mapping[str, _Group]] = field(default_factory=dict)

    def to_state(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "wm": self.watermark_ms,
            "c": {
                cid: {
                    key: {
                        "e": [[e.date_ms, e.log_id, e.slot, e.value] for e in g.entries],
                        "f": g.fired_ms,
                    }
                    for key, g in groups.items()
                }
                for cid, groups in self.groups.items()
            },
        }

    @classmethod
    def from_state(cls, state: object) -> CorrelationState:
        """Read a stored state; what is missing or unreadable starts empty."""
        if not isinstance(state, Mapping) or state.get("v") != STATE_VERSION:
            return cls()
        groups: dict[str, dict[str, _Group]] = {}
        for cid, stored in _mapping(state.get("c")).items():
            for key, group in _mapping(stored).items():
                entries = tuple(_read_entries(_mapping(group).get("e")))
                fired = _int(_mapping(group).get("f"))
                groups.setdefault(str(cid), {})[str(key)] = _Group(entries, fired)
        return cls(_int(state.get("wm")), groups)


@dataclass(frozen=True, slots=True)
class Skipped:
    """An event a correlation did not count: `too_late` (older than the watermark less the
    timespan) or `no_group_key` (a group-by field missing, or holding a list)."""

    correlation_id: str
    reason: str
    log_id: str
    date_ms: int


@dataclass(frozen=True, slots=True)
class StepResult:
    """What one step of the rules over some events found, their new state, and what they skipped."""

    findings: list[SigmaFinding]
    state: CorrelationState
    skipped: tuple[Skipped, ...] = ()

    @property
    def too_late(self) -> int:
        return sum(s.reason == TOO_LATE for s in self.skipped)

    @property
    def no_group_key(self) -> int:
        return sum(s.reason == NO_GROUP_KEY for s in self.skipped)


def step(
    plan: Plan,
    state: CorrelationState,
    events: Sequence[LogEvent],
    limits: Limits = Limits(),
) -> StepResult:
    """The findings among `events` and the correlation state after them. Pure."""
    work = {cid: dict(groups) for cid, groups in state.groups.items()}
    watermark = state.watermark_ms
    findings: list[SigmaFinding] = []
    seen: set[str] = set()
    skipped: list[Skipped] = []
    ordered = sorted(events, key=lambda e: e.key)
    # A chain: the outer correlations each correlation's qualifying points are fed to.
    outers: dict[str, list[PlanCorrelation]] = {}
    for correlation in plan.correlations:
        for inner in correlation.inner_ids:
            outers.setdefault(inner, []).append(correlation)
    # Events of one millisecond are all in a window that ends then (SQL's RANGE frame includes
    # its peers), so windows are judged once the whole millisecond is in.
    for date_ms, same_ms in itertools.groupby(ordered, key=lambda e: e.date_ms):
        touched: dict[str, dict[str, list[str]]] = {}
        # Entries of this millisecond a trimmed group did not keep (a late repeat of a value it
        # holds newer): their own window is judged with them all the same.
        unkept: dict[tuple[str, str], list[_Entry]] = {}
        for event in same_ms:
            if event.log_id in seen:
                continue
            seen.add(event.log_id)
            matched = plan.matching(event.raw)
            findings.extend(_rule_finding(rule, event) for rule in matched if rule.standalone)
            ids = {rule.id for rule in matched}
            for correlation in plan.correlations if matched else ():
                slots = [i for i, rid in enumerate(correlation.rule_ids) if rid in ids]
                if not slots:
                    continue
                if watermark is not None and date_ms < watermark - correlation.timespan_ms:
                    skipped.append(Skipped(correlation.id, TOO_LATE, event.log_id, date_ms))
                    continue
                groups = work.setdefault(correlation.id, {})
                rule_id = correlation.rule_ids[slots[0]]
                key_values = _group_key(event.raw, correlation.group_paths[rule_id])
                if key_values is None:
                    skipped.append(Skipped(correlation.id, NO_GROUP_KEY, event.log_id, date_ms))
                    continue
                entries = [
                    _Entry(date_ms, event.log_id, slot, _counted(correlation, slot, event))
                    for slot in slots
                ]
                added = _add(groups, key_values, entries, correlation, limits)
                if added is not None:
                    key, dropped = added
                    touched.setdefault(correlation.id, {})[key] = key_values
                    unkept.setdefault((correlation.id, key), []).extend(dropped)
        # In plan order, an inner before its outers: its points join them before they are judged.
        for correlation in plan.correlations if touched else ():
            for key, key_values in touched.get(correlation.id, {}).items():
                found, points = _judge(
                    correlation,
                    work[correlation.id],
                    key,
                    key_values,
                    date_ms,
                    points=correlation.id in outers,
                    unkept=unkept.get((correlation.id, key), ()),
                )
                if correlation.standalone:
                    findings += found
                for outer, (end, trigger) in itertools.product(
                    outers.get(correlation.id, ()), points
                ):
                    if watermark is not None and end < watermark - outer.timespan_ms:
                        skipped.append(Skipped(outer.id, TOO_LATE, trigger, end))
                        continue
                    slot = outer.rule_ids.index(correlation.id)
                    outer_values = [key_values[p] for p in outer.inner_group[correlation.id]]
                    outer_added = _add(
                        work.setdefault(outer.id, {}),
                        outer_values,
                        [_Entry(end, trigger, slot, None)],
                        outer,
                        limits,
                        same_point=_events_at(work[correlation.id][key], end),
                    )
                    if outer_added is not None:
                        outer_key, dropped = outer_added
                        touched.setdefault(outer.id, {})[outer_key] = outer_values
                        unkept.setdefault((outer.id, outer_key), []).extend(dropped)
        watermark = date_ms if watermark is None else max(watermark, date_ms)
    if watermark is not None:
        for correlation in plan.correlations:
            if work.get(correlation.id):
                _expire(correlation, work[correlation.id], watermark, limits)
    _within_total(work, limits.max_entries)
    kept = {cid: groups for cid, groups in work.items() if groups}
    return StepResult(findings, CorrelationState(watermark, kept), tuple(skipped))


# -- correlations ----------------------------------------------------------------------------


def _add(
    groups: dict[str, _Group],
    key_values: list[str],
    new: Sequence[_Entry],
    correlation: PlanCorrelation,
    limits: Limits,
    *,
    same_point: frozenset[str] = frozenset(),
) -> tuple[str, list[_Entry]] | None:
    """Put an event's entries (one per rule of the correlation it matched) in its group: the
    group's key and those of them the trimmed group does not keep (`_needed`: a late repeat of
    a value it holds a newer event of), or None when they were all there already (a
    redelivered event, or a point an inner correlation gave before, judged when it first
    came). `same_point`: for an inner correlation's point, the log_ids of its group's events
    at the point's end: a point there naming any of them is the same point (a later call
    judging that millisecond again may name a smaller log_id of it)."""
    key = json.dumps(key_values, ensure_ascii=False)
    group = groups.get(key, _Group((), None))
    present = {(e.log_id, e.slot) for e in group.entries}
    ends = {(e.date_ms, e.slot) for e in group.entries if e.log_id in same_point}
    fresh = [
        e for e in new if (e.log_id, e.slot) not in present and (e.date_ms, e.slot) not in ends
    ]
    if not fresh:
        return None
    entries = sorted([*group.entries, *fresh], key=lambda e: (e.date_ms, e.log_id, e.slot))
    entries = _bounded(_needed(correlation, entries), limits.max_group_events)
    groups[key] = _Group(tuple(entries), group.fired_ms)
    kept = set(map(id, entries))
    return key, [e for e in fresh if id(e) not in kept]


def _events_at(group: _Group, date_ms: int) -> frozenset[str]:
    return frozenset(e.log_id for e in group.entries if e.date_ms == date_ms)


def _counted(correlation: PlanCorrelation, slot: int, event: LogEvent) -> str | None:
    if correlation.kind != "value_count":
        return None
    return _counted_value(event.raw, correlation, correlation.rule_ids[slot])


def _needed(correlation: PlanCorrelation, entries: list[_Entry]) -> list[_Entry]:
    """What a group keeps as each event comes, where that provably decides every window a later
    event (in order or late, within the timespan) can be judged on; otherwise everything, up to
    the caps. Two cases qualify:

    - an `event_count` of at least 1 (the pack's "once per window" rules): any window ending at
      an event holds that event, so only the latest finding's window decides; the newest
      millisecond's events are kept for the finding to name.
    - a `value_count` of at least 2 distinct values: each value's newest event. A late event
      L (not too late: within the timespan of the watermark, so of its group's newest event
      too) is judged in its own window and in the group's newest, with itself in both though
      the group does not keep it (`_judge`'s `unkept`). A window holding L and another value's
      event E holds in one of them: E before L is in L's window (E is no older than the
      window's start); E after L is in the newest window (E is later than L). So a finding is
      raised, or one in its timespan covers it, whether the older events were kept or not
      (the review's counter-example before: u2 at 0, u1 at 65, u1's 58 read late).

    Larger bounds are not trimmed: a late event can complete a window of older events only
    they hold (10 failures, one of them read after the push: review of #25, H2)."""
    needed = _lower_bound(correlation)
    if needed is None:
        return entries
    if correlation.kind == "value_count" and needed <= 2:
        return _newest_per_value(entries)
    if correlation.kind == "event_count" and needed <= 1 and entries:
        newest = entries[-1].date_ms  # its whole millisecond: a millisecond counts whole
        return [e for e in entries if e.date_ms == newest]
    return entries


def _lower_bound(correlation: PlanCorrelation) -> int | None:
    """The fewest counted things that satisfy a condition that only bounds the count from
    below (`gte`, `gt`); None for any other condition."""
    needed = 1
    for op, bound in correlation.conditions:
        if op not in ("gte", "gt"):
            return None
        needed = max(needed, math.floor(bound) + 1 if op == "gt" else math.ceil(bound))
    return needed


def _newest_per_value(entries: list[_Entry]) -> list[_Entry]:
    """Each (rule, value)'s newest entry, in date order. A group of one IP's failures against a
    few users keeps a few entries, not one per failure: the shared item is rewritten by every
    watched user's batch, and its size is what each write costs."""
    newest: dict[tuple[int, str | None], _Entry] = {}
    for entry in entries:  # in date order: a later millisecond replaces an earlier
        mark = (entry.slot, entry.value)
        if mark not in newest or entry.date_ms > newest[mark].date_ms:
            # the first of a millisecond stays: it may be a finding's trigger (see _judge)
            newest[mark] = entry
    kept = set(map(id, newest.values()))
    return [e for e in entries if id(e) in kept]


def _judge(
    correlation: PlanCorrelation,
    groups: dict[str, _Group],
    key: str,
    key_values: Sequence[str],
    date_ms: int,
    *,
    points: bool = False,
    unkept: Sequence[_Entry] = (),
) -> tuple[list[SigmaFinding], list[tuple[int, str]]]:
    """Judge the window ending at `date_ms`, and, when that is late, the one ending at the
    group's newest event: a finding for each that holds outside the latest finding's window.
    With `points` (the correlation feeds a chain), also every judged end at which the condition
    holds, inside a finding's window or not, as (date, trigger log_id): the outer's events, as
    the SQLite backend's inner query returns every qualifying row, not only the first.
    `unkept`: this millisecond's entries the group did not keep, judged in its window: a late
    repeat completes the window ending at it with an older value (u2 at 0, u1 at 58 read late,
    u1 at 65: [-2, 58] holds both) though the window of the group's newest may not."""
    group = groups[key]
    entries, fired = group.entries, group.fired_ms
    seen = (
        sorted([*entries, *unkept], key=lambda e: (e.date_ms, e.log_id, e.slot))
        if unkept
        else entries
    )
    found = []
    held = []
    for end in sorted({date_ms, entries[-1].date_ms} if entries else ()):
        covered = fired is not None and abs(end - fired) <= correlation.timespan_ms
        if covered and not points:
            continue  # inside the latest finding's window: that finding covers it
        window = [e for e in seen if end - correlation.timespan_ms <= e.date_ms <= end]
        # The trigger is the first event of the window's last millisecond, whichever of its
        # events were in this call: a re-read after a lost commit that brings one more event of
        # that millisecond gives the same finding id, and a chain the same point, not a second.
        trigger = next((e for e in window if e.date_ms == end), None)
        if trigger is None:
            continue  # nothing of this call ends here
        metric = _metric(correlation, window)
        if metric is None or not correlation.holds(metric):
            continue
        held.append((end, trigger.log_id))
        if not covered:
            found.append(
                _correlation_finding(correlation, key, key_values, window, trigger, metric)
            )
            fired = end
    groups[key] = _Group(entries, fired)
    return found, held


def _metric(correlation: PlanCorrelation, window: Sequence[_Entry]) -> int | None:
    kind = correlation.kind
    if kind == "event_count":
        return len({e.log_id for e in window})
    if kind == "value_count":
        return len({e.value for e in window if e.value is not None})
    if kind == "temporal":
        return len({e.slot for e in window})
    # temporal_ordered: the rules' events in the order the rule lists them, strictly later each.
    after = None
    for slot in range(len(correlation.rule_ids)):
        times = [
            e.date_ms for e in window if e.slot == slot and (after is None or e.date_ms > after)
        ]
        if not times:
            return None
        after = min(times)
    return len(correlation.rule_ids)


def _bounded(entries: list[_Entry], cap: int) -> list[_Entry]:
    """At most `cap` entries: the oldest whose (rule, value) a newer one repeats goes first, so
    distinct values and rules outlive repeats; then simply the oldest."""
    while len(entries) > cap:
        newer: set[tuple[int, str | None]] = set()
        repeated = None
        for index in range(len(entries) - 1, -1, -1):
            mark = (entries[index].slot, entries[index].value)
            if mark in newer:
                repeated = index
            newer.add(mark)
        del entries[repeated if repeated is not None else 0]
    return entries


def _expire(
    correlation: PlanCorrelation, groups: dict[str, _Group], watermark: int, limits: Limits
) -> None:
    horizon = watermark - 2 * correlation.timespan_ms
    for key, group in list(groups.items()):
        entries = tuple(e for e in group.entries if e.date_ms >= horizon)
        fired = group.fired_ms if group.fired_ms is not None and group.fired_ms >= horizon else None
        if entries or fired is not None:
            groups[key] = _Group(entries, fired)
        else:
            del groups[key]
    if len(groups) > limits.max_groups:
        newest = sorted(groups, key=lambda k: _newest(groups[k]))
        for key in newest[: len(groups) - limits.max_groups]:
            del groups[key]


def _within_total(work: dict[str, dict[str, _Group]], cap: int) -> None:
    """Drop whole groups, those whose newest event is oldest first, until `cap` events remain."""
    total = sum(len(g.entries) for groups in work.values() for g in groups.values())
    if total <= cap:
        return
    order = sorted(
        ((_newest(g), cid, key) for cid, groups in work.items() for key, g in groups.items()),
    )
    for _, cid, key in order:
        if total <= cap:
            break
        total -= len(work[cid].pop(key).entries)


def _newest(group: _Group) -> tuple[int, int]:
    return (group.entries[-1].date_ms if group.entries else -1, group.fired_ms or -1)


# A group-by or counted value is kept in the user's state (and a push's settled record): one
# longer than this keeps its start, readable, and a digest of the whole, so equal values still
# group together while a chosen 9,000-character request path cannot grow the state past its item.
MAX_KEPT_VALUE_CHARS = 256


def _kept_value(text: str) -> str:
    if len(text) <= MAX_KEPT_VALUE_CHARS:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{text[:64]}…sha256:{digest}"


def _group_key(raw: Mapping[str, Any], paths: Sequence[tuple[str, ...]]) -> list[str] | None:
    """The group-by values, lowercased as the SQLite backend groups; None if one is missing or
    multi-valued (that backend leaves such events out too)."""
    values = []
    for path in paths:
        found = values_at(raw, path)
        text = json_text(found[0]) if len(found) == 1 else None
        if text is None:
            return None
        values.append(_kept_value(fold_case(text)))
    return values


def _counted_value(
    raw: Mapping[str, Any], correlation: PlanCorrelation, rule_id: str
) -> str | None:
    found = values_at(raw, correlation.value_paths[rule_id])
    text = json_text(found[0]) if len(found) == 1 else None
    return None if text is None else _kept_value(fold_case(text))


# -- findings --------------------------------------------------------------------------------


def finding_id(*parts: str) -> str:
    """Deterministic: the same rule, key and triggering event always give the same id."""
    text = "\x1f".join(("sigma", *parts))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _rule_finding(rule: PlanRule, event: LogEvent) -> SigmaFinding:
    return SigmaFinding(
        finding_id=finding_id(rule.id, event.log_id),
        rule_id=rule.id,
        kind="rule",
        title=rule.title,
        level=rule.level,
        tags=rule.tags,
        log_ids=(event.log_id,),
        first_ms=event.date_ms,
        last_ms=event.date_ms,
    )


def _correlation_finding(
    correlation: PlanCorrelation,
    key: str,
    key_values: Sequence[str],
    window: Sequence[_Entry],
    trigger: _Entry,
    metric: int,
) -> SigmaFinding:
    log_ids = tuple(dict.fromkeys(e.log_id for e in window))[-MAX_FINDING_LOG_IDS:]
    return SigmaFinding(
        finding_id=finding_id(correlation.id, key, str(trigger.date_ms), trigger.log_id),
        rule_id=correlation.id,
        kind=correlation.kind,
        title=correlation.title,
        level=correlation.level,
        tags=correlation.tags,
        log_ids=log_ids,
        first_ms=window[0].date_ms,
        last_ms=trigger.date_ms,
        group=dict(zip(correlation.group_by, key_values, strict=True)),
        metric=metric,
    )


# -- reading stored state ------------------------------------------------------------------


def _read_entries(value: object) -> Iterable[_Entry]:
    if not isinstance(value, list):
        return
    for item in value:
        if (
            isinstance(item, list)
            and len(item) == 4
            and _int(item[0]) is not None
            and isinstance(item[1], str)
            and _int(item[2]) is not None
            and (item[3] is None or isinstance(item[3], str))
        ):
            yield _Entry(int(item[0]), item[1], int(item[2]), item[3])


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _int(value: object) -> int | None:
    return value if type(value) is int else None
