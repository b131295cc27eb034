"""A user's checkpoint state: four separate values, each with the one concern it is named after.

- `ReadPosition`: which events are new. Auth0 log events arrive late, share dates down to the
  millisecond, and repeat, so it keeps `floor_ms` (nothing dated before it is forwarded again;
  the next read covers [floor, now]), `recent` (every (date, log_id) forwarded at or after the
  floor: a re-read finds late events, not in it, and drops repeats) and `watermark_ms` (the
  newest date forwarded; the floor follows it at `watermark - overlap`, so an event visible up to
  `overlap` late is still caught), and what the real-time path delivered before any read
  returned it (`pushed`, read from its own table, pushed.py; `ahead` for what an earlier release
  kept in the item): known, but it moves neither the floor nor the watermark.
- `Outbox`: batches handed to the destinations and not yet committed (write-ahead intents), each
  leased to the run delivering it.
- `StreamSeat`: the user's place on the tenant stream, while the tenant is read by checkpoint.
- `UserStatus`: what operators read (`status`, the item's summary): totals, the backlog flag, the
  last gap and error, whether Auth0 still knows the user.

`Cursor` holds the four (and the detection rules' opaque state) and is what is stored. Pure: no
clock, no I/O. How a read's events are selected against these values is the read's own rule
(chunk.py); the planner combines them.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .codec import (
    BOOL,
    INT,
    STR,
    Inline,
    Key,
    Record,
    Schema,
    items,
    optional,
    row,
    set_of,
    text,
    versioned,
)
from .detections import DETECTION_STATE
from .events import LogEvent, iso_ms
from .pushed import PUSHED_MEMORY_MS, PushedMemory, parse_batch_key
from .records import Gap

__all__ = [
    "Cursor",
    "Gap",
    "Outbox",
    "Pending",
    "ReadPosition",
    "Selection",
    "StreamSeat",
    "UserStatus",
]

# How far ahead of the stored value a complete read must be before `verified_ms` is written again:
# it only matters once a user has not been read for longer than the retention (a day or more),
# so idle users cost a checkpoint write an hour rather than one a run.
VERIFIED_STEP_MS = 3_600_000
# Bounds the checkpoint item (DynamoDB allows 400 KB). Past it the overlap window narrows for that
# user, which is counted and logged rather than silently ignored.
MAX_RECENT = 6_000
# Malformed entries already quarantined, by digest: Auth0 returns such an entry on every read that
# covers it, for as long as it is retained (30 days on the longest plan). Remembered that long, so
# each is recorded once; capped so that a flood of them cannot outgrow the item.
QUARANTINE_MEMORY_MS = 31 * 86_400_000
MAX_QUARANTINED = 500
# The most entries `recent` (and `ahead`) may hold on read. The writer narrows to MAX_RECENT at
# each advance, but a chunk's batches join `recent` before it (and a cut never splits a date),
# so a stored state may hold more; what bounds it is MAX_STATE_BYTES: 350 KB of log-id rows
# hold about 17,000 (measured: 3.7 bytes of JSON per compressed byte, 75 bytes a row). Past
# this, the item is not one a release wrote.
MAX_RECENT_STORED = 5 * MAX_RECENT
# What `last_error` is cut to when it is written (UserStatus.failed).
MAX_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class Selection:
    """What one read contributes: the new events in forwarding order, and what was dropped."""

    new: list[LogEvent]
    duplicates: int = 0
    below_floor: int = 0
    late: int = 0
    max_lateness_ms: int = 0
    # Events the real-time path delivered first that this read returned: delivered already,
    # they count as this read's for the read position (ReadPosition.ahead).
    confirmed: tuple[LogEvent, ...] = ()


# -- the read position ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReadPosition:
    """Where a user's reads stand: floor, watermark, and the events near them already seen."""

    floor_ms: int | None = None
    watermark_ms: int | None = None
    recent: tuple[tuple[int, str], ...] = ()
    # Every event dated before this was visible to a complete read (read start − overlap).
    verified_ms: int | None = None
    # (digest, first seen) of malformed entries already written to the destinations.
    quarantined: tuple[tuple[str, int], ...] = ()
    # (date, log_id) of events the real-time path delivered that no read has returned yet, as
    # an earlier release kept them in the item (pushes now remember theirs in `pushed`). A read
    # that returns one confirms it: it joins `recent`. The floor and the watermark stay where
    # the reads left them, since Auth0's stream drops events and an event it dropped may be
    # dated before these.
    ahead: tuple[tuple[int, str], ...] = ()
    # The newest date the real-time path recorded in the pushed-events table for this user: a
    # read whose floor is past it has nothing pushed to look up there.
    pushed_until_ms: int | None = None
    # What the real-time path delivered from the floor on, as read from that table when the
    # cursor was loaded (never stored in the item): known to every read and push, whatever the
    # burst; those a read returned are confirmed there and stay known.
    pushed: PushedMemory = field(default_factory=PushedMemory, compare=False)

    @property
    def at_capacity(self) -> bool:
        """`recent` hit its cap, so the overlap window for this user is narrower than configured."""
        return len(self.recent) >= MAX_RECENT

    def pushed_since(self, from_ms: int | None) -> bool:
        """Whether the pushed-events table may hold this user's events dated at or after
        `from_ms`: a read whose floor is past the newest recorded there looks nothing up."""
        until = self.pushed_until_ms
        return until is not None and (from_ms is None or until >= from_ms)

    def pushed_forgotten(self, now_ms: int) -> bool:
        """Whether what the real-time path recorded is past the table's memory (DynamoDB's TTL
        deletes a batch PUSHED_MEMORY_MS after its newest event): Auth0 no longer returns
        events that old, so no read can deliver them again."""
        until = self.pushed_until_ms
        return until is not None and until <= now_ms - PUSHED_MEMORY_MS

    @property
    def anchor(self) -> tuple[int, str] | None:
        """The newest event forwarded, dated no later than the watermark (an event dated in the
        future would stay retained for longer and hide what expired before it). While Auth0
        still returns the anchor, nothing after it expired."""
        if self.watermark_ms is None:
            return self.recent[-1] if self.recent else None
        dated = [entry for entry in self.recent if entry[0] <= self.watermark_ms]
        return dated[-1] if dated else None

    def below_floor(self, event: LogEvent) -> bool:
        return self.floor_ms is not None and event.date_ms < self.floor_ms

    def known_ids(self) -> set[str]:
        known = {log_id for _, log_id in self.recent} | {log_id for _, log_id in self.ahead}
        return known | set(self.pushed.batches)

    def ahead_ids(self) -> set[str]:
        """What a read returning it confirms: delivered by a push, and by no read yet."""
        pushed = set(self.pushed.batches) - self.pushed.confirmed
        return {log_id for _, log_id in self.ahead} | pushed

    def select(self, events: Iterable[LogEvent]) -> Selection:
        """The events of a read from the floor that are new: at or above the floor, and not
        remembered in `recent` (nor delivered ahead: those it confirms)."""
        known, ahead = self.known_ids(), self.ahead_ids()
        new: dict[str, LogEvent] = {}
        confirmed: dict[str, LogEvent] = {}
        duplicates = below_floor = 0
        for event in events:
            if self.below_floor(event):
                below_floor += 1
            elif event.log_id in ahead:
                confirmed[event.log_id] = event
            elif event.log_id in known or event.log_id in new:
                duplicates += 1
            else:
                new[event.log_id] = event
        return self.ordered(new.values(), duplicates, below_floor, confirmed.values())

    def ordered(
        self,
        new: Iterable[LogEvent],
        duplicates: int,
        below_floor: int,
        confirmed: Iterable[LogEvent] = (),
    ) -> Selection:
        """New events in ascending (date, log_id) order, those dated below the watermark counted
        as late: every read's selection ends here, whatever decided what is new."""
        ordered = sorted(new, key=lambda e: e.key)
        found = tuple(confirmed)
        watermark = self.watermark_ms
        if watermark is None:
            return Selection(ordered, duplicates, below_floor, confirmed=found)
        lateness = [watermark - e.date_ms for e in ordered if e.date_ms < watermark]
        return Selection(
            ordered, duplicates, below_floor, len(lateness), max(lateness, default=0), found
        )

    def advance(
        self, delivered: Sequence[LogEvent], *, overlap_ms: int, read_started_ms: int
    ) -> ReadPosition:
        """The position after `delivered` was accepted by every destination.

        The watermark stops at the start of the read: an event dated in the future (a wrong clock
        upstream) must not move the window past what the read could see, or every event dated
        before it would later be taken for one already forwarded.
        """
        if not delivered:
            return self
        newest = min(max(e.date_ms for e in delivered), read_started_ms)
        watermark = newest if self.watermark_ms is None else max(self.watermark_ms, newest)
        floor = watermark - overlap_ms
        if self.floor_ms is not None:
            floor = max(floor, self.floor_ms)
        # What the pushed-events table remembers stays there; the newest such event joins
        # `recent` alone, as the anchor a later read looks for (gaps.py).
        pushed = self.pushed.batches
        kept = [e.key for e in delivered if e.log_id not in pushed]
        anchor = max((e.key for e in delivered if e.log_id in pushed), default=None)
        recent = sorted({*self.recent, *kept, *([anchor] if anchor else [])})
        recent = [entry for entry in recent if entry[0] >= floor]
        if len(recent) > MAX_RECENT:
            floor, recent = _narrow(recent)
        read = {e.log_id for e in delivered}
        ahead = tuple(e for e in self.ahead if e[0] >= floor and e[1] not in read)
        return replace(
            self, floor_ms=floor, watermark_ms=watermark, recent=tuple(recent), ahead=ahead
        )

    def delivered_by_read(self, delivered: Sequence[LogEvent]) -> ReadPosition:
        """A batch of a read is delivered: remembered in `recent`, the floor and the watermark
        unmoved until the read's whole chunk is delivered (advance)."""
        if not delivered:
            return self
        return replace(self, recent=tuple(sorted({*self.recent, *(e.key for e in delivered)})))

    def delivered_by_push(self, delivered: Sequence[LogEvent], batch: str) -> ReadPosition:
        """A push's batch is delivered and recorded in the pushed-events table under `batch`
        (its key there): known from now on, the read position unmoved."""
        if not delivered:
            return self
        memory = self.pushed
        pushed = PushedMemory(
            tuple(sorted({*memory.entries, *(e.key for e in delivered)})),
            {**memory.batches, **{e.log_id: batch for e in delivered}},
            memory.confirmed,
        )
        return replace(self.pushing(delivered), pushed=pushed)

    def pushing(self, events: Sequence[LogEvent]) -> ReadPosition:
        """About to record `events` in the pushed-events table: reads must look there."""
        newest = max((e.date_ms for e in events), default=None)
        until = self.pushed_until_ms
        if newest is None or (until is not None and until >= newest):
            return self
        return replace(self, pushed_until_ms=newest)

    def past(self, to_ms: int) -> ReadPosition:
        """Nothing dated before `to_ms` is read again (a gap ends there)."""
        floor = to_ms if self.floor_ms is None else max(self.floor_ms, to_ms)
        return self._floor_at(floor)

    def _floor_at(self, floor: int) -> ReadPosition:
        """Nothing dated before `floor` is read again, so nothing before it is remembered."""
        return replace(
            self,
            floor_ms=floor,
            recent=tuple(e for e in self.recent if e[0] >= floor),
            ahead=tuple(e for e in self.ahead if e[0] >= floor),
        )

    def after_complete_read(self, read_started_ms: int, *, overlap_ms: int) -> ReadPosition:
        """Move the floor, and what is verified, with time once a read reached the newest event.

        An event visible by `read_started_ms` was returned by that read, and an event can show up
        at most `overlap_ms` after its date, so nothing dated before `read_started_ms - overlap_ms`
        can still appear. The floor stops at the watermark so the anchor stays remembered.
        Without this, a user who goes quiet after a burst would re-read the burst every run.
        Returns the same position when nothing worth a checkpoint write changed.
        """
        verified = read_started_ms - overlap_ms
        position = self
        if self.verified_ms is None or verified >= self.verified_ms + VERIFIED_STEP_MS:
            position = replace(position, verified_ms=verified)
        floor = verified if self.watermark_ms is None else min(verified, self.watermark_ms)
        oldest = min((e[0] for e in (*self.recent[:1], *self.ahead[:1])), default=None)
        if oldest is None or oldest >= floor:
            return position
        return position._floor_at(floor)

    def verified_until(self, verified_ms: int | None) -> ReadPosition:
        """What another read verified (the stream, for a user it moved with) counts too."""
        if verified_ms is None:
            return self
        verified = verified_ms if self.verified_ms is None else max(self.verified_ms, verified_ms)
        return replace(self, verified_ms=verified)

    def knows_quarantined(self, digest: str) -> bool:
        return any(known == digest for known, _ in self.quarantined)

    def with_quarantined(
        self, digests: Iterable[str], *, now_ms: int, seen: Iterable[str] = ()
    ) -> ReadPosition:
        """Remember newly quarantined entries, and that `seen` ones were returned again (an
        entry still returned is the last to be forgotten when the cap is reached)."""
        again = set(seen)
        kept = [
            (d, now_ms if d in again else seen_ms)
            for d, seen_ms in self.quarantined
            if d in again or seen_ms >= now_ms - QUARANTINE_MEMORY_MS
        ]
        added = [(d, now_ms) for d in dict.fromkeys(digests) if not self.knows_quarantined(d)]
        merged = sorted(kept + added, key=lambda entry: entry[1])
        return replace(self, quarantined=tuple(merged[-MAX_QUARANTINED:]))


