"""``cafe eval``: a trained run on every cached target dataset (accuracy, UAR, per class, confusion)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from cafe_cache.options import EVAL_BATCH_SIZE, split_list
from cafe_cache.run.config import TrainConfig

from .common import bounded, console, out, progress, say

BGR_HELP = ("Targets evaluated with colour channels in BGR order, reproducing the official notebooks' bug "
            "(they did so for affectnet,sfew,mma). CLIP then runs online on the BGR images.")


def print_results(results: dict, source: str | None, title: str) -> None:
    """``results``: target -> :class:`~cafe_cache.results.TargetMetrics`."""
    from cafe_cache.metrics import means_line, target_label

    table = Table("target", "n", "accuracy", "UAR", title=title, title_justify="left")
    for name, m in results.items():
        table.add_row(escape(target_label(name, m, source)), f"{m.n:,}", f"{m.accuracy:.2f}", f"{m.uar:.2f}")
    out.print(table)
    out.print("   ".join(means_line(results, source)))
    for m in results.values():
        if m.left_out:
            out.print(f"[yellow]{escape(m.left_out)}[/]", soft_wrap=True)


def show_evaluation(evaluation) -> None:
    """The table of a :class:`~cafe_cache.evaluate.targets.RunEvaluation` and the files it wrote."""
    print_results(evaluation.result.targets, evaluation.result.source, evaluation.result.title)
    console.print(f"written: {', '.join(str(f) for f in evaluation.files)}", soft_wrap=True)


def evaluate(
    checkpoint: Path = typer.Option(..., "--checkpoint", "-c",
                                    help="Run folder (or RUN/best.safetensors, RUN/last.safetensors)."),
    targets: str | None = typer.Option(None, help="Comma-separated cache names; default: every cache in --cache-dir. "
                                       "Results of named targets go to results-A+B.{json,md}, beside the full "
                                       "results.{json,md}, which stay as they are."),
    cache_dir: Path = typer.Option(Path(TrainConfig.cache_dir), help="Folder of the feature caches."),
    which: str | None = typer.Option(None, help="last (the final epoch: the paper's numbers) or best (best on the "
                                     "source's own test set: test-set selection); default last, or the file named in "
                                     "--checkpoint."),
    bgr_targets: str | None = typer.Option(None, help=BGR_HELP),
    clip_weights: str | None = typer.Option(None, help="CLIP checkpoint file, needed with --bgr-targets when the "
                                            "caches came from a file."),
    batch_size: int = typer.Option(EVAL_BATCH_SIZE, callback=bounded()),
    workers: int | None = typer.Option(None, callback=bounded(),
                                       help="Image-reading worker processes. Default: 0 on the CPU, "
                                       "min(8, CPUs) on CUDA."),
    device: str = typer.Option(TrainConfig.device),
    json_out: bool = typer.Option(False, "--json", help="Also print the results as JSON on stdout."),
) -> None:
    """Evaluate a trained run on cached targets: RUN/eval-<which>/results.{json,md} (--targets A,B: results-A+B)."""
    from cafe_cache.evaluate.targets import evaluate_run  # torch: only when running
    from cafe_cache.results import targets_to_dict

    evaluation = evaluate_run(checkpoint, which, cache_dir=cache_dir, targets=split_list(targets),
                              bgr_targets=tuple(split_list(bgr_targets) or ()), clip_weights=clip_weights,
                              batch_size=batch_size, workers=workers, device=device, log=say, bars=progress)
    if evaluation:
        show_evaluation(evaluation)
    if json_out:
        print(json.dumps(targets_to_dict(evaluation.result.targets if evaluation else {}), indent=2))
