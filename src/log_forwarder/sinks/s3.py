"""S3: gzipped JSON lines, one object per user, batch and UTC day, never overwritten."""

from __future__ import annotations

import gzip
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import boto3
from botocore.exceptions import ClientError

from log_forwarder.aws_errors import call_aws, error_code, http_status
from log_forwarder.batching import S3Object, batch_id_for, s3_objects
from log_forwarder.convert import record_key
from log_forwarder.exceptions import DeliveryError
from log_forwarder.records import Delivery, DeliveryReport, OutputLine
from log_forwarder.retry import SINK_RETRY, Attempts, Deadline, RetryPolicy

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

logger = logging.getLogger(__name__)
T = TypeVar("T")


class S3Sink:
    """Writes each batch as one gzipped JSON-lines object per UTC day, never overwriting.

    Keys derive from the batch's log_ids, so a key that already exists holds this batch, or the
    part of it an interrupted run wrote: what that object lacks is written under a key of its
    own. No mode is needed for redelivery; it costs a read only when a key exists.
    """

    name = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: S3Client | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        retry: RetryPolicy = SINK_RETRY,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self._client: S3Client = client if client is not None else boto3.client("s3")
        self._sleep = sleep
        self._retry_policy = retry

    def deliver(self, delivery: Delivery) -> DeliveryReport:
        if not delivery.lines:
            return DeliveryReport(destination=self.name, accepted=0)
        ordered = sorted(delivery.lines, key=lambda item: item.timestamp_ms)
        objects = self._objects(delivery.user_id, ordered, delivery.batch_id)
        deadline = delivery.deadline
        accepted = already_present = 0
        written: list[str] = []
        for obj in objects:
            if self._put(obj, deadline):
                accepted += obj.line_count
                written.append(obj.key)
                continue
            missing = self._missing_from(obj, ordered, deadline)
            already_present += obj.line_count - len(missing)
            ids = [line.key for line in missing if line.key]
            for extra in self._objects(delivery.user_id, missing, batch_id_for(ids)):
                if self._put(extra, deadline):
                    accepted += extra.line_count
                    written.append(extra.key)
                else:
                    already_present += extra.line_count
        if already_present:
            logger.info(
                "S3 objects already present (an earlier attempt wrote them)",
                extra={
                    "bucket": self.bucket,
                    "batch_id": delivery.batch_id,
                    "lines": already_present,
                },
            )
        return DeliveryReport(
            destination=self.name,
            accepted=accepted,
            already_present=already_present,
            objects=tuple(written) or tuple(obj.key for obj in objects),
        )

    def _objects(self, user_id: str, lines: Sequence[OutputLine], batch_id: str) -> list[S3Object]:
        return s3_objects(lines, prefix=self.prefix, user_id=user_id, batch_id=batch_id)

    def _missing_from(
        self, obj: S3Object, lines: Sequence[OutputLine], deadline: Deadline
    ) -> list[OutputLine]:
        """The lines of `obj` whose key (log_id, finding id) the stored object lacks."""
        stored = self._call(
            "GetObject",
            obj.key,
            lambda: self._client.get_object(Bucket=self.bucket, Key=obj.key)["Body"].read(),
            deadline,
        )
        text = gzip.decompress(stored).decode("utf-8")
        present = {record_key(line) for line in text.splitlines()}
        in_object = set(gzip.decompress(obj.body).decode("utf-8").splitlines())
        return [
            line
            for line in lines
            if line.line in in_object and line.key is not None and line.key not in present
        ]

    def _put(self, obj: S3Object, deadline: Deadline) -> bool:
        """Write obj unless its key exists; True when written, False when already there."""

        def put() -> bool:
            try:
                # Content-Type describes the stored bytes (a gzip file) and no Content-Encoding
                # is set: with `Content-Encoding: gzip` browsers and some HTTP clients unpack the
                # body on download while the key still says .gz, and Athena decides compression
                # from the .gz extension anyway.
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=obj.key,
                    Body=obj.body,
                    ContentType="application/gzip",
                    IfNoneMatch="*",
                )
            except ClientError as error:
                if error_code(error) == "PreconditionFailed" or http_status(error) == 412:
                    return False
                raise
            return True

        return self._call("PutObject", obj.key, put, deadline)

    def _call(self, operation: str, key: str, call: Callable[[], T], deadline: Deadline) -> T:
        return call_aws(
            call,
            what=f"S3 {operation} for bucket {self.bucket!r}, key {key!r}",
            error=DeliveryError,
            attempts=Attempts(self._retry_policy, sleep=self._sleep, deadline=deadline),
        )
