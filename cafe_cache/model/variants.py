"""The model variants, the paper's method and its ablations: each one said once, here.

A :class:`Variant` says what its FC reads and whether it has a mask:

- ``cafe``: M = backbone feature resized to the CLIP width D, F~ = F * sigmoid(M) (eqs. 1-2),
  logits = FC(F~) with FC D -> classes (eq. 3).
- ``no_sigmoid``: F~ = F * M with the raw M.
- ``no_mask``: the plain backbone, logits = FC(backbone feature); CLIP features are unused.
- ``clip_finetune``: logits = FC(concat(F, backbone feature)).

A variant with a mask trains with the separation and diverse losses; one without trains with CE
alone (their weights are 0). A new variant is one :func:`register_variant` call: the model
(:class:`~cafe_cache.model.cafe.CAFEModel`), the training loop and ``cafe train --variant`` read
the registry. No torch here: the command line lists the names at start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import CafeError

if TYPE_CHECKING:
    from torch import Tensor

# what an FC can read, and its width as a function of the CLIP width D and the backbone width W
FC_PARTS: dict[str, Callable[[int, int], int]] = {
    "masked": lambda clip_dim, width: clip_dim,  # F~ = F * mask(M)
    "clip": lambda clip_dim, width: clip_dim,  # F, the frozen CLIP feature
    "backbone": lambda clip_dim, width: width,  # the pooled backbone feature
}


@dataclass(frozen=True)
class Variant:
    name: str  # ModelConfig.variant, cafe train --variant
    fc_input: tuple[str, ...]  # FC_PARTS the FC reads, concatenated in this order
    mask: Callable[[Tensor], Tensor] | None = None  # M -> the mask applied (F~ = F * mask(M)); None: no mask

    @property
    def has_mask(self) -> bool:
        """Whether the variant masks the CLIP features, and so trains with the separation and diverse losses."""
        return self.mask is not None

    @property
    def uses_clip(self) -> bool:
        """Whether the forward pass reads the CLIP features."""
        return self.has_mask or "clip" in self.fc_input

    def fc_width(self, clip_dim: int, backbone_width: int) -> int:
        """The FC's input width for CLIP width ``clip_dim`` and backbone width ``backbone_width``."""
        return sum(FC_PARTS[part](clip_dim, backbone_width) for part in self.fc_input)


def sigmoid(m: Tensor) -> Tensor:
    """Eq. (1): the mask is sigmoid(M)."""
    return m.sigmoid()


def raw(m: Tensor) -> Tensor:
    """The ``no_sigmoid`` ablation: M itself is the mask."""
    return m


VARIANTS: dict[str, Variant] = {}  # name -> Variant, in the order cafe train --help lists them


def register_variant(variant: Variant) -> Variant:
    """Add ``variant`` to the registry (its FC parts checked; a name is registered once)."""
    unknown = [p for p in variant.fc_input if p not in FC_PARTS]
    if not variant.fc_input or unknown or ("masked" in variant.fc_input and not variant.has_mask):
        raise ValueError(f"variant {variant.name!r}: fc_input {variant.fc_input} must name parts of "
                         f"{', '.join(FC_PARTS)} ('masked' only with a mask)")
    if variant.name in VARIANTS:
        raise ValueError(f"variant {variant.name!r} is registered already")
    VARIANTS[variant.name] = variant
    return variant


def get_variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise CafeError(f"unknown model variant {name!r}; choose one of {', '.join(VARIANTS)}")
    return VARIANTS[name]


CAFE = register_variant(Variant("cafe", ("masked",), sigmoid))
NO_SIGMOID = register_variant(Variant("no_sigmoid", ("masked",), raw))
NO_MASK = register_variant(Variant("no_mask", ("backbone",)))
CLIP_FINETUNE = register_variant(Variant("clip_finetune", ("clip", "backbone")))
