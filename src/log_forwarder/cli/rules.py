"""`rules validate|install|list|disable|enable|remove|hunt`: Sigma rule packs in the store the
function reads (RULE_PACKS_TABLE, rule_packs.py), and the same rules as hunting queries.

    rules validate DIR               compile every rule; list those refused, with the feature
    rules install DIR --pack NAME    compile and store (one command for Auth0's whole catalog)
    rules list                       every rule, its pack and status, and whose events it sees
    rules disable|enable RULE...     by id, or by its file's name (credential_stuffing_signals)
    rules disable|enable --pack NAME a whole pack
    rules remove --pack NAME
    rules hunt RULE [--run athena|insights]

Writes are single DynamoDB calls: a pack is one PutItem, disabling is an atomic ADD to a string
set, so two operators at once never undo each other. The function sees a change within
RULE_PACKS_MAX_AGE_SECONDS (300 s by default). pySigma (the `[cli]` extra) is imported only by
the commands that compile.
"""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from log_forwarder.detections import DetectionSettings, default_plan
from log_forwarder.exceptions import ConfigError, RulePackError
from log_forwarder.rule_packs import (
    DEFAULT_MAX_AGE_S,
    DEFAULT_PACK,
    DISABLED_KEY,
    DynamoPackStore,
    StoredPack,
    check_pack_name,
    load_stored,
    pack_item,
    plan_bytes,
)
from log_forwarder.sigma_plan import Plan, PlanCorrelation, PlanRule

from .environment import Environment
from .params import (
    ATHENA_DATABASE,
    LOG_GROUP,
    PACK,
    S3_LOCATION,
    TABLE,
    WORKGROUP,
    Instant,
    Seconds,
)
from .terminal import add_safe_row, safe

# An item holds 400 KB; the rest of the item (name, digest, dates) is small.
MAX_ITEM_PLAN_BYTES = 380_000

# Event types whose user is not a watched one, so a per-user read never returns them for
# anyone the watch list can name in advance (docs/sigma.md, "Rules that see unwatched users").
# Auth0's schemas give every type a user_id: this is by the event's meaning.
UNWATCHED_TYPES: Mapping[str, str] = {
    **dict.fromkeys(("ss", "fs", "signup_pwd_leak"), "signups: a new user nobody watches yet"),
    **dict.fromkeys(
        ("sapi", "fapi", "mgmt_api_read"),
        "Management API calls: seen only when a watched administrator makes them",
    ),
    **dict.fromkeys(
        ("seccft", "feccft"), "client credentials exchanges: a machine, no user at all"
    ),
}
TENANT_WIDE_NOTE = (
    "rules marked in 'events from' see only what watched users do in per-user reads; where the "
    "function reads the whole tenant log (stream mode, the real-time bus), tenant-wide "
    "evaluation of such rules is the option docs/detections.md describes"
)


def _default_pack() -> Plan:
    """The pack that ships with the function, at its default tuning (a deployment's DETECTION_*
    settings tune its windows and thresholds; the rule ids are the same)."""
    return default_plan(DetectionSettings())


@dataclass(frozen=True)
class InstalledPack:
    name: str
    stored: StoredPack | None  # None: the default pack
    plan: Plan | None
    problem: str | None = None


