"""The feature cache's file format: one HDF5 file per dataset.

Layout (``format = "cafe-feature-cache"``, ``format_version = 1``)::

    /                      attrs: dataset, cache_name, root, reader_options (JSON), fingerprint (JSON),
                                  random_weights, cafe_version, complete,
                                  stored_image_size (0 or absent: no stored images),
                                  subset (JSON: {} or the --splits/--limit of a partial extraction),
                                  attrs_sha256 (of the attributes above but ``complete``)
    /splits/<split>/features   (N, V, D) float16|float32   V = number of views, in fingerprint order
    /splits/<split>/labels     (N,) int8                     target ids (cafe_cache.classes)
    /splits/<split>/paths      (N,) str                      image source relative to the root
    /splits/<split>/error      (N,) str                      "" or why the image could not be read
    /splits/<split>/images     (N, S, S, 3) uint8            only with stored_image_size S > 0: the image
                                                             resized to (S, S) bilinear, the mask branch's
                                                             input, so stage two needs no decoding
                                  attrs: n_done               rows written so far (resume point)
                                         rows_sha256          row count, labels and paths (at the layout)
                                         errors_sha256        the error column (once complete)
    /skipped/where, /skipped/reason  (K,) str                 entries the reader dropped (label rules, --skip-bad)

features and images carry HDF5's fletcher32 checksum, the rest the sha256 digests above (caches made
before they were added have none and stay readable); a damaged block, a changed label or a damaged
object header fails its read with the file named (:mod:`.integrity`). Paths are stored as the bytes of
the file name (names that are not UTF-8 kept as they are) and read back with surrogate escapes.

The layout is built in memory and written as one file (:func:`cafe_cache.files.write_bytes`), so a
full disk or a file-size limit at that point is one OSError, never an HDF5 crash.

Stored images (``cafe extract --store-images S``) do not change the features, so they are not part
of the fingerprint; a cache with them is interchangeable with one without.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..datasets.base import Sample
from ..errors import CafeError
from ..files import write_bytes
from ..version import __version__
from .fingerprint import Fingerprint
from .integrity import ATTRS_DIGEST, NO_CHUNK_CACHE, ROWS_DIGEST, attrs_digest, rows_digest, text_bytes

FORMAT = "cafe-feature-cache"
FORMAT_VERSION = 1
STR = h5py.string_dtype()


def create_cache(path: Path, fingerprint: Fingerprint, about: dict[str, Any], splits: dict[str, list[Sample]],
                 skipped: list[tuple[str, str]], dim: int, store_images: int) -> h5py.File:
    """A new cache at ``path`` with no rows written, open for writing. ``about`` holds the dataset's root
    attributes (dataset, cache_name, root, reader_options, subset). The layout is built in memory and written
    as plain bytes: a full disk or a file-size limit at this point is one OSError (never an HDF5 crash), and
    the file appears only once its layout is whole."""
    f = h5py.File(f"{path}.layout", "w", driver="core", backing_store=False)
    try:
        f.attrs.update(format=FORMAT, format_version=FORMAT_VERSION, **about, fingerprint=fingerprint.to_json(),
                       random_weights=fingerprint.random_weights, cafe_version=__version__, complete=False,
                       stored_image_size=store_images)
        f.attrs[ATTRS_DIGEST] = attrs_digest(f.attrs)
        for name, samples in splits.items():
            _split(f.create_group(f"splits/{name}"), samples, fingerprint, dim, store_images)
        sk = f.create_group("skipped")
        sk.create_dataset("where", data=np.array([text_bytes(w) for w, _ in skipped], dtype=object), dtype=STR)
        sk.create_dataset("reason", data=np.array([text_bytes(r) for _, r in skipped], dtype=object), dtype=STR)
        f.flush()
        image = f.id.get_file_image()
    finally:
        f.close()
    write_bytes(path, image, "Nothing was extracted yet.")
    return h5py.File(path, "r+", **NO_CHUNK_CACHE)


def _split(g: h5py.Group, samples: list[Sample], fingerprint: Fingerprint, dim: int, store_images: int) -> None:
    """One split's datasets: features and stored images empty, labels, paths and their digest written."""
    n, views = len(samples), len(fingerprint.views)
    dtype = np.float16 if fingerprint.dtype == "float16" else np.float32
    g.create_dataset("features", shape=(n, views, dim), dtype=dtype, fletcher32=bool(n),
                     chunks=(max(1, min(n, 1024)), views, dim) if n else None)
    labels = np.array([s.label for s in samples], dtype=np.int8)
    paths = [text_bytes(s.path) for s in samples]  # names that are not UTF-8 keep their bytes
    g.create_dataset("labels", data=labels)
    g.create_dataset("paths", data=np.array(paths, dtype=object), dtype=STR)
    g.attrs[ROWS_DIGEST] = rows_digest(labels, paths)
    g.create_dataset("error", shape=(n,), dtype=STR)
    if store_images and n:
        side = store_images
        g.create_dataset("images", shape=(n, side, side, 3), dtype=np.uint8, chunks=(1, side, side, 3),
                         fletcher32=True)
    g.attrs["n_done"] = 0


def dataset_attrs(*, dataset: str, cache_name: str, root: Path, reader_options: dict[str, Any],
                  subset: dict[str, Any]) -> dict[str, Any]:
    """The root attributes naming the dataset a cache holds (:func:`create_cache`'s ``about``)."""
    return dict(dataset=dataset, cache_name=cache_name, root=str(Path(root).resolve()),
                reader_options=json.dumps(reader_options, sort_keys=True), subset=json.dumps(subset, sort_keys=True))


def open_checked(path: Path, mode: str = "r", **options) -> h5py.File:
    """The cache file ``path`` open, after checking it is a cafe feature cache of the format this cafe reads."""
    try:
        f = h5py.File(path, mode, **options)
    except OSError as e:
        raise CafeError(f"{path}: cannot be opened as HDF5 ({e}). If an extraction was killed while writing, "
                        "rerun it with --force to start that dataset again.") from e
    if f.attrs.get("format") != FORMAT:
        f.close()
        raise CafeError(f"{path} is not a cafe feature cache (no format attribute); use another --cache-dir.")
    if int(f.attrs.get("format_version", -1)) != FORMAT_VERSION:
        f.close()
        raise CafeError(f"{path} has cache format {f.attrs.get('format_version')}, this cafe reads "
                        f"{FORMAT_VERSION}; re-extract with --force.")
    return f
