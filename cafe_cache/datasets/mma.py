"""MMA Facial Expression (MMAFEDB): ``train|valid|test/<class>/`` with lower-case class names."""

from __future__ import annotations

from .folder import ClassFolderReader
from .registry import register


@register
class Mma(ClassFolderReader):
    """MMAFEDB as published: three split folders of seven lower-case class folders."""

    name = "mma"
    description = "MMA Facial Expression (MMAFEDB)"
    layout = "train|valid|test/<class>/*.jpg with lower-case class names"
    split_folders = {"train": "train", "valid": "val", "test": "test"}
    unknown_class_hint = "; expected angry, disgust, fear, happy, neutral, sad or surprise"
