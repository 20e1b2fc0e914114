"""CAFE's training losses, one function per term of the paper (equations (3)-(9)).

Channel groups: the D masked-feature channels are split into ``num_classes`` groups of
width ``k = D // num_classes`` (73 for D = 512), group ``g`` being channels ``[g*k, (g+1)*k)``.
The ``D - num_classes*k`` trailing channels (channel 511 for D = 512) belong to no group and are
never pooled, exactly like the official ``max_pool1d(kernel_size=73, stride=73)``.

The terms of eq. (9) are registered (:data:`LOSS_TERMS`): a :class:`LossTerm` is a name, a function of a
:class:`LossInput` and a weight (fixed, or the ``TrainConfig`` field holding it). :func:`total_loss` and
the training loop read the registry, so a new term is its function and one :func:`register_loss_term`;
the loss of a batch travels as :class:`Losses` (the total and each term by name).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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


@dataclass(frozen=True)
class LossInput:
    """What a loss term may read: the FC logits, the labels, the masked features F~ (None for the variants
    without a mask) and this step's channel-drop mask (eq. 4; None draws a fresh one)."""

    logits: Tensor
    labels: Tensor
    masked: Tensor | None = None
    drop_mask: Tensor | None = None
    num_classes: int = NUM_CLASSES


@dataclass(frozen=True)
class LossTerm:
    """One term of eq. (9): its name in the epoch's log line (the paper's three are also fields of each epoch in
    ``metrics.json``), its function and its weight."""

    name: str
    function: Callable[[LossInput], Tensor]  # the unweighted term
    weight: str | float = 1.0  # a fixed weight, or the TrainConfig field holding it ("w_sep")
    needs_mask: bool = False  # reads F~: off (weight 0) for the variants without a mask
    uses_drop_mask: bool = False  # reads the channel-drop mask (the training loop draws one per step)


@dataclass(frozen=True)
class WeightedTerm:
    term: LossTerm
    weight: float


@dataclass(frozen=True)
class Losses:
    """The loss of one batch: ``total`` (eq. 9, what is back-propagated) and each active term unweighted."""

    total: Tensor
    terms: dict[str, Tensor]  # LossTerm.name -> value, in the registry's order

    def detached(self) -> Tensor:
        """``[total, *terms]`` as one float vector (one host sync, one all-reduce for all of them)."""
        return torch.stack([self.total.detach().float(), *(v.detach().float() for v in self.terms.values())])

    def read(self, values: list[float]) -> LossValues:
        """The numbers of :meth:`detached` (after summing over ranks, say), named again."""
        return LossValues(values[0], dict(zip(self.terms, values[1:], strict=True)))


@dataclass(frozen=True)
class LossValues:
    total: float
    terms: dict[str, float]  # LossTerm.name -> value


LOSS_TERMS: dict[str, LossTerm] = {}  # name -> LossTerm, in the order of the log line


def register_loss_term(term: LossTerm) -> LossTerm:
    if term.name in LOSS_TERMS or term.name == "loss":  # "loss" is the total's name in metrics.json
        raise ValueError(f"loss term {term.name!r} is registered already (or is the total's name, 'loss')")
    LOSS_TERMS[term.name] = term
    return term


def _separation(x: LossInput) -> Tensor:
    drop = x.drop_mask
    if drop is None:
        drop = channel_drop_mask(x.masked.shape[1], x.num_classes, device=x.masked.device)
    return separation_loss(x.masked, x.labels, drop, x.num_classes)


register_loss_term(LossTerm("ce", lambda x: classification_loss(x.logits, x.labels)))
register_loss_term(LossTerm("sep", _separation, "w_sep", needs_mask=True, uses_drop_mask=True))
register_loss_term(LossTerm("div", lambda x: diverse_loss(x.masked, x.num_classes), "w_div", needs_mask=True))


def weighted_terms(settings: object, has_mask: bool = True) -> tuple[WeightedTerm, ...]:
    """The registered terms that count, with their weights: a fixed weight, or the field of ``settings``
    (a TrainConfig) a term names. Zero weights are left out (ablations), and so are the terms that need a
    mask when the variant has none."""
    out = []
    for term in LOSS_TERMS.values():
        weight = float(getattr(settings, term.weight) if isinstance(term.weight, str) else term.weight)
        if weight and (has_mask or not term.needs_mask):
            out.append(WeightedTerm(term, weight))
    return tuple(out)


@dataclass(frozen=True)
class PaperWeights:
    """The weights of eq. (9) as TrainConfig names them (the paper's by default)."""

    w_sep: float = DEFAULT_SEP_WEIGHT
    w_div: float = DEFAULT_DIV_WEIGHT


def total_loss(logits: Tensor, labels: Tensor, masked_features: Tensor | None,
               drop_mask: Tensor | None = None, w_sep: float = DEFAULT_SEP_WEIGHT,
               w_div: float = DEFAULT_DIV_WEIGHT, num_classes: int = NUM_CLASSES,
               terms: tuple[WeightedTerm, ...] | None = None) -> Losses:
    """Eq. (9): ``CE + w_sep * l_sep + w_div * l_div``, the weighted sum of the registered terms.

    ``terms``: the weighted terms (:func:`weighted_terms`); None: the registry's with ``w_sep`` and
    ``w_div``. A zero weight skips that term entirely (ablations). ``drop_mask`` of None draws a fresh
    one from the global RNG. Variants without a mask (``masked_features`` None) must set ``w_sep`` and
    ``w_div`` to 0 (the terms that need the mask are then left out), otherwise a CafeError is raised.
    """
    if terms is None:
        terms = weighted_terms(PaperWeights(w_sep, w_div), has_mask=masked_features is not None or bool(w_sep or w_div))
    if masked_features is None and any(t.term.needs_mask for t in terms):
        raise CafeError("this model variant has no mask, so the separation and diverse losses do "
                        "not apply: set both of their weights to 0")
    x = LossInput(logits, labels, masked_features, drop_mask, num_classes)
    values = {t.term.name: t.term.function(x) for t in terms}
    weighted = [t.weight * values[t.term.name] for t in terms]
    return Losses(sum(weighted[1:], start=weighted[0]), values)
