"""Figures for runs and reports (PNG); the Grad-CAM maps they draw come from :mod:`cafe_cache.gradcam`.

Every plotting function builds a standalone :class:`matplotlib.figure.Figure` (rendered by
Agg when saved; pyplot and its global state are never touched, so this works headless and
from worker threads), writes one PNG of a fixed pixel size (figure size x ``dpi``; no
"tight" bounding box, so sizes are predictable) and returns its path.

``random_weights=True`` puts "(RANDOM WEIGHTS — not a real result)" under the title: demo
and test runs use untrained CLIP towers, and a picture of one must never pass for a result.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.patches import Rectangle

from .classes import CLASSES
from .files import write_atomic
from .history import EpochLog
from .metrics import means
from .paper import DATASET_NAMES, DATASETS

RANDOM_WEIGHTS_NOTE = "(RANDOM WEIGHTS — not a real result)"
DPI = 100


def _title(text: str, random_weights: bool) -> str:
    """The figure title, with the random-weights warning on its own line when needed."""
    return f"{text}\n{RANDOM_WEIGHTS_NOTE}" if random_weights else text


def _save(fig: Figure, path: str | Path, dpi: int) -> Path:
    """Write the figure as PNG (creating the folder, atomically: a full disk is one line) and return the path."""
    path = Path(path)
    write_atomic(path, lambda p: fig.savefig(p, format="png", dpi=dpi))
    return path


def _new_figure(width: float, height: float) -> Figure:
    """A figure with constrained layout, which keeps labels from overlapping at a fixed size."""
    return Figure(figsize=(width, height), layout="constrained")


def _text_colour(value: float, vmin: float, vmax: float) -> str:
    """Black on light cells, white on dark ones (for viridis, which is dark at the low end)."""
    if not math.isfinite(value) or vmax <= vmin:
        return "black"
    return "black" if (value - vmin) / (vmax - vmin) > 0.55 else "white"


# --------------------------------------------------------------------------- class masks


def plot_class_masks(mean_masks: np.ndarray, path: str | Path, *,
                     class_names: Sequence[str] = CLASSES,
                     title: str = "Mean sigmoid mask per class (CAFE Fig. 5)",
                     random_weights: bool = False, dpi: int = DPI) -> Path:
    """Heat map of the mean mask over each class's images: classes down, channels across.

    The dashed lines mark the channel-separation groups (width ``D // num_classes``; group j
    is pooled into class j's separation logit, so the group's class is named on the top axis).
    Channels past the last full group (511 for D = 512) are never pooled.
    """
    masks = np.asarray(mean_masks, dtype=float)
    if masks.ndim != 2 or masks.shape[0] != len(class_names):
        raise ValueError(f"mean_masks must be ({len(class_names)}, D); got {masks.shape}")
    n_cls, dim = masks.shape
    group = dim // n_cls

    fig = _new_figure(13, 4.2)
    ax = fig.add_subplot()
    im = ax.imshow(masks, aspect="auto", cmap="magma", interpolation="nearest")
    ax.set_yticks(range(n_cls), class_names, fontsize=11)
    ax.set_ylabel("expression class", fontsize=11)
    ax.set_xlabel("CLIP feature channel", fontsize=11)
    for k in range(1, n_cls + 1):
        ax.axvline(k * group - 0.5, color="white", linestyle="--", linewidth=1.0, alpha=0.8)

    top = ax.secondary_xaxis("top")
    top.set_xticks([(k + 0.5) * group - 0.5 for k in range(n_cls)], class_names, fontsize=9)
    top.set_xlabel(f"separation group ({group} channels each)", fontsize=10)
    top.tick_params(length=0)

    cbar = fig.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
    cbar.set_label("mean sigmoid(mask)", fontsize=10)
    fig.suptitle(_title(title, random_weights), fontsize=13)
    return _save(fig, path, dpi)


# --------------------------------------------------------------------------- confusion


def plot_confusion(confusion: np.ndarray, path: str | Path, title: str = "Confusion matrix", *,
                   class_names: Sequence[str] = CLASSES, random_weights: bool = False,
                   dpi: int = DPI) -> Path:
    """Confusion matrix of counts, shown as % of each true class (rows sum to 100).

    The number of samples per true class is given next to its name; a class with no
    samples gets an empty row marked "no samples" rather than NaNs.
    """
    counts = np.asarray(confusion, dtype=float)
    n = len(class_names)
    if counts.shape != (n, n):
        raise ValueError(f"confusion must be ({n}, {n}); got {counts.shape}")
    totals = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        pct = np.where(totals[:, None] > 0, 100.0 * counts / totals[:, None], np.nan)

    fig = _new_figure(7.5, 6.8)
    ax = fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(pct), cmap="Blues", vmin=0, vmax=100)
    ax.set_facecolor("#eeeeee")
    for i in range(n):
        if totals[i] == 0:
            ax.text((n - 1) / 2, i, "no samples", ha="center", va="center", color="#666666",
                    fontsize=10, style="italic")
            continue
        for j in range(n):
            colour = "white" if pct[i, j] > 55 else "black"
            ax.text(j, i, f"{pct[i, j]:.1f}", ha="center", va="center", fontsize=10,
                    color=colour)
    ax.set_xticks(range(n), class_names, rotation=35, ha="right", fontsize=10)
    ax.set_yticks(range(n), [f"{c} (n={int(t)})" for c, t in zip(class_names, totals)],
                  fontsize=10)
    ax.set_xlabel("predicted", fontsize=11)
    ax.set_ylabel("true", fontsize=11)
    cbar = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
    cbar.set_label("% of true class", fontsize=10)
    fig.suptitle(_title(title, random_weights), fontsize=13)
    return _save(fig, path, dpi)


# --------------------------------------------------------------------------- cross-domain


def _ordered_keys(keys: set[str]) -> list[str]:
    """Known datasets in the paper's order, then anything else alphabetically."""
    return [d for d in DATASETS if d in keys] + sorted(keys - set(DATASETS))


