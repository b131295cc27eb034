"""The default rule pack, compiled: `rules/default/*.yml` (Sigma) into
`src/log_forwarder/default_plan.json`, the plan the function ships with (it cannot import
pySigma).

Run `PYTHONPATH=src .venv/bin/python -m devtools.default_plan` after changing a rule of the pack
(or pySigma's pinned version); tests/unit/test_default_pack.py fails while the committed plan and
a fresh compile of the YAML differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from log_forwarder.cli.sigma_compiler import compile_paths, refusal_lines
from log_forwarder.detections import DEFAULT_PLAN_PATH

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "rules" / "default"


def compiled_default_pack() -> dict[str, Any]:
    """The default pack compiled now; every rule of it must compile."""
    compiled = compile_paths([PACK])
    if compiled.refused:
        refused = "\n".join(refusal_lines(compiled))
        raise SystemExit(f"the default pack must compile whole:\n{refused}")
    return compiled.plan


def plan_text(plan: dict[str, Any]) -> str:
    return json.dumps(plan, indent=1, ensure_ascii=False) + "\n"


def main() -> int:
    DEFAULT_PLAN_PATH.write_text(plan_text(compiled_default_pack()), encoding="utf-8")
    print(f"wrote {DEFAULT_PLAN_PATH.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
