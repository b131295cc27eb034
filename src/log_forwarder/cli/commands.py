"""The commands of `auth0-log-forwarder`; each reads the function's variables (environment,
--env-file, flags), does its work in its own module, and prints with rich."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.logging import RichHandler

from log_forwarder.config import parse_start_from
from log_forwarder.exceptions import ForwarderError

from .backfill import BackfillRange
from .environment import Environment

F = TypeVar("F", bound=Callable[..., Any])
# Tables keep their columns readable when the output goes to a file or a pipe (80 columns would
# fold every id); on a terminal, rich uses its width.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)

# Exit codes: 0 fine; 1 the command found (or met) a problem; 2 it could not run as asked.
PROBLEM, UNUSABLE = 1, 2


class _ExtraFormatter(logging.Formatter):
    """The forwarder's log lines name their subject in `extra` (user_id, reason...): shown."""

    _standard = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        extras = {k: v for k, v in vars(record).items() if k not in self._standard}
        text = record.getMessage()
        return text + "".join(f" {k}={v!r}" for k, v in extras.items())


def _log_to_stderr() -> None:
    handler = RichHandler(console=err, show_time=False, show_path=False)
    handler.setFormatter(_ExtraFormatter())
    package = logging.getLogger("log_forwarder")
    package.handlers[:] = [handler]
    package.setLevel(logging.WARNING)
    package.propagate = False


def handled(command: F) -> F:
    """A ForwarderError (configuration, Auth0, AWS) or an AWS refusal is a message and exit
    code 2, not a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ForwarderError as error:
            err.print(f"[red]Error:[/red] {error}", markup=True, highlight=False)
            raise SystemExit(UNUSABLE) from None
        except (BotoCoreError, ClientError) as error:
            # AWS said no (credentials, a table that does not exist, permissions): its words.
            err.print(f"[red]AWS error:[/red] {error}", markup=True, highlight=False)
            raise SystemExit(UNUSABLE) from None

    return wrapper  # type: ignore[return-value]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--env-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Variables of the function, as `sam local invoke --env-vars` takes them "
    '({"ForwarderFunction": {...}}) or a flat JSON object; they override the environment.',
)
@click.option("--domain", help="AUTH0_DOMAIN: the tenant, e.g. my-tenant.eu.auth0.com.")
@click.option("--client-id", help="AUTH0_CLIENT_ID (the secret comes from AUTH0_CLIENT_SECRET).")
@click.option("--checkpoint-table", help="CHECKPOINT_TABLE: the stack's CheckpointTableName.")
@click.option("--watch-table", help="WATCH_TABLE: the stack's WatchListTableName.")
@click.option("--region", help="AWS_REGION of the stack.")
@click.pass_context
def cli(ctx: click.Context, /, env_file: Path | None, **flags: str | None) -> None:
    """Operate the Auth0 user log forwarder: check a tenant, forward locally, backfill, see the
    status, manage the watch list. Reads the function's variables (AUTH0_DOMAIN, CHECKPOINT_TABLE,
    ...) from the environment, --env-file or the flags."""
    names = {
        "domain": "AUTH0_DOMAIN",
        "client_id": "AUTH0_CLIENT_ID",
        "checkpoint_table": "CHECKPOINT_TABLE",
        "watch_table": "WATCH_TABLE",
        "region": "AWS_REGION",
    }
    flags = {names[option]: value for option, value in flags.items()}
    ctx.obj = Environment.build(env_file, flags)
    _log_to_stderr()


def _env(ctx: click.Context) -> Environment:
    env = ctx.obj
    assert isinstance(env, Environment)
    return env


def _instant_ms(value: str, option: str) -> int:
    start = parse_start_from(value)
    if start.instant_ms is None:
        raise click.BadParameter(
            "an ISO-8601 instant with a zone, e.g. 2026-11-01T00:00:00Z", param_hint=option
        )
    return start.instant_ms


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


# -- check ----------------------------------------------------------------------------------


@cli.command()
@click.argument("users", nargs=-1)
@click.option(
    "--max-calls",
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
    from .watch import valid_ids

    env = _env(ctx)
    settings = env.settings(aws=False)
    ids = valid_ids(users) if users else list(settings.watched_user_ids or ())
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
@click.argument("users", nargs=-1)
@click.option(
    "--time-limit",
    default=3600.0,
    show_default=True,
    help="Seconds; what is left is read by the next run.",
)
@click.pass_context
@handled
def run(ctx: click.Context, directory: Path, users: tuple[str, ...], time_limit: float) -> None:
    """Forward from this machine into DIR, with the function's own core and no AWS: SQLite
    checkpoints and the S3 sink's objects as files. Run it again to continue or to get new
    events. USERS default to WATCHED_USER_IDS, then DIR's watch list."""
    from .render import print_run
    from .run_local import run_local
    from .watch import valid_ids

    report = run_local(_env(ctx), directory, valid_ids(users), err, time_limit)
    print_run(out, report, f"run --local {directory}")
    raise SystemExit(PROBLEM if report.failed else 0)


