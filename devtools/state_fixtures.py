"""Stored state as a given version of the forwarder wrote it: the fixtures upgrades are tested on.

    python -m devtools.state_fixtures --commit 096dcca --out tests/fixtures/state/v1

takes `src/` and `devtools/` of that commit (git archive, into a temporary directory) and runs
this file against them in a child process, so the items are made by that version's own code:
its cursor, its detection rules and tenant state, its DynamoDB store on moto's server and its
SQLite store. Nothing of the current tree is imported there but this file, which uses only the
API of the versions it names (`BUILDERS`): a later version whose API changed adds a builder.

It writes, into OUT:
    world.json           the events Auth0 (the simulator) holds for each user, which of them the
                         state says were delivered before, each user's scenario, how it was made
    dynamodb.json        every item of the checkpoint table as DynamoDB holds it (Scan's
                         low-level form; binary attributes base64, as DynamoDB's JSON export)
    checkpoints.sqlite3  the same checkpoints in `run --local`'s store, as that version made it

Every state is built the way that version's runs build it (ReadPosition.advance over the events
a read delivered, Outbox.with_pending for an intent, detections.evaluate over the user's events,
TenantState.new_era and after_complete_read...) and saved the way a run saves it (the state and
its summary, one save per run, so versions count up). Dates are relative to the moment it runs;
every lease has ended by then.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import importlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR
OVERLAP_MS = 600_000  # OVERLAP_WINDOW_SECONDS' default
TABLE = "fixture-checkpoints"
CLIENT = {"client_id": "AbCdEfGh0123456789fixture", "client_name": "Fixture Web App"}


# -- the parent: a version's code, in a child process --------------------------------------------


def generate(commit: str, out: Path, now_ms: int | None = None) -> None:
    with release(commit) as (sha, tree):
        out.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, str(Path(__file__).resolve()), "--write", str(out.resolve())]
        command += ["--commit", sha, "--source", str(tree)]
        if now_ms is not None:
            command += ["--now-ms", str(now_ms)]
        subprocess.run(command, env=release_env(tree), check=True, cwd=tree)  # noqa: S603


@contextlib.contextmanager
def release(commit: str) -> Iterator[tuple[str, Path]]:
    """`src/`, `devtools/` and the template of `commit`, in a temporary directory: (its sha,
    the directory)."""
    sha = _git("rev-parse", f"{commit}^{{commit}}").strip()
    with tempfile.TemporaryDirectory(prefix="release-") as tmp:
        paths = ["src", "devtools", "template.yaml"]
        archive = subprocess.run(  # noqa: S603 - git, on this repository
            ["git", "-C", str(ROOT), "archive", "--format=tar", sha, *paths],  # noqa: S607
            capture_output=True,
            check=True,
        ).stdout
        with tarfile.open(fileobj=BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        yield sha, Path(tmp)


def release_env(tree: Path) -> dict[str, str]:
    """The environment of a child process that imports that release's code, not this one's."""
    path = os.pathsep.join([str(tree / "src"), str(tree)])
    return {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}


def _git(*args: str) -> str:
    return subprocess.run(  # noqa: S603
        ["git", "-C", str(ROOT), *args],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    ).stdout


# -- the child: the world, the states, the stores -------------------------------------------------


@dataclass
class World:
    """What Auth0 holds and what the stored state says was delivered, user by user."""

    now_ms: int
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    _seq: int = 0

    def user(self, user_id: str, scenario: str) -> dict[str, Any]:
        return self.users.setdefault(
            user_id, {"scenario": scenario, "events": [], "delivered_before": [], "raw": []}
        )

    def event(
        self,
        user_id: str,
        minutes_ago: float,
        *,
        code: str = "s",
        delivered: bool = False,
        late_by_min: float = 0.0,
        **extra: Any,
    ) -> dict[str, Any]:
        """An event of the user dated `minutes_ago` before now; its log_id follows ingestion
        (its date, or `late_by_min` after it), as Auth0's do."""
        date_ms = self.now_ms - int(minutes_ago * MIN)
        self._seq += 1
        visible_ms = date_ms + int(late_by_min * MIN)
        log_id = f"90020{visible_ms:014d}{self._seq:04d}"
        name = user_id.split("|", 1)[1].replace("fixture-", "")
        event = {
            "date": _iso(date_ms),
            "type": code,
            "description": _DESCRIPTIONS.get(code, ""),
            "connection": "Username-Password-Authentication",
            "connection_id": "con_FixtureConnection1",
            **CLIENT,
            "ip": extra.pop("ip", "203.0.113.10"),
            "user_agent": "Chrome 131.0.0 / Mac OS X 14.6.1",
            "user_id": user_id,
            "user_name": f"{name}@example.com",
            "log_id": log_id,
            "location_info": {
                "country_code": extra.pop("country", "US"),
                "city_name": "Springfield",
                "time_zone": "America/Chicago",
            },
            **extra,
        }
        entry = self.user(user_id, "")
        entry["events"].append(event)
        if delivered:
            entry["delivered_before"].append(log_id)
        return event

    def raw_entry(self, user_id: str, entry: Any, minutes_ago: float) -> None:
        """A malformed entry the user's endpoint returns, placed as if dated then."""
        sorts_as = _iso(self.now_ms - int(minutes_ago * MIN))
        self.user(user_id, "")["raw"].append({"entry": entry, "sorts_as": sorts_as})


