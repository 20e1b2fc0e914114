"""Accuracy, mean class accuracy (UAR), per-class accuracy, confusion, the paper's means and result tables.

The paper's Table 1 "Mean" averages all five test sets INCLUDING the source; we report it as
``paper_mean`` and, beside it, ``unseen_mean`` over the targets never seen in training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .classes import CLASSES, NUM_CLASSES
from .paper import DATASETS
from .results import Summary, TargetMetrics, accuracies


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int = NUM_CLASSES) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(np.asarray(y_true) * n + np.asarray(y_pred), minlength=n * n).reshape(n, n)


def metrics(y_true: np.ndarray, y_pred: np.ndarray) -> TargetMetrics:
    """Accuracy and UAR in percent; classes absent from y_true are left out of the UAR (None)."""
    cm = confusion_matrix(y_true, y_pred)
    support = cm.sum(1)
    per_class = [float(100.0 * cm[c, c] / support[c]) if support[c] else None for c in range(NUM_CLASSES)]
    present = [a for a in per_class if a is not None]
    return TargetMetrics(n=int(support.sum()), accuracy=float(100.0 * np.trace(cm) / max(1, support.sum())),
                         uar=float(np.mean(present)) if present else 0.0, per_class=dict(zip(CLASSES, per_class)),
                         confusion=cm.tolist())


def means(acc: Mapping[str, float], source: str | None,
          over: Sequence[str] | None = None) -> tuple[float | None, float | None]:
    """The paper's two means of one row of accuracies (test set -> %), the one definition cafe uses.

    - paper mean: every test set of ``over``, the source's own included (Table 1's "Mean");
    - unseen mean: those other than ``source`` (Table 2's "Mean"); a run on several sources names them all,
      joined by commas (``"rafdb,ferplus"``), and each is left out.

    ``over`` is the test sets a mean is taken over: the paper's five for its tables, by default those
    in ``acc``. A mean with one of its test sets missing is None, never a mean over fewer sets that
    would pass for the paper's.
    """
    over = list(acc) if over is None else list(over)
    unseen = [d for d in over if d not in source_set(source)]

    def mean(sets: list[str]) -> float | None:
        return float(np.mean([acc[d] for d in sets])) if sets and all(d in acc for d in sets) else None

    return mean(over), mean(unseen)


def source_set(source: str | None) -> set[str]:
    """The training sets a run's ``source`` names: one cache name, or several joined by commas."""
    return {s.strip() for s in (source or "").split(",") if s.strip()}


def summary(results: Mapping[str, TargetMetrics], source: str | None) -> Summary:
    """:func:`means` over the evaluated targets, and the source's own accuracy."""
    accs = accuracies(dict(results))
    paper_mean, unseen_mean = means(accs, source)
    sources = source_set(source)
    own = [accs[s] for s in sorted(sources) if s in accs]
    if sources and not sources <= set(accs):
        paper_mean = None  # it would be over unseen targets only, not the source-included mean it names
    return Summary(paper_mean, unseen_mean, (own[0] if len(own) == 1 else sum(own) / len(own)) if own else None)


def markdown_table(results: Mapping[str, TargetMetrics], source: str | None, title: str) -> str:
    """One row per target: accuracy, UAR and per-class accuracy; then the two means."""
    head = "| target | n | accuracy | UAR | " + " | ".join(CLASSES) + " |"
    lines = [f"### {title}", "", head, "|" + "---|" * (4 + len(CLASSES))]
    for name, m in results.items():
        cells = " | ".join("-" if a is None else f"{a:.1f}" for a in m.per_class.values())
        lines.append(f"| {target_label(name, m, source)} | {m.n} | {m.accuracy:.2f} | {m.uar:.2f} | {cells} |")
    lines += ["", *(f"- {part}" for part in means_line(results, source))]
    lines += [f"- {m.left_out}" for m in results.values() if m.left_out]
    return "\n".join(lines) + "\n"


def target_label(name: str, m: TargetMetrics, source: str | None) -> str:
    """``sfew``, ``rafdb (source)``, ``sfew [BGR]`` (evaluated with the official notebooks' BGR input)."""
    return name + (" (source)" if name in source_set(source) else "") + (" [BGR]" if m.bgr else "")


def plural(n: int, word: str, words: str | None = None) -> str:
    """``1 test set``, ``2 test sets``."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


def means_line(results: Mapping[str, TargetMetrics], source: str | None) -> list[str]:
    """The two means, named so nobody mixes them up; one plain mean when nothing was trained on a source."""
    s = summary(results, source)
    unevaluated = source is not None and not source_set(source) <= set(results)
    if unevaluated and s.unseen_mean is not None:  # the one mean there is
        return [f"mean over {plural(len(results), 'unseen target')} (source not evaluated): {s.unseen_mean:.2f}"]
    if s.paper_mean is None:
        return []
    if source is None:
        return [f"mean over the {plural(len(results), 'test set')}: {s.paper_mean:.2f}"]
    name = "paper Mean" if set(results) == set(DATASETS) else "Mean"  # the paper's label only for its own sets
    sets = f"all {len(results)} test sets" if len(results) > 1 else "1 test set"
    parts = [f"{name} ({sets}, source included): {s.paper_mean:.2f}"]
    if s.unseen_mean is not None:
        parts.append(f"mean over unseen targets only: {s.unseen_mean:.2f}")
    return parts
