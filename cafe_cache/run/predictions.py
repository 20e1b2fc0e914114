"""A model's predictions on one split of a cache: what the training loop scores on the source's test set
each epoch and what evaluation turns into metrics (so the loop needs nothing from evaluation)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..classes import NUM_CLASSES
from ..extract.extractor import FeatureExtractor
from ..extract.online import online_features
from ..model.cafe import CAFEModel
from ..options import EVAL_BATCH_SIZE
from .data import PairedSamples


@dataclass
class SplitPrediction:
    y_true: np.ndarray
    y_pred: np.ndarray
    mean_masks: np.ndarray | None  # (classes, D): mean sigmoid mask of the images of each true class


@torch.no_grad()
def predict_split(model: CAFEModel, dataset: PairedSamples, *, batch_size: int = EVAL_BATCH_SIZE, workers: int = 2,
                  device="cpu", clip: FeatureExtractor | None = None,
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
        ps.append(out.logits.argmax(1).cpu().numpy())
        if out.mask is not None:
            m = out.mask.float().cpu().numpy()
            mask_sum = np.zeros((NUM_CLASSES, m.shape[1])) if mask_sum is None else mask_sum
            np.add.at(mask_sum, labels.numpy(), m)
            np.add.at(counts, labels.numpy(), 1)
        if on_batch:
            on_batch(len(labels))
    mean_masks = mask_sum / np.maximum(counts, 1)[:, None] if mask_sum is not None else None
    return SplitPrediction(np.concatenate(ys), np.concatenate(ps), mean_masks)
