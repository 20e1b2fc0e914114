"""Which frozen extractor to load and where its weights came from, free of heavy imports (``cafe --help`` reads the
defaults of :class:`ClipSpec`; :mod:`.cache` reads and writes :class:`WeightsInfo` in every fingerprint)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..options import DEFAULT_MODEL, DEFAULT_PRETRAINED

RANDOM_SEED = 0


@dataclass(frozen=True)
class ClipSpec:
    """Which frozen extractor to load: a named model plus exactly one source of weights.

    ``model``: an open_clip name (bare or ``open_clip:NAME``) or ``timm:NAME`` (:mod:`.extractor`); for timm,
    ``pretrained`` only says "the hub weights of NAME" (the tag is part of the name)."""

    model: str = DEFAULT_MODEL
    pretrained: str | None = DEFAULT_PRETRAINED  # open_clip tag, used when weights is None
    weights: str | None = None  # local checkpoint file
    random_weights: bool = False
    seed: int = RANDOM_SEED  # random-weights seed
    activation: str = "auto"  # transformer MLP activation; see clip.official_activation()


@dataclass(frozen=True)
class WeightsInfo:
    """Where the weights came from; stored in every cache and checkpoint."""

    model: str
    source: str  # "pretrained:<tag>", "file:<name>" or "random"
    sha256: str | None  # of the checkpoint file, when one was read
    random_weights: bool
    seed: int | None
    activation: str = "gelu"  # "quickgelu" or "gelu": CLIP's MLP activation; "native" for timm models

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def label(self) -> str:
        act = "" if self.activation == "native" else f", {self.activation}"
        if self.random_weights:
            return f"{self.model} RANDOM WEIGHTS (seed {self.seed}{act})"
        return f"{self.model} {self.source}" + (f" ({self.activation})" if act else "")
