"""`init`: the few answers a deployment needs, checked, written to `samconfig.toml`.

`sam deploy --guided` asks for the template's 36 parameters in template order, bare, then six
questions of its own. Five answers matter for a first deployment: the tenant's domain, the
secret holding the M2M credentials (created here, or an existing one), the watched ids, the
destinations and the alarm e-mail; with the region, six prompts. Each answer is checked by its
own rule (the template parameter's pattern, which tests/unit/test_cli_init.py keeps equal to
template.yaml's), and where AWS and Auth0 can be reached, by what they say: the secret exists in
the region (or is created there), Auth0 gives a token for its credentials, and knows every
watched id. Everything else stays at the template's defaults. The file is SAM CLI's own format
(version 0.1, `[default.deploy.parameters]`, `parameter_overrides` as `sam deploy --guided`
writes it), so `sam build && sam deploy` needs no prompt but the change set's confirmation.

Every answer can be a flag instead (`--no-input` for scripts: a missing answer is an error);
the client secret only ever from the prompt (hidden) or AUTH0_CLIENT_SECRET, never a flag.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from botocore.exceptions import BotoCoreError, ClientError

from log_forwarder.config import check_user_id
from log_forwarder.exceptions import Auth0AuthError, Auth0Error, ConfigError
from log_forwarder.sinks.registry import NAMES
from log_forwarder.source import CallScope, CallStats
from log_forwarder.user_lookup import KNOWN, UNKNOWN, verify_id

from .check import unverified_warning
from .environment import Environment

DEFAULT_STACK = "auth0-user-log-forwarder"
DEFAULT_SECRET = "auth0-user-log-forwarder/management-api"  # noqa: S105 - its name
# The template's Destinations parameter allows each choice of the registry's names.
DESTINATIONS_TOLD = f"one or more of {', '.join(map(repr, NAMES))}, comma-separated"
# The template's AllowedPattern and ConstraintDescription of each parameter asked for.
RULES: Mapping[str, tuple[str, str]] = {
    "Auth0Domain": (
        r"^([A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)+)?$",
        "a DNS name such as my-tenant.eu.auth0.com, without https://",
    ),
    "Auth0CredentialsSecretName": (
        r"^[A-Za-z0-9/_+=.@-]{1,512}$",
        "a Secrets Manager secret name (not an ARN)",
    ),
    "AlarmEmail": (r"^([^@\s]+@[^@\s]+\.[^@\s]+)?$", "an e-mail address, or empty"),
}
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
STACK_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9-]{0,127}$")  # CloudFormation's rule


@dataclass(frozen=True)
class Answers:
    stack_name: str
    region: str
    domain: str
    secret_name: str
    watched_user_ids: tuple[str, ...]  # empty: the watch list table (watch add)
    destinations: str
    alarm_email: str

    def parameters(self) -> dict[str, str]:
        """The template parameters set; every other one keeps its default."""
        chosen = {
            "Auth0Domain": self.domain,
            "Auth0CredentialsSecretName": self.secret_name,
            "WatchedUserIds": ",".join(self.watched_user_ids),
            "Destinations": self.destinations,
            "AlarmEmail": self.alarm_email,
        }
        return {name: value for name, value in chosen.items() if value}


def samconfig_text(answers: Answers, written_at: datetime) -> str:
    """SAM CLI's configuration file for these answers. `parameter_overrides` is one string of
    Key="value" pairs, as `sam deploy --guided` writes it (no value may hold a quote: the rules
    refuse them); each TOML string is written as JSON, whose escapes TOML shares."""
    overrides = " ".join(f'{name}="{value}"' for name, value in answers.parameters().items())
    deploy = {
        "stack_name": answers.stack_name,
        "region": answers.region,
        "resolve_s3": True,
        "s3_prefix": answers.stack_name,
        "capabilities": "CAPABILITY_IAM",
        "confirm_changeset": True,
        "parameter_overrides": overrides,
    }
    lines = [
        f"# Written by `auth0-log-forwarder init` on {written_at:%Y-%m-%d %H:%M} UTC: run",
        "# `sam build && sam deploy`. Every parameter not named here keeps template.yaml's",
        "# default (README, Deploying); edit this file, or run init again with --force.",
        "version = 0.1",
        "",
        "[default.deploy.parameters]",
        *(f"{key} = {json.dumps(value)}" for key, value in deploy.items()),
        "",
    ]
    return "\n".join(lines)


# -- each answer's rule ---------------------------------------------------------------------------


def _pattern(parameter: str, value: str) -> str:
    pattern, what = RULES[parameter]
    if not re.match(pattern, value):
        raise click.BadParameter(f"{value!r} is not {what} (the template's {parameter} rule)")
    return value


def valid_region(value: str) -> str:
    value = value.strip()
    if not REGION.match(value):
        raise click.BadParameter(
            f"{value!r} is not an AWS region name such as eu-west-1 (the stack's region, where "
            "the secret must be too)"
        )
    return value


def valid_domain(value: str) -> str:
    value = value.strip()
    bare = re.sub(r"^https?://", "", value).rstrip("/")
    if bare != value:
        raise click.BadParameter(f"{value!r}: the domain alone, without scheme or slash: {bare}")
    if not value:
        raise click.BadParameter("the tenant's domain is required, e.g. my-tenant.eu.auth0.com")
    return _pattern("Auth0Domain", value)


def valid_secret_name(value: str) -> str:
    value = value.strip()
    if value.startswith("arn:"):
        raise click.BadParameter(f"{value!r}: the secret's name, not its ARN")
    return _pattern("Auth0CredentialsSecretName", value)


def parse_watched(value: str) -> tuple[str, ...]:
    """Comma-separated ids, each by the function's own rule for WATCHED_USER_IDS."""
    if not value.strip():
        return ()
    try:
        return tuple(check_user_id(part, "the watched ids") for part in value.split(","))
    except ConfigError as error:
        raise click.BadParameter(str(error)) from None


