"""``cafe zeroshot``: FER with no FER training at all, from the cached CLIP image features.

Two reference baselines on each target's test split (clean view): plain CLIP with the prompt
ensemble, and, given its released head (``--expclip FILE``), Exp-CLIP. The per-prompt text
features are cached under ``CACHE_DIR/text/`` per CLIP weights and prompt set, so only the
first call needs the CLIP text tower.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import typer
from torch import nn

from cafe_cache import zeroshot as zs
from cafe_cache.errors import CafeError
from cafe_cache.evaluate import clip_for, markdown_table, metrics, summary, target_caches
from cafe_cache.extract.cache import FeatureCache, Fingerprint
from cafe_cache.extract.run import pick_device
from cafe_cache.paper import ZERO_SHOT
from cafe_cache.train.checkpoint import write_json

from .common import console, split_list
from .evaluate import print_results

# Only the argmax is reported, which no positive scale changes; 100 is the OpenAI CLIP value.
LOGIT_SCALE = 100.0

APPROXIMATION_NOTE = (
    "Zero-shot scores here use the cached image features (preprocess as recorded per table), not each "
    "method's own input pipeline: Exp-CLIP's test code feeds CLIP images scaled to [0, 1] without "
    "mean/std normalisation, and its FERPlus numbers are 8-class (ours 7), so our Exp-CLIP rows only "
    "approximate theirs.")


def text_model_id(fp: Fingerprint) -> str:
    """The CLIP weights a cache came from, as a text-cache key (a file's sha256 names the file)."""
    if fp.random_weights:
        return f"{fp.model}/random-seed{fp.seed}"
    if fp.weights_sha256:
        return f"{fp.model}/{fp.weights}-{fp.weights_sha256[:16]}"
    return f"{fp.model}/{fp.weights}"


def _text_model(fp: Fingerprint, clip_weights: str | None, device: torch.device) -> tuple[nn.Module, Any]:
    """The full CLIP of a cache and its tokenizer (only on a text-cache miss)."""
    console.print(f"encoding the prompts with CLIP {fp.weights_label} (once; cached afterwards)")
    clip = clip_for(fp, clip_weights, device, images=False)  # the text tower ignores image preprocessing
    return clip.model, open_clip.get_tokenizer(fp.model)


def clean_test_features(cache: FeatureCache) -> tuple[torch.Tensor, np.ndarray]:
    """(features (n, D), labels) of the clean view of a cache's test split."""
    if "clean" not in cache.fingerprint.views:
        raise CafeError(f"{cache.path} has no clean view (views: {', '.join(cache.fingerprint.views)}); "
                        "re-extract it with --views clean,hflip.")
    data = cache.load("test", views=["clean"])
    return torch.from_numpy(data.features[:, 0]), data.labels


def _group_by_clip(caches: dict[str, FeatureCache]) -> dict[str, dict[str, FeatureCache]]:
    """Caches made with the same CLIP weights share their text features and one table."""
    groups: dict[str, dict[str, FeatureCache]] = {}
    for name, cache in caches.items():
        groups.setdefault(text_model_id(cache.fingerprint), {})[name] = cache
    return groups


def _table(method: str, fp: Fingerprint, results: dict[str, dict[str, Any]],
           datasets: dict[str, str], note: str = "") -> dict[str, Any]:
    """One method on one CLIP's caches, with its title and the published ViT-B/32 numbers."""
    title = f"Zero-shot {method} ({len(zs.PROMPT_TEMPLATES)} prompt templates{note}), CLIP {fp.weights_label}"
    if fp.random_weights:
        title = "RANDOM CLIP WEIGHTS, not a real result: " + title
    published = {} if fp.random_weights else {
        name: ZERO_SHOT[method][ds] for name, ds in datasets.items() if ds in ZERO_SHOT[method]}
    return {"method": method, "title": title, "clip": fp.weights_label, "random_weights": fp.random_weights,
            "preprocess": fp.preprocess, "targets": results, "summary": summary(results, None),
            "published": published}


def zero_shot_tables(caches: dict[str, FeatureCache], *, text_dir: Path, expclip: Path | None,
                     clip_weights: str | None, device: torch.device) -> list[dict[str, Any]]:
    """Metrics of CLIP (and Exp-CLIP) per target, one table per method and CLIP weights."""
    tables = []
    for model_id, group in _group_by_clip(caches).items():
        fp = next(iter(group.values())).fingerprint
        prompts = zs.text_embeddings_cached(model_id, lambda: _text_model(fp, clip_weights, device),
                                            text_dir, device=device)
        data = {name: clean_test_features(cache) for name, cache in group.items()}
        datasets = {name: cache.dataset for name, cache in group.items()}
        classes = zs.ensemble_embeddings(prompts)
        clip_rows = {name: metrics(y, zs.zero_shot_logits(x, classes, LOGIT_SCALE).argmax(1).numpy())
                     for name, (x, y) in data.items()}
        tables.append(_table("CLIP", fp, clip_rows, datasets))
        if expclip:
            head = zs.load_expclip_head(expclip, prompts.shape[-1])
            with torch.no_grad():
                rows = {name: metrics(y, head.logits(x, prompts, LOGIT_SCALE).argmax(1).numpy())
                        for name, (x, y) in data.items()}
            tables.append(_table("Exp-CLIP", fp, rows, datasets, f", head {expclip.name}"))
    return tables


def _markdown(tables: list[dict[str, Any]]) -> str:
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
    expclip: Path | None = typer.Option(None, help="Exp-CLIP projection-head checkpoint (their *-model.pth): adds its rows."),
    clip_weights: str | None = typer.Option(None, help="CLIP checkpoint file the caches were made from (with --weights)."),
    out: Path = typer.Option(Path("results/zeroshot"), help="Folder for results.json and results.md."),
    device: str = typer.Option("auto", help="Where the CLIP text tower runs (first call only)."),
) -> None:
    """Zero-shot FER baselines (CLIP prompts, Exp-CLIP head) on the cached test features; no training."""
    caches = target_caches(cache_dir, split_list(targets))
    if not caches:
        console.print(f"[yellow]no cached datasets in {cache_dir}; nothing to evaluate[/]")
        return
    tables = zero_shot_tables(caches, text_dir=cache_dir / "text", expclip=expclip, clip_weights=clip_weights,
                              device=pick_device(device))
    for t in tables:
        print_results(t["targets"], None, t["title"])
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", {
        "templates": list(zs.PROMPT_TEMPLATES), "class_words": list(zs.CLASS_PROMPT_NAMES),
        "expclip": str(expclip) if expclip else None, "note": APPROXIMATION_NOTE,
        "tables": tables})
    (out / "results.md").write_text(_markdown(tables))
    console.print(f"written: {out}/results.json, results.md")
