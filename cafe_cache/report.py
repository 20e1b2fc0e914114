"""The figures of finished runs, from what ``cafe train`` and ``cafe eval`` left in the run folder.

One run (:func:`make_run_figures`) gets, in ``RUN/figures/``::

    training-curves.png      loss parts, accuracies and lr per epoch         (metrics.json)
    masks-<target>.png       mean mask per class, the paper's Fig. 5          (eval-<which>/mean_masks.npz)
    confusion-<target>.png   confusion normalised per true class              (eval-<which>/results.json)
    gradcam-<target>.png     Grad-CAM of the mask branch, the paper's Fig. 4  (model + test images)

Several runs (one per source) give the cross-domain matrix (:func:`plot_runs_cross_domain`),
beside the paper's Table 1 only when every run used real CLIP weights.  Figures of runs on a
random-weights CLIP carry the figures module's warning.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import default_collate

from .classes import CLASSES
from .errors import CafeError
from .extract.paths import cache_path
from .extract.reader import FeatureCache
from .figures import (
    DPI,
    plot_class_masks,
    plot_confusion,
    plot_cross_domain,
    plot_gradcam_grid,
    plot_training_curves,
)
from .gradcam import grad_cam
from .history import read_history
from .model.backbones import gradcam_layer
from .model.cafe import CAFEModel
from .options import DEFAULT_WHICH, GRADCAM_IMAGES
from .paper import CAFE_CROSS_DOMAIN
from .results import EvalResult, read_eval_result
from .run.checkpoint import load_model
from .run.data import PairedSamples, reader_for
from .run.folder import FIGURES, RunConfig, RunFolder, find_runs

DISPLAY_SIZE = 224  # Grad-CAM images are shown square, as the mask branch sees them
BACKBONE_STRIDE = 32  # of every backbone's last stage: a 224-px input gives a 7x7 Grad-CAM

Log = Callable[[str], None]


def clip_is_random(config: RunConfig) -> bool:
    """Whether a run's CLIP features came from random weights (then nothing it shows is a result)."""
    return bool(config.clip.random_weights)


def eval_results(run: Path, which: str = DEFAULT_WHICH) -> EvalResult:
    """``RUN/eval-<which>/results.json``, as written by ``cafe eval``."""
    f = RunFolder(run).results_json(which)
    if not f.is_file():
        raise CafeError(f"{f} does not exist; run `cafe eval -c {run} --which {which}` first.")
    return read_eval_result(f)


# --------------------------------------------------------------------------- cross-domain


def cross_domain_matrix(runs: list[Path], which: str = DEFAULT_WHICH) -> dict[str, dict[str, float]]:
    """{source: {target: accuracy}} from each run's config (its source) and evaluation."""
    matrix: dict[str, dict[str, float]] = {}
    made_by: dict[str, Path] = {}
    for run in runs:
        source = RunFolder(run).read_config().source
        if source in matrix:
            raise CafeError(f"{made_by[source]} and {run} were both trained on {source}; "
                            "give one run per source.")
        matrix[source] = eval_results(run, which).accuracies
        made_by[source] = run
    return matrix


def plot_runs_cross_domain(runs: list[Path], path: Path, which: str = DEFAULT_WHICH, dpi: int = DPI) -> Path:
    """Heat map of :func:`cross_domain_matrix`; the paper's CAFE numbers beside it unless a CLIP was random."""
    acc = cross_domain_matrix(runs, which)
    random = any(clip_is_random(RunFolder(r).read_config()) for r in runs)
    paper = None if random else {s: CAFE_CROSS_DOMAIN[s] for s in acc if s in CAFE_CROSS_DOMAIN} or None
    return plot_cross_domain(acc, path, paper, title=f"Cross-domain accuracy (%), {which} weights",
                             random_weights=random, dpi=dpi)


# --------------------------------------------------------------------------- Grad-CAM


def cam_layer(model: CAFEModel) -> tuple[str, nn.Module]:
    """(name, module) of the mask branch's Grad-CAM layer, as the backbone registry names it (layer4 for ResNets)."""
    return gradcam_layer(model.config.backbone, model.backbone)


