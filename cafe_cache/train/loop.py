"""Stage two: train the CAFE mask branch against cached CLIP features.

Read top to bottom: data -> model -> optimiser -> (resume) -> epochs -> checkpoints.
Paper defaults: Adam 2e-4, weight decay 1e-4, ExponentialLR 0.9 per epoch, batch 32, 60 epochs,
seed 3407, input 224, loss = CE + 1.5 l_sep + 5 l_div. Both ``last`` (the final epoch, whose evaluation
gives the paper's numbers) and ``best`` (best accuracy on the source's own test set: test-set selection,
kept as an extra, as the official code also saves it) are written.

Under torchrun (``ranks.world`` W > 1) the same loop runs in every process: ``batch_size`` stays the
global batch, each rank takes ``batch_size / W`` of it from a DistributedSampler, DDP averages the
gradients and batch norm uses the global batch's statistics, so a step is the step one process
would take on the whole batch and the learning rate needs no change. Rank 0 alone evaluates,
logs and writes the run folder.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler

from .. import __version__
from ..device import autocast, default_workers, resolve_train_precision
from ..distributed import SINGLE, Ranks, data_parallel, rank_device, unwrap
from ..errors import CafeError
from ..extract.cache import FeatureCache, cache_path
from ..extract.online import clip_for, online_features
from ..model.cafe import CAFEModel, ModelConfig
from ..model.losses import channel_drop_mask, total_loss
from .checkpoint import load_resume, load_weights, save_resume, save_weights, write_json
from .config import TrainConfig
from .data import PairedSamples, limit_split, reader_for
from .evaluate import predict_split


@dataclass
class EpochLog:
    epoch: int
    loss: float
    ce: float
    sep: float | None
    div: float | None
    train_acc: float
    source_test_acc: float
    lr: float
    seconds: float
    images_per_s: float


class NonFiniteLoss(CafeError):
    pass


def rank_batch(batch_size: int, ranks: Ranks) -> int:
    """Each rank's share of the global batch."""
    if batch_size % ranks.world:
        raise CafeError(f"--batch-size {batch_size} (the global batch) does not split evenly over {ranks.world} "
                        f"ranks; pass a multiple of {ranks.world}, e.g. {batch_size - batch_size % ranks.world or ranks.world}.")
    return batch_size // ranks.world