def valid_destinations(value: str) -> str:
    """The destinations in any order, as the template spells the choice (the registry's)."""
    chosen = value.strip().replace(" ", "").split(",")
    if len(set(chosen)) != len(chosen) or not set(chosen) <= set(NAMES):
        raise click.BadParameter(f"{value.strip()!r}: use {DESTINATIONS_TOLD}")
    return ",".join(name for name in NAMES if name in chosen)


def valid_email(value: str) -> str:
    return _pattern("AlarmEmail", value.strip())


# -- what AWS and Auth0 say -----------------------------------------------------------------------


class Asker:
    """Answers from the flags, else from the prompt (re-asked until the rule holds), else, with
    --no-input, the default or an error naming the flag."""

    def __init__(self, interactive: bool, note: Callable[[str], None]) -> None:
        self.interactive = interactive
        self.note = note

    def ask(
        self,
        text: str,
        given: str | None,
        rule: Callable[[str], Any],
        *,
        flag: str,
        default: str | None = None,
        hide: bool = False,
    ) -> Any:
        if given is not None:
            try:
                return rule(given)
            except click.BadParameter as error:
                raise click.BadParameter(error.message, param_hint=flag) from None
        if not self.interactive:
            if default is None:
                raise click.UsageError(f"{flag} is required with --no-input ({text})")
            return rule(default)
        return click.prompt(
            text, default=default, value_proc=rule, hide_input=hide, show_default=not hide
        )

    def confirm(self, text: str, given: bool | None, *, default: bool) -> bool:
        if given is not None or not self.interactive:
            return default if given is None else given
        return click.confirm(text, default=default)


def secret_exists(env: Environment, name: str) -> bool | None:
    """Whether the secret exists in the env's region (None: AWS could not say)."""
    client = env.aws_client("secretsmanager")
    try:
        client.describe_secret(SecretId=name)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return False
        raise
    return True


def _with(env: Environment, **variables: str | None) -> Environment:
    values = {**env.variables, **{k: v for k, v in variables.items() if v is not None}}
    for name, value in variables.items():
        if value is None:
            values.pop(name, None)
    return Environment(values)


def auth0_client_for(env: Environment) -> Any:
    """The function's Auth0 client for these variables, with a token already: Auth0AuthError
    when Auth0 refuses the credentials."""
    client = env.auth0_client(env.settings(aws=False))
    client.authenticate()
    return client


def _watched_rule(
    client: Any, allow_unknown: bool, note: Callable[[str], None]
) -> Callable[[str], tuple[str, ...]]:
    """The ids, each one Auth0 does not know refused; each one it could not be asked about
    said, in `check`'s words (a mistyped id must not pass in silence)."""

    def rule(value: str) -> tuple[str, ...]:
        ids = parse_watched(value)
        unknown, unverified = [], []
        for user_id in ids:
            if client is None:
                unverified.append((user_id, "Auth0 could not be tried (see above)"))
                continue
            try:
                lookup = verify_id(client, client, user_id, CallScope(CallStats()))
            except Auth0Error as error:
                unverified.append((user_id, f"{type(error).__name__}: {error}"))
                continue
            if lookup.verdict == UNKNOWN:
                unknown.append(f"{user_id!r} ({lookup.detail})")
            elif lookup.verdict != KNOWN:
                unverified.append((user_id, lookup.detail))
        if unknown and not allow_unknown:
            raise click.BadParameter(
                f"Auth0 does not know {'; '.join(unknown)}: a wrong id? (--allow-unknown "
                "for a user to be created later)"
            )
        for user_id, why in unverified:
            note(unverified_warning(user_id, why))
        return ids

    return rule


