"""KDEF (Karolinska Directed Emotional Faces): 70 posers x 7 expressions x 5 views x 2 sessions."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..options import split_list
from .base import DatasetError, Reader, ReadResult, Sample
from .folder import image_files
from .registry import register

KDEF_TO_TARGET = {"AF": 1, "AN": 5, "DI": 2, "HA": 3, "NE": 6, "SA": 4, "SU": 0}
VIEWS = ("FL", "HL", "S", "HR", "FR")  # full left, half left, straight, half right, full right
DEFAULT_VIEWS = ("S",)
NAME = re.compile(r"^([AB][FM]\d\d)([A-Z]{2})(FL|HL|S|HR|FR)$", re.IGNORECASE)  # AF01 + AN + S


def parse_views(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``'S'``, ``'S,HL,HR'`` or ``'all'`` -> the views, in KDEF's order."""
    words = [w.upper() for w in (split_list(text) or []) if w] if isinstance(text, str) else [w.upper() for w in text]
    if words == ["ALL"]:
        return VIEWS
    bad = [w for w in words if w not in VIEWS]
    if bad or not words:
        raise DatasetError(f"KDEF views {text!r}: choose from {', '.join(VIEWS)} (comma-separated) or all "
                           "(--kdef-views)")
    return tuple(v for v in VIEWS if v in words)


@register
class Kdef(Reader):
    """``KDEF/<id>/<id><expr><view>.JPG``: id AF01 (session A/B, female/male, number), expression AF AN DI HA
    NE SA SU, view FL HL S HR FR. ``views`` (default S, the straight faces) picks the views read; the others
    are dropped and counted, as are files named otherwise. The root may be ``KDEF/`` or the folder holding it
    (``KDEF_and_AKDEF/``). Every image is a test image."""

    name = "kdef"
    description = "KDEF: codes AF AN DI HA NE SA SU and views FL HL S HR FR in the file name; straight view by default"
    layout = "KDEF/<id>/<id><expr><view>.JPG (e.g. KDEF/AF01/AF01ANS.JPG)"

    def __init__(self, root: str | Path, *, strict: bool = True, views: str | tuple[str, ...] = DEFAULT_VIEWS):
        super().__init__(root, strict=strict)
        self.views = parse_views(views)
        if (self.root / "KDEF").is_dir():
            self.root = self.root / "KDEF"
        if not image_files(self.root):
            raise DatasetError(f"no image files found; expected {self.layout}", self.root)

    def options(self) -> dict[str, Any]:
        return {} if self.views == DEFAULT_VIEWS else {"views": ",".join(self.views)}

    @property
    def cache_name(self) -> str:
        """``kdef`` for the straight view, else ``kdef-<views>`` (another set of images)."""
        return self.name if self.views == DEFAULT_VIEWS else \
            "kdef-" + ("all" if self.views == VIEWS else "-".join(v.lower() for v in self.views))

    def read(self) -> ReadResult:
        result = ReadResult([])
        for f in image_files(self.root):
            where = f.relative_to(self.root).as_posix()
            match = NAME.match(f.stem)
            if match is None:
                result.skipped.append((where, "name not <id><expr><view> (e.g. AF01ANS.JPG)"))
                continue
            code, view = match.group(2).upper(), match.group(3).upper()
            if code not in KDEF_TO_TARGET:
                result.skipped.append((where, f"unknown expression code {code!r} (KDEF: AF AN DI HA NE SA SU)"))
            elif view not in self.views:
                result.skipped.append((where, f"view {view} not selected (--kdef-views)"))
            else:
                result.samples.append(Sample(where, KDEF_TO_TARGET[code], "test"))
        return result
