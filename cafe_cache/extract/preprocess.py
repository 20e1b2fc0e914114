"""From an image file to the tensors CLIP sees.

Work is split so the expensive part runs in DataLoader workers and the cheap part on the device:
``load_uint8`` (worker) decodes and resizes to a uint8 CHW tensor; ``normalize`` (device, whole
batch) scales and standardises; ``make_view`` flips.

Three preprocessings:
- ``official``: what the official CAFE code feeds CLIP: RGB, resize to (S, S) (bilinear, aspect
  ratio not kept), ImageNet mean/std. Default, for faithfulness, for every extractor.
- ``clip``: CLIP's own transform: resize the shorter side to S (bicubic), centre crop, CLIP mean/std.
- ``model``: the extractor's own transform (a timm model's ``pretrained_cfg``): the shorter side to
  floor(S / crop_pct) with its interpolation, centre crop S, its mean/std. For open_clip it is ``clip``.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from ..options import PREPROCESS, VIEWS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


INTERPOLATIONS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST,
                  "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}


def resize_uint8(image: Image.Image, size: int, mode: str, interpolation: str = "bicubic",
                 crop_pct: float = 1.0) -> np.ndarray:
    """HWC uint8 array of ``image`` resized as ``mode`` prescribes (``interpolation`` and ``crop_pct``: the
    extractor's own, used by ``model`` only; ``clip`` is always bicubic without margin, as it has been)."""
    if mode == "official":
        image = image.resize((size, size), Image.BILINEAR)
    elif mode in ("clip", "model"):
        short = size if mode == "clip" else int(size / crop_pct)  # timm: floor(size / crop_pct)
        resample = Image.BICUBIC if mode == "clip" else INTERPOLATIONS.get(interpolation, Image.BICUBIC)
        w, h = image.size
        scale = short / min(w, h)
        image = image.resize((max(short, round(w * scale)), max(short, round(h * scale))), resample)
        w, h = image.size
        left, top = (w - size) // 2, (h - size) // 2
        image = image.crop((left, top, left + size, top + size))
    else:
        raise ValueError(f"unknown preprocessing {mode!r}; choose from {PREPROCESS}")
    return np.array(image, dtype=np.uint8)  # a writable copy (torch refuses read-only arrays)


def load_uint8(image: Image.Image, size: int, mode: str, interpolation: str = "bicubic",
               crop_pct: float = 1.0) -> torch.Tensor:
    """CHW uint8 tensor (cheap to pin and send; normalised later on the device)."""
    return torch.from_numpy(resize_uint8(image, size, mode, interpolation, crop_pct)).permute(2, 0, 1).contiguous()


def mean_std(mode: str, clip_mean: tuple, clip_std: tuple) -> tuple[tuple, tuple]:
    return (IMAGENET_MEAN, IMAGENET_STD) if mode == "official" else (clip_mean, clip_std)


def normalize(batch: torch.Tensor, mean: tuple, std: tuple) -> torch.Tensor:
    """(B, 3, H, W) uint8 -> float32 standardised, on the batch's device."""
    m = torch.tensor(mean, device=batch.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=batch.device).view(1, 3, 1, 1)
    return (batch.float().div_(255) - m) / s


def make_view(batch: torch.Tensor, view: str) -> torch.Tensor:
    """A view of an already-resized batch: ``clean`` as is, ``hflip`` mirrored left-right."""
    if view == "clean":
        return batch
    if view == "hflip":
        return torch.flip(batch, dims=[-1])
    raise ValueError(f"unknown view {view!r}; choose from {VIEWS}")
