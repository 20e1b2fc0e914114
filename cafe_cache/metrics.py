"""Accuracy, mean class accuracy (UAR), per-class accuracy, confusion, the paper's means and result tables.

The paper's Table 1 "Mean" averages all five test sets INCLUDING the source; we report it as
``paper_mean`` and, beside it, ``unseen_mean`` over the targets never seen in training.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .classes import CLASSES, NUM_CLASSES


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n: int = NUM_CLASSES) -> np.ndarray:
    """counts[true, predicted]."""
    return np.bincount(np.asarray(y_true) * n + np.asarray(y_pred), minlength=n * n).reshape(n, n)


def metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Accuracy and UAR in percent; classes absent from y_true are left out of the UAR (None)."""
    cm = confusion_matrix(y_true, y_pred)
    support = cm.sum(1)
    per_class = [100.0 * cm[c, c] / support[c] if support[c] else None for c in range(NUM_CLASSES)]
    present = [a for a in per_class if a is not None]
    return {
        "n": int(support.sum()),
        "accuracy": 100.0 * np.trace(cm) / max(1, support.sum()),
        "uar": float(np.mean(present)) if present else 0.0,
        "per_class": dict(zip(CLASSES, per_class)),
        "confusion": cm.tolist(),
    }


def summary(results: dict[str, dict[str, Any]], source: str | None) -> dict[str, float | None]:
    """paper_mean: all targets incl. the source (Table 1's Mean); unseen_mean: the others only."""
    accs = {k: v["accuracy"] for k, v in results.items()}
    unseen = [a for k, a in accs.items() if k != source]
    return {"paper_mean": float(np.mean(list(accs.values()))) if accs else None,
            "unseen_mean": float(np.mean(unseen)) if unseen else None,
            "source": accs.get(source) if source else None}


def markdown_table(results: dict[str, dict[str, Any]], source: str | None, title: str) -> str:
    """One row per target: accuracy, UAR and per-class accuracy; then the two means."""
    head = "| target | n | accuracy | UAR | " + " | ".join(CLASSES) + " |"
    lines = [f"### {title}", "", head, "|" + "---|" * (4 + len(CLASSES))]
    for name, m in results.items():
        cells = " | ".join("-" if a is None else f"{a:.1f}" for a in m["per_class"].values())
        tag = " (source)" if name == source else ""
        lines.append(f"| {name}{tag} | {m['n']} | {m['accuracy']:.2f} | {m['uar']:.2f} | {cells} |")
    lines += ["", *(f"- {part}" for part in means_line(results, source))]
    return "\n".join(lines) + "\n"


def means_line(results: dict[str, dict[str, Any]], source: str | None) -> list[str]:
    """The two means, named so nobody mixes them up; one plain mean when nothing was trained on a source."""
    s = summary(results, source)
    if s["paper_mean"] is None:
        return []
    if source is None:
        return [f"mean over the {len(results)} test sets: {s['paper_mean']:.2f}"]
    from .paper import DATASETS  # the paper's five test sets

    name = "paper Mean" if set(results) == set(DATASETS) else "Mean"  # the paper's label only for its own sets
    parts = [f"{name} (all {len(results)} test sets, source included): {s['paper_mean']:.2f}"]
    if s["unseen_mean"] is not None:
        parts.append(f"mean over unseen targets only: {s['unseen_mean']:.2f}")
    return parts


def jsonable(results: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: {kk: vv for kk, vv in v.items() if kk != "mean_masks"} for k, v in results.items()}
