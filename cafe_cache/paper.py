"""Published numbers to hold our runs against, each tagged with the table it comes from.

Sources: CAFE, "Generalizable Facial Expression Recognition" (ECCV 2024, arXiv 2408.10614),
Tables 1-5 as printed; Exp-CLIP (WACV 2025) zero-shot numbers as collected in
CAFE-NOTES.md.  All numbers are accuracies in percent on each dataset's test set.

Two different "means" appear in the paper and they are easy to confuse:

* Table 1 (and Tables 3-5) average all five test sets INCLUDING the source's own
  (the paper mean of :func:`cafe_cache.metrics.means`; RAF-DB-trained CAFE: 63.48).
* Table 2 (ablation) lists only the four unseen sets and averages those
  (its unseen mean; RAF-DB-trained CAFE: 57.17).

Fig. 3 (the loss-weight sweep) is a plot whose values are not given in the text; the chosen
weights are ``W_SEP`` and ``W_DIV`` of :mod:`cafe_cache.options`, the defaults of training.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DATASETS: tuple[str, ...] = ("rafdb", "ferplus", "affectnet", "sfew", "mma")
DATASET_NAMES: dict[str, str] = {
    "rafdb": "RAF-DB",
    "ferplus": "FERPlus",
    "affectnet": "AffectNet",
    "sfew": "SFEW2.0",
    "mma": "MMA",
}


@dataclass(frozen=True)
class PaperRow:
    """One printed table row: a method trained on ``source``, accuracy per test set."""

    table: str  # where it is printed, e.g. "Table 1"
    method: str
    source: str  # training-set key (one of DATASETS)
    acc: Mapping[str, float]  # test-set key -> accuracy (%)
    printed_mean: float | None  # the row's own "Mean" column, as printed
    mean_over: str = "all"  # "all": five sets incl. source; "unseen": the source is left out
    note: str = ""


def _row(table: str, method: str, source: str, order: tuple[str, ...],
         values: tuple[float, ...], printed_mean: float | None, mean_over: str = "all",
         note: str = "") -> PaperRow:
    """Build a row from values in the printed column order (which differs between sources)."""
    if len(order) != len(values):
        raise ValueError(f"{table} {method}/{source}: {len(order)} columns, {len(values)} values")
    return PaperRow(table, method, source, dict(zip(order, values)), printed_mean, mean_over,
                    note)


# Table 1 prints the source's own test set first, then the others in a per-source order.
# Note the MMA-trained block lists SFEW2.0 before AffectNet.
_T1_ORDER: dict[str, tuple[str, ...]] = {
    "rafdb": ("rafdb", "ferplus", "affectnet", "sfew", "mma"),
    "ferplus": ("ferplus", "rafdb", "affectnet", "sfew", "mma"),
    "affectnet": ("affectnet", "rafdb", "ferplus", "sfew", "mma"),
    "sfew": ("sfew", "rafdb", "ferplus", "affectnet", "mma"),
    "mma": ("mma", "rafdb", "ferplus", "sfew", "affectnet"),
}

# (method, source) -> (values in _T1_ORDER[source] order, printed mean)
_T1_VALUES: dict[tuple[str, str], tuple[tuple[float, ...], float]] = {
    ("SCN", "rafdb"): ((87.32, 58.37, 42.85, 44.89, 36.52), 53.99),
    ("RUL", "rafdb"): ((88.66, 57.89, 43.82, 46.91, 37.11), 54.88),
    ("EAC", "rafdb"): ((89.54, 54.38, 43.91, 43.39, 37.27), 53.70),
    ("OFER", "rafdb"): ((89.07, 53.90, 42.73, 43.88, 36.43), 53.20),
    ("CAFE", "rafdb"): ((88.72, 73.16, 45.86, 52.86, 56.80), 63.48),
    ("SCN", "ferplus"): ((86.80, 68.71, 32.42, 43.10, 59.12), 58.03),
    ("RUL", "ferplus"): ((88.40, 51.89, 35.88, 45.90, 58.00), 56.01),
    ("EAC", "ferplus"): ((89.03, 58.62, 36.49, 45.79, 59.89), 57.96),
    ("OFER", "ferplus"): ((89.26, 55.67, 35.84, 44.52, 59.37), 56.93),
    ("CAFE", "ferplus"): ((89.51, 72.91, 39.44, 49.38, 60.14), 62.28),
    ("SCN", "affectnet"): ((62.48, 70.70, 63.98, 41.98, 38.51), 55.53),
    ("RUL", "affectnet"): ((58.70, 55.83, 52.88, 34.01, 31.93), 46.67),
    ("EAC", "affectnet"): ((64.77, 66.10, 57.19, 44.89, 33.49), 53.09),
    ("OFER", "affectnet"): ((63.90, 63.21, 56.79, 42.60, 31.99), 51.70),
    ("CAFE", "affectnet"): ((64.87, 72.69, 69.94, 51.18, 49.65), 60.27),
    ("SCN", "sfew"): ((51.35, 46.74, 32.58, 23.19, 17.38), 34.25),
    ("RUL", "sfew"): ((51.87, 46.35, 36.02, 30.41, 22.06), 37.34),
    ("EAC", "sfew"): ((52.46, 47.29, 33.66, 25.57, 22.26), 36.25),
    ("OFER", "sfew"): ((52.15, 46.33, 34.78, 23.02, 21.88), 35.63),
    ("CAFE", "sfew"): ((53.79, 54.43, 48.39, 32.24, 36.34), 45.04),
    ("SCN", "mma"): ((63.00, 74.09, 73.99, 45.90, 35.94), 58.58),
    ("RUL", "mma"): ((61.70, 71.94, 69.05, 39.21, 34.45), 55.27),
    ("EAC", "mma"): ((65.06, 74.32, 71.85, 42.87, 35.83), 57.99),
    ("OFER", "mma"): ((64.74, 72.85, 69.69, 41.49, 34.58), 56.67),
    ("CAFE", "mma"): ((65.97, 78.36, 73.57, 49.05, 41.85), 61.76),
}

# Two printed means do not match their own cells; every other row's does (to 0.01).
_T1_NOTES = {
    ("CAFE", "affectnet"): "printed Mean 60.27, but the five cells average 61.67",
    ("EAC", "affectnet"): "printed Mean 53.09, but the five cells average 53.29",
}

TABLE1: tuple[PaperRow, ...] = tuple(
    _row("Table 1", method, source, _T1_ORDER[source], values, mean,
         note=_T1_NOTES.get((method, source), ""))
    for (method, source), (values, mean) in _T1_VALUES.items()
)

_UNSEEN_FROM_RAF = ("ferplus", "affectnet", "sfew", "mma")

# Table 2: ablation, trained on RAF-DB; only the unseen sets are printed and averaged.
TABLE2: tuple[PaperRow, ...] = (
    _row("Table 2", "baseline (no mask)", "rafdb", _UNSEEN_FROM_RAF,
         (58.05, 43.25, 42.76, 42.61), 46.67, "unseen",
         note="same run as Table 3's ResNet-18 row (RAF-DB 88.40)"),
    _row("Table 2", "mask", "rafdb", _UNSEEN_FROM_RAF,
         (70.90, 43.77, 51.63, 55.65), 55.49, "unseen"),
    _row("Table 2", "mask + separation", "rafdb", _UNSEEN_FROM_RAF,
         (72.01, 45.17, 53.31, 56.69), 56.80, "unseen"),
    _row("Table 2", "mask + separation + diverse", "rafdb", _UNSEEN_FROM_RAF,
         (73.16, 45.86, 52.86, 56.80), 57.17, "unseen", note="= CAFE in Table 1"),
)

_RAF_ORDER = _T1_ORDER["rafdb"]

# Table 3: other backbones for the mask branch, trained on RAF-DB.
TABLE3: tuple[PaperRow, ...] = tuple(
    _row("Table 3", method, "rafdb", _RAF_ORDER, values, mean)
    for method, values, mean in (
        ("MobileNet", (84.65, 61.33, 43.45, 43.21, 40.67), 54.66),
        ("MobileNet + CAFE", (85.07, 64.97, 42.91, 45.45, 43.11), 56.30),
        ("ResNet-18", (88.40, 58.05, 43.25, 42.76, 42.61), 55.01),
        ("ResNet-18 + CAFE", (88.72, 73.16, 45.86, 52.86, 56.80), 63.48),
        ("ResNet-50", (88.49, 70.13, 47.46, 49.94, 48.90), 60.98),
        ("ResNet-50 + CAFE", (89.05, 75.26, 47.49, 51.07, 57.46), 64.07),
    )
)

# Table 4: frozen CLIP + trainable ResNet-18, FC on the concatenated features (RAF-DB-trained).
TABLE4_CLIP_FINETUNE = _row("Table 4", "CLIP+Finetune", "rafdb", _RAF_ORDER,
                            (88.69, 59.71, 44.31, 41.30, 44.62), 55.73)

# Table 5: CAFE with the raw mask (no sigmoid), everything else the same (RAF-DB-trained).
TABLE5_NO_SIGMOID = _row("Table 5", "No sigmoid", "rafdb", _RAF_ORDER,
                         (89.24, 62.58, 46.37, 46.58, 45.49), 58.05)

def cross_domain(method: str = "CAFE") -> dict[str, dict[str, float]]:
    """Table 1 for one method as {source: {target: acc}} (column order no longer matters)."""
    rows = {r.source: dict(r.acc) for r in TABLE1 if r.method == method}
    if not rows:
        known = sorted({r.method for r in TABLE1})
        raise KeyError(f"no Table 1 rows for {method!r}; known methods: {known}")
    return rows


CAFE_CROSS_DOMAIN: dict[str, dict[str, float]] = cross_domain("CAFE")


# Zero-shot baselines with ViT-B/32 (Exp-CLIP paper, via CAFE-NOTES.md): UAR and WAR (%).
# AffectNet-7 is listed with one number: its validation set is class-balanced, so UAR = WAR.
# Exp-CLIP's test.py scores FERPlus with 8 classes (contempt included) and feeds CLIP
# images without mean/std normalisation, so our 7-class numbers compare only loosely.
ZERO_SHOT: dict[str, dict[str, dict[str, float]]] = {
    "Exp-CLIP": {
        "rafdb": {"uar": 39.56, "war": 42.14},
        "affectnet": {"uar": 31.73, "war": 31.73},
        "ferplus": {"uar": 37.83, "war": 37.04},
    },
    "CLIP": {
        "rafdb": {"uar": 34.97, "war": 30.05},
        "affectnet": {"uar": 29.29, "war": 29.29},
        "ferplus": {"uar": 36.05, "war": 33.89},
    },
}
