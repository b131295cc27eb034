"""One S3 object for the batches of all the users a push delivers side by side (issue #25: under
a burst, an object per user and batch was most of the S3 bill, and made the Athena table a
small-files table).

Each of a push attempt's sessions takes a seat before it plans (`Gathering.seat`): the seat names
its wave's object, which the session's new intent records (Pending.shared_object), so any later
redelivery writes where the push did. At an object sink (one that delivers together,
objects.py), a batch naming that object waits until every session seated in its wave has
arrived there too, or left; then one of them puts the wave's batches in one object a day, and
each session hears its own report.

    A ─ intent names K ─ CloudWatch ─┐
    B ─ intent names K ─ CloudWatch ─┼─ S3: one PUT of K (A, B and C's lines) ─ each commits
    C ─ intent names K ─ CloudWatch ─┘
    D ─ busy: no intent, leaves ──────  nobody waits for it

The delivery protocol is unchanged: a batch whose put failed or lost its answer is pending with
K in its intent, and its redelivery finds its lines in K, or puts them there if K is absent, or
writes what K lacks under a key of its own (objects.py). A batch that arrives once its wave's
put has started (a session's second batch) goes the same way, alone. A session waits no longer
than its deadline leaves for the put itself.
"""

from __future__ import annotations

import copy
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from log_forwarder.exceptions import OutOfTime
from log_forwarder.records import Delivery, DeliveryReport
from log_forwarder.retry import AWS_ATTEMPT_S
from log_forwarder.sinks import PrefixedSink, Sink
from log_forwarder.sinks.objects import ObjectSink

__all__ = ["Gathering"]

DeliverTogether = Callable[[Sequence[Delivery]], list[DeliveryReport]]


def new_object_id() -> str:
    """A shared object's id: 64 random bits. Two waves given one id cost nothing but a read (the
    second put finds the key taken and writes what it lacks beside it)."""
    return secrets.token_hex(8)


@dataclass
class _Put:
    """One wave's batches at one sink, and what became of them."""

    deliveries: dict[str, Delivery] = field(default_factory=dict)  # by user
    started: bool = False
    reports: dict[str, DeliveryReport] | None = None
    error: BaseException | None = None

    @property
    def done(self) -> bool:
        return self.reports is not None or self.error is not None


@dataclass
class _Wave:
    """The sessions seated together, who share one object."""

    object_id: str
    seated: set[str] = field(default_factory=set)
    closed: bool = False  # a put started: later sessions take the next wave
    puts: dict[str, _Put] = field(default_factory=dict)  # by sink name


class Gathering:
    """The waves of one push attempt. `sinks` wraps the object sinks among the attempt's
    destinations; `seat` and `leave` bracket each session's delivery."""

    def __init__(self, new_id: Callable[[], str] = new_object_id) -> None:
        self._changed = threading.Condition()
        self._new_id = new_id
        self._open: _Wave | None = None
        self._seats: dict[str, _Wave] = {}

    def seat(self, user_id: str) -> str:
        """A seat in the open wave (a new one once a put started): the object it shares. The
        sessions that start together are seated before any of them starts (a session fast to
        reach S3 would otherwise find itself alone in its wave); a seated user keeps its seat."""
        with self._changed:
            if user_id in self._seats:
                return self._seats[user_id].object_id
            wave = self._open
            if wave is None or wave.closed:
                wave = self._open = _Wave(self._new_id())
            wave.seated.add(user_id)
            self._seats[user_id] = wave
            return wave.object_id

    def leave(self, user_id: str) -> None:
        """The session delivers nothing more: nobody waits for it."""
        with self._changed:
            wave = self._seats.pop(user_id, None)
            if wave is not None:
                wave.seated.discard(user_id)
                self._changed.notify_all()

    def sinks(self, sinks: Sequence[Sink]) -> list[Sink]:
        """`sinks`, each that can deliver together gathering its batches."""
        wrapped: list[Sink] = []
        for sink in sinks:
            together = _together(sink)
            wrapped.append(_Gathered(sink, together, self) if together is not None else sink)
        return wrapped

    def deliver(self, sink: Sink, together: DeliverTogether, delivery: Delivery) -> DeliveryReport:
        user = delivery.user_id
        with self._changed:
            wave = self._seats.get(user)
            put = wave.puts.setdefault(sink.name, _Put()) if wave is not None else None
            if (
                wave is None
                or put is None
                or put.started
                or wave.object_id != delivery.shared_object
                or user in put.deliveries
            ):
                put = None
            else:
                put.deliveries[user] = delivery
                self._changed.notify_all()
        if put is None or wave is None:
            return sink.deliver(delivery)  # alone: a redelivery, or after its wave's put
        leads = self._wait(wave, put, delivery)
        if leads:
            return self._lead(put, together, user)
        if put.error is not None:
            raise _again(put.error)
        assert put.reports is not None
        return put.reports[user]

    def _wait(self, wave: _Wave, put: _Put, delivery: Delivery) -> bool:
        """Until the wave's put is done (False), or this session is the one to make it (True)."""
        with self._changed:
            while not put.done:
                if not put.started and wave.seated <= put.deliveries.keys():
                    put.started = wave.closed = True
                    return True
                left = delivery.deadline.left_s() - AWS_ATTEMPT_S
                if not put.started and left <= 0:
                    # Not waited for any longer: the batch stays pending, its intent naming
                    # the object, which a redelivery finds whether or not the wave put it.
                    del put.deliveries[delivery.user_id]
                    wave.seated.discard(delivery.user_id)
                    self._changed.notify_all()
                    raise OutOfTime(
                        "the other users' batches of this push did not reach "
                        f"{delivery.user_id!r}'s shared object in time; the batch resumes later"
                    )
                self._changed.wait(timeout=max(0.05, min(left, 1.0)) if not put.started else 1.0)
            return False

    def _lead(self, put: _Put, together: DeliverTogether, user: str) -> DeliveryReport:
        users = list(put.deliveries)
        try:
            reports = together([put.deliveries[u] for u in users])
        except BaseException as error:
            with self._changed:
                put.error = error
                self._changed.notify_all()
            raise
        with self._changed:
            put.reports = dict(zip(users, reports, strict=True))
            self._changed.notify_all()
        return put.reports[user]


class _Gathered:
    """An object sink whose batches wait for their wave (Gathering.deliver)."""

    def __init__(self, inner: Sink, together: DeliverTogether, gathering: Gathering) -> None:
        self.name = inner.name
        self._inner = inner
        self._together = together
        self._gathering = gathering

    def deliver(self, delivery: Delivery) -> DeliveryReport:
        return self._gathering.deliver(self._inner, self._together, delivery)


def _together(sink: Sink) -> DeliverTogether | None:
    """How `sink` delivers several users' batches in one object, if it can."""
    if isinstance(sink, ObjectSink):
        return sink.deliver_together
    if isinstance(sink, PrefixedSink):
        inner = _together(sink.inner)
        if inner is not None:
            prefix = sink.prefix

            def prefixed(deliveries: Sequence[Delivery]) -> list[DeliveryReport]:
                return inner([replace(d, user_id=prefix + d.user_id) for d in deliveries])

            return prefixed
    return None


def _again(error: BaseException) -> BaseException:
    """The leader's error, for another session to raise as its own (a copy: one exception
    raised in several threads at once would mix their tracebacks)."""
    try:
        return copy.copy(error)
    except Exception:  # an exception class copy cannot rebuild: the same one
        return error
