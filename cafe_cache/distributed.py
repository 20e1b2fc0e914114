"""Several processes at once: ``torchrun`` launches them, :mod:`torch.distributed` connects them.

``cafe`` needs no launcher of its own. Under ``torchrun --nproc-per-node N -m cli ...`` every process
finds its place in the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``); :func:`process_group` joins them into one group and :class:`Ranks` is what
the rest of the library sees: who am I, how many are we, and the few collectives it needs.
Without torchrun there is one rank and every collective is a no-op.

- stage one (:mod:`cafe_cache.extract.shards`): each rank extracts whole shards of the dataset;
  rank 0 joins them into one cache.
- stage two (:mod:`cafe_cache.train.loop`): DistributedDataParallel over the mask branch, a
  DistributedSampler, batch-norm statistics over the global batch (:class:`GlobalBatchNorm`),
  rank 0 alone writes checkpoints and evaluates.

A rank that dies makes torchrun stop the others with SIGTERM; :func:`process_group` turns that
signal into ``SystemExit`` so open cache files are closed after the current batch.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from .errors import CafeError, RaisedOnRankZero

T = TypeVar("T")

# Rank 0 may wait for the others a long time (extraction shards end unevenly after a resume);
# torchrun, not this timeout, is what stops the group when a rank dies.
TIMEOUT = timedelta(hours=12)


@dataclass(frozen=True)
class Ranks:
    """This process's place among the processes of one run."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def main_only(self, say: Callable[..., Any]) -> Callable[..., Any]:
        """``say`` on rank 0, a no-op elsewhere: rank 0 speaks for all."""
        return say if self.is_main else (lambda *args, **kwargs: None)

    # -- collectives (no-ops for one rank) --------------------------------------------------
    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks (in place, returned)."""
        if self.distributed:
            dist.all_reduce(tensor)
        return tensor

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and give its result to every rank; a CafeError it raises is raised
        on every rank, so no rank waits for a partner that has already stopped."""
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except CafeError as e:
                error = str(e)
        result, error = self.broadcast((result, error))
        if error is not None:
            raise (CafeError if self.is_main else RaisedOnRankZero)(error)
        return result

    @contextmanager
    def local_main_first(self) -> Iterator[None]:
        """The body runs on each node's local rank 0 first (e.g. a download into a node's cache), then
        on the other ranks."""
        if not self.local_rank == 0:
            self.barrier()
        yield
        if self.local_rank == 0:
            self.barrier()


SINGLE = Ranks()


def from_env() -> Ranks:
    """This process's place as torchrun describes it; one rank when not launched by torchrun."""
    env = os.environ
    try:
        return Ranks(rank=int(env.get("RANK", 0)), world=int(env.get("WORLD_SIZE", 1)),
                     local_rank=int(env.get("LOCAL_RANK", 0)), local_world=int(env.get("LOCAL_WORLD_SIZE", 1)))
    except ValueError as e:
        raise CafeError(f"torchrun's RANK/WORLD_SIZE/LOCAL_RANK variables are not numbers ({e}); launch "
                        "with torchrun, or unset them to run as one process.") from None


def restarted() -> bool:
    """True in a process that torchrun relaunched after a failure (``--max-restarts``)."""
    return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0


