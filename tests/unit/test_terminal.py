"""What the CLI prints of outside text (cli/terminal.py): every character that prints as nothing
or as a command is shown as an escape, so two ids that differ only by one never look the same."""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import CliRunner

from log_forwarder.cli import init
from log_forwarder.cli.terminal import safe, visible

# What issue #21's review printed raw: zero-width characters, the bidirectional marks, the BOM,
# the invisible operators, a tag character, the soft hyphen; and the other kinds Python calls
# unprintable: a no-break space, a private-use and an unassigned code point, a lone surrogate.
# (C0/C1 controls, U+2028/9 and the bidi overrides were escaped already.)
INVISIBLE = {
    "\u200b": "\\u200b",  # zero-width space (Cf)
    "\u200c": "\\u200c",
    "\u200d": "\\u200d",
    "\u200e": "\\u200e",  # LRM
    "\u200f": "\\u200f",  # RLM
    "\u061c": "\\u061c",  # ALM
    "\ufeff": "\\ufeff",  # BOM
    "\u2060": "\\u2060",
    "\u2064": "\\u2064",
    "\U000e0041": "\\U000e0041",  # tag LATIN CAPITAL LETTER A
    "\U000e007f": "\\U000e007f",
    "\u00ad": "\\xad",  # soft hyphen
    "\u00a0": "\\xa0",  # no-break space (Zs)
    "\ue000": "\\ue000",  # private use (Co)
    "\U000f0000": "\\U000f0000",
    "\u0378": "\\u0378",  # unassigned (Cn)
    "\ud800": "\\ud800",  # lone surrogate (Cs)
    # printable to Python, blank on a terminal (the second review)
    "\u034f": "\\u034f",  # combining grapheme joiner
    "\ufe0f": "\\ufe0f",  # variation selector 16
    "\U000e0100": "\\U000e0100",  # variation selector 17
    "\u3164": "\\u3164",  # Hangul filler
    "\u115f": "\\u115f",
    "\uffa0": "\\uffa0",
    "\u17b4": "\\u17b4",
    "\u2800": "\\u2800",  # blank Braille cell
}


@pytest.mark.parametrize(("char", "shown"), sorted(INVISIBLE.items()))
def test_every_character_that_prints_as_nothing_is_shown_as_its_escape(
    char: str, shown: str
) -> None:
    assert visible(f"auth0|adm{char}in") == f"auth0|adm{shown}in"


def test_lookalike_ids_no_longer_look_alike_and_printable_text_is_untouched() -> None:
    ids = ["auth0|admin", "auth0|adm\u200bin", "auth0|admin\u200f", "\ufeffauth0|admin"]
    # each printed as it differs: nothing in them prints as nothing
    assert all(visible(i).isprintable() for i in ids)
    assert [visible(i) for i in ids[1:]] == ["auth0|adm\\u200bin", "auth0|admin\\u200f",
                                            "\\ufeffauth0|admin"]  # fmt: skip
    for text in ("auth0|admin", "Zoë Ångström 東京 😀", "a b\u00e9", "[/x] 100%"):
        assert visible(text) == text
    assert safe("[/x]") == "\\[/x]"


def test_init_prints_the_notes_aws_and_auth0_give_escaped(monkeypatch: Any) -> None:
    # GIVEN init meeting an error whose text came from outside (AWS, Auth0)
    said = "could not check secret (AccessDenied: \x1b]0;pwned\x07 adm\u200bin [/x])"

    def run_init(env: Any, options: Any, note: Any) -> Any:
        note(said)
        raise SystemExit(0)

    monkeypatch.setattr(init, "run_init", run_init)
    from log_forwarder.cli.commands import cli

    # WHEN init runs THEN the note prints as text: no control reaches the terminal, the
    # invisible character and the markup are shown
    done = CliRunner().invoke(cli, ["init", "--no-input", "--domain", "t.auth0.com"])
    shown = done.stderr if done.stderr_bytes else done.output
    assert "\x1b" not in shown and "\u200b" not in shown, repr(shown)
    assert "\\x1b]0;pwned\\x07 adm\\u200bin [/x]" in shown.replace("\n", ""), repr(shown)