# -- backfill -------------------------------------------------------------------------------


@cli.command()
@click.argument("user")
@click.option("--since", required=True, help="First instant to forward (ISO-8601 with a zone).")
@click.option("--until", help="Last instant (inclusive); default and ceiling: the live checkpoint.")
@click.option(
    "--time-limit",
    default=3600.0,
    show_default=True,
    help="Seconds; run the same command again to continue.",
)
@click.pass_context
@handled
def backfill(
    ctx: click.Context, user: str, since: str, until: str | None, time_limit: float
) -> None:
    """Forward USER's events of a past range again into the configured destinations, skipping
    what they already hold; the live checkpoint is never moved. Resumable."""
    from .backfill_run import run_backfill
    from .watch import valid_ids

    (user_id,) = valid_ids((user,))
    span = BackfillRange(
        user_id,
        _instant_ms(since, "--since"),
        None if until is None else _instant_ms(until, "--until"),
    )
    if span.until_ms is not None and span.until_ms < span.since_ms:
        raise click.BadParameter("must not be before --since", param_hint="--until")
    outcome = run_backfill(_env(ctx), span, err, time_limit)
    from .render import print_backfill

    print_backfill(out, outcome)
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
    from .status import backfill_table, read_mode_note, status_table, statuses

    env = _env(ctx)
    items, watched, notes = _status_inputs(env, directory)
    rows, backfills = statuses(items, watched, time.time())
    mode = read_mode_note(items)
    if mode:
        notes.append(mode)
    if not watched:
        notes.append("no watched users: a scheduled run forwards nothing")
    if as_json:
        _print_json({"users": [r.as_dict() for r in rows], "backfills": backfills, "notes": notes})
        return
    out.print(status_table(rows))
    if backfills:
        out.print(backfill_table(backfills))
    for note in notes:
        out.print(f"Note: {note}")


def _status_inputs(
    env: Environment, directory: Path | None
) -> tuple[list[dict[str, Any]], dict[str, str], list[str]]:
    """(checkpoint items, watched users and how, notes)."""
    notes: list[str] = []
    listed = env.get("WATCHED_USER_IDS")
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
    if listed:
        settings_ids = env.settings(aws=False).watched_user_ids or ()
        watched = dict.fromkeys(settings_ids, "WATCHED_USER_IDS")
        ignored = "DIR's watch list" if directory is not None else "the watch list table"
        notes.append(f"WATCHED_USER_IDS is set: it is the watch list, {ignored} is not read")
    return items, watched, notes


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
@click.argument("users", nargs=-1, required=True)
@_LOCAL_OPTION
@click.pass_context
@handled
def watch_add(ctx: click.Context, users: tuple[str, ...], directory: Path | None) -> None:
    """Watch USERS from the next run (a user watched before resumes from its checkpoint)."""
    from .watch import valid_ids

    ids = valid_ids(users)

    def add(admin: Any) -> None:
        for user_id in ids:
            out.print(f"{user_id}: {admin.add(user_id)}")

    _with_watch_list(directory, _env(ctx), add)
    if directory is None and _env(ctx).get("WATCHED_USER_IDS"):
        err.print("Note: WATCHED_USER_IDS is set here; a function with it set ignores the table.")


@watch.command("remove")
@click.argument("users", nargs=-1, required=True)
@_LOCAL_OPTION
@click.pass_context
@handled
def watch_remove(ctx: click.Context, users: tuple[str, ...], directory: Path | None) -> None:
    """Stop watching USERS; their checkpoints stay, so watching them again resumes there."""
    from .watch import valid_ids

    ids = valid_ids(users)

    def remove(admin: Any) -> None:
        for user_id in ids:
            said = "removed (its checkpoint is kept)" if admin.remove(user_id) else "not watched"
            out.print(f"{user_id}: {said}")

    _with_watch_list(directory, _env(ctx), remove)


@watch.command("list")
@_LOCAL_OPTION
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_context
@handled
def watch_list(ctx: click.Context, directory: Path | None, as_json: bool) -> None:
    """The watched users, and where each is listed."""
    from .render import watch_table

    def show(admin: Any) -> None:
        entries = admin.entries()
        if as_json:
            _print_json([vars(e) for e in entries])
        else:
            out.print(watch_table(entries))

    _with_watch_list(directory, _env(ctx), show)