class PackAdmin:
    """The rule packs table, from the operator's side (the function only reads it)."""

    def __init__(self, client: Any, table: str) -> None:
        self._client = client
        self.table = table
        self._store = DynamoPackStore(table, client)

    def installed(self) -> tuple[list[InstalledPack], frozenset[str]]:
        """Every pack (the default first), each loaded as the function loads it, and the ids
        disabled."""
        stored = self._store.read()
        packs = [InstalledPack(DEFAULT_PACK, None, _default_pack())]
        for pack in sorted(stored.packs, key=lambda p: p.name):
            try:
                packs.append(InstalledPack(pack.name, pack, load_stored(pack)))
            except RulePackError as error:
                packs.append(InstalledPack(pack.name, pack, None, str(error)))
        packs += [InstalledPack(p.pack, None, None, p.reason) for p in stored.unreadable]
        return packs, stored.disabled

    def put(self, item: Mapping[str, Any]) -> None:
        self._client.put_item(TableName=self.table, Item=dict(item))

    def remove(self, name: str) -> bool:
        answer = self._client.delete_item(
            TableName=self.table, Key={"pack": {"S": name}}, ReturnValues="ALL_OLD"
        )
        return "Attributes" in answer

    def set_enabled(self, name: str, enabled: bool) -> bool:
        try:
            self._client.update_item(
                TableName=self.table,
                Key={"pack": {"S": name}},
                UpdateExpression="SET enabled = :e",
                ConditionExpression="attribute_exists(pack)",
                ExpressionAttributeValues={":e": {"BOOL": enabled}},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def switch_rules(self, rule_ids: Sequence[str], *, disable: bool) -> None:
        """One atomic ADD (or DELETE) on the disabled set: concurrent changes all land."""
        self._client.update_item(
            TableName=self.table,
            Key={"pack": {"S": DISABLED_KEY}},
            UpdateExpression=("ADD" if disable else "DELETE") + " rule_ids :ids",
            ExpressionAttributeValues={":ids": {"SS": sorted(set(rule_ids))}},
        )


def _admin(env: Environment, table: str | None) -> PackAdmin:
    name = table or env.required(
        "RULE_PACKS_TABLE", "the stack's RulePacksTableName output (or pass --table)"
    )
    return PackAdmin(env.aws_client("dynamodb"), name)


def _variables(given: Sequence[str]) -> dict[str, list[str]]:
    variables: dict[str, list[str]] = {}
    for entry in given:
        name, sep, value = entry.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(
                f"{entry!r} is not NAME=VALUE, e.g. your-tenant-url=example.eu.auth0.com",
                param_hint="--var",
            )
        variables.setdefault(name.strip(), []).append(value)
    return variables


def _compile(folder: Path, variables: Mapping[str, Sequence[str]]) -> Any:
    try:
        from .sigma_compiler import compile_paths
    except ImportError as error:  # pragma: no cover - the [cli] extra installs it
        raise ConfigError(
            f"compiling Sigma needs pySigma ({error.name}): pip install "
            "'auth0-user-log-forwarder[cli]'"
        ) from None
    return compile_paths([folder], variables=variables)


def _refused_table(compiled: Any) -> Table:
    table = Table(title=f"Refused ({len(compiled.refused)})", title_justify="left")
    for column in ("file", "rule", "needs"):
        table.add_column(column, overflow="fold")
    for refusal in compiled.refused:
        add_safe_row(table, (refusal.source, refusal.rule, refusal.feature))
    return table


def _say_compiled(out: Any, compiled: Any, folder: Path) -> None:
    plan = compiled.plan
    out.print(
        f"{len(plan['rules'])} rules and {len(plan['correlations'])} correlations compiled from "
        f"{safe(folder)}; {len(compiled.refused)} refused"
    )
    if compiled.refused:
        out.print(_refused_table(compiled))
    for note in compiled.notes:
        out.print(f"Note: {safe(note)}")
    for rule in plan["rules"]:
        if rule["placeholders"]:
            out.print(
                f"Note: {safe(rule['source'])} cannot match until its placeholders are given "
                f"(--var NAME=VALUE): {safe(', '.join(rule['placeholders']))}"
            )


# -- list ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RuleRow:
    pack: str
    kind: str  # "rule" or "correlation"
    id: str
    title: str
    level: str
    status: str
    state: str
    events_from: str
    source: str

    def as_dict(self) -> dict[str, str]:
        return dict(vars(self))


def rule_rows(packs: Sequence[InstalledPack], disabled: frozenset[str]) -> list[RuleRow]:
    rows: list[RuleRow] = []
    for pack in packs:
        if pack.plan is None:
            rows.append(
                RuleRow(pack.name, "pack", "-", "-", "-", "-", f"broken: {pack.problem}", "-", "-")
            )
            continue
        pack_off = pack.stored is not None and not pack.stored.enabled
        users = {c.id: c for c in pack.plan.correlations}
        for rule in pack.plan.rules:
            feeds = [c.id for c in users.values() if rule.id in c.rule_ids]
            state = _state(rule.id, disabled, pack_off)
            if state == "enabled" and not rule.standalone:
                state = "enabled (feeds " + ", ".join(feeds or ["a correlation"]) + ")"
            rows.append(_row(pack.name, "rule", rule, state, _events_from(pack.plan, [rule])))
        for correlation in pack.plan.correlations:
            state = _state(correlation.id, disabled, pack_off)
            off = [r for r in correlation.rule_ids if r in disabled]
            feeds = [c.id for c in users.values() if correlation.id in c.inner_ids]
            if state == "enabled" and off:
                state = f"off: its rule {off[0]} is disabled"
            elif state == "enabled" and not correlation.standalone:
                state = "enabled (feeds " + ", ".join(feeds or ["a correlation"]) + ")"
            # A chain's events are those of the rules its inner correlations count.
            members = pack.plan.counted_rules(correlation)
            note = _events_from(pack.plan, members)
            if correlation.inner_ids:
                note = f"{note}; a chain of " + ", ".join(correlation.inner_ids)
            if not any("user_id" in g.lower() for g in correlation.group_by):
                grouped = "grouped by " + ", ".join(correlation.group_by or ["nothing"])
                note = f"{note}; {grouped}: counts watched users' events only"
            rows.append(_row(pack.name, "correlation", correlation, state, note))
    return rows


def _row(
    pack: str, kind: str, item: PlanRule | PlanCorrelation, state: str, events_from: str
) -> RuleRow:
    return RuleRow(
        pack,
        kind,
        item.id,
        item.title,
        item.level or "-",
        item.status or "-",
        state,
        events_from,
        item.source,
    )


def _state(item_id: str, disabled: frozenset[str], pack_off: bool) -> str:
    if pack_off:
        return "off: pack disabled"
    return "disabled" if item_id in disabled else "enabled"


def _events_from(plan: Plan, rules: Sequence[PlanRule]) -> str:
    notes: list[str] = []
    for rule in rules:
        types = plan.event_types(rule)
        if types is None:
            notes.append("any type: watched users' events only")
            continue
        notes += [UNWATCHED_TYPES[t] for t in sorted(types) if t in UNWATCHED_TYPES]
    unique = list(dict.fromkeys(notes))
    return "watched users" if not unique else "; ".join(unique)


def _rules_table(rows: Sequence[RuleRow]) -> Table:
    table = Table(title=f"Rules ({len(rows)})", title_justify="left")
    for column in ("pack", "kind", "id", "title", "level", "status", "state", "events from"):
        table.add_column(column, overflow="fold")
    for row in rows:
        add_safe_row(
            table,
            (
                row.pack,
                row.kind,
                row.id,
                row.title,
                row.level,
                row.status,
                row.state,
                row.events_from,
            ),
        )
    return table


# -- resolving a RULE argument -------------------------------------------------------------------


def resolve(packs: Sequence[InstalledPack], names: Sequence[str]) -> list[str]:
    """Rule and correlation ids for RULE arguments: an id, or a rule file's name (without .yml:
    every rule and correlation of that file)."""
    items: list[tuple[str, str]] = []
    for pack in packs:
        if pack.plan is not None:
            items += [(r.id, Path(r.source).stem) for r in pack.plan.rules]
            items += [(c.id, Path(c.source).stem) for c in pack.plan.correlations]
    found: list[str] = []
    for name in names:
        wanted = name.removesuffix(".yml").removesuffix(".yaml")
        ids = [i for i, stem in items if name == i] or [i for i, stem in items if stem == wanted]
        if not ids:
            raise click.BadParameter(
                f"{name!r} is no installed rule's id nor its file's name (`rules list` shows both)",
                param_hint="RULE",
            )
        found += ids
    return list(dict.fromkeys(found))


# -- the commands --------------------------------------------------------------------------------

_TABLE_OPTION = click.option(
    "--table", type=TABLE, help="RULE_PACKS_TABLE: the stack's RulePacksTableName output."
)
_VAR_OPTION = click.option(
    "--var",
    "variables",
    multiple=True,
    metavar="NAME=VALUE",
    help="A value for a placeholder ({your-tenant-url}, %name%); repeat for a list.",
)


def _command(work: Callable[..., None]) -> Callable[..., None]:
    """The shared error handling of every command (commands.handled)."""
    from .commands import handled

    return handled(work)


@click.group("rules")
def rules_group() -> None:
    """Sigma rule packs the function runs (RULE_PACKS_TABLE), and hunting with them."""


@rules_group.command("validate")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_VAR_OPTION
def rules_validate(folder: Path, variables: tuple[str, ...]) -> None:
    """Parse and compile every Sigma rule under FOLDER; list those refused, with the Sigma
    feature each needs. Exits 1 if any is refused. Nothing is written."""
    from .commands import out

    def work() -> None:
        compiled = _compile(folder, _variables(variables))
        _say_compiled(out, compiled, folder)
        raise SystemExit(1 if compiled.refused else 0)

    _command(work)()


@rules_group.command("install")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--pack", "name", type=PACK, required=True, help="The pack's name, e.g. auth0-catalog."
)
@_VAR_OPTION
@click.option(
    "--allow-refused", is_flag=True, help="Install the rules that compile, if some do not."
)
@_TABLE_OPTION
@click.pass_context
def rules_install(
    ctx: click.Context,
    folder: Path,
    name: str,
    variables: tuple[str, ...],
    allow_refused: bool,
    table: str | None,
) -> None:
    """Compile every rule under FOLDER and install them as pack NAME (replacing a pack of that
    name, keeping whether it is enabled). E.g. Auth0's catalog, from a clone of
    auth0/auth0-customer-detections: `rules install ./auth0-customer-detections/detections
    --pack auth0-catalog`."""
    from .commands import out

    def work() -> None:
        try:
            check_pack_name(name)
        except RulePackError as error:
            raise click.BadParameter(str(error), param_hint="--pack") from None
        compiled = _compile(folder, _variables(variables))
        _say_compiled(out, compiled, folder)
        if compiled.refused and not allow_refused:
            out.print("Nothing installed: fix the refused rules, or pass --allow-refused.")
            raise SystemExit(1)
        if not compiled.plan["rules"]:
            raise ConfigError(f"no Sigma rule compiled from {folder}: nothing to install")
        admin = _admin(_env(ctx), table)
        packs, _disabled = admin.installed()
        _refuse_shared_ids(compiled.plan, name, packs)
        previous = next((p.stored for p in packs if p.name == name and p.stored), None)
        item = pack_item(
            name,
            compiled.plan,
            installed_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            enabled=previous.enabled if previous else True,
        )
        if len(item["plan"]["B"]) > MAX_ITEM_PLAN_BYTES:
            raise ConfigError(
                f"pack {name!r} is {len(item['plan']['B'])} bytes gzipped, over the "
                f"{MAX_ITEM_PLAN_BYTES} a DynamoDB item can hold here: split the folder into packs"
            )
        admin.put(item)
        size = len(plan_bytes(compiled.plan))
        out.print(
            f"Installed pack {safe(name)} in {safe(admin.table)}: "
            f"{len(compiled.plan['rules'])} rules, {len(compiled.plan['correlations'])} "
            f"correlations, {size} bytes ({len(item['plan']['B'])} gzipped), sha256 "
            f"{item['sha256']['S'][:16]}…"
            + ("" if item["enabled"]["BOOL"] else "; the pack is disabled (rules enable --pack)")
        )
        out.print(
            f"The function reads it within RULE_PACKS_MAX_AGE_SECONDS ({DEFAULT_MAX_AGE_S} s "
            "by default)."
        )

    _command(work)()


