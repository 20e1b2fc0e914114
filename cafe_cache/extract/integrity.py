"""Nothing lost, nothing silently wrong: write errors, checksums and non-finite features of a cache.

Write errors. HDF5 keeps chunks in a cache and writes them at the next flush, after it has already
updated the file's end address on disk, so a full disk or a file-size limit met during a flush leaves
a file that no longer opens. The writer therefore opens caches without a chunk cache
(:data:`NO_CHUNK_CACHE`): a write that needs room fails at once, before the flush that would record it.
:func:`abandon` then stops HDF5 writing anything more (its in-memory metadata describes rows that
never reached the disk) and closes the file, which keeps exactly what the last successful flush wrote:
the run stops with :class:`CacheWriteError` and a rerun continues from there.

Checksums. New caches store features and images with HDF5's fletcher32 filter, so damaged bytes fail
the read. What fletcher32 cannot cover carries a sha256 of its own: per split the row count, labels and
paths (``rows_sha256``, set at the layout) and the error column (``errors_sha256``, set when the cache is
complete), and the file's fixed attributes (fingerprint, dataset, root, ...: ``attrs_sha256``). Every read
checks them and range-checks the labels, so a flipped label is refused by name instead of changing a
result. :func:`verify_cache` reads a whole cache (``cafe cache info --verify``). Older caches have no
checksums and still read; the label range and non-finite checks still apply to them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..classes import CLASSES
from ..errors import CafeError
from ..files import write_cause

NO_CHUNK_CACHE = {"rdcc_nbytes": 0}  # h5py.File options of a writer (see the module doc)
CHECKED_DATASETS = ("features", "images")  # written with fletcher32 in new caches
VERIFY_ROWS = 4096  # rows read at a time by verify_cache
ROWS_DIGEST = "rows_sha256"  # per split: row count, labels and paths
ERRORS_DIGEST = "errors_sha256"  # per split: the error column, once the cache is complete
ATTRS_DIGEST = "attrs_sha256"  # the file: the attributes fixed at the layout
FIXED_ATTRS = ("format", "format_version", "dataset", "cache_name", "root", "reader_options", "fingerprint",
               "random_weights", "cafe_version", "stored_image_size", "subset")
# what a damaged HDF5 object (header, attribute, string) raises when read
DAMAGE = (KeyError, ValueError, TypeError, AttributeError, UnicodeDecodeError, OSError, RuntimeError)


class CacheWriteError(CafeError):
    """The disk refused a write (full, file too large, I/O error); the cache keeps its flushed rows."""


class CacheCorrupt(CafeError):
    """Stored bytes fail their checksum, or features are not finite."""


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
        return dataset.asstr(errors="surrogateescape")[selection] if text else dataset[selection]
    except (OSError, RuntimeError, UnicodeDecodeError) as e:
        raise CacheCorrupt(f"{path}: dataset {dataset.name} is damaged ({str(e).strip().splitlines()[0]}); "
                           "re-extract that dataset with --force.") from e


def text_bytes(text: str) -> bytes:
    """A stored string's bytes: file names that are not UTF-8 keep their original bytes (surrogate escapes)."""
    return text.encode("utf-8", "surrogateescape")


def rows_digest(labels: np.ndarray, paths) -> str:
    """sha256 of a split's row count, labels and paths."""
    h = hashlib.sha256(len(labels).to_bytes(8, "little"))
    h.update(np.asarray(labels, dtype=np.int8).tobytes())
    return _strings(h, paths)


def strings_digest(values) -> str:
    """sha256 of a column of strings (the error column)."""
    return _strings(hashlib.sha256(len(values).to_bytes(8, "little")), values)


def _strings(h, values) -> str:
    for v in values:
        b = v if isinstance(v, bytes) else text_bytes(str(v))
        h.update(len(b).to_bytes(4, "little"))
        h.update(b)
    return h.hexdigest()


def attrs_digest(attrs) -> str:
    """sha256 of the file attributes fixed at the layout, as stored."""
    return hashlib.sha256(json.dumps([[k, _plain(attrs.get(k))] for k in FIXED_ATTRS]).encode()).hexdigest()


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def check_attrs(path: Path, attrs) -> None:
    """Refuse a cache whose fixed attributes no longer match their checksum (caches without one pass)."""
    if ATTRS_DIGEST in attrs and attrs_digest(attrs) != attrs[ATTRS_DIGEST]:
        raise CacheCorrupt(f"{path}: its attributes (fingerprint, dataset, root, ...) do not match the checksum "
                           "stored with them; the file is damaged: re-extract that dataset with --force.")


