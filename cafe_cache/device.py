"""Where and how a command computes: its device, DataLoader workers and autocast precision.

Shared by extract, train, eval, predict and the benchmarks.
"""

from __future__ import annotations

import os
from contextlib import nullcontext

import torch

from .distributed import SINGLE, rank_device
from .errors import CafeError
from .options import TRAIN_PRECISIONS


def pick_device(device: str = "auto") -> torch.device:
    """The device of a one-process command: ``auto`` is CUDA when present."""
    return rank_device(device, SINGLE)


def default_workers(device: torch.device, processes_per_node: int = 1) -> int:
    """Decoding processes: on CUDA enough to keep the GPU fed (up to 8, the node's CPUs shared among
    its ``processes_per_node`` ranks); on the CPU none, as decoding costs ~1% of the model's time
    there and worker processes only take cores from it (``make bench``: 2 workers on 2 cores cut
    ViT-B/32 extraction by ~10%)."""
    if device.type != "cuda":
        return 0
    return max(1, min(8, (os.cpu_count() or 1) // max(1, processes_per_node)))


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` is fp16 on CUDA (the official code keeps CLIP in fp16) and fp32 elsewhere."""
    if precision == "auto":
        return "fp16" if device.type == "cuda" else "fp32"
    return precision


def autocast(precision: str, device: torch.device):
    if precision == "fp32":
        return nullcontext()
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype)


def resolve_train_precision(precision: str, device: torch.device) -> str:
    """``auto``: bf16 mixed precision on CUDA (needs no loss scaling), fp32 on the CPU (as the official code)."""
    if precision not in TRAIN_PRECISIONS:
        raise CafeError(f"--precision {precision!r}: choose from {', '.join(TRAIN_PRECISIONS)}.")
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return precision
