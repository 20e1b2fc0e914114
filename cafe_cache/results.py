"""What an evaluation writes and every reader reads: the one schema of ``results.json``.

:class:`TargetMetrics` is one test set's numbers, :class:`EvalResult` one ``RUN/eval-<which>/results.json``
(``cafe eval``, ``cafe train``), :class:`ZeroShotTable` one table of ``cafe zeroshot``'s ``results.json``.
Each is written with ``to_dict`` and read with ``from_dict``, which also reads the files older cafe
versions wrote (without ``bgr``, ``unreadable``, ``left_out`` per target or ``bgr_targets``); a file
that is not the schema is one :class:`~cafe_cache.errors.CafeError` naming it and what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .classes import CLASSES
from .errors import CafeError

T = TypeVar("T")


class SchemaError(ValueError):
    """A results file's entry has the wrong type or is missing (turned into a CafeError naming the file)."""


def _get(data: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    """``data[key]`` checked to be ``kind`` (bool is no number); ``default`` when absent, if one is given."""
    if key not in data:
        if default is ...:
            raise SchemaError(f"'{key}' is missing")
        return default
    value = data[key]
    number = kind in (int, float) or (isinstance(kind, tuple) and float in kind)
    if not isinstance(value, kind) or (number and isinstance(value, bool)):
        raise SchemaError(f"'{key}' is {value!r}, not {getattr(kind, '__name__', kind)}")
    return value


def _number(data: dict[str, Any], key: str) -> float:
    return float(_get(data, key, (int, float)))


def _optional_number(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    return None if value is None else _number(data, key)


@dataclass(frozen=True)
class TargetMetrics:
    """One test set: accuracy and UAR in percent, per-class accuracy (None: class absent), confusion
    counts[true][predicted]; ``bgr`` when it was evaluated on BGR input, ``unreadable`` rows left out."""

    n: int
    accuracy: float
    uar: float
    per_class: dict[str, float | None]
    confusion: list[list[int]]
    bgr: bool = False
    unreadable: int = 0
    left_out: str | None = None  # the line saying so, when ``unreadable``

    def to_dict(self) -> dict[str, Any]:
        return {"n": self.n, "accuracy": self.accuracy, "uar": self.uar, "per_class": dict(self.per_class),
                "confusion": [list(row) for row in self.confusion], "bgr": self.bgr,
                "unreadable": self.unreadable, "left_out": self.left_out}

    @classmethod
    def from_dict(cls, data: Any) -> TargetMetrics:
        if not isinstance(data, dict):
            raise SchemaError(f"a target's metrics are {data!r}, not an object")
        per_class = _get(data, "per_class", dict)
        if set(per_class) != set(CLASSES):
            raise SchemaError(f"'per_class' names {sorted(per_class)}, not the classes {', '.join(CLASSES)}")
        per_class = {c: _optional_number(per_class, c) for c in CLASSES}
        confusion = _get(data, "confusion", list)
        if len(confusion) != len(CLASSES) or not all(
                isinstance(row, list) and len(row) == len(CLASSES) and all(type(v) is int for v in row)
                for row in confusion):
            raise SchemaError(f"'confusion' is not {len(CLASSES)}x{len(CLASSES)} counts")
        left_out = _get(data, "left_out", (str, type(None)), None)
        return cls(_get(data, "n", int), _number(data, "accuracy"), _number(data, "uar"), per_class, confusion,
                   _get(data, "bgr", bool, False), _get(data, "unreadable", int, 0), left_out)


@dataclass(frozen=True)
class Summary:
    """The two means of :func:`cafe_cache.metrics.means` over the evaluated targets and the source's own accuracy."""

    paper_mean: float | None = None
    unseen_mean: float | None = None
    source: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {"paper_mean": self.paper_mean, "unseen_mean": self.unseen_mean, "source": self.source}

    @classmethod
    def from_dict(cls, data: Any) -> Summary:
        if not isinstance(data, dict):
            raise SchemaError(f"'summary' is {data!r}, not an object")
        return cls(*(_optional_number(data, k) for k in ("paper_mean", "unseen_mean", "source")))


def _targets(data: dict[str, Any]) -> dict[str, TargetMetrics]:
    targets = {}
    for name, m in _get(data, "targets", dict).items():
        try:
            targets[name] = TargetMetrics.from_dict(m)
        except SchemaError as e:
            raise SchemaError(f"target {name}: {e}") from None
    return targets


def accuracies(targets: dict[str, TargetMetrics]) -> dict[str, float]:
    """Test set -> accuracy (%), what the tables and means are made of."""
    return {name: m.accuracy for name, m in targets.items()}


def targets_to_dict(targets: dict[str, TargetMetrics]) -> dict[str, dict[str, Any]]:
    return {name: m.to_dict() for name, m in targets.items()}


@dataclass(frozen=True)
class EvalResult:
    """``RUN/eval-<which>/results.json``: the ``which`` weights of a run trained on ``source`` on each target."""

    title: str
    source: str | None
    which: str
    random_weights: bool
    clip: str
    targets: dict[str, TargetMetrics]
    summary: Summary

    @property
    def bgr_targets(self) -> list[str]:
        return [name for name, m in self.targets.items() if m.bgr]

    @property
    def accuracies(self) -> dict[str, float]:
        return accuracies(self.targets)

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "source": self.source, "which": self.which,
                "random_weights": self.random_weights, "clip": self.clip,
                "targets": targets_to_dict(self.targets), "summary": self.summary.to_dict(),
                "bgr_targets": self.bgr_targets}

    @classmethod
    def from_dict(cls, data: Any) -> EvalResult:
        if not isinstance(data, dict):
            raise SchemaError("it is not a JSON object")
        summary = Summary.from_dict(data["summary"]) if data.get("summary") is not None else Summary()
        return cls(_get(data, "title", str, ""), _get(data, "source", (str, type(None)), None),
                   _get(data, "which", str, ""), _get(data, "random_weights", bool, False),
                   _get(data, "clip", str, ""), _targets(data), summary)


@dataclass(frozen=True)
class ZeroShotTable:
    """One table of ``cafe zeroshot``'s ``results.json``: ``method`` with one CLIP's weights on each target,
    and the published ViT-B/32 numbers (``{"uar": .., "war": ..}`` per target) beside it."""

    method: str
    title: str
    clip: str
    random_weights: bool
    preprocess: str
    targets: dict[str, TargetMetrics]
    summary: Summary
    published: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "title": self.title, "clip": self.clip, "random_weights": self.random_weights,
                "preprocess": self.preprocess, "targets": targets_to_dict(self.targets),
                "summary": self.summary.to_dict(), "published": self.published}

    @classmethod
    def from_dict(cls, data: Any) -> ZeroShotTable:
        if not isinstance(data, dict):
            raise SchemaError(f"a table is {data!r}, not an object")
        summary = Summary.from_dict(data["summary"]) if data.get("summary") is not None else Summary()
        return cls(_get(data, "method", str), _get(data, "title", str), _get(data, "clip", str, ""),
                   _get(data, "random_weights", bool, False), _get(data, "preprocess", str, ""), _targets(data),
                   summary, _get(data, "published", dict, {}))


