"""One writer per cache: the writer's exclusive lock, and what others can see of a cache being written
without disturbing its writer (the lock tested, the progress side file read)."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import h5py
from filelock import FileLock, Timeout

from ..errors import CafeError
from .paths import lock_file, progress_file


def lock_for_writing(path: Path) -> FileLock:
    """The exclusive lock of cache ``path``, held; one line when another process holds it or it cannot be made."""
    lock = FileLock(str(lock_file(path)), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise CafeError(f"{path} is being written by another cafe process (lock {path}.lock is held). "
                        "Wait for it to finish; two processes must not write one cache.") from None
    except OSError as e:
        raise CafeError(f"{path.parent}: cannot write the lock file {path.name}.lock ({e.strerror or e}); "
                        "`cafe extract` needs a writable --cache-dir (reading a finished cache does not).") from None
    return lock


def is_locked(path: Path) -> bool:
    """Whether a writer holds ``<cache>.lock`` now. Only tests it: a missing lock file is not made (no
    writer ever ran or the cache is complete), so readers leave no lock files behind."""
    try:
        fd = os.open(lock_file(path), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # a writer's exclusive lock refuses it; readers share
        return False
    except OSError:
        return True
    finally:
        os.close(fd)  # closing drops the shared lock at once


def check_not_locked(path: Path) -> None:
    if is_locked(path):
        raise CafeError(f"{path} is being written by a running `cafe extract`; wait for it to finish.")


def writing_progress(path: Path) -> dict[str, tuple[int, int]] | None:
    """{split: (rows done, rows)} of a cache a running `cafe extract` is writing now, or None when
    nobody is writing it. Reads only the side file and tests the lock: the writer is not disturbed."""
    side = progress_file(path)
    if not side.is_file() or not is_locked(path):
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