def train(cfg: TrainConfig, run: Path, *, resume: bool = False, log: Callable[[str], None] = print,
          on_step: Callable[[int, int], None] | None = None, ranks: Ranks = SINGLE,
          on_epoch: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Train into the run folder ``run``; returns the per-epoch history. With several ranks, call it in
    every process (inside :func:`cafe_cache.distributed.process_group`).

    ``on_epoch(epoch, images)`` is called as each epoch starts with the images it will take (all ranks),
    ``on_step(epoch, n)`` after each step with the images of that step (all ranks)."""
    log = ranks.main_only(log)
    run.mkdir(parents=True, exist_ok=True)
    device = rank_device(cfg.device, ranks)
    precision = resolve_train_precision(cfg.precision, device)
    layout = torch.channels_last if precision != "fp32" else torch.contiguous_format  # bf16 convs prefer NHWC
    workers = default_workers(device, ranks.local_world) if cfg.workers is None else cfg.workers
    batch_size = rank_batch(cfg.batch_size, ranks)

    # -- data: the source's cached CLIP features, paired with the images they came from ----------
    cache = FeatureCache(cache_path(cfg.cache_dir, cfg.source))
    cache.require_complete()
    reader = reader_for(cache, cfg.root)
    views = cache.fingerprint.views
    if cache.random_weights:
        log(f"[bold yellow]RANDOM WEIGHTS[/]: the CLIP features of {cfg.source} come from "
            f"{cache.fingerprint.weights_label}; this run tests the pipeline, its results mean nothing.")
    if cache.subset:
        from ..extract.subset import describe

        log(f"[yellow]{cache.path} is a partial extraction ({describe(cache.subset)})[/]: "
            "results are not those of the whole dataset.")
    train_data = limit_split(cache.load("train"), cfg.limit, cfg.seed)
    test_data = limit_split(cache.load("test"), cfg.limit and max(1, cfg.limit // 4), cfg.seed)
    train_set = PairedSamples(train_data, reader, views, cfg.image_size, cfg.augment, cfg.seed)
    test_set = PairedSamples(test_data, reader, views, cfg.image_size)
    clip = clip_for(cache.fingerprint, cfg.clip_weights, device, official_fp16=True) if cfg.online_clip else None
    clip_dim = train_data.features.shape[-1]

    # -- model and optimiser ---------------------------------------------------------------------
    use_mask = cfg.variant in ("cafe", "no_sigmoid")
    w_sep, w_div = (cfg.w_sep, cfg.w_div) if use_mask else (0.0, 0.0)
    torch.manual_seed(cfg.seed)
    model = CAFEModel(ModelConfig(cfg.backbone, clip_dim=clip_dim, variant=cfg.variant))
    init = model.load_backbone(cfg.backbone_weights)
    log(init.summary())
    state = load_resume(run) if resume else None
    if state:  # resume where the last finished epoch left off
        load_weights(run, "last", model)
    model.to(device, memory_format=layout)
    model = data_parallel(model, ranks, device)  # one rank: the model itself
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.gamma)
    history: list[dict[str, Any]] = []
    best = -1.0
    if state:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        history, best = state["history"], state["best"]
        log(f"resuming after epoch {len(history)} of {cfg.epochs} (best source test accuracy {best:.2f})")
    elif resume:
        log("nothing to resume in this run folder; starting from epoch 1")
    if ranks.distributed:
        log(f"{ranks.world} ranks: global batch {cfg.batch_size} = {ranks.world} x {batch_size}, lr {cfg.lr:g}")
    if ranks.is_main:
        write_config(run, cfg, unwrap(model), cache, init, len(train_set), len(test_set), ranks, precision)

    # -- epochs ----------------------------------------------------------------------------------
    for epoch in range(len(history), cfg.epochs):
        t0 = time.perf_counter()
        train_set.set_epoch(epoch)
        sampler = DistributedSampler(train_set, num_replicas=ranks.world, rank=ranks.rank, seed=cfg.seed)
        sampler.set_epoch(epoch)  # the shuffle of epoch e; rank r takes every W-th sample of it
        loader = DataLoader(train_set, batch_size=batch_size, sampler=sampler, num_workers=workers,
                            pin_memory=device.type == "cuda", persistent_workers=False)
        drops = torch.Generator().manual_seed(cfg.seed * 1000 + epoch)  # one drop mask per step (eq. 4)
        if on_epoch:
            on_epoch(epoch, len(sampler) * ranks.world)
        model.train()
        sums = {"loss": 0.0, "ce": 0.0, "sep": 0.0, "div": 0.0}
        correct = seen = 0
        for step, (images, feats, labels) in enumerate(loader):
            images = images.to(device, non_blocking=True, memory_format=layout)
            labels = labels.to(device, non_blocking=True)
            feats = online_features(clip, images) if clip else feats.to(device, non_blocking=True)
            drop = channel_drop_mask(clip_dim, generator=drops, device=device) if w_sep else None
            with autocast(precision, device):
                out = model(images, feats)
                losses = total_loss(out["logits"].float(), labels, out["masked"], drop, w_sep=w_sep, w_div=w_div)
            # one host sync per step: the loss parts and the correct count, summed over ranks, come back together
            hits = (out["logits"].argmax(1) == labels).sum()
            *parts, n_correct = ranks.sum(torch.stack([*(v.detach().float() for v in losses.values()),
                                                       hits.float()])).tolist()
            parts = [p / ranks.world for p in parts]  # each rank's loss is its batch's mean: average them
            if not math.isfinite(parts[0]):
                kept = (f"The last good weights are {run / 'last.safetensors'} (epoch {len(history)})" if history
                        else "No epoch finished, so no weights were saved")
                raise NonFiniteLoss(f"loss became {parts[0]} at epoch {epoch + 1}, step {step + 1}; stopped. {kept}. "
                                    "Try a lower --lr.")
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            optimizer.step()
            n = len(labels) * ranks.world
            for k, v in zip(losses, parts):
                sums["loss" if k == "total" else k] += v * n
            correct += int(n_correct)
            seen += n
            if on_step:
                on_step(epoch, n)
        lr = optimizer.param_groups[0]["lr"]
        scheduler.step()  # ExponentialLR, once per epoch
        train_seconds = time.perf_counter() - t0

        test_acc = ranks.on_main(lambda: source_test_accuracy(unwrap(model), test_set, cfg, workers, device, clip))
        entry = EpochLog(epoch + 1, sums["loss"] / seen, sums["ce"] / seen,
                         sums["sep"] / seen if w_sep else None, sums["div"] / seen if w_div else None,
                         100.0 * correct / seen, test_acc, lr, train_seconds, seen / train_seconds)
        history.append(asdict(entry))

        # -- checkpoints (rank 0): weights first, then the resume state that points at them --------
        improved = test_acc > best
        best = max(best, test_acc)
        if ranks.is_main:
            save_weights(run, "last", unwrap(model))
            if improved:
                save_weights(run, "best", unwrap(model))
            save_resume(run, {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                              "history": history, "best": best})
            write_json(run / "metrics.json", history)
        log(f"epoch {epoch + 1}/{cfg.epochs}  loss {entry.loss:.4f} (ce {entry.ce:.4f}"
            + (f", sep {entry.sep:.4f}" if entry.sep is not None else "")
            + (f", div {entry.div:.4f}" if entry.div is not None else "")
            + f")  train {entry.train_acc:.1f}%  source test {test_acc:.1f}%  lr {lr:.2e}  "
            f"{entry.images_per_s:.1f} img/s")
    return history


def source_test_accuracy(model: CAFEModel, test_set, cfg: TrainConfig, workers: int, device: torch.device,
                         clip) -> float:
    """Accuracy (%) on the source's own test split: logged per epoch, and how ``best`` is chosen."""
    pred = predict_split(model, test_set, batch_size=max(64, cfg.batch_size), workers=workers, device=device, clip=clip)
    return 100.0 * float((pred.y_true == pred.y_pred).mean())


def write_config(run: Path, cfg: TrainConfig, model: CAFEModel, cache: FeatureCache, init, n_train: int,
                 n_test: int, ranks: Ranks, precision: str) -> None:
    """``config.json``: everything needed to rebuild, resume and describe the run."""
    write_json(run / "config.json", {
        "cafe_version": __version__, "model": model.config.to_dict(), "train": cfg.to_dict(),
        "mask_precision": precision,  # --precision resolved on this device (auto: bf16 on CUDA)
        "clip": {"fingerprint": cache.fingerprint.to_json(), "label": cache.fingerprint.weights_label,
                 "random_weights": cache.random_weights},
        "backbone_init": {"source": init.source, "loaded": len(init.loaded), "missing": [] if init.source == "none" else init.missing,
                          "random_init": cfg.backbone_weights == "none"},
        "source_cache": str(cache.path), "samples": {"train": n_train, "test": n_test},
        "ranks": {"world": ranks.world, "batch_per_rank": cfg.batch_size // ranks.world},
    })