def _narrow(recent: list[tuple[int, str]]) -> tuple[int, list[tuple[int, str]]]:
    # Keep the newest MAX_RECENT entries, widened to a whole date so the floor never splits a tie.
    cut = len(recent) - MAX_RECENT
    date = recent[cut][0]
    while cut > 0 and recent[cut - 1][0] == date:
        cut -= 1
    return date, recent[cut:]


# -- the outbox ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pending:
    """A batch handed to the destinations but not yet committed (a write-ahead intent).

    If the run dies before the commit, the next run redelivers exactly these events under the same
    batch id, and the destinations skip what they already hold.
    """

    batch_id: str
    log_ids: frozenset[str]
    # The run that wrote the intent is delivering it until then (its invocation's end). Another
    # run must not redeliver it before: the batch may still be on its way. 0 = released.
    lease_until_ms: int = 0
    # When the intent was first written: the earliest a destination can have stamped its lines.
    written_ms: int = 0
    # The S3 object (sinks/objects.py) the batch shares with other users' batches of its push:
    # a redelivery writes its lines under that object's key, where the push may have put them.
    # None: an object of the user's own, named by the batch id.
    shared_object: str | None = None

    def leased_at(self, now_ms: int) -> bool:
        return self.lease_until_ms > now_ms


@dataclass(frozen=True, slots=True)
class Outbox:
    """The batches handed to the destinations and not yet committed: their write-ahead intents."""

    pending: tuple[Pending, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.pending)

    @property
    def log_ids(self) -> frozenset[str]:
        return frozenset(log_id for p in self.pending for log_id in p.log_ids)

    def with_pending(self, pending: Pending) -> Outbox:
        """Add (or replace, by batch id) an intent; one with no ids left is dropped."""
        others = tuple(p for p in self.pending if p.batch_id != pending.batch_id)
        return Outbox(others + ((pending,) if pending.log_ids else ()))

    def leased_until(self, now_ms: int, *, ours: Collection[str] = ()) -> int | None:
        """Until when another run holds an intent of this user's (None: nobody does); `ours`:
        batch ids whose intent the asking session wrote itself."""
        leases = [
            p.lease_until_ms for p in self.pending if p.leased_at(now_ms) and p.batch_id not in ours
        ]
        return max(leases) if leases else None

    def released(self) -> Outbox:
        """Every intent's lease given up: a run that stops delivering says so at once."""
        return Outbox(tuple(replace(p, lease_until_ms=0) for p in self.pending))