def _grid(acc: Mapping[str, Mapping[str, float]], rows: list[str],
          cols: list[str]) -> np.ndarray:
    """Sources x targets array, NaN where a pair was not measured."""
    return np.array([[float(acc.get(r, {}).get(c, np.nan)) for c in cols] for r in rows])


def _means(acc: Mapping[str, Mapping[str, float]], rows: list[str], cols: list[str]) -> np.ndarray:
    """Per source: [mean over every test set shown, mean over the unseen ones] (the paper's two means when
    the columns are its five test sets); NaN where the row lacks one of them."""
    return np.array([[np.nan if m is None else m for m in means(acc.get(src, {}), src, cols)] for src in rows])


def _draw_accuracy_panel(ax: Axes, values: np.ndarray, rows: list[str], cols: list[str],
                         title: str, vmin: float, vmax: float, show_ylabels: bool,
                         difference: bool = False) -> AxesImage:
    """One heat-map panel; the in-domain cells (source == target) are outlined.

    ``difference`` switches to a diverging map centred on 0 and signed numbers.
    """
    cmap, fmt = ("RdBu", "+.1f") if difference else ("viridis", ".1f")
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=vmin, vmax=vmax,
                   aspect="auto")
    ax.set_facecolor("#eeeeee")
    n_targets = len(cols) - 2  # the last two columns are the means
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            if not math.isfinite(v):
                continue
            if difference:
                colour = "black" if abs(v) < 0.6 * vmax else "white"
            else:
                colour = _text_colour(v, vmin, vmax)
            text = format(v, fmt)
            if float(text) == 0:
                text = format(0.0, fmt)  # not "-0.0"
            ax.text(j, i, text, ha="center", va="center", fontsize=10, color=colour)
    for i, src in enumerate(rows):
        if src in cols[:n_targets]:
            j = cols.index(src)
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black",
                                   linewidth=2.5, clip_on=False))
    ax.axvline(n_targets - 0.5, color="white", linewidth=4)
    labels = [DATASET_NAMES.get(c, c) for c in cols[:n_targets]]
    labels += [f"mean\n(all {n_targets})", "mean\n(unseen)"]
    ax.set_xticks(range(len(cols)), labels, rotation=30, ha="right", fontsize=10)
    ax.set_yticks(range(len(rows)), [DATASET_NAMES.get(r, r) for r in rows] if show_ylabels
                  else [""] * len(rows), fontsize=10)
    ax.set_xlabel("test set (target)", fontsize=11)
    if show_ylabels:
        ax.set_ylabel("training set (source)", fontsize=11)
    ax.set_title(title, fontsize=12)
    return im


