"""The per-user cursor: which events are new, in which order, and where the next read starts.

Auth0 log events arrive late, share dates down to the millisecond, and repeat. A cursor that only
remembered "the newest date forwarded" would lose the late ones, so this one keeps:

- `floor_ms`: nothing dated before it is ever forwarded again. The next read covers [floor, now].
- `recent`: every (date, log_id) forwarded at or after the floor. Re-reading the window finds late
  events (not in `recent`) and drops repeats (in `recent`).
- `watermark_ms`: the newest date forwarded. After each delivery the floor moves up to
  `watermark - overlap`, so an event that becomes visible up to `overlap` late is still caught.

Everything here is pure: no clock, no I/O. The forwarder feeds it what Auth0 returned and
commits the cursor it gets back only after the destinations have accepted the lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .events import LogEvent, iso_ms
from .exceptions import CheckpointStateError
from .records import Gap

__all__ = ["Cursor", "Gap", "Pending", "Selection", "StreamSeat"]

STATE_VERSION = 1
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

    def leased_at(self, now_ms: int) -> bool:
        return self.lease_until_ms > now_ms


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


@dataclass(frozen=True, slots=True)
class Selection:
    """What one read contributes: the new events in forwarding order, and what was dropped."""

    new: list[LogEvent]
    duplicates: int = 0
    below_floor: int = 0
    late: int = 0
    max_lateness_ms: int = 0


@dataclass(frozen=True, slots=True)
class Cursor:
    floor_ms: int | None = None
    watermark_ms: int | None = None
    recent: tuple[tuple[int, str], ...] = ()
    pending: tuple[Pending, ...] = ()
    backlog: bool = False
    forwarded_total: int = 0
    gaps_total: int = 0
    # Every event dated before this was visible to a complete read (read start − overlap).
    verified_ms: int | None = None
    # (digest, first seen) of malformed entries already written to the destinations.
    quarantined: tuple[tuple[str, int], ...] = ()
    # When Auth0 first answered that the user does not exist (deleted, or never existed).
    missing_since_ms: int | None = None
    # The detection rules' state (detections.DetectionState), opaque here.
    detections: Mapping[str, Any] | None = field(default=None, compare=True)
    # For `status`: the last gap recorded (from, to, reason), and why the user's last run
    # failed and when (cleared by the next complete read).
    last_gap: tuple[int | None, int, str] | None = None
    last_error: str | None = None
    last_error_ms: int | None = None
    # Its place on the tenant stream (None: read per user).
    seat: StreamSeat | None = None

    @classmethod
    def fresh(cls, floor_ms: int | None) -> Cursor:
        return cls(floor_ms=floor_ms)

    @property
    def at_capacity(self) -> bool:
        """`recent` hit its cap, so the overlap window for this user is narrower than configured."""
        return len(self.recent) >= MAX_RECENT

    @property
    def anchor(self) -> tuple[int, str] | None:
        """The newest event forwarded, dated no later than the watermark (an event dated in the
        future would stay retained for longer and hide what expired before it). While Auth0
        still returns the anchor, nothing after it expired."""
        if self.watermark_ms is None:
            return self.recent[-1] if self.recent else None
        dated = [entry for entry in self.recent if entry[0] <= self.watermark_ms]
        return dated[-1] if dated else None

    def select(self, events: Iterable[LogEvent]) -> Selection:
        """The events of a read that are new, in ascending (date, log_id) order."""
        known = {log_id for _, log_id in self.recent}
        new: dict[str, LogEvent] = {}
        duplicates = below_floor = 0
        for event in events:
            if self.floor_ms is not None and event.date_ms < self.floor_ms:
                below_floor += 1
            elif event.log_id in known or event.log_id in new:
                duplicates += 1
            else:
                new[event.log_id] = event
        return self._selection(new.values(), duplicates, below_floor)

    def select_stream(self, events: Iterable[LogEvent], *, floor_until: str) -> Selection:
        """The new events of a stream window, in ascending (date, log_id) order.

        Dedupe is by log_id: at or below the seat's `pos` (a window read again), in its `above`
        (delivered from a window read again), or remembered in `recent` (forwarded by a per-user
        read). The floor drops an event only up to `floor_until`, the log_ids the user's last
        per-user read may have seen; past it an event dated below the floor is a late one nobody
        forwarded, and it is forwarded.
        """
        seat = self.seat
        assert seat is not None, "a stream window for a user with no seat"
        known = {log_id for _, log_id in self.recent} | seat.above
        new: dict[str, LogEvent] = {}
        duplicates = below_floor = 0
        for event in events:
            floored = self.floor_ms is not None and event.date_ms < self.floor_ms
            if event.log_id <= seat.pos or event.log_id in known or event.log_id in new:
                duplicates += 1
            elif floored and event.log_id <= floor_until:
                below_floor += 1
            else:
                new[event.log_id] = event
        return self._selection(new.values(), duplicates, below_floor)

    def _selection(self, new: Iterable[LogEvent], duplicates: int, below_floor: int) -> Selection:
        """New events, ordered, with those dated below the watermark counted as late."""
        ordered = sorted(new, key=lambda e: e.key)
        watermark = self.watermark_ms
        if watermark is None:
            return Selection(ordered, duplicates, below_floor)
        lateness = [watermark - e.date_ms for e in ordered if e.date_ms < watermark]
        return Selection(ordered, duplicates, below_floor, len(lateness), max(lateness, default=0))

    def with_seat(self, seat: StreamSeat | None) -> Cursor:
        return replace(self, seat=seat)

    def at_stream_position(self, position: str) -> Cursor:
        """The seat moved past a window: its events are delivered (or the window had none)."""
        assert self.seat is not None
        if position <= self.seat.pos:
            return self
        above = frozenset(log_id for log_id in self.seat.above if log_id > position)
        return replace(self, seat=replace(self.seat, pos=position, above=above))

    def with_stream_delivered(self, log_ids: Iterable[str]) -> Cursor:
        """A batch of a stream window committed: its events stay known until the seat passes
        them, whatever their dates (see StreamSeat.above)."""
        if self.seat is None:
            return self
        past = {log_id for log_id in log_ids if log_id > self.seat.pos}
        if not past:
            return self
        return replace(self, seat=replace(self.seat, above=self.seat.above | past))

    def off_stream(self, verified_ms: int | None) -> Cursor:
        """Read per user from now on: the seat goes; `verified_ms` (what the stream verified for
        this user, if anything) counts as verified."""
        verified = self.verified_ms
        if verified_ms is not None:
            verified = verified_ms if verified is None else max(verified, verified_ms)
        return replace(self, seat=None, verified_ms=verified)

    def on_stream(self, epoch: int) -> bool:
        return self.seat is not None and self.seat.epoch == epoch

    def advance(
        self,
        delivered: Sequence[LogEvent],
        *,
        overlap_ms: int,
        read_started_ms: int,
        forwarded: int | None = None,
    ) -> Cursor:
        """The cursor after `delivered` was accepted by every destination (`forwarded` of them
        were written; the others were kept out by a filter, and are remembered all the same).

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
        recent = sorted({*self.recent, *(e.key for e in delivered)})
        recent = [entry for entry in recent if entry[0] >= floor]
        if len(recent) > MAX_RECENT:
            floor, recent = _narrow(recent)
        return replace(
            self,
            floor_ms=floor,
            watermark_ms=watermark,
            recent=tuple(recent),
            forwarded_total=self.forwarded_total
            + (len(delivered) if forwarded is None else forwarded),
        )

    def after_gap(self, gap: Gap) -> Cursor:
        floor = gap.to_ms if self.floor_ms is None else max(self.floor_ms, gap.to_ms)
        return replace(
            self,
            floor_ms=floor,
            recent=tuple(entry for entry in self.recent if entry[0] >= floor),
            gaps_total=self.gaps_total + 1,
            last_gap=(gap.from_ms, gap.to_ms, gap.reason),
        )

    def after_complete_read(self, read_started_ms: int, *, overlap_ms: int) -> Cursor:
        """Move the floor, and what is verified, with time once a read reached the newest event.

        An event visible by `read_started_ms` was returned by that read, and an event can show up
        at most `overlap_ms` after its date, so nothing dated before `read_started_ms - overlap_ms`
        can still appear. The floor stops at the watermark so the anchor stays remembered.
        Without this, a user who goes quiet after a burst would re-read the burst every run.
        Returns the same cursor when nothing worth a checkpoint write changed.
        """
        verified = read_started_ms - overlap_ms
        # A read reached the newest event: whatever failed before does not any more.
        cursor = replace(self, last_error=None, last_error_ms=None) if self.last_error else self
        if self.verified_ms is None or verified >= self.verified_ms + VERIFIED_STEP_MS:
            cursor = replace(cursor, verified_ms=verified)
        floor = verified if self.watermark_ms is None else min(verified, self.watermark_ms)
        if not self.recent or self.recent[0][0] >= floor:
            return cursor
        return replace(
            cursor,
            floor_ms=floor,
            recent=tuple(entry for entry in self.recent if entry[0] >= floor),
        )

    def with_pending(self, pending: Pending) -> Cursor:
        """Add (or replace, by batch id) an intent; one with no ids left is dropped."""
        others = tuple(p for p in self.pending if p.batch_id != pending.batch_id)
        return replace(self, pending=others + ((pending,) if pending.log_ids else ()))

    def leased_until(self, now_ms: int) -> int | None:
        """Until when another run holds an intent of this user's (None: nobody does)."""
        leases = [p.lease_until_ms for p in self.pending if p.leased_at(now_ms)]
        return max(leases) if leases else None

    def released(self) -> Cursor:
        """Every intent's lease given up: a run that stops delivering says so at once."""
        return replace(self, pending=tuple(replace(p, lease_until_ms=0) for p in self.pending))

    def knows_quarantined(self, digest: str) -> bool:
        return any(known == digest for known, _ in self.quarantined)

    def with_quarantined(
        self, digests: Iterable[str], *, now_ms: int, seen: Iterable[str] = ()
    ) -> Cursor:
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

    def with_detections(self, state: Mapping[str, Any]) -> Cursor:
        return replace(self, detections=dict(state))

    def with_missing_since(self, now_ms: int | None) -> Cursor:
        """Auth0 says the user does not exist (since `now_ms`), or exists again (None)."""
        if now_ms is not None and self.missing_since_ms is not None:
            return self
        return replace(self, missing_since_ms=now_ms)

    def with_backlog(self, backlog: bool) -> Cursor:
        return replace(self, backlog=backlog)

    def with_error(self, error: str, now_ms: int) -> Cursor:
        """The user's run failed (`error` names why): kept until a read completes."""
        return replace(self, last_error=error[:500], last_error_ms=now_ms)

    def to_state(self) -> dict[str, Any]:
        return {
            "v": STATE_VERSION,
            "floor": self.floor_ms,
            "watermark": self.watermark_ms,
            "recent": [[date, log_id] for date, log_id in self.recent],
            "pending": [
                {
                    "batch_id": p.batch_id,
                    "log_ids": sorted(p.log_ids),
                    "lease": p.lease_until_ms,
                    "at": p.written_ms,
                }
                for p in self.pending
            ],
            "backlog": self.backlog,
            "forwarded_total": self.forwarded_total,
            "gaps_total": self.gaps_total,
            "verified": self.verified_ms,
            "quarantined": [[digest, seen] for digest, seen in self.quarantined],
            "missing_since": self.missing_since_ms,
            "detections": self.detections,
            "last_gap": list(self.last_gap) if self.last_gap else None,
            "last_error": self.last_error,
            "last_error_at": self.last_error_ms,
            "seat": None
            if self.seat is None
            else {
                "epoch": self.seat.epoch,
                "joined": self.seat.joined_ms,
                "pos": self.seat.pos,
                "above": sorted(self.seat.above),
            },
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> Cursor:
        if state.get("v") != STATE_VERSION:
            raise CheckpointStateError(
                f"checkpoint state version {state.get('v')!r} is not {STATE_VERSION}"
            )
        try:
            return cls._from_valid_state(state)
        except (KeyError, TypeError, ValueError) as error:
            raise CheckpointStateError(
                f"checkpoint state is invalid ({type(error).__name__}: {error}); delete the "
                "item's `state` and `version` attributes to restart this user"
            ) from error

    @classmethod
    def _from_valid_state(cls, state: Mapping[str, Any]) -> Cursor:
        return cls(
            floor_ms=_optional_int(state.get("floor")),
            watermark_ms=_optional_int(state.get("watermark")),
            recent=tuple(
                sorted((int(date), str(log_id)) for date, log_id in state.get("recent", []))
            ),
            pending=tuple(
                Pending(
                    str(p["batch_id"]),
                    frozenset(map(str, p["log_ids"])),
                    int(p.get("lease", 0)),
                    int(p.get("at", 0)),
                )
                for p in state.get("pending") or ()
            ),
            backlog=bool(state.get("backlog", False)),
            forwarded_total=int(state.get("forwarded_total", 0)),
            gaps_total=int(state.get("gaps_total", 0)),
            verified_ms=_optional_int(state.get("verified")),
            quarantined=tuple(
                (str(digest), int(seen)) for digest, seen in state.get("quarantined") or ()
            ),
            missing_since_ms=_optional_int(state.get("missing_since")),
            detections=state.get("detections")
            if isinstance(state.get("detections"), dict)
            else None,
            last_gap=_gap_of(state.get("last_gap")),
            last_error=None if state.get("last_error") is None else str(state["last_error"]),
            last_error_ms=_optional_int(state.get("last_error_at")),
            seat=_seat(state.get("seat")),
        )

    def summary(self) -> dict[str, str | int | bool | None]:
        """Readable attributes stored beside the state, for operators browsing the table."""
        anchor = self.anchor
        return {
            "watermark": iso_ms(self.watermark_ms),
            "floor": iso_ms(self.floor_ms),
            "last_log_id": anchor[1] if anchor else None,
            "backlog": self.backlog,
            "pending_events": sum(len(p.log_ids) for p in self.pending),
            "forwarded_total": self.forwarded_total,
            "gaps_total": self.gaps_total,
            "quarantined_total": len(self.quarantined),
            "missing_since": iso_ms(self.missing_since_ms),
            "last_gap_from": iso_ms(self.last_gap[0]) if self.last_gap else None,
            "last_gap_to": iso_ms(self.last_gap[1]) if self.last_gap else None,
            "last_gap_reason": self.last_gap[2] if self.last_gap else None,
            "last_error": self.last_error,
            "last_error_at": iso_ms(self.last_error_ms),
            "stream_position": self.seat.pos if self.seat else None,
        }


def _narrow(recent: list[tuple[int, str]]) -> tuple[int, list[tuple[int, str]]]:
    # Keep the newest MAX_RECENT entries, widened to a whole date so the floor never splits a tie.
    cut = len(recent) - MAX_RECENT
    date = recent[cut][0]
    while cut > 0 and recent[cut - 1][0] == date:
        cut -= 1
    return date, recent[cut:]


def _gap_of(value: object) -> tuple[int | None, int, str] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise ValueError(f"last_gap is {value!r}, expected [from, to, reason]")
    return (_optional_int(value[0]), int(value[1]), str(value[2]))


def _seat(value: Any) -> StreamSeat | None:
    if value is None:
        return None
    above = frozenset(str(log_id) for log_id in value.get("above") or ())
    return StreamSeat(int(value["epoch"]), int(value["joined"]), str(value["pos"]), above)


def _optional_int(value: object) -> int | None:
    return None if value is None else int(value)  # type: ignore[call-overload]
