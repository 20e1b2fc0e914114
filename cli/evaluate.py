"""``cafe eval``: a trained run on every cached target dataset (accuracy, UAR, per class, confusion)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.table import Table

from .common import console, out, progress, rate_text, split_list

BGR_HELP = ("Targets evaluated with colour channels in BGR order, reproducing the official notebooks' bug "
            "(they did so for affectnet,sfew,mma). CLIP then runs online on the BGR images.")


def evaluate_run(run: Path, which: str, *, cache_dir: Path, targets: list[str] | None = None,
                 bgr_targets: tuple[str, ...] = (), clip_weights: str | None = None, batch_size: int = 128,
                 workers: int | None = None, device: str = "auto", roots: dict[str, str] | None = None) -> dict:
    """Evaluate ``run``'s ``which`` weights, print the table and write eval-<which>/ in the run folder."""
    import numpy as np

    from cafe_cache.device import default_workers, pick_device
    from cafe_cache.extract.cache import Fingerprint
    from cafe_cache.metrics import jsonable, markdown_table, summary
    from cafe_cache.train.checkpoint import load_model, write_json
    from cafe_cache.train.evaluate import check_same_weights, evaluate_caches, target_caches

    model, config = load_model(run, which)
    trained_on = Fingerprint.from_json(config["clip"]["fingerprint"])
    caches = target_caches(cache_dir, targets)
    if not caches:
        console.print(f"[yellow]no cached datasets in {cache_dir}; nothing to evaluate[/]")
        return {}
    check_same_weights(trained_on, caches)
    source = config["train"]["source"]
    image_size = config["train"]["image_size"]
    dev = pick_device(device)
    workers = default_workers(dev) if workers is None else workers
    with progress() as bar:
        state: dict = {}

        def on_start(name: str, n: int) -> None:
            state.update(task=bar.add_task(f"eval {name}", total=n, rate=""), t0=time.perf_counter())

        def on_batch(n: int) -> None:
            bar.advance(state["task"], n)
            bar.update(state["task"], rate=rate_text(bar.tasks[state["task"]].completed, time.perf_counter() - state["t0"]))

        results = evaluate_caches(model, caches, image_size=image_size, roots=roots, bgr_targets=bgr_targets,
                                  clip_weights=clip_weights, batch_size=batch_size, workers=workers, device=dev,
                                  on_start=on_start, on_batch=on_batch)
    random = config["clip"]["random_weights"] or config["backbone_init"]["random_init"]
    title = f"{source} -> targets ({which} weights, CLIP {config['clip']['label']})"
    if config["clip"]["random_weights"]:
        title = "RANDOM CLIP WEIGHTS, not a real result: " + title
    folder = run / f"eval-{which}"
    folder.mkdir(exist_ok=True)
    write_json(folder / "results.json", {"title": title, "source": source, "which": which, "random_weights": random,
                                         "clip": config["clip"]["label"], "targets": jsonable(results),
                                         "summary": summary(results, source)})
    (folder / "results.md").write_text(markdown_table(results, source, title))
    masks = {k: v["mean_masks"] for k, v in results.items() if v["mean_masks"] is not None}
    if masks:
        np.savez(folder / "mean_masks.npz", **masks)
    print_results(results, source, title)
    console.print(f"written: {folder}/results.json, results.md")
    return results


def print_results(results: dict, source: str | None, title: str) -> None:
    from cafe_cache.metrics import means_line

    table = Table("target", "n", "accuracy", "UAR", title=title, title_justify="left")
    for name, m in results.items():
        table.add_row(name + (" (source)" if name == source else "") + (" [BGR]" if m.get("bgr") else ""),
                      f"{m['n']:,}", f"{m['accuracy']:.2f}", f"{m['uar']:.2f}")
    out.print(table)
    out.print("   ".join(means_line(results, source)))


def evaluate(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c", help="Run folder (or RUN/best.safetensors, RUN/last.safetensors)."),
    targets: str | None = typer.Option(None, help="Comma-separated cache names; default: every cache in --cache-dir."),
    cache_dir: Path = typer.Option(Path("cache"), help="Folder of the feature caches."),
    which: str | None = typer.Option(None, help="last (the final epoch: the paper's numbers) or best (best on the source's own test set: test-set selection); default last, or the file named in --checkpoint."),
    bgr_targets: str | None = typer.Option(None, help=BGR_HELP),
    clip_weights: str | None = typer.Option(None, help="CLIP checkpoint file, needed with --bgr-targets when the caches came from a file."),
    batch_size: int = typer.Option(128, min=1),
    workers: int | None = typer.Option(None, min=0, help="Image-reading worker processes. Default: 0 on the CPU, min(8, CPUs) on CUDA."),
    device: str = typer.Option("auto"),
    json_out: bool = typer.Option(False, "--json", help="Also print the results as JSON on stdout."),
) -> None:
    """Evaluate a trained run on cached target datasets; writes RUN/eval-<which>/results.{json,md}."""
    from cafe_cache.metrics import jsonable
    from cafe_cache.train.checkpoint import resolve_run

    run, default = resolve_run(checkpoint)
    results = evaluate_run(run, which or default, cache_dir=cache_dir, targets=split_list(targets),
                           bgr_targets=tuple(split_list(bgr_targets) or ()), clip_weights=clip_weights,
                           batch_size=batch_size, workers=workers, device=device)
    if json_out:
        print(json.dumps(jsonable(results), indent=2))
