"""Per-user checkpoints in DynamoDB: one item per watched user, versioned, written conditionally.

An item looks like this (operators add the first two to watch a user without redeploying):

    user_id    S     the Auth0 user id (partition key)
    watch      BOOL  legacy: true forwarded the user when WATCHED_USER_IDS was unset, before the
                     watch list had its own table (still honoured; never written here)
    version    N     bumped by every save; a save names the version it read
    state      B     the cursor's state: compact JSON, zlib-compressed
    updated_at S     when the last save happened (ISO-8601 UTC)
    ...              the caller's summary (last event date, counts...), readable in the console;
                     a summary value of None removes the attribute

One more item holds the tenant's state (read_mode.py): key "#tenant", `item_type` = "tenant",
no `watch`. Keys starting with "#" are never Auth0 user ids and never watched.

Writes are conditional on the version read, so a duplicated or overlapping invocation gets
CheckpointConflict instead of silently moving a checkpoint another run already moved.

With many tenants in one table (multi-tenant mode), every key starts with the tenant's prefix
(`<domain>#`), so one user id in two tenants has two items; callers still speak of bare user ids.
A single-tenant store has no prefix: its items are exactly what they always were.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import boto3
from botocore.exceptions import ClientError

from log_forwarder.aws_errors import call_aws, error_code
from log_forwarder.exceptions import CheckpointConflict, CheckpointError, CheckpointStateError
from log_forwarder.read_mode import OWN_KEY_PREFIX
from log_forwarder.retry import AWS_ATTEMPT_S, UNLIMITED, Attempts, Deadline, RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

logger = logging.getLogger(__name__)
T = TypeVar("T")

# DynamoDB items are limited to 400 KB; keep room for the key and the summary attributes.
MAX_STATE_BYTES = 350 * 1024
BATCH_GET_LIMIT = 100
# Unprocessed keys and throttling: DynamoDB asks to come back soon, so short, frequent retries.
CHECKPOINT_RETRY = RetryPolicy(attempts=8, base_s=0.05, cap_s=2.0, attempt_s=AWS_ATTEMPT_S)
# Attributes the store owns (or, for `watch`, that operators own); summaries may not use them.
RESERVED_ATTRIBUTES = frozenset({"user_id", "watch", "version", "state", "updated_at"})

SummaryValue = str | int | float | bool | None


@dataclass(frozen=True)
class StoredCheckpoint:
    """A user's checkpoint as read: `version` is what the next save must name.

    An item that cannot be read carries its `error` instead of a state: it is that user's
    failure, raised when the user is forwarded, never the whole run's.
    """

    user_id: str
    version: int
    state: dict[str, Any]
    error: CheckpointStateError | None = None

    def readable_state(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        return self.state


class CheckpointStore(Protocol):
    def load(self, user_ids: Sequence[str]) -> dict[str, StoredCheckpoint]: ...

    def save(
        self,
        user_id: str,
        state: Mapping[str, Any],
        *,
        expected_version: int | None,
        summary: Mapping[str, SummaryValue] = ...,
        deadline: Deadline = ...,
    ) -> int: ...

    def watched_users(self) -> list[str]: ...


def encode_state(user_id: str, state: Mapping[str, Any]) -> bytes:
    """Compact, key-sorted JSON, zlib-compressed; CheckpointStateError if it would not fit."""
    text = json.dumps(state, sort_keys=True, separators=(",", ":"), allow_nan=False)
    blob = zlib.compress(text.encode("utf-8"), level=6)
    if len(blob) > MAX_STATE_BYTES:
        raise CheckpointStateError(
            f"checkpoint state for {user_id!r} is {len(blob)} bytes compressed, over the "
            f"{MAX_STATE_BYTES}-byte limit (DynamoDB items hold at most 400 KB); "
            "the cursor state must be kept smaller"
        )
    return blob


def decode_state(user_id: str, blob: bytes) -> dict[str, Any]:
    try:
        state = json.loads(zlib.decompress(blob).decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, ValueError) as error:
        raise CheckpointStateError(
            f"checkpoint state for {user_id!r} is unreadable ({type(error).__name__}); "
            "delete the item's `state` and `version` attributes to restart this user"
        ) from error
    if not isinstance(state, dict):
        raise CheckpointStateError(f"checkpoint state for {user_id!r} is not a JSON object")
    return state


def clean_summary(summary: Mapping[str, SummaryValue]) -> dict[str, str | int | float | bool]:
    """The summary without None values, after refusing names and values DynamoDB cannot hold."""
    # The summary is the forwarder's own: a refusal here means a bug, reported as a state error.
    cleaned: dict[str, str | int | float | bool] = {}
    for name, value in summary.items():
        if name in RESERVED_ATTRIBUTES:
            raise CheckpointStateError(
                f"summary attribute {name!r} is reserved by the checkpoint store"
            )
        if not name or len(name.encode("utf-8")) > 255:
            raise CheckpointStateError(f"summary attribute name {name!r} must be 1 to 255 bytes")
        if value is None:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            raise CheckpointStateError(
                f"summary attribute {name!r} is {value!r}; DynamoDB needs a number"
            )
        if not isinstance(value, str | int | float | bool):
            raise CheckpointStateError(
                f"summary attribute {name!r} has unsupported type {type(value)}"
            )
        cleaned[name] = value
    return cleaned


def conflict(user_id: str, expected_version: int | None) -> CheckpointConflict:
    expected = "no checkpoint" if expected_version is None else f"version {expected_version}"
    return CheckpointConflict(
        f"checkpoint for {user_id!r} changed since it was read (expected {expected}): another "
        "run of the forwarder (or an operator) wrote it first"
    )


def _to_attribute(value: str | int | float | bool) -> AttributeValueTypeDef:
    if isinstance(value, bool):  # before int: bool is an int
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    if isinstance(value, float):
        return {"N": str(Decimal(repr(value)))}
    return {"S": value}


class DynamoCheckpointStore:
    """The checkpoint table, through the low-level DynamoDB client."""

    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        retry: RetryPolicy = CHECKPOINT_RETRY,
        clock: Callable[[], float] = time.time,
        key_prefix: str = "",
    ) -> None:
        self.table_name = table_name
        self._client: DynamoDBClient = client if client is not None else boto3.client("dynamodb")
        self._sleep = sleep
        self._clock = clock
        self._retry_policy = retry
        self.key_prefix = key_prefix

    def _key(self, user_id: str) -> str:
        return self.key_prefix + user_id

    def load(self, user_ids: Sequence[str]) -> dict[str, StoredCheckpoint]:
        """Checkpoints of the users that have one; users without one (or watch-only) are absent."""
        unique = list(dict.fromkeys(user_ids))  # BatchGetItem refuses repeated keys
        found: dict[str, StoredCheckpoint] = {}
        for start in range(0, len(unique), BATCH_GET_LIMIT):
            for item in self._batch_get(unique[start : start + BATCH_GET_LIMIT]):
                if "version" not in item and "state" not in item:
                    continue  # an operator's watch-only item: no checkpoint yet
                stored = _read_item(item, self.key_prefix)
                found[stored.user_id] = stored
        return found

    def _batch_get(self, user_ids: list[str]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        keys: list[dict[str, Any]] = [{"user_id": {"S": self._key(user)}} for user in user_ids]
        # DynamoDB hands back keys it could not read under load: ask again for those, after a wait.
        unread = Attempts(self._retry_policy, sleep=self._sleep)
        while True:
            unread.start()
            request: dict[str, Any] = {
                self.table_name: {
                    "Keys": keys,
                    "ConsistentRead": True,
                    "ProjectionExpression": "#u, #v, #s",
                    "ExpressionAttributeNames": {"#u": "user_id", "#v": "version", "#s": "state"},
                }
            }
            response = self._call(
                "BatchGetItem",
                functools.partial(self._client.batch_get_item, RequestItems=request),
                UNLIMITED,
            )
            items.extend(response.get("Responses", {}).get(self.table_name, []))
            unprocessed = response.get("UnprocessedKeys", {}).get(self.table_name)
            if not unprocessed or not unprocessed.get("Keys"):
                return items
            keys = list(unprocessed["Keys"])
            if not unread.retry_after():
                raise CheckpointError(
                    f"DynamoDB table {self.table_name!r} left {len(keys)} checkpoint(s) unread "
                    f"after {unread.made} attempts"
                )

    def save(
        self,
        user_id: str,
        state: Mapping[str, Any],
        *,
        expected_version: int | None,
        summary: Mapping[str, SummaryValue] = {},
        deadline: Deadline = UNLIMITED,
    ) -> int:
        blob = encode_state(user_id, state)
        new_version = 1 if expected_version is None else expected_version + 1
        expression, names, values = _update_expression(summary, self._clock())
        values[":new"] = {"N": str(new_version)}
        values[":state"] = {"B": blob}
        if expected_version is None:
            # Not attribute_not_exists(user_id): an operator's watch-only item has no checkpoint
            # yet, and the first save must succeed on it (and keep its `watch`).
            condition = "attribute_not_exists(#v)"
        else:
            condition = "#v = :expected"
            values[":expected"] = {"N": str(expected_version)}

        def update() -> None:
            try:
                # UpdateItem with SET touches only our attributes, so `watch` and anything else
                # an operator added survive every save.
                self._client.update_item(
                    TableName=self.table_name,
                    Key={"user_id": {"S": self._key(user_id)}},
                    UpdateExpression=expression,
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as error:
                if error_code(error) != "ConditionalCheckFailedException":
                    raise
                # A retry after a lost answer finds its own first attempt: not a conflict.
                if not _holds(error.response.get("Item"), new_version, blob):
                    raise conflict(user_id, expected_version) from error

        self._call("UpdateItem", update, deadline)
        return new_version

    def watched_users(self) -> list[str]:
        users: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            # Keys starting with "#" are the forwarder's own items (the tenant item): never a
            # user, whatever attributes someone gives them.
            "FilterExpression": "(#w = :true OR #w = :true_text) AND NOT begins_with(#u, :own)",
            "ProjectionExpression": "#u",
            "ExpressionAttributeNames": {"#w": "watch", "#u": "user_id"},
            "ExpressionAttributeValues": {
                ":true": {"BOOL": True},
                ":true_text": {"S": "true"},
                ":own": {"S": OWN_KEY_PREFIX},
            },
            "ConsistentRead": True,
        }
        if self.key_prefix:
            # A tenant's watch items only; without a prefix the filter stays what it always was.
            kwargs["FilterExpression"] = f"({kwargs['FilterExpression']}) AND begins_with(#u, :p)"
            kwargs["ExpressionAttributeValues"][":p"] = {"S": self.key_prefix}
        while True:
            response = self._call("Scan", lambda: self._client.scan(**kwargs), UNLIMITED)
            bare_ids = (
                item["user_id"]["S"].removeprefix(self.key_prefix)
                for item in response.get("Items", [])
            )
            users.extend(user for user in bare_ids if not user.startswith(OWN_KEY_PREFIX))
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                return sorted(users)
            kwargs["ExclusiveStartKey"] = last_key

    def _call(self, operation: str, call: Callable[[], T], deadline: Deadline) -> T:
        return call_aws(
            call,
            what=f"DynamoDB {operation} on checkpoint table {self.table_name!r}",
            error=CheckpointError,
            attempts=Attempts(self._retry_policy, sleep=self._sleep, deadline=deadline),
        )


def _read_item(item: Mapping[str, Any], key_prefix: str) -> StoredCheckpoint:
    user_id = str(item["user_id"]["S"]).removeprefix(key_prefix)
    try:
        if "state" not in item:
            raise CheckpointStateError(
                f"checkpoint item of {user_id!r} has a version but no state; delete both the "
                "`state` and the `version` attributes to restart this user"
            )
        version = int(item["version"]["N"])
        return StoredCheckpoint(user_id, version, decode_state(user_id, bytes(item["state"]["B"])))
    except (KeyError, TypeError, ValueError) as error:
        problem = CheckpointStateError(
            f"checkpoint item of {user_id!r} is not what this forwarder writes "
            f"({type(error).__name__}: {error}); delete its `state` and `version` attributes "
            "to restart this user"
        )
        return StoredCheckpoint(user_id, -1, {}, problem)
    except CheckpointStateError as error:
        return StoredCheckpoint(user_id, -1, {}, error)


def _update_expression(
    summary: Mapping[str, SummaryValue], now_s: float
) -> tuple[str, dict[str, str], dict[str, AttributeValueTypeDef]]:
    """SET version, state, updated_at and the summary; REMOVE the summary's None values, so an
    attribute that no longer applies (a cleared error) does not linger in the item."""
    cleaned = clean_summary(summary)
    names = {"#v": "version", "#s": "state", "#t": "updated_at"}
    values: dict[str, AttributeValueTypeDef] = {":t": {"S": _iso_s(now_s)}}
    assignments = ["#v = :new", "#s = :state", "#t = :t"]
    removals = []
    for index, name in enumerate(sorted(summary)):
        names[f"#a{index}"] = name
        if name in cleaned:
            values[f":a{index}"] = _to_attribute(cleaned[name])
            assignments.append(f"#a{index} = :a{index}")
        else:
            removals.append(f"#a{index}")
    expression = "SET " + ", ".join(assignments)
    if removals:
        expression += " REMOVE " + ", ".join(removals)
    return expression, names, values


def _iso_s(now_s: float) -> str:
    stamp = datetime.fromtimestamp(now_s, tz=UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def _holds(item: object, version: int, blob: bytes) -> bool:
    """Whether the item as DynamoDB returned it is exactly the save that was attempted."""
    if not isinstance(item, Mapping):
        return False
    stored_version = item.get("version", {}).get("N")
    stored_state = item.get("state", {}).get("B")
    return (
        stored_version == str(version) and stored_state is not None and bytes(stored_state) == blob
    )