def _refuse_shared_ids(
    document: Mapping[str, Any], name: str, packs: Sequence[InstalledPack]
) -> None:
    ids = {item["id"] for item in (*document["rules"], *document["correlations"])}
    for pack in packs:
        if pack.name == name or pack.plan is None:
            continue
        shared = sorted(ids.intersection(pack.plan.ids()))
        if shared:
            raise ConfigError(
                f"pack {name!r} holds {len(shared)} rule id(s) pack {pack.name!r} holds too "
                f"(first {shared[0]}): a rule may be in one pack only; remove the other pack, "
                "or install under its name"
            )


@rules_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the rules as JSON.")
@_TABLE_OPTION
@click.pass_context
def rules_list(ctx: click.Context, as_json: bool, table: str | None) -> None:
    """Every rule and correlation: its pack, id, title, level, status, whether it runs, and
    whose events it can see. Exits 1 if an installed pack cannot be loaded."""
    from .commands import out

    def work() -> None:
        packs, disabled = _admin(_env(ctx), table).installed()
        rows = rule_rows(packs, disabled)
        broken = [p for p in packs if p.plan is None]
        if as_json:
            click.echo(json.dumps({"rules": [r.as_dict() for r in rows]}, indent=2))
        else:
            out.print(_rules_table(rows))
            if any(r.events_from != "watched users" for r in rows):
                out.print(f"Note: {safe(TENANT_WIDE_NOTE)}")
            for pack in broken:
                out.print(f"Note: pack {safe(pack.name)} does not run: {safe(pack.problem)}")
        raise SystemExit(1 if broken else 0)

    _command(work)()