def plot_cross_domain(acc: Mapping[str, Mapping[str, float]], path: str | Path,
                      paper: Mapping[str, Mapping[str, float]] | None = None, *,
                      title: str = "Cross-domain accuracy (%)", random_weights: bool = False,
                      dpi: int = DPI) -> Path:
    """Sources x targets accuracy (%) heat map, Table 1 style, in-domain cells outlined.

    Two extra columns give the mean over all test sets shown (the paper's "Mean" for its five) and
    over the unseen ones, when a row is complete.  With ``paper`` (same shape, e.g.
    :data:`cafe_cache.paper.CAFE_CROSS_DOMAIN`) two more panels show the paper's numbers
    for the same sources and ours minus the paper's.  Means are always computed from the
    cells shown (for AffectNet-trained CAFE that gives 61.67, not the printed 60.27).
    """
    rows = _ordered_keys(set(acc))
    cols = _ordered_keys({t for r in acc.values() for t in r})
    ours = np.hstack([_grid(acc, rows, cols), _means(acc, rows, cols)])
    all_cols = cols + ["mean_all", "mean_unseen"]

    panels = 1 if paper is None else 3
    fig = _new_figure(6.5 * panels, 2.6 + 0.6 * len(rows))
    axes = fig.subplots(1, panels, squeeze=False)[0]
    if paper is None:
        vmin, vmax = np.nanmin(ours), np.nanmax(ours)
        im = _draw_accuracy_panel(axes[0], ours, rows, all_cols, "ours", vmin, vmax, True)
        fig.colorbar(im, ax=axes[0], fraction=0.05, pad=0.02).set_label("accuracy (%)")
    else:
        theirs = np.hstack([_grid(paper, rows, cols), _means(paper, rows, cols)])
        both = np.concatenate([ours, theirs])
        vmin, vmax = np.nanmin(both), np.nanmax(both)
        _draw_accuracy_panel(axes[0], ours, rows, all_cols, "ours", vmin, vmax, True)
        im = _draw_accuracy_panel(axes[1], theirs, rows, all_cols, "paper (CAFE Table 1)",
                                  vmin, vmax, False)
        fig.colorbar(im, ax=axes[:2].tolist(), fraction=0.025, pad=0.02).set_label(
            "accuracy (%)")
        diff = ours - theirs
        # At least +-5 points of range, so a difference of a point or two looks pale.
        span = max(5.0, float(np.nanmax(np.abs(diff)))) if np.isfinite(diff).any() else 5.0
        im = _draw_accuracy_panel(axes[2], diff, rows, all_cols, "ours − paper", -span, span,
                                  False, difference=True)
        fig.colorbar(im, ax=axes[2], fraction=0.05, pad=0.02).set_label(
            "difference (points)")
    fig.suptitle(_title(title, random_weights), fontsize=13)
    return _save(fig, path, dpi)


# --------------------------------------------------------------------------- training curves


def _value(entry: EpochLog, key: str) -> float | None:
    """The epoch's ``key``: a field of :class:`EpochLog`, or ``test:<source>`` for one source's test accuracy."""
    if key.startswith("test:"):
        return entry.source_test_accs.get(key.removeprefix("test:"))
    return getattr(entry, key)


