"""The delivery plan: from the committed cursor and one chunk of a read, the batches to deliver.

Pure: no clock, no I/O. Each batch says what to write before delivering it (the write-ahead
intent), which lines every destination receives, and the cursor to commit once they all
accepted them. The executor carries that out without knowing why; this module is where the
why lives:

- A batch an interrupted run handed to the destinations but never committed (a pending intent)
  is delivered again first, as a redelivery under its own batch id: the destinations skip what
  they already hold. Its intent is rewritten first with this run's lease: a conditional write
  that claims it, so two runs can never both redeliver it.
- The chunk's new events, and the records about them (gaps the read proves, malformed entries
  quarantined, what the detection rules found in them), follow as one batch. Events the filter
  keeps out are remembered like the others, but not written.
- The end of the chunk (backlog flag, the floor moving with time, gaps, a user Auth0 no longer
  knows, the user's place on the tenant stream) rides on the last batch's cursor, or on a
  checkpoint-only batch.

Which events are new, which pending events are gone, and where the chunk ends are the rules of
the read that returned the chunk (chunk.py): the plan is the same for every read. Pending events
a chunk proves gone are given up with a gap record naming them: never in silence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .chunk import Chunk
from .convert import (
    ConvertContext,
    event_line,
    finding_line,
    gap_line,
    quarantine_digest,
    quarantine_line,
    skipped_key,
    skipped_line,
)
from .cursor import Cursor, Pending, Selection
from .detections import Detections, DetectionState, Finding, RuleSet, Skipped, detect
from .events import LogEvent, Malformed
from .filters import EventFilter
from .gaps import gaps_in
from .ocsf_versions import OcsfVersion
from .pushed import batch_key
from .records import Delivery, Gap, OutputLine, batch_id_for
from .retry import Deadline
from .user_lookup import UNKNOWN, logged_since, unknown_user_finding

if TYPE_CHECKING:  # built only when pseudonyms are asked for (outputs.py)
    from .pseudonymise import Pseudonymiser

# An event dated this far past the start of the read that returned it has a wrong clock upstream.
FUTURE_TOLERANCE_MS = 60_000
# An event a read delivers counts as one the real-time path could have delivered first (it is
# reconciled, ReconciledEvents) when dated within the overlap window and this much more before
# the read: older ones are history (a backlog, a user just watched), which no push could have had.
RECONCILE_HORIZON_MS = 15 * 60_000


@dataclass(frozen=True, slots=True)
class OutputPolicy:
    """What a run writes besides the events as Auth0 sent them, and how (all off by default)."""

    ocsf: OcsfVersion | None = None  # OCSF events of this release instead of Auth0's
    keep: EventFilter = field(default_factory=EventFilter)  # which events are forwarded
    pseudonymiser: Pseudonymiser | None = None  # keyed pseudonyms for chosen fields
    detections: Detections | None = None  # which rules run (their plan's source), if any


@dataclass(frozen=True, slots=True)
class PlanContext:
    """What planning a user's batches needs to know beyond the chunk and the cursor."""

    user_id: str
    tenant: str
    now_ms: int  # stamps the records (forwarded_at, detected_at) and bounds expiry gaps
    read_started_ms: int
    overlap_ms: int
    min_retention_ms: int
    # Until when this run may hold an intent: the end of its invocation.
    lease_until_ms: int
    output: OutputPolicy = field(default_factory=OutputPolicy)
    # The detection rules of this chunk (the session resolves `output.detections`' plan).
    rules: RuleSet | None = None
    # A push's S3 object for the batches of all its users (sinks/gathering.py): named in each
    # new intent, so a redelivery writes where the push did. None: each batch its own object.
    shared_object: str | None = None


