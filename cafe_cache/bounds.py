"""The bounds of every numeric flag, in one place: the CLI checks them while it parses (before any work)
and the library's job dataclasses check them again when made (the same rule for an API caller).

A value outside its bound is one :class:`~cafe_cache.errors.CafeError` line naming the flag, the value
and the limit; a huge number never reaches numpy, torch or the allocator (no overflow traceback, no
out-of-memory kill with orphan workers). No heavy imports: ``cafe --help`` reads these.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from .errors import CafeError

SEED_MAX = 2 ** 32 - 1  # numpy's RandomState and torch's generators all take it; one rule for every --seed
WORKERS_PER_CORE = 4


@dataclass(frozen=True)
class Bound:
    low: int
    high: int | Callable[[], int]  # a callable: a bound that depends on the machine (workers per core)
    why: str = ""  # the reason for the upper bound, said in the message
    off: int | None = None  # a value below ``low`` that means "off" (--store-images 0)

    def upper(self) -> int:
        return self.high() if callable(self.high) else self.high


def cpu_cores() -> int:
    """The cores this process may use (its CPU affinity, as a cluster job's allocation), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def max_workers() -> int:
    return max(8, WORKERS_PER_CORE * cpu_cores())


BOUNDS: dict[str, Bound] = {
    "--batch-size": Bound(1, 4096, "one batch of 4,096 224-px images is already 2.3 GiB of input"),
    "--seed": Bound(0, SEED_MAX, "the range numpy and torch seeds take"),
    "--workers": Bound(0, max_workers, f"{WORKERS_PER_CORE} per CPU core of this machine; each worker is a process "
                                       "holding its own copy of the loader"),
    "--store-images": Bound(16, 1024, "3*SIZE^2 bytes per image, 3 MiB at 1024", off=0),
    "--image-size": Bound(16, 1024, "the paper trains at 224; activations grow with its square"),
    "--limit": Bound(1, 10 ** 9, "more images than any dataset has"),
    "--epochs": Bound(1, 10_000, "the paper trains 60"),
    "--every": Bound(1, 10 ** 6, "frames"),
    "--nproc-per-node": Bound(1, 1024, "processes on one node"),
    "--gradcam": Bound(0, 1000, "images per target"),
    "--train-per-class": Bound(1, 100_000, "images per class"),
    "--test-per-class": Bound(1, 100_000, "images per class"),
    "--show": Bound(0, 10 ** 9, "entries"),
}


def limit_text(flag: str, low: int | None = None) -> str:
    """``between 1 and 4,096`` (``0 (off) or between 16 and 1,024`` for a flag with an off value)."""
    b = BOUNDS[flag]
    low = b.low if low is None else low
    text = f"between {low:,} and {b.upper():,}"
    return f"{b.off} (off) or {text}" if b.off is not None else text


def check(flag: str, value: int | None, low: int | None = None) -> int | None:
    """``value`` if it is within ``flag``'s bound (None: not given, passes), else one CafeError with the
    limit. ``low`` raises the lower bound for a command that needs more (train --limit: 7, one per class)."""
    if value is None or isinstance(value, bool):
        return value
    b = BOUNDS[flag]
    lowest = b.low if low is None else low
    if value == b.off or lowest <= value <= b.upper():
        return value
    why = f" ({b.why})" if b.why and value > b.upper() else ""
    raise CafeError(f"{flag} {value}: must be {limit_text(flag, low)}{why}.")


def check_all(values: dict[str, int | None], low: dict[str, int] | None = None) -> None:
    """:func:`check` for each ``{flag: value}``."""
    for flag, value in values.items():
        check(flag, value, (low or {}).get(flag))