# -- the stream seat -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamSeat:
    """A user's place on the tenant stream, while the forwarder reads Auth0 by checkpoint.

    `pos`: every event of the user with a log_id up to here was forwarded or deliberately
    passed over. The stream returns each log_id once in log_id order, so an event at or below
    it is one a run already delivered (a stream window read again after a crash) and is dropped.

    `joined_ms`: when the user joined. The events its last per-user read could see were forwarded
    or deliberately left below the floor, and their log_ids may lie past `pos`; they end, at the
    latest, where the first complete stream read started after `joined_ms` ended. Up to there the
    floor still decides (the tenant item keeps where those reads ended); past it, a late event is
    forwarded whatever its date, since a larger log_id proves it was not seen.

    `epoch`: the stream era the seat belongs to. Each switch to the stream starts a new one, so a
    seat left from an earlier era (per-user reads have moved the cursor since) is void.

    `above`: log_ids past `pos` already delivered: the batches of a window committed before
    another batch of it failed. The seat stays before the window, which is read again; `recent`
    cannot tell these events apart, since it forgets what is older than the overlap window.
    """

    epoch: int
    joined_ms: int
    pos: str
    above: frozenset[str] = frozenset()

    def holds(self, log_id: str) -> bool:
        """Whether the event was delivered (or passed over) while the user held this seat."""
        return log_id <= self.pos or log_id in self.above

    def moved_to(self, position: str) -> StreamSeat:
        """Past a window: its events are delivered (or the window had none)."""
        if position <= self.pos:
            return self
        return replace(self, pos=position, above=frozenset(i for i in self.above if i > position))

    def with_delivered(self, log_ids: Iterable[str]) -> StreamSeat:
        """A batch committed: its events stay known until the seat passes them, whatever their
        dates (see `above`)."""
        past = {log_id for log_id in log_ids if log_id > self.pos}
        return replace(self, above=self.above | past) if past else self


