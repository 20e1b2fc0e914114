"""Stage two: train the CAFE mask branch against cached CLIP features.

Read top to bottom as torchvision's references: :func:`train` = :func:`setup` (data, model, optimiser,
resume) then, per epoch, :func:`train_one_epoch` and :func:`end_epoch` (source test accuracy,
checkpoints, log line); :func:`plan_run` decides whether a ``cafe train`` starts a run or resumes one.
The paper's hyper-parameters are :class:`~cafe_cache.run.config.TrainConfig`'s defaults. Both ``last``
(the final epoch, whose evaluation gives the paper's numbers) and ``best`` (best accuracy on the
source's own test set: test-set selection, kept as an extra, as the official code also saves it) are
written.

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
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from ..device import autocast, default_workers, resolve_train_precision
from ..distributed import SINGLE, Ranks, data_parallel, rank_device, unwrap
from ..errors import CafeError
from ..extract.extractor import FeatureExtractor
from ..extract.fingerprint import Fingerprint
from ..extract.online import online_features
from ..extract.reader import FeatureCache
from ..history import EpochLog, history_to_json
from ..model.backbones import LoadReport
from ..model.cafe import CAFEModel
from ..model.config import ModelConfig
from ..model.losses import WeightedTerm, channel_drop_mask, total_loss, weighted_terms
from ..run.checkpoint import (
    ResumeState,
    load_resume,
    restore_weights,
    save_resume,
    save_weights,
    weights_state,
    write_json,
)
from ..run.config import TrainConfig, resumed
from ..run.data import PairedSamples
from ..run.folder import BackboneInit, ClipInfo, RunConfig, RunFolder
from ..run.predictions import predict_split
from ..signals import raise_if_terminated
from ..version import __version__
from .sources import SourceData, load_sources, make_sampler


class NonFiniteLoss(CafeError):
    pass


def rank_batch(batch_size: int, ranks: Ranks) -> int:
    """Each rank's share of the global batch."""
    if batch_size % ranks.world:
        example = batch_size - batch_size % ranks.world or ranks.world
        raise CafeError(f"--batch-size {batch_size} (the global batch) does not split evenly over {ranks.world} "
                        f"ranks; pass a multiple of {ranks.world}, e.g. {example}.")
    return batch_size // ranks.world


@dataclass(kw_only=True)
class Session:
    """What the epochs of one training share: made by :func:`setup` (by keyword: where this rank computes,
    the data, the loss weights, the model and its optimiser), advanced by :func:`train_one_epoch` and
    :func:`end_epoch`."""

    cfg: TrainConfig
    run: Path
    # where this rank computes
    ranks: Ranks
    device: torch.device
    precision: str  # of the mask branch, resolved on this device
    layout: torch.memory_format  # channels_last under bf16 (convs prefer NHWC)
    workers: int
    batch_size: int  # this rank's share of the global batch
    # the data
    train_set: Dataset  # PairedSamples, or UnionSamples of several sources
    test_sets: dict[str, PairedSamples]  # each source's own test split
    clip: FeatureExtractor | None  # with --online-clip: CLIP runs on every augmented batch
    clip_dim: int
    terms: tuple[WeightedTerm, ...]  # the loss terms of eq. (9) that count for this variant, with their weights
    model: torch.nn.Module  # DDP-wrapped under several ranks
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    # the epochs done
    history: list[EpochLog] = field(default_factory=list)
    best: float = -1.0


@dataclass
class EpochSums:
    """The running totals of one epoch, over all ranks."""

    loss: float  # the total loss summed over the images
    terms: dict[str, float]  # each loss term (LossTerm.name) summed over the images
    correct: int
    seen: int
    lr: float  # the learning rate the epoch trained with
    seconds: float


def train(cfg: TrainConfig, run: Path, *, resume: bool = False, log: Callable[[str], None] = print,
          on_step: Callable[[int, int], None] | None = None, ranks: Ranks = SINGLE,
          on_epoch: Callable[[int, int], None] | None = None) -> list[EpochLog]:
    """Train into the run folder ``run``; returns the per-epoch history. With several ranks, call it in
    every process (inside :func:`cafe_cache.distributed.process_group`).

    ``on_epoch(epoch, images)`` is called as each epoch starts with the images it will take (all ranks),
    ``on_step(epoch, n)`` after each step with the images of that step (all ranks)."""
    log = ranks.main_only(log)
    run.mkdir(parents=True, exist_ok=True)
    session = setup(cfg, run, resume=resume, log=log, ranks=ranks)
    for epoch in range(len(session.history), cfg.epochs):
        sums = train_one_epoch(session, epoch, on_epoch=on_epoch, on_step=on_step)
        end_epoch(session, epoch, sums, log)
    return session.history