def _series(history: Sequence[EpochLog], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) for the epochs that recorded ``key`` (not None, finite)."""
    xs, ys = [], []
    for entry in history:
        value = _value(entry, key)
        if value is not None and math.isfinite(float(value)):
            xs.append(float(entry.epoch))
            ys.append(float(value))
    return xs, ys


_LOSS_KEYS = (("loss", "total"), ("ce", "CE (FC)"), ("sep", "separation"),
              ("div", "diverse"))
_ACC_KEYS = (("train_acc", "train"), ("source_test_acc", "source test"))


def _per_source(history: Sequence[EpochLog]) -> list[str]:
    """The sources of a multi-source run, whose test accuracies :func:`_series` gives as ``test:<name>``;
    none for one source."""
    names = list(dict.fromkeys(n for h in history for n in h.source_test_accs))
    return names if len(names) >= 2 else []


def plot_training_curves(history: Sequence[EpochLog], path: str | Path, *,
                         title: str = "Training", random_weights: bool = False,
                         dpi: int = DPI) -> Path:
    """Loss parts (left) and accuracy with the learning rate (right) per epoch.

    A series skips the epochs where it is None or not finite (``sep``/``div`` with their loss off).  Accuracies
    all at or below 1 are taken as fractions and shown in percent.  The loss parts are the
    unweighted terms as logged.
    """
    fig = _new_figure(13, 4.8)
    ax_loss, ax_acc = fig.subplots(1, 2)

    for key, label in _LOSS_KEYS:
        xs, ys = _series(history, key)
        if xs:
            ax_loss.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3,
                         linewidth=2.2 if key == "loss" else 1.4, label=label)
    ax_loss.set_title("loss", fontsize=12)
    ax_loss.set_xlabel("epoch", fontsize=11)
    ax_loss.set_ylabel("loss", fontsize=11)

    sources = _per_source(history)  # several sources: each one's test accuracy beside their mean
    for key, label in (*_ACC_KEYS, *((f"test:{s}", f"test {s}") for s in sources)):
        xs, ys = _series(history, key)
        if xs:
            scale = 100.0 if max(ys) <= 1.0 else 1.0
            ax_acc.plot(xs, [y * scale for y in ys], marker="o" if len(xs) < 30 else None, markersize=3,
                        label="mean source test" if sources and key == "source_test_acc" else label,
                        linestyle="--" if key.startswith("test:") else "-")
    ax_acc.set_title("accuracy", fontsize=12)
    ax_acc.set_xlabel("epoch", fontsize=11)
    ax_acc.set_ylabel("accuracy (%)", fontsize=11)

    # The lr shares the accuracy panel on a log right axis; the legend goes on the top-most
    # axes so no line is drawn over it.
    handles, legend_ax = list(ax_acc.lines), ax_acc
    xs, ys = _series(history, "lr")
    if xs and min(ys) > 0:
        legend_ax = ax_acc.twinx()
        handles += legend_ax.plot(xs, ys, color="grey", linestyle=":", linewidth=1.5,
                                  label="learning rate (right axis)")
        legend_ax.set_yscale("log")
        legend_ax.set_ylabel("learning rate", fontsize=11, color="grey")
        legend_ax.tick_params(axis="y", colors="grey")

    for ax, ax_handles, where, loc in ((ax_loss, list(ax_loss.lines), ax_loss, "upper right"),
                                       (ax_acc, handles, legend_ax, "center right")):
        ax.grid(alpha=0.3)
        if ax.lines:
            where.legend(handles=ax_handles, fontsize=9, loc=loc)
        else:
            ax.text(0.5, 0.5, "not recorded", transform=ax.transAxes, ha="center",
                    va="center", color="grey", fontsize=12)
    fig.suptitle(_title(title, random_weights), fontsize=13)
    return _save(fig, path, dpi)


# --------------------------------------------------------------------------- Grad-CAM grid


def _resize(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a 2-D map (used when a CAM and its image differ in size)."""
    t = torch.as_tensor(np.asarray(cam, dtype=np.float32))[None, None]
    return torch.nn.functional.interpolate(t, size=(height, width), mode="bilinear",
                                           align_corners=False)[0, 0].numpy()


