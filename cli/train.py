"""``cafe train``: stage two, the CAFE mask branch on cached CLIP features, then evaluation."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import typer

from cafe_cache.model.variants import VARIANTS
from cafe_cache.options import BALANCE_MODES, DEFAULT_WHICH, TRAIN_PRECISIONS, split_list
from cafe_cache.run.config import LIMIT_LOW, Augment, TrainConfig

from .common import bounded, progress, say, say_plain
from .evaluate import show_evaluation

D = TrainConfig  # the option defaults are TrainConfig's (the paper's hyper-parameters, one place)
AUGMENT_FLAGS = tuple(f.name for f in fields(Augment))


def given_options(ctx: typer.Context) -> dict:
    """The options typed on the command line (or set in the environment), not left at their defaults."""
    typed = ("COMMANDLINE", "ENVIRONMENT")
    return {k: v for k, v in ctx.params.items() if getattr(ctx.get_parameter_source(k), "name", None) in typed}


def training_options(params: dict) -> dict:
    """The command line's values under TrainConfig's keys (``augment`` a dict of the three flags)."""
    names = {f.name for f in fields(TrainConfig)} - {"augment"}
    return {k: params[k] for k in names} | {"cache_dir": str(params["cache_dir"]),
                                            "augment": {k: params[k] for k in AUGMENT_FLAGS}}


def train(
    ctx: typer.Context,
    source: str | None = typer.Option(None, "--source", "-s",
                                      help="Cache name of the training dataset (cache/NAME.h5), or several "
                                      "separated by commas (rafdb,ferplus): the union of their train splits."),
    cache_dir: Path = typer.Option(Path(D.cache_dir), help="Folder of the feature caches."),
    out: Path | None = typer.Option(None, help="Run folder. Default: runs/<source>-<time>."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last finished epoch, "
                                "with its saved settings."),
    root: str | None = typer.Option(D.root, help="Where the source images are now, if they moved since extraction."),
    backbone: str = typer.Option(D.backbone, help="Mask-branch backbone: resnet18, resnet50, mobilenet_v2, "
                                 "mobilenet_v3_small."),
    backbone_weights: str = typer.Option(D.backbone_weights, help="FILE (e.g. resnet18_msceleb.pth, as the paper), "
                                         "'imagenet' (torchvision download) or 'none' (random init)."),
    variant: str = typer.Option(D.variant, help=f"Model: {', '.join(VARIANTS)} (the paper's ablations)."),
    w_sep: float = typer.Option(D.w_sep, help="Weight of the separation loss (0 = without separation)."),
    w_div: float = typer.Option(D.w_div, help="Weight of the channel-diverse loss (0 = without diverse loss)."),
    epochs: int = typer.Option(D.epochs, callback=bounded()),
    batch_size: int = typer.Option(D.batch_size, callback=bounded()),
    lr: float = typer.Option(D.lr, help="Adam learning rate."),
    weight_decay: float = typer.Option(D.weight_decay),
    gamma: float = typer.Option(D.gamma, help="ExponentialLR decay per epoch."),
    seed: int = typer.Option(D.seed, callback=bounded()),
    image_size: int = typer.Option(D.image_size, callback=bounded(), help="Mask-branch input size (the paper: 224)."),
    flip: bool = typer.Option(Augment.flip, "--flip/--no-flip",
                              help="Random horizontal flip (paired with the flipped CLIP view)."),
    noise: bool = typer.Option(Augment.noise, "--noise/--no-noise", help="Gaussian noise, variance 30 (official)."),
    erase: bool = typer.Option(Augment.erase, "--erase/--no-erase",
                               help="Random erasing, scale 0.02-0.25 (official)."),
    online_clip: bool = typer.Option(D.online_clip, "--online-clip",
                                     help="Run CLIP on every augmented batch as the official code (slower)."),
    clip_weights: str | None = typer.Option(D.clip_weights, help="CLIP file for --online-clip / --bgr-targets "
                                            "when the cache came from --weights."),
    limit: int | None = typer.Option(D.limit, callback=bounded(LIMIT_LOW),
                                     help="Use at most N training images per source (a quarter as many test "
                                     "images): quick CPU runs."),
    targets: str | None = typer.Option(None, help="Caches to evaluate at the end; default: all in --cache-dir."),
    evaluate: bool = typer.Option(True, "--eval/--no-eval", help="Evaluate on the targets when training ends."),
    eval_which: str = typer.Option(DEFAULT_WHICH, help="Weights evaluated at the end: last (the final epoch, as the "
                                   "paper's numbers), best (best on the source's own test set, the mean of the "
                                   "sources' with several: test-set selection), "
                                   "or last,best."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write the run's figures (as `cafe plot`) at the end."),
    workers: int | None = typer.Option(D.workers, callback=bounded(),
                                       help="Image-loading worker processes. Default: 0 on the CPU "
                                       "(they only take its cores), min(8, CPUs) on CUDA."),
    device: str = typer.Option(D.device),
    balance: str = typer.Option(D.balance, help=f"Several sources: {', '.join(BALANCE_MODES)}. none = the plain "
                                "union; domains = each batch draws equally from each source; classes = class-balanced "
                                "over the union."),
    precision: str = typer.Option(D.precision, help=f"Mask branch {'/'.join(TRAIN_PRECISIONS)}: bf16 = autocast + "
                                  "channels_last (~3x faster on CPUs with AMX); auto: bf16 on CUDA, fp32 on the CPU."),
) -> None:
    """Train CAFE's mask branch on a cached source dataset, then test it on every cached target.

    Several GPUs or nodes: launch it with torchrun (`torchrun --nproc-per-node N -m cli train --out RUN ...`);
    --batch-size stays the global batch, split evenly over the processes.
    """
    from cafe_cache.pipeline import TrainRequest, train_and_evaluate  # torch: only when running

    new = not resume and source is not None  # else the saved config (resume) or "--source is required"
    config = TrainConfig.from_dict(training_options(ctx.params)) if new else None
    request = TrainRequest(config, given_options(ctx), out=out, resume=resume,
                           targets=split_list(targets), evaluate=evaluate, eval_which=eval_which, plots=plots)
    train_and_evaluate(request, log=say, plain=say_plain, bars=progress, show=show_evaluation)
