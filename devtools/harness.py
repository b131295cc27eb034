"""The whole application on one machine: template resources on moto's server, the Auth0
simulator, and the real handler imported through the template's Handler path.

Used by the integration tests, `make demo` and `make bench`, so all three exercise the same path
a deployed function takes.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import resource
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from devtools.auth0_simulator import Auth0Simulator
from devtools.local_aws import (
    TEMPLATE_PATH,
    DeployedResources,
    LocalAws,
    deploy_template,
    function_environment,
    handler_from_template,
)

SCHEDULED_EVENT = TEMPLATE_PATH.parent / "events" / "scheduled-event.json"


@dataclass
class FakeLambdaContext:
    """What Powertools and the handler read from the Lambda context object."""

    remaining_ms: int | Callable[[], int] = 300_000
    function_name: str = "ForwarderFunction"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:ForwarderFunction"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms() if callable(self.remaining_ms) else self.remaining_ms


@dataclass
class Invocation:
    result: dict[str, Any] | None
    error: BaseException | None
    output: str  # what the function printed: Powertools JSON logs and EMF metrics

    def metrics(self) -> dict[str, float]:
        """The EMF metric values the invocation emitted, by name."""
        values: dict[str, float] = {}
        for line in self.output.splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and "_aws" in record:
                    for definition in record["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                        value = record[definition["Name"]]
                        values[definition["Name"]] = value[0] if isinstance(value, list) else value
        return values


# The environment each handler module's cached runtime was built in (one module per process).
_warm_env: dict[str, dict[str, str]] = {}


@dataclass(frozen=True)
class LocalFunction:
    """A function of the template as deployed locally: its handler, its environment, and the
    wall clock its runtime is built with (the benchmark replays a day in seconds)."""

    handler: Callable[[dict[str, Any], Any], Any]
    env: Mapping[str, str]
    clock: Callable[[], float] = time.time


def invoke_handler(
    function: LocalFunction, event: dict[str, Any], context: FakeLambdaContext, *, cold: bool
) -> Invocation:
    """Invoke a handler as Lambda would, in its environment; `cold=True` starts a new container.

    A handler module's runtime is built again (its `reset_runtime`) on a cold start, or when the
    previous invocation of that module ran in another stack's environment.
    """
    output = io.StringIO()
    handler, env = function.handler, function.env
    with _environment(env):
        module: Any = sys.modules[handler.__module__]
        if cold or _warm_env.get(module.__name__) != dict(env):
            module.reset_runtime(clock=function.clock)
            _warm_env[module.__name__] = dict(env)
        # Powertools' handler holds the stdout it saw at import; point it at the capture too.
        from log_forwarder import observability

        log_handler = observability.logger().registered_handler
        previous_stream = log_handler.setStream(output)
        with contextlib.redirect_stdout(output):
            try:
                result = handler(event, context)
                error = None
            except Exception as exc:  # the caller decides whether a failed run is expected
                result, error = None, exc
            finally:
                log_handler.setStream(previous_stream)
    return Invocation(result=result, error=error, output=output.getvalue())


class StackContents:
    """What a locally deployed stack's destinations and checkpoint table hold."""

    aws: LocalAws
    resources: DeployedResources

    def cloudwatch_records(self, user_id: str) -> list[dict[str, Any]]:
        """The records of a user's stream (multi-tenant mode: of `<domain>#<user id>`)."""
        from log_forwarder.sinks.batching import stream_name_for

        assert self.resources.log_group is not None
        logs = self.aws.client("logs")
        records: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {
                "logGroupName": self.resources.log_group,
                "logStreamName": stream_name_for(user_id),
                "startFromHead": True,
            }
            if token:
                kwargs["nextToken"] = token
            try:
                page = logs.get_log_events(**kwargs)
            except logs.exceptions.ResourceNotFoundException:
                return []
            records.extend(
                {**json.loads(e["message"]), "@timestamp": e["timestamp"]} for e in page["events"]
            )
            if page["nextForwardToken"] == token:
                return records
            token = page["nextForwardToken"]

    def s3_objects(self) -> dict[str, list[dict[str, Any]]]:
        assert self.resources.bucket is not None
        s3 = self.aws.client("s3")
        objects: dict[str, list[dict[str, Any]]] = {}
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=self.resources.bucket):
            for item in page.get("Contents", []):
                body = s3.get_object(Bucket=self.resources.bucket, Key=item["Key"])["Body"].read()
                text = gzip.decompress(body).decode("utf-8")
                objects[item["Key"]] = [json.loads(line) for line in text.splitlines() if line]
        return objects

    def s3_records(
        self, user_id: str | None = None, *, tenant: str | None = None
    ) -> list[dict[str, Any]]:
        records = [r for lines in self.s3_objects().values() for r in lines]
        return [
            r
            for r in records
            if (user_id is None or _added(r).get("watched_user_id") == user_id)
            and (tenant is None or _added(r).get("tenant") == tenant)
        ]

    def cloudwatch_events(self, user_id: str) -> list[dict[str, Any]]:
        """The user's forwarded events in CloudWatch, without the forwarder's own records."""
        return [r for r in self.cloudwatch_records(user_id) if "log_id" in r]

    def s3_events(self, user_id: str | None = None) -> list[dict[str, Any]]:
        """The forwarded events in S3, without the forwarder's own records."""
        return [r for r in self.s3_records(user_id) if "log_id" in r]

    def checkpoint(self, user_id: str, *, key_prefix: str = "") -> dict[str, Any] | None:
        from log_forwarder.checkpoint_store import DynamoCheckpointStore

        store = DynamoCheckpointStore(
            self.resources.table_name, client=self.aws.client("dynamodb"), key_prefix=key_prefix
        )
        stored = store.load([user_id]).get(user_id)
        return None if stored is None else stored.state


