"""The checkpoint table in DynamoDB: the backend of the checkpoint protocol (store.py, which
says what an item holds), through the low-level client. boto3 calls only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from botocore.exceptions import ClientError

from log_forwarder.aws_errors import AWS_ERRORS, call_aws, error_code, is_transient
from log_forwarder.exceptions import CheckpointError
from log_forwarder.retry import (
    AWS_ATTEMPT_S,
    UNLIMITED,
    Attempts,
    Deadline,
    RetryPolicy,
    Settled,
    retry_call,
)
from log_forwarder.store import OWN_KEY_PREFIX, RawItem, VersionedStore, Write

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

T = TypeVar("T")

BATCH_GET_LIMIT = 100
# Unprocessed keys and throttling: DynamoDB asks to come back soon, so short, frequent retries.
CHECKPOINT_RETRY = RetryPolicy(attempts=8, base_s=0.05, cap_s=2.0, attempt_s=AWS_ATTEMPT_S)


class DynamoCheckpointStore(VersionedStore):
    """The checkpoint table, through the low-level DynamoDB client: boto3 calls only."""

    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient,
        *,
        sleep: Callable[[float], None] = time.sleep,
        retry: RetryPolicy = CHECKPOINT_RETRY,
        clock: Callable[[], float] = time.time,
        key_prefix: str = "",
    ) -> None:
        super().__init__(clock=clock, key_prefix=key_prefix)
        self.table_name = table_name
        self._client = client
        self._sleep = sleep
        self._retry_policy = retry

    def _get(self, keys: Sequence[str], deadline: Deadline) -> dict[str, RawItem]:
        found: dict[str, RawItem] = {}
        for start in range(0, len(keys), BATCH_GET_LIMIT):
            for item in self._batch_get(keys[start : start + BATCH_GET_LIMIT], deadline):
                if "version" in item or "state" in item:  # else an operator's watch-only item
                    raw = RawItem(item.get("version", {}).get("N"), item.get("state", {}).get("B"))
                    found[str(item["user_id"]["S"])] = raw
        return found

    def _batch_get(self, keys: Sequence[str], deadline: Deadline) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        unread: list[dict[str, Any]] = [{"user_id": {"S": key}} for key in keys]

        def get() -> list[dict[str, Any]]:
            response = self._client.batch_get_item(
                RequestItems={
                    self.table_name: {
                        "Keys": unread,
                        "ConsistentRead": True,
                        "ProjectionExpression": "#u, #v, #s",
                        "ExpressionAttributeNames": {
                            "#u": "user_id",
                            "#v": "version",
                            "#s": "state",
                        },
                    }
                }
            )
            items.extend(response.get("Responses", {}).get(self.table_name, []))
            unprocessed: dict[str, Any] = dict(response.get("UnprocessedKeys", {}))
            left = unprocessed.get(self.table_name, {}).get("Keys")
            if left:
                raise _Unprocessed(list(left))
            return items

        def resume(error: Exception) -> Settled[list[dict[str, Any]]] | None:
            nonlocal unread
            if isinstance(error, _Unprocessed):
                unread = error.keys  # DynamoDB could not read these under load: ask again
            return None

        def fail(error: Exception, made: int) -> Exception:
            if isinstance(error, _Unprocessed):
                return CheckpointError(
                    f"DynamoDB table {self.table_name!r} left {len(error.keys)} checkpoint(s) "
                    f"unread after {made} attempts"
                )
            return _failure(
                f"DynamoDB BatchGetItem on checkpoint table {self.table_name!r}", error, made
            )

        return retry_call(
            get,
            attempts=Attempts(self._retry_policy, sleep=self._sleep, deadline=deadline),
            errors=(*AWS_ERRORS, _Unprocessed),
            retryable=lambda error: isinstance(error, _Unprocessed) or is_transient(error),
            fail=fail,
            resume=resume,
        )

    def _put_if_version(self, write: Write, deadline: Deadline) -> RawItem | None:
        expression, names, values = _update_expression(write)
        values[":new"] = {"N": str(write.version)}
        values[":state"] = {"B": write.state}
        if write.expected is None:
            # Not attribute_not_exists(user_id): an operator's watch-only item has no checkpoint
            # yet, and the first save must succeed on it (and keep its `watch`).
            condition = "attribute_not_exists(#v)"
        else:
            condition = "#v = :expected"
            values[":expected"] = {"N": str(write.expected)}

        def update() -> RawItem | None:
            try:
                # UpdateItem with SET touches only our attributes, so `watch` and anything else
                # an operator added survive every save.
                self._client.update_item(
                    TableName=self.table_name,
                    Key={"user_id": {"S": write.key}},
                    UpdateExpression=expression,
                    ConditionExpression=condition,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=values,
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except ClientError as error:
                if error_code(error) != "ConditionalCheckFailedException":
                    raise
                found: Any = error.response.get("Item")
                item: dict[str, Any] = dict(found or {})
                return RawItem(
                    item.get("version", {}).get("N"),
                    item.get("state", {}).get("B"),
                    item.get("write_token", {}).get("S"),
                )
            return None

        return self._call("UpdateItem", update, deadline)

    def _watched_keys(self) -> list[str]:
        keys: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
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
            keys.extend(str(item["user_id"]["S"]) for item in response.get("Items", []))
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                return keys
            kwargs["ExclusiveStartKey"] = last_key

    def _call(self, operation: str, call: Callable[[], T], deadline: Deadline) -> T:
        return call_aws(
            call,
            what=f"DynamoDB {operation} on checkpoint table {self.table_name!r}",
            error=CheckpointError,
            attempts=Attempts(self._retry_policy, sleep=self._sleep, deadline=deadline),
        )


class _Unprocessed(Exception):
    """BatchGetItem left keys unread (DynamoDB asks to come back for them)."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(keys)} keys unprocessed")
        self.keys = keys


def _failure(what: str, error: Exception, made: int) -> Exception:
    tries = f" after {made} attempts" if made > 1 else ""
    return CheckpointError(f"{what} failed: {error_code(error)}{tries}")


def _update_expression(
    write: Write,
) -> tuple[str, dict[str, str], dict[str, AttributeValueTypeDef]]:
    """SET version, state, updated_at and the summary; REMOVE the summary's None values, so an
    attribute that no longer applies (a cleared error) does not linger in the item."""
    names = {"#v": "version", "#s": "state", "#t": "updated_at", "#w": "write_token"}
    values: dict[str, AttributeValueTypeDef] = {
        ":t": {"S": write.updated_at},
        ":w": {"S": write.token},
    }
    assignments = ["#v = :new", "#s = :state", "#t = :t", "#w = :w"]
    removals = []
    for index, name in enumerate(sorted([*write.summary, *write.removed])):
        names[f"#a{index}"] = name
        if name in write.summary:
            values[f":a{index}"] = _to_attribute(write.summary[name])
            assignments.append(f"#a{index} = :a{index}")
        else:
            removals.append(f"#a{index}")
    expression = "SET " + ", ".join(assignments)
    if removals:
        expression += " REMOVE " + ", ".join(removals)
    return expression, names, values


def _to_attribute(value: str | int | float | bool) -> AttributeValueTypeDef:
    if isinstance(value, bool):  # before int: bool is an int
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    if isinstance(value, float):
        return {"N": str(Decimal(repr(value)))}
    return {"S": value}
