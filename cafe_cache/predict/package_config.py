"""The ``config.json`` of a ``cafe package`` folder, typed: :class:`PackageConfig` writes it and reads it
back (one schema), and the model card is made from it.

On disk (``format: cafe-package-1``)::

    classes, inputs {clip_image, mask_image}, preprocessing (Preprocess.to_dict),
    clip {model, weights, weights_sha256, activation, random_weights, seed},
    weights {file, sha256, which, holds}, random_weights {clip, backbone}, warning, deviations,
    run (the run's own config.json), format, library, cafe_version
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..classes import CLASSES
from ..errors import CafeError
from ..run.folder import RunConfig
from ..version import __version__
from .infer import Preprocess

PACKAGE_FORMAT = "cafe-package-1"
WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class PackagedClip:
    """The frozen image tower ``cafe_cache.load`` rebuilds (it is not in ``model.safetensors``)."""

    model: str
    weights: str  # the display text: a pretrained tag, a file name or RANDOM
    weights_sha256: str | None
    activation: str
    random_weights: bool
    seed: int | None


@dataclass(frozen=True)
class PackageConfig:
    clip: PackagedClip
    preprocess: Preprocess  # its sizes are the inputs: clip_size for CLIP, mask_size for the mask branch
    weights_sha256: str  # of model.safetensors
    which: str  # the run's weights it holds: last or best
    random_clip: bool
    random_backbone: bool
    warning: str | None  # the random-weights warning, None for a real model
    deviations: tuple[str, ...]  # from the paper's official setting
    run: RunConfig
    classes: tuple[str, ...] = CLASSES
    cafe_version: str = __version__

    @property
    def random(self) -> bool:
        return self.random_clip or self.random_backbone

    def to_json(self) -> dict[str, Any]:
        p = self.preprocess
        return {
            "format": PACKAGE_FORMAT, "library": "cafe-fer", "cafe_version": self.cafe_version,
            "classes": list(self.classes),
            "inputs": {"clip_image": p.clip_size, "mask_image": p.mask_size},
            "preprocessing": p.to_dict(),
            "clip": {"model": self.clip.model, "weights": self.clip.weights, "weights_sha256": self.clip.weights_sha256,
                     "activation": self.clip.activation, "random_weights": self.clip.random_weights,
                     "seed": self.clip.seed},
            "weights": {"file": WEIGHTS_FILE, "sha256": self.weights_sha256, "which": self.which,
                        "holds": "the CAFE mask branch and FC; CLIP is rebuilt from 'clip'"},
            "random_weights": {"clip": self.random_clip, "backbone": self.random_backbone},
            "warning": self.warning,
            "deviations": list(self.deviations),
            "run": self.run.to_json(),
        }

    @classmethod
    def from_json(cls, data: Any, path: Path) -> PackageConfig:
        """From a package's config.json; one line naming ``path`` when it is not what `cafe package` writes."""
        try:
            inputs, pre, clip, rnd = data["inputs"], data["preprocessing"], data["clip"], data["random_weights"]
            preprocess = Preprocess(int(inputs["clip_image"]), int(inputs["mask_image"]),
                                    mean=tuple(float(v) for v in pre["mean"]), std=tuple(float(v) for v in pre["std"]))
            return cls(clip=PackagedClip(str(clip["model"]), str(clip["weights"]), clip.get("weights_sha256"),
                                         str(clip["activation"]), bool(clip["random_weights"]), clip.get("seed")),
                       preprocess=preprocess, weights_sha256=str(data["weights"]["sha256"]),
                       which=str(data["weights"]["which"]), random_clip=bool(rnd["clip"]),
                       random_backbone=bool(rnd["backbone"]), warning=data.get("warning"),
                       deviations=tuple(data.get("deviations", ())), run=RunConfig.from_json(data["run"]),
                       classes=tuple(data["classes"]), cafe_version=str(data.get("cafe_version", "?")))
        except (KeyError, TypeError, ValueError, AttributeError, CafeError) as e:
            raise CafeError(f"{path} is not the config.json `cafe package` writes ({type(e).__name__}: {e}); "
                            "download or write the package again.") from None
