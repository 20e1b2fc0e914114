"""Console, error printing and progress bars shared by the sub-commands."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from cafe_cache.bounds import check as check_bound
from cafe_cache.files import printable
from cafe_cache.messages import Tone
from cafe_cache.progress import PlainProgress

# how the CLI colours the library's toned lines (cafe_cache.messages); the library itself prints no markup
STYLES = {Tone.WARNING: "yellow", Tone.ALERT: "bold yellow", Tone.DONE: "green", Tone.HEADING: "bold",
          Tone.COMMAND: "bold cyan", Tone.STOP: "red"}
LOG_WIDTH = 10_000  # redirected output: no hard wrap (paths, commands and Markdown tables come out whole)


def _console(stderr: bool = False) -> Console:
    """A Rich console; on a terminal (or with $COLUMNS set) as wide as that, else :data:`LOG_WIDTH` wide,
    where Rich would otherwise wrap every line at 80 columns."""
    console = Console(stderr=stderr, highlight=False)
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    return Console(stderr=stderr, highlight=False, width=LOG_WIDTH)


console = _console(stderr=True)
out = _console()  # results (tables) go to stdout


def fail(message: str, code: int = 2) -> NoReturn:
    world = os.environ.get("WORLD_SIZE", "1")
    where = f" (rank {os.environ.get('RANK', '?')} of {world})" if world not in ("", "1") else ""  # torchrun
    # one line however long (no wrapping inside paths); "[datasets]" in a message is text, not markup
    console.print(f"[bold red]error{where}:[/] {escape(printable(message))}", soft_wrap=True)
    sys.exit(code)


def bounded(low: int | None = None):
    """An option callback checking the value against its flag's bound (:mod:`cafe_cache.bounds`) while the
    command line is parsed, before any work: a value out of range is one error line with the limit."""

    def callback(param: typer.CallbackParam, value: int | None) -> int | None:
        return check_bound(max(param.opts, key=len), value, low)

    return callback


def styled(line: str) -> Text:
    """A line of the library as Rich text: its characters as they are (never read as markup), the part its
    tone covers (:class:`cafe_cache.messages.Message`) in that tone's style."""
    text = Text(printable(line))
    style = STYLES.get(getattr(line, "tone", None))
    if style:
        text.stylize(style, 0, line.span)
    return text


def say(line: str, soft_wrap: bool = False) -> None:
    """A line the library said, on the console (see :func:`styled`); ``soft_wrap``: never wrapped by Rich."""
    console.print(styled(line), soft_wrap=soft_wrap)


def say_plain(text: str) -> None:
    """One line on the console, printed as is (no markup, no highlighting, no wrapping)."""
    say(text, soft_wrap=True)


def progress(unit: str = "img") -> Progress | PlainProgress:
    """Rich bars (count, rate in ``unit``/s, elapsed and remaining time) on a terminal; on redirected
    output, a plain progress line per task every ``$CAFE_PROGRESS_INTERVAL`` seconds (default 10)."""
    if not console.is_terminal:
        return PlainProgress(write=say_plain, unit=unit)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


