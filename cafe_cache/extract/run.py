"""The extraction loop: images -> frozen CLIP -> cache rows, a batch at a time, resumable."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..datasets.base import ImageReadError, Reader, Sample
from .cache import CacheWriter
from .clip import LoadedClip
from .preprocess import load_uint8, make_view, mean_std, normalize

PRECISIONS = ("auto", "fp32", "fp16", "bf16")


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` is fp16 on CUDA (the official code keeps CLIP in fp16) and fp32 elsewhere."""
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    return precision


def autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


class ImageSource(Dataset):
    """Decoded, resized uint8 images of one split, read by DataLoader workers.

    An unreadable image yields ``None`` and the reason instead of raising, so one bad file never
    stops a run.
    """

    def __init__(self, reader: Reader, samples: list[Sample], size: int, preprocess: str):
        self.reader, self.samples, self.size, self.preprocess = reader, samples, size, preprocess

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, str]:
        try:
            return load_uint8(self.reader.open(self.samples[i].path), self.size, self.preprocess), ""
        except ImageReadError as e:
            return None, str(e)


def collate_images(items: list[tuple[torch.Tensor | None, str]]) -> tuple[torch.Tensor | None, list[bool], list[str]]:
    ok = [img is not None for img, _ in items]
    imgs = [img for img, _ in items if img is not None]
    return (torch.stack(imgs) if imgs else None), ok, [err for _, err in items]


@dataclass
class ExtractReport:
    images: int = 0  # images processed by this run (resumed rows not counted)
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (split, path, reason)
    seconds: float = 0.0
    resumed_from: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def extract(reader: Reader, splits: dict[str, list[Sample]], clip: LoadedClip, writer: CacheWriter, *,
            batch_size: int = 64, workers: int = 2, device: torch.device | str = "cpu", precision: str = "fp32",
            on_batch: Callable[[str, int], None] | None = None) -> ExtractReport:
    """Fill ``writer`` with CLIP features of every split, continuing where it stopped."""
    device = torch.device(device)
    fp = writer.fingerprint
    mean, std = mean_std(fp.preprocess, clip.mean, clip.std)
    out_dtype = np.float16 if fp.dtype == "float16" else np.float32
    report = ExtractReport()
    t0 = time.perf_counter()
    for split, samples in splits.items():
        start = writer.n_done(split)
        report.resumed_from[split] = start
        if start >= len(samples):
            continue
        loader = DataLoader(ImageSource(reader, samples[start:], fp.image_size, fp.preprocess),
                            batch_size=batch_size, shuffle=False, num_workers=workers,
                            collate_fn=collate_images, pin_memory=device.type == "cuda",
                            prefetch_factor=4 if workers else None)
        for images, ok, errors in loader:
            rows = np.zeros((len(ok), len(fp.views), clip.embed_dim), dtype=out_dtype)
            if images is not None:
                rows[np.asarray(ok)] = _features(clip, images.to(device, non_blocking=True), mean, std,
                                                 fp.views, precision).astype(out_dtype)
            writer.write(split, start, rows, errors)
            report.errors += [(split, samples[start + i].path, e) for i, e in enumerate(errors) if e]
            start += len(ok)
            report.images += len(ok)
            if on_batch:
                on_batch(split, len(ok))
    writer.finish()
    report.seconds = time.perf_counter() - t0
    return report


def _features(clip: LoadedClip, images: torch.Tensor, mean, std, views, precision: str) -> np.ndarray:
    """(B, V, D) features: all views of a batch go through CLIP in one forward pass."""
    x = normalize(images, mean, std)
    x = torch.cat([make_view(x, v) for v in views])
    with autocast(precision, x.device):
        f = clip.encode(x)
    return f.float().view(len(views), len(images), -1).transpose(0, 1).cpu().numpy()
