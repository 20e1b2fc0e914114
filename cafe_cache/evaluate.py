"""Accuracy, mean class accuracy (UAR), per-class accuracy and confusion of a model on cached datasets.

The paper's Table 1 "Mean" averages all five test sets INCLUDING the source; we report it as
``paper_mean`` and, beside it, ``unseen_mean`` over the targets never seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from .classes import CLASSES, NUM_CLASSES
from .errors import CafeError
from .extract.cache import FeatureCache, Fingerprint, find_caches
from .extract.clip import ClipSpec, LoadedClip, load_clip
from .extract.preprocess import IMAGENET_MEAN, IMAGENET_STD
from .train.data import PairedSamples, reader_for
from .train.model import CAFEModel


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int = NUM_CLASSES) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(np.asarray(y_true) * n + np.asarray(y_pred), minlength=n * n).reshape(n, n)


def metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Accuracy and UAR in percent; classes absent from y_true are left out of the UAR (None)."""
    cm = confusion_matrix(y_true, y_pred)
    support = cm.sum(1)
    per_class = [100.0 * cm[c, c] / support[c] if support[c] else None for c in range(NUM_CLASSES)]
    present = [a for a in per_class if a is not None]
    return {
        "n": int(support.sum()),
        "accuracy": 100.0 * np.trace(cm) / max(1, support.sum()),
        "uar": float(np.mean(present)) if present else 0.0,
        "per_class": dict(zip(CLASSES, per_class)),
        "confusion": cm.tolist(),
    }


def clip_for(fingerprint: Fingerprint, weights_file: str | None, device, *, images: bool = True,
             official_fp16: bool = False) -> LoadedClip:
    """The CLIP a cache was made with (for --online-clip, --bgr-targets, predict; ``images=False``: text only).

    ``official_fp16``: on CUDA keep CLIP's weights in fp16, as the official code does when it runs CLIP
    on every batch (:func:`online_features` casts the input and returns fp32 features).
    """
    if images and fingerprint.preprocess != "official":
        raise CafeError("online CLIP reproduces the official input only; this cache used --preprocess "
                        f"{fingerprint.preprocess}. Re-extract with --preprocess official.")
    if fingerprint.random_weights:
        spec = ClipSpec(model=fingerprint.model, random_weights=True, seed=fingerprint.seed,
                        activation=fingerprint.activation)
    elif fingerprint.weights.startswith("pretrained:"):
        spec = ClipSpec(model=fingerprint.model, pretrained=fingerprint.weights.split(":", 1)[1],
                        activation=fingerprint.activation)
    else:
        if not weights_file:
            raise CafeError(f"the cache was made from the CLIP file {fingerprint.weights[5:]}; pass it again "
                            "with --clip-weights FILE to run CLIP online.")
        spec = ClipSpec(model=fingerprint.model, weights=weights_file, activation=fingerprint.activation)
    clip = load_clip(spec, device)
    if official_fp16 and torch.device(device).type == "cuda":
        clip.model.half()  # the official code keeps CLIP's weights in fp16 on CUDA; features come back fp32
    if fingerprint.weights_sha256 and clip.info.sha256 != fingerprint.weights_sha256:
        raise CafeError(f"--clip-weights {weights_file} is not the file the cache was made with (sha256 differs).")
    return clip


def online_features(clip: LoadedClip, images: torch.Tensor) -> torch.Tensor:
    """CLIP on the same normalised tensor the mask branch sees (the official code's input)."""
    if images.shape[-1] != clip.image_size:
        images = F.interpolate(images, size=(clip.image_size,) * 2, mode="bilinear", antialias=True,
                               align_corners=False)
    return clip.encode(images.to(next(clip.model.parameters()).dtype)).float()


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


def summary(results: dict[str, dict[str, Any]], source: str | None) -> dict[str, float | None]:
    """paper_mean: all targets incl. the source (Table 1's Mean); unseen_mean: the others only."""
    accs = {k: v["accuracy"] for k, v in results.items()}
    unseen = [a for k, a in accs.items() if k != source]
    return {"paper_mean": float(np.mean(list(accs.values()))) if accs else None,
            "unseen_mean": float(np.mean(unseen)) if unseen else None,
            "source": accs.get(source) if source else None}


def markdown_table(results: dict[str, dict[str, Any]], source: str | None, title: str) -> str:
    """One row per target: accuracy, UAR and per-class accuracy; then the two means."""
    head = "| target | n | accuracy | UAR | " + " | ".join(CLASSES) + " |"
    lines = [f"### {title}", "", head, "|" + "---|" * (4 + len(CLASSES))]
    for name, m in results.items():
        cells = " | ".join("-" if a is None else f"{a:.1f}" for a in m["per_class"].values())
        tag = " (source)" if name == source else ""
        lines.append(f"| {name}{tag} | {m['n']} | {m['accuracy']:.2f} | {m['uar']:.2f} | {cells} |")
    lines += ["", *(f"- {part}" for part in means_line(results, source))]
    return "\n".join(lines) + "\n"


def means_line(results: dict[str, dict[str, Any]], source: str | None) -> list[str]:
    """The two means, named so nobody mixes them up; one plain mean when nothing was trained on a source."""
    s = summary(results, source)
    if s["paper_mean"] is None:
        return []
    if source is None:
        return [f"mean over the {len(results)} test sets: {s['paper_mean']:.2f}"]
    from .paper import DATASETS  # the paper's five test sets

    name = "paper Mean" if set(results) == set(DATASETS) else "Mean"  # the paper's label only for its own sets
    parts = [f"{name} (all {len(results)} test sets, source included): {s['paper_mean']:.2f}"]
    if s["unseen_mean"] is not None:
        parts.append(f"mean over unseen targets only: {s['unseen_mean']:.2f}")
    return parts


def jsonable(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: {kk: vv for kk, vv in v.items() if kk != "mean_masks"} for k, v in results.items()}
