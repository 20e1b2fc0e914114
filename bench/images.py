"""Generated datasets of realistic file sizes, in the class-folder layout the ``folder`` reader reads.

``raf``: 100x100 RGB JPEGs like RAF-DB's aligned faces; ``ferplus``: 48x48 greyscale PNGs like
FERPlus. The pixels are cafe's synthetic faces (:mod:`cafe_cache.synth`), so files compress and
decode like real face crops. Rendering is slow next to decoding, so a small pool of faces is
rendered and encoded once and its files are written over and over under new names.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cafe_cache import synth
from cafe_cache.classes import NUM_CLASSES


@dataclass(frozen=True)
class Kind:
    domain: str  # cafe_cache.synth domain that draws the faces
    size: int  # default side in pixels
    format: str  # PIL format name


KINDS = {"raf": Kind("color", 100, "JPEG"), "ferplus": Kind("lowres", 48, "PNG")}
POOL_PER_CLASS = 8


def encoded_pool(kind: str, size: int, seed: int = 0) -> list[list[bytes]]:
    """``POOL_PER_CLASS`` encoded files per class: pool[label][i]."""
    k = KINDS[kind]
    pool = []
    for label in range(NUM_CLASSES):
        files = []
        for i in range(POOL_PER_CLASS):
            image = synth.render(label, k.domain, size, np.random.default_rng([seed, label, i]))
            buf = io.BytesIO()
            image.save(buf, k.format, **({"quality": 92} if k.format == "JPEG" else {}))
            files.append(buf.getvalue())
        pool.append(files)
    return pool


def write_dataset(root: Path, kind: str, per_class: dict[str, int], size: int | None = None) -> Path:
    """``root/<split>/<class folder>/<n>.<ext>``, ``per_class[split]`` images of each of the 7 classes."""
    pool = encoded_pool(kind, size or KINDS[kind].size)
    ext = "jpg" if KINDS[kind].format == "JPEG" else "png"
    for split, n in per_class.items():
        for label, files in enumerate(pool):
            folder = root / split / synth.FOLDER_NAMES[label]
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                (folder / f"{i:05d}.{ext}").write_bytes(files[i % len(files)])
    return root
