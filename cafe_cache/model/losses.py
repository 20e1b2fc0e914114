"""CAFE's training losses, one function per term of the paper (equations (3)-(9)).

Channel groups: the D masked-feature channels are split into ``num_classes`` groups of
width ``k = D // num_classes`` (73 for D = 512), group ``g`` being channels ``[g*k, (g+1)*k)``.
The ``D - num_classes*k`` trailing channels (channel 511 for D = 512) belong to no group and are
never pooled, exactly like the official ``max_pool1d(kernel_size=73, stride=73)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..classes import NUM_CLASSES
from ..errors import CafeError
from ..options import W_DIV, W_SEP

OFFICIAL_GROUP_WIDTH = 73  # 512 // 7
OFFICIAL_DROP = 10  # channels dropped per group of 73 in the official code
DEFAULT_SEP_WEIGHT = W_SEP  # the paper's weights (cafe_cache.options)
DEFAULT_DIV_WEIGHT = W_DIV


def group_width(dim: int, num_classes: int = NUM_CLASSES) -> int:
    """Channels per class group: ``dim // num_classes`` (73 for 512 and 7 classes)."""
    if dim < num_classes:
        raise CafeError(f"feature width {dim} is smaller than the {num_classes} classes: the "
                        f"separation module needs at least one channel per class; use a CLIP "
                        f"model with a wider output or the 'no_mask' variant")
    return dim // num_classes


def default_drop(k: int) -> int:
    """Channels dropped per group of width ``k``.

    Officially 10 of 73.  Other widths keep that rate: ``max(1, round(k * 10 / 73))``, capped at
    ``k - 1`` so that a group never loses all of its channels (a group of 1 drops none).
    """
    return min(k - 1, max(1, round(k * OFFICIAL_DROP / OFFICIAL_GROUP_WIDTH)))


def channel_drop_mask(dim: int, num_classes: int = NUM_CLASSES, drop: int | None = None,
                      generator: torch.Generator | None = None,
                      device: torch.device | str | None = None) -> Tensor:
    """Eq. (4): a (dim,) 0/1 float mask with ``drop`` random zeros in each class group.

    The official drop law: every group but the last places its zeros among its ``k`` channels; the
    last group places them among its ``k`` channels AND the trailing ones that are never pooled
    (official ``Mask()``: 74 positions 438..511 for 512 channels), so it loses ``drop`` pooled
    channels with probability k / (k + tail), else fewer (group 6: 10 with p = 64/74, else 9).
    One mask serves the whole batch; the caller draws a new one every step.  The draw is made on the
    CPU (``generator`` must be a CPU generator, or None for the global RNG) and moved to ``device``
    without waiting for the GPU (a plain copy would synchronise the host with it every step).
    """
    k = group_width(dim, num_classes)
    drop = default_drop(k) if drop is None else drop
    if not 0 <= drop <= k:
        raise CafeError(f"channel drop {drop} is out of range: it must be between 0 and the "
                        f"group width {k}")
    sizes = [k] * (num_classes - 1) + [dim - (num_classes - 1) * k]  # the last group takes the tail
    groups = []
    for size in sizes:
        zeros = torch.rand(size, generator=generator).argsort()[:drop]
        groups.append(torch.ones(size).index_fill_(0, zeros, 0.0))
    return torch.cat(groups).to(device, non_blocking=True)


def group_max_logits(features: Tensor, num_classes: int = NUM_CLASSES) -> Tensor:
    """Eqs. (5) and (7): (B, D) -> (B, num_classes), the maximum of each channel group."""
    batch, dim = features.shape
    k = group_width(dim, num_classes)
    return features[:, : num_classes * k].reshape(batch, num_classes, k).max(dim=2).values


def classification_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Eq. (3): cross-entropy of the FC logits computed on the masked features."""
    return F.cross_entropy(logits, labels)


def separation_loss(masked_features: Tensor, labels: Tensor, drop_mask: Tensor,
                    num_classes: int = NUM_CLASSES) -> Tensor:
    """Eqs. (4)-(6): cross-entropy of the group maxima of the channel-dropped masked features."""
    logits = group_max_logits(masked_features * drop_mask, num_classes)
    return F.cross_entropy(logits, labels)


def diverse_loss(masked_features: Tensor, num_classes: int = NUM_CLASSES) -> Tensor:
    """Eqs. (7)-(8): ``1 - mean over (batch, groups) of group max / k``, with no channel drop.

    ``k`` is the group width (the paper's normalisation 73 for 512 channels).
    """
    k = group_width(masked_features.shape[1], num_classes)
    return 1.0 - group_max_logits(masked_features, num_classes).mean() / k


def total_loss(logits: Tensor, labels: Tensor, masked_features: Tensor | None,
               drop_mask: Tensor | None = None, w_sep: float = DEFAULT_SEP_WEIGHT,
               w_div: float = DEFAULT_DIV_WEIGHT, num_classes: int = NUM_CLASSES,
               ) -> dict[str, Tensor]:
    """Eq. (9): ``CE + w_sep * l_sep + w_div * l_div``.

    Returns ``total`` (weighted sum) and ``ce`` always, and the unweighted ``sep`` / ``div`` only
    when their weight is non-zero: a zero weight skips that term entirely (ablations).
    ``drop_mask`` of None draws a fresh one from the global RNG.  Variants without a mask
    (``masked_features`` None) must use zero weights, otherwise a CafeError is raised.
    """
    if masked_features is None and (w_sep or w_div):
        raise CafeError("this model variant has no mask, so the separation and diverse losses do "
                        "not apply: set both of their weights to 0")
    ce = classification_loss(logits, labels)
    parts = {"ce": ce}
    total = ce
    if w_sep:
        if drop_mask is None:
            drop_mask = channel_drop_mask(masked_features.shape[1], num_classes,
                                          device=masked_features.device)
        parts["sep"] = separation_loss(masked_features, labels, drop_mask, num_classes)
        total = total + w_sep * parts["sep"]
    if w_div:
        parts["div"] = diverse_loss(masked_features, num_classes)
        total = total + w_div * parts["div"]
    return {"total": total, **parts}
