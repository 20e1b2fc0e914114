"""The 7 basic expressions in the RAF-DB order that every reader maps to."""

from __future__ import annotations

CLASSES: tuple[str, ...] = ("Surprise", "Fear", "Disgust", "Happy", "Sad", "Anger", "Neutral")
NUM_CLASSES = len(CLASSES)

# English class names and their usual variants (lower-case) -> target id.
CLASS_ALIASES: dict[str, int] = {
    "surprise": 0, "surprised": 0, "surprising": 0,
    "fear": 1, "fearful": 1, "afraid": 1, "scared": 1,
    "disgust": 2, "disgusted": 2, "disgusting": 2,
    "happy": 3, "happiness": 3, "joy": 3, "happily": 3,
    "sad": 4, "sadness": 4, "unhappy": 4,
    "anger": 5, "angry": 5,
    "neutral": 6, "calm": 6,
}


def class_id(name: str) -> int | None:
    """Target id of an English class name (any case, usual variants); None if unknown."""
    return CLASS_ALIASES.get(name.strip().lower())
