"""Text that came from outside (Auth0's answers, stored items, events, AWS's messages), made safe
for the terminal: the one place every command passes such text through before printing it.

Two dangers, both seen: rich reads `[...]` as markup (`[/x]` crashed `run`, `status` and
`check` with a MarkupError; `[bold]` restyled what followed), and control characters reach the
terminal as commands (`ESC ] 0 ; … BEL` sets the window title, `ESC [ 2 J` clears the screen; a
newline forges a line of output). Markup is escaped, so it prints literally; every C0 and C1
control, DEL, the Unicode line separators and the bidirectional overrides (which can make text
read backwards) are shown as escapes (`\\x1b`, `\\n`, `\\u202e`): visible, and inert.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from rich.markup import escape
from rich.table import Table

_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _shown(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: object) -> str:
    """`text` with every control character shown as an escape (for output rich does not parse
    as markup)."""
    return _CONTROLS.sub(_shown, str(text))


def safe(text: object) -> str:
    """`text` as it reads, fit to print with rich markup on: controls shown as escapes, markup
    escaped so it prints literally."""
    return escape(visible(text))


def add_safe_row(table: Table, cells: Iterable[object]) -> None:
    """A table row of values that may hold outside text (none of them is markup of ours)."""
    table.add_row(*(safe(cell) for cell in cells))
