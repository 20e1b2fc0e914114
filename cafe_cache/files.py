"""The one write-error path: every file cafe writes (checkpoints, JSON, CSV, Markdown, figures, exports)
goes through :func:`write_atomic` or :func:`write_bytes`.

A file is written under ``NAME.tmp`` beside its real name and renamed over it once whole, so a kill or a
full disk never leaves a half file under the real name, and the ``.tmp`` is removed when the write
fails. A write the disk refuses (full, file-size limit, read-only, I/O error) becomes one
:class:`WriteError` line naming the file and the cause (``No space left on device (ENOSPC)``).
Checkpoints are serialised in memory and written here with plain file writes, so their failures are
the operating system's own error, never a library's wrapped message, and every file gets the same
permissions (the umask's, as any other program's files). No heavy imports here.
"""

from __future__ import annotations

import errno as errno_codes
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import CafeError


class WriteError(CafeError):
    """The disk refused a write; the message names the file and the cause."""


def write_cause(e: BaseException) -> str:
    """'No space left on device (ENOSPC)' from an OSError or a library's message with an errno in it
    (h5py: ``errno = 28``; Rust: ``code: 28``), else the message's first line."""
    code = getattr(e, "errno", None)
    if not code:
        found = re.search(r"(?:errno = |code: )(\d+)", str(e))
        code = int(found.group(1)) if found else None
    if code:
        return f"{os.strerror(code)} ({errno_codes.errorcode.get(code, code)})"
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def write_error(path: Path, e: BaseException, kept: str = "") -> WriteError:
    """The one line of a failed write of ``path``: the file, the cause, what was kept."""
    return WriteError(f"{path}: writing failed: {write_cause(e)}." + (f" {kept}" if kept else "")
                      + " Free space (or pick a writable place) and rerun.")


def write_atomic(path: Path, write: Callable[[Path], None], kept: str = "",
                 errors: tuple[type[BaseException], ...] = (OSError,)) -> None:
    """``write(tmp)`` then rename ``tmp`` to ``path``; on a failed write (one of ``errors``, ``OSError`` and
    anything a library raises for it) the ``.tmp`` is removed and :class:`WriteError` names ``path``."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)  # a kill mid-write never leaves a half file under the real name
    except errors as e:
        _remove(tmp)
        raise write_error(path, e, kept) from None
    except BaseException:  # Ctrl-C, SIGTERM: no half file left either
        _remove(tmp)
        raise


def write_bytes(path: Path, data: bytes, kept: str = "") -> None:
    """``data`` into ``path`` atomically (see :func:`write_atomic`)."""
    write_atomic(path, lambda p: p.write_bytes(data), kept)


def write_text(path: Path, text: str, kept: str = "") -> None:
    """UTF-8 ``text`` into ``path`` atomically; file names that are not UTF-8 (kept by Python as
    surrogate escapes) are written back as their original bytes."""
    write_bytes(path, text.encode("utf-8", "surrogateescape"), kept)


# errors of the file system a user can fix (space, quota, permissions, a file where a folder should be)
FILE_SYSTEM_ERRORS = frozenset({errno_codes.ENOSPC, errno_codes.EFBIG, errno_codes.EDQUOT, errno_codes.EROFS,
                                errno_codes.EACCES, errno_codes.EPERM, errno_codes.EIO, errno_codes.ENOTDIR,
                                errno_codes.EISDIR})


def file_system_error(e: OSError) -> WriteError | None:
    """The one line for an OSError of the file system that reached the command line unhandled (a folder that
    cannot be made, a full disk at a place no other check covered): the file and the cause; None for others."""
    if e.errno not in FILE_SYSTEM_ERRORS:
        return None
    where = e.filename if e.filename is not None else "a file"
    return WriteError(f"{where}: {write_cause(e)}; free space or pick a writable place, and rerun.")


def printable(text: str) -> str:
    """``text`` safe to print: bytes of a file name that is not UTF-8 (surrogate escapes) shown as U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def check_writable(folder: Path, what: str) -> None:
    """Refuse now, before any work, a folder ``what`` (e.g. ``--out``) cannot be written to: it is made if
    missing and a file is created and removed in it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".cafe-write-test-", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise WriteError(f"{what} {folder}: cannot write there ({write_cause(e)}); pick a writable folder.") from None


def _remove(tmp: Path) -> None:
    try:
        tmp.unlink(missing_ok=True)
    except OSError:
        pass


def check_outputs(out_file: Path | None, annotated: Path | None) -> None:
    """``cafe predict``: refuse an unwritable ``--out`` or ``--save-annotated`` before any face is looked at
    (and before torch is imported, so a wrong flag costs no model load)."""
    if out_file is not None:
        check_writable(out_file.parent, "--out")
    if annotated is not None:
        check_writable(annotated, "--save-annotated")
