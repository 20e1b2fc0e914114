"""The extraction loop: images -> the frozen extractor (CLIP, a timm model) -> cache rows, a batch at a time,
resumable."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..datasets.base import ImageReadError, Reader, Sample
from ..device import autocast
from .extractor import FeatureExtractor
from .fingerprint import Fingerprint
from .preprocess import load_uint8, make_view, mean_std, normalize, resize_uint8
from .writer import CacheWriter


class ImageSource(Dataset):
    """Decoded, resized uint8 images of one split, read by DataLoader workers.

    Each item is the CLIP input (CHW), the image to store (HWC, resized to ``store_size`` as the
    mask branch's input is; None when ``store_size`` is 0) and "" or why the image is unreadable:
    an unreadable image yields ``None`` and the reason instead of raising, so one bad file never
    stops a run.
    """

    def __init__(self, reader: Reader, samples: list[Sample], size: int, preprocess: str, store_size: int = 0,
                 interpolation: str = "bicubic", crop_pct: float = 1.0):
        self.reader, self.samples, self.size, self.preprocess, self.store_size = \
            reader, samples, size, preprocess, store_size
        self.interpolation, self.crop_pct = interpolation, crop_pct  # the extractor's own (``model``)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[torch.Tensor | None, torch.Tensor | None, str]:
        try:
            image = self.reader.open(self.samples[i].path)
        except ImageReadError as e:
            return None, None, str(e)
        clip_input = load_uint8(image, self.size, self.preprocess, self.interpolation, self.crop_pct)
        if not self.store_size:
            return clip_input, None, ""
        if (self.store_size, self.preprocess) == (self.size, "official"):  # the same resize: reuse it
            return clip_input, clip_input.permute(1, 2, 0), ""
        return clip_input, torch.from_numpy(resize_uint8(image, self.store_size, "official")), ""


def collate_images(items: list[tuple[torch.Tensor | None, torch.Tensor | None, str]]
                   ) -> tuple[torch.Tensor | None, torch.Tensor | None, list[bool], list[str]]:
    """(CLIP inputs, stored images, readable or not, errors); the tensors hold the readable images only."""
    ok = [img is not None for img, _, _ in items]
    imgs = [img for img, _, _ in items if img is not None]
    stored = [s for _, s, _ in items if s is not None]
    return (torch.stack(imgs) if imgs else None), (torch.stack(stored) if stored else None), ok, \
        [err for _, _, err in items]


@dataclass
class ExtractReport:
    images: int = 0  # images processed by this run (resumed rows not counted)
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (split, path, reason)
    seconds: float = 0.0
    resumed_from: dict[str, int] = field(default_factory=dict)
    ranks: int = 1  # processes that shared the work (torchrun)

    @property
    def rate(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Extraction:
    """One extraction made concrete (:func:`.job.extract_dataset` builds it from an ``ExtractJob``): the
    dataset's splits, CLIP and the fingerprint of its features, the cache file, and how to compute.
    :mod:`.shards` takes it whole."""

    reader: Reader
    splits: dict[str, list[Sample]]
    skipped: list[tuple[str, str]]  # entries the reader dropped, recorded in the cache
    clip: FeatureExtractor
    fingerprint: Fingerprint
    path: Path  # the cache file
    cache_name: str
    subset: dict[str, Any] = field(default_factory=dict)  # {} or the --splits/--limit record
    store_images: int = 0
    force: bool = False
    batch_size: int = 64
    workers: int = 0
    device: torch.device | str = "cpu"
    precision: str = "fp32"

    def writer(self) -> CacheWriter:
        """The cache's writer (created, resumed, or replaced with ``force``)."""
        return CacheWriter.for_dataset(self.path, self.fingerprint, self.reader, self.splits, self.clip.embed_dim,
                                       skipped=self.skipped, cache_name=self.cache_name, force=self.force,
                                       store_images=self.store_images, subset=self.subset)

    def shard_writer(self, path: Path, splits: dict[str, list[Sample]]) -> CacheWriter:
        """The writer of a shard file of these ``splits``' rows: a cache of the same dataset and fingerprint."""
        return CacheWriter.for_dataset(path, self.fingerprint, self.reader, splits, self.clip.embed_dim,
                                       cache_name=self.cache_name, store_images=self.store_images)

    def run(self, writer: CacheWriter, splits: dict[str, list[Sample]] | None = None,
            on_batch: Callable[[str, int], None] | None = None) -> ExtractReport:
        """Fill ``writer`` with ``splits`` (default: all of them); see :func:`extract`."""
        return extract(self.reader, self.splits if splits is None else splits, self.clip, writer,
                       batch_size=self.batch_size, workers=self.workers, device=self.device, precision=self.precision,
                       on_batch=on_batch)


def extract(reader: Reader, splits: dict[str, list[Sample]], clip: FeatureExtractor, writer: CacheWriter, *,
            batch_size: int = 64, workers: int = 2, device: torch.device | str = "cpu", precision: str = "fp32",
            on_batch: Callable[[str, int], None] | None = None) -> ExtractReport:
    """Fill ``writer`` with CLIP features (and stored images, if it keeps them) of every split,
    continuing where it stopped."""
    device = torch.device(device)
    fp = writer.fingerprint
    store = writer.store_images
    mean, std = mean_std(fp.preprocess, clip.mean, clip.std)
    out_dtype = np.float16 if fp.dtype == "float16" else np.float32
    report = ExtractReport()
    t0 = time.perf_counter()
    for split, samples in splits.items():
        start = writer.n_done(split)
        report.resumed_from[split] = start
        if start >= len(samples):
            continue
        source = ImageSource(reader, samples[start:], fp.image_size, fp.preprocess, store, clip.interpolation,
                             clip.crop_pct)
        loader = DataLoader(source,
                            batch_size=batch_size, shuffle=False, num_workers=workers,
                            collate_fn=collate_images, pin_memory=device.type == "cuda",
                            prefetch_factor=4 if workers else None)
        for images, stored, ok, errors in loader:
            rows = np.zeros((len(ok), len(fp.views), clip.embed_dim), dtype=out_dtype)
            pixels = np.zeros((len(ok), store, store, 3), dtype=np.uint8) if store else None
            if images is not None:
                rows[np.asarray(ok)] = batch_features(clip, images.to(device, non_blocking=True), mean, std,
                                                      fp.views, precision).astype(out_dtype)
                if store:
                    pixels[np.asarray(ok)] = stored.numpy()
            writer.write(split, start, rows, errors, pixels)
            report.errors += [(split, samples[start + i].path, e) for i, e in enumerate(errors) if e]
            start += len(ok)
            report.images += len(ok)
            if on_batch:
                on_batch(split, len(ok))
    writer.finish()
    report.seconds = time.perf_counter() - t0
    return report


def batch_features(clip: FeatureExtractor, images: torch.Tensor, mean, std, views, precision: str) -> np.ndarray:
    """(B, V, D) features: all views of a batch go through CLIP in one forward pass."""
    x = normalize(images, mean, std)
    x = torch.cat([make_view(x, v) for v in views])
    with autocast(precision, x.device):
        f = clip.encode(x)
    return f.float().view(len(views), len(images), -1).transpose(0, 1).cpu().numpy()