def spread_over_classes(labels: np.ndarray, n: int) -> list[int]:
    """Up to ``n`` indices, taking the first unused image of each class in turn (deterministic)."""
    per_class = [list(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    picked: list[int] = []
    while len(picked) < min(n, len(labels)):
        for idx in per_class:
            if idx and len(picked) < n:
                picked.append(int(idx.pop(0)))
    return sorted(picked)


def gradcam_examples(model: CAFEModel, cache: FeatureCache, *, n: int, image_size: int,
                     root: str | None = None, device: str | torch.device = "cpu"
                     ) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """(images, Grad-CAMs for the predicted class, "true X / pred Y") of ``n`` test images.

    The mask branch sees the evaluation input (RGB, no augmentation) and CLIP the cached clean
    view, as in ``cafe eval`` without --bgr-targets.
    """
    data = cache.load("test")
    reader = reader_for(cache, root)
    picks = spread_over_classes(data.labels, n)
    if not picks:
        raise CafeError(f"{cache.path} has no readable test images")
    samples = PairedSamples(data, reader, cache.fingerprint.views, image_size)
    images, feats, labels = (t.to(device) for t in default_collate([samples[i] for i in picks]))
    model.eval().to(device)
    with torch.no_grad():
        pred = model(images, feats).logits.argmax(1)
    cams = grad_cam(model, cam_layer(model)[1], lambda: model(images, feats).logits, pred,
                    (DISPLAY_SIZE, DISPLAY_SIZE))
    shown = [np.asarray(samples.image(i).resize((DISPLAY_SIZE,) * 2, Image.BILINEAR)) for i in picks]
    titles = [f"true {CLASSES[t]} / pred {CLASSES[p]}" for t, p in zip(labels.tolist(), pred.tolist())]
    return shown, cams, titles


# --------------------------------------------------------------------------- one run


def make_run_figures(run: Path, *, which: str = DEFAULT_WHICH, cache_dir: Path | None = None,
                     n_gradcam: int = GRADCAM_IMAGES, device: str | torch.device = "cpu",
                     log: Log = print, dpi: int = DPI) -> list[Path]:
    """Every figure of a finished run into ``RUN/figures/``; returns the files written.

    Without an evaluation only the training curves are made; Grad-CAM is skipped (with a
    note) for a target whose cache or images are not at hand.  ``cache_dir`` defaults to the
    one the run was trained from; ``n_gradcam=0`` skips Grad-CAM.
    """
    run = Path(run)
    config = RunFolder(run).read_config()
    random = clip_is_random(config)
    train_cfg = config.train
    written = [plot_training_curves(
        read_history(RunFolder(run).metrics), RunFolder(run).figures / "training-curves.png",
        title=f"Training on {train_cfg.source} ({train_cfg.variant}, {train_cfg.backbone})",
        random_weights=random, dpi=dpi)]
    try:
        results = eval_results(run, which)
    except CafeError as e:
        log(f"only the training curves: {e}")
        return written
    written += _eval_figures(run, which, results, random, dpi)
    if n_gradcam:
        written += _gradcam_figures(run, which, list(results.targets), cache_dir, n_gradcam, device, log, dpi)
    return written


def _eval_figures(run: Path, which: str, results: EvalResult, random: bool, dpi: int) -> list[Path]:
    """Confusion matrix and (for the variants with a mask) class-mask heat map per target."""
    folder, source = RunFolder(run).figures, results.source
    written = []
    for target, m in results.targets.items():
        written.append(plot_confusion(
            np.array(m.confusion), folder / f"confusion-{target}.png",
            f"{source} → {target} ({which} weights): accuracy {m.accuracy:.1f}%, UAR {m.uar:.1f}%",
            random_weights=random, dpi=dpi))
    masks_file = RunFolder(run).mean_masks(which)
    if masks_file.is_file():
        with np.load(masks_file) as masks:
            for target in masks.files:
                written.append(plot_class_masks(
                    masks[target], folder / f"masks-{target}.png",
                    title=f"Mean mask per class on the {target} test set, trained on {source} (CAFE Fig. 5)",
                    random_weights=random, dpi=dpi))
    return written


def _gradcam_figures(run: Path, which: str, targets: list[str], cache_dir: Path | None, n: int,
                     device: str | torch.device, log: Log, dpi: int) -> list[Path]:
    """One Grad-CAM grid per target whose cache and images can be read."""
    model, config = load_model(run, which)
    train_cfg = config.train
    cache_dir = cache_dir or Path(train_cfg.cache_dir)
    layer = cam_layer(model)[0]
    grid = -(-train_cfg.image_size // BACKBONE_STRIDE)
    written = []
    for target in targets:
        try:
            cache = FeatureCache(cache_path(cache_dir, target))
            root = train_cfg.root if target == train_cfg.source else None
            images, cams, titles = gradcam_examples(model, cache, n=n, image_size=train_cfg.image_size,
                                                    root=root, device=device)
        except CafeError as e:
            log(f"no Grad-CAM for {target}: {e}")
            continue
        written.append(plot_gradcam_grid(
            images, cams, titles, RunFolder(run).figures / f"gradcam-{target}.png",
            title=f"Grad-CAM of the mask branch on {target} (CAFE Fig. 4)\n"
                  f"{train_cfg.backbone} {layer}, {grid}×{grid} map; trained on {train_cfg.source}",
            random_weights=clip_is_random(config), dpi=dpi))
    return written


# --------------------------------------------------------------------------- cafe plot


def make_figures(path: Path, *, which: str = DEFAULT_WHICH, cache_dir: Path | None = None,
                 n_gradcam: int = GRADCAM_IMAGES, device: str = "auto", log: Log = print,
                 on_run: Callable[[Path, list[Path]], None] | None = None) -> Path | None:
    """``cafe plot``: the figures of a run folder, or of every run in a folder of runs and (then) their
    cross-domain matrix, whose file is returned. ``on_run(run, files)`` as each run's figures are done."""
    from .device import pick_device

    single = RunFolder(path).is_run()
    runs = [path] if single else find_runs(path)
    if not runs:
        raise CafeError(f"{path} is neither a run folder (no config.json) nor a folder of runs.")
    dev = pick_device(device)
    for run in runs:
        written = make_run_figures(run, which=which, cache_dir=cache_dir, n_gradcam=n_gradcam, device=dev, log=log)
        if on_run:
            on_run(run, written)
    return None if single else plot_runs_cross_domain(runs, Path(path) / FIGURES / "cross-domain.png", which)