# -- the operator's status -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UserStatus:
    """What the operator is told about a user: backlog, totals and whether Auth0 knows the user."""

    # The user's history is not read to its newest event yet (a search continues next run).
    backlog: bool = False
    forwarded_total: int = 0
    gaps_total: int = 0
    # When Auth0 first answered that the user does not exist (deleted, or never existed).
    missing_since_ms: int | None = None
    # The last gap recorded (from, to, reason), and why the user's last run failed and when
    # (cleared by the next complete read).
    last_gap: tuple[int | None, int, str] | None = None
    last_error: str | None = None
    last_error_ms: int | None = None
    # When the last read of the user that reached its newest event started: moved in steps of
    # VERIFIED_STEP_MS (with `verified_ms`, so an idle user costs no more writes), exactly when
    # the checkpoint is written anyway. Unchanged by a run that could not read the user.
    last_read_ms: int | None = None
    # What GET /api/v2/users/{id} last said of the user ("known", "unknown", "unverified: why";
    # user_lookup.py), and when: asked when the user is new, then once a day at most.
    lookup: str | None = None
    looked_up_ms: int | None = None

    def read_at(self, started_ms: int, *, exact: bool = False) -> UserStatus:
        """A read started at `started_ms` reached the newest event."""
        last = self.last_read_ms
        if not exact and last is not None and started_ms < last + VERIFIED_STEP_MS:
            return self
        return replace(self, last_read_ms=started_ms)

    def counted(self, forwarded: int) -> UserStatus:
        return (
            replace(self, forwarded_total=self.forwarded_total + forwarded) if forwarded else self
        )

    def with_gap(self, gap: Gap) -> UserStatus:
        return replace(
            self, gaps_total=self.gaps_total + 1, last_gap=(gap.from_ms, gap.to_ms, gap.reason)
        )

    def with_error(self, error: str, now_ms: int) -> UserStatus:
        """The user's run failed (`error` names why): kept until a read completes."""
        return replace(self, last_error=error[:MAX_ERROR_CHARS], last_error_ms=now_ms)

    def without_error(self) -> UserStatus:
        """A read reached the newest event: whatever failed before does not any more."""
        return replace(self, last_error=None, last_error_ms=None) if self.last_error else self

    def looked_up(self, lookup: str, now_ms: int) -> UserStatus:
        return replace(self, lookup=lookup[:300], looked_up_ms=now_ms)

    def with_missing_since(self, now_ms: int | None) -> UserStatus:
        """Auth0 says the user does not exist (since `now_ms`), or exists again (None)."""
        if now_ms is not None and self.missing_since_ms is not None:
            return self
        return replace(self, missing_since_ms=now_ms)