def _read(path: Path, parse: Callable[[Any], T], remedy: str) -> T:
    try:
        data = json.loads(Path(path).read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CafeError(f"{path} is not valid JSON ({e}); {remedy}") from None
    except OSError as e:
        raise CafeError(f"{path} cannot be read ({e.strerror or e}); {remedy}") from None
    try:
        return parse(data)
    except (SchemaError, KeyError, TypeError) as e:
        raise CafeError(f"{path} is not the results file cafe writes ({e}); {remedy}") from None


def read_eval_result(path: str | Path) -> EvalResult:
    """An evaluation's ``results.json``; a damaged or foreign file is one line naming it."""
    return _read(Path(path), EvalResult.from_dict, "rerun `cafe eval` for it.")


def read_eval_result_if_any(path: str | Path) -> EvalResult | None:
    """:func:`read_eval_result`, None when the file does not exist (the run was not evaluated yet)."""
    return read_eval_result(path) if Path(path).is_file() else None


def read_zero_shot_tables(path: str | Path) -> list[ZeroShotTable]:
    """The tables of ``cafe zeroshot``'s ``results.json``."""
    def parse(data: Any) -> list[ZeroShotTable]:
        if not isinstance(data, dict):
            raise SchemaError("it is not a JSON object")
        return [ZeroShotTable.from_dict(t) for t in _get(data, "tables", list)]

    return _read(Path(path), parse, "rerun `cafe zeroshot` to write it again.")
