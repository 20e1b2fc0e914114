"""The settings of a run that the paper fixes (its official protocol), and the phrase that names each one a
run changes: every table ``cafe reproduce`` writes and every ``cafe package`` model card carries them, so a
result never passes for the paper's protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..options import DEFAULT_WHICH, VIEWS
from .config import TrainConfig


@dataclass(frozen=True)
class PaperSettings:
    """The settings of a reproduction that the paper fixes; :meth:`deviations` names each one that differs."""

    which: str = DEFAULT_WHICH  # evaluated weights: last = the final epoch (official)
    backbone_init: str = "imagenet"  # a file (the paper: MS-Celeb), "imagenet" or "none"
    mask_precision: str = "fp32"  # official: fp32
    clip_input: str = "cached-views"  # official: online (CLIP on every augmented batch)
    random_clip: bool = False
    # reduced settings for quick runs, each named in the titles: the paper's are TrainConfig's defaults
    epochs: int = TrainConfig.epochs
    image_size: int = TrainConfig.image_size
    train_limit: int | None = None  # cafe train --limit
    partial_caches: tuple[str, ...] = ()  # "rafdb: --limit 50 per split" per cache that is not the whole dataset
    views: tuple[str, ...] = VIEWS

    @property
    def paper_init(self) -> bool:
        return self.backbone_init not in ("imagenet", "none")

    def deviations(self) -> list[str]:
        """Short phrases for table titles, one per setting that is not the official one."""
        out = []
        if self.which != "last":
            out.append(f"{self.which} epoch on the source test set (test-set selection), not the final epoch")
        if not self.paper_init:
            out.append("ImageNet init, not the paper's" if self.backbone_init == "imagenet"
                       else "random backbone init, not the paper's")
        if self.random_clip:
            out.append("RANDOM CLIP WEIGHTS")
        if self.clip_input != "online":
            out.append("cached CLIP views, not per-step CLIP")
        if self.mask_precision != "fp32":
            out.append(f"{self.mask_precision} mask branch, not fp32")
        return out + self.reductions()

    def reductions(self) -> list[str]:
        """The settings reduced for a quick run (fewer epochs, smaller input, part of the data, fewer views)."""
        out = []
        if self.epochs != TrainConfig.epochs:
            out.append(f"{self.epochs} epoch{'s' if self.epochs != 1 else ''}, not the paper's {TrainConfig.epochs}")
        if self.image_size != TrainConfig.image_size:
            out.append(f"{self.image_size}px mask input, not {TrainConfig.image_size}")
        if self.train_limit is not None:
            out.append(f"at most {self.train_limit:,} training images (train --limit), not the whole set")
        if self.partial_caches:
            out.append(f"partial caches ({'; '.join(self.partial_caches)}), not the whole datasets")
        if tuple(self.views) != VIEWS:
            out.append(f"views {','.join(self.views)}, not {','.join(VIEWS)}")
        return out

    def summary(self) -> list[str]:
        """One line per setting, official or not, for the console."""
        evaluation = ("final epoch (official)" if self.which == "last"
                      else "best on source test set (test-set selection)")
        return [f"evaluation: {evaluation}",
                f"mask branch: {self.mask_precision}" + (" (official)" if self.mask_precision == "fp32" else ""),
                f"backbone init: {self.backbone_init}" + (" (the paper's if it is the MS-Celeb file)" if self.paper_init
                                                          else " (not the paper's MS-Celeb init)"),
                f"CLIP input: {self.clip_input}" + (" (official)" if self.clip_input == "online" else
                                                    " (named deviation; --train-args --online-clip for the official)"),
                "CLIP: QuickGELU, fp16 on CUDA; noise at source size; group 6 drop law as the official Mask() "
                "(official)", *(f"reduced: {r}" for r in self.reductions())]