@dataclass(frozen=True, slots=True)
class Batch:
    """Events handed to the destinations together, with the cursors written before and after."""

    batch_id: str
    events: tuple[LogEvent, ...]  # the events handed to the destinations
    lines: tuple[OutputLine, ...]  # the events' lines and the records about them, in time order
    intent: Cursor | None  # written before delivery; None when no event is handed over
    after: Cursor  # written once every destination accepted `lines`
    redelivery: bool = False  # an interrupted run may already have delivered part of it
    # What the batch reports, counted once it is committed (not when planned: a batch that
    # fails is planned again by the next run, and must not be counted twice).
    gaps: tuple[Gap, ...] = ()
    quarantined: tuple[Malformed, ...] = ()
    findings: tuple[Finding, ...] = ()
    skipped: tuple[Skipped, ...] = ()  # what the rules did not see whole (records too)
    # Its events the shared correlations take (shared_correlations.py: applied by the executor
    # after the destinations took the batch, before its commit), and how their records read.
    shared: tuple[LogEvent, ...] = ()
    convert: ConvertContext | None = field(default=None, compare=False)
    filtered: int = 0  # new events the filter kept out: remembered, not forwarded
    # Events of an interrupted batch that Auth0 no longer returns: delivered or not, nobody
    # can tell any more, and nothing is waited for.
    abandoned: int = 0
    future_dated: int = 0  # new events dated after the read that returned them
    # A push's batch: (date, log_id) of its events, recorded in the pushed-events table once
    # every destination took them, before the commit (executor.py).
    pushed: tuple[tuple[int, str], ...] = ()
    # A read's batch: its events the real-time path could have delivered first (not history).
    reconciled: int = 0
    # The S3 object its intent names, shared with other users' batches (Pending.shared_object).
    shared_object: str | None = None

    since_ms: int | None = None  # a redelivery: when the interrupted run wrote the intent

    def delivery(self, user_id: str, deadline: Deadline) -> Delivery:
        return Delivery(
            user_id,
            self.batch_id,
            self.lines,
            self.redelivery,
            deadline,
            self.since_ms,
            self.shared_object,
        )


@dataclass(frozen=True, slots=True)
class Plan:
    """The batches planned for a read, in delivery order, and what the read selected."""

    batches: tuple[Batch, ...]
    selection: Selection


@dataclass(frozen=True, slots=True)
class _Records:
    """The forwarder's own records a batch adds beside its events."""

    gaps: tuple[Gap, ...] = ()
    quarantined: tuple[Malformed, ...] = ()
    digests: tuple[str, ...] = ()  # of the quarantined entries
    findings: tuple[Finding, ...] = ()
    seen: tuple[str, ...] = ()  # digests of every malformed entry the read returned
    skipped: tuple[Skipped, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.gaps or self.quarantined or self.findings or self.seen or self.skipped)

    def keys(self) -> list[str]:
        """What identifies these records, for a batch id when no event is handed over."""
        return [
            *(f"gap:{gap.from_ms}:{gap.to_ms}" for gap in self.gaps),
            *(f"quarantine:{digest}" for digest in self.digests),
            *(f"finding:{finding.finding_id}" for finding in self.findings),
            *(skipped_key(skipped) for skipped in self.skipped),
        ]


def plan_chunk(cursor: Cursor, chunk: Chunk, context: PlanContext) -> Plan:
    selection = chunk.span.select(cursor, chunk.events)
    records = _records(cursor, chunk, context)
    batches, new, state = _redeliveries(cursor, selection.new, chunk, context)
    fresh = _fresh_batch(state, new, records, chunk, context)
    if fresh is not None:
        batches.append(fresh)
        state = fresh.after
    if chunk.span.confirms:
        # Each batch remembers its events ahead of the read (_delivered); they join the read
        # position with what the read found delivered ahead of it (pushed) once the whole chunk
        # is delivered. Sooner, the floor could pass events of the chunk still on their way (a
        # pending batch may hold events newer than them), and a crash would leave them below it.
        redelivered = [e for batch in batches if batch.redelivery for e in batch.events]
        position = state.position.advance(
            [*selection.confirmed, *redelivered, *new],
            overlap_ms=context.overlap_ms,
            read_started_ms=context.read_started_ms,
        )
        state = replace(state, position=position)
    end = _end_of_chunk(state, chunk, records.gaps, context)
    if batches and end != batches[-1].after:
        batches[-1] = replace(batches[-1], after=end)
    elif not batches and end != cursor:
        batches.append(Batch("", (), (), intent=None, after=end))
    return Plan(tuple(batches), selection)


