"""FERPlus: the FER2013 faces relabelled by ten annotators each; the label is the majority vote."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .base import DatasetError, ImageReadError, Reader, ReadResult, Sample, open_text, parse_int
from .registry import register

FOLDER_SPLITS = (("FER2013Train", "train"), ("FER2013Valid", "val"), ("FER2013Test", "test"))
USAGE_SPLITS = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
VOTE_COLUMNS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear",
                "contempt", "unknown", "NF")
VOTE_TO_TARGET = {0: 6, 1: 3, 2: 0, 3: 4, 4: 5, 5: 2, 6: 1}  # contempt, unknown, NF have no target
TIE_RULES = ("drop", "first")
PIXELS_FILE, VOTES_FILE = "fer2013.csv", "fer2013new.csv"
SIDE = 48  # FER2013 faces are 48x48 grey


def majority(votes: list[int], ties: str) -> tuple[int | None, str | None]:
    """(target id, None) for a usable row, or (None, why the row is dropped).

    Tie rule: with ``ties="drop"`` a row whose highest count is shared by two or more
    columns is dropped; with ``ties="first"`` the first of them in the csv column order
    (neutral, happiness, surprise, ...) wins.  A winner of contempt, unknown or NF drops
    the row either way: those are not among the seven target classes.
    """
    top = max(votes)
    if top <= 0:
        return None, "no votes"
    winners = [i for i, v in enumerate(votes) if v == top]
    if len(winners) > 1 and ties == "drop":
        return None, "tied majority vote"
    if winners[0] not in VOTE_TO_TARGET:
        return None, f"majority vote {VOTE_COLUMNS[winners[0]]}"
    return VOTE_TO_TARGET[winners[0]], None


def parse_votes(fields: list[str]) -> list[int] | None:
    """The ten vote counts, or None when there are not ten non-negative integers."""
    votes = [parse_int(f) for f in fields]
    if len(votes) != len(VOTE_COLUMNS) or any(v is None or v < 0 for v in votes):
        return None
    return votes  # type: ignore[return-value]


def decode_pixels(text: str) -> np.ndarray | None:
    """A FER2013 ``pixels`` field as a 48x48 uint8 array, or None when it is not 2304 bytes."""
    values = text.split()
    if len(values) != SIDE * SIDE:
        return None
    try:
        grey = np.array(values, dtype=np.int32)
    except ValueError:
        return None
    if grey.min() < 0 or grey.max() > 255:
        return None
    return grey.astype(np.uint8).reshape(SIDE, SIDE)


@register
class FerPlus(Reader):
    """FERPlus majority-vote labels, from either of its two published forms (detected).

    1. ``FER2013Train|FER2013Valid|FER2013Test/`` with PNGs and a headerless ``label.csv``
       (name, face box, 10 vote counts), as FERPlus's ``generate_training_data.py`` writes them.
       The root may also be the parent holding them in ``data/``.
    2. ``fer2013.csv`` (Kaggle FER2013: emotion, pixels, Usage) next to ``fer2013new.csv``
       (Usage, Image name, 10 vote counts), aligned row for row.  Samples are then named
       ``fer2013.csv#<data row>`` and :meth:`open` decodes the pixel row.

    FER2013Valid / PublicTest is "val" and FER2013Test / PrivateTest is "test".  Rows whose
    majority is contempt, unknown or NF, and (by default) tied rows, are dropped and listed
    in ``ReadResult.skipped``; see :func:`majority` for the tie rule (option ``ties``).
    """

    name = "ferplus"
    description = "FERPlus (FER2013 relabelled, majority vote)"
    layout = "FER2013Train|FER2013Valid|FER2013Test/{label.csv,*.png}, or fer2013.csv + fer2013new.csv"

    def __init__(self, root: str | Path, *, strict: bool = True, ties: str = "drop"):
        super().__init__(root, strict=strict)
        if ties not in TIE_RULES:
            raise DatasetError(f"ties must be one of {', '.join(TIE_RULES)}, not {ties!r}")
        self.ties = ties
        self.root, self.form = self._locate()
        self._pixels: list[np.ndarray | None] | None = None  # fer2013.csv decoded on first open()

    def _locate(self) -> tuple[Path, str]:
        """The folder holding the data and which form it is in: 'folders' or 'csv'."""
        bases = (self.root, self.root / "data")
        for base in bases:  # the FERPlus repository keeps fer2013new.csv beside data/FER2013*/: folders win
            if any((base / folder).is_dir() for folder, _ in FOLDER_SPLITS):
                return base, "folders"
        for base in bases:
            if (base / VOTES_FILE).is_file():
                if not (base / PIXELS_FILE).is_file():
                    raise DatasetError(f"{PIXELS_FILE} not found next to {VOTES_FILE}: FERPlus only "
                                       f"relabels FER2013's {PIXELS_FILE}; put both files in one folder", base)
                return base, "csv"
        raise DatasetError(f"no FER2013Train/, FER2013Valid/, FER2013Test/ folder and no {VOTES_FILE} "
                           f"here or in data/; expected {self.layout}", self.root)

    def options(self) -> dict[str, Any]:
        return {} if self.ties == "drop" else {"ties": self.ties}

    def read(self) -> ReadResult:
        result = ReadResult([])
        if self.form == "folders":
            for folder, split in FOLDER_SPLITS:
                if (self.root / folder).is_dir():
                    self._read_folder(result, folder, split)
        else:
            self._read_csv(result)
        return result

    def _read_folder(self, result: ReadResult, folder: str, split: str) -> None:
        label_file = self.root / folder / "label.csv"
        if not label_file.is_file():
            raise DatasetError("label.csv not found: FERPlus's generate_training_data.py writes it "
                               "next to the PNGs", label_file)
        seen: dict[str, tuple[int, int]] = {}  # image -> (line, label) of its first row
        with open_text(label_file) as f:
            rows = csv.reader(f)
            for row in rows:
                if any(field.strip() for field in row):
                    self._folder_row(result, label_file, rows.line_num, row, folder, split, seen)

    def _folder_row(self, result: ReadResult, label_file: Path, number: int, row: list[str],
                    folder: str, split: str, seen: dict[str, tuple[int, int]]) -> None:
        votes = parse_votes(row[2:]) if len(row) == 2 + len(VOTE_COLUMNS) else None
        if votes is None:
            self.problem(result, "expected name, face box and 10 vote counts", label_file, number)
            return
        label, reason = majority(votes, self.ties)
        if label is None:
            result.skipped.append((f"{folder}/label.csv:{number}", reason or ""))
            return
        path = f"{folder}/{row[0].strip()}"
        if not row[0].strip() or not os.path.exists(self.root / path):
            self.problem(result, f"image {path} not found", label_file, number)
            return
        if path in seen:  # the same image listed twice is one sample
            first, first_label = seen[path]
            if first_label == label:
                result.skipped.append((f"{folder}/label.csv:{number}", f"{path} repeats line {first}"))
            else:
                self.problem(result, f"{path} is listed twice with different majority labels: line {first} gives "
                             f"{first_label}, line {number} gives {label}; fix the list", label_file, number)
            return
        seen[path] = (number, label)
        result.samples.append(Sample(path, label, split))

    def _read_csv(self, result: ReadResult) -> None:
        usages = self._pixel_usages()
        votes_file = self.root / VOTES_FILE
        with open_text(votes_file) as f:
            rows = csv.reader(f)
            header = [h.strip() for h in next(rows, [])]
            if header[:2] != ["Usage", "Image name"]:
                raise DatasetError("expected the header 'Usage,Image name,neutral,happiness,...'",
                                   votes_file, 1)
            index = 0
            for row in rows:
                if not any(field.strip() for field in row):
                    continue
                if index >= len(usages) or row[0].strip() != usages[index]:
                    raise DatasetError(f"row {index} does not match row {index} of {PIXELS_FILE} (Usage "
                                       "differs or too many rows): use both files of the same FER2013 "
                                       "release, unsorted", votes_file, rows.line_num)
                self._csv_row(result, votes_file, rows.line_num, row, index)
                index += 1
        if index != len(usages):
            raise DatasetError(f"{index} rows but {PIXELS_FILE} has {len(usages)}: the files must align "
                               "row for row", votes_file)

    def _csv_row(self, result: ReadResult, votes_file: Path, number: int, row: list[str], index: int) -> None:
        split = USAGE_SPLITS.get(row[0].strip())
        votes = parse_votes(row[2:]) if len(row) == 2 + len(VOTE_COLUMNS) else None
        if split is None or votes is None:
            self.problem(result, "expected Usage (Training, PublicTest or PrivateTest), Image name and "
                         "10 vote counts", votes_file, number)
            return
        where = f"{VOTES_FILE}:{number}"
        if not row[1].strip():
            result.skipped.append((where, "no image name (dropped by FERPlus)"))
            return
        label, reason = majority(votes, self.ties)
        if label is None:
            result.skipped.append((where, reason or ""))
            return
        result.samples.append(Sample(f"{PIXELS_FILE}#{index}", label, split))

    def _pixel_usages(self) -> list[str]:
        """The Usage of every fer2013.csv row: checks that the two csv files line up."""
        pixels_file = self.root / PIXELS_FILE
        with pixels_file.open(newline="", encoding="utf-8-sig") as f:
            rows = csv.DictReader(f)
            if not {"pixels", "Usage"} <= set(rows.fieldnames or ()):
                raise DatasetError("expected the header 'emotion,pixels,Usage'", pixels_file, 1)
            return [row["Usage"].strip() for row in rows]

    def open(self, path: str) -> Image.Image:
        if self.form == "folders":
            return super().open(path)
        source, _, index_text = path.partition("#")
        index = parse_int(index_text)
        pixels = self._pixel_rows()
        if source != PIXELS_FILE or index is None or not 0 <= index < len(pixels):
            raise ImageReadError(f"{path}: not a data row of {PIXELS_FILE} ({len(pixels)} rows)")
        grey = pixels[index]
        if grey is None:
            raise ImageReadError(f"{path}: the pixels field is not {SIDE * SIDE} values 0..255")
        return Image.fromarray(grey).convert("RGB")

    def _pixel_rows(self) -> list[np.ndarray | None]:
        """Every fer2013.csv pixel row, decoded once (~80 MB) rather than re-read per image."""
        if self._pixels is None:
            with (self.root / PIXELS_FILE).open(newline="", encoding="utf-8-sig") as f:
                self._pixels = [decode_pixels(row["pixels"]) for row in csv.DictReader(f)]
        return self._pixels