def _switch(
    ctx: click.Context, names: Sequence[str], pack: str | None, table: str | None, *, disable: bool
) -> None:
    from .commands import out

    verb = "disabled" if disable else "enabled"
    if bool(names) == bool(pack):
        raise click.UsageError("give RULE... or --pack NAME, not both (and not neither)")

    def work() -> None:
        admin = _admin(_env(ctx), table)
        if pack is not None:
            if not admin.set_enabled(pack, not disable):
                raise ConfigError(f"no pack {pack!r} is installed in {admin.table!r}")
            out.print(f"Pack {safe(pack)} {verb}.")
        else:
            packs, _disabled = admin.installed()
            ids = resolve(packs, names)
            admin.switch_rules(ids, disable=disable)
            for rule_id in ids:
                out.print(f"{safe(rule_id)}: {verb}")
        out.print(
            f"The function sees it within RULE_PACKS_MAX_AGE_SECONDS ({DEFAULT_MAX_AGE_S} s by "
            "default)."
        )

    _command(work)()


def _switch_command(verb: str, disable: bool, doc: str) -> None:
    @rules_group.command(verb, help=doc)
    @click.argument("names", nargs=-1, metavar="[RULE]...")
    @click.option("--pack", type=PACK, help=f"{verb.capitalize()} a whole pack instead.")
    @_TABLE_OPTION
    @click.pass_context
    def switch(
        ctx: click.Context, names: tuple[str, ...], pack: str | None, table: str | None
    ) -> None:
        _switch(ctx, names, pack, table, disable=disable)


