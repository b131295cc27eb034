"""The pieces of `run --local`, without Auth0: the directory sink writes what the S3 sink
writes, under the same keys, once; the SQLite store keeps DynamoDB's promises; the directory
is used by one run at a time; and the Lambda package never loads the CLI or its libraries."""

from __future__ import annotations

import gzip
import json
import sqlite3
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from botocore.stub import Stubber
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from log_forwarder.cli.local import LocalDir, SqliteCheckpointStore
from log_forwarder.cli.progress import Stopper
from log_forwarder.exceptions import CheckpointConflict, CheckpointError, ConfigError
from log_forwarder.records import Delivery, OutputLine, batch_id_for
from log_forwarder.sinks.batching import s3_objects
from log_forwarder.sinks.s3 import S3Sink

ROOT = Path(__file__).resolve().parents[2]
USER = "samlp|corp|carol/admin@example.com"
T = 1_704_153_600_000  # 2024-01-02T00:00:00Z


def line(log_id: str, ms: int) -> OutputLine:
    return OutputLine(ms, json.dumps({"log_id": log_id, "date": f"@{ms}"}), log_id)


def files(root: Path) -> dict[str, list[str]]:
    return {
        str(p.relative_to(root)): gzip.decompress(p.read_bytes()).decode().splitlines()
        for p in sorted(root.rglob("*.jsonl.gz"))
    }