@dataclass(frozen=True)
class InitOptions:
    output: Path
    force: bool
    interactive: bool
    allow_unknown: bool
    stack_name: str
    region: str | None
    domain: str | None
    secret: str | None
    create_secret: bool | None
    watched_user_ids: str | None
    destinations: str | None
    alarm_email: str | None


def run_init(env: Environment, options: InitOptions, note: Callable[[str], None]) -> Answers:
    """Ask, check, and write the file; returns the answers written."""
    if options.output.exists() and not options.force:
        raise ConfigError(
            f"{options.output} exists: it holds an earlier deployment's answers; pass --force "
            "to replace it (sam deploy reads it), or --output another file"
        )
    if not options.output.parent.is_dir():
        raise ConfigError(f"{options.output}: its directory does not exist")
    if not STACK_NAME.match(options.stack_name):
        raise click.BadParameter(
            f"{options.stack_name!r}: a letter, then letters, digits and '-' (128 at most)",
            param_hint="--stack-name",
        )
    ask = Asker(options.interactive, note)
    region = ask.ask(
        "AWS region of the stack (the secret must be there too)",
        options.region,
        valid_region,
        flag="--region",
        default=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
    )
    domain = ask.ask(
        "Auth0 tenant domain",
        options.domain,
        valid_domain,
        flag="--domain",
        default=env.get("AUTH0_DOMAIN"),
    )
    here = _with(env, AWS_REGION=region, AUTH0_DOMAIN=domain)
    secret_name, client = _secret(here, ask, options, note)
    watched = ask.ask(
        "Watched user ids, comma-separated (empty: the watch list table, `watch add` later)",
        options.watched_user_ids,
        _watched_rule(client, options.allow_unknown, note),
        flag="--watched-user-ids",
        default=env.get("WATCHED_USER_IDS") or "",
    )
    destinations = ask.ask(
        f"Destinations ({DESTINATIONS_TOLD})",
        options.destinations,
        valid_destinations,
        flag="--destinations",
        default="cloudwatch",
    )
    alarm_email = ask.ask(
        "E-mail address the alarms notify (empty: none)",
        options.alarm_email,
        valid_email,
        flag="--alarm-email",
        default="",
    )
    answers = Answers(
        options.stack_name, region, domain, secret_name, watched, destinations, alarm_email
    )
    try:
        if options.output.exists():
            # --force replaces the file whole: other environments and build settings a team
            # kept in it are kept beside it, not lost without a word.
            kept = options.output.with_name(options.output.name + ".bak")
            kept.write_bytes(options.output.read_bytes())
            note(f"the previous {options.output.name} is kept as {kept}")
        options.output.write_text(samconfig_text(answers, datetime.now(UTC)), encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{options.output} cannot be written: {error.strerror}") from None
    return answers


def _secret(
    env: Environment, ask: Asker, options: InitOptions, note: Callable[[str], None]
) -> tuple[str, Any]:
    """The secret's name, created when asked to, and an Auth0 client made from it (None when
    its credentials could not be tried). Credentials Auth0 refuses stop init: a stack deployed
    with them would fail every run."""
    region = env.get("AWS_REGION")
    name = ask.ask(
        "Secrets Manager secret with the M2M application's client_id and client_secret",
        options.secret,
        valid_secret_name,
        flag="--secret",
        default=DEFAULT_SECRET,
    )
    try:
        exists = secret_exists(env, name)
    except (BotoCoreError, ClientError) as error:
        note(
            f"could not check secret {name!r} in {region} ({type(error).__name__}: {error}); "
            "it must exist there before `sam deploy` (README, The secret)"
        )
        return name, None
    if not exists:
        create = ask.confirm(
            f"Secret {name!r} does not exist in {region}: create it now?",
            options.create_secret,
            default=False,
        )
        if not create:
            raise ConfigError(
                f"secret {name!r} does not exist in {region}: name an existing one, or create "
                "it (--create-secret, with AUTH0_CLIENT_ID and AUTH0_CLIENT_SECRET set, or "
                "answer yes)"
            )
        _create_secret(env, ask, name)
        note(f"created secret {name!r} in {region}")
    reading = _with(
        env, AUTH0_CREDENTIALS_SECRET=name, AUTH0_CLIENT_ID=None, AUTH0_CLIENT_SECRET=None
    )
    return name, _tried(reading, f"the credentials in secret {name!r}", note)


def _tried(env: Environment, what: str, note: Callable[[str], None]) -> Any:
    """An Auth0 client with a token for these credentials; None (and a note) when Auth0 or
    the secret could not be reached; ConfigError when Auth0 refuses them."""
    try:
        return auth0_client_for(env)
    except Auth0AuthError as refused:
        raise ConfigError(
            f"Auth0 refuses {what}: {refused}. Nothing was written; fix them and run init again"
        ) from None
    except (Auth0Error, ConfigError, BotoCoreError, ClientError) as error:
        note(f"{what} could not be tried against Auth0 ({error})")
        return None


def _create_secret(env: Environment, ask: Asker, name: str) -> None:
    client_id = ask.ask(
        "M2M application's client id",
        None,
        _non_empty("the client id"),
        flag="AUTH0_CLIENT_ID",
        default=env.get("AUTH0_CLIENT_ID"),
    )
    client_secret = ask.ask(
        "M2M application's client secret (not shown)",
        None,
        _non_empty("the client secret"),
        flag="AUTH0_CLIENT_SECRET",
        default=env.get("AUTH0_CLIENT_SECRET"),
        hide=True,
    )
    # Tried before it is stored: credentials Auth0 refuses are not worth a secret.
    typed = _with(
        env,
        AUTH0_CREDENTIALS_SECRET=None,
        AUTH0_CLIENT_ID=client_id,
        AUTH0_CLIENT_SECRET=client_secret,
    )
    _tried(typed, "these credentials", lambda _text: None)
    env.aws_client("secretsmanager").create_secret(
        Name=name,
        Description="Auth0 M2M credentials of auth0-user-log-forwarder",
        SecretString=json.dumps({"client_id": client_id, "client_secret": client_secret}),
    )


def _non_empty(what: str) -> Callable[[str], str]:
    def rule(value: str) -> str:
        if not value.strip():
            raise click.BadParameter(f"{what} is required")
        return value.strip()

    return rule


@click.command("init")
@click.option(
    "--output",
    default="samconfig.toml",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The file to write (beside template.yaml: sam deploy reads it from there).",
)
@click.option("--force", is_flag=True, help="Replace an existing file.")
@click.option("--no-input", is_flag=True, help="Never prompt: every answer from the flags.")
@click.option("--stack-name", default=DEFAULT_STACK, show_default=True)
@click.option("--region", help="AWS region of the stack (default: AWS_REGION).")
@click.option("--domain", help="The Auth0 tenant's domain (default: AUTH0_DOMAIN).")
@click.option("--secret", help=f"Secrets Manager secret name [{DEFAULT_SECRET}].")
@click.option(
    "--create-secret/--existing-secret",
    default=None,
    help="Create the secret when it does not exist (AUTH0_CLIENT_ID, AUTH0_CLIENT_SECRET).",
)
@click.option("--watched-user-ids", help="Comma-separated ids; empty: the watch list table.")
@click.option("--destinations", help=f"{DESTINATIONS_TOLD} [cloudwatch].")
@click.option("--alarm-email", help="Address the alarms notify; empty: none.")
@click.option("--allow-unknown", is_flag=True, help="Accept ids Auth0 does not know (yet).")
@click.pass_context
def init_command(ctx: click.Context, /, no_input: bool, **given: Any) -> None:
    """Write samconfig.toml from the few answers a deployment needs, each checked (the
    tenant, the secret, the watched ids, the destinations, the alarm e-mail); then `sam build
    && sam deploy` deploys with no --guided session."""
    from .commands import err, handled, out
    from .terminal import safe

    env = ctx.obj
    assert isinstance(env, Environment)
    options = InitOptions(interactive=not no_input, **given)

    def work() -> None:
        # The notes hold AWS's and Auth0's own words, the steps what the operator typed.
        answers = run_init(env, options, lambda text: err.print(f"Note: {safe(text)}"))
        for line in next_steps(answers, options.output, answers.watched_user_ids):
            out.print(safe(line))

    handled(work)()


def next_steps(answers: Answers, output: Path, watched: Sequence[str]) -> list[str]:
    steps = [
        f"Wrote {output}: stack {answers.stack_name!r} in {answers.region}, "
        f"{len(answers.parameters())} parameters set, every other at its default.",
        "Next: sam build   (needs python3.12 on PATH, or --use-container)",
        "      sam deploy  (reads samconfig.toml; asks only to confirm the change set)",
    ]
    if not watched:
        steps.append(
            "      auth0-log-forwarder --watch-table <WatchListTableName> watch add USER  "
            "(no watched ids yet)"
        )
    return steps
