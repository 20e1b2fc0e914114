"""The fingerprint of a feature cache: everything that changes the stored features.

Stored as JSON in the cache's ``fingerprint`` attribute (and in every run folder's config): the model, its
weights' source as a tagged value (:mod:`.weights`: ``{"kind": "pretrained", "tag": "openai"}``,
``{"kind": "file", "name": ..., "sha256": ...}``, ``{"kind": "random", "seed": 0}``), the activation, and how
the images were made into features. Fingerprints written before the source was tagged (``"weights":
"pretrained:openai"`` beside ``weights_sha256``, ``random_weights`` and ``seed``) and before the activation was
recorded (cafe <= 0.1) still read, and compare equal to today's of the same weights.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .weights import WeightsInfo, WeightsSource, source_from_json, source_from_text, source_to_json

if TYPE_CHECKING:
    from .extractor import FeatureExtractor

# the fields compared and named, in this order, when two fingerprints differ (``differences``)
FIELD_ORDER = ("model", "weights", "weights_sha256", "random_weights", "seed", "preprocess", "transform", "views",
               "image_size", "dtype", "precision", "activation")
OLD_WEIGHTS_KEYS = ("weights", "weights_sha256", "random_weights", "seed")  # the source as text, before the tag


@dataclass(frozen=True)
class Fingerprint:
    """Everything that changes the stored features: the extractor's weights (:class:`WeightsInfo`) and how
    they were used. Two caches agree when their fingerprints are equal.

    ``transform`` (what the preprocessing means for a non-open_clip extractor, e.g. a timm model's
    ``pretrained_cfg`` resize and mean/std) is written only when set.
    """

    weights_info: WeightsInfo
    preprocess: str
    views: tuple[str, ...]
    image_size: int
    dtype: str
    precision: str
    transform: str | None = None

    @classmethod
    def for_clip(cls, clip: FeatureExtractor, *, preprocess: str, views: tuple[str, ...], dtype: str,
                 precision: str) -> Fingerprint:
        """The fingerprint of features made by the extractor ``clip`` with these settings."""
        return cls(clip.info, preprocess=preprocess, views=tuple(views), image_size=clip.image_size, dtype=dtype,
                   precision=precision, transform=clip.transform(preprocess))

    for_extractor = for_clip

    # the weights' fields
    model = property(lambda self: self.weights_info.model)
    source = property(lambda self: self.weights_info.source, doc="where the weights came from (tagged)")
    weights = property(lambda self: self.weights_info.source.text, doc='"pretrained:<tag>", "file:<name>", "random"')
    weights_sha256 = property(lambda self: self.weights_info.sha256)
    random_weights = property(lambda self: self.weights_info.random_weights)
    seed = property(lambda self: self.weights_info.seed)
    activation = property(lambda self: self.weights_info.activation, doc="the MLP activation CLIP was built with")

    def to_dict(self) -> dict[str, Any]:
        """The dict of the JSON form (views as a list, the source tagged)."""
        d = dict(model=self.model, weights=source_to_json(self.source), activation=self.activation,
                 preprocess=self.preprocess, views=list(self.views), image_size=self.image_size, dtype=self.dtype,
                 precision=self.precision)
        if self.transform is not None:
            d["transform"] = self.transform
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fingerprint:
        """A fingerprint of :meth:`to_dict`'s form or of the forms written before (see the module)."""
        d = dict(data)
        model = d.pop("model")
        activation = d.pop("activation", "quickgelu" if model.endswith("-quickgelu") else "gelu")  # cafe <= 0.1
        info = WeightsInfo(model, _source(d), activation)
        for key in OLD_WEIGHTS_KEYS:
            d.pop(key, None)
        d["views"] = tuple(d["views"])
        return cls(info, **d)

    @classmethod
    def from_json(cls, text: str) -> Fingerprint:
        return cls.from_dict(json.loads(text))

    def compared(self) -> dict[str, Any]:
        """The fields of :data:`FIELD_ORDER` (the weights' source as text beside its sha256 and seed)."""
        return {key: getattr(self, key) for key in FIELD_ORDER}

    def differences(self, other: Fingerprint) -> list[str]:
        mine, theirs = self.compared(), other.compared()
        return [f"{k}: cache has {mine[k]!r}, asked for {theirs[k]!r}" for k in FIELD_ORDER if mine[k] != theirs[k]]

    @property
    def weights_label(self) -> str:
        who = f"RANDOM WEIGHTS (seed {self.seed})" if self.random_weights else self.weights
        return f"{self.model} {who}" + ("" if self.activation == "native" else f" ({self.activation})")

    def same_weights(self, other: Fingerprint) -> bool:
        """Same extractor: model, weights and activation (features of the two are comparable)."""
        return self.weights_info == other.weights_info


def _source(d: dict[str, Any]) -> WeightsSource:
    """The weights' source of a stored fingerprint: tagged, or the text of the fingerprints written before."""
    stored = d.pop("weights")
    if isinstance(stored, dict):
        return source_from_json(stored)
    return source_from_text(stored, d.get("weights_sha256"), d.get("seed"))
