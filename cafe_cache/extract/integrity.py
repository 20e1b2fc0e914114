"""Nothing lost, nothing silently wrong: write errors, checksums and non-finite features of a cache.

Write errors. HDF5 keeps chunks in a cache and writes them at the next flush, after it has already
updated the file's end address on disk, so a full disk or a file-size limit met during a flush leaves
a file that no longer opens. The writer therefore opens caches without a chunk cache
(:data:`NO_CHUNK_CACHE`): a write that needs room fails at once, before the flush that would record it.
:func:`abandon` then stops HDF5 writing anything more (its in-memory metadata describes rows that
never reached the disk) and closes the file, which keeps exactly what the last successful flush wrote:
the run stops with :class:`CacheWriteError` and a rerun continues from there.

Checksums. New caches store features and images with HDF5's fletcher32 filter, so damaged bytes fail
the read; :func:`verify_cache` reads a whole cache (``cafe cache info --verify``). Older caches have no
checksums; the non-finite check still catches the damage that matters most to training.
"""

from __future__ import annotations

import errno as errno_codes
import os
import re
from pathlib import Path

import h5py
import numpy as np

from ..errors import CafeError

NO_CHUNK_CACHE = {"rdcc_nbytes": 0}  # h5py.File options of a writer (see the module doc)
CHECKED_DATASETS = ("features", "images")  # written with fletcher32 in new caches
VERIFY_ROWS = 4096  # rows read at a time by verify_cache


class CacheWriteError(CafeError):
    """The disk refused a write (full, file too large, I/O error); the cache keeps its flushed rows."""


class CacheCorrupt(CafeError):
    """Stored bytes fail their checksum, or features are not finite."""


def write_cause(e: BaseException) -> str:
    """'No space left on device (ENOSPC)' from an h5py OSError/RuntimeError, else its first line."""
    code = getattr(e, "errno", None)
    if not code:
        found = re.search(r"errno = (\d+)", str(e))
        code = int(found.group(1)) if found else None
    if code:
        return f"{os.strerror(code)} ({errno_codes.errorcode.get(code, code)})"
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def abandon(f: h5py.File, path: Path) -> None:
    """Close ``f`` after a failed write without letting HDF5 write more: its file descriptor is
    swapped for a read-only one, so the close can only fail (quietly), never overwrite good data."""
    try:
        fd = f.id.get_vfd_handle()
        read_only = os.open(path, os.O_RDONLY)
        os.dup2(read_only, fd)
        os.close(read_only)
    except (OSError, RuntimeError, ValueError):
        pass
    try:
        f.close()
    except (OSError, RuntimeError, ValueError):
        pass


def write_failed(path: Path, e: BaseException, kept: str) -> CacheWriteError:
    return CacheWriteError(f"{path}: writing the cache failed: {write_cause(e)}. {kept} Free space (or fix the "
                           "disk) and rerun the same command: it continues from there.")


def checked_read(path: Path, dataset: h5py.Dataset, selection=slice(None), text: bool = False) -> np.ndarray:
    """``dataset[selection]`` (as str when ``text``), with a failed checksum or unreadable bytes as one clear
    error naming the file and the dataset."""
    try:
        return dataset.asstr()[selection] if text else dataset[selection]
    except (OSError, RuntimeError) as e:
        raise CacheCorrupt(f"{path}: dataset {dataset.name} is damaged ({str(e).strip().splitlines()[0]}); "
                           "re-extract that dataset with --force.") from e


def check_finite(path: Path, split: str, features: np.ndarray, rows: np.ndarray, paths: list[str]) -> None:
    """Refuse NaN/inf feature rows, naming the first (file row and image) and how many there are."""
    bad = np.flatnonzero(~np.isfinite(features.reshape(len(features), -1)).all(axis=1))
    if len(bad):
        i = bad[0]
        raise CacheCorrupt(f"{path}: split {split!r} row {int(rows[i])} ({paths[i]}) has NaN/inf features "
                           f"({len(bad)} such rows); the cache is damaged: re-extract it with --force.")


def verify_cache(path: Path) -> list[str]:
    """Read every stored byte of a cache (checksums where it has them) and check its features are finite
    and written. Returns what was checked, one line per split; raises :class:`CacheCorrupt`."""
    lines = []
    with h5py.File(path, "r") as f:
        for split, g in f["splits"].items():
            n_done = int(g.attrs["n_done"])
            err = checked_read(path, g["error"], text=True)
            for name in CHECKED_DATASETS:
                if name in g:
                    _verify_rows(path, split, g[name], n_done, err, finite=name == "features")
            checked_read(path, g["labels"])
            checked_read(path, g["paths"], text=True)
            sums = "fletcher32" if g["features"].fletcher32 else "no checksums (made before cafe stored them)"
            lines.append(f"{split}: {n_done:,} of {len(g['labels']):,} rows read back, {sums}")
    return lines


def _verify_rows(path: Path, split: str, ds: h5py.Dataset, n_done: int, err: np.ndarray, finite: bool) -> None:
    for start in range(0, n_done, VERIFY_ROWS):
        block = checked_read(path, ds, slice(start, min(n_done, start + VERIFY_ROWS)))
        if not finite:
            continue
        rows = np.arange(start, start + len(block))
        readable = err[rows] == ""
        flat = block.reshape(len(block), -1)
        bad = np.flatnonzero(readable & ~(np.isfinite(flat).all(axis=1) & (flat != 0).any(axis=1)))
        if len(bad):
            raise CacheCorrupt(f"{path}: split {split!r} row {int(rows[bad[0]])} has NaN/inf or never-written "
                               f"(all zero) features ({len(bad)} such rows in this block); re-extract it with --force.")
