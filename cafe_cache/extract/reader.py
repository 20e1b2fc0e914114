"""Reading a finished cache: :class:`FeatureCache` (its attributes, then a split's rows as
:class:`SplitData`), and :class:`StoredImages`, a split's stored images read a row at a time."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import CafeError
from .fingerprint import Fingerprint
from .integrity import DAMAGE, CacheCorrupt, check_attrs, check_finite, checked_read, damaged, read_split, verify_cache
from .layout import open_checked
from .lock import check_not_locked
from .weights import Pretrained


class StoredImages:
    """One split's stored images, read a row at a time.

    The file is opened read-only on first use in each process, so every DataLoader worker gets its
    own handle (HDF5 handles must not cross a fork).
    """

    def __init__(self, path: Path, split: str, size: int):
        self.path, self.split, self.size = path, split, size
        self._file: h5py.File | None = None
        self._pid: int | None = None

    def __getitem__(self, row: int) -> np.ndarray:
        """(S, S, 3) uint8 image of file row ``row``."""
        if self._pid != os.getpid():
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        return checked_read(self.path, self._file[f"splits/{self.split}/images"], row)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "split": self.split, "size": self.size, "_file": None, "_pid": None}


@dataclass
class SplitData:
    """One split's readable rows (images that failed to load are left out)."""

    features: np.ndarray  # (n, V, D) float32
    labels: np.ndarray  # (n,) int64
    paths: list[str]
    rows: np.ndarray  # row indices in the file
    images: StoredImages | None = None  # present when the cache stores images
    unreadable: int = 0  # rows left out: images extraction could not read (recorded in the cache)

    def left_out(self, what: str, cache: Path) -> str | None:
        """``3 unreadable images of rafdb test left out ...``, or None when every row was read."""
        if not self.unreadable:
            return None
        return (f"{self.unreadable:,} unreadable image{'s' if self.unreadable != 1 else ''} of {what} left out "
                f"(their reasons: `cafe cache info {cache}`)")


class FeatureCache:
    """Read access to a finished cache file."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise CafeError(f"no feature cache at {self.path}; run `cafe extract` for that dataset first.")
        check_not_locked(self.path)
        with open_checked(self.path) as f:
            try:
                self._read_attrs(f)
            except CafeError:
                raise
            except DAMAGE as e:  # a damaged object header or attribute: one line naming the file
                raise damaged(self.path, e) from None

    def _read_attrs(self, f: h5py.File) -> None:
        a = f.attrs
        check_attrs(self.path, a)
        self.fingerprint = Fingerprint.from_json(a["fingerprint"])
        self.activation_recorded = "activation" in json.loads(a["fingerprint"])
        self.dataset = str(a["dataset"])
        self.cache_name = str(a["cache_name"])
        self.root = Path(str(a["root"]))
        self.reader_options = json.loads(a["reader_options"])
        self.cafe_version = str(a["cafe_version"])
        self.complete = bool(a["complete"])
        self.stored_image_size = int(a.get("stored_image_size", 0))
        self.subset = json.loads(a.get("subset", "{}"))  # {} = the whole dataset
        self.splits = {name: (int(g.attrs["n_done"]), len(g["labels"])) for name, g in f["splits"].items()}

    @property
    def random_weights(self) -> bool:
        return self.fingerprint.random_weights

    def require_complete(self) -> None:
        todo = ", ".join(f"{s} {d}/{n}" for s, (d, n) in self.splits.items())
        if not self.complete:
            raise CafeError(f"{self.path} is unfinished ({todo}); rerun the same `cafe extract` to complete it.")
        if any(d != n for d, n in self.splits.values()):
            raise CacheCorrupt(f"{self.path} is marked complete but not all its rows are written ({todo}); the cache "
                               "is damaged: re-extract it with --force.")
        self.require_official_activation()

    def require_official_activation(self) -> None:
        """Refuse a cache of cafe <= 0.1, which built OpenAI-trained CLIPs with GELU instead of QuickGELU."""
        if self.activation_recorded:
            return  # only caches of cafe <= 0.1 (all open_clip) lack the activation
        from .clip import official_activation  # open_clip: only for such an old cache

        fp = self.fingerprint
        tag = fp.source.tag if isinstance(fp.source, Pretrained) else None
        if official_activation(fp.model, tag) == "quickgelu":
            raise CafeError(f"{self.path} was extracted by cafe {self.cafe_version} with GELU, but {fp.model}'s "
                            "weights need QuickGELU, so its features are off. Re-extract it: rerun its `cafe extract` "
                            "with --force.")

    def load(self, split: str, views: list[str] | None = None) -> SplitData:
        """Features of the images that were read, as float32, in dataset order."""
        self.require_complete()
        if split not in self.splits:
            raise CafeError(f"{self.path} has no split {split!r} (it has {', '.join(self.splits)}).")
        idx = [self.fingerprint.views.index(v) for v in (views or self.fingerprint.views)]
        try:
            with h5py.File(self.path, "r") as f:
                g = f[f"splits/{split}"]
                labels, paths, err = read_split(self.path, g, split)
                rows = np.flatnonzero(err == "")
                feats = checked_read(self.path, g["features"])[rows][:, idx].astype(np.float32)
        except CafeError:
            raise
        except DAMAGE as e:
            raise damaged(self.path, e) from None
        labels, paths = labels[rows].astype(np.int64), list(paths[rows])
        check_finite(self.path, split, feats, rows, paths)
        images = StoredImages(self.path, split, self.stored_image_size) if self.stored_image_size else None
        return SplitData(feats, labels, paths, rows, images, len(err) - len(rows))

    def verify(self) -> list[str]:
        """Read back every row (checksums where stored); one line per split, or CacheCorrupt."""
        return verify_cache(self.path)

    def errors(self) -> list[tuple[str, str, str]]:
        """(split, path, reason) of every image that could not be read."""
        out = []
        try:
            with h5py.File(self.path, "r") as f:
                for name, g in f["splits"].items():
                    err = checked_read(self.path, g["error"], text=True)
                    paths = checked_read(self.path, g["paths"], text=True)
                    out += [(name, paths[i], err[i]) for i in np.flatnonzero(err != "")]
        except CafeError:
            raise
        except DAMAGE as e:
            raise damaged(self.path, e) from None
        return out

    def skipped(self) -> list[tuple[str, str]]:
        try:
            with h5py.File(self.path, "r") as f:
                return list(zip(checked_read(self.path, f["skipped/where"], text=True),
                                checked_read(self.path, f["skipped/reason"], text=True)))
        except CafeError:
            raise
        except DAMAGE as e:
            raise damaged(self.path, e) from None
