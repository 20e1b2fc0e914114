"""``cafe train`` as one library call: plan the run (new or resumed), train, evaluate, plot.

:func:`train_and_evaluate` takes what the command line was given (:class:`TrainRequest`) and where
to show things (a log and a plain writer of text lines, the progress display, a printer of each
evaluation); the command line only parses and prints. Under torchrun every process calls it; rank 0
alone evaluates and plots.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .device import resolve_train_precision
from .distributed import from_env, process_group, rank_device, restarted
from .errors import CafeError
from .evaluate.targets import RunEvaluation, check_same_weights, evaluate_run, target_caches
from .extract.paths import cache_path
from .extract.reader import FeatureCache
from .history import EpochLog
from .messages import done, warning
from .metrics import plural
from .options import DEFAULT_WHICH, WHICH
from .progress import device_hint, epoch_bars
from .report import make_run_figures
from .run.config import TrainConfig
from .run.folder import RunFolder, RunLock
from .train.loop import plan_run, train


@dataclass
class TrainRequest:
    """What ``cafe train`` was asked to do."""

    config: TrainConfig | None  # a new run's settings; None: --resume (the run's saved ones), or --source missing
    given: dict[str, Any] = field(default_factory=dict)  # the options typed on the command line (resume checks)
    out: Path | None = None  # the run folder; a new run's default: runs/<source>-<time>
    resume: bool = False
    targets: list[str] | None = None  # caches evaluated at the end; None: every cache in the cache folder
    evaluate: bool = True
    eval_which: str = DEFAULT_WHICH  # "last", "best" or "last,best"
    plots: bool = True


def eval_choices(text: str) -> tuple[str, ...]:
    """``--eval-which``: ``last``, ``best`` or ``last,best`` -> the weights to evaluate, in order."""
    which = tuple(t.strip() for t in text.split(",") if t.strip())
    if not which or any(w not in WHICH for w in which):
        raise CafeError(f"--eval-which {text!r}: choose last, best or last,best.")
    return which


def train_and_evaluate(request: TrainRequest, *, log: Callable[[str], None] = print,
                       plain: Callable[[str], None] = print, bars: Callable[[], Any] | None = None,
                       show: Callable[[RunEvaluation], None] | None = None) -> list[EpochLog]:
    """Train as ``request`` says, then (rank 0) evaluate each of ``--eval-which`` and write the figures;
    returns the per-epoch history. ``log`` takes lines (:mod:`.messages`), ``plain`` progress lines, ``bars()`` makes
    a progress display, ``show`` prints an evaluation's table."""
    which = eval_choices(request.eval_which)
    ranks = from_env()
    cfg, out, resume = plan_run(request.config, request.given, out=request.out, resume=request.resume,
                                distributed=ranks.distributed, restarted=restarted())
    if request.evaluate and request.targets:  # a wrong --targets fails now, not after the whole training
        source = FeatureCache(cache_path(cfg.cache_dir, cfg.sources[0]))  # the sources share one fingerprint
        check_same_weights(source.fingerprint, target_caches(Path(cfg.cache_dir), request.targets))
    say = ranks.main_only(log)
    say(f"training on {cfg.source} -> {out}  (CLIP input: {cfg.clip_input}, variant {cfg.variant})")
    dev = rank_device(cfg.device, ranks)
    hint = device_hint(dev, resolve_train_precision(cfg.precision, dev))
    say(f"mask branch {cfg.backbone} at {cfg.image_size}px on {hint}")
    lock = RunLock(out)  # --out held by this run (rank 0) until it is evaluated and plotted
    try:
        with process_group(dev, ranks), bars() if bars and ranks.is_main else nullcontext() as bar:
            ranks.on_main(lock.acquire)  # an unwritable or busy --out stops every rank before any work
            on_epoch, on_step = epoch_bars(bar, cfg.epochs, plain) if bar is not None else (None, None)
            history = train(cfg, out, resume=resume, log=log, on_step=on_step, on_epoch=on_epoch, ranks=ranks)
        if ranks.is_main:  # rank 0 evaluates and plots
            _evaluate_and_plot(request, which, cfg, out, history, dev, log, bars, show)
    finally:
        lock.release()
    return history


def _evaluate_and_plot(request: TrainRequest, which: tuple[str, ...], cfg, out: Path, history: list[EpochLog],
                       dev, log: Callable[[str], None], bars: Callable[[], Any] | None,
                       show: Callable[[RunEvaluation], None] | None) -> None:
    best = max(history, key=lambda h: h.source_test_acc)
    what = "source test accuracy" if len(cfg.sources) == 1 else f"mean test accuracy of the {len(cfg.sources)} sources"
    log(done("trained", f": final epoch {history[-1].epoch} {what} "
             f"{history[-1].source_test_acc:.2f}% (best {best.source_test_acc:.2f}% at epoch {best.epoch}, "
             f"test-set selection); weights in {out}/last.safetensors and best.safetensors"))
    if request.evaluate:
        for w in which:
            evaluation = evaluate_run(out, w, cache_dir=Path(cfg.cache_dir), targets=request.targets,
                                      clip_weights=cfg.clip_weights, workers=cfg.workers, device=cfg.device,
                                      log=log, bars=bars, full=True)
            if evaluation and show:
                show(evaluation)
    if request.plots:
        written = make_run_figures(out, which=which[0], device=dev, log=lambda m: log(warning(m)))
        log(f"{plural(len(written), 'figure')} in {RunFolder(out).figures}")
