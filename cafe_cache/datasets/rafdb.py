"""RAF-DB basic: one label list names every image, its split (by prefix) and its class."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .base import DatasetError, Reader, ReadResult, Sample, open_text, parse_int
from .registry import register

LIST_FILE = "EmoLabel/list_patition_label.txt"  # sic: the dataset's own spelling
PREFIX_SPLITS = {"train": "train", "test": "test"}


@register
class RafDb(Reader):
    """RAF-DB basic emotion set; its ids 1..7 are already in the target class order, minus one.

    ``aligned=True`` reads the 100x100 aligned faces the paper uses; ``aligned=False`` the
    original photographs.  The root is the ``basic`` folder; its parent is accepted too.
    """

    name = "rafdb"
    description = "RAF-DB basic emotions: 12,271 train / 3,068 test"
    layout = "EmoLabel/list_patition_label.txt + Image/aligned/<stem>_aligned.jpg"

    def __init__(self, root: str | Path, *, strict: bool = True, aligned: bool = True):
        super().__init__(root, strict=strict)
        self.aligned = aligned
        if not (self.root / LIST_FILE).is_file() and (self.root / "basic" / LIST_FILE).is_file():
            self.root = self.root / "basic"
        if not (self.root / LIST_FILE).is_file():
            raise DatasetError(f"{LIST_FILE} not found: --root must be RAF-DB's 'basic' folder "
                               f"({self.layout})", self.root)
        image_dir = self.root / self._image_dir()
        if not image_dir.is_dir():
            raise DatasetError(f"image folder {self._image_dir()} not found ({self.layout}; "
                               "option aligned=False reads Image/original)", image_dir)

    def _image_dir(self) -> str:
        return "Image/aligned" if self.aligned else "Image/original"

    def image_path(self, name: str) -> str:
        """Where the list's ``train_00001.jpg`` lives, relative to the root."""
        if self.aligned:
            return f"Image/aligned/{Path(name).stem}_aligned.jpg"
        return f"Image/original/{name}"

    def options(self) -> dict[str, Any]:
        return {} if self.aligned else {"aligned": False}

    def read(self) -> ReadResult:
        result = ReadResult([])
        list_file = self.root / LIST_FILE
        seen: dict[str, tuple[int, int]] = {}  # image name -> (line, label) of its first line
        # splitlines() accepts the CRLF line ends of the public copy as well as LF.
        for number, line in enumerate(open_text(list_file).read().splitlines(), 1):
            if line.strip() and self._first_time(result, list_file, number, line, seen):
                self._read_line(result, list_file, number, line)
        return result

    def _first_time(self, result: ReadResult, list_file: Path, number: int, line: str,
                    seen: dict[str, tuple[int, int]]) -> bool:
        """False for a repeated image name: skipped when its label agrees, a problem when it does not."""
        fields = line.split()
        if len(fields) != 2:
            return True  # _read_line reports it
        name, label = fields
        if name not in seen:
            seen[name] = (number, parse_int(label))
            return True
        first, first_label = seen[name]
        if parse_int(label) == first_label:
            result.skipped.append((f"{list_file}:{number}", f"{name} repeats line {first} with the same label"))
        else:
            self.problem(result, f"{name} is listed twice with different labels: line {first} says {first_label}, "
                         f"line {number} says {label}; fix the list", list_file, number)
        return False

    def _read_line(self, result: ReadResult, list_file: Path, number: int, line: str) -> None:
        fields = line.split()
        if len(fields) != 2:
            self.problem(result, f"expected 'NAME LABEL', got {line.strip()!r}", list_file, number)
            return
        name, label_text = fields
        split = PREFIX_SPLITS.get(name.split("_", 1)[0])
        if split is None:
            self.problem(result, f"image name {name!r} does not start with train_ or test_", list_file, number)
            return
        label = parse_int(label_text)
        if label is None or not 1 <= label <= 7:
            self.problem(result, f"label {label_text!r} is not an id 1..7", list_file, number)
            return
        path = self.image_path(name)
        if not os.path.exists(self.root / path):
            self.problem(result, f"image {path} not found", list_file, number)
            return
        result.samples.append(Sample(path, label - 1, split))
