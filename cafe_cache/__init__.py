"""cafe_cache: CAFE (ECCV 2024) generalizable FER on a frozen-CLIP feature cache.

Stage one (:mod:`cafe_cache.extract`) runs a frozen CLIP image tower once per dataset
and stores its features in HDF5.  Stage two (:mod:`cafe_cache.train`) trains the
ResNet mask branch of CAFE against those cached features.

The Python API (:mod:`cafe_cache.predict.api`, :mod:`cafe_cache.predict.recognizer`)::

    import cafe_cache as cafe
    faces = cafe.load("runs/rafdb-<time>").predict("photo.jpg")   # [FacePrediction(box, score, probs, label)]

``load``, ``Recognizer`` and ``FacePrediction`` are imported on first use, so ``import cafe_cache``
stays light (no torch) for the ``cafe`` command.
"""

from __future__ import annotations

import importlib
from typing import Any

from .version import __version__

__all__ = ["FacePrediction", "Recognizer", "load", "__version__"]

# name -> the module that defines it (``load`` is light: torch loads when a model is opened)
_API = {"load": "api", "RandomWeightsWarning": "api", "Recognizer": "recognizer", "FacePrediction": "recognizer"}


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(f"cafe_cache.predict.{_API[name]}"), name)
    raise AttributeError(f"module 'cafe_cache' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
