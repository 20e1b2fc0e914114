"""The choices the command line offers, kept free of heavy imports so ``cafe --help`` starts at once.

The library modules take these constants from here (one definition each); the CLI builds its
options from them and imports torch, open_clip and the rest only inside the commands.
"""

from __future__ import annotations

from dataclasses import MISSING
from typing import Any

from .errors import CafeError

DEFAULT_MODEL = "ViT-B-32"  # open_clip model name of the paper's CLIP
DEFAULT_PRETRAINED = "openai"  # its open_clip pretrained tag
PREPROCESS = ("official", "clip", "model")  # cafe_cache.extract.preprocess ("clip" = open_clip's "model")
VIEWS = ("clean", "hflip")
EXTRACT_PRECISIONS = ("auto", "fp32", "fp16", "bf16")  # cafe_cache.device
TRAIN_PRECISIONS = ("auto", "fp32", "bf16")  # cafe_cache.train.loop
DETECTOR_NAMES = ("auto", "mtcnn", "lbp")  # cafe_cache.predict.faces
GRADCAM_IMAGES = 8  # Grad-CAM examples per target (cafe_cache.report)
TABLES = ("1", "2", "4", "5")
PROTOCOLS = ("paper", "lodo")  # cafe reproduce: the paper's tables, or leave-one-domain-out (cafe_cache.lodo)
# cafe train --balance (several sources): plain union, equal draws per source or per class (train/sources.py)
BALANCE_MODES = ("none", "domains", "classes")
EVAL_BATCH_SIZE = 128  # cafe eval --batch-size and the library's evaluation functions
# The weights of eq. (9), CE + W_SEP l_sep + W_DIV l_div (paper Sec. 5.2; Fig. 3 sweeps them): the defaults of
# cafe_cache.model.losses.total_loss and of TrainConfig / cafe train --w-sep/--w-div
W_SEP = 1.5
W_DIV = 5.0
# Which weights of a run to evaluate: the final epoch (the paper's numbers, official notebooks) or the epoch
# with the best accuracy on the source's own test set (test-set selection: an extra, not the official number)
WHICH = ("last", "best")
DEFAULT_WHICH = "last"  # the paper's tables cafe reproduce makes


def check_cache_name(name: str) -> str:
    """A cache name is a plain file stem, so ``cache/<name>.h5`` stays inside ``--cache-dir``."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise CafeError(f"cache name {name!r}: must be a plain name (no '/', '\\' or '..'), so the cache stays "
                        "inside --cache-dir; choose another --name, or another --cache-dir for another folder.")
    return name


def check_views(views: tuple[str, ...] | list[str], text: str | None = None) -> tuple[str, ...]:
    """``--views``: known views, each once."""
    shown = text if text is not None else ",".join(views)
    bad = [v for v in views if v not in VIEWS]
    if bad or not views:
        raise CafeError(f"--views {shown!r}: unknown view(s) {bad}; choose from {', '.join(VIEWS)}.")
    twice = sorted({v for v in views if list(views).count(v) > 1})
    if twice:
        raise CafeError(f"--views {shown!r}: {', '.join(twice)} given twice; each view is stored once.")
    return tuple(views)


def split_list(text: str | None) -> list[str] | None:
    """'a, b,c' -> ['a', 'b', 'c']; None or '' -> None (a comma-separated option)."""
    if not text:
        return None
    return [t.strip() for t in text.split(",") if t.strip()]


def field_default(cls: type, name: str) -> Any:
    """The default of field ``name`` of dataclass ``cls``: a command's option defaults are read from the
    dataclass it fills, so each default is written once."""
    f = cls.__dataclass_fields__[name]
    return f.default_factory() if f.default_factory is not MISSING else f.default
