"""The training data of ``cafe train --source a[,b,...]``: one source as always, or the union of several.

Several sources (``--source rafdb,ferplus``) train on the union of their train splits, in the order
given (every sample of the first source, then the second's, ...). Their caches must share one
extractor fingerprint (the same CLIP weights, preprocessing, views, size, dtype and precision);
another is refused naming the cache and what differs. Each source keeps its own test split: every
epoch is scored on each of them, and ``best`` is the epoch with the best mean of those accuracies
(test-set selection).

``--balance`` says how an epoch draws from the union (as many draws as the union holds):

- ``none`` (default): the plain union, shuffled each epoch exactly as a single source is;
- ``domains``: draw ``j`` of an epoch comes from source ``j mod S`` (a uniform pick within it, with
  replacement), so every batch holds the S sources in equal shares (within one sample) whatever their sizes;
- ``classes``: draw ``j`` comes from class ``j mod C`` of the union (the C classes present), uniform
  within the class: every batch is class-balanced.

The draws are seeded from (seed, epoch), so a resumed run repeats them. A single source with
``--balance none`` takes exactly the path it took before several sources existed: the same
dataset object and the same ``DistributedSampler``, so the same weights bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler, Sampler

from ..distributed import Ranks
from ..errors import CafeError
from ..extract.extractor import FeatureExtractor
from ..extract.online import clip_for
from ..extract.paths import cache_path
from ..extract.reader import FeatureCache
from ..messages import alert, warning
from ..run.config import TrainConfig
from ..run.data import PairedSamples, limit_split, reader_for

SOURCE_SEED_STEP = 7919  # source k > 0 seeds its per-sample draws with seed + k * this (source 0: the seed itself)


class UnionSamples(Dataset):
    """The train splits of several sources as one dataset: source 0's samples, then source 1's, ..."""

    def __init__(self, parts: list[PairedSamples]):
        self.parts = parts
        self.offsets = np.cumsum([0] + [len(p) for p in parts])

    def set_epoch(self, epoch: int) -> None:
        for p in self.parts:
            p.set_epoch(epoch)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, i: int) -> tuple[int, int]:
        """(source index, index within that source) of union sample ``i``."""
        if not 0 <= i < len(self):
            raise IndexError(i)
        k = int(np.searchsorted(self.offsets, i, side="right")) - 1
        return k, i - int(self.offsets[k])

    def __getitem__(self, i: int):
        k, j = self.locate(i)
        return self.parts[k][j]


def domains_of(dataset: Dataset) -> np.ndarray:
    """The source index of every training sample (all 0 for one source)."""
    if isinstance(dataset, UnionSamples):
        return np.repeat(np.arange(len(dataset.parts)), [len(p) for p in dataset.parts])
    return np.zeros(len(dataset), dtype=np.int64)


def labels_of(dataset: Dataset) -> np.ndarray:
    """The class of every training sample, in dataset order."""
    parts = dataset.parts if isinstance(dataset, UnionSamples) else [dataset]
    return np.concatenate([p.data.labels for p in parts])


class BalancedSampler(Sampler[int]):
    """Draws whose position ``j`` (over all ranks) comes from group ``j mod G``, uniform within the group.

    ``groups`` gives every sample's group (its source for ``--balance domains``, its class for
    ``classes``). Each epoch draws ``len(groups)`` samples, rounded up to a multiple of the ranks; rank
    ``r`` takes every W-th draw from ``r`` on, as ``DistributedSampler`` does, so a global batch of B
    consecutive draws holds every group B/G times (within one).
    """

    def __init__(self, groups: np.ndarray, *, seed: int, num_replicas: int = 1, rank: int = 0):
        self.members = [np.flatnonzero(groups == g) for g in np.unique(groups)]
        self.seed, self.num_replicas, self.rank, self.epoch = seed, num_replicas, rank, 0
        self.num_samples = -(-len(groups) // num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def draws(self) -> np.ndarray:
        """The whole epoch's draw order (every rank's), seeded from (seed, epoch)."""
        rng = np.random.default_rng((self.seed, self.epoch))
        n = self.num_samples * self.num_replicas
        group = np.arange(n) % len(self.members)
        out = np.empty(n, dtype=np.int64)
        for g, members in enumerate(self.members):
            at = np.flatnonzero(group == g)
            out[at] = members[rng.integers(0, len(members), len(at))]
        return out

    def __iter__(self):
        return iter(self.draws()[self.rank::self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.num_samples


def make_sampler(train_set: Dataset, cfg: TrainConfig, ranks: Ranks) -> Sampler[int]:
    """The sampler of ``--balance``: ``none`` is the ``DistributedSampler`` a single source has always used."""
    if cfg.balance == "none":
        return DistributedSampler(train_set, num_replicas=ranks.world, rank=ranks.rank, seed=cfg.seed)
    groups = domains_of(train_set) if cfg.balance == "domains" else labels_of(train_set)
    return BalancedSampler(groups, seed=cfg.seed, num_replicas=ranks.world, rank=ranks.rank)


@dataclass
class SourceData:
    """What :func:`load_sources` gives the training loop."""

    caches: dict[str, FeatureCache]  # source name -> its cache, in --source order
    train_set: Dataset  # PairedSamples for one source, UnionSamples for several
    test_sets: dict[str, PairedSamples]  # each source's own test split
    clip: FeatureExtractor | None  # with --online-clip

    @property
    def cache(self) -> FeatureCache:
        """The first source's cache (they share one fingerprint)."""
        return next(iter(self.caches.values()))


