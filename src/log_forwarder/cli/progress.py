"""Progress of a long command, and a clean stop on Ctrl-C.

The forwarder is watched from the outside: a LogSource and sinks that count what passes through
them. On a terminal a rich progress bar shows it; elsewhere (a pipe, a CI log) a plain line is
printed at most once a second, and once at the end.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from log_forwarder.records import Delivery, DeliveryReport
from log_forwarder.sinks import Sink
from log_forwarder.source import CallScope, LogSource


@dataclass
class Counters:
    calls: int = 0
    events: int = 0  # lines the first destination accepted
    done: float = 0.0  # of `total`, when the command knows one (a backfill's time range)
    # Per destination: lines written, and lines found already there (not written again).
    written: dict[str, int] = field(default_factory=dict)
    present: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, amount: float = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + amount)

    def delivered(self, report: DeliveryReport) -> None:
        with self._lock:
            name = report.destination
            self.written[name] = self.written.get(name, 0) + report.accepted
            self.present[name] = self.present.get(name, 0) + report.already_present


class CountingSource:
    """A LogSource that counts its calls (each page of either endpoint)."""

    def __init__(self, inner: LogSource, counters: Counters) -> None:
        self._inner = inner
        self._counters = counters

    def user_logs(
        self, user_id: str, *, page: int, per_page: int, sort: str, scope: CallScope
    ) -> list[Any]:
        self._counters.add("calls")
        return self._inner.user_logs(user_id, page=page, per_page=per_page, sort=sort, scope=scope)

    def search_logs(
        self, query: str, *, page: int, per_page: int, sort: str, scope: CallScope
    ) -> list[Any]:
        self._counters.add("calls")
        return self._inner.search_logs(query, page=page, per_page=per_page, sort=sort, scope=scope)

    def tenant_logs(self, after: str, *, take: int, scope: CallScope) -> list[Any]:
        self._counters.add("calls")
        return self._inner.tenant_logs(after, take=take, scope=scope)

    def log_event(self, log_id: str, *, scope: CallScope) -> Any:
        self._counters.add("calls")
        return self._inner.log_event(log_id, scope=scope)


class CountingSink:
    """A sink that counts what it wrote and found present, and (`events`: for one sink of a
    run, since every event goes to each) the events handed to it."""

    def __init__(self, inner: Sink, counters: Counters, *, events: bool = True) -> None:
        self._inner = inner
        self._counters = counters
        self._events = events
        self.name = inner.name

    def deliver(self, delivery: Delivery) -> DeliveryReport:
        report = self._inner.deliver(delivery)
        self._counters.delivered(report)
        if self._events:
            self._counters.add("events", sum(line.log_id is not None for line in delivery.lines))
        return report


def check_time_limit(limit_s: float, margin_ms: int) -> None:
    """Refuse a --time-limit no longer than the margin, before anything is read or written: no
    chunk starts with less than the margin left, so such a limit would read nothing, every
    time, while saying "run the same command again to continue"."""
    if limit_s * 1000 <= margin_ms:
        raise click.BadParameter(
            f"{limit_s:g} s leaves no time to read: the forwarder keeps TIME_MARGIN_SECONDS "
            f"({margin_ms / 1000:g} s) in hand to finish; give more than that",
            param_hint="'--time-limit'",
        )


class Stopper:
    """The forwarder's `remaining_ms`: a time limit, cut short by Ctrl-C.

    After a Ctrl-C the time left drops just below the forwarder's margin: no new chunk or user
    starts, while what is under way (a delivery, its checkpoint write) still has the margin to
    finish in. A second Ctrl-C stops at once; a run killed outright resumes too."""

    def __init__(self, limit_s: float, margin_ms: int, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._end = clock() + limit_s
        self._margin_ms = margin_ms
        self._stopped_at: float | None = None

    def remaining_ms(self) -> int:
        now = self._clock()
        left = int((self._end - now) * 1000)
        if self._stopped_at is not None:
            left = min(left, self._margin_ms - 1 - int((now - self._stopped_at) * 1000))
        return left

    @property
    def margin_ms(self) -> int:
        return self._margin_ms

    @property
    def stopped(self) -> bool:
        return self._stopped_at is not None

    def stop(self) -> None:
        if self._stopped_at is None:
            self._stopped_at = self._clock()

    @contextmanager
    def on_interrupt(self, console: Console) -> Iterator[None]:
        def handler(_signum: int, _frame: FrameType | None) -> None:
            if self.stopped:
                raise KeyboardInterrupt
            console.print("Stopping after the batches under way (Ctrl-C again to abort) …")
            self.stop()

        previous = signal.signal(signal.SIGINT, handler)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


class ProgressDisplay:
    """A progress bar of events, calls and time left (a spinner without a known total)."""

    def __init__(self, console: Console, description: str, total: float | None) -> None:
        self._console = console
        self._total = total
        self._description = description
        columns: list[Any] = [
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[events]:,} events, {task.fields[calls]:,} calls"),
            TimeElapsedColumn(),
        ]
        if total:
            # Time left needs a known end: a backfill's range, done oldest first.
            columns[3:3] = [TextColumn("{task.percentage:>3.0f}%")]
            columns += [TextColumn("left"), TimeRemainingColumn()]
        self._progress = Progress(*columns, console=console)
        self._task: TaskID | None = None
        self._last_line = 0.0

    def __enter__(self) -> ProgressDisplay:
        self._progress.start()
        self._task = self._progress.add_task(
            self._description, total=self._total, events=0, calls=0
        )
        self._started = time.monotonic()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()

    def update(self, counters: Counters, *, final: bool = False) -> None:
        assert self._task is not None
        self._progress.update(
            self._task, completed=counters.done, events=counters.events, calls=counters.calls
        )
        now = time.monotonic()
        if not self._console.is_terminal and (final or now - self._last_line >= 1.0):
            # No bar is drawn on a pipe: a line says the same, once a second at most.
            self._last_line = now
            self._console.print(self._line(counters, now - self._started), highlight=False)

    def _line(self, counters: Counters, elapsed_s: float) -> str:
        text = f"{self._description}: {counters.events:,} events, {counters.calls:,} calls"
        if self._total:
            share = min(1.0, counters.done / self._total)
            text += f", {share:.0%}"
            if 0 < share < 1:
                text += f", about {elapsed_s * (1 - share) / share:.0f} s left"
        return text + f", {elapsed_s:.1f} s elapsed"


def watch_thread(work: Callable[[], Any], tick: Callable[[], None]) -> Any:
    """Run `work` in a thread while `tick` is called every 0.2 s; its result (or exception)."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as error:  # handed back to the caller's thread as it is
            outcome["error"] = error

    thread = threading.Thread(target=target, name="forwarder", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.2)
        tick()
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")
