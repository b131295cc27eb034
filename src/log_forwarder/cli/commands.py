"""The commands of `auth0-log-forwarder`; each reads the function's variables (environment,
--env-file, flags), does its work in its own module, and prints with rich."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.logging import RichHandler

from log_forwarder.exceptions import ConfigError, ForwarderError

from .backfill import BackfillRange
from .environment import Environment, local_stack_file
from .params import CLIENT_ID, DOMAIN, REGION, TABLE, Instant, Seconds, UserId
from .terminal import safe, visible

F = TypeVar("F", bound=Callable[..., Any])
# Tables keep their columns readable when the output goes to a file or a pipe (80 columns would
# fold every id); on a terminal, or with COLUMNS set, rich uses that width.
_SIZED = "COLUMNS" in os.environ
out = Console(highlight=False, width=None if _SIZED or sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, width=None if _SIZED or sys.stderr.isatty() else 160)

# Exit codes: 0 fine; 1 the command found (or met) a problem; 2 it could not run as asked;
# 130 stopped by Ctrl-C (128 + SIGINT, as a shell reports it).
PROBLEM, UNUSABLE, INTERRUPTED = 1, 2, 130


class _ExtraFormatter(logging.Formatter):
    """The forwarder's log lines name their subject in `extra` (user_id, reason...): shown."""

    _standard = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        extras = {k: v for k, v in vars(record).items() if k not in self._standard}
        text = record.getMessage()
        # Log lines quote Auth0's and AWS's words: shown, never obeyed by the terminal.
        return safe(text + "".join(f" {k}={v!r}" for k, v in extras.items()))


def _log_to_stderr() -> None:
    handler = RichHandler(console=err, show_time=False, show_path=False, markup=True)
    handler.setFormatter(_ExtraFormatter())
    package = logging.getLogger("log_forwarder")
    package.handlers[:] = [handler]
    package.setLevel(logging.WARNING)
    package.propagate = False