def check_rows(path: Path, split: str, g: h5py.Group, labels: np.ndarray, paths, errors) -> None:
    """A split's labels (in range, and with its paths and count as checksummed) and its error column."""
    bad = np.flatnonzero((labels < 0) | (labels >= len(CLASSES)))
    if len(bad):
        raise CacheCorrupt(f"{path}: split {split!r} row {int(bad[0])} has label {int(labels[bad[0]])}, not a class "
                           f"id 0-{len(CLASSES) - 1} ({len(bad)} such rows); the cache is damaged: re-extract it "
                           "with --force.")
    if ROWS_DIGEST in g.attrs and rows_digest(labels, paths) != g.attrs[ROWS_DIGEST]:
        raise CacheCorrupt(f"{path}: split {split!r}: its labels, paths or row count do not match the checksum "
                           "stored with them (a changed byte); the cache is damaged: re-extract it with --force.")
    if ERRORS_DIGEST in g.attrs and strings_digest(errors) != g.attrs[ERRORS_DIGEST]:
        raise CacheCorrupt(f"{path}: split {split!r}: its error column does not match the checksum stored with it; "
                           "the cache is damaged: re-extract it with --force.")


def read_split(path: Path, g: h5py.Group, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(labels, paths, errors) of a split, every checksum and range checked."""
    errors = checked_read(path, g["error"], text=True)
    labels = checked_read(path, g["labels"])
    paths = checked_read(path, g["paths"], text=True)
    check_rows(path, split, g, labels, paths, errors)
    return labels, paths, errors


def damaged(path: Path, e: BaseException) -> CacheCorrupt:
    """The one line for a cache whose structure cannot be read (a damaged object header, attribute or string)."""
    what = " ".join(str(e).split())[:200] or type(e).__name__
    return CacheCorrupt(f"{path} is damaged ({type(e).__name__}: {what}); re-extract that dataset with --force.")


def check_finite(path: Path, split: str, features: np.ndarray, rows: np.ndarray, paths: list[str]) -> None:
    """Refuse NaN/inf feature rows, naming the first (file row and image) and how many there are."""
    bad = np.flatnonzero(~np.isfinite(features.reshape(len(features), -1)).all(axis=1))
    if len(bad):
        i = bad[0]
        raise CacheCorrupt(f"{path}: split {split!r} row {int(rows[i])} ({paths[i]}) has NaN/inf features "
                           f"({len(bad)} such rows); the cache is damaged: re-extract it with --force.")


def verify_cache(path: Path) -> list[str]:
    """Read every stored byte of a cache (checksums where it has them) and check its features are finite
    and written, its labels in range, its counts whole. Returns what was checked, one line per split;
    raises :class:`CacheCorrupt`."""
    lines = []
    try:
        with h5py.File(path, "r") as f:
            check_attrs(path, f.attrs)
            for split, g in f["splits"].items():
                lines.append(_verify_split(path, f, split, g))
    except CafeError:
        raise
    except DAMAGE as e:
        raise damaged(path, e) from None
    return lines


def _verify_split(path: Path, f: h5py.File, split: str, g: h5py.Group) -> str:
    n_done = int(g.attrs["n_done"])
    labels, _, err = read_split(path, g, split)
    if bool(f.attrs["complete"]) and n_done != len(labels):
        raise CacheCorrupt(f"{path}: marked complete, but split {split!r} has {n_done:,} of {len(labels):,} rows "
                           "written; the cache is damaged: re-extract it with --force.")
    for name in CHECKED_DATASETS:
        if name in g:
            _verify_rows(path, split, g[name], n_done, err, finite=name == "features")
    sums = "fletcher32" if g["features"].fletcher32 else "no checksums (made before cafe stored them)"
    if ROWS_DIGEST in g.attrs:
        sums += ", labels/paths/count sha256" + (", errors sha256" if ERRORS_DIGEST in g.attrs else "")
    return f"{split}: {n_done:,} of {len(labels):,} rows read back, {sums}"


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
