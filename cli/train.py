"""``cafe train``: stage two, the CAFE mask branch on cached CLIP features, then evaluation."""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import typer

from cafe_cache.errors import CafeError
from cafe_cache.options import DEFAULT_WHICH, TRAIN_PRECISIONS, VARIANTS, WHICH

from .common import console, progress, rate_text, say_plain, split_list
from .evaluate import evaluate_run

# on --resume these may change (they do not change what is trained); --epochs extends or shortens the run
RESUME_MAY_CHANGE = ("epochs", "workers", "device")
NOT_TRAINING = ("out", "resume", "targets", "evaluate", "eval_which", "plots")
AUGMENT_FLAGS = ("flip", "noise", "erase")


def given_options(ctx: typer.Context) -> dict:
    """The options typed on the command line (or set in the environment), not left at their defaults."""
    typed = ("COMMANDLINE", "ENVIRONMENT")
    return {k: v for k, v in ctx.params.items() if getattr(ctx.get_parameter_source(k), "name", None) in typed}


def resumed(cfg, run: Path, given: dict):
    """The saved config of ``run`` with the options that may change on resume; any other training option that
    differs from the saved one is refused (it would silently not apply)."""
    for name, value in given.items():
        if name in NOT_TRAINING or name in RESUME_MAY_CHANGE:
            continue
        saved = getattr(cfg.augment, name) if name in AUGMENT_FLAGS else getattr(cfg, name)
        if (str(value) if isinstance(value, Path) else value) != saved:
            flag = "--" + name.replace("_", "-")
            raise CafeError(f"--resume continues {run} with its saved settings: {flag} {value} differs from the saved "
                            f"{saved}. Drop {flag}, or start a new run with another --out (on resume only "
                            f"{', '.join('--' + n for n in RESUME_MAY_CHANGE)} may change).")
    return replace(cfg, **{k: given[k] for k in RESUME_MAY_CHANGE if k in given})


