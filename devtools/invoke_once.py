"""Invoke the template's handler once, in this process, as a separate Lambda container would.

    python -m devtools.invoke_once REMAINING_MS

The function's environment comes from this process's own (the caller sets it). Prints one line,
`RESULT {json}` or `ERROR {type}: {message}`, after the function's own log lines, then
`PEAK_RSS_MB {n}` (the process's high-water mark). Tests use it to run two invocations at once,
each in its own process, like two overlapping Lambda invocations, and to measure one's memory.
"""

from __future__ import annotations

import json
import sys
import time
import uuid

from devtools.harness import SCHEDULED_EVENT, FakeLambdaContext, peak_rss_mb
from devtools.local_aws import handler_from_template


def main() -> int:
    budget_ms = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    ends_at = time.monotonic() + budget_ms / 1000
    context = FakeLambdaContext(remaining_ms=lambda: int((ends_at - time.monotonic()) * 1000))
    event = {**json.loads(SCHEDULED_EVENT.read_text(encoding="utf-8")), "id": str(uuid.uuid4())}
    handler = handler_from_template()
    try:
        result = handler(event, context)
    except Exception as error:  # reported to the caller, who decides what was expected
        print(f"ERROR {type(error).__name__}: {error}", flush=True)
        return 1
    else:
        print("RESULT " + json.dumps(result), flush=True)
        return 0
    finally:
        print(f"PEAK_RSS_MB {peak_rss_mb():.1f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
