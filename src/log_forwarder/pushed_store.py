"""The pushed-events table (pushed.py) in DynamoDB, through the low-level client."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .aws_errors import call_aws
from .exceptions import CheckpointError
from .pushed import (
    PUSHED_MEMORY_MS,
    PushedMemory,
    batch_key,
    encode_events,
    encode_settled,
    memory_of,
    unconfirmed_by_batch,
)
from .retry import AWS_ATTEMPT_S, UNLIMITED, Attempts, Deadline, RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

T = TypeVar("T")
# As the checkpoint table's: an attempt starts only with the time its client may take left.
LEDGER_RETRY = RetryPolicy(attempts=8, base_s=0.05, cap_s=2.0, attempt_s=AWS_ATTEMPT_S)


class DynamoPushedLedger:
    """The pushed-events table, through the low-level DynamoDB client."""

    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient,
        *,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.table_name = table_name
        self._client = client
        self._sleep = sleep

    def record(
        self,
        user_id: str,
        batch_id: str,
        events: Sequence[tuple[int, str]],
        *,
        deadline: Deadline = UNLIMITED,
        settled: Mapping[str, Any] | None = None,
    ) -> None:
        """The batch is delivered: remember its events, and what its commit settles. Written
        again after a lost answer, the same item (its key and content are the batch's)."""
        newest = max(date for date, _ in events)
        item: dict[str, Any] = {
            "user_id": {"S": user_id},
            "batch": {"S": batch_key(newest, batch_id)},
            "events": {"B": encode_events(events)},
            "expires_at": {"N": str((newest + PUSHED_MEMORY_MS) // 1000)},
        }
        if settled is not None:
            item["settled"] = {"B": encode_settled(settled)}
        self._call(
            "PutItem",
            lambda: self._client.put_item(TableName=self.table_name, Item=item),
            deadline,
        )

    def since(
        self, user_id: str, from_ms: int | None, *, deadline: Deadline = UNLIMITED
    ) -> PushedMemory:
        """Every batch holding an event dated at or after `from_ms` (all of them: None); every
        page's call within `deadline`."""
        names = {"#u": "user_id"}
        values: dict[str, Any] = {":u": {"S": user_id}}
        condition = "#u = :u"
        if from_ms is not None:
            condition += " AND #b >= :from"
            names["#b"] = "batch"
            values[":from"] = {"S": f"{max(0, from_ms):013d}"}
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": condition,
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
            "ConsistentRead": True,
        }
        items: list[dict[str, Any]] = []
        while True:
            page = self._call("Query", lambda: self._client.query(**kwargs), deadline)
            items += page.get("Items", [])
            if not page.get("LastEvaluatedKey"):
                return memory_of(
                    (
                        str(i["batch"]["S"]),
                        bytes(i["events"]["B"]),
                        frozenset(i.get("confirmed", {}).get("SS", ())),
                        bytes(i["settled"]["B"]) if "settled" in i else None,
                    )
                    for i in items
                )
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def confirm(
        self,
        user_id: str,
        memory: PushedMemory,
        log_ids: Iterable[str],
        *,
        deadline: Deadline = UNLIMITED,
    ) -> int:
        """A read returned these pushed events: mark them, and return how many no read had
        returned before (each is counted once, whatever reads race)."""
        added = 0
        for key, ids in unconfirmed_by_batch(memory, log_ids).items():
            answer = self._call(
                "UpdateItem",
                lambda key=key, ids=ids: self._client.update_item(  # type: ignore[misc]
                    TableName=self.table_name,
                    Key={"user_id": {"S": user_id}, "batch": {"S": key}},
                    UpdateExpression="ADD #c :ids",
                    ConditionExpression="attribute_exists(#b)",
                    ExpressionAttributeNames={"#c": "confirmed", "#b": "batch"},
                    ExpressionAttributeValues={":ids": {"SS": sorted(ids)}},
                    ReturnValues="UPDATED_OLD",
                ),
                deadline,
            )
            before = set(answer.get("Attributes", {}).get("confirmed", {}).get("SS", ()))
            added += len(ids - before)
        return added

    def _call(self, operation: str, call: Callable[[], T], deadline: Deadline) -> T:
        return call_aws(
            call,
            what=f"DynamoDB {operation} on pushed-events table {self.table_name!r}",
            error=CheckpointError,
            attempts=Attempts(LEDGER_RETRY, deadline=deadline)
            if self._sleep is None
            else Attempts(LEDGER_RETRY, sleep=self._sleep, deadline=deadline),
        )