# -- the whole state -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Cursor:
    """A user's whole checkpoint: read position, outbox, stream seat, status and rule state."""

    position: ReadPosition = field(default_factory=ReadPosition)
    outbox: Outbox = field(default_factory=Outbox)
    # Its place on the tenant stream (None: read per user).
    seat: StreamSeat | None = None
    status: UserStatus = field(default_factory=UserStatus)
    # The detection rules' state (detections.DetectionState), opaque here.
    detections: Mapping[str, Any] | None = None

    @classmethod
    def fresh(cls, floor_ms: int | None, *, backlog: bool = False) -> Cursor:
        return cls(ReadPosition(floor_ms=floor_ms), status=UserStatus(backlog=backlog))

    def on_stream(self, epoch: int) -> bool:
        return self.seat is not None and self.seat.epoch == epoch

    def released(self) -> Cursor:
        return replace(self, outbox=self.outbox.released())

    def with_pushed(
        self, memory: PushedMemory, from_ms: int | None = None, *, recover_lost: bool = False
    ) -> Cursor:
        """The cursor with what the pushed-events table holds from `from_ms` (its floor) on. A
        pending batch recorded there was delivered (a push died between that record and its
        commit): it is done, not pending. A pending batch not recorded there is not the
        table's: a push's intent raised `pushed_until` for it before it died, so `pushed_until`
        comes back to the newest date the table holds (what it means), and a table holding
        nothing it says it holds is told apart from one such push (missing_pushed).

        `recover_lost` (a push with nothing pending): a batch recorded with events newer than
        `pushed_until` lost its commit too, though no intent says so (a batch of records
        alone has none); the cursor stands where its commit would have left it."""
        done = memory.batch_ids
        outbox = Outbox(tuple(p for p in self.outbox.pending if p.batch_id not in done))
        cursor = self
        for pending in self.outbox.pending:
            settled = memory.settled.get(pending.batch_id)
            if pending.batch_id in done and settled is not None:
                cursor = cursor.settled(settled)
        if recover_lost and not self.outbox.pending:
            cursor = cursor._past_lost_commits(memory)
        position = replace(cursor.position, pushed=memory)
        if outbox.pending:
            newest = max((date for date, _ in memory.entries), default=None)
            if newest is None and from_ms is not None:
                newest = from_ms - 1
            until = position.pushed_until_ms
            if until is not None and (newest is None or newest < until):
                position = replace(position, pushed_until_ms=newest)
        return replace(cursor, position=position, outbox=outbox)

    def _past_lost_commits(self, memory: PushedMemory) -> Cursor:
        known = self.position.pushed_until_ms
        cursor = self
        for key in sorted(set(memory.batches.values())):
            newest, batch_id = parse_batch_key(key)
            settled = memory.settled.get(batch_id)
            if (known is None or newest > known) and settled is not None:
                cursor = cursor.settled(settled)
                until = max(newest, cursor.position.pushed_until_ms or newest)
                cursor = replace(cursor, position=replace(cursor.position, pushed_until_ms=until))
        return cursor

    def settled(self, settled: Mapping[str, Any]) -> Cursor:
        """The cursor with what a push's lost commit would have settled (settled_by): the load
        that finds the batch recorded stands where that commit would have left it."""
        quarantined = tuple((str(d), int(t)) for d, t in settled.get("quarantined", ()))
        position = replace(self.position, quarantined=quarantined)
        status = replace(self.status, forwarded_total=int(settled["forwarded_total"]))
        return replace(self, position=position, status=status, detections=settled["detections"])

    def missing_pushed(self, from_ms: int | None, now_ms: int) -> bool:
        """Whether the pushed-events table, read from `from_ms` on (with_pushed), lacks what the
        checkpoint says it holds: `pushed_until` at or past `from_ms`, not expired yet (DynamoDB's
        TTL deletes a batch PUSHED_MEMORY_MS after its newest event), no pending batch to
        explain it, and not one batch there. A table replaced by a new one answers that way."""
        position = self.position
        return (
            position.pushed_since(from_ms)
            and not position.pushed_forgotten(now_ms)
            and not self.outbox.pending
            and not position.pushed.entries
        )

    def to_state(self) -> dict[str, Any]:
        return CURSOR_STATE.encode(self)

    @classmethod
    def from_state(cls, state: Mapping[str, Any], *, item: str = "checkpoint") -> Cursor:
        """A stored cursor, upgraded from the version that wrote it (codec.py);
        CheckpointStateError names the item and the key, NewerStateError a newer release's."""
        return CURSOR_STATE.decode(state, item=item)

    def summary(self) -> dict[str, str | int | bool | None]:
        """Readable attributes stored beside the state, for operators browsing the table."""
        position, status = self.position, self.status
        anchor = position.anchor
        return {
            "watermark": iso_ms(position.watermark_ms),
            "floor": iso_ms(position.floor_ms),
            "last_log_id": anchor[1] if anchor else None,
            "backlog": status.backlog,
            "pending_events": sum(len(p.log_ids) for p in self.outbox.pending),
            "forwarded_total": status.forwarded_total,
            "gaps_total": status.gaps_total,
            "quarantined_total": len(position.quarantined),
            "missing_since": iso_ms(status.missing_since_ms),
            "last_gap_from": iso_ms(status.last_gap[0]) if status.last_gap else None,
            "last_gap_to": iso_ms(status.last_gap[1]) if status.last_gap else None,
            "last_gap_reason": status.last_gap[2] if status.last_gap else None,
            "last_error": status.last_error,
            "last_error_at": iso_ms(status.last_error_ms),
            "last_read": iso_ms(status.last_read_ms),
            "user_lookup": status.lookup,
            "user_lookup_at": iso_ms(status.looked_up_ms),
            "stream_position": self.seat.pos if self.seat else None,
            "stream_epoch": self.seat.epoch if self.seat else None,
        }