def _reconciled(events: Sequence[LogEvent], chunk: Chunk, context: PlanContext) -> int:
    """How many of a read's events the real-time path could have delivered first: dated within
    the overlap window and RECONCILE_HORIZON_MS before the read (a push's own: none)."""
    if not chunk.span.confirms:
        return 0
    since = context.read_started_ms - context.overlap_ms - RECONCILE_HORIZON_MS
    return sum(e.date_ms >= since for e in events)


def _future_dated(events: Sequence[LogEvent], context: PlanContext) -> int:
    return sum(e.date_ms > context.read_started_ms + FUTURE_TOLERANCE_MS for e in events)


def _records(cursor: Cursor, chunk: Chunk, context: PlanContext) -> _Records:
    gaps = gaps_in(
        chunk.facts,
        chunk.events,
        cursor,
        now_ms=context.now_ms,
        min_retention_ms=context.min_retention_ms,
    )
    # Auth0 returns a malformed entry on every read that covers it: record each one once.
    first_seen: dict[str, Malformed] = {}
    seen = tuple(quarantine_digest(entry.raw) for entry in chunk.malformed)
    for digest, entry in zip(seen, chunk.malformed, strict=True):
        if not cursor.position.knows_quarantined(digest):
            first_seen.setdefault(digest, entry)
    return _Records(
        tuple(gaps),
        tuple(first_seen.values()),
        tuple(first_seen),
        findings=_unknown_user(cursor, chunk, context),
        seen=tuple(set(seen)),
    )


def _unknown_user(cursor: Cursor, chunk: Chunk, context: PlanContext) -> tuple[Finding, ...]:
    """Auth0 says, for the first time, that it does not know the watched user: a record in the
    destinations says so (user_lookup.py), whatever the detection rules are."""
    facts = chunk.facts
    if facts.user_exists is not False or cursor.status.missing_since_ms is not None:
        return ()
    detail = facts.user_lookup.detail if facts.user_lookup else "GET /api/v2/users/{id}/logs: 404"
    finding = unknown_user_finding(
        context.user_id,
        detail=detail,
        forwarded_before=cursor.status.forwarded_total,
        now_ms=context.now_ms,
    )
    return (finding,)


