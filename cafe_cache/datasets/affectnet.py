"""AffectNet (manually annotated part), 7 basic classes; its validation set is the test set."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from .base import DatasetError, Reader, ReadResult, Sample, open_text, parse_int
from .folder import image_files
from .registry import register

LISTS_DIR, IMAGES_DIR = "Manually_Annotated_file_lists", "Manually_Annotated_Images"
LIST_SPLITS = (("training.csv", "train"), ("validation.csv", "test"))
NPY_SPLITS = (("train_set", "train"), ("val_set", "test"))
AFFECTNET_TO_TARGET = {0: 6, 1: 3, 2: 4, 3: 0, 4: 1, 5: 2, 6: 5}
DROPPED_IDS = {7: "Contempt", 8: "None", 9: "Uncertain", 10: "Non-face"}


@register
class AffectNet(Reader):
    """AffectNet expression ids 0..6 mapped to the target order; 7..10 are dropped, not errors.

    Two layouts, detected: the official ``Manually_Annotated_file_lists/{training,validation}.csv``
    with images below ``Manually_Annotated_Images/``, or the common re-packaging
    ``train_set|val_set/images/<id>.jpg`` with ``annotations/<id>_exp.npy``.  Validation is the
    paper's test set, so it is read as "test".
    """

    name = "affectnet"
    description = "AffectNet-7 (validation is the test set)"
    layout = (f"{LISTS_DIR}/{{training,validation}}.csv + {IMAGES_DIR}/, "
              "or train_set|val_set/{images/<id>.jpg, annotations/<id>_exp.npy}")

    def __init__(self, root: str | Path, *, strict: bool = True):
        super().__init__(root, strict=strict)
        if (self.root / LISTS_DIR).is_dir():
            self.form = "lists"
            self._check_lists()
        elif any((self.root / folder).is_dir() for folder, _ in NPY_SPLITS):
            self.form = "npy"
        else:
            raise DatasetError(f"neither {LISTS_DIR}/ nor train_set/ or val_set/ found; expected "
                               f"{self.layout}", self.root)

    def _check_lists(self) -> None:
        """Fail once, up front, rather than once per line when a whole folder is missing."""
        if not any((self.root / LISTS_DIR / name).is_file() for name, _ in LIST_SPLITS):
            raise DatasetError("neither training.csv nor validation.csv found", self.root / LISTS_DIR)
        if not (self.root / IMAGES_DIR).is_dir():
            raise DatasetError(f"image folder not found (expected next to {LISTS_DIR}/)", self.root / IMAGES_DIR)

    def read(self) -> ReadResult:
        result = ReadResult([])
        if self.form == "lists":
            for name, split in LIST_SPLITS:
                if (self.root / LISTS_DIR / name).is_file():
                    self._read_list(result, self.root / LISTS_DIR / name, split)
        else:
            for folder, split in NPY_SPLITS:
                if (self.root / folder).is_dir():
                    self._read_npy_split(result, folder, split)
        return result

    def _label(self, result: ReadResult, text: str, where: str, file: Path, line: int | None) -> int | None:
        """Target id of an AffectNet expression id; a dropped id is recorded, a bad one reported."""
        code = parse_int(text)
        if code in DROPPED_IDS:
            result.skipped.append((where, f"class {code} {DROPPED_IDS[code]}"))
        elif code not in AFFECTNET_TO_TARGET:
            self.problem(result, f"expression {text.strip()!r} is not an AffectNet id 0..10", file, line)
        else:
            return AFFECTNET_TO_TARGET[code]
        return None

    def _read_list(self, result: ReadResult, list_file: Path, split: str) -> None:
        with open_text(list_file) as f:
            rows = csv.DictReader(f)
            if not {"subDirectory_filePath", "expression"} <= set(rows.fieldnames or ()):
                raise DatasetError("expected a header with subDirectory_filePath and expression", list_file, 1)
            for row in rows:
                number = rows.line_num
                where = f"{LISTS_DIR}/{list_file.name}:{number}"
                label = self._label(result, row["expression"] or "", where, list_file, number)
                if label is None:
                    continue
                path = f"{IMAGES_DIR}/{(row['subDirectory_filePath'] or '').strip()}"
                if not os.path.exists(self.root / path):
                    self.problem(result, f"image {path} not found", list_file, number)
                    continue
                result.samples.append(Sample(path, label, split))

    def _read_npy_split(self, result: ReadResult, folder: str, split: str) -> None:
        if not (self.root / folder / "images").is_dir():
            raise DatasetError(f"images/ not found; expected {self.layout}", self.root / folder)
        images = image_files(self.root / folder / "images")
        images.sort(key=lambda p: (not p.stem.isdecimal(), int(p.stem) if p.stem.isdecimal() else 0, p.name))
        for image in images:
            annotation = self.root / folder / "annotations" / f"{image.stem}_exp.npy"
            try:
                text = str(np.asarray(np.load(annotation, allow_pickle=False)).item())
            except (OSError, ValueError) as e:
                self.problem(result, f"cannot read the label of {image.name} ({type(e).__name__}: {e})", annotation)
                continue
            label = self._label(result, text, f"{folder}/annotations/{annotation.name}", annotation, None)
            if label is not None:
                result.samples.append(Sample(image.relative_to(self.root).as_posix(), label, split))
