"""``cafe synth``: write the synthetic multi-domain demo set (cartoon faces, real dataset layouts)."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.markup import escape

from cafe_cache.errors import CafeError
from cafe_cache.options import split_list
from cafe_cache.progress import rate_text
from cafe_cache.synth import DOMAINS, check_demo_folder, demo_image_count, make_demo_sample

from .common import bounded, console, fail, progress
from .common import out as results


def synth(
    out: Path = typer.Argument(Path("demo/data"), metavar="OUT",
                                   help="Folder to write into: one dataset root per domain, and preview.png."),
    seed: int = typer.Option(0, "--seed", callback=bounded(),
                             help="Random seed; same seed and options, identical files."),
    train_per_class: int = typer.Option(24, "--train-per-class", callback=bounded(),
                                        help="Training images per class and domain."),
    test_per_class: int = typer.Option(8, "--test-per-class", callback=bounded(),
                                       help="Test images per class and domain."),
    size: int | None = typer.Option(None, "--size", min=16, max=1024,
                                       help="Image side in pixels (default: 100, and 48 for lowres)."),
    domains: str = typer.Option(",".join(DOMAINS), "--domains",
                                help=f"Comma-separated domains to write, from: {', '.join(DOMAINS)}."),
    force: bool = typer.Option(False, "--force",
                               help="Write into a non-empty OUT, replacing earlier synth folders."),
) -> None:
    """Generate synthetic cartoon faces of the 7 expressions in several visual domains.

    No real face data needed: this is the sample [bold]make demo[/] runs on.
    The domains look clearly different: train on one, test on the others.

    [bold]line[/]    black line drawings on white, RAF-DB layout
    [bold]color[/]   shaded faces on cluttered backgrounds, class folders
    [bold]lowres[/]  48x48 grey, blurred and noisy like FERPlus, class folders

    Each dataset folder gets a SYNTH.txt saying it is synthetic.
    OUT/preview.png shows one face per class and domain.
    """
    chosen = tuple(split_list(domains) or ())
    unknown = [d for d in chosen if d not in DOMAINS]
    if unknown or not chosen:
        fail(f"unknown domain(s) {escape(', '.join(unknown)) or '(none given)'} in --domains; "
             f"choose from {', '.join(DOMAINS)}")
    total = demo_image_count(chosen, train_per_class, test_per_class)
    start = time.perf_counter()
    try:
        check_demo_folder(out, force)
        out.mkdir(parents=True, exist_ok=True)
        with progress() as bar:
            task = bar.add_task("synth", total=total, rate="")

            def advance(n: int) -> None:
                done = bar.tasks[task].completed + n
                bar.update(task, advance=n, rate=rate_text(int(done), time.perf_counter() - start))

            datasets = make_demo_sample(out, seed, train_per_class, test_per_class, size, chosen,
                                        overwrite=force, on_image=advance)
    except CafeError as e:
        fail(escape(str(e)))
    _report(out, datasets, total, time.perf_counter() - start)


def _report(out: Path, datasets: list[tuple[str, Path, str]], total: int, seconds: float) -> None:
    """What was written, and the commands that turn it into feature caches."""
    console.print(f"wrote {total} synthetic images in {seconds:.1f} s")
    for reader, root, name in datasets:
        domain = name.removeprefix("synth-")
        results.print(f"  {escape(str(root))}  ({reader} layout: {DOMAINS[domain].description})")
    results.print(f"  {escape(str(out / 'preview.png'))}  (one face per class and domain: have a look)")
    results.print("\nNext, cache the CLIP features of each domain:")
    for reader, root, name in datasets:
        command = f"cafe extract --dataset {reader} --root {escape(str(root))} --name {name} --random-weights"
        results.print("  " + command, soft_wrap=True)
    results.print("then train on one domain and evaluate on the others (see [bold]cafe train --help[/]).")
