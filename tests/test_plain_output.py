"""The library says plain text (issue 27): no Rich markup and no Rich import in ``cafe_cache/``; a line that
deserves a colour carries a tone (:mod:`cafe_cache.messages`) that only ``cli/`` turns into a style.

Read from the source with :mod:`ast`, so this holds for every module, imported by a test or not.
"""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path

from rich.console import Console

from cafe_cache.extract.job import RANDOM_BANNER
from cafe_cache.messages import Message, Tone, warning
from cli.common import STYLES, styled

LIBRARY = Path(__file__).resolve().parents[1] / "cafe_cache"
STYLE_WORDS = ("bold", "dim", "italic", "underline", "strike", "reverse", "blink", "link", "red", "green", "yellow",
               "blue", "magenta", "cyan", "white", "black", "b", "i", "u", "s")
MARKUP = re.compile(r"\[/\]|\[/?(?:" + "|".join(STYLE_WORDS) + r")(?:[ =][^\]]*)?\]")


def markup_in(source: str, name: str) -> list[str]:
    """Where ``source`` holds Rich markup in a string (f-strings' literal parts too) or imports Rich."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and MARKUP.search(node.value):
            found.append(f"{name}:{node.lineno} {MARKUP.search(node.value).group()!r}")
        modules = ([a.name for a in node.names] if isinstance(node, ast.Import)
                   else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        found += [f"{name}:{node.lineno} imports {m}" for m in modules if m.split(".")[0] == "rich"]
    return found


def test_the_checker_finds_markup_and_rich_imports():
    """The checker itself: what the library held before issue 27 is found (one that saw nothing would pass all)."""
    before = ('from rich.markup import escape\n'
              'say(f"[bold cyan]$ {escape(cmd)}[/]")\n'
              'log(f"[yellow]{note}[/]")\n'
              'BANNER = "[bold yellow]RANDOM WEIGHTS[/]: features are meaningless"\n')
    found = markup_in(before, "old.py")
    assert any("imports rich.markup" in f for f in found)
    assert sorted({f.split()[0] for f in found if "imports" not in f}) == ["old.py:2", "old.py:3", "old.py:4"]
    plain = 'say(f"skipping {m}: set it in cafe.toml [datasets]")\nrows = values[i]\n'
    assert markup_in(plain, "new.py") == []  # a table name in brackets and indexing are not markup


def test_the_library_holds_no_rich_markup():
    found = [f for path in sorted(LIBRARY.rglob("*.py"))
             for f in markup_in(path.read_text(), str(path.relative_to(LIBRARY.parent)))]
    assert not found, f"Rich markup or Rich imports in the library (style lines in cli/ instead): {found}"


def test_a_toned_line_is_plain_text_to_any_reader():
    line = warning("skipping", " affectnet: set CAFE_AFFECTNET_ROOT or [datasets] affectnet in cafe.toml")
    assert isinstance(line, str) and line.startswith("skipping affectnet") and line.tone is Tone.WARNING
    assert RANDOM_BANNER == "RANDOM WEIGHTS: features are meaningless except for testing the pipeline."
    assert RANDOM_BANNER.tone is Tone.ALERT and RANDOM_BANNER[:RANDOM_BANNER.span] == "RANDOM WEIGHTS"


def test_the_cli_styles_the_tone_and_prints_brackets_as_they_are():
    line = warning("skipping", " set [datasets] affectnet")
    text = styled(line)
    assert text.plain == str(line)  # "[datasets]" is text, not a markup tag eaten by Rich
    assert [(s.start, s.end, s.style) for s in text.spans] == [(0, len("skipping"), STYLES[Tone.WARNING])]
    assert styled("no tone [bold]here").spans == [] and styled("no tone [bold]here").plain == "no tone [bold]here"
    console = Console(file=io.StringIO(), width=200, color_system="truecolor", force_terminal=True)
    console.print(styled(Message("done", ": 12 images", Tone.DONE)))
    assert console.file.getvalue() == "\x1b[32mdone\x1b[0m: 12 images\n"  # green "done", the rest as it is
