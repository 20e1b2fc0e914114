"""Class-folder datasets: the generic ``folder`` reader and the walk SFEW and MMA share."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from ..classes import CLASSES, class_id
from .base import DatasetError, Reader, ReadResult, Sample
from .registry import register

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
SKIP = -1  # a class-map value that drops a class folder on purpose (e.g. CK+ contempt)
CLASS_ID_HELP = ", ".join(f"{i} {c}" for i, c in enumerate(CLASSES)) + f", {SKIP} skip"


def image_files(folder: Path) -> list[Path]:
    """Every image at any depth below ``folder``, any case of extension, in a stable sorted order.

    Hidden files are left out because macOS copies leave ``._name.jpg`` resource forks that are
    not images.
    """
    return scan_images(folder)[0]


def scan_images(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """(image files, entries named like images that are not files, with why) below ``folder``."""
    files, odd = [], []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() not in IMAGE_EXTENSIONS or p.name.startswith("."):
            continue
        if p.is_file():
            files.append(p)
        elif p.is_symlink() and not p.exists():
            odd.append((p, "dangling symbolic link (its target does not exist or loops)"))
        else:
            odd.append((p, "a folder named like an image, not an image file" if p.is_dir() else "not a regular file"))
    return files, odd


class ClassFolderReader(Reader):
    """``<root>/<split folder>/<class folder>/<images>``, the layout of SFEW, MMA and many others.

    Subclasses say which split folder names they know (``split_folders``) and may override
    :meth:`label_of` to map class folder names differently.  Folders that are not split folders
    are ignored, so SFEW's unlabelled ``Test`` folder is never read.
    """

    split_folders: ClassVar[dict[str, str]]  # lower-case folder name -> split
    unknown_class_hint: ClassVar[str] = ""

    def __init__(self, root: str | Path, *, strict: bool = True):
        super().__init__(root, strict=strict)
        self._splits = self.find_splits()
        if not self._splits:
            names = ", ".join(sorted(self.split_folders))
            raise DatasetError(f"no split folder ({names}) found; expected {self.layout}", self.root)

    def find_splits(self) -> list[tuple[Path, str]]:
        """(folder, split) for every split folder directly below the root, matched in any case."""
        return [(d, self.split_folders[d.name.lower()]) for d in sorted(self.root.iterdir())
                if d.is_dir() and d.name.lower() in self.split_folders]

    def label_of(self, folder_name: str) -> int | None:
        """Target id of a class folder, ``SKIP`` to leave it out, None when it is unknown."""
        return class_id(folder_name)

    def read(self) -> ReadResult:
        result = ReadResult([])
        for split_dir, split in self._splits:
            for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
                self._read_class(result, class_dir, split)
        return result

    def _read_class(self, result: ReadResult, class_dir: Path, split: str) -> None:
        where = class_dir.relative_to(self.root).as_posix()
        label = self.label_of(class_dir.name)
        if label is None:
            self.problem(result, f"unknown class folder {class_dir.name!r}{self.unknown_class_hint}", class_dir)
        elif label == SKIP:
            result.skipped.append((where, "class folder mapped to -1 (skipped)"))
        else:
            files, odd = scan_images(class_dir)
            result.samples.extend(Sample(f.relative_to(self.root).as_posix(), label, split) for f in files)
            result.skipped.extend((p.relative_to(self.root).as_posix(), why) for p, why in odd)


SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "test": "test", "testing": "test"}


@register
class FolderDataset(ClassFolderReader):
    """Any dataset stored as class folders, optionally inside split folders.

    Split folders: train/training, val/valid/validation, test/testing (any case); any subset is
    fine.  A root holding class folders directly, with no split folder, is read as one "test"
    split, the usual case for an extra evaluation-only set.  Class folders are matched by English
    name (any case, usual variants such as angry/anger, happiness, surprised); ``class_map`` maps
    other names (e.g. CK+ abbreviations) to ids, ``-1`` leaving a folder out.
    """

    name = "folder"
    description = "any class-folder dataset (English class names or --class-map)"
    layout = "[train|val|test/]<class>/**/*.{jpg,png,...}"
    split_folders = SPLIT_ALIASES
    unknown_class_hint = f"; pass --class-map NAME=ID for it (ids: {CLASS_ID_HELP})"

    def __init__(self, root: str | Path, *, strict: bool = True,
                 class_map: dict[str, int] | None = None, name: str | None = None):
        self.class_map = check_class_map(class_map)
        self._lookup = {k.strip().lower(): v for k, v in (class_map or {}).items()}
        self._name = name
        super().__init__(root, strict=strict)

    def find_splits(self) -> list[tuple[Path, str]]:
        """The split folders, or the root itself as the test split when it has none."""
        found = super().find_splits()
        if found or not any(p.is_dir() for p in self.root.iterdir()):
            return found
        return [(self.root, "test")]

    def label_of(self, folder_name: str) -> int | None:
        mapped = self._lookup.get(folder_name.strip().lower())
        return mapped if mapped is not None else class_id(folder_name)

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if self.class_map is not None:
            opts["class_map"] = dict(self.class_map)
        if self._name is not None:
            opts["name"] = self._name
        return opts

    @property
    def cache_name(self) -> str:
        """``--name``, else the root folder's name, so two folder datasets never share a cache."""
        return safe_name(self._name or self.root.resolve().name)


def check_class_map(class_map: dict[str, int] | None) -> dict[str, int] | None:
    """Reject ids outside -1..6 here, before a long read, with the valid ids in the message."""
    for key, value in (class_map or {}).items():
        if isinstance(value, bool) or not isinstance(value, int) or not SKIP <= value < len(CLASSES):
            raise DatasetError(f"class map entry {key!r}: {value!r} is not a class id ({CLASS_ID_HELP})")
    return class_map


def safe_name(text: str) -> str:
    """A cache file stem: anything but letters, digits, '.', '_' and '-' becomes '_'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "folder"