class LocalDeployment(StackContents):
    """One stack of the template, deployed locally and driven through its handler."""

    def __init__(
        self,
        aws: LocalAws,
        simulator: Auth0Simulator,
        *,
        stack_name: str,
        destinations: str = "cloudwatch,s3",
        watched_user_ids: Sequence[str] | None = None,
        clock: Callable[[], float] | None = None,
        **overrides: str,
    ) -> None:
        """`clock` replaces the forwarder's wall clock: the benchmark replays a day in seconds."""
        self.aws = aws
        self._clock = clock
        self.simulator = simulator
        credentials = {"client_id": simulator.client_id, "client_secret": simulator.client_secret}
        self.resources = deploy_template(
            aws, stack_name=stack_name, destinations=destinations, auth0_credentials=credentials
        )
        self.env = {
            **aws.env(),
            **function_environment(
                self.resources,
                auth0_domain=simulator.domain,
                auth0_base_url=simulator.base_url,
                watched_user_ids=watched_user_ids,
                destinations=destinations,
                # The template declares AWS_ENDPOINT_URL empty (AWS's own endpoints); this
                # stack's AWS is the local server.
                **{"AWS_ENDPOINT_URL": aws.endpoint_url, **overrides},
            ),
        }
        self._handler: Callable[[dict[str, Any], Any], Any] | None = None
        self._event = json.loads(SCHEDULED_EVENT.read_text(encoding="utf-8"))

    @property
    def clock(self) -> Callable[[], float]:
        """The wall clock the stack's functions run with."""
        return self._clock or time.time

    def invoke(
        self, *, cold: bool = False, remaining_ms: int | Callable[[], int] = 300_000
    ) -> Invocation:
        """Invoke the handler as Lambda would; `cold=True` starts a new container first."""
        if self._handler is None:
            with _environment(self.env):
                # Imported inside the function's environment, as Lambda does at a cold start.
                self._handler = handler_from_template()
        event = {**self._event, "id": str(uuid.uuid4())}
        context = FakeLambdaContext(remaining_ms=remaining_ms)
        function = LocalFunction(self._handler, self.env, self._clock or time.time)
        return invoke_handler(function, event, context, cold=cold)


def peak_rss_mb() -> float:
    """This process's own peak RSS (VmHWM). Not getrusage's ru_maxrss: on Linux that keeps the
    high-water mark of the process before exec, i.e. of the parent that started this one (which
    holds the simulator and moto's server), and read 468 MB here for a 100k backlog."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux


def _added(record: dict[str, Any]) -> dict[str, Any]:
    """What the forwarder added to a stored line, in the Auth0 format or in OCSF."""
    added = record.get("_forwarder") or record.get("unmapped", {}).get("_forwarder") or {}
    return added if isinstance(added, dict) else {}


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
