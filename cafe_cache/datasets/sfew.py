"""SFEW 2.0: ``Train/<Class>/`` and ``Val/<Class>/``; Val is the test set used in the paper."""

from __future__ import annotations

from .folder import ClassFolderReader
from .registry import register


@register
class Sfew(ClassFolderReader):
    """SFEW 2.0 class folders Angry, Disgust, Fear, Happy, Neutral, Sad, Surprise.

    The official Test split has no labels, so its folder is ignored and Val becomes "test",
    as in the paper (431 images).
    """

    name = "sfew"
    description = "SFEW 2.0 (Val is the test set)"
    layout = "Train|Val/<Class>/*.png (Val is the test split; unlabelled Test/ is ignored)"
    split_folders = {"train": "train", "val": "test"}
    unknown_class_hint = "; expected Angry, Disgust, Fear, Happy, Neutral, Sad or Surprise"