_switch_command(
    "disable",
    True,
    "Stop RULE (an id, or a rule file's name) from running; a correlation stops with its rules.",
)
_switch_command("enable", False, "Run RULE (an id, or a rule file's name) again.")


@rules_group.command("remove")
@click.option("--pack", "name", type=PACK, required=True, help="The pack to remove.")
@_TABLE_OPTION
@click.pass_context
def rules_remove(ctx: click.Context, name: str, table: str | None) -> None:
    """Remove pack NAME from the store (its rules stop within the max age)."""
    from .commands import out

    def work() -> None:
        admin = _admin(_env(ctx), table)
        if not admin.remove(name):
            raise ConfigError(f"no pack {name!r} is installed in {admin.table!r}")
        out.print(f"Pack {safe(name)} removed.")

    _command(work)()


# -- hunt ----------------------------------------------------------------------------------------


@rules_group.command("hunt")
@click.argument("rule")
@click.option(
    "--from",
    "folder",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Compile the rule from this folder instead of reading the installed packs.",
)
@_VAR_OPTION
@click.option(
    "--run",
    type=click.Choice(["athena", "insights"]),
    help="Run the query and print what it finds.",
)
@click.option(
    "--since", type=Instant(), help="From this instant (ISO-8601 with a zone); default: a day ago."
)
@click.option("--until", type=Instant(), help="Until this instant; default: now.")
@click.option(
    "--database", type=ATHENA_DATABASE, help="Athena: the stack's AthenaDatabaseName output."
)
@click.option(
    "--workgroup", type=WORKGROUP, default="primary", show_default=True, help="Athena workgroup."
)
@click.option(
    "--output-location",
    type=S3_LOCATION,
    help="Athena: s3://… for the results, if the workgroup has none.",
)
@click.option(
    "--log-group", type=LOG_GROUP, help="Logs Insights: the log group (default LOG_GROUP_NAME)."
)
@click.option(
    "--timeout",
    type=Seconds(),
    default=120.0,
    show_default=True,
    help="Seconds to wait for the query.",
)
@_TABLE_OPTION
@click.pass_context
def rules_hunt(
    ctx: click.Context,
    rule: str,
    folder: Path | None,
    variables: tuple[str, ...],
    run: str | None,
    since: int | None,
    until: int | None,
    database: str | None,
    workgroup: str,
    output_location: str | None,
    log_group: str | None,
    timeout: float,
    table: str | None,
) -> None:
    """RULE (an id, or a rule file's name) as an Athena query over the S3 table and as a Logs
    Insights query over the forwarded log group; --run runs one of them."""
    from .commands import out
    from .hunt import hunt

    def work() -> None:
        env = _env(ctx)
        documents = _documents(env, folder, variables, table)
        rule_id = _find(documents, rule)
        found = hunt(documents[rule_id], rule_id)
        until_ms = until if until is not None else int(time.time() * 1000)
        since_ms = since if since is not None else until_ms - 86_400_000
        athena = _athena_window(found.athena, since_ms, until_ms)
        if run is None:
            out.print(f"[bold]{safe(found.title)}[/bold] ({safe(found.rule_id)})")
            for note in found.notes:
                out.print(f"Note: {safe(note)}")
            out.print("-- Athena (the S3 table, docs/querying.md)", markup=False)
            click.echo(athena)
            out.print("-- CloudWatch Logs Insights (the forwarded log group)", markup=False)
            click.echo(found.insights)
            return
        if run == "athena":
            rows = _run_athena(env, athena, database, workgroup, output_location, timeout)
        else:
            group = log_group or env.required("LOG_GROUP_NAME", "the stack's ForwardedLogGroupName")
            rows = _run_insights(env, found.insights, group, since_ms, until_ms, timeout)
        _print_rows(out, rows, found.title)

    _command(work)()


