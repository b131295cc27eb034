"""Tables the commands print (rich), kept apart from what they compute."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from log_forwarder.events import iso_ms
from log_forwarder.report import RunReport, UserReport

from .backfill import BackfillOutcome
from .check import SCOPES, CheckReport
from .terminal import add_safe_row, safe
from .watch import WatchEntry


def user_state(user: UserReport) -> str:
    if user.error is not None:
        return f"FAILED: {user.error}"
    if user.bug is not None:
        return f"FAILED (bug): {type(user.bug).__name__}: {user.bug}"
    if user.unknown:
        return "unknown to Auth0 (404, nothing ever forwarded): a wrong id?"
    if user.missing:
        return "missing: Auth0 says the user does not exist any more (404)"
    if user.busy:
        return "busy: another run holds it"
    if user.deferred or user.backlog:
        return "more to read: run again to continue"
    return "up to date"


# Every destination receives the events and the forwarder's own records about them, so
# `delivered` is their sum; it is less only when a redelivery found lines already there.
RUN_COUNTS_NOTE = (
    "delivered (per destination) = forwarded events + findings + gap records + quarantine "
    "records + skipped (records of events a rule did not see whole), less lines a redelivery "
    "found already there"
)


def run_table(report: RunReport, title: str) -> Table:
    table = Table(title=title, title_justify="left")
    # "skipped": the detection_skipped records (events a rule did not see whole)
    columns = ("user", "fetched", "forwarded", "findings", "gap records", "quarantined", "skipped")
    for column in (*columns, "delivered", "dupes dropped", "state"):
        table.add_column(column, overflow="fold")
    for user in report.users:
        delivered = ", ".join(f"{k} {v}" for k, v in sorted(user.delivered.items())) or "0"
        add_safe_row(
            table,
            (
                user.user_id,
                user.fetched,
                user.forwarded,
                sum(user.findings.values()),
                len(user.gaps),
                user.quarantined,
                user.skipped_records,
                delivered,
                user.duplicates,
                user_state(user),
            ),
        )
    return table


def print_run(console: Console, report: RunReport, title: str) -> None:
    console.print(run_table(report, title))
    console.print(RUN_COUNTS_NOTE)
    summary = report.as_dict()
    console.print(
        f"Forwarded {summary['forwarded']} events with {summary['api_calls']} Auth0 calls "
        f"({summary['rate_limited']} answered 429, {summary['retries']} retries, "
        f"{summary['pacing_wait_s']} s waiting for the rate-limit share); "
        f"{len(report.failed)} user(s) failed."
    )


def watch_table(entries: Sequence[WatchEntry]) -> Table:
    table = Table(title=f"Watched users ({len(entries)})", title_justify="left")
    for column in ("user", "listed in", "added"):
        table.add_column(column, overflow="fold")
    where = {
        "table": "watch list table",
        "legacy": "checkpoint item (watch = true)",
        "local": "local directory",
        "WATCHED_USER_IDS": "WATCHED_USER_IDS",
    }
    for entry in entries:
        add_safe_row(
            table, (entry.user_id, where.get(entry.source, entry.source), entry.added_at or "-")
        )
    return table


_MARK = {
    "fail": "[red]✗ FAIL[/red]",
    "warn": "[yellow]! warn[/yellow]",
    "ok": "[green]✓ ok[/green]",
}


def print_check(console: Console, report: CheckReport) -> None:
    console.print(f"Tenant [bold]{safe(report.tenant)}[/bold]")
    scopes = Table(title="Token scopes", title_justify="left")
    for column in ("scope", "granted", "enables"):
        scopes.add_column(column, overflow="fold")
    granted = set(report.scopes or ())
    for scope, enables in SCOPES.items():
        if report.scopes is None:
            # No token, no answer: what the application is granted is not known, not "no".
            shown = "unknown: no token was obtained (see below)"
        else:
            shown = "yes" if scope in granted else "NO"
        add_safe_row(scopes, (scope, shown, enables))
    console.print(scopes)
    limits = ", ".join(f"{k}: {v}" for k, v in sorted(report.rate_limit.items())) or "none seen"
    console.print(f"Rate-limit headers: {safe(limits)}")
    console.print(f"Plan they suggest: {report.plan or 'unknown'}")
    users = Table(title="Watched users", title_justify="left")
    for column in ("user", "exists", "events retained", "first run calls"):
        users.add_column(column, overflow="fold")
    for user in report.users:
        at_least = "≥ " if user.capped else ""
        retained = "-" if user.retained is None else f"{at_least}{user.retained:,}"
        calls = "-" if user.first_run_calls is None else f"{at_least}{user.first_run_calls}"
        add_safe_row(users, (user.user_id, user.exists, retained, calls))
    console.print(users)
    for finding in report.findings:
        console.print(f"{_MARK[finding.level]} {safe(finding.text)}", markup=True, highlight=False)


def print_backfill(console: Console, outcome: BackfillOutcome) -> None:
    span = outcome.span
    end = iso_ms(outcome.end_ms)
    user = safe(span.user_id)
    if outcome.end_ms < span.since_ms:
        console.print(
            f"Nothing to backfill for {user}: the live checkpoint already starts at or "
            f"before {iso_ms(span.since_ms)}, and everything from there is forwarded live."
        )
        return
    state = "done" if outcome.done else "stopped: run the same command again to continue"
    if outcome.busy_until:
        state = f"busy: another backfill of this range holds it until {safe(outcome.busy_until)}"
    returned = f"{outcome.forwarded} events Auth0 returned for the range"
    if outcome.errors:
        state = "FAILED: " + "; ".join(map(safe, outcome.errors))
        returned = f"{outcome.fetched} events Auth0 returned for the range"
    console.print(
        f"Backfill of {user} from {iso_ms(span.since_ms)} to {end}: "
        f"{returned}, each destination compared with them; {state}."
    )
    if outcome.again:
        console.print(
            "  This range was backfilled before: it was read again from its start to check "
            "the destinations as they are now."
        )
    if outcome.resumed_from_ms is not None:
        console.print(
            f"  Resumed at {iso_ms(outcome.resumed_from_ms)}: what is older was checked by an "
            "earlier run of this command, not by this one."
        )
    for name in sorted(outcome.written):
        written = outcome.written[name]
        checked = written + outcome.present.get(name, 0)
        console.print(f"  {safe(name)}: checked {checked}, missing {written}, written {written}")
    _print_expired(console, outcome)
    for name in outcome.compared if outcome.errors else ():
        if name not in outcome.written:
            console.print(f"  {safe(name)}: not checked: the backfill failed first (above)")
    for name in outcome.left_out:
        console.print(
            f"  {safe(name)}: left out: it cannot be read back, so a backfill could not skip "
            "what it already holds (it would deliver the range again)"
        )
    if span.until_ms is None or outcome.end_ms < span.until_ms:
        console.print(
            f"The range ends at {end}: from there the live checkpoint forwards the user's events."
        )


def _print_expired(console: Console, outcome: BackfillOutcome) -> None:
    """The part of the range older than Auth0's retention: nothing there was read, so nothing
    there was compared (the destinations may lack anything of it)."""
    cut, since = outcome.retained_from_ms, outcome.span.since_ms
    if cut is None or since >= cut:
        return
    until = min(cut, outcome.end_ms)
    hours = (until - since) / 3_600_000
    console.print(
        f"  Not checked: {hours:,.1f} h of the range, {iso_ms(since)} to {iso_ms(until)}: Auth0 "
        f"holds nothing older than {iso_ms(cut)} (AUTH0_LOG_RETENTION_HOURS="
        f"{outcome.retention_hours}), so nothing there could be compared."
    )