def setup(cfg: TrainConfig, run: Path, *, resume: bool, log: Callable[[str], None], ranks: Ranks) -> Session:
    """Data, model, optimiser and (with ``resume``) the state after the last finished epoch; rank 0 writes
    ``config.json``."""
    device = rank_device(cfg.device, ranks)
    precision = resolve_train_precision(cfg.precision, device)
    layout = torch.channels_last if precision != "fp32" else torch.contiguous_format  # bf16 convs prefer NHWC
    workers = default_workers(device, ranks.local_world) if cfg.workers is None else cfg.workers
    batch_size = rank_batch(cfg.batch_size, ranks)
    data = load_sources(cfg, device, log)
    clip_dim = next(iter(data.test_sets.values())).data.features.shape[-1]

    torch.manual_seed(cfg.seed)
    model = CAFEModel(ModelConfig(cfg.backbone, clip_dim=clip_dim, variant=cfg.variant))
    terms = weighted_terms(cfg, has_mask=model.config.has_mask)  # no mask: CE alone
    init = model.load_backbone(cfg.backbone_weights)
    log(init.summary())
    state = load_resume(run) if resume else None
    if state:  # resume where the last finished epoch left off
        check_resumable(run, cfg, data.cache, state)
        restore_weights(run, state, model)
    model.to(device, memory_format=layout)
    model = data_parallel(model, ranks, device)  # one rank: the model itself
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=cfg.gamma)
    session = Session(cfg=cfg, run=run, ranks=ranks, device=device, precision=precision, layout=layout,
                      workers=workers, batch_size=batch_size, train_set=data.train_set, test_sets=data.test_sets,
                      clip=data.clip, clip_dim=clip_dim, terms=terms, model=model, optimizer=optimizer,
                      scheduler=scheduler)
    if state:
        restore_progress(session, state, log)
    elif resume:
        log("nothing to resume in this run folder; starting from epoch 1")
    if ranks.distributed:
        log(f"{ranks.world} ranks: global batch {cfg.batch_size} = {ranks.world} x {batch_size}, lr {cfg.lr:g}")
    if ranks.is_main:
        write_config(run, cfg, unwrap(model), data, init, ranks, precision)
    return session


def restore_progress(s: Session, state: ResumeState, log: Callable[[str], None]) -> None:
    """The optimiser, the schedule, the history and the best accuracy after the last finished epoch."""
    s.optimizer.load_state_dict(state.optimizer)
    s.scheduler.load_state_dict(state.scheduler)
    s.history, s.best = state.history, state.best
    done = len(s.history)
    log(f"resuming after epoch {done} of {s.cfg.epochs} (best source test accuracy {s.best:.2f})"
        if done < s.cfg.epochs else f"all {done} epochs are done already; nothing to train")


def check_resumable(run: Path, cfg: TrainConfig, cache: FeatureCache, state: ResumeState) -> None:
    """Refuse a resume that would not continue the same run: a source cache made otherwise than the one the
    run trained on (other CLIP, activation, preprocessing, views ...), or fewer epochs than already done."""
    saved = RunFolder(run).read_config()
    if saved.clip.fingerprint:
        diff = cache.fingerprint.differences(Fingerprint.from_json(saved.clip.fingerprint))
        if diff:
            raise CafeError(f"{cache.path} is not the cache this run trained on ({'; '.join(diff)}: the run's). "
                            "Put the run's cache back in --cache-dir, or train a new run into another --out.")
    done = len(state.history)
    if done > cfg.epochs:
        raise CafeError(f"--epochs {cfg.epochs}: {run} already finished {done} epochs; pass --epochs {done} or more "
                        "to train on, or evaluate it with `cafe eval`.")


