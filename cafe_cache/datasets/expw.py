"""ExpW (Expression in-the-Wild): web photos with one line per face in ``label/label.lst``.

A line is ``image_name face_id top left right bottom confidence label`` with ExpW's labels
0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral. The faces are cropped from the
photos at read time; the box is part of the sample's name (``image/origin/x.jpg#0:top,left,right,bottom``),
so the cache records it and every later read (training, Grad-CAM) crops the same pixels.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from .base import DatasetError, ImageReadError, Reader, ReadResult, Sample, open_rgb, open_text, parse_int
from .registry import register

IMAGES_DIR, LABEL_FILE = "image/origin", "label/label.lst"
EXPW_TO_TARGET = {0: 5, 1: 2, 2: 1, 3: 3, 4: 4, 5: 0, 6: 6}  # angry disgust fear happy sad surprise neutral
FIELDS = "image_name face_id top left right bottom confidence label"


def face_id(image: str, face: int, box: tuple[int, int, int, int]) -> str:
    """A face's sample name: its photo, its face id and its box (top, left, right, bottom) in pixels."""
    return f"{IMAGES_DIR}/{image}#{face}:{','.join(str(v) for v in box)}"


def parse_face_id(path: str) -> tuple[str, tuple[int, int, int, int]]:
    """(photo path, box) of a sample name made by :func:`face_id`."""
    photo, _, rest = path.rpartition("#")
    values = [parse_int(v) for v in rest.partition(":")[2].split(",")]
    if not photo or len(values) != 4 or any(v is None for v in values):
        raise ImageReadError(f"{path}: not an ExpW face name (photo#face:top,left,right,bottom)")
    return photo, tuple(values)  # type: ignore[return-value]


@register
class ExpW(Reader):
    """ExpW faces cropped from ``image/origin/*.jpg`` by the boxes of ``label/label.lst``, ExpW's classes mapped
    to the RAF-DB order. A malformed line, a box that is empty or a missing photo is reported by ``file:line``
    (``--skip-bad`` drops and counts it). Every face is a test image."""

    name = "expw"
    description = "ExpW (Expression in-the-Wild): faces cropped from the photos by label.lst's boxes"
    layout = f"{IMAGES_DIR}/*.jpg + {LABEL_FILE} ({FIELDS})"

    def __init__(self, root: str | Path, *, strict: bool = True):
        super().__init__(root, strict=strict)
        if not (self.root / LABEL_FILE).is_file():
            raise DatasetError(f"{LABEL_FILE} not found; expected {self.layout}", self.root)
        if not (self.root / IMAGES_DIR).is_dir():
            raise DatasetError(f"{IMAGES_DIR}/ not found; expected {self.layout}", self.root)

    def read(self) -> ReadResult:
        result = ReadResult([])
        label_file = self.root / LABEL_FILE
        for number, line in enumerate(open_text(label_file).read().splitlines(), 1):
            if line.strip():
                self._read_line(result, label_file, number, line)
        return result

    def _read_line(self, result: ReadResult, label_file: Path, number: int, line: str) -> None:
        fields = line.split()
        values = [parse_int(v) for v in fields[1:6] + fields[7:]] if len(fields) == 8 else []
        if len(values) != 6 or any(v is None for v in values) or not _is_number(fields[6]):
            self.problem(result, f"expected '{FIELDS}', got {line.strip()!r}", label_file, number)
            return
        face, top, left, right, bottom, label = values
        if label not in EXPW_TO_TARGET:
            self.problem(result, f"label {label} is not an ExpW class 0..6", label_file, number)
        elif right <= left or bottom <= top or min(top, left) < 0:
            self.problem(result, f"face box top {top} left {left} right {right} bottom {bottom} is empty or "
                         "outside the photo", label_file, number)
        elif not os.path.exists(self.root / IMAGES_DIR / fields[0]):
            self.problem(result, f"image {IMAGES_DIR}/{fields[0]} not found", label_file, number)
        else:
            path = face_id(fields[0], face, (top, left, right, bottom))
            result.samples.append(Sample(path, EXPW_TO_TARGET[label], "test"))

    def open(self, path: str) -> Image.Image:
        """The face: the photo cropped to the box in its name (clipped to the photo)."""
        photo, (top, left, right, bottom) = parse_face_id(path)
        image = open_rgb(self.root / photo)
        box = (max(0, left), max(0, top), min(image.width, right), min(image.height, bottom))
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ImageReadError(f"face box {box} lies outside the {image.width}x{image.height} photo")
        return image.crop(box)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