def check_device(device: str) -> None:
    """A --device that torch cannot parse or this machine does not have is one clear error."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        raise CafeError(f"--device {device}: not a device; use auto, cpu, cuda or cuda:N.") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise CafeError(f"--device {device}: no CUDA GPU is usable here (torch {torch.__version__}, CUDA "
                            f"build {torch.version.cuda or 'none'}); use --device cpu or auto.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise CafeError(f"--device {device}: this machine has {torch.cuda.device_count()} GPU(s), "
                            f"cuda:0 to cuda:{torch.cuda.device_count() - 1}.")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise CafeError(f"--device {device}: Apple MPS is not available here; use --device cpu or auto.")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise CafeError(f"--device {device}: cafe runs on cpu, cuda or mps.")


def rank_device(device: str, ranks: Ranks) -> torch.device:
    """``auto``/``cuda`` -> ``cuda:<local rank>`` when CUDA is present (one GPU per process); ``auto`` is
    the CPU otherwise. An explicit index (``cuda:1``) is kept, for one process only."""
    if device != "auto":
        check_device(device)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return torch.device("cuda", ranks.local_rank)
    if ranks.distributed and device.startswith("cuda:"):
        raise CafeError(f"--device {device}: under torchrun each process takes the GPU of its local rank; "
                        "pass --device cuda (or auto) and pick GPUs with CUDA_VISIBLE_DEVICES.")
    return torch.device(device)


def _stop_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def process_group(device: torch.device | None = None, ranks: Ranks | None = None) -> Iterator[Ranks]:
    """Join the processes torchrun started (nothing to join for one process).

    Collectives of Python objects go through gloo; tensors on CUDA through NCCL.
    """
    ranks = ranks or from_env()
    if not ranks.distributed:
        yield ranks
        return
    cuda = device is not None and device.type == "cuda"
    if cuda:
        torch.cuda.set_device(device)
    previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    store, rank, world = next(dist.rendezvous("env://", timeout=TIMEOUT))
    # a relaunch (torchrun --max-restarts) can meet the same store: keys of its own keep the previous
    # launch's addresses out of the way (else gloo may dial a dead rank: "Connection refused")
    store = dist.PrefixStore(f"cafe/launch-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}", store)
    dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", store=store, rank=rank, world_size=world,
                            timeout=TIMEOUT)
    try:
        yield ranks
    finally:
        dist.destroy_process_group()
        signal.signal(signal.SIGTERM, previous)


# -- stage two: batch norm over the global batch ---------------------------------------------

class GlobalBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch (all ranks together).

    Why not ``torch.nn.SyncBatchNorm``: it runs on CUDA only, and the same code must train (and be
    tested) with gloo on CPUs. With equal batches on every rank, DDP over this layer gives the
    gradients of one process on the concatenated batch. Parameters and buffers are those of
    BatchNorm2d, so checkpoints load into the plain model. Outside training, or with one rank, it
    is BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed import _functional_collectives as funcol  # differentiable all_reduce

        xf = x.to(torch.promote_types(x.dtype, torch.float32))  # statistics in fp32 at least (bf16 autocast)
        tracking = self.running_mean is not None
        # the sums are taken about a shift (the running mean), which keeps E[d^2] - E[d]^2 accurate
        shift = (self.running_mean.detach() if tracking else xf.new_zeros(x.shape[1])).view(1, -1, 1, 1)
        d = xf - shift
        count = torch.full((1,), x.numel() // x.shape[1], dtype=xf.dtype, device=x.device)
        stats = funcol.all_reduce(torch.cat([d.sum((0, 2, 3)), (d * d).sum((0, 2, 3)), count]), "sum",
                                  dist.group.WORLD)
        c = x.shape[1]
        n = stats[-1]
        mean_d = stats[:c] / n
        var = (stats[c:2 * c] / n - mean_d * mean_d).clamp_min(0)  # biased, as BatchNorm normalises
        mean = shift.view(-1) + mean_d
        if tracking:
            self._track(mean.detach(), var.detach() * n / (n - 1).clamp_min(1))
        y = (xf - mean.view(1, -1, 1, 1)) * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y.to(x.dtype)

    @torch.no_grad()
    def _track(self, mean: torch.Tensor, unbiased_var: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        self.running_mean.lerp_(mean, m)
        self.running_var.lerp_(unbiased_var, m)


def global_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm2d replaced by a GlobalBatchNorm holding the same state."""
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats, device=module.running_mean.device
                              if module.running_mean is not None else None)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new
    for name, child in module.named_children():
        setattr(module, name, global_batchnorm(child))
    return module


def data_parallel(model: nn.Module, ranks: Ranks, device: torch.device) -> nn.Module:
    """The model to train: itself for one rank; else with global batch norm, inside
    DistributedDataParallel (gradients averaged over ranks; rank 0's weights to start)."""
    if not ranks.distributed:
        return model
    model = global_batchnorm(model)
    return nn.parallel.DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None,
        forward_sync_buffers=False)  # GlobalBatchNorm keeps running stats equal on every rank


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
