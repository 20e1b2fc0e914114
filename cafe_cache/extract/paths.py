"""Where a dataset's cache and its side files are: ``<cache-dir>/<name>.h5``, the shards of a torchrun
extraction, the progress file a running writer keeps."""

from __future__ import annotations

from pathlib import Path

from ..options import check_cache_name


def cache_path(cache_dir: str | Path, cache_name: str) -> Path:
    return Path(cache_dir) / f"{check_cache_name(cache_name)}.h5"


def cache_file(name_or_path: str | Path, cache_dir: str | Path) -> Path:
    """A cache given as a file (``cache/rafdb.h5``) or by its name (``rafdb``, as train and eval take it)."""
    p = Path(name_or_path)
    if p.suffix == ".h5" or p.is_file() or len(p.parts) > 1:
        return p
    return cache_path(cache_dir, str(p))


def find_caches(cache_dir: str | Path) -> list[Path]:
    return sorted(p for p in Path(cache_dir).glob("*.h5"))


def shards_dir(path: Path) -> Path:
    """The shard folder of a torchrun extraction of cache ``path`` (``cache/x.h5`` -> ``cache/x.shards``;
    see :mod:`.shards`)."""
    return Path(path).with_suffix(".shards")


def shard_files(path: Path) -> list[Path]:
    """The shard files an unfinished torchrun extraction of cache ``path`` left (see :mod:`.shards`)."""
    return sorted(shards_dir(path).glob("shard-*.h5"))


def lock_file(path: Path) -> Path:
    """The lock a writer of cache ``path`` holds (``cache/x.h5.lock``)."""
    return Path(str(path) + ".lock")


def progress_file(path: Path) -> Path:
    """The side file a running writer keeps its rows done in (``cache/x.h5.progress.json``)."""
    return Path(str(path) + ".progress.json")
