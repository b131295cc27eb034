"""Text that came from outside (Auth0's answers, stored items, events, AWS's messages), made safe
for the terminal: the one place every command passes such text through before printing it.

Two dangers, both seen: rich reads `[...]` as markup (`[/x]` crashed `run`, `status` and
`check` with a MarkupError; `[bold]` restyled what followed), and control characters reach the
terminal as commands (`ESC ] 0 ; … BEL` sets the window title, `ESC [ 2 J` clears the screen; a
newline forges a line of output). A third, also seen: characters that print as nothing, so that
`auth0|adm\u200bin`, `auth0|admin\u200f` and `auth0|admin` look the same. Markup is escaped, so
it prints literally; every character Python does not call printable is shown as an escape
(`\\x1b`, `\\n`, `\\u202e`, `\\U000e0041`): visible, and inert. That is every Unicode
control (Cc), format character (Cf: zero-width spaces and joiners, the bidirectional marks,
overrides and isolates, the BOM, U+2060-2064, the tag characters, the soft hyphen), line and
paragraph separator (Zl, Zp), private-use, surrogate and unassigned code point (Co, Cs, Cn), and
space but the ASCII one (Zs: a no-break space is not a space); and the few printable ones that
print as nothing (`_INVISIBLE`: variation selectors, the Hangul fillers, U+034F, U+2800).
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.markup import escape
from rich.table import Table

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Characters Python calls printable that still print as nothing (or as a blank) in a terminal:
# the combining grapheme joiner, the variation selectors, the Khmer inherent vowels, the Hangul
# fillers, the blank Braille cell.
_INVISIBLE = frozenset(
    "\u034f\u17b4\u17b5\u115f\u1160\u3164\uffa0\u2800"
    + "".join(map(chr, range(0xFE00, 0xFE10)))
    + "".join(map(chr, range(0xE0100, 0xE01F0)))
)


def _printable(text: str) -> bool:
    return text.isprintable() and _INVISIBLE.isdisjoint(text)


def _shown(char: str) -> str:
    if char.isprintable() and char not in _INVISIBLE:
        return char
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def visible(text: object) -> str:
    """`text` with every character that is not printable shown as an escape (for output rich
    does not parse as markup)."""
    shown = str(text)
    return shown if _printable(shown) else "".join(map(_shown, shown))


def safe(text: object) -> str:
    """`text` as it reads, fit to print with rich markup on: controls shown as escapes, markup
    escaped so it prints literally."""
    return escape(visible(text))


def add_safe_row(table: Table, cells: Iterable[object]) -> None:
    """A table row of values that may hold outside text (none of them is markup of ours)."""
    table.add_row(*(safe(cell) for cell in cells))