def handled(command: F) -> F:
    """A ForwarderError (configuration, Auth0, AWS) or an AWS refusal is a message and exit
    code 2, not a traceback; Ctrl-C is exit code 130."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except KeyboardInterrupt:
            err.print("Interrupted (Ctrl-C).")
            raise SystemExit(INTERRUPTED) from None
        except ConfigError as error:
            _fail("Error", error, None)
        except ForwarderError as error:
            _fail("Error", error, _aws_context(error))
        except (BotoCoreError, ClientError) as error:
            # AWS said no (credentials, a table that does not exist, permissions): its words,
            # and which call, resource, variable and region they were about.
            _fail("AWS error", error, _aws_context(error))

    return wrapper  # type: ignore[return-value]


def _aws_context(error: BaseException) -> str | None:
    context = click.get_current_context(silent=True)
    env = context.find_object(Environment) if context is not None else None
    return env.explain_aws_failure(error) if env is not None else None


def _fail(label: str, error: BaseException, context: str | None) -> NoReturn:
    """Print the error (its text may quote Auth0 or AWS) and exit 2."""
    text = f"[red]{label}:[/red] {safe(error)}"
    if context:
        text += f"\n  {safe(context)}"
    err.print(text, markup=True, highlight=False)
    raise SystemExit(UNUSABLE) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--env-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Variables of the function, as `sam local invoke --env-vars` takes them "
    '({"ForwarderFunction": {...}}) or a flat JSON object; they override the environment.',
)
@click.option(
    "--local-stack",
    is_flag=True,
    help="Use the `make local-stack` running from this clone (its simulator and moto, at the "
    "addresses this machine reaches them), as --env-file with the file it writes.",
)
@click.option(
    "--domain", type=DOMAIN, help="AUTH0_DOMAIN: the tenant, e.g. my-tenant.eu.auth0.com."
)
@click.option(
    "--client-id",
    type=CLIENT_ID,
    help="AUTH0_CLIENT_ID (the secret comes from AUTH0_CLIENT_SECRET).",
)
@click.option(
    "--checkpoint-table", type=TABLE, help="CHECKPOINT_TABLE: the stack's CheckpointTableName."
)
@click.option("--watch-table", type=TABLE, help="WATCH_TABLE: the stack's WatchListTableName.")
@click.option("--region", type=REGION, help="AWS_REGION of the stack.")
@click.pass_context
@handled
def cli(
    ctx: click.Context, /, env_file: Path | None, local_stack: bool, **flags: str | None
) -> None:
    """Operate the Auth0 user log forwarder: check a tenant, forward locally, backfill, see the
    status, manage the watch list. Reads the function's variables (AUTH0_DOMAIN, CHECKPOINT_TABLE,
    ...) from the environment, --env-file (or --local-stack) or the flags."""
    names = {
        "domain": "AUTH0_DOMAIN",
        "client_id": "AUTH0_CLIENT_ID",
        "checkpoint_table": "CHECKPOINT_TABLE",
        "watch_table": "WATCH_TABLE",
        "region": "AWS_REGION",
    }
    flags = {names[option]: value for option, value in flags.items()}
    if local_stack:
        if env_file is not None:
            raise click.UsageError("--local-stack and --env-file both name the variables: use one")
        env_file = local_stack_file(Path.cwd())
    ctx.obj = Environment.build(env_file, flags)
    _log_to_stderr()


def _env(ctx: click.Context) -> Environment:
    env = ctx.obj
    assert isinstance(env, Environment)
    return env


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


# -- check ----------------------------------------------------------------------------------


@cli.command()
@click.argument("users", nargs=-1, type=UserId())
@click.option(
    "--max-calls",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Auth0 calls at most per user to count its retained events.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
@handled
def check(ctx: click.Context, users: tuple[str, ...], max_calls: int, as_json: bool) -> None:
    """Check the tenant a scheduled run would meet (no AWS needed): token and scopes, rate
    limit, and per watched user: known to Auth0?, events retained, calls a first run costs.
    USERS default to WATCHED_USER_IDS, then the watch list table when WATCH_TABLE is set.
    Exits 1 on anything that would make a run fail or lose events."""
    from .check import run_check

    env = _env(ctx)
    settings = env.settings(aws=False)
    ids = list(users) if users else list(settings.watched_user_ids or ())
    if not ids and settings.watch_table:
        ids = [entry.user_id for entry in _watch_admin(env).entries()]
    report = run_check(settings, ids, lambda http: env.auth0_client(settings, http), max_calls)
    if as_json:
        _print_json(report.as_dict())
    else:
        from .render import print_check

        print_check(out, report)
    raise SystemExit(PROBLEM if report.failed else 0)


# -- run --local ----------------------------------------------------------------------------


@cli.command()
@click.option(
    "--local",
    "directory",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for the checkpoints (SQLite) and the S3-layout objects.",
)
@click.argument("users", nargs=-1, type=UserId())
@click.option(
    "--time-limit",
    type=Seconds(),
    default=3600.0,
    show_default=True,
    help="Seconds; what is left is read by the next run.",
)
@click.pass_context
@handled
def run(ctx: click.Context, directory: Path, users: tuple[str, ...], time_limit: float) -> None:
    """Forward from this machine into DIR, with the function's own core and no AWS: SQLite
    checkpoints and the S3 sink's objects as files. Run it again to continue or to get new
    events. USERS default to WATCHED_USER_IDS, then DIR's watch list; USERS named are added
    to DIR's watch list, so the next run (and `status --local DIR`) knows them."""
    from .render import print_run
    from .run_local import run_local

    done = run_local(_env(ctx), directory, users, err, time_limit)
    if done.added:
        out.print(f"Added to {safe(directory)}'s watch list: {safe(', '.join(done.added))}")
    print_run(out, done.report, f"run --local {safe(directory)}")
    if done.interrupted:
        err.print("Stopped by Ctrl-C: run the same command to continue where it stopped.")
        raise SystemExit(INTERRUPTED)
    raise SystemExit(PROBLEM if done.report.failed else 0)


# -- backfill -------------------------------------------------------------------------------


