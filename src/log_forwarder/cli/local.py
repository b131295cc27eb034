"""`run --local DIR`: the forwarder's own checkpoints and S3 layout, in a directory.

    DIR/checkpoints.sqlite3   CheckpointStore in SQLite: versioned, conditional writes, as DynamoDB
    DIR/<S3_PREFIX>dt=…/…     the S3 sink's objects: the same keys, the same gzipped JSON lines,
                              each written once (an existing key is never overwritten)
    DIR/.lock                 held by the run using DIR; a second one is refused

Nothing here reaches AWS.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from log_forwarder.cursor import Cursor
from log_forwarder.exceptions import (
    CheckpointError,
    CheckpointStateError,
    ConfigError,
    DeliveryError,
)
from log_forwarder.retry import Deadline
from log_forwarder.sinks.objects import ObjectSink
from log_forwarder.store import OWN_KEY_PREFIX, RawItem, VersionedStore, Write

from .status import UNREADABLE_SUMMARY

STORE_FILE = "checkpoints.sqlite3"
LOCK_FILE = ".lock"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS checkpoints (user_id TEXT PRIMARY KEY, version INTEGER NOT NULL,"
    " state BLOB NOT NULL, summary TEXT NOT NULL, updated_at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS watch (user_id TEXT PRIMARY KEY, added_at TEXT NOT NULL)",
)


def iso_now(clock_s: float) -> str:
    return datetime.fromtimestamp(clock_s, tz=UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class SqliteCheckpointStore(VersionedStore):
    """The checkpoint protocol (store.VersionedStore) in one SQLite file: SQL only.
    Also holds a local watch list."""

    def __init__(self, path: Path, *, timeout_s: float = 10.0) -> None:
        super().__init__()
        self.path = path
        # One connection shared by the forwarder's worker threads, behind a lock; autocommit
        # mode with explicit BEGIN IMMEDIATE, so each save is one transaction.
        self._db = sqlite3.connect(
            path, timeout=timeout_s, check_same_thread=False, isolation_level=None
        )
        self._lock = threading.Lock()
        with self._transaction() as db:
            for statement in _SCHEMA:
                db.execute(statement)
            columns = {row[1] for row in db.execute("PRAGMA table_info(checkpoints)")}
            if "write_token" not in columns:  # a file written before saves had a token
                db.execute("ALTER TABLE checkpoints ADD COLUMN write_token TEXT")
        # Readers (`status --local`) and the writer do not block each other.
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as error:
                raise CheckpointError(
                    f"SQLite checkpoint file {str(self.path)!r}: {error} (is another process "
                    "holding it, or is the disk full?)"
                ) from error

    def _get(self, keys: Sequence[str], deadline: Deadline) -> dict[str, RawItem]:
        found: dict[str, RawItem] = {}
        with self._transaction(write=False) as db:
            for key in keys:
                row = db.execute(
                    "SELECT version, state FROM checkpoints WHERE user_id = ?", (key,)
                ).fetchone()
                if row is not None:
                    found[key] = RawItem(row[0], row[1])
        return found

    def _put_if_version(self, write: Write, deadline: Deadline) -> RawItem | None:
        with self._transaction() as db:
            row = db.execute(
                "SELECT version, state, summary, write_token FROM checkpoints WHERE user_id = ?",
                (write.key,),
            ).fetchone()
            if (None if row is None else int(row[0])) != write.expected:
                return RawItem(None, None) if row is None else RawItem(row[0], row[1], row[3])
            stored = {} if row is None else json.loads(row[2])
            # As DynamoDB's REMOVE: what an earlier save wrote goes.
            merged = {k: v for k, v in stored.items() if k not in write.removed}
            merged.update(write.summary)
            db.execute(
                "INSERT INTO checkpoints (user_id, version, state, summary, updated_at, "
                "write_token) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(user_id) DO UPDATE "
                "SET version = excluded.version, state = excluded.state, "
                "summary = excluded.summary, updated_at = excluded.updated_at, "
                "write_token = excluded.write_token",
                (
                    write.key,
                    write.version,
                    write.state,
                    json.dumps(merged),
                    write.updated_at,
                    write.token,
                ),
            )
        return None

    def _watched_keys(self) -> list[str]:
        with self._transaction(write=False) as db:
            rows = db.execute("SELECT user_id FROM watch ORDER BY user_id").fetchall()
        return [str(row[0]) for row in rows]

    def items(self) -> list[dict[str, Any]]:
        """Every checkpoint as `status` reads it: user_id, version, updated_at and the summary."""
        with self._transaction(write=False) as db:
            rows = db.execute(
                "SELECT user_id, version, summary, updated_at FROM checkpoints ORDER BY user_id"
            ).fetchall()
        return [
            {**_summary(summary), "user_id": user, "version": version, "updated_at": updated}
            for user, version, summary, updated in rows
        ]

    # -- the local watch list --------------------------------------------------------------

    def add_watch(self, user_id: str) -> bool:
        """True when added, False when already watched (nothing changes then)."""
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO watch VALUES (?, ?)", (user_id, iso_now(time.time()))
            )
            return cursor.rowcount == 1

    def remove_watch(self, user_id: str) -> bool:
        with self._transaction() as db:
            return db.execute("DELETE FROM watch WHERE user_id = ?", (user_id,)).rowcount == 1

    def release_leases(self) -> list[str]:
        """Give up the leases of every pending intent. Only for a run holding DIR's lock: no
        other run is delivering, so an intent still leased belongs to a run that was killed,
        and its batch is redelivered now rather than when the lease would end."""
        released = []
        for item in self.items():
            if str(item["user_id"]).startswith(OWN_KEY_PREFIX):
                continue  # the tenant item holds no leases
            stored = self.load([item["user_id"]])[item["user_id"]]
            try:
                cursor = Cursor.from_state(
                    stored.readable_state(), item=f"checkpoint of {stored.user_id!r}"
                )
            except CheckpointStateError:
                continue  # not this release's to write (the run says why, for that user)
            if cursor.released() != cursor:
                freed = cursor.released()
                self.save(
                    stored.user_id,
                    freed.to_state(),
                    expected_version=stored.version,
                    summary=freed.summary(),
                )
                released.append(stored.user_id)
        return released


def _summary(text: str) -> dict[str, Any]:
    """A row's summary; one that is not a JSON object is reported by `status`, not fatal."""
    try:
        summary = json.loads(text)
    except ValueError as error:
        return {UNREADABLE_SUMMARY: f"the summary is not JSON ({error})"}
    except RecursionError:
        return {UNREADABLE_SUMMARY: "the summary is JSON nested deeper than Python's stack"}
    if not isinstance(summary, dict):
        return {UNREADABLE_SUMMARY: f"the summary is {type(summary).__name__}, not an object"}
    return summary