@dataclass(frozen=True, slots=True)
class _Detected:
    """What the detection rules made of a chunk's events."""

    findings: tuple[Finding, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    shared: tuple[LogEvent, ...] = ()


def _detect(
    cursor: Cursor, events: Sequence[LogEvent], context: PlanContext
) -> tuple[_Detected, Cursor]:
    """The rules' findings on `events` (all of them: a filter chooses what is written, not what
    is watched), what they did not see whole, the events left to the shared correlations, and
    the cursor carrying the user's rules' state after them."""
    rules = context.rules
    if rules is None or not events:
        return _Detected(), cursor
    detected = detect(rules, context.user_id, events, DetectionState.from_state(cursor.detections))
    found = _Detected(detected.findings, detected.skipped, detected.shared)
    return found, replace(cursor, detections=detected.state.to_state())


def _delivered(
    cursor: Cursor, events: Sequence[LogEvent], *, forwarded: int, pushed: str | None = None
) -> Cursor:
    """The cursor once every destination accepted `events` (`forwarded` of them were written;
    the others were kept out by the filter, and are remembered all the same). A read's are
    remembered in `recent`, the read position moved at the end of its chunk (plan_chunk); a
    push's in the pushed-events table, under the batch key `pushed`."""
    seat = cursor.seat.with_delivered(e.log_id for e in events) if cursor.seat else None
    if pushed is None:
        position = cursor.position.delivered_by_read(events)
    else:
        position = cursor.position.delivered_by_push(events, pushed)
    return replace(cursor, position=position, status=cursor.status.counted(forwarded), seat=seat)


def _with_gap(cursor: Cursor, gap: Gap) -> Cursor:
    """A gap is counted; one over a span of dates also ends the read there (nothing dated
    before its end is read again). One naming its events leaves the read where it was."""
    position = cursor.position if gap.log_ids else cursor.position.past(gap.to_ms)
    return replace(cursor, position=position, status=cursor.status.with_gap(gap))


def _redeliveries(
    cursor: Cursor, new: list[LogEvent], chunk: Chunk, context: PlanContext
) -> tuple[list[Batch], list[LogEvent], Cursor]:
    """Batches that redeliver what this chunk holds of each pending intent; the rest of an
    intent stays pending for the chunks that hold it. Returns them, the events left to deliver
    as new, and the cursor after them."""
    batches: list[Batch] = []
    state = cursor
    for pending in cursor.outbox.pending:
        again = [e for e in new if e.log_id in pending.log_ids]
        new = [e for e in new if e.log_id not in pending.log_ids]
        left = pending.log_ids - {e.log_id for e in again}
        gone = chunk.span.gone(left) if _judgeable(pending, context) else frozenset()
        left -= gone
        if again or gone:
            # Claimed with this run's lease before anything is delivered: a run that read the
            # same intent loses the conditional write instead of delivering it a second time.
            leased = replace(pending, lease_until_ms=context.lease_until_ms)
            claim = replace(state, outbox=state.outbox.with_pending(leased))
            # The rules see these events again from the state before them: the same findings,
            # with the same ids, which the destinations that hold them already skip.
            found, after = _detect(claim, again, context)
            after = _delivered(after, again, forwarded=len(again))
            after = replace(after, outbox=after.outbox.with_pending(replace(leased, log_ids=left)))
            gaps = _abandoned(pending, gone, chunk, context)
            records = _Records(gaps=gaps, findings=found.findings, skipped=found.skipped)
            for gap in records.gaps:
                after = _with_gap(after, gap)
            batches.append(
                Batch(
                    pending.batch_id,
                    tuple(again),
                    _lines(again, records, chunk.source, context),
                    claim,
                    after,
                    redelivery=True,
                    since_ms=pending.written_ms or None,
                    gaps=records.gaps,
                    findings=found.findings,
                    skipped=found.skipped,
                    shared=found.shared,
                    convert=_convert(chunk.source, context),
                    abandoned=len(gone),
                    future_dated=_future_dated(again, context),
                    reconciled=_reconciled(again, chunk, context),
                    shared_object=pending.shared_object,
                )
            )
            state = after
    return batches, new, state


def _judgeable(pending: Pending, context: PlanContext) -> bool:
    """Whether a read may find a pending batch's events gone: only once every event of it was
    visible to the read. A push can write an intent for an event Auth0's Management API does not
    return yet (the stream is faster), which it does within the overlap window of its date."""
    return pending.written_ms + context.overlap_ms <= context.read_started_ms


def _abandoned(
    pending: Pending, gone: frozenset[str], chunk: Chunk, context: PlanContext
) -> tuple[Gap, ...]:
    """Events of an interrupted batch that Auth0 no longer returns: delivered or not, nobody
    can tell any more. Given up with a gap record naming them, dated up to when the batch was
    planned (they were read before)."""
    if not gone:
        return ()
    reason = f"gone: {len(gone)} pending event(s) given up; {chunk.span.gone_reason}"
    written = pending.written_ms or context.now_ms
    return (Gap(from_ms=None, to_ms=written + 1, reason=reason, log_ids=tuple(sorted(gone))),)


def _fresh_batch(
    cursor: Cursor, new: list[LogEvent], records: _Records, chunk: Chunk, context: PlanContext
) -> Batch | None:
    if not new and not records:
        return None
    found, detected = _detect(cursor, new, context)
    records = replace(records, findings=(*records.findings, *found.findings), skipped=found.skipped)
    shown = [e for e in new if context.output.keep.keeps(e.raw)]
    ids = [e.log_id for e in shown]
    # Records alone get an id from what they report, so a retried delivery reuses its S3 keys.
    batch_id = batch_id_for(ids or records.keys() or [e.log_id for e in new])
    # The intent goes first: a crash after it is recovered, not repeated. Records alone need
    # none (a repeated gap record is a documented corner, not a repeated event). It holds the
    # rules' state from before these events, so a redelivery finds the same findings again.
    shared_object = context.shared_object if shown else None
    pending = Pending(
        batch_id, frozenset(ids), context.lease_until_ms, context.now_ms, shared_object
    )
    # A push records its events in the pushed-events table; its intent already says so, for a
    # read that finds the batch pending to look there.
    pushed = not chunk.span.confirms and bool(new)
    key = batch_key(max(e.date_ms for e in new), batch_id) if pushed else None
    start = replace(cursor, position=cursor.position.pushing(new)) if pushed else cursor
    intent = replace(start, outbox=start.outbox.with_pending(pending)) if shown else None
    after = _delivered(
        replace(detected, position=start.position), new, forwarded=len(shown), pushed=key
    )
    position = after.position.with_quarantined(
        records.digests, now_ms=context.now_ms, seen=records.seen
    )
    outbox = after.outbox.with_pending(Pending(batch_id, frozenset()))
    return Batch(
        batch_id,
        tuple(shown),
        _lines(shown, records, chunk.source, context),
        intent,
        replace(after, position=position, outbox=outbox),
        gaps=records.gaps,
        quarantined=records.quarantined,
        findings=records.findings,
        skipped=found.skipped,
        shared=found.shared,
        convert=_convert(chunk.source, context),
        filtered=len(new) - len(shown),
        future_dated=_future_dated(new, context),
        pushed=tuple(e.key for e in new) if pushed else (),
        reconciled=_reconciled(shown, chunk, context),
        shared_object=shared_object,
    )


def _end_of_chunk(
    cursor: Cursor, chunk: Chunk, gaps: Sequence[Gap], context: PlanContext
) -> Cursor:
    end = chunk.span.end(
        cursor, read_started_ms=context.read_started_ms, overlap_ms=context.overlap_ms
    )
    for gap in gaps:
        end = _with_gap(end, gap)
    facts, status = chunk.facts, end.status
    exists = facts.user_exists
    logged = logged_since(chunk.events, status.looked_up_ms) if status.lookup == UNKNOWN else None
    if facts.user_lookup is not None:
        status = status.looked_up(facts.user_lookup.text, context.now_ms)
    elif logged is not None:
        status, exists = status.looked_up(logged.text, context.now_ms), True
    elif exists and status.lookup == UNKNOWN:
        # GET /api/v2/users/{id} said 404; a log read's 200 does not overrule it (what Auth0
        # answers for an unknown id's log is undocumented: an empty list, like a quiet user's).
        exists = None
    if exists is not None:
        status = status.with_missing_since(None if exists else context.now_ms)
    return replace(end, status=status) if status != end.status else end


def _convert(source: str, context: PlanContext) -> ConvertContext:
    return ConvertContext(
        tenant=context.tenant,
        watched_user_id=context.user_id,
        forwarded_at_ms=context.now_ms,
        source=source,
        ocsf=context.output.ocsf,
        pseudonymiser=context.output.pseudonymiser,
    )


def _lines(
    events: Sequence[LogEvent], records: _Records, source: str, context: PlanContext
) -> tuple[OutputLine, ...]:
    convert = _convert(source, context)
    lines = [event_line(e, convert) for e in events]
    lines.extend(gap_line(gap, convert) for gap in records.gaps)
    lines.extend(quarantine_line(entry.raw, entry.reason, convert) for entry in records.quarantined)
    lines.extend(detection_lines(records.findings, records.skipped, convert))
    return tuple(sorted(lines, key=lambda line: line.timestamp_ms))


def detection_lines(
    findings: Sequence[Finding], skipped: Sequence[Skipped], convert: ConvertContext
) -> list[OutputLine]:
    """The records of what the detection rules found, and did not see whole."""
    lines = [finding_line(finding, convert) for finding in findings]
    lines.extend(skipped_line(one, convert) for one in skipped)
    return lines