@cli.command()
@click.argument("user", type=UserId())
@click.option(
    "--since",
    type=Instant(),
    required=True,
    help="First instant to forward: ISO-8601 with a zone, e.g. 2026-11-20T00:00:00Z.",
)
@click.option(
    "--until",
    type=Instant(),
    help="Last instant (inclusive), as --since; default and ceiling: the live checkpoint.",
)
@click.option(
    "--time-limit",
    type=Seconds(),
    default=3600.0,
    show_default=True,
    help="Seconds; run the same command again to continue.",
)
@click.pass_context
@handled
def backfill(
    ctx: click.Context, user: str, since: int, until: int | None, time_limit: float
) -> None:
    """Forward USER's events of a past range again into the configured destinations, each
    given only what it lacks (read back to check); the live checkpoint is never moved. An
    interrupted backfill resumes; a finished one is read again from its start, to check the
    destinations as they are now (e.g. after objects were deleted)."""
    from .backfill_run import run_backfill

    span = BackfillRange(user, since, until)
    if span.until_ms is not None and span.until_ms < span.since_ms:
        raise click.BadParameter("must not be before --since", param_hint="--until")
    outcome = run_backfill(_env(ctx), span, err, time_limit)
    from .render import print_backfill

    print_backfill(out, outcome)
    if outcome.interrupted:
        err.print("Stopped by Ctrl-C: run the same command to continue where it stopped.")
        raise SystemExit(INTERRUPTED)
    raise SystemExit(0 if outcome.done else PROBLEM)


# -- status ---------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--local",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="The directory of `run --local` instead of the checkpoint table.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_context
@handled
def status(ctx: click.Context, directory: Path | None, as_json: bool) -> None:
    """Per user: watched?, state, watermark and lag, backlog, last run, gaps, last error."""
    from .status import (
        backfill_table,
        problems,
        read_mode_note,
        status_table,
        statuses,
        tenant_note,
    )

    env = _env(ctx)
    items, watched, notes = _status_inputs(env, directory)
    rows, backfills = statuses(items, watched, time.time())
    failing = tenant_note(items)
    notes.extend(note for note in (failing, read_mode_note(items)) if note)
    found = problems(rows, tenant_failing=failing is not None)
    if not watched:
        notes.append("no watched users: a scheduled run forwards nothing")
    unreadable = [row for row in rows if row.unreadable]
    if unreadable:
        notes.append(
            f"{len(unreadable)} of {len(rows)} users' checkpoint items cannot be read (state "
            "unreadable, with the reason): an attribute beside the state was edited by hand. "
            "Runs do not read those attributes, and rewrite them at the user's next checkpoint"
        )
    if as_json:
        document = {"users": [r.as_dict() for r in rows], "backfills": backfills, "notes": notes}
        _print_json({**document, "tenant_failing": failing is not None, "problems": found})
    else:
        out.print(status_table(rows))
        if backfills:
            out.print(backfill_table(backfills))
        for note in notes:
            out.print(f"Note: {safe(note)}")
    # A script or a monitor reads the exit code: 1 whenever a watched user is not forwarded.
    raise SystemExit(PROBLEM if found else 0)


def _status_inputs(
    env: Environment, directory: Path | None
) -> tuple[list[dict[str, Any]], dict[str, str], list[str]]:
    """(checkpoint items, watched users and how, notes)."""
    notes: list[str] = []
    if directory is not None:
        from .local import STORE_FILE, SqliteCheckpointStore

        if not (directory / STORE_FILE).exists():
            raise click.ClickException(f"{directory} holds no checkpoints of `run --local`")
        store = SqliteCheckpointStore(directory / STORE_FILE)
        items, local = store.items(), store.watched_users()
        store.close()
        watched = dict.fromkeys(local, "local")
    else:
        from .status import scan_checkpoints

        table = env.required("CHECKPOINT_TABLE", "the stack's CheckpointTableName")
        items = scan_checkpoints(env.aws_client("dynamodb"), table)
        # Checkpoint items flagged the earlier way are watched too (the scan holds them).
        legacy = [i["user_id"] for i in items if i.get("watch") in (True, "true")]
        watched = dict.fromkeys(legacy, "legacy")
        if env.get("WATCH_TABLE"):
            watched = {**watched, **dict.fromkeys(_watched_in_table(env), "table")}
    variable = _watched_by_variable(env, directory)
    if variable is not None:
        settings_ids, note = variable
        watched = dict.fromkeys(settings_ids, "WATCHED_USER_IDS")
        notes.append(note)
    return items, watched, notes


def _watched_by_variable(
    env: Environment, directory: Path | None
) -> tuple[tuple[str, ...], str] | None:
    """The ids WATCHED_USER_IDS lists and the note saying the list it overrides is not read;
    None when it is not set (the function reads that list and no table then: config.py)."""
    if not env.get("WATCHED_USER_IDS"):
        return None
    ignored = "DIR's watch list" if directory is not None else "the watch list table"
    return (
        tuple(env.settings(aws=False).watched_user_ids or ()),
        f"WATCHED_USER_IDS is set: it is the watch list, {ignored} is not read",
    )


