"""A trained model on cached datasets: predictions per split and metrics per target (:mod:`cafe_cache.metrics`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..classes import NUM_CLASSES
from ..errors import CafeError
from ..extract.cache import FeatureCache, Fingerprint, find_caches
from ..extract.clip import LoadedClip
from ..extract.online import clip_for, online_features
from ..metrics import metrics
from ..model.cafe import CAFEModel
from .data import PairedSamples, reader_for


@dataclass
class SplitPrediction:
    y_true: np.ndarray
    y_pred: np.ndarray
    mean_masks: np.ndarray | None  # (classes, D): mean sigmoid mask of the images of each true class
    extra: dict[str, Any] = field(default_factory=dict)


@torch.no_grad()
def predict_split(model: CAFEModel, dataset: PairedSamples, *, batch_size: int = 128, workers: int = 2,
                  device="cpu", clip: LoadedClip | None = None,
                  on_batch: Callable[[int], None] | None = None) -> SplitPrediction:
    """Predictions on one split; images are read once, in batches, by ``workers`` processes."""
    model.eval().to(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
    ys, ps, mask_sum, counts = [], [], None, np.zeros(NUM_CLASSES)
    for images, feats, labels in loader:
        images = images.to(device, non_blocking=True)
        feats = online_features(clip, images) if clip else feats.to(device)
        out = model(images, feats)
        ys.append(labels.numpy())
        ps.append(out["logits"].argmax(1).cpu().numpy())
        if out["mask"] is not None:
            m = out["mask"].float().cpu().numpy()
            mask_sum = np.zeros((NUM_CLASSES, m.shape[1])) if mask_sum is None else mask_sum
            np.add.at(mask_sum, labels.numpy(), m)
            np.add.at(counts, labels.numpy(), 1)
        if on_batch:
            on_batch(len(labels))
    mean_masks = mask_sum / np.maximum(counts, 1)[:, None] if mask_sum is not None else None
    return SplitPrediction(np.concatenate(ys), np.concatenate(ps), mean_masks)


def target_caches(cache_dir: str | Path, targets: list[str] | None) -> dict[str, FeatureCache]:
    """The named caches (default: every cache in the folder), each checked to be complete."""
    if targets:
        caches = {}
        for t in targets:
            p = Path(cache_dir) / f"{t}.h5"
            if not p.is_file():
                have = ", ".join(c.stem for c in find_caches(cache_dir)) or "none"
                raise CafeError(f"no cache for target {t!r} in {cache_dir} (have: {have}); run `cafe extract` for it.")
            caches[t] = FeatureCache(p)
    else:
        caches = {p.stem: FeatureCache(p) for p in find_caches(cache_dir)}
    for c in caches.values():
        c.require_complete()
    return caches


def check_same_weights(expected: Fingerprint, caches: dict[str, FeatureCache]) -> None:
    """Numbers are only comparable when every cache comes from the CLIP weights the model was trained on."""
    for name, c in caches.items():
        if not c.fingerprint.same_weights(expected):
            raise CafeError(f"cache {c.path} was made with CLIP {c.fingerprint.weights_label}, the model was trained "
                            f"on {expected.weights_label}; re-extract {name} with the same weights or use another "
                            "--cache-dir.")
        if c.fingerprint.preprocess != expected.preprocess:
            raise CafeError(f"cache {c.path} used --preprocess {c.fingerprint.preprocess}, the model's training cache "
                            f"{expected.preprocess}; re-extract it to compare like with like.")


def evaluate_caches(model: CAFEModel, caches: dict[str, FeatureCache], *, image_size: int, roots: dict[str, str] | None = None,
                    bgr_targets: tuple[str, ...] = (), clip_weights: str | None = None, batch_size: int = 128,
                    workers: int = 2, device="cpu", split: str = "test",
                    on_start: Callable[[str, int], None] | None = None,
                    on_batch: Callable[[int], None] | None = None) -> dict[str, dict[str, Any]]:
    """metrics() per target; ``mean_masks`` is added for figures. BGR targets run CLIP online on BGR input."""
    results = {}
    for name, cache in caches.items():
        data = cache.load(split)
        bgr = name in bgr_targets or cache.dataset in bgr_targets
        ds = PairedSamples(data, reader_for(cache, (roots or {}).get(name)), cache.fingerprint.views, image_size, bgr=bgr)
        clip = clip_for(cache.fingerprint, clip_weights, device, official_fp16=True) if bgr else None
        if on_start:
            on_start(name, len(ds))
        pred = predict_split(model, ds, batch_size=batch_size, workers=workers, device=device, clip=clip,
                             on_batch=on_batch)
        results[name] = metrics(pred.y_true, pred.y_pred) | {"bgr": bgr, "mean_masks": pred.mean_masks}
    return results


