"""Messages the real-time function hands back to its queue, brought back soon.

A message named in batchItemFailures is received again once its visibility timeout ends: the
queue's own, six times the function's timeout (template.yaml, as AWS advises for an event
source), so a user that was only busy (another invocation held its checkpoint past the push's
short waits) or out of time would come back six minutes later, when the scheduled run has
usually delivered its events: the push path's share falls for a moment's contention. Those
messages get a short visibility instead, growing with each receive (RETRY_SOON_S), so that a
user held by a dead run's lease is still received after the lease ends, before the dead-letter
queue. A destination failing keeps the queue's timeout: retrying it at once would only fail
again.

Best effort: a message whose visibility is not changed comes back when the queue's ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.config import Config

from .aws_errors import AWS_ERRORS, error_code
from .retry import Deadline

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

logger = logging.getLogger(__name__)

# The visibility of a message handed back after its 1st, 2nd, ... receive (the last one for
# every receive after). Short at first: another push holds a user for a few hundred
# milliseconds. Then long enough that the 5th receive (the queue's maxReceiveCount, after which
# it goes to the dead-letter queue) comes after the longest lease a scheduled run that died can
# leave (FunctionTimeout up to 900 s and the clock margin: 930 s): 10+60+300+900 = 1,270 s.
RETRY_SOON_S = (10, 60, 300, 900)
# ChangeMessageVisibilityBatch takes at most this many entries.
BATCH_LIMIT = 10
# A call of its own, short: changing a visibility is quick, and what it changes is only how
# soon a message comes back. Out-of-time users (a few seconds left) are the ones it is for.
REQUEUE_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=1, read_timeout=2
)
REQUEUE_ATTEMPT_S = 3


@dataclass(frozen=True, slots=True)
class HandedBack:
    """A message going back to the queue: its receipt handle, and how often it was received."""

    receipt_handle: str
    receives: int


def retry_soon_s(receives: int) -> int:
    """The visibility of a message handed back after its `receives`-th receive."""
    return RETRY_SOON_S[min(max(receives, 1), len(RETRY_SOON_S)) - 1]


class Requeue:
    """The real-time queue, to shorten the visibility of what a push hands back."""

    def __init__(self, queue_url: str, client: Callable[[], SQSClient]) -> None:
        self.queue_url = queue_url
        self._client = client  # built on first use: most invocations hand nothing back

    def soon(self, messages: Sequence[HandedBack], deadline: Deadline) -> int:
        """Make `messages` visible again soon; returns how many were changed. Nothing is
        retried, and nothing starts without an AWS call's time left before `deadline`."""
        changed = 0
        for start in range(0, len(messages), BATCH_LIMIT):
            part = messages[start : start + BATCH_LIMIT]
            if deadline.left_s() < REQUEUE_ATTEMPT_S:
                logger.warning(
                    "Handed-back messages keep the queue's visibility (no time left)",
                    extra={"messages": len(messages) - start},
                )
                break
            changed += self._change(part)
        return changed

    def _change(self, part: Sequence[HandedBack]) -> int:
        entries: list[Any] = [
            {
                "Id": str(index),
                "ReceiptHandle": message.receipt_handle,
                "VisibilityTimeout": retry_soon_s(message.receives),
            }
            for index, message in enumerate(part)
        ]
        try:
            answer = self._client().change_message_visibility_batch(
                QueueUrl=self.queue_url, Entries=entries
            )
        except AWS_ERRORS as error:
            logger.warning(
                "Handed-back messages keep the queue's visibility",
                extra={"messages": len(part), "error": error_code(error)},
            )
            return 0
        failed = answer.get("Failed", [])
        if failed:
            logger.warning(
                "Handed-back messages keep the queue's visibility",
                extra={"messages": len(failed), "error": failed[0].get("Code")},
            )
        return len(part) - len(failed)
