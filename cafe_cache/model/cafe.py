"""The CAFE model: a backbone that makes a mask for fixed CLIP features, and an FC on top.

The variants (``ModelConfig.variant``), the paper's method and its ablations, are registered in
:mod:`cafe_cache.model.variants`: each says what its FC reads and whether it has a mask (eqs. 1-3).
The separation and diverse losses are computed by the training loop from ``masked``
(see :func:`cafe_cache.model.losses.total_loss`); the variants without a mask return
``masked=None`` and train with both of those loss weights at 0.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from ..errors import CafeError
from .backbones import LoadReport, backbone_spec, build_backbone, load_backbone_weights, reduce_width
from .config import ModelConfig


class ModelOutput(NamedTuple):
    """What :meth:`CAFEModel.forward` returns. A NamedTuple, so DDP and tracing see a tuple of tensors
    (``cafe export`` wraps the model to return ``logits`` alone); ``masked`` and ``mask`` are None for the
    variants without a mask."""

    logits: Tensor  # (B, classes)
    masked: Tensor | None = None  # F~ = F * mask (B, D), what the separation and diverse losses use
    mask: Tensor | None = None  # (B, D): the mask actually applied


class CAFEModel(nn.Module):
    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        self.config = config or ModelConfig()
        self.variant = self.config.variant_spec  # the registered variant: what the FC reads, the mask
        width = backbone_spec(self.config.backbone).width
        self.backbone = build_backbone(self.config.backbone)
        self.fc = nn.Linear(self.variant.fc_width(self.config.clip_dim, width), self.config.num_classes)

    def load_backbone(self, source: str) -> LoadReport:
        """Initialise the backbone: a weights file, ``"imagenet"`` or ``"none"``."""
        return load_backbone_weights(self.backbone, source, arch=self.config.backbone)

    def forward(self, images: Tensor, clip_features: Tensor | None = None) -> ModelOutput:
        """A :class:`ModelOutput`: ``logits`` (B, classes), ``masked`` F~ (B, D) and ``mask`` (B, D).

        ``mask`` is the mask actually applied: sigmoid(M) for ``cafe``, raw M for
        ``no_sigmoid``; ``masked`` and ``mask`` are None for the variants without a mask.
        """
        features = self.backbone(images)
        clip = self._check_clip(clip_features, features) if self.variant.uses_clip else None
        mask = masked = None
        if self.variant.mask is not None:
            mask = self.variant.mask(reduce_width(features, self.config.clip_dim))  # eq. (1)
            masked = clip * mask  # eq. (2)
        parts = {"masked": masked, "clip": clip, "backbone": features}
        fc_input = [parts[p] for p in self.variant.fc_input]
        logits = self.fc(fc_input[0] if len(fc_input) == 1 else torch.cat(fc_input, dim=1))
        return ModelOutput(logits, masked, mask)

    def _check_clip(self, clip_features: Tensor | None, features: Tensor) -> Tensor:
        if clip_features is None:
            raise ValueError(f"variant {self.config.variant!r} needs the CLIP features")
        if clip_features.ndim != 2 or clip_features.shape[1] != self.config.clip_dim:
            raise CafeError(f"CLIP features of shape {tuple(clip_features.shape)} do not match "
                            f"the model's CLIP width {self.config.clip_dim}: use a feature cache "
                            f"made with the same CLIP model as the checkpoint")
        return clip_features.to(features.dtype)
