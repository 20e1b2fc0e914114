"""``cafe cache info|list``: what a feature cache holds."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from cafe_cache.errors import CafeError
from cafe_cache.files import printable

from .common import bounded, console, out

app = typer.Typer(help="Inspect feature caches made by `cafe extract`.", no_args_is_help=True)


@app.command("info")
def info(path: Path = typer.Argument(..., help="A cache file (cache/NAME.h5), or a cache name as train and eval "
                                                 "take it (NAME: --cache-dir/NAME.h5)."),
         cache_dir: Path = typer.Option(Path("cache"), help="Folder of the caches, for a cache given by name."),
         show: int = typer.Option(10, callback=bounded(), help="How many unreadable/skipped entries to list."),
         verify: bool = typer.Option(False, "--verify", help="Read back every stored row: checksums (fletcher32 of "
                                     "features and images, sha256 of labels, paths, counts, errors and attributes; "
                                     "caches made by this cafe), labels in range, finite, written features. Exit 2 "
                                     "naming the damaged part.")) -> None:
    """Splits, counts, fingerprint and unreadable images of one cache file.

    On a cache a running `cafe extract` is writing, the rows written so far (read from the writer's
    progress file; the HDF5 file itself is left alone)."""
    from cafe_cache.extract.extractor import display_name
    from cafe_cache.extract.lock import writing_progress  # not for --help
    from cafe_cache.extract.paths import cache_file, shard_files, shards_dir
    from cafe_cache.extract.reader import FeatureCache
    from cafe_cache.extract.subset import describe

    path = cache_file(path, cache_dir)
    running = writing_progress(path)
    if running is not None:
        _show_running(path, running)
        return
    c = FeatureCache(path)
    fp = c.fingerprint
    weights = f"[bold yellow]{fp.weights_label}[/]" if fp.random_weights else fp.weights_label
    out.print(f"[bold]{path}[/]  dataset {c.dataset} ({c.cache_name}), root {c.root}")
    out.print(display_name(fp.model, weights) + (f", sha256 {fp.weights_sha256[:16]}" if fp.weights_sha256 else ""))
    out.print(f"preprocess {fp.preprocess} at {fp.image_size}px, views {', '.join(fp.views)}, "
              f"{fp.dtype} ({fp.precision}), made by cafe {c.cafe_version}; "
              + (f"images stored at {c.stored_image_size}px; " if c.stored_image_size else "")
              + ("[green]complete[/]" if c.complete else "[yellow]UNFINISHED: rerun `cafe extract` to finish[/]"))
    if fp.transform:
        out.print(f"input: {fp.transform}")
    if c.subset:
        out.print(f"[yellow]partial extraction: {describe(c.subset)}[/]")
    table = Table("split", "images", "written")
    for name, (done, n) in c.splits.items():
        table.add_row(name, f"{n:,}", f"{done:,}")
    out.print(table)
    shards = shard_files(path)
    if shards:
        out.print(f"[yellow]{len(shards)} shard files of a torchrun extraction in {shards_dir(path)}[/]: their rows "
                  "join the cache when all are done; rerun the extraction (any number of ranks) to finish them")
    errors = c.errors()
    out.print(f"{len(errors):,} unreadable images" + (":" if errors else ""))
    for split, p, reason in errors[:show]:
        out.print(escape(printable(f"  {split} {p}: {reason}")))
    skipped = c.skipped()
    out.print(f"{len(skipped):,} label entries skipped by the reader" + (":" if skipped else ""))
    for where, reason in skipped[:show]:
        out.print(escape(printable(f"  {where}: {reason}")))
    if verify:
        for line in c.verify():
            out.print(f"verified {line}")
        out.print("[green]verify: every stored row read back intact[/]")


def _show_running(path: Path, running: dict[str, tuple[int, int]]) -> None:
    done = sum(d for d, _ in running.values())
    total = sum(n for _, n in running.values())
    out.print(f"[bold]{path}[/]")
    out.print(f"[yellow]being written by a running `cafe extract`[/]: {done:,} of {total:,} rows "
              f"done ({100 * done / max(1, total):.0f}%)", soft_wrap=True)
    table = Table("split", "images", "written")
    for name, (d, n) in running.items():
        table.add_row(name, f"{n:,}", f"{d:,}")
    out.print(table)


@app.command("list")
def list_caches(cache_dir: Path = typer.Argument(Path("cache"), help="Folder of caches.")) -> None:
    """One line per cache in a folder."""
    from cafe_cache.extract.paths import find_caches
    from cafe_cache.extract.reader import FeatureCache

    table = Table("cache", "dataset", "extractor and weights", "splits", "state")
    for p in find_caches(cache_dir):
        try:
            c = FeatureCache(p)
        except CafeError as e:  # being written, or damaged: the others are still listed
            console.print(f"[yellow]skipped {escape(p.name)}:[/] {escape(str(e))}")
            continue
        table.add_row(p.name, c.dataset, c.fingerprint.weights_label,
                      ", ".join(f"{s} {n:,}" for s, (_, n) in c.splits.items()),
                      "complete" if c.complete else "unfinished")
    out.print(table)
