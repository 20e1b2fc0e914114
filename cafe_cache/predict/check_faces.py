"""The faces ``cafe export --quantize int8`` checks int8 against fp32 on (and ``make bench`` reports).

Random tensors make a poor check: a model's logits on noise are near-uniform and sit far from any face,
so int8 rounding hardly ever moves the top class there, while on photos it does. The check uses face
crops instead: the test (then training) images of the run's source dataset when they are reachable, as
``cafe predict --no-detect`` reads them, topped up with generated cartoon faces of the 7 expressions
(:mod:`cafe_cache.synth`) when there are fewer than asked for or none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image

from ..datasets.base import ImageReadError, open_rgb
from ..errors import CafeError
from ..extract.integrity import checked_read
from ..extract.reader import FeatureCache
from ..run.folder import RunFolder
from .infer import face_tensor

SYNTH_DOMAINS = ("line", "color", "lowres")


@dataclass(frozen=True)
class CheckFaces:
    clip_image: torch.Tensor  # (N, 3, S, S), preprocessed as cafe predict does
    mask_image: torch.Tensor  # (N, 3, s, s)
    source: str  # what the faces are, for the report: "32 images of toyset (/data/toyset)"

    @property
    def inputs(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.clip_image, self.mask_image

    def __len__(self) -> int:
        return len(self.clip_image)


def check_faces(checkpoint: str | Path, clip_size: int, mask_size: int, n: int) -> CheckFaces:
    """``n`` face crops for the int8 check of the run ``checkpoint``: its source images where reachable,
    generated faces for the rest."""
    crops, source = run_faces(checkpoint, n)
    words = [source] if crops else []
    if len(crops) < n:
        words.append(f"{n - len(crops)} generated faces" + ("" if crops else " (the run's source images are not "
                                                                                "reachable)"))
        crops += generated_faces(n - len(crops))
    return CheckFaces(face_tensor(crops, clip_size), face_tensor(crops, mask_size), " + ".join(words))


def run_faces(checkpoint: str | Path, n: int) -> tuple[list[Image.Image], str]:
    """Up to ``n`` readable images of the run's source dataset (test split first), spread evenly over each
    split; ``([], "")`` when the cache or the images are gone."""
    folder, _ = RunFolder.of_checkpoint(checkpoint)
    try:
        config = folder.read_config()
        cache = FeatureCache(config.source_cache or "")
    except (CafeError, OSError):
        return [], ""
    root = Path(config.train.root or cache.root)
    crops: list[Image.Image] = []
    for split in sorted(cache.splits, key=lambda s: s != "test"):
        paths = readable_paths(cache, split)
        for i in np.linspace(0, len(paths) - 1, min(len(paths), n - len(crops))).round().astype(int):
            try:
                crops.append(open_rgb(root / paths[i]))
            except (ImageReadError, OSError):
                continue
        if len(crops) >= n:
            break
    return crops, (f"{len(crops)} images of {cache.dataset} ({root})" if crops else "")


def readable_paths(cache: FeatureCache, split: str) -> list[str]:
    """The image paths of ``split`` that extraction could read (no features loaded: a split may be large)."""
    try:
        with h5py.File(cache.path, "r") as f:
            g = f[f"splits/{split}"]
            errors = checked_read(cache.path, g["error"], text=True)
            return [p for p, e in zip(checked_read(cache.path, g["paths"], text=True), errors) if not e]
    except (CafeError, OSError, KeyError):
        return []


def generated_faces(n: int, size: int = 100) -> list[Image.Image]:
    """``n`` synthetic faces cycling through the 7 expressions and the 3 drawing styles (fixed seeds)."""
    from ..synth import render

    return [render(i % 7, SYNTH_DOMAINS[i % len(SYNTH_DOMAINS)], size=size,
                   rng=np.random.default_rng(i)).convert("RGB") for i in range(n)]
