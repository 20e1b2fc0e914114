"""``cafe zeroshot``: FER with no FER training at all, from the cached CLIP image features.

Two reference baselines on each target's test split (clean view): plain CLIP with the prompt
ensemble, and, given its released head (``--expclip FILE``), Exp-CLIP. The per-prompt text
features are cached under ``CACHE_DIR/text/`` per CLIP weights and prompt set, so only the
first call needs the CLIP text tower.
"""

from __future__ import annotations

from pathlib import Path

import typer

from cafe_cache.options import split_list

from .common import console, say
from .evaluate import print_results


def zeroshot(
    targets: str | None = typer.Option(None, help="Comma-separated cache names; default: every cache in --cache-dir."),
    cache_dir: Path = typer.Option(Path("cache"), help="Folder of the feature caches; text features go to DIR/text/."),
    expclip: Path | None = typer.Option(None, help="Exp-CLIP projection-head checkpoint (their *-model.pth): adds its "
                                                   "rows."),
    clip_weights: str | None = typer.Option(None, help="CLIP checkpoint file the caches were made from (with "
                                                       "--weights)."),
    out: Path = typer.Option(Path("results/zeroshot"), help="Folder for results.json and results.md."),
    device: str = typer.Option("auto", help="Where the CLIP text tower runs (first call only)."),
) -> None:
    """Zero-shot FER baselines (CLIP prompts, Exp-CLIP head) on the cached test features; no training."""
    from cafe_cache import zeroshot as zs  # torch, open_clip: only when running
    from cafe_cache.device import pick_device
    from cafe_cache.evaluate.targets import target_caches

    caches = target_caches(cache_dir, split_list(targets))
    if not caches:
        console.print(f"[yellow]no cached datasets in {cache_dir}; nothing to evaluate[/]")
        return
    tables = zs.zero_shot_tables(caches, text_dir=cache_dir / "text", expclip=expclip, clip_weights=clip_weights,
                                 device=pick_device(device), log=say)
    for t in tables:
        print_results(t.targets, None, t.title)
    zs.write_results(out, tables, expclip)
    console.print(f"written: {out}/results.json, results.md")