def test_the_directory_sink_writes_the_s3_sinks_keys_and_bytes(tmp_path: Path) -> None:
    # GIVEN a batch spanning two UTC days
    lines = (line("a", T - 1), line("b", T), line("c", T + 1))
    batch_id = batch_id_for(["a", "b", "c"])
    local = LocalDir(tmp_path, "auth0-logs/").sink
    # WHEN the directory sink delivers it
    report = local.deliver(Delivery(USER, batch_id, lines))
    # THEN each file is the very object the S3 sink would put: same key, same bytes
    expected = s3_objects(lines, prefix="auth0-logs/", user_id=USER, batch_id=batch_id)
    assert report.objects == tuple(obj.key for obj in expected)
    for obj in expected:
        assert (tmp_path / obj.key).read_bytes() == obj.body
    assert (report.accepted, report.already_present) == (3, 0)
    # AND the S3 sink (its put stubbed) sends exactly those keys and bodies
    s3 = pytest.importorskip("boto3").client(
        "s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )
    with Stubber(s3) as stub:
        for obj in expected:
            stub.add_response(
                "put_object",
                {},
                {
                    "Bucket": "b",
                    "Key": obj.key,
                    "Body": obj.body,
                    "ContentType": "application/gzip",
                    "IfNoneMatch": "*",
                },
            )
        S3Sink("b", "auth0-logs/", s3).deliver(Delivery(USER, batch_id, lines))
        stub.assert_no_pending_responses()
    # AND no temporary file is left beside them
    assert not [p for p in tmp_path.rglob(".*.tmp")]


def test_a_redelivered_batch_writes_only_what_the_existing_file_lacks(tmp_path: Path) -> None:
    # GIVEN a batch {a, b, c} of which an interrupted run wrote {a, b} under the batch's key
    sink = LocalDir(tmp_path, "").sink
    batch_id = batch_id_for(["a", "b", "c"])
    a, b, c = line("a", T + 1), line("b", T + 2), line("c", T + 3)
    sink.deliver(Delivery(USER, batch_id, (a, b), redelivery=True))
    # WHEN the rest is redelivered under the same id, and then the whole batch once more
    first = sink.deliver(Delivery(USER, batch_id, (b, c), redelivery=True))
    again = sink.deliver(Delivery(USER, batch_id, (a, b, c), redelivery=True))
    # THEN c was written once, under a key of its own; nothing is ever overwritten or repeated
    assert (first.accepted, first.already_present) == (1, 1)
    assert (again.accepted, again.already_present) == (0, 3)
    ids = [json.loads(x)["log_id"] for lines in files(tmp_path).values() for x in lines]
    assert sorted(ids) == ["a", "b", "c"]


def test_the_sqlite_store_tells_a_second_writer_from_a_repeated_save(tmp_path: Path) -> None:
    # GIVEN a first save (its own retry after a lost answer is the contract test's, in
    # test_checkpoint_store.py: a save finds itself by its write token)
    store = SqliteCheckpointStore(tmp_path / "c.sqlite3")
    assert store.save("u", {"v": 1}, expected_version=None) == 1
    # THEN another save on that version is a conflict, even byte for byte the same state: two
    # overlapping runs can plan the same one, and both must not think they wrote it
    with pytest.raises(CheckpointConflict):
        store.save("u", {"v": 1}, expected_version=None)
    with pytest.raises(CheckpointConflict):
        store.save("u", {"v": 2}, expected_version=None)


def test_a_locked_sqlite_file_is_an_error_naming_it(tmp_path: Path) -> None:
    # GIVEN another process holding a write lock on the file (here: this test's connection)
    path = tmp_path / "c.sqlite3"
    store = SqliteCheckpointStore(path, timeout_s=0.2)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    # WHEN the store writes / THEN a CheckpointError names the file and the likely cause
    with pytest.raises(CheckpointError, match=r"c\.sqlite3.*locked.*another process"):
        store.save("u", {"v": 1}, expected_version=None)
    other.execute("ROLLBACK")
    assert store.save("u", {"v": 1}, expected_version=None) == 1


def test_a_directory_is_used_by_one_run_at_a_time(tmp_path: Path) -> None:
    with LocalDir(tmp_path, "") as first:
        with pytest.raises(ConfigError, match=r"in use by another `run --local` \(pid \d+\)"):
            LocalDir(tmp_path, "").__enter__()
        assert first.store is not None
    with LocalDir(tmp_path, ""):  # free again once the first is done
        pass


def test_ctrl_c_leaves_the_margin_for_what_is_under_way() -> None:
    now = [1000.0]
    stopper = Stopper(3600, margin_ms=60_000, clock=lambda: now[0])
    assert stopper.remaining_ms() == 3_600_000
    stopper.stop()
    # No new chunk starts (below the margin), yet a delivery under way has ~the margin left.
    assert stopper.remaining_ms() == 59_999
    now[0] += 10
    assert stopper.remaining_ms() == 49_999


def test_the_lambda_package_never_imports_the_cli_or_its_libraries() -> None:
    # GIVEN a Python where click and rich cannot be imported (as in the `sam build` artifact)
    code = (
        "import sys\n"
        "for name in ('click', 'rich', 'markdown_it', 'pygments'): sys.modules[name] = None\n"
        "import log_forwarder.app\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('log_forwarder.cli'))\n"
        "assert not loaded, loaded\n"
    )
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    # WHEN the handler module is imported / THEN it loads, and no CLI module came with it
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _closure(requirements_file: Path) -> set[str]:
    """Distributions a requirements file pulls in, transitively, as pip installs them here
    (markers evaluated, extras not requested)."""
    todo = [
        Requirement(entry)
        for raw in requirements_file.read_text().splitlines()
        if (entry := raw.split("#", 1)[0].strip()) and not entry.startswith("-")
    ]
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in seen or (requirement.marker and not requirement.marker.evaluate({"extra": ""})):
            continue
        seen.add(name)
        todo.extend(Requirement(text) for text in metadata.requires(name) or [])
    return seen


def test_the_cli_libraries_are_not_in_what_sam_build_bundles() -> None:
    # GIVEN what `sam build` installs: src/requirements.txt and everything it pulls in
    bundled = _closure(ROOT / "src" / "requirements.txt")
    assert {"aws-lambda-powertools", "httpx"} <= bundled
    # THEN none of the CLI's libraries is among them; they come with the `cli` extra only
    cli_only = {"click", "rich", "markdown-it-py", "pygments"}
    assert not bundled & cli_only, bundled & cli_only
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'cli = ["click' in pyproject


def test_the_console_script_and_python_m_are_the_same_cli() -> None:
    script = Path(sys.executable).parent / "auth0-log-forwarder"
    by_script = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    by_module = subprocess.run(
        [sys.executable, "-m", "log_forwarder", "--help"], capture_output=True, text=True
    )
    assert by_script.returncode == by_module.returncode == 0
    for command in ("check", "run", "backfill", "status", "watch"):
        assert command in by_script.stdout
    assert by_script.stdout == by_module.stdout.replace(
        "python -m log_forwarder", "auth0-log-forwarder"
    )


def test_on_a_terminal_the_backfill_bar_shows_events_calls_and_time_left() -> None:
    import io
    import time

    from rich.console import Console

    from log_forwarder.cli.progress import Counters, ProgressDisplay

    # GIVEN a terminal (forced) and a backfill a quarter done
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    counters = Counters(calls=7, events=1234, done=250.0)
    # WHEN the bar is drawn
    with ProgressDisplay(console, "backfill", 1000.0) as bar:
        time.sleep(0.05)
        bar.update(counters)
        time.sleep(0.15)
    # THEN it shows the share, the events, the calls and a time-left column
    drawn = screen.getvalue()
    assert "backfill" in drawn and " 25%" in drawn
    assert "1,234 events, 7 calls" in drawn
    assert "left" in drawn


@pytest.mark.parametrize("number", ["NaN", "Infinity", "1e999", "-Infinity", "2.5", "deep"])
def test_status_local_shows_one_unreadable_row_for_a_version_no_json_writer_gives(
    tmp_path: Path, number: str
) -> None:
    # GIVEN a local directory of 21 users, one of whose summaries was edited by hand to hold a
    # number Python's JSON reads but no writer gives (NaN, Infinity, 1e999) as its state version
    from tests.cli_support import run_cli

    SqliteCheckpointStore(tmp_path / "checkpoints.sqlite3").close()
    users = [f"auth0|u{n:02d}" for n in range(21)]
    with sqlite3.connect(tmp_path / "checkpoints.sqlite3") as db:
        for n, user in enumerate(users):
            summary = '{"watermark": "2026-01-01T00:00:00.000Z", "forwarded_total": 1}'
            if n == 7:
                summary = '{"watermark": "2026-01-01T00:00:00.000Z", "state_readable_from": %s}'
                summary %= "[" * 100_000 + "]" * 100_000 if number == "deep" else number
            db.execute(
                "INSERT OR REPLACE INTO checkpoints (user_id, version, state, summary, updated_at)"
                " VALUES (?, 3, x'', ?, '2026-01-01T00:00:00.000Z')",
                (user, summary),
            )
            db.execute(
                "INSERT OR IGNORE INTO watch VALUES (?, '2026-01-01T00:00:00.000Z')", (user,)
            )
    # WHEN status reads it
    done = run_cli("status", "--local", str(tmp_path), "--json", env={})
    # THEN the 20 others are shown, that one unreadable with the reason, no traceback
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    rows = {r["user_id"]: r for r in json.loads(done.stdout)["users"]}
    assert sorted(rows) == users and done.returncode == 1
    assert rows[users[7]]["state"] == "unreadable"
    if number == "deep":  # a summary nested past Python's stack
        assert (
            rows[users[7]]["unreadable"] == "the summary is JSON nested deeper than Python's stack"
        )
    else:
        assert rows[users[7]]["unreadable"].startswith("state_readable_from is ")
        assert "not a state version" in rows[users[7]]["unreadable"]
    assert sum(r["state"] != "unreadable" for r in rows.values()) == 20
