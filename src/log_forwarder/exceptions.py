"""Every error the forwarder raises on purpose.

    ForwarderError
    ├── ConfigError                 a variable is missing or invalid; names it and what it allows
    ├── Auth0Error                  anything that went wrong talking to Auth0
    │   ├── Auth0AuthError          the token request failed, or a fresh token was refused (401)
    │   ├── Auth0ScopeError         403: the token lacks the scope this call needs
    │   ├── Auth0AnswerTooLarge     an answer longer than the client reads (it stopped there)
    │   ├── Auth0SearchCapError     400: paging asked past the 1,000-result search cap
    │   ├── Auth0RequestError       another 4xx: the request itself is wrong
    │   │   └── Auth0NotFoundError  404: the user does not exist (deleted, or a wrong id)
    │   ├── Auth0UnavailableError   5xx / 429 / network failures that outlasted every retry
    │   └── Auth0MalformedResponse  the body is not the JSON the API documents
    ├── MalformedEvent              an Auth0 event has no usable log_id or date
    ├── DeliveryError               a destination did not accept the lines (nothing is committed)
    ├── OutOfTime                   a wait or call would outlast the invocation; resumes next run
    ├── CheckpointError             the checkpoint table could not be read or written
    │   ├── CheckpointConflict      another run moved the checkpoint first (conditional write)
    │   └── CheckpointStateError    a stored state is unreadable, or a new one would not fit
    │       └── NewerStateError     a stored state was written by a newer release this one cannot
    │                               read: never written over
    ├── RunFailed                   some users were not forwarded this run (raised by the handler)
    ├── FanoutError                 the tenant queue did not take every tenant's message
    ├── PoisonMessage               a tenant queue message no run can ever process
    └── RulePackError               a detection plan (compiled Sigma rules) is unreadable or invalid
        └── SigmaRuleRefused        a Sigma rule needs a feature the engine does not evaluate

The forwarder catches ForwarderError per user: that user fails, the others go on; an Auth0Error
that is `tenant_wide` (the token, its scopes: every user's read would fail the same way) fails
the tenant instead, and no other user's read is started. Anything else is a bug and fails the run
loudly. Messages never contain secrets or tokens, nor a user id in a request's path (paths are
named by their template, `/api/v2/users/{id}/logs`): callers may log them as they are.
"""

from __future__ import annotations


class ForwarderError(Exception):
    """Base class of every error raised on purpose by the forwarder."""


class ConfigError(ForwarderError):
    """A configuration variable is missing or has a value outside its allowed set."""


class Auth0Error(ForwarderError):
    """A call to Auth0 failed. `reason` is what went wrong and `fix` (when known) what to do,
    the message both; `tenant_wide`: every user's read would fail the same way."""

    tenant_wide = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        fix: str | None = None,
        tenant_wide: bool | None = None,
    ) -> None:
        super().__init__(f"{message}; {fix}" if fix else message)
        self.status = status
        self.reason = message
        self.fix = fix
        if tenant_wide is not None:
            self.tenant_wide = tenant_wide


class Auth0AuthError(Auth0Error):
    """The client-credentials exchange failed, or Auth0 refused a freshly issued token."""

    tenant_wide = True  # the token is the tenant's: no user can be read without one


class Auth0ScopeError(Auth0Error):
    """Auth0 answered 403: the token lacks the scope the endpoint needs."""

    tenant_wide = True  # scopes are the token's, the same for every user


class Auth0AnswerTooLarge(Auth0Error):
    """Auth0 (or whatever answered in its place) sent more than an answer may hold: the client
    stopped reading at the limit and closed the connection."""

    def __init__(
        self, message: str, *, request: str, bytes_read: int, limit: int, head: bytes = b""
    ) -> None:
        super().__init__(message)
        self.request = request  # method, path template and parameters: no id, no secret
        self.bytes_read = bytes_read
        self.limit = limit
        self.head = head  # the answer's first bytes (what identifies an entry too large)


class Auth0SearchCapError(Auth0Error):
    """Auth0 answered 400 because paging went past the 1,000-result search cap."""


class Auth0RequestError(Auth0Error):
    """Auth0 answered a 4xx other than 401/403/429: the request itself is wrong."""


class Auth0NotFoundError(Auth0RequestError):
    """Auth0 answered 404: the user does not exist (deleted, or never did)."""


class Auth0UnavailableError(Auth0Error):
    """Auth0 kept failing (5xx, 429, timeouts, connection errors) after every retry."""


class Auth0MalformedResponse(Auth0Error):
    """Auth0 answered with a body that is not the documented JSON shape."""


class MalformedEvent(ForwarderError):
    """An event lacks a usable `log_id` or `date`; it cannot be ordered or deduplicated."""


class DeliveryError(ForwarderError):
    """A destination did not accept a batch; the checkpoint must not move."""


class OutOfTime(ForwarderError):
    """A wait or a call would end after the invocation's deadline: the work resumes next run."""


class CheckpointError(ForwarderError):
    """The checkpoint table could not be read or written (after retries)."""


class CheckpointConflict(CheckpointError):
    """The checkpoint changed under us: another run (or a retried invocation) got there first."""


class CheckpointStateError(CheckpointError):
    """A stored checkpoint state cannot be read, or a new one is too large to store."""


class NewerStateError(CheckpointStateError):
    """A stored item was written by a newer release, in a layout this one cannot read."""


class PushedMemoryMissing(CheckpointStateError):
    """A checkpoint says the real-time path recorded events in the pushed-events table that the
    table does not hold (no table configured, or a new empty one): delivering the user would
    deliver those events again, so it is not delivered."""


class RunFailed(ForwarderError):
    """Some users could not be forwarded this run; their checkpoints did not move past anything."""


class FanoutError(ForwarderError):
    """The tenant queue refused some tenants' messages (after retries): they miss a tick."""


class PoisonMessage(ForwarderError):
    """A tenant queue message is not what the scheduler sends: no retry can make it work."""


class RulePackError(ForwarderError):
    """A compiled detection plan is unreadable or breaks a rule of its format; names which."""


class SigmaRuleRefused(RulePackError):
    """A Sigma rule uses a feature the engine cannot evaluate faithfully; names rule and feature."""
