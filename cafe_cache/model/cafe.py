"""The CAFE model: a backbone that makes a mask for fixed CLIP features, and an FC on top.

Variants (``ModelConfig.variant``), the paper's method and its ablations:

- ``cafe``: M = backbone feature resized to the CLIP width D, F~ = F * sigmoid(M) (eqs. 1-2),
  logits = FC(F~) with FC D -> classes (eq. 3).
- ``no_sigmoid``: F~ = F * M with the raw M.
- ``no_mask``: the plain backbone, logits = FC(backbone feature); CLIP features are unused.
- ``clip_finetune``: logits = FC(concat(F, backbone feature)).

The separation and diverse losses are computed by the training loop from ``masked``
(see :func:`cafe_cache.model.losses.total_loss`); the two variants without a mask return
``masked=None`` and must train with both of those loss weights at 0.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ..classes import NUM_CLASSES
from ..errors import CafeError
from ..options import VARIANTS
from .backbones import LoadReport, backbone_spec, build_backbone, load_backbone_weights, reduce_width

MASKED_VARIANTS = ("cafe", "no_sigmoid")


class ModelOutput(NamedTuple):
    """What :meth:`CAFEModel.forward` returns. A NamedTuple, so DDP and tracing see a tuple of tensors
    (``cafe export`` wraps the model to return ``logits`` alone); ``masked`` and ``mask`` are None for the
    variants without a mask."""

    logits: Tensor  # (B, classes)
    masked: Tensor | None = None  # F~ = F * mask (B, D), what the separation and diverse losses use
    mask: Tensor | None = None  # (B, D): the mask actually applied


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a CAFEModel (stored in checkpoints as JSON)."""

    backbone: str = "resnet18"
    clip_dim: int = 512  # D, the width of the cached CLIP features
    num_classes: int = NUM_CLASSES
    variant: str = "cafe"

    def __post_init__(self) -> None:
        backbone_spec(self.backbone)  # raises CafeError for an unknown name
        if self.variant not in VARIANTS:
            raise CafeError(f"unknown model variant {self.variant!r}; choose one of "
                            f"{', '.join(VARIANTS)}")
        if self.clip_dim < 1 or self.num_classes < 2:
            raise CafeError(f"bad model config: clip_dim {self.clip_dim} must be >= 1 and "
                            f"num_classes {self.num_classes} >= 2")

    @property
    def has_mask(self) -> bool:
        return self.variant in MASKED_VARIANTS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise CafeError(f"model config has unknown fields {sorted(unknown)}: the checkpoint "
                            f"was written by another version of cafe; use that version")
        return cls(**data)


class CAFEModel(nn.Module):
    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config or ModelConfig()
        width = backbone_spec(self.config.backbone).width
        fc_inputs = {"cafe": self.config.clip_dim, "no_sigmoid": self.config.clip_dim,
                     "no_mask": width, "clip_finetune": self.config.clip_dim + width}
        self.backbone = build_backbone(self.config.backbone)
        self.fc = nn.Linear(fc_inputs[self.config.variant], self.config.num_classes)

    def load_backbone(self, source: str) -> LoadReport:
        """Initialise the backbone: a weights file, ``"imagenet"`` or ``"none"``."""
        return load_backbone_weights(self.backbone, source, arch=self.config.backbone)

    def forward(self, images: Tensor, clip_features: Tensor | None = None) -> ModelOutput:
        """A :class:`ModelOutput`: ``logits`` (B, classes), ``masked`` F~ (B, D) and ``mask`` (B, D).

        ``mask`` is the mask actually applied: sigmoid(M) for ``cafe``, raw M for
        ``no_sigmoid``; ``masked`` and ``mask`` are None for the variants without a mask.
        """
        features = self.backbone(images)
        if self.config.variant == "no_mask":
            return ModelOutput(self.fc(features))
        clip_features = self._check_clip(clip_features, features)
        if self.config.variant == "clip_finetune":
            return ModelOutput(self.fc(torch.cat([clip_features, features], dim=1)))
        mask = reduce_width(features, self.config.clip_dim)
        if self.config.variant == "cafe":
            mask = torch.sigmoid(mask)  # eq. (1)
        masked = clip_features * mask  # eq. (2)
        return ModelOutput(self.fc(masked), masked, mask)

    def _check_clip(self, clip_features: Tensor | None, features: Tensor) -> Tensor:
        if clip_features is None:
            raise ValueError(f"variant {self.config.variant!r} needs the CLIP features")
        if clip_features.ndim != 2 or clip_features.shape[1] != self.config.clip_dim:
            raise CafeError(f"CLIP features of shape {tuple(clip_features.shape)} do not match "
                            f"the model's CLIP width {self.config.clip_dim}: use a feature cache "
                            f"made with the same CLIP model as the checkpoint")
        return clip_features.to(features.dtype)
