"""JAFFE: 213 images of 10 Japanese female posers, the expression coded in every file name."""

from __future__ import annotations

import re
from pathlib import Path

from .base import DatasetError, Reader, ReadResult, Sample
from .folder import image_files
from .registry import register

JAFFE_TO_TARGET = {"AN": 5, "DI": 2, "FE": 1, "HA": 3, "NE": 6, "SA": 4, "SU": 0}
NAME = re.compile(r"^([A-Za-z]{2})\.([A-Za-z]{2})(\d*)\.(\d+)$")  # KA.AN1.39 (poser, expression + take, id)


@register
class Jaffe(Reader):
    """The original flat folder of ``XX.YYn.NNN.tiff`` files: poser XX, expression code YY (AN DI FE HA NE
    SA SU), take n, image number NNN. Any image extension and nested folders are accepted; a file named
    otherwise, or with an unknown code, is dropped and counted. Every image is a test image."""

    name = "jaffe"
    description = "JAFFE (Japanese female facial expressions): codes AN DI FE HA NE SA SU in the file name"
    layout = "XX.YYn.NNN.tiff (flat folder, e.g. KA.AN1.39.tiff; any image extension)"

    def __init__(self, root: str | Path, *, strict: bool = True):
        super().__init__(root, strict=strict)
        if not image_files(self.root):
            raise DatasetError(f"no image files found; expected {self.layout}", self.root)

    def read(self) -> ReadResult:
        result = ReadResult([])
        for f in image_files(self.root):
            where = f.relative_to(self.root).as_posix()
            match = NAME.match(f.stem)
            code = match.group(2).upper() if match else None
            if match is None:
                result.skipped.append((where, "name not XX.YYn.NNN.<ext> (e.g. KA.AN1.39.tiff)"))
            elif code not in JAFFE_TO_TARGET:
                result.skipped.append((where, f"unknown expression code {code!r} (JAFFE: AN DI FE HA NE SA SU)"))
            else:
                result.samples.append(Sample(where, JAFFE_TO_TARGET[code], "test"))
        return result