def _documents(
    env: Environment, folder: Path | None, variables: Sequence[str], table: str | None
) -> dict[str, dict[str, Any]]:
    """Plan documents by the ids they hold (rules and correlations)."""
    if folder is not None:
        docs = [_compile(folder, _variables(variables)).plan]
    else:
        admin = _admin(env, table)
        packs, _disabled = admin.installed()
        docs = []
        for pack in packs:
            if pack.stored is not None and pack.plan is not None:
                docs.append(json.loads(gzip.decompress(pack.stored.body)))
    return {
        item["id"]: doc
        for doc in docs
        for item in (*doc.get("rules", []), *doc.get("correlations", []))
    }


def _find(documents: Mapping[str, Mapping[str, Any]], name: str) -> str:
    if name in documents:
        return name
    wanted = name.removesuffix(".yml")
    matches = []
    for doc in {id(d): d for d in documents.values()}.values():
        correlations = doc.get("correlations", [])
        inner = {ref for c in correlations for ref in c.get("inner_group", {})}
        ordered = sorted(correlations, key=lambda c: c["id"] in inner)  # a chain's outer first
        matches += [
            item["id"]
            for item in (*ordered, *doc.get("rules", []))
            if Path(item.get("source", "")).stem == wanted
        ]
    if not matches:
        raise click.BadParameter(f"{name!r} is no rule's id nor its file's name", param_hint="RULE")
    return str(matches[0])  # a file's correlation first: what the file is about


