"""What the benchmark times: library calls, each returning how many images it handled per second.

The end-to-end measures call the library's own loops (``extract``, ``train``, ``evaluate_caches``);
the model-only measures run the same model code on tensors made beforehand, which is the ceiling
the loops approach when loading costs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from cafe_cache.datasets import build_reader
from cafe_cache.device import autocast
from cafe_cache.evaluate.targets import evaluate_caches
from cafe_cache.extract.clip import LoadedClip
from cafe_cache.extract.fingerprint import Fingerprint
from cafe_cache.extract.loop import ExtractReport, ImageSource, batch_features, collate_images, extract
from cafe_cache.extract.online import online_features
from cafe_cache.extract.paths import cache_path
from cafe_cache.extract.preprocess import mean_std
from cafe_cache.extract.reader import FeatureCache
from cafe_cache.extract.writer import CacheWriter
from cafe_cache.model.cafe import CAFEModel
from cafe_cache.model.losses import total_loss
from cafe_cache.run.config import TrainConfig
from cafe_cache.run.data import Augment, PairedSamples, reader_for
from cafe_cache.train.loop import train

VIEWS = ("clean", "hflip")  # cafe extract's default views
PREPROCESS = "official"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def fingerprint(clip: LoadedClip, precision: str) -> Fingerprint:
    """What ``cafe extract --random-weights`` records with its default options."""
    return Fingerprint.for_clip(clip, preprocess=PREPROCESS, views=VIEWS, dtype="float16", precision=precision)


def extract_cache(root: Path, cache_dir: Path, clip: LoadedClip, *, device: torch.device, precision: str,
                  batch_size: int, workers: int, store_images: int = 0) -> ExtractReport:
    """``cafe extract --dataset folder --root ROOT --force`` through the library: a fresh cache."""
    reader = build_reader("folder", root)
    found = reader.read()
    splits = {s: found.split(s) for s in found.splits()}
    with CacheWriter.for_dataset(cache_path(cache_dir, reader.cache_name), fingerprint(clip, precision), reader,
                                 splits, clip.embed_dim, skipped=found.skipped, force=True,
                                 store_images=store_images) as w:
        return extract(reader, splits, clip, w, batch_size=batch_size, workers=workers, device=device,
                       precision=precision)


def loading_pass(root: Path, image_size: int, *, batch_size: int, workers: int) -> tuple[float, list[torch.Tensor]]:
    """Extraction's loading alone (decode + resize in ``workers`` processes, no model): images/s and
    the uint8 batches it made."""
    reader = build_reader("folder", root)
    samples = reader.read().samples
    loader = DataLoader(ImageSource(reader, samples, image_size, PREPROCESS), batch_size=batch_size,
                        num_workers=workers, collate_fn=collate_images, prefetch_factor=4 if workers else None)
    t0 = time.perf_counter()
    batches = [images for images, _, _, _ in loader]
    return len(samples) / (time.perf_counter() - t0), batches


def model_pass(clip: LoadedClip, batches: list[torch.Tensor], *, precision: str) -> float:
    """Extraction's model work alone: every view of every batch (already on the device) through CLIP."""
    mean, std = mean_std(PREPROCESS, clip.mean, clip.std)
    t0 = time.perf_counter()
    for images in batches:
        batch_features(clip, images, mean, std, VIEWS, precision)  # ends with .cpu(): synchronised
    return sum(len(b) for b in batches) / (time.perf_counter() - t0)


@contextmanager
def channels_last(module: torch.nn.Module) -> Iterator[None]:
    module.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        module.to(memory_format=torch.contiguous_format)


@contextmanager
def threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_config(cache_dir: Path, source: str, *, image_size: int, batch_size: int, workers: int, device: str,
                 online: bool, limit: int | None = None, precision: str = "fp32") -> TrainConfig:
    """One epoch at the paper's settings (ResNet-18, Adam, full augmentation), random backbone init."""
    return TrainConfig(source=source, cache_dir=str(cache_dir), backbone="resnet18", backbone_weights="none",
                       epochs=1, batch_size=batch_size, image_size=image_size, augment=Augment(),
                       online_clip=online, limit=limit, workers=workers, device=device, precision=precision)


def sample_pass(cache_dir: Path, source: str, image_size: int) -> float:
    """Stage two's loading alone, in one process: every augmented training sample of the cache."""
    cache = FeatureCache(cache_path(cache_dir, source))
    samples = PairedSamples(cache.load("train"), reader_for(cache), cache.fingerprint.views, image_size, Augment())
    t0 = time.perf_counter()
    for i in range(len(samples)):
        samples[i]
    return len(samples) / (time.perf_counter() - t0)


def train_epoch(cfg: TrainConfig, run: Path) -> float:
    """Images/s of one ``cafe train`` epoch (``train`` times the epoch without its evaluation)."""
    history = train(cfg, run, log=lambda *_: None)
    return history[-1].images_per_s


def train_step(model: CAFEModel, images: torch.Tensor, feats: torch.Tensor, labels: torch.Tensor, *,
               precision: str, clip: LoadedClip | None = None) -> float:
    """Images/s of one stage-two step on tensors already on the device (no loading): the mask branch
    forward and backward under ``precision`` autocast, with CLIP (fp32) first when ``clip`` is given."""
    device = images.device
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4, weight_decay=1e-4)
    sync(device)
    t0 = time.perf_counter()
    if clip:
        feats = online_features(clip, images)
    with autocast(precision, device):
        out = model(images, feats)
        loss = total_loss(out.logits.float(), labels, out.masked.float()).total
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    sync(device)
    return len(images) / (time.perf_counter() - t0)


def evaluate_target(model: CAFEModel, cache: Path, *, image_size: int, workers: int, device: str) -> float:
    """Images/s of ``cafe eval`` on one cached target (features from the cache, images for the mask branch)."""
    t0 = time.perf_counter()
    result = evaluate_caches(model, {cache.stem: FeatureCache(cache)}, image_size=image_size, workers=workers,
                             device=device)
    return result.targets[cache.stem].n / (time.perf_counter() - t0)
