"""`check`: before deploying (or after), what a scheduled run would meet at the tenant.

Only Auth0 is reached, with the function's own client (token, retries, pacing): the token and
its scopes, the rate-limit headers, and for each watched id whether Auth0 knows it (asked of
GET /api/v2/users/{id} with read:users, else of its log: user_lookup.verify_id), how many
events it retains, and what a first run's read costs, measured by doing that very read (without
forwarding anything). Every problem that would make a scheduled run fail or lose events is a
`fail`; `check` then exits non-zero.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from log_forwarder.auth0_client import DEFAULT_TIMEOUT
from log_forwarder.config import Settings
from log_forwarder.exceptions import Auth0Error, Auth0ScopeError
from log_forwarder.fetch import UserRead, read_user
from log_forwarder.source import CallScope, CallStats
from log_forwarder.user_lookup import KNOWN, UNKNOWN, verify_id

SCOPES = {
    "read:logs_users": "read each watched user's log (GET /users/{id}/logs): every run's reads",
    "read:logs": "tenant search (GET /logs): first runs, backlogs, bursts past 1,000 events and "
    "deleted users; without it those are reported as gaps",
    "read:users": "verify that each watched id exists (GET /users/{id}): a mistyped id fails "
    "`check` and `watch add` and is reported by the run; optional, without it an id with an "
    "empty log is unverified",
}
# Auth0's documented Management API limits per plan: (burst, sustained requests per second).
PLANS = (
    (2, "Free or a development tenant: burst 2, 2 requests/s", 2.0),
    (10, "Essentials or Professional: burst 10, 100 requests/min for logs", 100 / 60),
    (50, "Enterprise: burst 50, 16 requests/s", 16.0),
)


@dataclass
class Finding:
    level: str  # "fail": a scheduled run would fail or lose events; "warn"; "ok"
    text: str


@dataclass
class UserCheck:
    user_id: str
    exists: str  # "yes", "no (404)", "unverified", "refused (403)"
    retained: int | None = None  # events a first run would read (at least, when `capped`)
    first_run_calls: int | None = None
    capped: bool = False


@dataclass
class CheckReport:
    tenant: str
    scopes: list[str] | None = None
    rate_limit: dict[str, str] = field(default_factory=dict)
    plan: str | None = None
    users: list[UserCheck] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(f.level == "fail" for f in self.findings)

    def add(self, level: str, text: str) -> None:
        self.findings.append(Finding(level, text))

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "failed": self.failed}


class Recorder:
    """httpx event hook: the last rate-limit headers seen. It reads no body: the client reads
    every answer itself, bounded (a hook reading the token answer whole let a 732-byte
    compression bomb take `check` to 936 MB)."""

    def __init__(self) -> None:
        self.limits: dict[str, str] = {}

    def __call__(self, response: httpx.Response) -> None:
        found = {k: v for k, v in response.headers.items() if k.startswith("x-ratelimit-")}
        if found:
            self.limits = found


def recording_http(recorder: Recorder) -> httpx.Client:
    return httpx.Client(
        timeout=DEFAULT_TIMEOUT, follow_redirects=False, event_hooks={"response": [recorder]}
    )


def check_scopes(report: CheckReport, granted: str | None) -> None:
    scopes = sorted((granted or "").split())
    report.scopes = scopes
    if "read:logs_users" not in scopes and "read:logs" not in scopes:
        report.add(
            "fail",
            "the token grants neither read:logs_users nor read:logs: no user can "
            "be read; authorise the application for the Management API with both",
        )
    elif "read:logs_users" not in scopes:
        report.add(
            "warn",
            "read:logs_users is not granted; the per-user endpoint works with "
            "read:logs too, but grant both as the README says",
        )
    if "read:logs" not in scopes:
        report.add(
            "warn",
            "read:logs is not granted: past 1,000 events between two runs, and "
            "for deleted users, events will be reported as gaps instead of forwarded",
        )


def check_rate_limit(report: CheckReport, limits: dict[str, str], settings: Settings) -> None:
    report.rate_limit = limits
    try:
        burst = int(limits["x-ratelimit-limit"])
    except (KeyError, ValueError):
        report.add("warn", "Auth0 sent no x-ratelimit-* headers; pacing uses the configured rate")
        return
    plan, per_second = next(
        ((text, rate) for size, text, rate in PLANS if burst <= size),
        (f"burst {burst}: a custom limit", None),
    )
    report.plan = plan
    cap = settings.rate_limit_per_second
    if per_second is not None and cap is not None and cap > per_second * 1.01:
        report.add(
            "warn",
            f"AUTH0_RATE_LIMIT_PER_SECOND={cap:g} is above this "
            f"plan's {per_second:.2f}/s: the forwarder would take more than its share; set "
            f"RateLimitPerSecond to {per_second:.2f}",
        )


def check_user(
    client: Any, user_id: str, settings: Settings, max_calls: int, report: CheckReport
) -> UserCheck:
    try:
        lookup = verify_id(client, client, user_id, CallScope(CallStats()))
    except Auth0ScopeError as error:
        report.add("fail", f"{user_id!r}: the per-user endpoint refused the token: {error}")
        return UserCheck(user_id, "refused (403)")
    if lookup.verdict == UNKNOWN:
        report.add(
            "fail",
            f"{user_id!r}: Auth0 does not know this user ({lookup.detail}): a wrong id? A "
            "scheduled run would forward nothing for it",
        )
        return UserCheck(user_id, "no (404)")
    checked = UserCheck(user_id, "yes" if lookup.verdict == KNOWN else "unverified")
    if lookup.verdict != KNOWN:
        report.add("warn", unverified_warning(user_id, lookup.detail))
    stats = CallStats()
    read = UserRead(
        client,
        user_id,
        floor_ms=settings.start_from.floor_ms(int(time.time() * 1000)),
        backlog=True,  # a first run: oldest first, as the forwarder reads a new user
        scope=CallScope(stats),
        out_of_time=lambda: stats.api_calls >= max_calls,
    )
    ids: set[str] = set()
    for chunk in read_user(read):
        ids.update(event.log_id for event in chunk.events)
        if chunk.facts.search_refused and chunk.facts.unreachable_below_ms is not None:
            report.add(
                "fail",
                f"{user_id!r}: more than 1,000 retained events and no tenant "
                f"search ({chunk.facts.search_refused}); a first run forwards the newest "
                "1,000 and records the rest as a gap: grant read:logs",
            )
    checked.retained, checked.first_run_calls = len(ids), stats.api_calls
    checked.capped = stats.api_calls >= max_calls
    return checked


def run_check(
    settings: Settings,
    users: Sequence[str],
    client_for: Callable[[httpx.Client], Any],
    max_calls: int,
) -> CheckReport:
    report = CheckReport(tenant=settings.auth0_domain)
    recorder = Recorder()
    client = client_for(recording_http(recorder))
    try:
        client.authenticate()
    except Auth0Error as error:
        report.add("fail", f"no token: {error}")
        return report
    granted = client.granted_scopes
    check_scopes(report, None if granted is None else " ".join(sorted(granted)))
    if not users:
        report.add(
            "fail",
            "no watched users: set WATCHED_USER_IDS, name them, or add them to "
            "the watch list table (watch add USER); a scheduled run forwards nothing",
        )
    for user_id in users:
        try:
            report.users.append(check_user(client, user_id, settings, max_calls, report))
        except Auth0Error as error:
            report.add("fail", f"{user_id!r}: {type(error).__name__}: {error}")
    check_rate_limit(report, recorder.limits, settings)
    unverified = sum(user.exists == "unverified" for user in report.users)
    if not report.failed and unverified:
        report.add(
            "ok",
            f"a scheduled run would read every id, but {unverified} of them unverified: Auth0 "
            "may not know them (see above)",
        )
    elif not report.failed:
        report.add("ok", "a scheduled run would find what it needs")
    return report


def unverified_warning(user_id: str, why: str) -> str:
    """What `check` (and `init`) say of an id Auth0 was not asked about, or could not say."""
    return (
        f"{user_id!r}: unverified: {why}; grant read:users to have it checked, or check the id "
        "in the dashboard"
    )
