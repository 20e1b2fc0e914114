"""The feature cache: one HDF5 file per dataset.

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

Rows are written in dataset order, a batch at a time, each batch followed by a flush and an
update of ``n_done``; rerunning the same extraction continues at ``n_done``. A write the disk refuses
(full, file too large, I/O error) stops the run and leaves the rows of the last flush intact
(:mod:`.integrity`). An exclusive lock
file (``<cache>.h5.lock``) keeps a second process out; it is removed once the cache is complete. While
writing, the writer also keeps ``<cache>.h5.progress.json`` (rows done per split) up to date, so
``cafe cache info`` can show progress without opening the HDF5 file under the writer.

Stored images (``cafe extract --store-images S``) do not change the features, so they are not part
of the fingerprint; a cache with them is interchangeable with one without.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
from filelock import FileLock, Timeout

from ..datasets.base import Reader, Sample
from ..errors import CafeError
from ..files import write_bytes
from ..options import check_cache_name
from ..version import __version__
from .integrity import (
    ATTRS_DIGEST,
    DAMAGE,
    ERRORS_DIGEST,
    NO_CHUNK_CACHE,
    ROWS_DIGEST,
    CacheCorrupt,
    abandon,
    attrs_digest,
    check_attrs,
    check_finite,
    checked_read,
    damaged,
    read_split,
    rows_digest,
    strings_digest,
    text_bytes,
    verify_cache,
    write_failed,
)
from .weights import WeightsInfo

if TYPE_CHECKING:
    from .extractor import FeatureExtractor

FORMAT = "cafe-feature-cache"
FORMAT_VERSION = 1
STR = h5py.string_dtype()


# the JSON keys of a fingerprint's WeightsInfo fields (the flat layout caches have always had)
WEIGHTS_KEYS = {"model": "model", "source": "weights", "sha256": "weights_sha256",
                "random_weights": "random_weights", "seed": "seed", "activation": "activation"}
# the order fingerprint fields are compared and named in (``differences``)
FIELD_ORDER = ("model", "weights", "weights_sha256", "random_weights", "seed", "preprocess", "transform", "views",
               "image_size", "dtype", "precision", "activation")


@dataclass(frozen=True)
class Fingerprint:
    """Everything that changes the stored features: the CLIP weights (:class:`WeightsInfo`) and how they
    were used. Two caches agree when their fingerprints are equal.

    Stored as flat JSON (``to_json``): the weights' fields under the keys of :data:`WEIGHTS_KEYS`
    (``weights`` is ``WeightsInfo.source``, ``weights_sha256`` its ``sha256``) beside the others.
    ``transform`` (what the preprocessing means for a non-open_clip extractor, e.g. a timm model's
    ``pretrained_cfg`` resize and mean/std) is written only when set, so open_clip fingerprints are the
    JSON they have always been and caches made before the extractor seam stay valid.
    """

    weights_info: WeightsInfo
    preprocess: str
    views: tuple[str, ...]
    image_size: int
    dtype: str
    precision: str
    transform: str | None = None

    @classmethod
    def for_clip(cls, clip: FeatureExtractor, *, preprocess: str, views: tuple[str, ...], dtype: str,
                 precision: str) -> Fingerprint:
        """The fingerprint of features made by the extractor ``clip`` with these settings."""
        return cls(clip.info, preprocess=preprocess, views=tuple(views), image_size=clip.image_size, dtype=dtype,
                   precision=precision, transform=clip.transform(preprocess))

    for_extractor = for_clip

    # the weights' fields, under the names the JSON has always used
    model = property(lambda self: self.weights_info.model)
    weights = property(lambda self: self.weights_info.source, doc='"pretrained:<tag>", "file:<name>" or "random"')
    weights_sha256 = property(lambda self: self.weights_info.sha256)
    random_weights = property(lambda self: self.weights_info.random_weights)
    seed = property(lambda self: self.weights_info.seed)
    activation = property(lambda self: self.weights_info.activation, doc="the MLP activation CLIP was built with")

    def to_dict(self) -> dict[str, Any]:
        """The flat dict of the JSON form (views as a list)."""
        d = {key: getattr(self.weights_info, name) for name, key in WEIGHTS_KEYS.items()}
        d.update(preprocess=self.preprocess, views=list(self.views), image_size=self.image_size, dtype=self.dtype,
                 precision=self.precision)
        if self.transform is not None:
            d["transform"] = self.transform
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Fingerprint:
        d = json.loads(text)
        d.setdefault("activation", "quickgelu" if d["model"].endswith("-quickgelu") else "gelu")  # cafe <= 0.1
        info = WeightsInfo(**{name: d.pop(key) for name, key in WEIGHTS_KEYS.items()})
        d["views"] = tuple(d["views"])
        return cls(info, **d)

    def differences(self, other: Fingerprint) -> list[str]:
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{k}: cache has {_shown(k, mine.get(k))!r}, asked for {_shown(k, theirs.get(k))!r}"
                for k in FIELD_ORDER if mine.get(k) != theirs.get(k)]

    @property
    def weights_label(self) -> str:
        who = f"RANDOM WEIGHTS (seed {self.seed})" if self.random_weights else self.weights
        return f"{self.model} {who}" + ("" if self.activation == "native" else f" ({self.activation})")

    def same_weights(self, other: Fingerprint) -> bool:
        """Same CLIP: model, weights and activation (features of the two are comparable)."""
        return self.weights_info == other.weights_info


def _shown(key: str, value: Any) -> Any:
    return tuple(value) if key == "views" and value is not None else value


def cache_path(cache_dir: str | Path, cache_name: str) -> Path:
    return Path(cache_dir) / f"{check_cache_name(cache_name)}.h5"


def cache_file(name_or_path: str | Path, cache_dir: str | Path) -> Path:
    """A cache given as a file (``cache/rafdb.h5``) or by its name (``rafdb``, as train and eval take it)."""
    p = Path(name_or_path)
    if p.suffix == ".h5" or p.is_file() or len(p.parts) > 1:
        return p
    return cache_path(cache_dir, str(p))


def shards_dir(path: Path) -> Path:
    """The shard folder of a torchrun extraction of cache ``path`` (``cache/x.h5`` -> ``cache/x.shards``;
    see :mod:`.shards`)."""
    return Path(path).with_suffix(".shards")


def shard_files(path: Path) -> list[Path]:
    """The shard files an unfinished torchrun extraction of cache ``path`` left (see :mod:`.shards`)."""
    return sorted(shards_dir(path).glob("shard-*.h5"))


def progress_file(path: Path) -> Path:
    """The side file a running writer keeps its rows done in (``cache/x.h5.progress.json``)."""
    return Path(str(path) + ".progress.json")


def writing_progress(path: Path) -> dict[str, tuple[int, int]] | None:
    """{split: (rows done, rows)} of a cache a running `cafe extract` is writing now, or None when
    nobody is writing it. Reads only the side file and tests the lock: the writer is not disturbed."""
    side = progress_file(path)
    if not side.is_file() or not _is_locked(path):
        return None
    try:
        return {k: (int(d), int(n)) for k, (d, n) in json.loads(side.read_text())["splits"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        return None  # caught between the writer's write and rename: no progress to show this instant


def rows_kept(path: Path) -> str:
    """``train 120/1,965, test 0/500``: the rows of each split a cache no one writes now holds."""
    try:
        with h5py.File(path, "r") as f:
            return ", ".join(f"{name} {int(g.attrs['n_done']):,}/{len(g['labels']):,}"
                             for name, g in f["splits"].items())
    except (OSError, KeyError):
        return "no rows"


def _is_locked(path: Path) -> bool:
    """Whether a writer holds ``<cache>.lock`` now. Only tests it: a missing lock file is not made (no
    writer ever ran or the cache is complete), so readers leave no lock files behind."""
    try:
        fd = os.open(str(path) + ".lock", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # a writer's exclusive lock refuses it; readers share
        return False
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock at once


def _lock(path: Path) -> FileLock:
    lock = FileLock(str(path) + ".lock", timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise CafeError(f"{path} is being written by another cafe process (lock {path}.lock is held). "
                        "Wait for it to finish; two processes must not write one cache.") from None
    except OSError as e:
        raise CafeError(f"{path.parent}: cannot write the lock file {path.name}.lock ({e.strerror or e}); "
                        "`cafe extract` needs a writable --cache-dir (reading a finished cache does not).") from None
    return lock


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
        self._lock = _lock(self.path)
        self._broken = False  # a write failed: the file was closed by integrity.abandon
        try:
            if self.path.exists() and force:
                self.path.unlink()
            if self.path.exists():
                self.file = self._resume(splits)
            else:
                self.file = self._create(dataset, cache_name, root, reader_options, splits, skipped, feature_dim)
        except BaseException:
            self._lock.release()
            if not self.path.exists():  # nothing was made: no lock file left beside nothing
                Path(str(self.path) + ".lock").unlink(missing_ok=True)
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

    # -- opening ------------------------------------------------------------------------
    def _create(self, dataset, cache_name, root, reader_options, splits, skipped, dim) -> h5py.File:
        """The layout is built in memory and written as plain bytes: a full disk or a file-size limit at this
        point is one OSError (never an HDF5 crash), and the file appears only once its layout is whole."""
        f = h5py.File(f"{self.path}.layout", "w", driver="core", backing_store=False)
        try:
            self._layout(f, dataset, cache_name, root, reader_options, splits, skipped, dim)
            f.flush()
            image = f.id.get_file_image()
        finally:
            f.close()
        write_bytes(self.path, image, "Nothing was extracted yet.")
        return h5py.File(self.path, "r+", **NO_CHUNK_CACHE)

    def _layout(self, f, dataset, cache_name, root, reader_options, splits, skipped, dim) -> None:
        f.attrs.update(format=FORMAT, format_version=FORMAT_VERSION, dataset=dataset, cache_name=cache_name,
                       root=str(Path(root).resolve()), reader_options=json.dumps(reader_options, sort_keys=True),
                       fingerprint=self.fingerprint.to_json(), random_weights=self.fingerprint.random_weights,
                       cafe_version=__version__, complete=False, stored_image_size=self.store_images,
                       subset=json.dumps(self.subset, sort_keys=True))
        f.attrs[ATTRS_DIGEST] = attrs_digest(f.attrs)
        dtype = np.float16 if self.fingerprint.dtype == "float16" else np.float32
        views = len(self.fingerprint.views)
        for name, samples in splits.items():
            g = f.create_group(f"splits/{name}")
            n = len(samples)
            g.create_dataset("features", shape=(n, views, dim), dtype=dtype, fletcher32=bool(n),
                             chunks=(max(1, min(n, 1024)), views, dim) if n else None)
            labels = np.array([s.label for s in samples], dtype=np.int8)
            paths = [text_bytes(s.path) for s in samples]  # names that are not UTF-8 keep their bytes
            g.create_dataset("labels", data=labels)
            g.create_dataset("paths", data=np.array(paths, dtype=object), dtype=STR)
            g.attrs[ROWS_DIGEST] = rows_digest(labels, paths)
            g.create_dataset("error", shape=(n,), dtype=STR)
            if self.store_images and n:
                side = self.store_images
                g.create_dataset("images", shape=(n, side, side, 3), dtype=np.uint8, chunks=(1, side, side, 3),
                                 fletcher32=True)
            g.attrs["n_done"] = 0
        sk = f.create_group("skipped")
        sk.create_dataset("where", data=np.array([text_bytes(w) for w, _ in skipped], dtype=object), dtype=STR)
        sk.create_dataset("reason", data=np.array([text_bytes(r) for _, r in skipped], dtype=object), dtype=STR)

    def _resume(self, splits: dict[str, list[Sample]]) -> h5py.File:
        f = _open_checked(self.path, "r+", **NO_CHUNK_CACHE)
        have = Fingerprint.from_json(f.attrs["fingerprint"])
        diff = have.differences(self.fingerprint)
        if diff:
            f.close()
            raise CafeError(f"{self.path} was made with other settings ({'; '.join(diff)}). Re-extract it: pass "
                            "--force to replace it, or --cache-dir DIR to keep both.")
        had = json.loads(f.attrs.get("subset", "{}"))
        if had != self.subset:
            from .subset import describe

            f.close()
            raise CafeError(f"{self.path} holds {describe(had)}, this extraction asks for {describe(self.subset)}; "
                            "a partial cache is never taken for a full one. Pass --force to replace it, or "
                            "--cache-dir DIR to keep both.")
        stored = int(f.attrs.get("stored_image_size", 0))
        if stored != self.store_images:
            f.close()
            raise CafeError(f"{self.path} was made with --store-images {stored}, asked for {self.store_images}. "
                            "Pass the same --store-images to continue it, or --force to re-extract.")
        for name, samples in splits.items():
            g = f.get(f"splits/{name}")
            same = g is not None and len(g["paths"]) == len(samples) and \
                list(g["paths"].asstr(errors="surrogateescape")[:]) == [s.path for s in samples] and \
                np.array_equal(g["labels"][:], np.array([s.label for s in samples], dtype=np.int8))
            if not same:
                f.close()
                raise CafeError(f"{self.path}: split {name!r} lists other images or labels than the dataset now "
                                "does (the dataset or reader options changed). Pass --force to re-extract it.")
        return f

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
        """Rows done per split into the side file, replaced atomically (see :func:`writing_progress`)."""
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
            Path(str(self.path) + ".lock").unlink(missing_ok=True)

    def __enter__(self) -> CacheWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _check_not_locked(path: Path) -> None:
    if _is_locked(path):
        raise CafeError(f"{path} is being written by a running `cafe extract`; wait for it to finish.")


def _open_checked(path: Path, mode: str = "r", **options) -> h5py.File:
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
        _check_not_locked(self.path)
        with _open_checked(self.path) as f:
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
        tag = fp.weights.split(":", 1)[1] if fp.weights.startswith("pretrained:") else None
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


def find_caches(cache_dir: str | Path) -> list[Path]:
    return sorted(p for p in Path(cache_dir).glob("*.h5"))