_DESCRIPTIONS = {
    "s": "Successful login",
    "fp": "Wrong email or password.",
    "limit_wc": "An IP address is blocked because it attempted too many failed logins",
    "gd_unenroll": "Second factor unenrolled",
    "scp": "Password changed",
    "pwd_leak": "Someone behind the IP address attempted to login with a leaked password",
    "sapi": "Update a User",
}


class Saver:
    """Saves each state as a run would: to DynamoDB (moto's server) and to the SQLite store."""

    def __init__(self, dynamo: Any, sqlite: Any | None, world: World) -> None:
        self.dynamo = dynamo
        self.sqlite = sqlite
        self.world = world
        self.versions: dict[str, int | None] = {}

    def save(
        self, key: str, state: Mapping[str, Any], summary: Mapping[str, Any], at_ms: int
    ) -> None:
        expected = self.versions.get(key)
        for store in filter(None, (self.dynamo, self.sqlite)):
            store._clock = lambda: at_ms / 1000  # updated_at: when that run saved it
            version = store.save(key, state, expected_version=expected, summary=summary)
        self.versions[key] = version

    def cursor(self, key: str, cursor: Any, minutes_ago: float) -> None:
        self.save(
            key, cursor.to_state(), cursor.summary(), self.world.now_ms - int(minutes_ago * MIN)
        )


