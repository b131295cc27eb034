"""Messages the real-time function hands back to its queue, brought back soon.

A message named in batchItemFailures is received again once its visibility timeout ends: the
queue's own, six times the function's timeout (template.yaml, as AWS advises for an event
source), so a user that was only busy (another invocation held its checkpoint past the push's
short waits) or out of time would come back six minutes later, when the scheduled run has
usually delivered its events: the push path's share falls for a moment's contention. Those
messages get a short visibility instead, growing with each receive, so that a user held for
long still reaches the dead-letter queue (maxReceiveCount) minutes later, not seconds. A
destination failing keeps the queue's timeout: retrying it at once would only fail again.

Best effort: a message whose visibility is not changed comes back when the queue's ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .aws_errors import AWS_ERRORS, error_code
from .retry import AWS_ATTEMPT_S, Deadline

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient

logger = logging.getLogger(__name__)

# The first hand-back's visibility; each receive after it waits this many times longer, up to
# RETRY_SOON_MAX_S (under the queue's 360 s): 10, 30, 90, 270 s, then the dead-letter queue.
RETRY_SOON_S = 10
RETRY_SOON_FACTOR = 3
RETRY_SOON_MAX_S = 300
# ChangeMessageVisibilityBatch takes at most this many entries.
BATCH_LIMIT = 10


@dataclass(frozen=True, slots=True)
class HandedBack:
    """A message going back to the queue: its receipt handle, and how often it was received."""

    receipt_handle: str
    receives: int


def retry_soon_s(receives: int) -> int:
    """The visibility of a message handed back after its `receives`-th receive."""
    growth: int = RETRY_SOON_FACTOR ** max(0, receives - 1)
    return min(RETRY_SOON_MAX_S, RETRY_SOON_S * growth)


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
            if deadline.left_s() < AWS_ATTEMPT_S:
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
