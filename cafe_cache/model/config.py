"""``ModelConfig``: everything needed to rebuild a CAFEModel, stored in the run's ``config.json``.

No torch here (:mod:`cafe_cache.run.folder` types ``config.json`` with it); the backbone's name is checked
against :data:`cafe_cache.model.backbones.BACKBONES` when the model is built.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from ..classes import NUM_CLASSES
from ..errors import CafeError
from .variants import CAFE, Variant, get_variant


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "resnet18"
    clip_dim: int = 512  # D, the width of the cached CLIP features
    num_classes: int = NUM_CLASSES
    variant: str = CAFE.name  # a name of cafe_cache.model.variants.VARIANTS

    def __post_init__(self) -> None:
        get_variant(self.variant)  # raises CafeError for an unknown name
        if self.clip_dim < 1 or self.num_classes < 2:
            raise CafeError(f"bad model config: clip_dim {self.clip_dim} must be >= 1 and "
                            f"num_classes {self.num_classes} >= 2")

    @property
    def variant_spec(self) -> Variant:
        """The registered variant: its FC input and mask."""
        return get_variant(self.variant)

    @property
    def has_mask(self) -> bool:
        return self.variant_spec.has_mask

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise CafeError(f"model config has unknown fields {sorted(unknown)}: the checkpoint "
                            f"was written by another version of cafe; use that version")
        return cls(**data)
