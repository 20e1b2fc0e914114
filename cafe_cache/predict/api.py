"""``cafe_cache.load``: the one entry point of the Python API, light to import.

It checks its arguments and resolves an ``hf://`` source through the Hugging Face cache (or the Hub)
before torch, open_clip and the model code are imported, so a package that is neither cached nor
reachable fails in about a second; then :func:`.recognizer.open_recognizer` builds the model.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CafeError
from ..options import DETECTOR_NAMES
from .hub import HF_PREFIX, resolve_hf

if TYPE_CHECKING:
    from .recognizer import Recognizer


class RandomWeightsWarning(UserWarning):
    """Issued by :func:`load` for a model trained on random CLIP weights or from a random backbone."""


def load(source: str | Path, *, device: str = "auto", detector: str = "auto", which: str | None = None,
         clip_weights: str | None = None, batch_size: int = 32, warn: bool = True) -> Recognizer:
    """A trained model, ready to predict.

    ``source``: a ``cafe train`` run folder or a checkpoint in one (``which``: ``last``, the default,
    or ``best``), a ``cafe export`` ``.onnx`` file (onnxruntime), a ``cafe package`` folder, or
    ``hf://ORG/NAME[@REVISION]`` (a package on the Hugging Face Hub; the local HF cache works offline).
    ``clip_weights``: the CLIP file a run's cache was made from, when it was made from a file.
    ``detector``: ``auto``, ``mtcnn`` or ``lbp`` (built when ``predict`` first detects).  A model made
    with random weights issues a :class:`RandomWeightsWarning` (``warn=False``: only ``.warning`` says so).
    """
    if detector not in DETECTOR_NAMES:
        raise CafeError(f"unknown face detector {detector!r}: pick one of {', '.join(DETECTOR_NAMES)}.")
    source = str(source)
    hub_folder = None
    if source.startswith(HF_PREFIX):
        if which is not None:
            raise CafeError(f"which={which!r} picks the weights of a run folder; {source} holds one set of weights.")
        hub_folder = resolve_hf(source)
    from .recognizer import open_recognizer  # torch, open_clip and the model code

    recognizer = open_recognizer(source, hub_folder=hub_folder, device=device, detector=detector, which=which,
                                 clip_weights=clip_weights, batch_size=batch_size)
    if warn and recognizer.warning:
        warnings.warn(f"{source}: {recognizer.warning}", RandomWeightsWarning, stacklevel=2)
    return recognizer
