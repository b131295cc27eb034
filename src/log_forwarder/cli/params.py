"""The value types of the CLI's options and arguments: each refuses a bad value under the
option's own name (click says `Invalid value for '--since'`), with the rule it broke and, where
one can be made, a value that would be accepted.

The function's variables are checked again by `Settings` when a command builds them; these come
first so that a mistyped flag is never reported as some variable of the function.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeAlias

import click

from log_forwarder.config import check_user_id
from log_forwarder.exceptions import ConfigError

if TYPE_CHECKING:
    _ParamType: TypeAlias = click.ParamType[Any, Any]
else:
    _ParamType = click.ParamType  # not subscriptable before click 8.2


def _example_instant() -> str:
    """Yesterday at midnight UTC: a valid instant that an operator can edit."""
    day = datetime.now(UTC).date() - timedelta(days=1)
    return f"{day.isoformat()}T00:00:00Z"


def _zoned(naive: datetime) -> str:
    """The instant the operator most likely meant, as UTC (the suggestion for a missing zone)."""
    spec = "milliseconds" if naive.microsecond else "seconds"
    return naive.isoformat(timespec=spec) + "Z"


class Instant(_ParamType):
    """An ISO-8601 instant with a time zone, as epoch milliseconds."""

    name = "instant"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        try:
            parsed = datetime.fromisoformat(re.sub(r"[zZ]$", "+00:00", text))
        except ValueError as error:
            # Python's own reason names the part that is wrong ("month must be in 1..12"),
            # except for text that is no date at all.
            reason = str(error)
            why = "" if reason.startswith("Invalid isoformat") else f" ({reason})"
            self.fail(
                f"{text!r} is not an ISO-8601 instant{why}; give a date and time with a zone, "
                f"e.g. {_example_instant()}",
                param,
                ctx,
            )
        if parsed.tzinfo is None:
            self.fail(
                f"{text!r} has no time zone, so the instant is ambiguous; add one, e.g. "
                f"{_zoned(parsed)} for UTC",
                param,
                ctx,
            )
        try:
            return int(parsed.astimezone(UTC).timestamp() * 1000)
        except (OverflowError, ValueError, OSError):
            # An offset that moves 0001-01-01 or 9999-12-31 out of the calendar.
            self.fail(
                f"{text!r} is outside the instants this command can read (years 1 to 9999 in "
                f"UTC); give one, e.g. {_example_instant()}",
                param,
                ctx,
            )


class Seconds(_ParamType):
    """A finite, positive number of seconds (click's float takes 'nan' and 'inf'), at most
    `maximum`: a time limit far past any run would only overflow the clock's arithmetic."""

    name = "seconds"

    def __init__(self, maximum: float = 7 * 86_400) -> None:
        self.maximum = maximum

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds, e.g. 3600", param, ctx)
        if not math.isfinite(seconds) or not 0 < seconds <= self.maximum:
            self.fail(
                f"{value!r} is not allowed; give a positive number of seconds up to "
                f"{self.maximum:,.0f}, e.g. 3600",
                param,
                ctx,
            )
        return seconds


class UserId(_ParamType):
    """An Auth0 user id, refused as the function refuses one in WATCHED_USER_IDS."""

    name = "user_id"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        if "," in str(value):
            # WATCHED_USER_IDS is comma-separated: the function could never watch such an id.
            self.fail(
                f"{str(value)!r} holds a comma; give each user id as its own argument "
                f"({' '.join(repr(part.strip()) for part in str(value).split(','))})",
                param,
                ctx,
            )
        try:
            return check_user_id(str(value), "USER")
        except ConfigError as error:
            self.fail(str(error), param, ctx)


class Pattern(_ParamType):
    """Text that matches what AWS or Auth0 allows for this name, with an example of it."""

    def __init__(self, name: str, pattern: str, rule: str, example: str) -> None:
        self.name = name
        self._pattern = re.compile(pattern)
        self._rule = rule
        self._example = example

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value)
        if not self._pattern.fullmatch(text):
            self.fail(
                f"{text!r} is not {self._rule}, e.g. {self._example}{self._hint(text)}", param, ctx
            )
        return text

    def _hint(self, text: str) -> str:
        if text.startswith("arn:"):
            return f" (the name only, not the ARN: {text.rsplit('/', 1)[-1]!r}?)"
        if "://" in text:
            return (
                f" (the host only, without the scheme: {text.split('://', 1)[1].split('/')[0]!r}?)"
            )
        if text != text.strip():
            return " (without the spaces around it)"
        return ""


DOMAIN = Pattern(
    "domain",
    r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?\.[A-Za-z0-9-]+",
    "a host name",
    "my-tenant.eu.auth0.com",
)
# DynamoDB's rule for table names.
TABLE = Pattern(
    "table", r"[A-Za-z0-9_.-]{3,255}", "a DynamoDB table name", "mystack-CheckpointTable-1A2B3C"
)
REGION = Pattern("region", r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}", "an AWS region", "eu-west-1")
CLIENT_ID = Pattern(
    "client_id",
    r"[^\s\x00-\x1f\x7f]+",
    "an Auth0 client id (no spaces)",
    "the Client ID on the application's Settings page",
)
# rules (cli/rules.py): a pack's name as the store allows it (rule_packs.PACK_NAME), and the
# names `rules hunt --run` passes to Athena and Logs Insights, by their services' rules.
PACK = Pattern(
    "pack",
    r"[a-z0-9][a-z0-9_-]{0,63}",
    "a pack name (1 to 64 of a-z, 0-9, '_' and '-', a letter or digit first)",
    "auth0-catalog",
)
ATHENA_DATABASE = Pattern(
    "database", r"[a-z0-9_]{1,255}", "an Athena (Glue) database name", "my_stack"
)
WORKGROUP = Pattern("workgroup", r"[A-Za-z0-9._-]{1,128}", "an Athena workgroup name", "primary")


class _Location(Pattern):
    """A URI: its scheme belongs to it (Pattern's hint would say to drop it)."""

    def _hint(self, text: str) -> str:
        return ""


S3_LOCATION = _Location(
    "s3_uri",
    r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/\S*)?",
    "an s3:// location",
    "s3://my-athena-results/hunts/",
)
LOG_GROUP = Pattern(
    "log_group", r"[A-Za-z0-9._/#-]{1,512}", "a log group name", "/auth0/my-stack/events"
)