class DirectoryObjects:
    """A directory as an object store: a key is published once, atomically (written aside,
    then hard-linked into place, which fails when the name exists, as If-None-Match does)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def put_if_absent(self, key: str, body: bytes, deadline: Deadline) -> bool:
        path = self.root / key
        # A leading dot: Athena and Hive skip it, should a killed run leave it behind.
        aside = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with aside.open("wb") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(aside, path)
            except FileExistsError:
                return False
            return True
        except OSError as error:
            raise DeliveryError(f"cannot write {str(path)!r}: {error}") from error
        finally:
            aside.unlink(missing_ok=True)

    def get(self, key: str, deadline: Deadline) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except OSError as error:
            raise DeliveryError(f"cannot read {str(self.root / key)!r}: {error}") from error


class DirectorySink(ObjectSink):
    """The S3 sink's objects as files (the same keys and bytes), in DIR."""

    def __init__(self, root: Path, prefix: str) -> None:
        super().__init__(DirectoryObjects(root), prefix, "directory")
        self.root = root


class LocalDir:
    """DIR, held for one run: its lock, its checkpoint store and its sink."""

    def __init__(self, root: Path, prefix: str) -> None:
        self.root = root
        self.prefix = prefix
        self._lock_file: IO[str] | None = None
        self.store: SqliteCheckpointStore | None = None

    def __enter__(self) -> LocalDir:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            lock = (self.root / LOCK_FILE).open("a+", encoding="utf-8")
        except OSError as error:
            raise ConfigError(
                f"cannot use {str(self.root)!r} as the local directory: {error}"
            ) from error
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            lock.close()
            raise ConfigError(
                f"{str(self.root)!r} is in use by another `run --local` ({holder}); wait for "
                "it to finish, or stop it (it resumes where it stopped)"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}")
        lock.flush()
        self._lock_file = lock
        self.store = SqliteCheckpointStore(self.root / STORE_FILE)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.store is not None:
            self.store.close()
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the lock

    @property
    def sink(self) -> DirectorySink:
        return DirectorySink(self.root, self.prefix)