def build_v1(world: World, saver: Saver) -> None:
    """The API of 096dcca (and the versions around it that have these modules)."""
    from log_forwarder.checkpoint_store import DynamoCheckpointStore
    from log_forwarder.convert import quarantine_digest
    from log_forwarder.cursor import Cursor, Pending, StreamSeat

    # v1's hand-written rules (this builder runs on that release's code, not on this tree's).
    from log_forwarder.detections import (  # type: ignore[attr-defined]
        DetectionSettings,
        DetectionState,
        evaluate,
    )
    from log_forwarder.events import LogEvent, parse_event
    from log_forwarder.read_mode import STREAM, TENANT_KEY, Costs, Decision, TenantState
    from log_forwarder.records import Gap, batch_id_for
    from log_forwarder.roster import pack

    assert isinstance(saver.dynamo, DynamoCheckpointStore)
    now = world.now_ms

    def ago(minutes: float) -> int:
        return now - int(minutes * MIN)

    def parsed(events: list[dict[str, Any]]) -> list[LogEvent]:
        return [parse_event(e) for e in events]

    def read(cursor: Any, events: list[dict[str, Any]], started_min: float) -> Any:
        """A read that delivered `events` and reached the newest one, started then."""
        position = cursor.position.advance(
            parsed(events), overlap_ms=OVERLAP_MS, read_started_ms=ago(started_min)
        )
        position = position.after_complete_read(ago(started_min), overlap_ms=OVERLAP_MS)
        status = cursor.status.counted(len(events)).without_error()
        return replace(cursor, position=position, status=replace(status, backlog=False))

    # A new user, its start fixed at first sight (START_FROM=now then), nothing read since.
    user = "auth0|fixture-fresh"
    world.user(user, "first sight: the start fixed, nothing forwarded yet (a backlog to read)")
    saver.cursor(user, Cursor.fresh(ago(150), backlog=True), 150)
    for minutes in (120, 90, 60):
        world.event(user, minutes)

    # The overlap window: read twice; a late event inside the window is still to come, and a
    # malformed entry the user's endpoint keeps returning was quarantined once.
    user = "auth0|fixture-overlap"
    world.user(user, "two complete reads: floor, watermark, the overlap window, a quarantined "
               "entry; a late event inside the window still to come")  # fmt: skip
    first = [world.event(user, 240 - 10 * i, delivered=True) for i in range(6)]
    cursor = read(Cursor.fresh(ago(250), backlog=True), first, 185)
    saver.cursor(user, cursor, 185)
    second = [world.event(user, m, delivered=True, code="fp") for m in (70, 65)]
    malformed = {"date": None, "type": "s", "user_id": user, "description": "no log_id"}
    world.raw_entry(user, malformed, 67)
    cursor = read(cursor, second, 60)
    position = cursor.position.with_quarantined([quarantine_digest(malformed)], now_ms=ago(60))
    saver.cursor(user, replace(cursor, position=position), 60)
    world.event(user, 66, late_by_min=8)  # late: dated inside the window, visible after the read
    for minutes in (50, 30):
        world.event(user, minutes)

    # A batch handed to the destinations, its commit lost (the run died): the intent, leased.
    user = "auth0|fixture-pending"
    world.user(user, "a pending intent (write-ahead, leased to a run that died an hour ago)")
    delivered = [world.event(user, m, delivered=True) for m in (130, 125)]
    cursor = read(Cursor.fresh(ago(140), backlog=True), delivered, 120)
    saver.cursor(user, cursor, 120)
    pending = [world.event(user, m) for m in (64, 62)]
    ids = [e["log_id"] for e in pending]
    lease_until = ago(60) + 15 * MIN + 30_000
    intent = Pending(batch_id_for(ids), frozenset(ids), lease_until, ago(60))
    saver.cursor(user, replace(cursor, outbox=cursor.outbox.with_pending(intent)), 60)
    world.event(user, 20)

    # A history longer than a run: read oldest first through search, deferred half way.
    user = "auth0|fixture-backlog"
    world.user(user, "a backlog: the history read oldest first, the run out of time half way")
    history = [world.event(user, 290 - 10 * i, delivered=i < 4) for i in range(8)]
    cursor = Cursor.fresh(ago(300), backlog=True)
    saver.cursor(user, cursor, 300)
    position = cursor.position.advance(
        parsed(history[:4]), overlap_ms=OVERLAP_MS, read_started_ms=ago(250)
    )
    cursor = replace(cursor, position=position, status=cursor.status.counted(4))
    saver.cursor(user, cursor, 250)
    world.event(user, 40)

    # On the tenant stream: a seat, a window's batch committed past it, the next batch lost.
    user = "auth0|fixture-seated"
    world.user(user, "a stream seat: events up to the stream checkpoint held, one batch of the "
               "next window committed (above), the next one not")  # fmt: skip
    epoch = ago(180)
    held = [world.event(user, m, delivered=True) for m in (170, 160, 150)]
    position_id = held[-1]["log_id"]
    cursor = read(Cursor.fresh(ago(200)), held, 140)
    seat = StreamSeat(epoch, epoch + MIN, position_id)
    above = world.event(user, 100, delivered=True)
    cursor = replace(
        cursor,
        position=cursor.position.delivered_ahead(parsed([above])),
        seat=seat.with_delivered([above["log_id"]]),
    )
    saver.cursor(user, cursor, 95)
    world.event(user, 95)
    world.event(user, 30)

    # Detection state: every rule has remembered something (a live burst that a success ended,
    # known sources, the warm-up done, suppressions of each single-event rule).
    user = "auth0|fixture-detections"
    world.user(user, "detection state of every rule: failures and a burst, sources and the "
               "warm-up, suppressions")  # fmt: skip
    events = [world.event(user, (6 - d) * 24 * 60, delivered=True, ip=f"203.0.113.{d}")
              for d in range(5)]  # fmt: skip
    events += [world.event(user, 100 - i * 0.5, code="fp", delivered=True, ip="198.51.100.7")
               for i in range(12)]  # fmt: skip
    events.append(world.event(user, 85, delivered=True, country="FR", ip="192.0.2.44"))
    for minutes, code in ((84, "limit_wc"), (83, "gd_unenroll"), (82, "scp"), (81, "pwd_leak")):
        events.append(world.event(user, minutes, code=code, delivered=True))
    request = {"method": "PATCH", "path": f"/api/v2/users/{user}",
               "auth": {"user": {"user_id": user}, "strategy": "jwt"}}  # fmt: skip
    details = {"request": request, "response": {"statusCode": 200}}
    events.append(world.event(user, 80, code="sapi", delivered=True, details=details))
    settings = DetectionSettings(new_source_by=("country", "network"))  # type: ignore[call-arg]
    _found, state = evaluate(user, parsed(events), DetectionState(), settings)
    cursor = read(Cursor.fresh(ago(7 * 24 * 60)), events, 79)
    saver.cursor(user, replace(cursor, detections=state.to_state()), 79)
    world.event(user, 30)
    world.event(user, 25, code="fp", ip="198.51.100.7")

    # A user whose last run failed, after a gap was recorded.
    user = "auth0|fixture-failing"
    world.user(user, "a last error (the run failed) and a last gap")
    cursor = read(Cursor.fresh(ago(1000)), [world.event(user, 200, delivered=True)], 195)
    gap = Gap(ago(900), ago(600), "expired: events dated in this span were no longer retained")
    status = cursor.status.with_gap(gap).with_error(
        "Auth0UnavailableError: GET /api/v2/users/{id}/logs answered HTTP 503 5 times", ago(60)
    )
    saver.cursor(user, replace(cursor, status=status), 60)
    world.event(user, 45)

    # A user Auth0 said did not exist (a day ago); it does again.
    user = "auth0|fixture-missing"
    world.user(user, "missing since a day ago (Auth0 answered 404), known again")
    cursor = read(Cursor.fresh(ago(2000)), [world.event(user, 400, delivered=True)], 395)
    status = cursor.status.with_missing_since(ago(24 * 60))
    saver.cursor(user, replace(cursor, status=status), 24 * 60)
    world.event(user, 35)

    # Delivered ahead by the real-time path, not yet returned by a read.
    user = "auth0|fixture-ahead"
    world.user(user, "two events the real-time path delivered ahead of the reads")
    cursor = read(Cursor.fresh(ago(100)), [world.event(user, 90, delivered=True)], 85)
    saver.cursor(user, cursor, 85)
    pushed = [world.event(user, m, delivered=True) for m in (40, 38)]
    saver.cursor(
        user, replace(cursor, position=cursor.position.delivered_ahead(parsed(pushed))), 37
    )
    world.event(user, 20)

    # Watched the legacy way: `watch = true` set by an operator on the item, before any run.
    user = "auth0|fixture-legacy-watch"
    world.user(user, "watched the legacy way (`watch` on its checkpoint item)")
    saver.dynamo._client.put_item(
        TableName=TABLE, Item={"user_id": {"S": user}, "watch": {"BOOL": True}}
    )
    cursor = read(Cursor.fresh(ago(110)), [world.event(user, 100, delivered=True)], 99)
    saver.cursor(user, cursor, 99)
    world.event(user, 30)

    # The tenant item: in stream mode, its era, roster, complete reads and figures.
    # The era started where start_position puts it: before the first event dated then.
    start = f"90020{epoch - MIN:014d}0000"
    tenant = replace(TenantState().new_era(epoch), position=start)
    tenant = replace(tenant, roster=pack(["auth0|fixture-seated"]), read_since_complete=40)
    tenant = tenant.after_complete_read(ago(175), overlap_ms=OVERLAP_MS)
    tenant = replace(tenant, position=position_id, read_since_complete=12)
    tenant = tenant.after_complete_read(ago(140), overlap_ms=OVERLAP_MS)
    decision = Decision(STREAM, "auto: about 9 calls a run per user, 1 reading the tenant "
                        "stream", Costs(9.0, 1.0))  # fmt: skip
    for minutes in (150, 145, 140):
        tenant = tenant.after_run(decision, per_user_calls=9.0, now_ms=ago(minutes))
    saver.save(TENANT_KEY, tenant.to_state(), tenant.summary(9), ago(140))

    # A backfill of the overlap user's earlier history, half done.
    user = "auth0|fixture-overlap"
    since, until = ago(3 * 24 * 60), ago(250)
    key = f"backfill#{user}#{_iso(since)}#{_iso(until)}"
    old = [world.event(user, 2 * 24 * 60 - 60 * i, delivered=True) for i in range(3)]
    cursor = Cursor.fresh(since, backlog=True)
    cursor = replace(
        cursor,
        position=cursor.position.advance(
            parsed(old), overlap_ms=OVERLAP_MS, read_started_ms=ago(20)
        ),
        status=cursor.status.counted(3),
    )
    summary = {
        **cursor.summary(),
        "item_type": "backfill",
        "backfill_user": user,
        "backfill_since": _iso(since),
        "backfill_until": _iso(until),
    }
    saver.save(key, cursor.to_state(), summary, ago(20))


