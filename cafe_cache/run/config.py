"""``TrainConfig``: every option of ``cafe train``, checked when made, saved in the run's ``config.json``.

Paper defaults (the one place they are written; ``cafe train``'s options take theirs from here):
Adam 2e-4, weight decay 1e-4, ExponentialLR 0.9 per epoch, batch 32, 60 epochs, seed 3407, input 224,
loss = CE + 1.5 l_sep + 5 l_div.

:func:`resumed` is the config a resumed run goes on with. No torch here: the command line reads its
defaults from these dataclasses at start-up, and :mod:`cafe_cache.run.folder` types ``config.json`` with them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ..bounds import check_all
from ..errors import CafeError
from ..model.variants import CAFE, get_variant
from ..options import BALANCE_MODES, W_DIV, W_SEP

# on resume these may change (they do not change what is trained); --epochs extends or shortens the run
RESUME_MAY_CHANGE = ("epochs", "workers", "device")
LIMIT_LOW = 7  # --limit: at least one image per class


@dataclass(frozen=True)
class Augment:
    """The official image augmentations; all off gives the evaluation input."""

    flip: bool = True
    noise: bool = True
    erase: bool = True

    @classmethod
    def none(cls) -> Augment:
        return cls(False, False, False)


@dataclass
class TrainConfig:
    source: str  # a cache name, or several joined by commas ("rafdb,ferplus"): the union of their train splits
    cache_dir: str = "cache"
    root: str | None = None  # where the source images are now, if they moved since extraction
    backbone: str = "resnet18"
    backbone_weights: str = "imagenet"  # a file (MS-Celeb ResNet-18 as the paper), "imagenet", or "none"
    variant: str = CAFE.name  # the paper's method; its ablations are the other cafe_cache.model.variants
    w_sep: float = W_SEP  # eq. (9) weights, the paper's (cafe_cache.options)
    w_div: float = W_DIV
    epochs: int = 60
    batch_size: int = 32
    lr: float = 2e-4
    weight_decay: float = 1e-4
    gamma: float = 0.9
    seed: int = 3407
    image_size: int = 224
    augment: Augment = field(default_factory=Augment)
    online_clip: bool = False  # the official behaviour: CLIP on every augmented batch
    clip_weights: str | None = None  # the CLIP file, for --online-clip when the cache came from a file
    limit: int | None = None  # at most this many training images (test: a quarter), for quick runs
    workers: int | None = None  # image-loading processes; None: default_workers(device)
    device: str = "auto"
    precision: str = "auto"  # mask branch: fp32, or bf16 autocast + channels_last; auto: bf16 on CUDA
    balance: str = "none"  # several sources: none (plain union), domains or classes (cafe_cache.train.sources)

    def __post_init__(self) -> None:
        check_hyperparameters(self)
        check_sources(self)
        get_variant(self.variant)  # an unknown --variant is refused before any data is read
        self.source = ",".join(self.sources)  # "rafdb, ferplus" -> "rafdb,ferplus": one spelling in config.json

    @property
    def sources(self) -> tuple[str, ...]:
        """The source cache names, in the order given (one for a single --source)."""
        return source_names(self.source)

    @property
    def clip_input(self) -> str:
        return "online" if self.online_clip else "cached-views"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"clip_input": self.clip_input}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """From :meth:`to_dict` (a run's ``config.json``) or the same keys from the command line;
        ``augment`` may be a dict, ``clip_input`` (it follows from ``online_clip``) is dropped."""
        values = {k: v for k, v in data.items() if k != "clip_input"}
        unknown = set(values) - {f.name for f in fields(cls)}
        if unknown:
            raise CafeError(f"unknown training options {sorted(unknown)}: the config comes from another cafe "
                            "version; start a new run with another --out.")
        if isinstance(values.get("augment"), dict):
            values["augment"] = Augment(**values["augment"])
        return cls(**values)


def check_hyperparameters(cfg: TrainConfig) -> None:
    """Refuse values that would train silently wrong (a sign-flipped lr, negative loss weights) or crash
    inside Adam, naming the flag."""
    checks = [("--lr", cfg.lr, lambda v: v > 0, "a finite number > 0 (the paper: 2e-4)"),
              ("--weight-decay", cfg.weight_decay, lambda v: v >= 0, "a finite number >= 0 (the paper: 1e-4)"),
              ("--gamma", cfg.gamma, lambda v: 0 < v <= 1,
               "in (0, 1], the learning rate's decay per epoch (the paper: 0.9)"),
              ("--w-sep", cfg.w_sep, lambda v: v >= 0, "a finite weight >= 0 (0 turns the separation loss off)"),
              ("--w-div", cfg.w_div, lambda v: v >= 0, "a finite weight >= 0 (0 turns the diverse loss off)")]
    for flag, value, ok, must in checks:
        if not (isinstance(value, (int, float)) and math.isfinite(value) and ok(value)):
            raise CafeError(f"{flag} {value}: must be {must}.")
    check_all({"--epochs": cfg.epochs, "--batch-size": cfg.batch_size, "--seed": cfg.seed,
               "--image-size": cfg.image_size, "--limit": cfg.limit, "--workers": cfg.workers},
              low={"--limit": LIMIT_LOW})


def source_names(text: str) -> tuple[str, ...]:
    """``'rafdb, ferplus'`` -> ``('rafdb', 'ferplus')``: the names in ``--source`` (the one definition)."""
    return tuple(t.strip() for t in str(text).split(",") if t.strip())


def check_sources(cfg: TrainConfig) -> None:
    """Refuse an empty or repeated ``--source`` name, an unknown ``--balance`` and ``--root`` with several
    sources (it could only name one of their folders)."""
    names = cfg.sources
    if not names or len(set(names)) != len(names):
        raise CafeError(f"--source {cfg.source!r}: give one cache name or several distinct ones separated by commas "
                        "(e.g. --source rafdb,ferplus).")
    if cfg.balance not in BALANCE_MODES:
        raise CafeError(f"--balance {cfg.balance!r}: choose from {', '.join(BALANCE_MODES)}.")
    if len(names) > 1 and cfg.root is not None:
        raise CafeError(f"--root applies to a single --source; with {len(names)} sources the images are read from "
                        "where each cache was made (move them back, or re-extract).")


def resumed(cfg: TrainConfig, run: Path, given: dict[str, Any]) -> TrainConfig:
    """The saved config of ``run`` with the options that may change on resume; any other training option
    in ``given`` (the options typed on the command line) that differs from the saved one is refused (it
    would silently not apply). Names that are not training options are ignored."""
    augment = {f.name for f in fields(Augment)}
    training = {f.name for f in fields(TrainConfig)} | augment
    for name, value in given.items():
        if name not in training or name in RESUME_MAY_CHANGE:
            continue
        saved = getattr(cfg.augment, name) if name in augment else getattr(cfg, name)
        if (str(value) if isinstance(value, Path) else value) != saved:
            flag = "--" + name.replace("_", "-")
            raise CafeError(f"--resume continues {run} with its saved settings: {flag} {value} differs from the saved "
                            f"{saved}. Drop {flag}, or start a new run with another --out (on resume only "
                            f"{', '.join('--' + n for n in RESUME_MAY_CHANGE)} may change).")
    return replace(cfg, **{k: given[k] for k in RESUME_MAY_CHANGE if k in given})