def open_caches(cfg: TrainConfig) -> dict[str, FeatureCache]:
    """Each source's complete cache; several must share one extractor fingerprint."""
    caches = {}
    for name in cfg.sources:
        cache = FeatureCache(cache_path(cfg.cache_dir, name))
        cache.require_complete()
        caches[name] = cache
    first_name, first = next(iter(caches.items()))
    theirs = first.fingerprint.compared()
    for name, cache in caches.items():
        mine = cache.fingerprint.compared()
        diff = [f"{k} {mine[k]!r} vs {theirs[k]!r}" for k in theirs if mine[k] != theirs[k]]
        if diff:
            raise CafeError(f"--source {cfg.source}: the caches of {name} and {first_name} were extracted differently "
                            f"({'; '.join(diff)}: {cache.path} vs {first.path}); sources must share one extractor "
                            f"fingerprint: re-extract {name} as {first_name} was, or leave it out.")
    return caches


def load_sources(cfg: TrainConfig, device: torch.device, log: Callable[[str], None]) -> SourceData:
    """The sources' cached CLIP features paired with the images they came from."""
    caches = open_caches(cfg)
    single = len(caches) == 1
    trains, tests = [], {}
    for k, (name, cache) in enumerate(caches.items()):
        warn_cache(name, cache, log)
        reader = reader_for(cache, cfg.root)
        views = cache.fingerprint.views
        loaded = {split: cache.load(split) for split in ("train", "test")}
        for split, data in loaded.items():
            if note := data.left_out(f"{name} {split}", cache.path):
                log(warning(note))
        train_data = limit_split(loaded["train"], cfg.limit, cfg.seed)
        test_data = limit_split(loaded["test"], cfg.limit and max(1, cfg.limit // 4), cfg.seed)
        trains.append(PairedSamples(train_data, reader, views, cfg.image_size, cfg.augment,
                                    cfg.seed + k * SOURCE_SEED_STEP))
        tests[name] = PairedSamples(test_data, reader, views, cfg.image_size)
    if not single:
        log(f"{len(caches)} sources: " + ", ".join(f"{n} {len(t):,}" for n, t in zip(caches, trains))
            + f" training images (balance: {cfg.balance})")
    first = next(iter(caches.values()))
    clip = clip_for(first.fingerprint, cfg.clip_weights, device, official_fp16=True) if cfg.online_clip else None
    return SourceData(caches, trains[0] if single else UnionSamples(trains), tests, clip)


def warn_cache(name: str, cache: FeatureCache, log: Callable[[str], None]) -> None:
    """Say when a source's features come from random CLIP weights or a partial extraction."""
    if cache.random_weights:
        log(alert("RANDOM WEIGHTS", f": the CLIP features of {name} come from "
                  f"{cache.fingerprint.weights_label}; this run tests the pipeline, its results mean nothing."))
    if cache.subset:
        from ..extract.subset import describe

        log(warning(f"{cache.path} is a partial extraction ({describe(cache.subset)})",
                    ": results are not those of the whole dataset."))
