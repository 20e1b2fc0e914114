"""Stage one over several processes (torchrun): the dataset cut into shards, joined into one cache.

    cache/<name>.h5                    the cache, exactly as one process writes it; rank 0 holds its lock
    cache/<name>.shards/plan.json      the cut: for every shard and split, its rows [lo, hi)
    cache/<name>.shards/shard-0003.h5  shard 3, a cache file (same format and fingerprint) of its rows

With W ranks the rows the cache still lacks are cut into W shards at batch boundaries, so every
batch CLIP sees is a batch one process would have formed: the joined cache equals a one-process
cache feature for feature. Rank r extracts shards r, r + W, r + 2W, ..., each resumable on its
own (a flush per batch, as the cache). The cut is fixed once made, so a relaunch with another
number of ranks, or as one plain process, shares the same shards out again and loses nothing.
When all shards are done, rank 0 copies them into the cache in order and deletes the folder.

The shard folder must be visible to every rank: on several nodes, put ``--cache-dir`` on a shared
file system.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py

from ..datasets.base import Sample
from ..distributed import Ranks
from ..errors import CafeError
from ..files import write_text
from .loop import Extraction, ExtractReport
from .paths import shards_dir
from .writer import CacheWriter

COPY_ROWS = 4096  # rows per copy when joining shards into the cache


def shard_path(folder: Path, k: int) -> Path:
    return folder / f"shard-{k:04d}.h5"


@dataclass
class Plan:
    """How the rows still missing from a cache are cut into shards."""

    fingerprint: str  # Fingerprint.to_json() of the features
    store_images: int
    batch_size: int
    start: dict[str, int]  # per split, the cache's first missing row when the cut was made
    rows: dict[str, list[tuple[int, int]]]  # per split, shard k's rows [lo, hi)

    @property
    def shards(self) -> int:
        return len(next(iter(self.rows.values())))

    def samples(self, k: int, splits: dict[str, list[Sample]]) -> dict[str, list[Sample]]:
        """Shard ``k``'s samples of every split."""
        return {s: samples[slice(*self.rows[s][k])] for s, samples in splits.items()}

    def mine(self, ranks: Ranks) -> list[int]:
        return list(range(ranks.rank, self.shards, ranks.world))

    def save(self, folder: Path) -> None:
        write_text(folder / "plan.json", json.dumps(asdict(self), indent=1, sort_keys=True))

    @classmethod
    def load(cls, folder: Path) -> Plan | None:
        f = folder / "plan.json"
        if not f.is_file():
            return None
        d = json.loads(f.read_text())
        d["rows"] = {s: [tuple(r) for r in rs] for s, rs in d["rows"].items()}
        return cls(**d)


