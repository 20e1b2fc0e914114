"""What every dataset reader yields, and the errors it raises."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from ..errors import CafeError

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Sample:
    """One labelled image: where it lives (relative to the dataset root), its label, its split."""

    path: str  # POSIX path relative to the root, or a reader-specific source id
    label: int  # target id in cafe_cache.classes order (0 Surprise ... 6 Neutral)
    split: str  # one of SPLITS


@dataclass
class ReadResult:
    samples: list[Sample]
    # (where, reason) for every entry skipped on purpose or, with strict=False, for bad lines.
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]

    def splits(self) -> list[str]:
        return [s for s in SPLITS if any(x.split == s for x in self.samples)]


class DatasetError(CafeError):
    """A dataset's files are not in the layout the reader expects.

    The message names the file (and line) and says what to do.
    """

    def __init__(self, message: str, file: str | Path | None = None, line: int | None = None):
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        super().__init__(where + message)
        self.file = str(file) if file is not None else None
        self.line = line


class ImageReadError(CafeError):
    """One image could not be read or decoded; extraction records it and goes on."""


class Reader:
    """Base class of the dataset readers.

    A reader reads a dataset's own published layout below ``root`` and yields
    :class:`Sample` objects.  ``strict=True`` turns every malformed label line,
    unknown class name or missing image into a :class:`DatasetError`; with
    ``strict=False`` they are skipped and listed in ``ReadResult.skipped``.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    layout: ClassVar[str] = ""  # one-line sketch of the expected layout, for messages and `cafe datasets`

    def __init__(self, root: str | Path, *, strict: bool = True, **options: Any):
        self.root = Path(root).expanduser()
        self.strict = strict
        if options:
            raise TypeError(f"reader {self.name!r} takes no options {sorted(options)}")
        if not self.root.is_dir():
            raise DatasetError(
                f"dataset root does not exist or is not a folder. Pass --root PATH or set "
                f"{root_env_var(self.name)} (see README, 'Dataset roots').",
                self.root,
            )

    # -- what subclasses provide --------------------------------------------------------
    def read(self) -> ReadResult:
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """Keyword options (JSON-serialisable) that rebuild this reader: stored in the cache."""
        return {}

    @property
    def cache_name(self) -> str:
        """File stem of this dataset's feature cache."""
        return self.name

    # -- shared helpers -----------------------------------------------------------------
    def open(self, path: str) -> Image.Image:
        """The RGB image of a sample; raises ImageReadError when it cannot be decoded."""
        return open_rgb(self.root / path)

    def problem(self, result: ReadResult, message: str, file: str | Path, line: int | None = None) -> None:
        """Raise in strict mode, otherwise record the problem and go on."""
        if self.strict:
            raise DatasetError(message + " (use --skip-bad to skip such entries)", file, line)
        where = f"{file}:{line}" if line is not None else str(file)
        result.skipped.append((where, message))


HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # 16-bit grey PNG/TIFF (and 32-bit int holding them)


def open_rgb(path: str | Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            return to_8bit(im).convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError, SyntaxError) as e:  # PIL raises all of these
        raise ImageReadError(f"{type(e).__name__}: {e}") from e


def to_8bit(im: Image.Image) -> Image.Image:
    """High-bit-depth grey scaled to 0..255 (``convert("RGB")`` would clip it to white); others as they are."""
    if im.mode == "F":
        raise ImageReadError("32-bit float image (mode F): not supported; convert it to 8 or 16 bits per channel")
    if im.mode not in HIGH_BIT_MODES:
        return im
    values = np.asarray(im).astype(np.int64)
    if values.size and (values.min() < 0 or values.max() > 65535):
        raise ImageReadError(f"{im.mode} image with values outside 0..65535: not supported; convert it to 8 or 16 bits")
    return Image.fromarray(((values * 255 + 32767) // 65535).astype(np.uint8), "L")


def open_text(path: Path) -> io.StringIO:
    """A label file as text (UTF-8, with or without BOM; any line ends, for ``csv``); a file that is not UTF-8
    is a DatasetError naming the line of the first bad byte."""
    data = path.read_bytes()
    try:
        return io.StringIO(data.decode("utf-8-sig"), newline="")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DatasetError(f"not UTF-8 text (byte 0x{data[e.start]:02x}); save the file as UTF-8", path, line) from None


def parse_int(text: str) -> int | None:
    """The integer in a label field, or None, so readers can report a bad field by file and line."""
    try:
        return int(text.strip())
    except ValueError:
        return None


def root_env_var(name: str) -> str:
    return f"CAFE_{name.upper().replace('-', '_')}_ROOT"
