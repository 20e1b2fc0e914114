"""``cafe extract --splits/--limit``: a deterministic part of a dataset, recorded in the cache.

The subset is stored as the cache attribute ``subset`` (JSON; ``{}`` is the whole dataset), so a
later full extraction refuses to continue a limited cache and training says it reads a subset.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..datasets.base import Sample
from ..errors import CafeError

SUBSET_SEED = 0  # the shuffle that picks --limit images is fixed: the same command picks the same images


def select(splits: dict[str, list[Sample]], names: list[str] | None, limit: int | None
           ) -> tuple[dict[str, list[Sample]], dict[str, Any]]:
    """The chosen splits, each cut to at most ``limit`` images, and the record of that choice.

    The ``limit`` images of a split are the first ones of a seeded shuffle, kept in dataset order, so
    every class has its share on average and the same command always picks the same images.
    """
    if names:
        unknown = [n for n in names if n not in splits]
        if unknown:
            raise CafeError(f"--splits {','.join(names)}: the dataset has no split {', '.join(unknown)} "
                            f"(it has {', '.join(splits)}).")
        splits = {n: splits[n] for n in splits if n in names}
    if limit is not None:
        splits = {n: _first_of_shuffle(v, limit) for n, v in splits.items()}
    record: dict[str, Any] = {}
    if names:
        record["splits"] = sorted(names)
    if limit is not None:
        record["limit"] = int(limit)
    return splits, record


def _first_of_shuffle(samples: list[Sample], limit: int) -> list[Sample]:
    if len(samples) <= limit:
        return samples
    keep = np.sort(np.random.default_rng(SUBSET_SEED).permutation(len(samples))[:limit])
    return [samples[i] for i in keep]


def describe(record: dict[str, Any]) -> str:
    """``--limit 50 per split, --splits test`` or ``the whole dataset``."""
    parts = []
    if "limit" in record:
        parts.append(f"--limit {record['limit']} per split")
    if "splits" in record:
        parts.append(f"--splits {','.join(record['splits'])}")
    return ", ".join(parts) or "the whole dataset"
