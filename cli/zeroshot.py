"""``cafe zeroshot``: FER with no FER training at all, from the cached CLIP image features.

Two reference baselines on each target's test split (clean view): plain CLIP with the prompt
ensemble, and, given its released head (``--expclip FILE``), Exp-CLIP. The per-prompt text
features are cached under ``CACHE_DIR/text/`` per CLIP weights and prompt set, so only the
first call needs the CLIP text tower.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from .common import console, split_list
from .evaluate import print_results


def _markdown(tables: list[dict[str, Any]]) -> str:
    from cafe_cache.metrics import markdown_table
    from cafe_cache.zeroshot import APPROXIMATION_NOTE
    parts = []
    for t in tables:
        text = markdown_table(t["targets"], None, t["title"])
        text += f"- CLIP input: cached features, --preprocess {t['preprocess']}\n"
        for name, p in t["published"].items():
            text += (f"- published ViT-B/32 {t['method']} zero-shot for {name}: UAR {p['uar']:.2f}, "
                     f"accuracy (WAR) {p['war']:.2f}\n")
        parts.append(text)
    return "\n".join(parts) + f"\n{APPROXIMATION_NOTE}\n"


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
    from cafe_cache.train.checkpoint import write_json
    from cafe_cache.train.evaluate import target_caches

    caches = target_caches(cache_dir, split_list(targets))
    if not caches:
        console.print(f"[yellow]no cached datasets in {cache_dir}; nothing to evaluate[/]")
        return
    tables = zs.zero_shot_tables(caches, text_dir=cache_dir / "text", expclip=expclip, clip_weights=clip_weights,
                                 device=pick_device(device), log=console.print)
    for t in tables:
        print_results(t["targets"], None, t["title"])
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", {
        "templates": list(zs.PROMPT_TEMPLATES), "class_words": list(zs.CLASS_PROMPT_NAMES),
        "expclip": str(expclip) if expclip else None, "note": zs.APPROXIMATION_NOTE,
        "tables": tables})
    (out / "results.md").write_text(_markdown(tables))
    console.print(f"written: {out}/results.json, results.md")