def settled_by(after: Cursor) -> dict[str, Any]:
    """What a push's commit settles besides its events, for the pushed-events table to carry
    (pushed.py): written with the batch's record, it lets a load that finds the batch recorded
    and its commit lost stand where the commit would have (Cursor.settled). The rules' state is
    opaque here, and is carried whole."""
    return {
        "detections": after.detections,
        "forwarded_total": after.status.forwarded_total,
        "quarantined": [list(entry) for entry in after.position.quarantined],
    }


# -- the stored form ------------------------------------------------------------------------------


def _cursor_from_v1(state: dict[str, Any]) -> dict[str, Any]:
    """v1 named more than one shape: the first releases kept the one pending intent as an object
    (null: none), later ones a list; lists were read with null for empty, a detection state that
    was not an object as none; keys were added without a new number (a missing one takes its
    default, as in v2). v2 is the shape of the last v1 writers, every key always written."""
    upgraded = dict(state)
    pending = state.get("pending")
    if pending is None or isinstance(pending, Mapping):
        upgraded["pending"] = [] if pending is None else [pending]
    for key in ("ahead", "quarantined"):
        if key in state and state[key] is None:
            upgraded[key] = []
    seat = state.get("seat")
    if isinstance(seat, Mapping) and seat.get("above", ()) is None:
        upgraded["seat"] = {**seat, "above": []}
    if not isinstance(state.get("detections"), Mapping):
        upgraded["detections"] = None
    return upgraded