def plot_gradcam_grid(images: Sequence[np.ndarray], cams: Sequence[np.ndarray],
                      titles: Sequence[str], path: str | Path, ncols: int = 4, *,
                      title: str = "Grad-CAM of the mask branch (CAFE Fig. 4)",
                      random_weights: bool = False, dpi: int = DPI) -> Path:
    """Grid of images with their Grad-CAM maps overlaid (jet, semi-transparent).

    ``images`` are HxWx3 uint8; ``cams`` are 2-D in [0, 1], resized to their image if needed;
    ``titles`` label each cell (e.g. "true Happy / pred Sad").
    """
    if not (len(images) == len(cams) == len(titles)) or not images:
        raise ValueError(f"need equally many images, cams and titles (got {len(images)}, "
                         f"{len(cams)}, {len(titles)}), at least one")
    ncols = max(1, min(ncols, len(images)))
    nrows = math.ceil(len(images) / ncols)
    fig = _new_figure(2.6 * ncols, 2.9 * nrows + 0.7)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in axes:
        ax.set_axis_off()
    for ax, image, cam, label in zip(axes, images, cams, titles):
        image = np.asarray(image)
        cam = np.asarray(cam, dtype=np.float32)
        if cam.shape != image.shape[:2]:
            cam = _resize(cam, *image.shape[:2])
        ax.imshow(image)
        ax.imshow(np.clip(cam, 0, 1), cmap="jet", alpha=0.45, vmin=0, vmax=1)
        ax.set_title("\n".join(textwrap.wrap(label, 32)), fontsize=10)
    fig.suptitle(_title(title, random_weights), fontsize=13)
    return _save(fig, path, dpi)




# --------------------------------------------------------------------------- frozen extractors (reproduce --models)


def plot_models(values: Mapping[str, Mapping[str, float | None]], rows: Sequence[str], sources: Sequence[str],
                path: str | Path, *, title: str, random_weights: bool = False, dpi: int = DPI) -> Path:
    """Models x training sources heat map of one number per cell (the unseen-target mean), grey where missing."""
    grid = np.array([[np.nan if values.get(r, {}).get(s) is None else float(values[r][s]) for s in sources]
                     for r in rows])
    fig = _new_figure(2.2 + 1.3 * len(sources), 1.8 + 0.45 * len(rows))
    ax = fig.subplots()
    finite = grid[np.isfinite(grid)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 100.0)
    im = ax.imshow(np.ma.masked_invalid(grid), cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_facecolor("#eeeeee")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if math.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.1f}", ha="center", va="center", fontsize=10,
                        color=_text_colour(grid[i, j], vmin, vmax))
    ax.set_xticks(range(len(sources)), [DATASET_NAMES.get(s, s) for s in sources], rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), [textwrap.shorten(r, 48, placeholder="…") for r in rows], fontsize=9)
    ax.set_xlabel("training set (source)")
    fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02).set_label("unseen mean accuracy (%)")
    fig.suptitle(_title(title, random_weights), fontsize=11)
    return _save(fig, path, dpi)


# --------------------------------------------------------------------------- leave one domain out


def plot_lodo(rows: Sequence[tuple[str, str, Mapping[str, float]]], path: str | Path, names: Mapping[str, str], *,
              title: str = "Leave-one-domain-out accuracy (%)", random_weights: bool = False, dpi: int = DPI) -> Path:
    """Runs x test sets accuracy (%) heat map of ``cafe reproduce --protocol lodo``; each row's held-out set
    outlined. ``rows``: (label, held-out set, {test set: accuracy}); ``names``: test set -> column label."""
    cols = _ordered_keys({t for _, _, acc in rows for t in acc})
    values = np.array([[float(acc.get(c, np.nan)) for c in cols] for _, _, acc in rows])
    fig = _new_figure(2.0 + 1.1 * len(cols), 2.0 + 0.45 * len(rows))
    ax = fig.subplots()
    vmin, vmax = np.nanmin(values), np.nanmax(values)
    im = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_facecolor("#eeeeee")
    for i, (_, held_out, _) in enumerate(rows):
        for j, v in enumerate(values[i]):
            if math.isfinite(v):
                ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=9, color=_text_colour(v, vmin, vmax))
        if held_out in cols:
            ax.add_patch(Rectangle((cols.index(held_out) - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red",
                                   linewidth=2.5, clip_on=False))
    ax.set_xticks(range(len(cols)), [names.get(c, c) for c in cols], rotation=30, ha="right", fontsize=9)
    ax.set_yticks(range(len(rows)), [label for label, _, _ in rows], fontsize=9)
    ax.set_xlabel("test set (held-out set outlined)", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.05, pad=0.02).set_label("accuracy (%)")
    fig.suptitle(_title(title, random_weights), fontsize=12)
    return _save(fig, path, dpi)
