"""``cafe plot``: the figures of a finished run, or of a folder of runs with their cross-domain matrix."""

from __future__ import annotations

from pathlib import Path

import typer

from cafe_cache.messages import warning
from cafe_cache.options import DEFAULT_WHICH, GRADCAM_IMAGES

from .common import bounded, console, say


def plot(
    path: Path = typer.Argument(..., help="A run folder, or a folder of run folders (adds the cross-domain matrix)."),
    which: str = typer.Option(DEFAULT_WHICH, help="Which evaluation to plot: last (final epoch, the paper's) or "
                              "best (RUN/eval-<which>/)."),
    cache_dir: Path | None = typer.Option(None, help="Feature caches for Grad-CAM; default: the run's own "
                                          "--cache-dir."),
    gradcam: int = typer.Option(GRADCAM_IMAGES, callback=bounded(), help="Grad-CAM images per target (0: none)."),
    device: str = typer.Option("auto", help="Where the model runs for Grad-CAM."),
) -> None:
    """Training curves, class masks (Fig. 5), confusion matrices and Grad-CAM (Fig. 4) into RUN/figures/."""
    from cafe_cache.metrics import plural
    from cafe_cache.report import make_figures  # torch, matplotlib: only when running
    from cafe_cache.run.folder import RunFolder, find_runs

    def done(run: Path, written: list[Path]) -> None:
        console.print(f"{run}: {plural(len(written), 'figure')} in {RunFolder(run).figures}")

    matrix = make_figures(path, which=which, cache_dir=cache_dir, n_gradcam=gradcam, device=device,
                          log=lambda m: say(warning(m)), on_run=done)
    if matrix is not None:
        console.print(f"cross-domain matrix of {len(find_runs(path))} runs: {matrix}")