def _cursor_from_v2(state: dict[str, Any]) -> dict[str, Any]:
    """v3 only adds `pushed_until` (absent: nothing recorded in the pushed-events table)."""
    return state


def _cursor_from_v3(state: dict[str, Any]) -> dict[str, Any]:
    """v4 only adds a pending batch's `object` (absent: an object of the user's own)."""
    return state


def _reader_needed(cursor: Cursor) -> int:
    """The oldest release that reads `cursor` without repeating or losing an event."""
    if any(p.shared_object is not None for p in cursor.outbox.pending):
        return 4
    return 1 if cursor.position.pushed_until_ms is None else 3


_DATED_IDS = items(row(INT, STR), ordered=True, most=MAX_RECENT_STORED)
OPTIONAL_INT = optional(INT)

CURSOR_STATE: Schema[Cursor] = Schema(
    "checkpoint state",
    Record(
        Cursor,
        Inline(
            "position",
            Record(
                ReadPosition,
                Key("floor", "floor_ms", OPTIONAL_INT),
                Key("watermark", "watermark_ms", OPTIONAL_INT),
                Key("recent", "recent", _DATED_IDS),
                Key("verified", "verified_ms", OPTIONAL_INT),
                Key("quarantined", "quarantined", items(row(STR, INT), most=MAX_QUARANTINED)),
                Key("ahead", "ahead", _DATED_IDS),
                Key("pushed_until", "pushed_until_ms", OPTIONAL_INT),
            ),
        ),
        Inline(
            "outbox",
            Record(
                Outbox,
                Key(
                    "pending",
                    "pending",
                    items(
                        Record(
                            Pending,
                            Key("batch_id", "batch_id", STR),
                            Key("log_ids", "log_ids", set_of(STR)),
                            Key("lease", "lease_until_ms", INT),
                            Key("at", "written_ms", INT),
                            Key("object", "shared_object", optional(STR), omit_none=True),
                        )
                    ),
                ),
            ),
        ),
        Key(
            "seat",
            "seat",
            optional(
                Record(
                    StreamSeat,
                    Key("epoch", "epoch", INT),
                    Key("joined", "joined_ms", INT),
                    Key("pos", "pos", STR),
                    Key("above", "above", set_of(STR)),
                )
            ),
        ),
        Inline(
            "status",
            Record(
                UserStatus,
                Key("backlog", "backlog", BOOL),
                Key("forwarded_total", "forwarded_total", INT),
                Key("gaps_total", "gaps_total", INT),
                Key("missing_since", "missing_since_ms", OPTIONAL_INT),
                Key("last_gap", "last_gap", optional(row(OPTIONAL_INT, INT, STR))),
                Key("last_error", "last_error", optional(text(MAX_ERROR_CHARS))),
                Key("last_error_at", "last_error_ms", OPTIONAL_INT),
                Key("last_read", "last_read_ms", OPTIONAL_INT),
                Key("lookup", "lookup", optional(STR)),
                Key("looked_up", "looked_up_ms", OPTIONAL_INT),
            ),
        ),
        Key(
            "detections",
            "detections",
            # Advisory: one that cannot be read starts empty, as v1 read it (a newer release's
            # still refuses the checkpoint: writing it would lose what that release keeps).
            optional(versioned(DETECTION_STATE, "its detection rules' state", lenient=True)),
        ),
    ),
    version=4,
    # v2 is v1's last shape: the releases that read only v1 read it as they always did. v3 adds
    # `pushed_until`: once set, what the real-time path delivered is known only from the
    # pushed-events table, which a release before v3 does not read (it would deliver those
    # events again), so such an item needs a v3 reader; one that never met a push does not.
    # v4 adds a pending batch's shared S3 object: a release before it would redeliver such a
    # batch under a key of the user's own, beside the push's object that may hold it already.
    readable_from=1,
    upgrades={1: _cursor_from_v1, 2: _cursor_from_v2, 3: _cursor_from_v3},
    needs_reader=_reader_needed,
    hint="delete the item's `state` and `version` attributes to restart this user",
)
