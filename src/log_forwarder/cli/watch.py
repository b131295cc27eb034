"""`watch add|remove|list`: the watch list, never the checkpoints.

Adding writes one item `{user_id, added_at}` to the watch list table, only if it is not there
(re-adding changes nothing). Removing deletes that item. For a user watched the earlier way
(`watch = true` on its checkpoint item), both also remove that one attribute, with a conditional
update (adding thus moves the mark into the table): the checkpoint itself (version, state,
summary) is never written here.

Before anything is added, Auth0 is asked whether it knows each id (`verify_new_ids`, with
user_lookup.verify_id): an id it does not know is refused, naming it, unless `--allow-unknown`
(a user to be created later); an id it cannot vouch for (no read:users and an empty log, or no
Auth0 settings here) is added with a note saying so.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from log_forwarder.config import check_user_id
from log_forwarder.exceptions import Auth0Error, ConfigError
from log_forwarder.source import CallScope, CallStats
from log_forwarder.user_lookup import UNKNOWN, UNVERIFIED, verify_id

from .environment import Environment
from .local import SqliteCheckpointStore, iso_now

ADDED = "added"
AGAIN = "already watched (nothing changed)"
MOVED = "moved into the watch list table (its checkpoint item's watch flag removed, nothing else)"


@dataclass(frozen=True)
class WatchEntry:
    user_id: str
    source: str  # "table", "legacy" (watch = true on a checkpoint item), "local"
    added_at: str | None = None


class DynamoWatchAdmin:
    """The watch list table and the legacy flags of the checkpoint table."""

    def __init__(self, client: Any, watch_table: str | None, checkpoint_table: str | None):
        self._client = client
        self.watch_table = watch_table
        self.checkpoint_table = checkpoint_table

    def _table(self) -> str:
        if not self.watch_table:
            raise ConfigError(
                "WATCH_TABLE is required: the stack's WatchListTableName output (set it, or "
                "pass --watch-table)"
            )
        return self.watch_table

    def add(self, user_id: str) -> str:
        """What happened: ADDED, AGAIN (nothing written) or MOVED (from the legacy flag)."""
        added = True
        try:
            self._client.put_item(
                TableName=self._table(),
                Item={"user_id": {"S": user_id}, "added_at": {"S": iso_now(time.time())}},
                ConditionExpression="attribute_not_exists(user_id)",
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            added = False
        if self._drop_legacy_flag(user_id):
            return MOVED
        return ADDED if added else AGAIN

    def remove(self, user_id: str) -> bool:
        """True when the user was watched (in the table or the legacy way)."""
        answer = self._client.delete_item(
            TableName=self._table(), Key={"user_id": {"S": user_id}}, ReturnValues="ALL_OLD"
        )
        dropped = self._drop_legacy_flag(user_id)
        return "Attributes" in answer or dropped

    def _drop_legacy_flag(self, user_id: str) -> bool:
        """Remove `watch` from the user's checkpoint item, if it has one; True if it had."""
        if not self.checkpoint_table:
            return False
        try:
            # Only that attribute, only where it is: never creates or rewrites an item.
            self._client.update_item(
                TableName=self.checkpoint_table,
                Key={"user_id": {"S": user_id}},
                UpdateExpression="REMOVE #w",
                ConditionExpression="attribute_exists(#w)",
                ExpressionAttributeNames={"#w": "watch"},
            )
        except self._client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def entries(self) -> list[WatchEntry]:
        entries = [
            WatchEntry(item["user_id"]["S"], "table", item.get("added_at", {}).get("S"))
            for item in self._scan(self._table(), None)
        ]
        if self.checkpoint_table:
            flagged = self._scan(self.checkpoint_table, "#w = :t OR #w = :ts")
            entries += [WatchEntry(item["user_id"]["S"], "legacy") for item in flagged]
        return sorted(entries, key=lambda e: (e.user_id, e.source))

    def _scan(self, table: str, condition: str | None) -> list[dict[str, Any]]:
        kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
        if condition:
            kwargs.update(
                FilterExpression=condition,
                ProjectionExpression="user_id",
                ExpressionAttributeNames={"#w": "watch"},
                ExpressionAttributeValues={":t": {"BOOL": True}, ":ts": {"S": "true"}},
            )
        items: list[dict[str, Any]] = []
        for page in self._client.get_paginator("scan").paginate(**kwargs):
            items.extend(page.get("Items", []))
        return items


class LocalWatchAdmin:
    """The watch list of a `run --local` directory."""

    def __init__(self, store: SqliteCheckpointStore) -> None:
        self._store = store

    def add(self, user_id: str) -> str:
        return ADDED if self._store.add_watch(user_id) else AGAIN

    def remove(self, user_id: str) -> bool:
        return self._store.remove_watch(user_id)

    def entries(self) -> list[WatchEntry]:
        return [WatchEntry(user, "local") for user in self._store.watched_users()]


def valid_ids(user_ids: tuple[str, ...]) -> list[str]:
    """The ids as given, or ConfigError naming the first that looks mistyped."""
    return [check_user_id(user_id, "USER") for user_id in user_ids]


def verify_new_ids(
    env: Environment, ids: Sequence[str], *, allow_unknown: bool, note: Callable[[str], None]
) -> None:
    """Ask Auth0 about every id before any is added: ConfigError naming the ids it does not
    know (unless `allow_unknown`); a note for each it could not vouch for."""
    try:
        settings = env.settings(aws=False)
    except ConfigError as error:
        note(f"the ids are not verified against Auth0 ({error})")
        return
    client = env.auth0_client(settings)
    scope = CallScope(CallStats())
    unknown: list[str] = []
    for user_id in ids:
        try:
            lookup = verify_id(client, client, user_id, scope)
        except Auth0Error as error:
            note(f"{user_id!r} is not verified: {type(error).__name__}: {error}")
            continue
        if lookup.verdict == UNKNOWN:
            unknown.append(f"{user_id!r} ({lookup.detail})")
        elif lookup.verdict == UNVERIFIED:
            note(f"{user_id!r} is unverified: {lookup.detail}")
    if unknown and not allow_unknown:
        raise ConfigError(
            f"Auth0 does not know {'; '.join(unknown)}: a wrong id? Nothing was added. "
            "--allow-unknown adds it anyway (a user to be created later: each run reports it "
            "until Auth0 knows it)"
        )
    for said in unknown:
        note(f"{said}: added anyway (--allow-unknown); the runs report it until Auth0 knows it")
