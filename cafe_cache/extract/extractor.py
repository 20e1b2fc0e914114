"""The frozen feature extractor's seam: one protocol, one registry keyed by the model name's scheme.

``--model ViT-B-32`` (a bare name) and ``--model open_clip:ViT-B-32`` are open_clip (:mod:`.clip`);
``--model timm:vit_small_patch14_dinov2.lvd142m`` is any timm image model used frozen (:mod:`.timm_model`).
Every user of the frozen model (extraction, torchrun shards, ``--online-clip``, ``--bgr-targets``,
``cafe predict``, ``cafe export``) goes through :func:`load_extractor` and the :class:`FeatureExtractor`
it returns, never through open_clip or timm directly.

Adding an extractor: one module with ``load(spec, device, preprocess) -> FeatureExtractor`` (and
``check_name(name)``, which refuses an unknown model in one line) plus one entry in :data:`EXTRACTORS`.
This module imports nothing heavy, so the CLI can use it for ``--help`` and flag checks.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol

from ..errors import CafeError

if TYPE_CHECKING:
    import torch

    from .weights import ClipSpec, WeightsInfo

# scheme -> the module that loads it (imported only when a model of that scheme is used)
EXTRACTORS: dict[str, str] = {
    "open_clip": "cafe_cache.extract.clip",
    "timm": "cafe_cache.extract.timm_model",
}
DEFAULT_SCHEME = "open_clip"  # a name without "scheme:" is open_clip's, as it always was
TEXT_SCHEMES = ("open_clip",)  # schemes with a text tower (cafe zeroshot)


class FeatureExtractor(Protocol):
    """A frozen image model as cafe uses it: normalised (B, 3, S, S) images in, (B, D) features out."""

    model: torch.nn.Module  # the whole loaded model (its parameters' device and dtype are the extractor's)
    info: WeightsInfo  # which model and weights: the fingerprint's weights record
    image_size: int  # S, the input side it is run at
    embed_dim: int  # D, the feature width
    mean: tuple[float, float, float]  # its own preprocessing (``--preprocess clip``/``model``)
    std: tuple[float, float, float]
    interpolation: str  # its own resize: "bicubic", "bilinear", ...
    crop_pct: float  # its own resize: shorter side to S / crop_pct, then a centre crop of S

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, D) raw features of a normalised batch, without gradients."""

    def image_tower(self) -> torch.nn.Module:
        """The module mapping images to the features of :meth:`encode` (``cafe export`` traces it)."""

    def transform(self, preprocess: str) -> str | None:
        """What ``preprocess`` means for this extractor, recorded in the fingerprint (None: nothing beyond
        the name ``preprocess``, as open_clip caches always were)."""


def split_model(model: str) -> tuple[str, str]:
    """``"timm:vit_small_patch14_dinov2"`` -> ``("timm", "vit_small_patch14_dinov2")``; a bare name is open_clip's.

    open_clip's own ``hf-hub:org/repo`` names stay bare names: their scheme is not one of :data:`EXTRACTORS`.
    """
    scheme, sep, name = model.partition(":")
    if sep and scheme in EXTRACTORS:
        if not name:
            raise CafeError(f"--model {model!r}: give a model name after '{scheme}:'.")
        return scheme, name
    if sep and scheme not in ("hf-hub", "local-dir"):
        raise CafeError(f"--model {model!r}: unknown extractor {scheme!r}; choose from "
                        f"{', '.join(EXTRACTORS)} (e.g. timm:vit_small_patch14_dinov2.lvd142m), or a bare open_clip "
                        "name.")
    return DEFAULT_SCHEME, model


def canonical_model(model: str) -> str:
    """The name recorded in fingerprints: open_clip's bare (``open_clip:ViT-B-32`` -> ``ViT-B-32``, so caches
    made before the seam stay valid), every other scheme with its prefix (``timm:...``)."""
    scheme, name = split_model(model)
    return name if scheme == DEFAULT_SCHEME else f"{scheme}:{name}"


def own_preprocess(model: str, preprocess: str) -> str:
    """``--preprocess`` as recorded: ``official``, or the extractor's own transform, which open_clip caches have
    always called ``clip`` and every other extractor calls ``model`` (either name is accepted for either)."""
    if preprocess in ("clip", "model"):
        return "clip" if split_model(model)[0] == DEFAULT_SCHEME else "model"
    return preprocess


def display_name(model: str, label: str | None = None) -> str:
    """How lines name the extractor: ``CLIP <label>`` for open_clip, ``<label>`` (``timm:NAME ...``) for others;
    ``label`` defaults to ``model``."""
    label = label or model
    return f"CLIP {label}" if split_model(model)[0] == DEFAULT_SCHEME else label


def has_text_tower(model: str) -> bool:
    """Whether the extractor of ``model`` can encode prompts (``cafe zeroshot``)."""
    return split_model(model)[0] in TEXT_SCHEMES


def extractor_module(model: str):
    """The module of ``model``'s scheme (imports open_clip or timm)."""
    return importlib.import_module(EXTRACTORS[split_model(model)[0]])


def load_extractor(spec: ClipSpec, device: str | torch.device = "cpu", preprocess: str = "official"
                   ) -> FeatureExtractor:
    """The frozen extractor ``spec`` names, with its weights, in eval mode on ``device``.

    ``preprocess`` is passed on because it may change how the model is built (a timm ViT made for 518 px is
    built at 224 px for ``official``, its position embeddings resampled)."""
    return extractor_module(spec.model).load(spec, device, preprocess)