def train_one_epoch(s: Session, epoch: int, *, on_epoch: Callable[[int, int], None] | None = None,
                    on_step: Callable[[int, int], None] | None = None) -> EpochSums:
    """One pass over the training set (each rank its share), then one step of the learning-rate schedule."""
    t0 = time.perf_counter()
    s.train_set.set_epoch(epoch)
    sampler = make_sampler(s.train_set, s.cfg, s.ranks)  # one source: the DistributedSampler it always had
    sampler.set_epoch(epoch)  # the shuffle of epoch e; rank r takes every W-th sample of it
    loader = DataLoader(s.train_set, batch_size=s.batch_size, sampler=sampler, num_workers=s.workers,
                        pin_memory=s.device.type == "cuda", persistent_workers=False)
    drops = torch.Generator().manual_seed(s.cfg.seed * 1000 + epoch)  # one drop mask per step (eq. 4)
    if on_epoch:
        on_epoch(epoch, len(sampler) * s.ranks.world)
    s.model.train()
    total, sums = 0.0, {t.term.name: 0.0 for t in s.terms}
    correct = seen = 0
    draw_drops = any(t.term.uses_drop_mask for t in s.terms)
    for step, (images, feats, labels) in enumerate(loader):
        images = images.to(s.device, non_blocking=True, memory_format=s.layout)
        labels = labels.to(s.device, non_blocking=True)
        feats = online_features(s.clip, images) if s.clip else feats.to(s.device, non_blocking=True)
        drop = channel_drop_mask(s.clip_dim, generator=drops, device=s.device) if draw_drops else None
        with autocast(s.precision, s.device):
            out = s.model(images, feats)
            losses = total_loss(out.logits.float(), labels, out.masked, drop, terms=s.terms)
        # one host sync per step: the losses and the correct count, summed over ranks, come back together
        hits = (out.logits.argmax(1) == labels).sum()
        synced = s.ranks.sum(torch.cat([losses.detached(), hits.float()[None]])).tolist()
        values = losses.read([v / s.ranks.world for v in synced[:-1]])  # each rank's loss is its batch's mean
        if not math.isfinite(values.total):
            raise _non_finite(s, values.total, epoch, step)
        s.optimizer.zero_grad(set_to_none=True)
        losses.total.backward()
        s.optimizer.step()
        n = len(labels) * s.ranks.world
        total += values.total * n
        for name, v in values.terms.items():
            sums[name] += v * n
        correct += int(synced[-1])
        seen += n
        if on_step:
            on_step(epoch, n)
        raise_if_terminated()
    lr = s.optimizer.param_groups[0]["lr"]
    s.scheduler.step()  # ExponentialLR, once per epoch
    return EpochSums(total, sums, correct, seen, lr, time.perf_counter() - t0)


def _non_finite(s: Session, loss: float, epoch: int, step: int) -> NonFiniteLoss:
    kept = (f"The last good weights are {RunFolder(s.run).weights('last')} (epoch {len(s.history)})" if s.history
            else "No epoch finished, so no weights were saved")
    return NonFiniteLoss(f"loss became {loss} at epoch {epoch + 1}, step {step + 1}; stopped. {kept}. "
                         "Try a lower --lr.")


def end_epoch(s: Session, epoch: int, e: EpochSums, log: Callable[[str], None]) -> EpochLog:
    """Accuracy on the source's test set (rank 0), the epoch's log entry, the checkpoints and the log line."""
    accs = s.ranks.on_main(lambda: {name: source_test_accuracy(unwrap(s.model), test_set, s.cfg, s.workers,
                                                               s.device, s.clip)
                                    for name, test_set in s.test_sets.items()})
    test_acc = sum(accs.values()) / len(accs)
    terms = {name: v / e.seen for name, v in e.terms.items()}  # the terms off for this run are None below
    entry = EpochLog(epoch + 1, e.loss / e.seen, terms["ce"], terms.get("sep"), terms.get("div"),
                     100.0 * e.correct / e.seen, test_acc, e.lr, e.seconds, e.seen / e.seconds, accs)
    s.history.append(entry)

    # -- checkpoints (rank 0): weights first, then the resume state that points at them ------------
    improved = test_acc > s.best
    s.best = max(s.best, test_acc)
    if s.ranks.is_main:
        kept = (f"The checkpoints of epoch {epoch} are kept: continue with `cafe train --resume --out {s.run}`."
                if epoch else "No epoch was saved yet.")
        save_weights(s.run, "last", unwrap(s.model), kept)
        if improved:
            save_weights(s.run, "best", unwrap(s.model), kept)
        # one file: the weights of this epoch with its optimiser, so a resume never pairs two epochs
        save_resume(s.run, ResumeState(optimizer=s.optimizer.state_dict(), scheduler=s.scheduler.state_dict(),
                                       history=s.history, best=s.best, model=weights_state(unwrap(s.model)),
                                       epoch=epoch + 1), kept)
        write_json(RunFolder(s.run).metrics, history_to_json(s.history), kept)
    parts = ", ".join(f"{name} {v:.4f}" for name, v in terms.items())
    log(f"epoch {epoch + 1}/{s.cfg.epochs}  loss {entry.loss:.4f} ({parts})  train {entry.train_acc:.1f}%  "
        f"{test_line(accs)}  lr {e.lr:.2e}  {entry.images_per_s:.1f} img/s")
    return entry


