"""A trained model on cached datasets: predictions per split, metrics per target (:mod:`cafe_cache.metrics`),
and :func:`evaluate_run`, which writes them into the run folder's ``eval-<which>/`` (``cafe eval``).

Evaluation imports training code (data, checkpoints), never the reverse."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..device import default_workers, pick_device
from ..errors import CafeError
from ..extract.cache import FeatureCache, Fingerprint, find_caches
from ..extract.online import clip_for
from ..files import write_atomic, write_text
from ..metrics import jsonable, markdown_table, metrics, summary
from ..model.cafe import CAFEModel
from ..options import EVAL_BATCH_SIZE
from ..progress import named_bars
from ..runs import RunConfig, RunFolder
from .checkpoint import load_model, write_json
from .data import PairedSamples, reader_for
from .predictions import predict_split


def target_caches(cache_dir: str | Path, targets: list[str] | None) -> dict[str, FeatureCache]:
    """The named caches (default: every cache in the folder), each checked to be complete."""
    if targets:
        caches = {}
        for t in targets:
            p = Path(cache_dir) / f"{t}.h5"
            if not p.is_file():
                have = ", ".join(c.stem for c in find_caches(cache_dir)) or "none"
                raise CafeError(f"no cache for target {t!r} in {cache_dir} (have: {have}); run `cafe extract` for it.")
            caches[t] = FeatureCache(p)
    else:
        caches = {p.stem: FeatureCache(p) for p in find_caches(cache_dir)}
    for c in caches.values():
        c.require_complete()
    return caches


def check_same_weights(expected: Fingerprint, caches: dict[str, FeatureCache]) -> None:
    """Numbers are only comparable when every cache comes from the CLIP weights the model was trained on."""
    for name, c in caches.items():
        if not c.fingerprint.same_weights(expected):
            raise CafeError(f"cache {c.path} was made with CLIP {c.fingerprint.weights_label}, the model was trained "
                            f"on {expected.weights_label}; re-extract {name} with the same weights or use another "
                            "--cache-dir.")
        if c.fingerprint.preprocess != expected.preprocess:
            raise CafeError(f"cache {c.path} used --preprocess {c.fingerprint.preprocess}, the model's training cache "
                            f"{expected.preprocess}; re-extract it to compare like with like.")


def evaluate_caches(model: CAFEModel, caches: dict[str, FeatureCache], *, image_size: int,
                    roots: dict[str, str] | None = None, bgr_targets: tuple[str, ...] = (),
                    clip_weights: str | None = None, batch_size: int = EVAL_BATCH_SIZE,
                    workers: int = 2, device="cpu", split: str = "test",
                    on_start: Callable[[str, int], None] | None = None,
                    on_batch: Callable[[int], None] | None = None) -> dict[str, dict[str, Any]]:
    """metrics() per target; ``mean_masks`` is added for figures. BGR targets run CLIP online on BGR input."""
    results = {}
    for name, cache in caches.items():
        data = cache.load(split)
        bgr = name in bgr_targets or cache.dataset in bgr_targets
        reader = reader_for(cache, (roots or {}).get(name))
        ds = PairedSamples(data, reader, cache.fingerprint.views, image_size, bgr=bgr)
        clip = clip_for(cache.fingerprint, clip_weights, device, official_fp16=True) if bgr else None
        if on_start:
            on_start(name, len(ds))
        pred = predict_split(model, ds, batch_size=batch_size, workers=workers, device=device, clip=clip,
                             on_batch=on_batch)
        results[name] = metrics(pred.y_true, pred.y_pred) | {"bgr": bgr, "mean_masks": pred.mean_masks}
    return results


@dataclass
class RunEvaluation:
    """What :func:`evaluate_run` wrote into ``RUN/eval-<which>/``."""

    results: dict[str, dict[str, Any]]  # metrics() per target, with "bgr" and "mean_masks"
    source: str
    title: str
    folder: Path


def evaluate_run(run: str | Path, which: str | None = None, *, cache_dir: Path, targets: list[str] | None = None,
                 bgr_targets: tuple[str, ...] = (), clip_weights: str | None = None, batch_size: int = EVAL_BATCH_SIZE,
                 workers: int | None = None, device: str = "auto", roots: dict[str, str] | None = None,
                 log: Callable[[str], None] = print, bars: Callable[[], Any] | None = None) -> RunEvaluation | None:
    """Evaluate ``run``'s ``which`` weights on the targets and write ``eval-<which>/`` in the run folder;
    None (said in ``log``) when there is no cache to evaluate. ``run``: a run folder (``which`` default
    last) or one of its ``.safetensors`` (``which`` default: that file). ``bars()`` makes the progress display (a rich
    ``Progress`` or :class:`~cafe_cache.progress.PlainProgress`): a task per target."""
    folder, default = RunFolder.of_checkpoint(run)
    which = which or default
    model, config = load_model(folder.path, which)
    trained_on = Fingerprint.from_json(config.clip.fingerprint)
    caches = target_caches(cache_dir, targets)
    if not caches:
        log(f"[yellow]no cached datasets in {cache_dir}; nothing to evaluate[/]")
        return None
    check_same_weights(trained_on, caches)
    dev = pick_device(device)
    workers = default_workers(dev) if workers is None else workers
    with bars() if bars else nullcontext() as bar:
        on_start, on_batch = named_bars(bar, "eval") if bar is not None else (None, None)
        results = evaluate_caches(model, caches, image_size=config.image_size, roots=roots, bgr_targets=bgr_targets,
                                  clip_weights=clip_weights, batch_size=batch_size, workers=workers, device=dev,
                                  on_start=on_start, on_batch=on_batch)
    return write_results(folder, which, config, results)


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would add ".npz" to the temporary name
        np.savez(f, **arrays)


def write_results(folder: RunFolder, which: str, config: RunConfig, results: dict[str, dict[str, Any]]
                  ) -> RunEvaluation:
    """``eval-<which>/``: results.json, results.md and (for the variants with a mask) mean_masks.npz."""
    source = config.source
    title = f"{source} -> targets ({which} weights, CLIP {config.clip.label})"
    if config.clip.random_weights:
        title = "RANDOM CLIP WEIGHTS, not a real result: " + title
    out = folder.eval_dir(which)  # made by the first write (a failure there is one line naming the file)
    write_json(folder.results_json(which), {
        "title": title, "source": source, "which": which, "random_weights": config.random,
        "clip": config.clip.label, "targets": jsonable(results), "summary": summary(results, source)})
    write_text(folder.results_md(which), markdown_table(results, source, title))
    masks = {k: v["mean_masks"] for k, v in results.items() if v["mean_masks"] is not None}
    if masks:
        write_atomic(folder.mean_masks(which), lambda p: _savez(p, masks))
    return RunEvaluation(results, source, title, out)
