"""CK+ (the extended Cohn-Kanade release): image sequences from neutral to the peak of an expression.

Layout of the release: ``cohn-kanade-images/S005/001/S005_001_00000001.png ...`` (one folder per subject
and sequence, frames in order) and ``Emotion/S005/001/S005_001_00000011_emotion.txt`` holding the
sequence's code as a float (``   3.0000000e+00``). CK+'s codes: 0 neutral, 1 anger, 2 contempt,
3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise. Only 327 of the 593 sequences carry a label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import DatasetError, Reader, ReadResult, Sample, open_text
from .folder import image_files
from .registry import register

IMAGES_DIR, EMOTION_DIR = "cohn-kanade-images", "Emotion"
CONTEMPT = 2
CKPLUS_TO_TARGET = {0: 6, 1: 5, 3: 2, 4: 1, 5: 3, 6: 4, 7: 0}  # contempt (2) has no target class
NEUTRAL_RULES = ("first", "none")
NEUTRAL = 6


def parse_fold(text: str | None) -> tuple[int, int] | None:
    """``'3/10'`` -> (3, 10): fold 3 of 10 is the test split; None when no folds are asked for."""
    if text is None:
        return None
    index, sep, count = str(text).partition("/")
    if sep and index.strip().isdecimal() and count.strip().isdecimal() and 0 <= int(index) < int(count):
        return int(index), int(count)
    raise DatasetError(f"CK+ fold {text!r} is not I/K with 0 <= I < K (e.g. 0/10: subjects are dealt into K "
                       "folds in sorted order, fold I is the test split)")


@register
class CkPlus(Reader):
    """CK+ sequences: the last ``peak`` frames of every labelled sequence as its expression and (``neutral=
    "first"``) its first frame as Neutral. Contempt sequences and unlabelled sequences are dropped and counted.

    Every image is a test image (CK+ is a target set). ``fold="I/K"`` deals the subjects (sorted) into K
    folds, subject number j going to fold j mod K: fold I is the test split and the others train, so that
    no subject is in both.
    """

    name = "ckplus"
    description = "CK+ (extended Cohn-Kanade): peak frames of the labelled sequences; contempt dropped"
    layout = f"{IMAGES_DIR}/S*/NNN/*.png + {EMOTION_DIR}/S*/NNN/*_emotion.txt (codes 0-7)"

    def __init__(self, root: str | Path, *, strict: bool = True, peak: int = 1, neutral: str = "first",
                 fold: str | None = None):
        super().__init__(root, strict=strict)
        if isinstance(peak, bool) or not isinstance(peak, int) or peak < 1:
            raise DatasetError(f"CK+ peak frames {peak!r}: must be a whole number >= 1 (--ckplus-peak)")
        if neutral not in NEUTRAL_RULES:
            raise DatasetError(f"CK+ neutral {neutral!r}: choose first or none (--ckplus-neutral)")
        self.peak, self.neutral, self.fold = peak, neutral, parse_fold(fold)
        for folder in (IMAGES_DIR, EMOTION_DIR):
            if not (self.root / folder).is_dir():
                raise DatasetError(f"{folder}/ not found: --root must hold CK+'s {IMAGES_DIR}/ and "
                                   f"{EMOTION_DIR}/ ({self.layout})", self.root)

    def options(self) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if self.peak != 1:
            opts["peak"] = self.peak
        if self.neutral != "first":
            opts["neutral"] = self.neutral
        if self.fold is not None:
            opts["fold"] = f"{self.fold[0]}/{self.fold[1]}"
        return opts

    @property
    def cache_name(self) -> str:
        """``ckplus``, or ``ckplus-fold3of10`` for a fold (another fold is another train/test split)."""
        return self.name if self.fold is None else f"{self.name}-fold{self.fold[0]}of{self.fold[1]}"

    def read(self) -> ReadResult:
        result = ReadResult([])
        images = self.root / IMAGES_DIR
        subjects = sorted(d.name for d in images.iterdir() if d.is_dir() and not d.name.startswith("."))
        for number, subject in enumerate(subjects):
            split = "test" if self.fold is None or number % self.fold[1] == self.fold[0] else "train"
            for sequence in sorted(d for d in (images / subject).iterdir() if d.is_dir()):
                self._read_sequence(result, sequence, split)
        return result

    def _read_sequence(self, result: ReadResult, sequence: Path, split: str) -> None:
        where = sequence.relative_to(self.root).as_posix()
        labels = sorted((self.root / EMOTION_DIR / sequence.parent.name / sequence.name).glob("*_emotion.txt"))
        if not labels:
            result.skipped.append((where, "unlabelled sequence (no Emotion file)"))
            return
        code = self._code(result, labels[-1])
        if code is None:
            return
        if code == CONTEMPT:
            result.skipped.append((where, "contempt (CK+ code 2, not among the 7 classes)"))
            return
        frames = [f.relative_to(self.root).as_posix() for f in image_files(sequence)]
        if not frames:
            self.problem(result, f"labelled sequence {where} has no frames", labels[-1])
            return
        first_peak = max(len(frames) - self.peak, 1 if self.neutral == "first" else 0)
        if self.neutral == "first":
            result.samples.append(Sample(frames[0], NEUTRAL, split))
        result.samples.extend(Sample(f, CKPLUS_TO_TARGET[code], split) for f in frames[first_peak:])

    def _code(self, result: ReadResult, label_file: Path) -> int | None:
        """The CK+ code of an Emotion file, or None (reported) when it is not one number 0..7."""
        lines = open_text(label_file).read().splitlines()
        number, text = next(((i, t) for i, t in enumerate(lines, 1) if t.strip()), (1, ""))
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not value.is_integer() or not 0 <= value <= 7 or sum(bool(t.strip()) for t in lines) != 1:
            self.problem(result, f"expected one CK+ emotion code 0..7 (e.g. 3.0000000e+00), got {text.strip()!r}",
                         label_file, number)
            return None
        return int(value)
