"""The OCSF documentation tables, generated from `OCSF_CLASS_BY_TYPE`; rewrites the mapping
table in docs/ocsf-mapping.md and the summary by class in docs/output.md.

Run `PYTHONPATH=src .venv/bin/python -m devtools.ocsf_mapping_doc` after changing the table;
tests/unit/test_ocsf.py fails while the document and the code disagree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from log_forwarder.event_types import EVENT_TYPES
from log_forwarder.ocsf import (
    ACTIVITIES,
    BY_METHOD,
    CLASSES,
    OCSF_CLASS_BY_TYPE,
    STATUSES,
    UNKNOWN_CODE,
)

DOCS = Path(__file__).resolve().parents[1] / "docs"
DOC = DOCS / "ocsf-mapping.md"
START, END = "<!-- mapping-table:start -->\n", "<!-- mapping-table:end -->"
SUMMARY_DOC = DOCS / "output.md"
SUMMARY_START, SUMMARY_END = "<!-- ocsf-classes:start -->\n", "<!-- ocsf-classes:end -->"


_BY_METHOD_TEXT: Final = (
    "from the HTTP method: POST Create (1), GET Read (2), PUT/PATCH Update (3), "
    "DELETE Delete (4), other Other (99)"
)


def mapping_table_markdown() -> str:
    """OCSF_CLASS_BY_TYPE as the markdown table in docs/ocsf-mapping.md."""
    lines = [
        "| Auth0 code | Auth0 event | OCSF class | OCSF activity | Status |",
        "| --- | --- | --- | --- | --- |",
    ]
    rows = [
        (code, EVENT_TYPES[code].name if code in EVENT_TYPES else "", c)
        for code, c in OCSF_CLASS_BY_TYPE.items()
    ]
    rows.append(("(any other code)", "Unknown event type", UNKNOWN_CODE))
    for code, name, c in rows:
        class_name = CLASSES[c.class_uid][0]
        if c.activity_id == BY_METHOD:
            activity = _BY_METHOD_TEXT
        else:
            activity = f"{ACTIVITIES[c.class_uid][c.activity_id]} ({c.activity_id})"
        label = code if code.startswith("(") else f"`{code}`"
        lines.append(
            f"| {label} | {name} | {class_name} ({c.class_uid}) | {activity} | "
            f"{STATUSES[c.status_id]} ({c.status_id}) |"
        )
    return "\n".join(lines) + "\n"


def class_summary_markdown() -> str:
    """OCSF_CLASS_BY_TYPE grouped by class and activity: the table in docs/output.md."""
    groups: dict[tuple[int, int], list[str]] = {}
    for code, c in OCSF_CLASS_BY_TYPE.items():
        groups.setdefault((c.class_uid, c.activity_id), []).append(f"`{code}`")
    lines = ["| OCSF class | activity | Auth0 type codes |", "|---|---|---|"]
    for (class_uid, activity_id), codes in sorted(groups.items()):
        if activity_id == BY_METHOD:
            activity = _BY_METHOD_TEXT
        else:
            activity = f"{ACTIVITIES[class_uid][activity_id]} ({activity_id})"
        class_name = CLASSES[class_uid][0]
        lines.append(f"| {class_name} ({class_uid}) | {activity} | {' '.join(sorted(codes))} |")
    lines.append("| Base Event (0) | Other (99) | any code not above |")
    return "\n".join(lines) + "\n"


def _rewrite(path: Path, start: str, end: str, table: str) -> None:
    text = path.read_text(encoding="utf-8")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(head + start + table + end + tail, encoding="utf-8")
    print(f"rewrote the table in {path}")


def main() -> None:
    _rewrite(DOC, START, END, mapping_table_markdown())
    _rewrite(SUMMARY_DOC, SUMMARY_START, SUMMARY_END, class_summary_markdown())


if __name__ == "__main__":
    main()