def build_v1_first(world: World, saver: Saver) -> None:
    """The API of the first releases with a checkpoint table (7d881b7..dc04f1d): one Cursor
    value, at most one pending intent (stored as an object, or null), no SQLite store."""
    # Typed as Any: mypy checks this file against today's API, which has neither name.
    old: Any = importlib.import_module("log_forwarder.cursor")
    Cursor, Pending, parse_event = old.Cursor, old.Pending, old.parse_event
    now = world.now_ms

    def ago(minutes: float) -> int:
        return now - int(minutes * MIN)

    def read(cursor: Any, events: list[dict[str, Any]], started_min: float) -> Any:
        cursor = cursor.advance([parse_event(e) for e in events], overlap_ms=OVERLAP_MS)
        return cursor.after_complete_read(ago(started_min), overlap_ms=OVERLAP_MS)  # counted

    user = "auth0|fixture-first-fresh"
    world.user(user, "first sight (the first releases' shape: `pending` null)")
    saver.cursor(user, Cursor.fresh(ago(150)).with_backlog(True), 150)
    for minutes in (120, 60):
        world.event(user, minutes)

    user = "auth0|fixture-first-overlap"
    world.user(user, "two complete reads, the overlap window (the first releases' shape)")
    first = [world.event(user, 240 - 10 * i, delivered=True) for i in range(4)]
    cursor = read(Cursor.fresh(ago(250)), first, 200)
    saver.cursor(user, cursor, 200)
    cursor = read(cursor, [world.event(user, 70, delivered=True)], 60)
    saver.cursor(user, cursor, 60)
    world.event(user, 66, late_by_min=8)
    world.event(user, 30)

    user = "auth0|fixture-first-pending"
    world.user(user, "a pending intent, one object as the first releases kept it")
    cursor = read(Cursor.fresh(ago(140)), [world.event(user, 130, delivered=True)], 120)
    saver.cursor(user, cursor, 120)
    pending = [world.event(user, m) for m in (64, 62)]
    ids = frozenset(e["log_id"] for e in pending)
    saver.cursor(user, cursor.with_pending(Pending("batch-" + min(ids)[-12:], ids)), 60)
    world.event(user, 20)


