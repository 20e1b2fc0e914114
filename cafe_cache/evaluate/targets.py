"""A trained model on cached datasets: predictions per split, metrics per target (:mod:`cafe_cache.metrics`),
and :func:`evaluate_run`, which writes them into the run folder's ``eval-<which>/`` (``cafe eval``).

Evaluation imports training code (data, checkpoints), never the reverse."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..bounds import check_all
from ..device import default_workers, pick_device
from ..errors import CafeError
from ..extract.extractor import display_name
from ..extract.fingerprint import Fingerprint
from ..extract.online import clip_for
from ..extract.paths import find_caches
from ..extract.reader import FeatureCache
from ..files import write_atomic, write_text
from ..messages import warning
from ..metrics import markdown_table, metrics, summary
from ..model.cafe import CAFEModel
from ..options import EVAL_BATCH_SIZE, check_cache_name
from ..progress import named_bars
from ..results import EvalResult, TargetMetrics
from ..run.checkpoint import load_model, write_json
from ..run.data import PairedSamples, reader_for
from ..run.folder import RunConfig, RunFolder
from ..run.predictions import predict_split


def target_caches(cache_dir: str | Path, targets: list[str] | None) -> dict[str, FeatureCache]:
    """The named caches (default: every cache in the folder), each checked to be complete."""
    if not Path(cache_dir).is_dir():
        raise CafeError(f"--cache-dir {cache_dir} does not exist or is not a folder; pass the folder `cafe extract` "
                        "wrote the caches to.")
    if targets:
        caches = {}
        for t in targets:
            p = Path(cache_dir) / f"{check_cache_name(t)}.h5"  # a name: the results file is named after it too
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
    """Numbers are only comparable when every cache comes from the extractor and weights the model was trained on."""
    for name, c in caches.items():
        if not c.fingerprint.same_weights(expected):
            have = display_name(c.fingerprint.model, c.fingerprint.weights_label)
            raise CafeError(f"cache {c.path} was made with {have}, the model was trained on "
                            f"{display_name(expected.model, expected.weights_label)}; re-extract {name} with the same "
                            "extractor and weights or use another --cache-dir (one cache folder per extractor).")
        if c.fingerprint.preprocess != expected.preprocess:
            raise CafeError(f"cache {c.path} used --preprocess {c.fingerprint.preprocess}, the model's training cache "
                            f"{expected.preprocess}; re-extract it to compare like with like.")


@dataclass
class CacheEvaluation:
    """:func:`evaluate_caches`: the metrics of each target and, for the variants with a mask, its mean mask per
    class (classes, D), what the figures show."""

    targets: dict[str, TargetMetrics]
    mean_masks: dict[str, np.ndarray]


def evaluate_caches(model: CAFEModel, caches: dict[str, FeatureCache], *, image_size: int,
                    roots: dict[str, str] | None = None, bgr_targets: tuple[str, ...] = (),
                    clip_weights: str | None = None, batch_size: int = EVAL_BATCH_SIZE,
                    workers: int = 2, device="cpu", split: str = "test",
                    on_start: Callable[[str, int], None] | None = None,
                    on_batch: Callable[[int], None] | None = None) -> CacheEvaluation:
    """metrics() per target and the mean masks for the figures. BGR targets run CLIP online on BGR input."""
    results = CacheEvaluation({}, {})
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
        results.targets[name] = replace(metrics(pred.y_true, pred.y_pred), bgr=bgr, unreadable=data.unreadable,
                                        left_out=data.left_out(f"{name} {split}", cache.path))
        if pred.mean_masks is not None:
            results.mean_masks[name] = pred.mean_masks
    return results


@dataclass
class RunEvaluation:
    """What :func:`evaluate_run` wrote into ``RUN/eval-<which>/``."""

    result: EvalResult  # what results.json holds
    folder: Path
    files: tuple[Path, ...] = ()  # the results files written (JSON, Markdown)


def evaluate_run(run: str | Path, which: str | None = None, *, cache_dir: Path, targets: list[str] | None = None,
                 bgr_targets: tuple[str, ...] = (), clip_weights: str | None = None, batch_size: int = EVAL_BATCH_SIZE,
                 workers: int | None = None, device: str = "auto", roots: dict[str, str] | None = None,
                 log: Callable[[str], None] = print, bars: Callable[[], Any] | None = None,
                 full: bool = False) -> RunEvaluation | None:
    """Evaluate ``run``'s ``which`` weights on the targets and write ``eval-<which>/`` in the run folder;
    None (said in ``log``) when there is no cache to evaluate. ``run``: a run folder (``which`` default
    last) or one of its ``.safetensors`` (``which`` default: that file). ``bars()`` makes the progress display (a rich
    ``Progress`` or :class:`~cafe_cache.progress.PlainProgress`): a task per target. The results go to
    ``results.{json,md}`` without ``targets`` or with ``full`` (the run's own evaluation, as ``cafe train``'s),
    else to ``results-<targets>.{json,md}``, leaving the full ones as they are."""
    check_all({"--batch-size": batch_size, "--workers": workers})
    folder, default = RunFolder.of_checkpoint(run)
    which = which or default
    model, config = load_model(folder.path, which)
    trained_on = Fingerprint.from_json(config.clip.fingerprint)
    caches = target_caches(cache_dir, targets)
    if not caches:
        log(warning(f"no cached datasets in {cache_dir}; nothing to evaluate"))
        return None
    check_same_weights(trained_on, caches)
    check_bgr_targets(bgr_targets, caches)
    dev = pick_device(device)
    workers = default_workers(dev) if workers is None else workers
    with bars() if bars else nullcontext() as bar:
        on_start, on_batch = named_bars(bar, "eval") if bar is not None else (None, None)
        results = evaluate_caches(model, caches, image_size=config.image_size, roots=roots, bgr_targets=bgr_targets,
                                  clip_weights=clip_weights, batch_size=batch_size, workers=workers, device=dev,
                                  on_start=on_start, on_batch=on_batch)
    return write_results(folder, which, config, results, None if full else targets)


def _savez(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would add ".npz" to the temporary name
        np.savez(f, **arrays)


def check_bgr_targets(bgr_targets: tuple[str, ...], caches: dict[str, FeatureCache]) -> None:
    """Every ``--bgr-targets`` name is one of the evaluated caches (by cache or dataset name)."""
    known = set(caches) | {c.dataset for c in caches.values()}
    unknown = [b for b in bgr_targets if b not in known]
    if unknown:
        raise CafeError(f"--bgr-targets {','.join(unknown)}: not among the evaluated caches "
                        f"({', '.join(caches)}); name caches that are evaluated (see --targets).")


def write_results(folder: RunFolder, which: str, config: RunConfig, results: CacheEvaluation,
                  targets: list[str] | None = None) -> RunEvaluation:
    """``eval-<which>/``: results.json, results.md (``targets``: results-A+B.*, the full ones untouched)
    and (for the variants with a mask, full evaluations) mean_masks.npz."""
    source = config.source
    title = f"{source} -> targets ({which} weights, CLIP {config.clip.label})"
    if config.clip.random_weights:
        title = "RANDOM CLIP WEIGHTS, not a real result: " + title
    out = folder.eval_dir(which)  # made by the first write (a failure there is one line naming the file)
    files = (folder.results_json(which, targets), folder.results_md(which, targets))
    result = EvalResult(title, source, which, config.random, config.clip.label, results.targets,
                        summary(results.targets, source))
    write_json(files[0], result.to_dict())
    write_text(files[1], markdown_table(results.targets, source, title))
    if results.mean_masks and not targets:
        write_atomic(folder.mean_masks(which), lambda p: _savez(p, results.mean_masks))
    return RunEvaluation(result, out, files)
