"""What ``cafe predict`` reads: the files behind its path arguments, photos, video frames.

Everything that can go wrong with one input (missing, unsupported, corrupt) is reported
for that input only, so a folder with one bad file still gets predictions for the rest:
:func:`iter_inputs` turns such paths into items with an ``error`` instead of raising,
and the readers raise :class:`~cafe_cache.errors.CafeError` subclasses the caller can
record per file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from PIL import Image, ImageOps

from ..datasets.base import ImageReadError
from ..errors import CafeError, missing_extra

if TYPE_CHECKING:
    import cv2

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})

TRUNCATION_SLACK = 2  # frames a container's announced count may be off by without the file being cut short
InputKind = Literal["image", "video", "unsupported", "missing"]

# A frame: (index in the video from 0, seconds from the start or None if the fps is unknown, RGB image).
Frame = tuple[int, float | None, Image.Image]


class VideoReadError(CafeError):
    """A video could not be opened or decoded; predict records it and goes on."""


@dataclass(frozen=True)
class InputItem:
    """One file to predict on, or one path that cannot be used and why (``error``)."""

    path: Path
    kind: InputKind
    error: str | None = None


def iter_inputs(paths: Iterable[str | Path]) -> Iterator[InputItem]:
    """The files behind ``paths`` in order; folders expand recursively, sorted.

    Hidden files and folders inside a folder (``.DS_Store``, ``.ipynb_checkpoints``) are
    skipped; every other file comes out, classified by its suffix.
    """
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p.relative_to(path)))
            if not files:
                yield InputItem(path, "missing", "the folder holds no files")
            yield from map(_classify, files)
        elif path.is_file():
            yield _classify(path)
        else:
            yield InputItem(path, "missing", "no such file or folder")


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _classify(path: Path) -> InputItem:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return InputItem(path, "image")
    if suffix in VIDEO_SUFFIXES:
        return InputItem(path, "video")
    known = " ".join(sorted(IMAGE_SUFFIXES | VIDEO_SUFFIXES))
    return InputItem(path, "unsupported", f"not an image or video by its suffix (supported: {known})")


def read_image(path: str | Path) -> Image.Image:
    """The image as RGB, turned upright by its EXIF orientation as a viewer shows it."""
    try:
        with Image.open(path) as image:
            return ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise ImageReadError(
            f"{path}: cannot read this image ({err}). Check that it opens in an image viewer, "
            "or leave it out."
        ) from err


def iter_video_frames(path: str | Path, every: int = 1) -> Iterator[Frame]:
    """Frames ``0, every, 2*every, ...`` of a video as ``(index, seconds, RGB image)``.

    Seconds are ``index / fps``; when the container reports no usable fps they are None
    rather than a guess.  Raises :class:`VideoReadError` at once if the file cannot be
    opened, and while iterating if it opens but no frame decodes.
    """
    if every < 1:
        raise CafeError(f"frame step must be 1 or more, got {every}.")
    cv2 = import_cv2()
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise VideoReadError(
            f"{path}: cannot open this video. Check that it plays in a video player; "
            "re-encoding it as H.264 .mp4 usually helps."
        )
    return _frames(capture, Path(path), every)


def import_cv2():
    """OpenCV, imported only when a video is read (the base install has no OpenCV; photos need none)."""
    try:
        import cv2
    except ModuleNotFoundError as e:
        raise (missing_extra(e) or e) from None
    return cv2


def _frames(capture: cv2.VideoCapture, path: Path, every: int) -> Iterator[Frame]:
    cv2 = import_cv2()
    fps = capture.get(cv2.CAP_PROP_FPS)
    fps = fps if math.isfinite(fps) and fps > 0 else None
    announced = capture.get(cv2.CAP_PROP_FRAME_COUNT)  # the container's count; -1 or 0 when it has none
    index = 0
    try:
        while True:
            if index % every == 0:
                ok, frame = capture.read()
                if not ok:
                    break
                seconds = index / fps if fps else None
                yield index, seconds, Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            elif not capture.grab():  # skipped frames are decoded but not converted
                break
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise VideoReadError(f"{path}: the video opens but no frame decodes; the file may be truncated.")
    if math.isfinite(announced) and index < announced - max(TRUNCATION_SLACK, 0.01 * announced):
        raise VideoReadError(f"{path}: the video stops after frame {index - 1} of the {int(announced)} frames its "
                             "header announces: the file is truncated (the frames before were used).")
