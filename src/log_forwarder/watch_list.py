"""The watch list table: who is forwarded when WATCHED_USER_IDS is unset.

One item per watched user, `{user_id}` (the CLI adds `added_at`), in a table of its own. The
checkpoints live elsewhere, so nothing done to this table (an item put twice, a delete) can
reset or remove what the forwarder remembers of a user: removing a user stops its runs, adding
it again resumes from its checkpoint.

Before this table existed, a checkpoint item with `watch = true` marked a watched user; those are
still honoured (DynamoCheckpointStore.watched_users) so that an upgrade forwards the same users.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .aws_errors import call_aws
from .exceptions import CheckpointError
from .retry import UNLIMITED, Attempts, RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

WATCH_RETRY = RetryPolicy(attempts=8, base_s=0.05, cap_s=2.0)


class DynamoWatchList:
    """Reads the watch list table (the function only reads it; the CLI writes it)."""

    def __init__(
        self,
        table_name: str,
        client: DynamoDBClient,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.table_name = table_name
        self._client = client
        self._sleep = sleep

    def users(self) -> list[str]:
        """Every watched user id, sorted."""
        users: list[str] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "ProjectionExpression": "#u",
            "ExpressionAttributeNames": {"#u": "user_id"},
            "ConsistentRead": True,
        }
        while True:
            response = call_aws(
                lambda: self._client.scan(**kwargs),
                what=f"DynamoDB Scan on watch list table {self.table_name!r}",
                error=CheckpointError,
                attempts=Attempts(WATCH_RETRY, sleep=self._sleep, deadline=UNLIMITED),
            )
            users.extend(item["user_id"]["S"] for item in response.get("Items", []))
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                return sorted(users)
            kwargs["ExclusiveStartKey"] = last_key
