"""Writing a cache: create its layout (:mod:`.layout`) or resume it, then rows a batch at a time.

Rows are written in dataset order, a batch at a time, each batch followed by a flush and an
update of ``n_done``; rerunning the same extraction continues at ``n_done``. A write the disk refuses
(full, file too large, I/O error) stops the run and leaves the rows of the last flush intact
(:mod:`.integrity`). An exclusive lock file (``<cache>.h5.lock``, :mod:`.lock`) keeps a second process
out; it is removed once the cache is complete. While writing, the writer also keeps
``<cache>.h5.progress.json`` (rows done per split) up to date, so ``cafe cache info`` can show progress
without opening the HDF5 file under the writer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..datasets.base import Reader, Sample
from ..errors import CafeError
from .fingerprint import Fingerprint
from .integrity import ERRORS_DIGEST, NO_CHUNK_CACHE, abandon, strings_digest, text_bytes, write_failed
from .layout import create_cache, dataset_attrs, open_checked
from .lock import lock_for_writing
from .paths import lock_file, progress_file


class CacheWriter:
    """Creates or resumes a cache file; holds its lock until closed."""

    def __init__(self, path: Path, fingerprint: Fingerprint, *, dataset: str, cache_name: str, root: Path,
                 reader_options: dict[str, Any], splits: dict[str, list[Sample]],
                 skipped: list[tuple[str, str]], feature_dim: int, force: bool = False, store_images: int = 0,
                 subset: dict[str, Any] | None = None):
        self.path = Path(path)
        self.subset = subset or {}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fingerprint = fingerprint
        self.store_images = store_images  # side of the stored uint8 images, 0 = none
        self._lock = lock_for_writing(self.path)
        self._broken = False  # a write failed: the file was closed by integrity.abandon
        try:
            if self.path.exists() and force:
                self.path.unlink()
            if self.path.exists():
                self.file = self._resume(splits)
            else:
                about = dataset_attrs(dataset=dataset, cache_name=cache_name, root=root,
                                      reader_options=reader_options, subset=self.subset)
                self.file = create_cache(self.path, fingerprint, about, splits, skipped, feature_dim, store_images)
        except BaseException:
            self._lock.release()
            if not self.path.exists():  # nothing was made: no lock file left beside nothing
                lock_file(self.path).unlink(missing_ok=True)
            raise

    @classmethod
    def for_dataset(cls, path: Path, fingerprint: Fingerprint, reader: Reader, splits: dict[str, list[Sample]],
                    feature_dim: int, *, skipped: list[tuple[str, str]] = (), cache_name: str | None = None,
                    force: bool = False, store_images: int = 0, subset: dict[str, Any] | None = None) -> CacheWriter:
        """A writer of ``splits`` of ``reader``'s dataset (its name, root and options recorded), with the
        entries the reader ``skipped``; the cache name defaults to the reader's."""
        return cls(path, fingerprint, dataset=reader.name, cache_name=cache_name or reader.cache_name,
                   root=reader.root, reader_options=reader.options(), splits=splits, skipped=list(skipped),
                   feature_dim=feature_dim, force=force, store_images=store_images, subset=subset)

    # -- resuming -----------------------------------------------------------------------
    def _resume(self, splits: dict[str, list[Sample]]) -> h5py.File:
        """The existing file, open for writing, once it is checked to hold this very extraction."""
        f = open_checked(self.path, "r+", **NO_CHUNK_CACHE)
        try:
            self._check_same_extraction(f, splits)
        except CafeError:
            f.close()
            raise
        return f

    def _check_same_extraction(self, f: h5py.File, splits: dict[str, list[Sample]]) -> None:
        diff = Fingerprint.from_json(f.attrs["fingerprint"]).differences(self.fingerprint)
        if diff:
            raise CafeError(f"{self.path} was made with other settings ({'; '.join(diff)}). Re-extract it: pass "
                            "--force to replace it, or --cache-dir DIR to keep both.")
        had = json.loads(f.attrs.get("subset", "{}"))
        if had != self.subset:
            from .subset import describe

            raise CafeError(f"{self.path} holds {describe(had)}, this extraction asks for {describe(self.subset)}; "
                            "a partial cache is never taken for a full one. Pass --force to replace it, or "
                            "--cache-dir DIR to keep both.")
        stored = int(f.attrs.get("stored_image_size", 0))
        if stored != self.store_images:
            raise CafeError(f"{self.path} was made with --store-images {stored}, asked for {self.store_images}. "
                            "Pass the same --store-images to continue it, or --force to re-extract.")
        for name, samples in splits.items():
            g = f.get(f"splits/{name}")
            same = g is not None and len(g["paths"]) == len(samples) and \
                list(g["paths"].asstr(errors="surrogateescape")[:]) == [s.path for s in samples] and \
                np.array_equal(g["labels"][:], np.array([s.label for s in samples], dtype=np.int8))
            if not same:
                raise CafeError(f"{self.path}: split {name!r} lists other images or labels than the dataset now "
                                "does (the dataset or reader options changed). Pass --force to re-extract it.")

    # -- writing ------------------------------------------------------------------------
    def n_done(self, split: str) -> int:
        return int(self.file[f"splits/{split}"].attrs["n_done"])

    def write(self, split: str, start: int, features: np.ndarray, errors: list[str],
              images: np.ndarray | None = None) -> None:
        """Rows [start, start + len(features)) (and their (B, S, S, 3) stored images); then flush, so a
        kill loses at most this batch. A write the disk refuses raises CacheWriteError, the flushed rows kept."""
        g = self.file[f"splits/{split}"]
        end = start + len(features)
        try:
            g["features"][start:end] = features
            if images is not None:
                g["images"][start:end] = images
            if any(errors):  # reasons may name files that are not UTF-8: their bytes are kept
                g["error"][start:end] = np.array([text_bytes(e) for e in errors], dtype=object)
            g.attrs["n_done"] = end
            self.file.flush()
        except (OSError, RuntimeError) as e:
            self._give_up(e, f"{start:,} rows of split {split!r} before it are kept; the cache is not marked complete.")
        self._write_progress()

    def _write_progress(self) -> None:
        """Rows done per split into the side file, replaced atomically (see :func:`.lock.writing_progress`)."""
        done = {name: [int(g.attrs["n_done"]), len(g["labels"])] for name, g in self.file["splits"].items()}
        side = progress_file(self.path)
        tmp = side.with_name(side.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"splits": done}))
            tmp.replace(side)
        except OSError as e:  # a full disk: the rows are flushed, stop here with the one-line error
            tmp.unlink(missing_ok=True)
            self._give_up(e, f"The rows up to {sum(d for d, _ in done.values()):,} are kept; the cache is not marked "
                          "complete.")

    def finish(self) -> None:
        try:
            for g in self.file["splits"].values():  # the error column is final now: checksum it
                g.attrs[ERRORS_DIGEST] = strings_digest(g["error"].asstr(errors="surrogateescape")[:])
            self.file.attrs["complete"] = True
            self.file.flush()
        except (OSError, RuntimeError) as e:
            self._give_up(e, "Every row is written; only the mark 'complete' is missing.")

    def _give_up(self, e: BaseException, kept: str):
        self._broken = True
        abandon(self.file, self.path)
        raise write_failed(self.path, e, kept) from None

    def close(self) -> None:
        try:
            complete = False
            if not self._broken:
                complete = bool(self.file.attrs["complete"])
                self.file.close()
            progress_file(self.path).unlink(missing_ok=True)
        finally:
            self._lock.release()
        if complete:  # a finished cache needs no lock file beside it; an unfinished one keeps it
            lock_file(self.path).unlink(missing_ok=True)

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
