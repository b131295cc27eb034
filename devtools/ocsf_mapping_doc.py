"""Rewrite the mapping table in docs/ocsf-mapping.md from `OCSF_CLASS_BY_TYPE`.

Run `PYTHONPATH=src .venv/bin/python -m devtools.ocsf_mapping_doc` after changing the table;
tests/test_ocsf.py fails while the document and the code disagree.
"""

from __future__ import annotations

from pathlib import Path

from log_forwarder.ocsf import mapping_table_markdown

DOC = Path(__file__).resolve().parents[1] / "docs" / "ocsf-mapping.md"
START, END = "<!-- mapping-table:start -->\n", "<!-- mapping-table:end -->"


def main() -> None:
    text = DOC.read_text(encoding="utf-8")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    DOC.write_text(head + START + mapping_table_markdown() + END + tail, encoding="utf-8")
    print(f"rewrote the mapping table in {DOC}")


if __name__ == "__main__":
    main()
