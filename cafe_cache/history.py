"""The per-epoch history of a training: a list of :class:`EpochLog`, stored as ``RUN/metrics.json`` and in
the resume state, read back by resume and the figures.

``to_dict``/``from_dict`` are its one schema; ``from_dict`` also reads the entries of older cafe versions
(without ``source_test_accs``, which single-source runs did not record).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import CafeError


@dataclass(frozen=True)
class EpochLog:
    epoch: int
    loss: float
    ce: float
    sep: float | None  # None: the separation loss was off (weight 0)
    div: float | None  # None: the diverse loss was off
    train_acc: float
    source_test_acc: float  # the mean over the sources' test splits (one source: its own); picks ``best``
    lr: float
    seconds: float
    images_per_s: float
    source_test_accs: dict[str, float] = field(default_factory=dict)  # each source's own test accuracy

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> EpochLog:
        """An entry of ``metrics.json`` or of the resume state; ValueError naming what is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"an epoch is {data!r}, not an object")
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "source_test_accs":
                accs = data.get(f.name) or {}
                if not isinstance(accs, dict):
                    raise ValueError(f"'source_test_accs' is {accs!r}, not an object")
                values[f.name] = {str(k): _number(accs, k) for k in accs}
            elif f.name == "epoch":
                values[f.name] = int(_number(data, f.name))
            elif f.name in ("sep", "div"):
                values[f.name] = None if data.get(f.name) is None else _number(data, f.name)
            else:
                values[f.name] = _number(data, f.name)
        return cls(**values)


def _number(data: dict[str, Any], key: str) -> float:
    if key not in data:
        raise ValueError(f"'{key}' is missing")
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"'{key}' is {value!r}, not a number")
    return float(value)


def history_to_json(history: list[EpochLog]) -> list[dict[str, Any]]:
    """The history as plain lists and dicts (JSON, and the resume state ``torch.load(weights_only=True)`` reads)."""
    return [e.to_dict() for e in history]


def history_from_json(data: Any, where: Path) -> list[EpochLog]:
    """The history stored in ``where``; one CafeError naming the file when it is not one."""
    try:
        if not isinstance(data, list):
            raise ValueError(f"it holds {type(data).__name__}, not a list of epochs")
        return [EpochLog.from_dict(e) for e in data]
    except ValueError as e:
        raise CafeError(f"{where} does not hold the per-epoch history cafe writes ({e}); it is damaged. "
                        "Train into another --out.") from None


def read_history(path: Path) -> list[EpochLog]:
    """``RUN/metrics.json``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError, UnicodeDecodeError) as e:
        raise CafeError(f"{path} cannot be read as the run's per-epoch history ({e}).") from None
    return history_from_json(data, path)
