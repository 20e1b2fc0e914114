"""``cafe datasets``: list the dataset readers, or count what one reads below its root.

Counting before extracting catches a wrong root, an unexpected class folder or a broken label
file in seconds instead of after a CLIP pass.  :func:`cafe_cache.datasets.options.reader_options`
turns the dataset flags into reader options, so ``cafe extract`` builds its reader from the same flags.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from cafe_cache.classes import CLASSES
from cafe_cache.datasets import READERS, ReadResult, build_reader, default_root, root_env_var
from cafe_cache.datasets.options import NativeFlags, reader_options
from cafe_cache.errors import CafeError

from .common import fail, out
from .native_flags import CKPLUS_FOLD, CKPLUS_NEUTRAL, CKPLUS_PEAK, KDEF_VIEWS

SHOWN_SKIPS = 5  # how many skipped entries and reasons to print


def datasets(
    dataset: str | None = typer.Argument(None, help="A dataset reader (omit to list them)."),
    root: Path | None = typer.Option(None, "--root", help="Dataset root folder; default: the "
                                     "CAFE_<NAME>_ROOT variable or \\[datasets] in cafe.toml."),
    class_map: str | None = typer.Option(None, "--class-map", help="folder only: class folder "
                                         "names to ids, 'NAME=ID,...' (ID a class name, 0..6, or -1 to skip)."),
    name: str | None = typer.Option(None, "--name", help="folder only: cache name (default: the root folder's name)."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip malformed label lines, unknown "
                                  "class folders and missing images instead of stopping at the first."),
    ferplus_ties: str | None = typer.Option(None, "--ferplus-ties", help="ferplus only: a shared highest vote "
                                            "count is dropped (drop, the default) or the first tied class wins "
                                            "(first)."),
    ckplus_peak: int | None = CKPLUS_PEAK,
    ckplus_neutral: str | None = CKPLUS_NEUTRAL,
    ckplus_fold: str | None = CKPLUS_FOLD,
    kdef_views: str | None = KDEF_VIEWS,
) -> None:
    """List the dataset readers, or count the images per split and class one of them reads."""
    try:
        if dataset is None:
            out.print(readers_table())
            return
        native = NativeFlags(ckplus_peak, ckplus_neutral, ckplus_fold, kdef_views)
        options = reader_options(dataset, class_map, name, ferplus_ties, native)
        reader = build_reader(dataset, root, strict=not skip_bad, **options)
        result = reader.read()
    except CafeError as e:
        fail(str(e))
    out.print(counts_table(result, escape(f"{dataset}: {reader.root}  (cache name {reader.cache_name})")))
    print_skipped(result)


def readers_table() -> Table:
    """Every registered reader: what it reads, its layout, and its default root if configured."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name in sorted(READERS):
        reader, root = READERS[name], default_root(name)
        where = escape(str(root)) if root else f"not set (--root, {root_env_var(name)} or cafe.toml)"
        table.add_row(name, escape(f"{reader.description}\nlayout: {reader.layout}\n") + f"root:   {where}")
    return table


def counts_table(result: ReadResult, title: str) -> Table:
    """Images per class (rows) and split (columns), with totals."""
    counts = Counter((s.label, s.split) for s in result.samples)
    splits = result.splits()
    table = Table(title=title)
    table.add_column("class")
    for column in (*splits, "total"):
        table.add_column(column, justify="right")
    for label, class_name in enumerate(CLASSES):
        row = [counts[label, split] for split in splits]
        table.add_row(class_name, *(f"{n:,}" for n in (*row, sum(row))))
    totals = [len(result.split(split)) for split in splits]
    table.add_row("[bold]total", *(f"[bold]{n:,}" for n in (*totals, sum(totals))))
    return table


def print_skipped(result: ReadResult) -> None:
    """How many entries were left out, the commonest reasons, and the first few entries."""
    if not result.samples:
        out.print("[yellow]no images found[/]")
    if not result.skipped:
        return
    out.print(f"skipped {len(result.skipped):,} entries:")
    for reason, n in Counter(reason for _, reason in result.skipped).most_common(SHOWN_SKIPS):
        out.print(f"  {n:>8,}  {escape(reason)}")
    out.print("first skipped:")
    for where, reason in result.skipped[:SHOWN_SKIPS]:
        out.print(escape(f"  {where}: {reason}"))