def _watched_in_table(env: Environment) -> list[str]:
    from .watch import DynamoWatchAdmin

    # The table alone: the legacy flags come from the checkpoint scan already made.
    admin = DynamoWatchAdmin(env.aws_client("dynamodb"), env.get("WATCH_TABLE"), None)
    return [entry.user_id for entry in admin.entries()]


# -- watch ----------------------------------------------------------------------------------


def _watch_admin(env: Environment) -> Any:
    from .watch import DynamoWatchAdmin

    return DynamoWatchAdmin(
        env.aws_client("dynamodb"), env.get("WATCH_TABLE"), env.get("CHECKPOINT_TABLE")
    )


def _with_watch_list(
    directory: Path | None, env: Environment, action: Callable[[Any], None]
) -> None:
    if directory is None:
        action(_watch_admin(env))
        return
    from .local import STORE_FILE, SqliteCheckpointStore
    from .watch import LocalWatchAdmin

    directory.mkdir(parents=True, exist_ok=True)
    store = SqliteCheckpointStore(directory / STORE_FILE)
    try:
        action(LocalWatchAdmin(store))
    finally:
        store.close()


_LOCAL_OPTION = click.option(
    "--local",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="The watch list of a `run --local` directory instead of the table.",
)


@cli.group()
def watch() -> None:
    """The watch list (WATCH_TABLE): add, remove, list. Never touches a checkpoint."""


@watch.command("add")
@click.argument("users", nargs=-1, required=True, type=UserId())
@_LOCAL_OPTION
@click.option(
    "--allow-unknown",
    is_flag=True,
    help="Add ids Auth0 does not know (yet): a user to be created later.",
)
@click.pass_context
@handled
def watch_add(
    ctx: click.Context, users: tuple[str, ...], directory: Path | None, allow_unknown: bool
) -> None:
    """Watch USERS from the next run (a user watched before resumes from its checkpoint). Each
    id is first looked up in Auth0: one it does not know is refused."""
    from .watch import verify_new_ids

    verify_new_ids(
        _env(ctx),
        users,
        allow_unknown=allow_unknown,
        note=lambda text: err.print(f"Note: {visible(text)}", markup=False),
    )

    def add(admin: Any) -> None:
        for user_id in users:
            out.print(f"{safe(user_id)}: {admin.add(user_id)}")

    _with_watch_list(directory, _env(ctx), add)
    if directory is None and _env(ctx).get("WATCHED_USER_IDS"):
        err.print("Note: WATCHED_USER_IDS is set here; a function with it set ignores the table.")


@watch.command("remove")
@click.argument("users", nargs=-1, required=True, type=UserId())
@_LOCAL_OPTION
@click.pass_context
@handled
def watch_remove(ctx: click.Context, users: tuple[str, ...], directory: Path | None) -> None:
    """Stop watching USERS; their checkpoints stay, so watching them again resumes there."""

    def remove(admin: Any) -> None:
        for user_id in users:
            said = "removed (its checkpoint is kept)" if admin.remove(user_id) else "not watched"
            out.print(f"{safe(user_id)}: {said}")

    _with_watch_list(directory, _env(ctx), remove)


@watch.command("list")
@_LOCAL_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_context
@handled
def watch_list(ctx: click.Context, directory: Path | None, as_json: bool) -> None:
    """The watched users, and where each is listed."""
    from .render import watch_table
    from .watch import WatchEntry

    def show(entries: list[WatchEntry]) -> None:
        if as_json:
            _print_json([vars(e) for e in entries])
        else:
            out.print(watch_table(entries))

    env = _env(ctx)
    # Listing the table while WATCHED_USER_IDS overrides it would show who is not watched.
    variable = _watched_by_variable(env, directory)
    if variable is None:
        _with_watch_list(directory, env, lambda admin: show(admin.entries()))
        return
    settings_ids, note = variable
    show([WatchEntry(user_id, "WATCHED_USER_IDS") for user_id in settings_ids])
    err.print(f"Note: {note}")


# -- init (cli/init.py: it uses `handled`, `out` and `err` above) ---------------------------

from .init import init_command  # noqa: E402

cli.add_command(init_command)

# -- rules (cli/rules.py: Sigma rule packs and hunting) --------------------------------------

from .rules import rules_group  # noqa: E402

cli.add_command(rules_group)
