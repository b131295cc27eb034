"""Whether Auth0 knows a watched user id: a typo must not mean watching nobody in silence.

Auth0's log endpoints cannot tell: what they answer for an id the tenant does not know is not
documented (a 404, or an empty list, like a quiet user's). `GET /api/v2/users/{id}` can, with
the read:users scope: 200, or 404 "The user does not exist.". So:

- `check` and `watch add` ask it of every id they are given (`verify_id`): without read:users,
  the user's own log decides where it can (a 404, or events), and an empty log is "unverified";
- the scheduled run asks it of a user when it is new, and then once a day at most
  (`lookup_due`), never every five minutes: a lookup costs the tenant's shared rate limit. At
  most MAX_LOOKUPS_PER_RUN users a run, so a watch list of hundreds is looked up over a few runs.
  The answer is kept on the user's checkpoint (`UserStatus.lookup`); a token that grants no
  read:users costs no call (the client knows its scopes) and is remembered as "unverified".

An id Auth0 does not know is then said in the destinations: a `finding` record of the rule
`watched_user_unknown` (`unknown_user_finding`), once, when the user goes missing, besides the
`UsersMissing`/`UnknownUsers` metrics and `status`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from .detections import Finding
from .events import LogEvent
from .exceptions import (
    Auth0Error,
    Auth0MalformedResponse,
    Auth0NotFoundError,
    Auth0RequestError,
    Auth0ScopeError,
    OutOfTime,
)
from .source import CallScope, LogSource, UserDirectory

logger = logging.getLogger(__name__)

KNOWN, UNKNOWN, UNVERIFIED = "known", "unknown", "unverified"
UNKNOWN_USER_RULE = "watched_user_unknown"
# How often a user's answer is asked again: a user deleted, or created after it was watched, is
# noticed within a day, at one call a user a day.
LOOKUP_INTERVAL_MS = 24 * 3600_000
MAX_LOOKUPS_PER_RUN = 10
USERS_PATH = "GET /api/v2/users/{id}"


@dataclass(frozen=True, slots=True)
class UserLookup:
    """What Auth0 said of a user id: KNOWN, UNKNOWN, or UNVERIFIED and why (`detail`)."""

    verdict: str
    detail: str

    @property
    def text(self) -> str:
        """As kept on the checkpoint and shown: "known", "unknown", "unverified: <why>"."""
        return f"{UNVERIFIED}: {self.detail}" if self.verdict == UNVERIFIED else self.verdict

    @property
    def exists(self) -> bool | None:
        return {KNOWN: True, UNKNOWN: False}.get(self.verdict)


def look_up(directory: UserDirectory, user_id: str, scope: CallScope) -> UserLookup | None:
    """Ask GET /api/v2/users/{id}. None when Auth0 could not be asked now (unavailable, out of
    time): nothing is remembered, the next run asks again."""
    try:
        known = directory.user_exists(user_id, scope=scope)
    except Auth0ScopeError:
        return UserLookup(
            UNVERIFIED, "the token lacks read:users, which GET /api/v2/users/{id} needs"
        )
    except (Auth0RequestError, Auth0MalformedResponse) as refused:
        return UserLookup(UNVERIFIED, f"{USERS_PATH} was refused: {refused}")
    except (Auth0Error, OutOfTime) as error:
        logger.warning(
            "Could not ask Auth0 whether it knows the user; next run",
            extra={"user_id": user_id, "error": f"{type(error).__name__}: {error}"},
        )
        return None
    if known:
        return UserLookup(KNOWN, f"{USERS_PATH} answered 200")
    return UserLookup(UNKNOWN, f"{USERS_PATH} answered 404: Auth0 does not know this id")


def logged_since(events: Iterable[LogEvent], looked_up_ms: int | None) -> UserLookup | None:
    """A user GET /api/v2/users/{id} called unknown whose log now returns events dated after
    that answer exists (created after it was watched): KNOWN, at once, not a day later. Events
    dated before it do not count: a deleted user's past events may still be returned."""
    if looked_up_ms is None or not any(event.date_ms > looked_up_ms for event in events):
        return None
    return UserLookup(KNOWN, f"its log returned events dated after {USERS_PATH} answered 404")


def verify_id(
    source: LogSource, directory: UserDirectory, user_id: str, scope: CallScope
) -> UserLookup:
    """For the CLI (`check`, `watch add`): the lookup, and without read:users the user's own log
    (one page of one event): a 404 says unknown, an event says known, an empty log says nothing.
    Auth0ScopeError when the log endpoint refuses the token too."""
    looked = look_up(directory, user_id, scope)
    if looked is not None and looked.verdict != UNVERIFIED:
        return looked
    why = looked.detail if looked is not None else f"{USERS_PATH} could not be asked"
    try:
        newest = source.user_logs(user_id, page=0, per_page=1, sort="date:-1", scope=scope)
    except Auth0NotFoundError:
        return UserLookup(
            UNKNOWN, "GET /api/v2/users/{id}/logs answered 404: Auth0 does not know this id"
        )
    if newest:
        return UserLookup(KNOWN, "Auth0's log holds events of this id")
    return UserLookup(
        UNVERIFIED,
        f"{why}; its log holds no event, and Auth0 does not say whether an unknown id's log is "
        "empty or a 404",
    )


def lookup_due(looked_up_ms: int | None, now_ms: int) -> bool:
    return looked_up_ms is None or now_ms - looked_up_ms >= LOOKUP_INTERVAL_MS


@dataclass
class LookupQuota:
    """The lookups one run may still make (shared by its worker threads)."""

    left: int = MAX_LOOKUPS_PER_RUN
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def take(self) -> bool:
        with self._lock:
            if self.left <= 0:
                return False
            self.left -= 1
            return True


def unknown_user_finding(
    user_id: str, *, detail: str, forwarded_before: int, now_ms: int
) -> Finding:
    """The record that says, in the destinations, that Auth0 does not know a watched id: a wrong
    id when nothing was ever forwarded for it, else a user deleted since."""
    digest = hashlib.sha256(f"{UNKNOWN_USER_RULE}\0{user_id}\0{now_ms}".encode()).hexdigest()
    likely = "a wrong id" if forwarded_before == 0 else "a user deleted since"
    return Finding(
        finding_id=digest[:32],
        rule=UNKNOWN_USER_RULE,
        title=f"Auth0 does not know this watched user id ({likely}?)",
        severity="medium",
        user_id=user_id,
        log_ids=(),
        first_ms=now_ms,
        last_ms=now_ms,
        details={
            "answer": detail,
            "events_forwarded_before": forwarded_before,
            "fix": "check the id in the Auth0 dashboard; remove it from the watch list "
            "(auth0-log-forwarder watch remove) or correct WatchedUserIds",
        },
    )