def cut(splits: dict[str, list[Sample]], start: dict[str, int], shards: int,
        batch_size: int) -> dict[str, list[tuple[int, int]]]:
    """Rows [start, n) of each split in ``shards`` contiguous pieces of whole batches (the last
    batch of a split may be short), as even as whole batches allow."""
    rows = {}
    for s, samples in splits.items():
        lo, n = start[s], len(samples)
        batches = -(-(n - lo) // batch_size)
        edges = [min(n, lo + (k * batches // shards) * batch_size) for k in range(shards + 1)]
        rows[s] = list(zip(edges[:-1], edges[1:]))
    return rows


def _plan(folder: Path, writer: CacheWriter, splits: dict[str, list[Sample]], shards: int, batch_size: int) -> Plan:
    """The folder's plan, checked against the cache; or a new one for the rows the cache lacks."""
    fp = writer.fingerprint.to_json()
    start = {s: writer.n_done(s) for s in splits}
    plan = Plan.load(folder)
    if plan is not None:
        behind = [s for s in splits if start[s] < plan.start.get(s, -1)]
        other = plan.fingerprint != fp or plan.store_images != writer.store_images or set(plan.rows) != set(splits)
        if other or behind:
            raise CafeError(f"{folder} holds shards of another extraction than {writer.path} (other settings, "
                            "or the cache was replaced). Pass --force to start again, or remove that folder.")
        return plan
    plan = Plan(fp, writer.store_images, batch_size, start, cut(splits, start, shards, batch_size))
    plan.save(folder)
    return plan


def shard_todo(plan: Plan, folder: Path, ranks: Ranks) -> dict[str, int]:
    """Rows this rank still has to extract, per split (for progress bars)."""
    todo = {s: 0 for s in plan.rows}
    for k in plan.mine(ranks):
        f = shard_path(folder, k)
        done = {}
        if f.is_file():
            try:
                with h5py.File(f, "r") as h:
                    done = {s: int(h[f"splits/{s}"].attrs["n_done"]) for s in plan.rows}
            except (OSError, KeyError):
                done = {}
        for s, rows in plan.rows.items():
            todo[s] += rows[k][1] - rows[k][0] - done.get(s, 0)
    return todo


def join(writer: CacheWriter, plan: Plan, folder: Path) -> None:
    """Copy every finished shard into the cache, in order, from the cache's first missing row."""
    for k in range(plan.shards):
        with h5py.File(shard_path(folder, k), "r") as shard:
            for s, rows in plan.rows.items():
                lo, hi = rows[k]
                g = shard[f"splits/{s}"]
                if int(g.attrs["n_done"]) != hi - lo:
                    raise CafeError(f"{shard_path(folder, k)}: split {s} is unfinished; rerun the same extraction.")
                for a in range(max(lo, writer.n_done(s)), hi, COPY_ROWS):
                    b = min(hi, a + COPY_ROWS)
                    images = g["images"][a - lo:b - lo] if writer.store_images else None
                    errors = list(g["error"].asstr(errors="surrogateescape")[a - lo:b - lo])  # names not UTF-8 too
                    writer.write(s, a, g["features"][a - lo:b - lo], errors, images)
    writer.finish()


def extract_sharded(ranks: Ranks, ex: Extraction, *, on_plan: Callable[[dict[str, int]], None] | None = None,
                    on_batch: Callable[[str, int], None] | None = None) -> ExtractReport | None:
    """Extract ``ex`` into its cache with every rank of ``ranks`` (called on all of them). None when the
    cache was already complete. ``on_plan`` gets this rank's rows to do per split before the work starts."""
    t0 = time.perf_counter()
    folder = shards_dir(ex.path)
    main: dict[str, Any] = {}  # rank 0's open cache writer

    def prepare() -> Plan | None:
        if ex.force and folder.exists():
            shutil.rmtree(folder)
        writer = main["writer"] = ex.writer()
        if all(writer.n_done(s) >= len(v) for s, v in ex.splits.items()):
            writer.finish()
            shutil.rmtree(folder, ignore_errors=True)
            return None
        return _plan(folder, writer, ex.splits, ranks.world, ex.batch_size)

    try:
        plan = ranks.on_main(prepare)
        if plan is None:
            return None
        if on_plan:
            on_plan(shard_todo(plan, folder, ranks))
        mine = _my_shards(ranks, ex, plan, folder, on_batch)
        everyone = ranks.gather(mine)  # returns once every rank has finished its shards
        if ranks.is_main:
            join(main["writer"], plan, folder)
            shutil.rmtree(folder)
        report = ExtractReport(images=sum(r.images for r in everyone), errors=[e for r in everyone for e in r.errors],
                               seconds=time.perf_counter() - t0, resumed_from=dict(plan.start), ranks=ranks.world)
        ranks.barrier()  # the cache is whole before any rank reports done
        return report
    finally:
        if "writer" in main:
            main["writer"].close()


def _my_shards(ranks: Ranks, ex: Extraction, plan: Plan, folder: Path,
               on_batch: Callable[[str, int], None] | None) -> ExtractReport:
    """Extract this rank's shards of ``plan``, each into its own shard file; their images and errors."""
    mine = ExtractReport()
    for k in plan.mine(ranks):
        samples = plan.samples(k, ex.splits)
        with ex.shard_writer(shard_path(folder, k), samples) as shard:
            r = ex.run(shard, samples, on_batch=on_batch)
        mine.images += r.images
        mine.errors += r.errors
    return mine
