"""Which frozen extractor to load and where its weights came from, free of heavy imports (``cafe --help`` reads the
defaults of :class:`ClipSpec`; :mod:`.fingerprint` reads and writes :class:`WeightsInfo` in every fingerprint).

Where the weights came from is a tagged value, one class per kind: :class:`Pretrained` (an open_clip tag, or a
timm model's hub repo), :class:`WeightsFile` (a local file and its sha256) or :class:`RandomInit` (a seed).
Caches and run folders written before it was tagged stored it as text (``"pretrained:<tag>"``,
``"file:<name>"``, ``"random"``) beside ``weights_sha256`` and ``seed``: :func:`source_from_text` reads that form.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import CafeError
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
class Pretrained:
    """Published weights by name: an open_clip pretrained tag (``openai``) or a timm model's hub repo."""

    tag: str
    kind: ClassVar[str] = "pretrained"

    @property
    def text(self) -> str:
        return f"pretrained:{self.tag}"


@dataclass(frozen=True)
class WeightsFile:
    """A local checkpoint file: its name (not its folder, which may move) and the sha256 of its bytes."""

    name: str
    sha256: str
    kind: ClassVar[str] = "file"

    @property
    def text(self) -> str:
        return f"file:{self.name}"


@dataclass(frozen=True)
class RandomInit:
    """Randomly initialised weights (``--random-weights``), seeded: features for testing the pipeline only."""

    seed: int
    kind: ClassVar[str] = "random"

    @property
    def text(self) -> str:
        return "random"


WeightsSource = Pretrained | WeightsFile | RandomInit
SOURCES: dict[str, type[WeightsSource]] = {c.kind: c for c in (Pretrained, WeightsFile, RandomInit)}


def source_to_json(source: WeightsSource) -> dict[str, Any]:
    """``{"kind": "file", "name": ..., "sha256": ...}``: the tagged form a fingerprint stores."""
    return {"kind": source.kind, **vars(source)}


def source_from_json(data: dict[str, Any]) -> WeightsSource:
    """The source of :func:`source_to_json`'s form."""
    fields = dict(data)
    kind = SOURCES.get(fields.pop("kind", None))
    if kind is None:
        raise CafeError(f"unknown weights source {data!r} in a fingerprint; this cafe reads {', '.join(SOURCES)}.")
    return kind(**fields)


def source_from_text(text: str, sha256: str | None, seed: int | None) -> WeightsSource:
    """The source of a fingerprint written before the source was tagged: ``"pretrained:<tag>"``,
    ``"file:<name>"`` (with its ``weights_sha256``) or ``"random"`` (with its ``seed``)."""
    kind, _, name = text.partition(":")
    if kind == "random":
        return RandomInit(RANDOM_SEED if seed is None else int(seed))
    if kind == "file" and name:
        return WeightsFile(name, sha256 or "")
    if kind == "pretrained" and name:
        return Pretrained(name)
    raise CafeError(f"unknown weights source {text!r} in a fingerprint (expected pretrained:TAG, file:NAME or "
                    "random).")


@dataclass(frozen=True)
class WeightsInfo:
    """Which model and where its weights came from; stored in every cache and checkpoint."""

    model: str
    source: WeightsSource
    activation: str = "gelu"  # "quickgelu" or "gelu": CLIP's MLP activation; "native" for timm models

    @property
    def random_weights(self) -> bool:
        return isinstance(self.source, RandomInit)

    @property
    def sha256(self) -> str | None:
        """Of the checkpoint file, when one was read."""
        return self.source.sha256 if isinstance(self.source, WeightsFile) else None

    @property
    def seed(self) -> int | None:
        return self.source.seed if isinstance(self.source, RandomInit) else None

    @property
    def label(self) -> str:
        act = "" if self.activation == "native" else f", {self.activation}"
        if self.random_weights:
            return f"{self.model} RANDOM WEIGHTS (seed {self.seed}{act})"
        return f"{self.model} {self.source.text}" + (f" ({self.activation})" if act else "")