def train(
    ctx: typer.Context,
    source: str | None = typer.Option(None, "--source", "-s", help="Cache name of the training dataset (cache/NAME.h5)."),
    cache_dir: Path = typer.Option(Path("cache"), help="Folder of the feature caches."),
    out: Path | None = typer.Option(None, help="Run folder. Default: runs/<source>-<time>."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last finished epoch, with its saved settings."),
    root: str | None = typer.Option(None, help="Where the source images are now, if they moved since extraction."),
    backbone: str = typer.Option("resnet18", help="Mask-branch backbone: resnet18, resnet50, mobilenet_v2, mobilenet_v3_small."),
    backbone_weights: str = typer.Option("imagenet", help="FILE (e.g. resnet18_msceleb.pth, as the paper), 'imagenet' (torchvision download) or 'none' (random init)."),
    variant: str = typer.Option("cafe", help=f"Model: {', '.join(VARIANTS)} (the paper's ablations)."),
    w_sep: float = typer.Option(1.5, help="Weight of the separation loss (0 = without separation)."),
    w_div: float = typer.Option(5.0, help="Weight of the channel-diverse loss (0 = without diverse loss)."),
    epochs: int = typer.Option(60, min=1),
    batch_size: int = typer.Option(32, min=1),
    lr: float = typer.Option(2e-4, help="Adam learning rate."),
    weight_decay: float = typer.Option(1e-4),
    gamma: float = typer.Option(0.9, help="ExponentialLR decay per epoch."),
    seed: int = typer.Option(3407),
    image_size: int = typer.Option(224, min=16, help="Mask-branch input size (the paper: 224)."),
    flip: bool = typer.Option(True, "--flip/--no-flip", help="Random horizontal flip (paired with the flipped CLIP view)."),
    noise: bool = typer.Option(True, "--noise/--no-noise", help="Gaussian noise, variance 30 (official)."),
    erase: bool = typer.Option(True, "--erase/--no-erase", help="Random erasing, scale 0.02-0.25 (official)."),
    online_clip: bool = typer.Option(False, "--online-clip", help="Run CLIP on every augmented batch as the official code (slower)."),
    clip_weights: str | None = typer.Option(None, help="CLIP file for --online-clip / --bgr-targets when the cache came from --weights."),
    limit: int | None = typer.Option(None, min=7, help="Use at most N training images (a quarter as many test images): quick CPU runs."),
    targets: str | None = typer.Option(None, help="Caches to evaluate at the end; default: all in --cache-dir."),
    evaluate: bool = typer.Option(True, "--eval/--no-eval", help="Evaluate on the targets when training ends."),
    eval_which: str = typer.Option(DEFAULT_WHICH, help="Weights evaluated at the end: last (the final epoch, as the paper's numbers), best (best on the source's own test set: test-set selection), or last,best."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write the run's figures (as `cafe plot`) at the end."),
    workers: int | None = typer.Option(None, min=0, help="Image-loading worker processes. Default: 0 on the CPU (they only take its cores), min(8, CPUs) on CUDA."),
    device: str = typer.Option("auto"),
    precision: str = typer.Option("auto", help=f"Mask branch {'/'.join(TRAIN_PRECISIONS)}: bf16 = autocast + channels_last (~3x faster on CPUs with AMX); auto: bf16 on CUDA, fp32 on the CPU."),
) -> None:
    """Train CAFE's mask branch on a cached source dataset, then test it on every cached target.

    Several GPUs or nodes: launch it with torchrun (`torchrun --nproc-per-node N -m cli train --out RUN ...`);
    --batch-size stays the global batch, split evenly over the processes.
    """
    from cafe_cache.device import resolve_train_precision
    from cafe_cache.distributed import from_env, process_group, rank_device, restarted  # torch: only when running
    from cafe_cache.progress import device_hint
    from cafe_cache.report import FIGURES, make_run_figures
    from cafe_cache.train.checkpoint import read_config
    from cafe_cache.train.config import TrainConfig
    from cafe_cache.train.data import Augment
    from cafe_cache.train.loop import train as run_training

    which = tuple(split_list(eval_which) or ())
    if not which or any(w not in WHICH for w in which):
        raise CafeError(f"--eval-which {eval_which!r}: choose last, best or last,best.")
    ranks = from_env()
    if ranks.distributed and out is None:
        raise CafeError("under torchrun pass --out RUN, so that every process (and a relaunch) uses the same run folder.")
    if ranks.distributed and restarted() and out is not None and (out / "resume.pt").exists():
        resume = True  # torchrun --max-restarts relaunched us after a rank died: go on from the last epoch
    if resume:
        if out is None:
            raise CafeError("--resume needs --out RUN, the run folder to continue.")
        saved = read_config(out, need=("train",))["train"]
        saved.pop("clip_input")
        saved["augment"] = Augment(**saved["augment"])
        cfg = resumed(TrainConfig(**saved), out, given_options(ctx))
    else:
        if source is None:
            raise CafeError("--source NAME is required (a cache in --cache-dir; see `cafe cache list`).")
        cfg = TrainConfig(source=source, cache_dir=str(cache_dir), root=root, backbone=backbone,
                          backbone_weights=backbone_weights, variant=variant, w_sep=w_sep, w_div=w_div,
                          epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay, gamma=gamma,
                          seed=seed, image_size=image_size, augment=Augment(flip, noise, erase),
                          online_clip=online_clip, clip_weights=clip_weights, limit=limit, workers=workers,
                          device=device, precision=precision)
        out = out or Path("runs") / f"{source}-{datetime.now():%Y%m%d-%H%M%S}"
        if (out / "resume.pt").exists():
            raise CafeError(f"{out} already holds a run; pass --resume to continue it or another --out.")
    if evaluate and targets:  # a wrong --targets fails now, not after the whole training
        from cafe_cache.train.evaluate import target_caches
        target_caches(Path(cfg.cache_dir), split_list(targets))
    say = ranks.main_only(console.print)
    say(f"training on [bold]{cfg.source}[/] -> {out}  (CLIP input: {cfg.clip_input}, variant {cfg.variant})")

    dev = rank_device(cfg.device, ranks)
    say(f"mask branch {cfg.backbone} at {cfg.image_size}px on {device_hint(dev, resolve_train_precision(cfg.precision, dev))}")
    with process_group(dev, ranks), progress() if ranks.is_main else nullcontext() as bar:
        on_epoch, on_step = _epoch_bars(bar, cfg.epochs, say_plain)
        history = run_training(cfg, out, resume=resume, log=console.print, on_step=on_step if bar else None,
                               on_epoch=on_epoch if bar else None, ranks=ranks)
    if not ranks.is_main:
        return  # rank 0 evaluates and plots
    best = max(history, key=lambda h: h["source_test_acc"])
    console.print(f"[green]trained[/]: final epoch {history[-1]['epoch']} source test accuracy "
                  f"{history[-1]['source_test_acc']:.2f}% (best {best['source_test_acc']:.2f}% at epoch {best['epoch']}); "
                  f"weights in {out}/last.safetensors and best.safetensors")
    if evaluate:
        for w in which:
            evaluate_run(out, w, cache_dir=Path(cfg.cache_dir), targets=split_list(targets),
                         clip_weights=cfg.clip_weights, workers=cfg.workers, device=cfg.device)
    if plots:
        written = make_run_figures(out, which=which[0], device=dev,
                                   log=lambda m: console.print(f"[yellow]{m}[/]"))
        console.print(f"{len(written)} figures in {out / FIGURES}")


def _epoch_bars(bar, epochs: int, say):
    """(on_epoch, on_step): one progress task per epoch with its known total, so its time stops when the
    epoch's steps end; after the first epoch's first batches, the measured rate and the run's ETA."""
    from cafe_cache.progress import SpeedHint

    state: dict = {}

    def on_epoch(epoch: int, images: int) -> None:  # on rank 0; images of all ranks
        state["task"] = bar.add_task(f"epoch {epoch + 1}/{epochs}", total=images, rate="")
        state["t0"] = time.perf_counter()
        if "hint" not in state:
            state["hint"] = SpeedHint(images * (epochs - epoch), say)

    def on_step(epoch: int, n: int) -> None:
        state["hint"].batch(n)
        task = state["task"]
        bar.advance(task, n)
        bar.update(task, rate=rate_text(bar.tasks[task].completed, time.perf_counter() - state["t0"]))

    return on_epoch, on_step
