"""Console, error printing and progress bars shared by the sub-commands."""

from __future__ import annotations

import os
import sys
from typing import NoReturn

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

from cafe_cache.files import printable
from cafe_cache.progress import PlainProgress

console = Console(stderr=True, highlight=False)
out = Console(highlight=False)  # results (tables) go to stdout


def fail(message: str, code: int = 2) -> NoReturn:
    world = os.environ.get("WORLD_SIZE", "1")
    where = f" (rank {os.environ.get('RANK', '?')} of {world})" if world not in ("", "1") else ""  # torchrun
    # one line however long (no wrapping inside paths); "[datasets]" in a message is text, not markup
    console.print(f"[bold red]error{where}:[/] {escape(printable(message))}", soft_wrap=True)
    sys.exit(code)


def say_plain(text: str) -> None:
    """One line on the console, printed as is (no markup, no highlighting)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


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


