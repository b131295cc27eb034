"""Who is watched: WATCHED_USER_IDS, or the watch list table (watched_users, what every
handler asks); the table itself (DynamoWatchList).

One item per watched user, `{user_id}` (the CLI adds `added_at`), in a table of its own. The
checkpoints live elsewhere, so nothing done to this table (an item put twice, a delete) can
reset or remove what the forwarder remembers of a user: removing a user stops its runs, adding
it again resumes from its checkpoint.

Before this table existed, a checkpoint item with `watch = true` marked a watched user; those are
still honoured (DynamoCheckpointStore.watched_users) so that an upgrade forwards the same users.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .aws_errors import call_aws
from .config import Settings, check_user_id
from .exceptions import CheckpointError, ConfigError
from .retry import UNLIMITED, Attempts, RetryPolicy
from .store import CheckpointStore

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

logger = logging.getLogger(__name__)

WATCH_RETRY = RetryPolicy(attempts=8, base_s=0.05, cap_s=2.0)


def watched_users(
    settings: Settings, table: DynamoWatchList | None, store: CheckpointStore
) -> list[str]:
    """WATCHED_USER_IDS when set; else the watch list table and, from before it existed, the
    checkpoint items marked `watch = true`. A warning says what looks wrong (the metrics
    WatchedUsers and UnknownUsers count it)."""
    if settings.watched_user_ids:
        return list(settings.watched_user_ids)
    listed = table.users() if table is not None else []
    users = list(dict.fromkeys([*listed, *store.watched_users()]))
    if not users:
        logger.warning(
            "No watched users: set WATCHED_USER_IDS, or add users with "
            "`auth0-log-forwarder watch add USER` (the WatchListTable)"
        )
    for user_id in users:
        try:
            check_user_id(user_id, "the watch list table")
        except ConfigError as error:
            # Still forwarded: Auth0 decides, and a 404 is reported as an unknown user.
            logger.warning(str(error), extra={"user_id": user_id})
    return users


class RecentWatchList:
    """watched_users, asked again at most every `ttl_s`: for a function invoked far more often
    than the schedule runs (the real-time one), whose scan of the table would cost more than
    the invocation."""

    def __init__(
        self,
        settings: Settings,
        table: DynamoWatchList | None,
        store: CheckpointStore,
        *,
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ask: Callable[[], frozenset[str]] = lambda: frozenset(
            watched_users(settings, table, store)
        )
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._known: tuple[float, frozenset[str]] | None = None  # (until when, the users)

    def users(self) -> frozenset[str]:
        with self._lock:
            now = self._clock()
            if self._known is None or now >= self._known[0]:
                self._known = (now + self._ttl_s, self._ask())
            return self._known[1]


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