def _iso(ms: int) -> str:
    stamp = datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _builder() -> Callable[[World, Saver], None]:
    """The builder for the API of the code at hand."""
    from log_forwarder import cursor

    return build_v1 if hasattr(cursor, "ReadPosition") else build_v1_first


def write(out: Path, commit: str, source: str, now_ms: int | None) -> None:
    import log_forwarder
    from devtools.local_aws import LocalAws
    from log_forwarder.checkpoint_store import DynamoCheckpointStore

    sqlite_store: Any = None
    with contextlib.suppress(ImportError):  # a version before `run --local` has none
        sqlite_store = importlib.import_module("log_forwarder.cli.local").SqliteCheckpointStore
    origin = Path(log_forwarder.__file__).resolve()
    assert origin.is_relative_to(Path(source).resolve()), f"not the commit's code: {origin}"
    world = World(now_ms if now_ms is not None else int(time.time()) * 1000)
    sqlite_path = out / "checkpoints.sqlite3"
    sqlite_path.unlink(missing_ok=True)
    with LocalAws() as aws:
        client = aws.client("dynamodb")
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "user_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "user_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        sqlite = None if sqlite_store is None else sqlite_store(sqlite_path)
        saver = Saver(DynamoCheckpointStore(TABLE, client=client), sqlite, world)
        _builder()(world, saver)
        if sqlite is not None:
            for user in world.users:
                sqlite.add_watch(user)
            sqlite.close()
        items = client.scan(TableName=TABLE, ConsistentRead=True)["Items"]
    items.sort(key=lambda item: item["user_id"]["S"])
    made = {
        "commit": commit,
        "at": _iso(world.now_ms),
        "at_ms": world.now_ms,
        "how": f"python -m devtools.state_fixtures --commit {commit[:7]} --out <dir>",
        "overlap_window_seconds": OVERLAP_MS // 1000,
    }
    (out / "dynamodb.json").write_text(
        json.dumps(
            {"made": made, "table": TABLE, "items": [_jsonable(i) for i in items]},
            indent=1,
            sort_keys=True,
        )
        + "\n",
        encoding="utf-8",
    )
    (out / "world.json").write_text(
        json.dumps({"made": made, "users": world.users}, indent=1, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    stores = "DynamoDB and SQLite" if sqlite is not None else "DynamoDB"
    print(f"{len(items)} items, {len(world.users)} users, {stores}, into {out}")


def _jsonable(item: Mapping[str, Any]) -> dict[str, Any]:
    """A low-level DynamoDB item as JSON: bytes as base64, as DynamoDB's JSON export writes."""
    return _binary(item, lambda raw: base64.b64encode(bytes(raw)).decode("ascii"))


def loaded_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """A dynamodb.json item as boto3's low-level client takes it (base64 back to bytes)."""
    return _binary(item, base64.b64decode)


def _binary(item: Mapping[str, Any], convert: Callable[[Any], Any]) -> dict[str, Any]:
    """The item with each binary attribute, however deep, converted."""

    def value(attribute: Mapping[str, Any]) -> dict[str, Any]:
        ((kind, raw),) = attribute.items()
        if kind == "B":
            return {"B": convert(raw)}
        if kind == "M":
            return {"M": {k: value(v) for k, v in raw.items()}}
        if kind == "L":
            return {"L": [value(v) for v in raw]}
        return {kind: raw}

    return {name: value(attribute) for name, attribute in item.items()}


def fixture_items(folder: Path) -> Iterator[dict[str, Any]]:
    document = json.loads((folder / "dynamodb.json").read_text(encoding="utf-8"))
    for item in document["items"]:
        yield loaded_item(item)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commit", required=True, help="the version whose code makes the items")
    parser.add_argument(
        "--out", type=Path, help="the folder to write (e.g. tests/fixtures/state/v1)"
    )
    parser.add_argument("--now-ms", type=int, help="the instant the dates are relative to")
    parser.add_argument("--write", type=Path, help=argparse.SUPPRESS)  # the child
    parser.add_argument("--source", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.write is not None:
        write(args.write, args.commit, args.source, args.now_ms)
    else:
        if args.out is None:
            parser.error("--out is required")
        generate(args.commit, args.out, args.now_ms)


if __name__ == "__main__":
    main()
