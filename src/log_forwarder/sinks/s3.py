"""S3: gzipped JSON lines, one object per user, batch and UTC day, never overwritten
(`IfNoneMatch="*"`): the object sink (objects.py) over S3."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from botocore.exceptions import ClientError

from log_forwarder.aws_errors import (
    AWS_CLIENT_CONFIG,
    ClientFactory,
    call_aws,
    error_code,
    http_status,
)
from log_forwarder.exceptions import DeliveryError
from log_forwarder.retry import SINK_RETRY, Attempts, Deadline, RetryPolicy
from log_forwarder.sinks.objects import ObjectSink

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

T = TypeVar("T")


class S3Objects:
    """A bucket as an object store: S3 refuses to overwrite a key that exists."""

    def __init__(
        self,
        bucket: str,
        client: S3Client,
        *,
        sleep: Callable[[float], None] = time.sleep,
        retry: RetryPolicy = SINK_RETRY,
    ) -> None:
        self.bucket = bucket
        self._client = client
        self._sleep = sleep
        self._retry_policy = retry

    def put_if_absent(self, key: str, body: bytes, deadline: Deadline) -> bool:
        def put() -> bool:
            try:
                # Content-Type describes the stored bytes (a gzip file) and no Content-Encoding
                # is set: with `Content-Encoding: gzip` browsers and some HTTP clients unpack the
                # body on download while the key still says .gz, and Athena decides compression
                # from the .gz extension anyway.
                self._client.put_object(
                    Bucket=self.bucket,
                    Key=key,
                    Body=body,
                    ContentType="application/gzip",
                    IfNoneMatch="*",
                )
            except ClientError as error:
                if error_code(error) == "PreconditionFailed" or http_status(error) == 412:
                    return False
                raise
            return True

        return self._call("PutObject", key, put, deadline)

    def get(self, key: str, deadline: Deadline) -> bytes:
        return self._call(
            "GetObject",
            key,
            lambda: self._client.get_object(Bucket=self.bucket, Key=key)["Body"].read(),
            deadline,
        )

    def _call(self, operation: str, key: str, call: Callable[[], T], deadline: Deadline) -> T:
        return call_aws(
            call,
            what=f"S3 {operation} for bucket {self.bucket!r}, key {key!r}",
            error=DeliveryError,
            attempts=Attempts(self._retry_policy, sleep=self._sleep, deadline=deadline),
        )


class S3Sink(ObjectSink):
    """Writes each batch as one gzipped JSON-lines object per UTC day, never overwriting."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        client: S3Client,
        *,
        sleep: Callable[[float], None] = time.sleep,
        retry: RetryPolicy = SINK_RETRY,
    ) -> None:
        super().__init__(S3Objects(bucket, client, sleep=sleep, retry=retry), prefix, "s3")
        self.bucket = bucket


def build(settings: Mapping[str, str], client: ClientFactory) -> S3Sink:
    """The sink DESTINATIONS' `s3` names (sinks/registry.py), from its settings."""
    s3 = client("s3", AWS_CLIENT_CONFIG)
    return S3Sink(settings["S3_BUCKET"], settings["S3_PREFIX"], client=s3)
