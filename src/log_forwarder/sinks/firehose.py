"""Kinesis Data Firehose: each line a record of a Firehose stream (PutRecordBatch), which delivers
it where its owner chose: the stack's own bucket, or Splunk, Datadog, Elastic, OpenSearch, an
HTTP endpoint or an S3 layout of the operator's (FIREHOSE_STREAM_NAME).

A record is the line and a newline, so whatever Firehose concatenates stays one JSON object per
line. Firehose cannot be read back: a batch redelivered after an interrupted run is put again
whole (sinks/registry.py: it may repeat), and each record sent again is counted
(DeliveryReport.repeated, the PossibleRepeats metric); so is a record sent again after a lost
answer or a refusal, which, by Firehose's own account, may have been taken all the same.
Consumers deduplicate by `log_id` (or the record key of the forwarder's own records).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from log_forwarder.aws_errors import AWS_CLIENT_CONFIG, ClientFactory
from log_forwarder.records import Delivery, DeliveryReport
from log_forwarder.retry import SINK_RETRY, RetryPolicy
from log_forwarder.sinks.batching import (
    FIREHOSE_MAX_RECORD_BYTES,
    firehose_batches,
    replace_oversized,
)
from log_forwarder.sinks.partial import send_until_taken

logger = logging.getLogger(__name__)


class FirehoseClient(Protocol):
    """The one call of boto3's Firehose client this sink makes."""

    def put_record_batch(
        self, *, DeliveryStreamName: str, Records: list[dict[str, bytes]]
    ) -> Mapping[str, Any]: ...


@dataclass
class FirehoseSink:
    stream: str
    client: FirehoseClient
    sleep: Callable[[float], None] = time.sleep
    retry: RetryPolicy = SINK_RETRY
    name: ClassVar[str] = "firehose"

    def deliver(self, delivery: Delivery) -> DeliveryReport:
        # A record is the line and its newline: one over the limit is replaced by its marker.
        lines, oversized = replace_oversized(delivery.lines, FIREHOSE_MAX_RECORD_BYTES - 1)
        if oversized:
            where = {"stream": self.stream, "batch_id": delivery.batch_id}
            logger.warning(
                "Replaced events too large for a Firehose record with marker records",
                extra={**where, "oversized": len(oversized), "log_ids": oversized},
            )
        records = [(item.line + "\n").encode("utf-8") for item in lines]
        # A redelivery puts again what the interrupted run may have put: Firehose cannot say.
        repeated = len(records) if delivery.redelivery else 0

        def resent(count: int) -> None:
            nonlocal repeated
            repeated += count

        delivered = False
        try:
            for batch in firehose_batches(records):
                self._put(batch, delivery, resent)
            delivered = True
        finally:
            # Also when the delivery fails (refused, out of time): what was resent before it is
            # in the stream already, and only this line says how much; the batch's redelivery
            # is then counted in PossibleRepeats by the next run.
            if repeated:
                logger.warning(
                    "Records put to Firehose again: each may now be there twice",
                    extra={
                        "stream": self.stream,
                        "batch_id": delivery.batch_id,
                        "records": repeated,
                        "delivered": "yes" if delivered else "no",
                    },
                )
        return DeliveryReport(
            destination=self.name,
            accepted=len(records),
            oversized=len(oversized),
            repeated=repeated,
        )

    def _put(
        self, batch: Sequence[bytes], delivery: Delivery, resent: Callable[[int], None]
    ) -> None:
        def send(records: Sequence[bytes]) -> list[str | None]:
            answer = self.client.put_record_batch(
                DeliveryStreamName=self.stream, Records=[{"Data": data} for data in records]
            )
            responses = answer.get("RequestResponses", [])
            if len(responses) != len(records):
                # Firehose answers one entry per record, in order: anything else cannot say
                # which went through, so all are sent again.
                return ["IncompleteAnswer"] * len(records)
            return [response.get("ErrorCode") or None for response in responses]

        send_until_taken(
            batch,
            send,
            what=f"Firehose PutRecordBatch on stream {self.stream!r}",
            refused=lambda count, codes: (
                f"Firehose stream {self.stream!r} refused {count} record(s) for user "
                f"{delivery.user_id!r}: {codes}"
            ),
            policy=self.retry,
            deadline=delivery.deadline,
            sleep=self.sleep,
            resent=resent,
            # "the number of records that might have failed processing" (FailedPutCount)
            refused_may_be_taken=True,
        )


def build(settings: Mapping[str, str], client: ClientFactory) -> FirehoseSink:
    """The sink DESTINATIONS' `firehose` names (sinks/registry.py), from its settings."""
    firehose = client("firehose", AWS_CLIENT_CONFIG)
    return FirehoseSink(settings["FIREHOSE_STREAM_NAME"], firehose)
