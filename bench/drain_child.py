"""A fresh process that runs the handler the template names until a backlog is drained, and
reports what it cost: peak RSS, CPU time, wall time, and the AWS calls it made, by operation.

Started by bench/footprint.py with the function's environment on stdin (as JSON); the Auth0
simulator and moto's server run in the parent, so this process holds the forwarder alone.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import threading
import time
from collections import Counter
from typing import Any

MAX_RUNS = 200


def count_aws_calls() -> Counter[str]:
    """Every AWS operation any boto3 client of this process makes, counted by name."""
    from botocore.client import BaseClient

    calls: Counter[str] = Counter()
    lock = threading.Lock()
    # botocore's one funnel for every operation (private, and untyped in the stubs).
    original = getattr(BaseClient, "_make_api_call")  # noqa: B009

    def counted(self: BaseClient, operation_name: str, api_params: Any) -> Any:
        with lock:
            calls[operation_name] += 1
        return original(self, operation_name, api_params)

    setattr(BaseClient, "_make_api_call", counted)  # noqa: B010
    return calls


def count_batches() -> Counter[str]:
    """Batches the forwarder hands to the sinks (those with lines), counted as executed."""
    import log_forwarder.session as session

    batches: Counter[str] = Counter()
    # The name the session calls (imported there from executor.py).
    original = getattr(session, "execute")  # noqa: B009

    def counted(batch: Any, *args: Any, **kwargs: Any) -> None:
        if batch.lines:
            batches["with_lines"] += 1
        original(batch, *args, **kwargs)

    setattr(session, "execute", counted)  # noqa: B010
    return batches


def main() -> int:
    os.environ.update(json.loads(sys.stdin.read()))
    calls = count_aws_calls()
    from devtools.harness import SCHEDULED_EVENT, FakeLambdaContext, peak_rss_mb
    from devtools.local_aws import handler_from_template

    handler = handler_from_template()
    batches = count_batches()
    sink = io.StringIO()
    # The function's JSON logs and metrics would fill memory here if kept: discard them.
    from log_forwarder import observability

    observability.logger().registered_handler.setStream(open(os.devnull, "w"))  # noqa: SIM115
    event = json.loads(SCHEDULED_EVENT.read_text(encoding="utf-8"))
    after_import_mb = peak_rss_mb()
    cpu, wall = time.process_time(), time.perf_counter()
    forwarded = runs = auth0_calls = 0
    for runs in range(1, MAX_RUNS + 1):  # noqa: B007 - runs is reported
        with contextlib.redirect_stdout(sink):
            result = handler(event, FakeLambdaContext(remaining_ms=900_000))
        sink.seek(0)
        sink.truncate()
        forwarded += int(result["forwarded"])
        auth0_calls += int(result["api_calls"])
        if not any(u["backlog"] or u["deferred"] for u in result["users"]):
            break
    figures = {
        "runs": runs,
        "forwarded": forwarded,
        "auth0_calls": auth0_calls,
        "cpu_s": time.process_time() - cpu,
        "wall_s": time.perf_counter() - wall,
        "after_import_mb": after_import_mb,
        "peak_rss_mb": peak_rss_mb(),
        "aws_calls": dict(calls),
        "batches": batches["with_lines"],
    }
    import tracemalloc

    if tracemalloc.is_tracing():  # PYTHONTRACEMALLOC=1: where the peak is, by Python's count
        figures["python_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        top = tracemalloc.take_snapshot().statistics("filename")[:8]
        figures["python_now_top"] = [f"{s.size / 2**20:.1f} MB {s.traceback}" for s in top]
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