def _athena_window(sql: str, since_ms: int, until_ms: int) -> str:
    """The partition (dt) and the event dates of the time range, so Athena reads those days."""
    first, last = (datetime.fromtimestamp(ms / 1000, UTC) for ms in (since_ms, until_ms))
    window = (
        f"  AND dt BETWEEN '{first:%Y-%m-%d}' AND '{last:%Y-%m-%d}'\n"
        f"  AND \"date\" BETWEEN '{first.isoformat(timespec='milliseconds')[:-6]}Z' "
        f"AND '{last.isoformat(timespec='milliseconds')[:-6]}Z'\n"
    )
    marker = 'WHERE "_forwarder".record_type IS NULL\n'
    return sql.replace(marker, marker + window, 1)


def _run_athena(
    env: Environment,
    sql: str,
    database: str | None,
    workgroup: str,
    output: str | None,
    timeout: float,
) -> list[dict[str, str]]:
    athena = env.aws_client("athena")
    if not database:
        raise ConfigError(
            "--database is required with --run athena: the stack's AthenaDatabaseName"
        )
    arguments: dict[str, Any] = {
        "QueryString": sql,
        "QueryExecutionContext": {"Database": database},
        "WorkGroup": workgroup,
    }
    if output:
        arguments["ResultConfiguration"] = {"OutputLocation": output}
    query_id = athena.start_query_execution(**arguments)["QueryExecutionId"]
    deadline = time.monotonic() + timeout
    while True:
        status = athena.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]["Status"]
        if status["State"] == "SUCCEEDED":
            break
        if status["State"] in ("FAILED", "CANCELLED"):
            raise ConfigError(
                f"Athena query {query_id} {status['State'].lower()}: "
                f"{status.get('StateChangeReason', 'no reason given')}"
            )
        if time.monotonic() > deadline:
            raise ConfigError(f"Athena query {query_id} still running after {timeout:g} s")
        time.sleep(1)
    rows: list[dict[str, str]] = []
    header: list[str] | None = None
    for page in athena.get_paginator("get_query_results").paginate(QueryExecutionId=query_id):
        for row in page["ResultSet"]["Rows"]:
            cells = [c.get("VarCharValue", "") for c in row["Data"]]
            if header is None:
                header = cells
                continue
            rows.append(dict(zip(header, cells, strict=False)))
    return rows


def _run_insights(
    env: Environment, query: str, group: str, since_ms: int, until_ms: int, timeout: float
) -> list[dict[str, str]]:
    logs = env.aws_client("logs")
    query_id = logs.start_query(
        logGroupNames=[group],
        startTime=since_ms // 1000,
        endTime=until_ms // 1000,
        queryString=query,
    )["queryId"]
    deadline = time.monotonic() + timeout
    while True:
        answer = logs.get_query_results(queryId=query_id)
        if answer["status"] == "Complete":
            return [{f["field"]: f.get("value", "") for f in row} for row in answer["results"]]
        if answer["status"] in ("Failed", "Cancelled", "Timeout"):
            raise ConfigError(f"Logs Insights query {query_id}: {answer['status']}")
        if time.monotonic() > deadline:
            raise ConfigError(f"Logs Insights query {query_id} still running after {timeout:g} s")
        time.sleep(1)


def _print_rows(out: Any, rows: Sequence[Mapping[str, str]], title: str) -> None:
    if not rows:
        out.print(f"{safe(title)}: 0 found")
        return
    table = Table(title=f"{safe(title)}: {len(rows)} found", title_justify="left")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    for column in columns:
        table.add_column(safe(column), overflow="fold")
    for row in rows:
        add_safe_row(table, (row.get(c, "") for c in columns))
    out.print(table)


def _env(ctx: click.Context) -> Environment:
    env = ctx.find_object(Environment)
    assert env is not None
    return env