def plan_run(config: TrainConfig | None, given: dict[str, Any], *, out: Path | None, resume: bool,
             distributed: bool = False, restarted: bool = False) -> tuple[TrainConfig, Path, bool]:
    """(config, run folder, resume?) of a ``cafe train``: a new run of ``config``,
    or, with ``resume`` (or when torchrun relaunched the processes of a run), the saved run in ``out``
    with the options of ``given`` that may change (:func:`resumed`)."""
    if distributed and out is None:
        raise CafeError("under torchrun pass --out RUN, so that every process (and a relaunch) uses the same run "
                        "folder.")
    if distributed and restarted and out is not None and RunFolder(out).has_run():
        resume = True  # torchrun --max-restarts relaunched us after a rank died: go on from the last epoch
    if resume:
        if out is None:
            raise CafeError("--resume needs --out RUN, the run folder to continue.")
        return resumed(RunFolder(out).read_config().train, out, given), out, True
    if config is None:
        raise CafeError("--source NAME is required (a cache in --cache-dir; see `cafe cache list`).")
    cfg = config
    out = out or Path("runs") / f"{'+'.join(cfg.sources)}-{datetime.now():%Y%m%d-%H%M%S}"
    if RunFolder(out).has_run():
        raise CafeError(f"{out} already holds a run; pass --resume to continue it or another --out.")
    return cfg, out, False


def test_line(accs: dict[str, float]) -> str:
    """``source test 71.2%``, or with several sources their mean (what ``best`` is chosen on) and each one."""
    if len(accs) == 1:
        return f"source test {next(iter(accs.values())):.1f}%"
    each = ", ".join(f"{name} {acc:.1f}%" for name, acc in accs.items())
    return f"mean source test {sum(accs.values()) / len(accs):.1f}% ({each})"


def source_test_accuracy(model: CAFEModel, test_set, cfg: TrainConfig, workers: int, device: torch.device,
                         clip) -> float:
    """Accuracy (%) on the source's own test split: logged per epoch, and how ``best`` is chosen."""
    pred = predict_split(model, test_set, batch_size=max(64, cfg.batch_size), workers=workers, device=device, clip=clip)
    return 100.0 * float((pred.y_true == pred.y_pred).mean())


def write_config(run: Path, cfg: TrainConfig, model: CAFEModel, data: SourceData, init: LoadReport,
                 ranks: Ranks, precision: str) -> None:
    """``config.json`` (:class:`~cafe_cache.run.folder.RunConfig`): everything needed to rebuild, resume and
    describe the run."""
    cache = data.cache
    n_train, n_test = len(data.train_set), sum(len(t) for t in data.test_sets.values())
    several = len(data.caches) > 1
    config = RunConfig(
        model=model.config, train=cfg, cafe_version=__version__, mask_precision=precision,
        clip=ClipInfo(cache.fingerprint.to_json(), cache.fingerprint.weights_label, cache.random_weights),
        backbone_init=BackboneInit(init.source, len(init.loaded), [] if init.source == "none" else init.missing,
                                   cfg.backbone_weights == "none"),
        source_cache=str(cache.path), samples={"train": n_train, "test": n_test},
        source_caches={n: str(c.path) for n, c in data.caches.items()} if several else None,
        samples_per_source={n: {"train": len(p), "test": len(data.test_sets[n])}
                            for n, p in zip(data.caches, data.train_set.parts)} if several else None,
        ranks={"world": ranks.world, "batch_per_rank": cfg.batch_size // ranks.world})
    write_json(RunFolder(run).config, config.to_json())
