"""Progress a person can watch in a log file, and the speed hint printed when a long job starts.

On a terminal the CLI draws Rich bars. Redirected output (``> log``, nohup, a cluster job, CI) gets
no live bars from Rich, so :class:`PlainProgress` prints a plain line per task at a steady interval
instead: done/total, percent, rate, elapsed and ETA. It offers the few ``rich.progress.Progress``
methods the commands use (``add_task``, ``advance``, ``update``, ``tasks``), so a command drives
either one the same way. ``CAFE_PROGRESS_INTERVAL`` (seconds, default 10) sets the interval.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

INTERVAL_ENV = "CAFE_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 10.0


def interval_from_env() -> float:
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL)))
    except ValueError:
        return DEFAULT_INTERVAL


def clock(seconds: float) -> str:
    """``75`` -> ``1:15``; ``3725`` -> ``1:02:05``."""
    s = int(round(max(0.0, seconds)))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def status_line(description: str, done: int, total: int | None, seconds: float, unit: str = "img") -> str:
    """``train: 120/1,965 (6%)  2.9 img/s  elapsed 0:41  ETA 10:35``."""
    rate = done / seconds if seconds > 0 else 0.0
    count = f"{done:,}/{total:,} ({100 * done / total:.0f}%)" if total else f"{done:,}"
    text = f"{description}: {count}  " + (f"{rate:,.1f} {unit}/s" if rate else f"- {unit}/s")
    text += f"  elapsed {clock(seconds)}"
    if total and rate and done < total:
        text += f"  ETA {clock((total - done) / rate)}"
    return text


def rate_text(done: int, seconds: float, unit: str = "img") -> str:
    """The rate column of a progress bar: ``12.5 img/s``, or ``- img/s`` before anything is done."""
    return f"{done / seconds:,.1f} {unit}/s" if seconds > 0 and done else f"- {unit}/s"


@dataclass
class PlainTask:
    description: str
    total: int | None
    started: float | None  # None until started: a task's rate and ETA count from its own start
    completed: int = 0
    last_line: float = 0.0
    finished: bool = False
    fields: dict[str, Any] = field(default_factory=dict)


class PlainProgress:
    """Line-per-interval progress for a non-terminal; see the module docstring. ``clock`` (seconds) is
    ``time.perf_counter`` unless a test injects its own."""

    def __init__(self, write: Callable[[str], None] | None = None, interval: float | None = None, unit: str = "img",
                 clock: Callable[[], float] = time.perf_counter):
        self.write = write or (lambda s: print(s, file=sys.stderr, flush=True))
        self.interval = interval_from_env() if interval is None else interval
        self.unit = unit
        self.clock = clock
        self.tasks: list[PlainTask] = []

    def add_task(self, description: str, total: int | None = None, start: bool = True, **fields: Any) -> int:
        """A task, as ``rich.progress.Progress.add_task``: ``start=False`` leaves its clock stopped until
        :meth:`start_task` (or its first advance)."""
        now = self.clock()
        self.tasks.append(PlainTask(description, total, now if start else None, last_line=now, fields=fields))
        return len(self.tasks) - 1

    def start_task(self, task: int) -> None:
        t = self.tasks[task]
        if t.started is None:
            t.started = t.last_line = self.clock()

    def update(self, task: int, *, total: int | None = None, completed: int | None = None, **fields: Any) -> None:
        t = self.tasks[task]
        if total is not None:
            t.total = total
        if completed is not None:
            t.completed = completed
        t.fields.update(fields)
        if completed is not None:  # a rate field alone follows an advance: no second line
            self._maybe_line(t)

    def advance(self, task: int, n: float = 1) -> None:
        t = self.tasks[task]
        t.completed += int(n)
        self._maybe_line(t)

    def _maybe_line(self, t: PlainTask) -> None:
        now = self.clock()
        if t.started is None:
            t.started = t.last_line = now
        done = bool(t.total) and t.completed >= t.total
        if t.finished or not (done or now - t.last_line >= self.interval):
            return
        t.last_line, t.finished = now, done
        self.write(status_line(t.description, t.completed, t.total, now - t.started, self.unit))

    def __enter__(self) -> PlainProgress:
        return self

    def __exit__(self, *exc) -> None:
        pass


class SpeedHint:
    """Says once, after the first ``batches`` batches, the measured rate and the ETA of the whole job.

    The first batch carries warm-up cost (lazy initialisation, caches), so the rate is timed from
    the end of the first batch on.
    """

    def __init__(self, total: int, say: Callable[[str], None], *, batches: int = 3, unit: str = "img",
                 clock: Callable[[], float] = time.perf_counter):
        self.total, self.say, self.batches, self.unit, self.clock = total, say, batches, unit, clock
        self.seen = self.done = 0
        self.t_first: float | None = None
        self.n_first = 0

    def batch(self, n: int) -> None:
        self.seen += 1
        self.done += n
        if self.seen == 1:
            self.t_first, self.n_first = self.clock(), self.done
            return
        if self.seen != self.batches or self.t_first is None:
            return
        seconds = self.clock() - self.t_first
        rate = (self.done - self.n_first) / seconds if seconds > 0 else 0.0
        if rate > 0:
            left = max(0, self.total - self.done)
            self.say(f"measured {rate:,.1f} {self.unit}/s over the first batches: "
                     f"{self.total:,} {self.unit} take about {clock(self.total / rate)} (ETA {clock(left / rate)})")


def epoch_bars(bar: Any, epochs: int, say: Callable[[str], None]
               ) -> tuple[Callable[[int, int], None], Callable[[int, int], None]]:
    """(on_epoch, on_step) of training: one progress task per epoch with its known total, so its time stops
    when the epoch's steps end; after the first epoch's first batches, the measured rate and the run's ETA
    (``say``)."""
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


def split_bars(bar: Any, suffix: str = "", say: Callable[[str], None] | None = None,
               clock: Callable[[], float] = time.perf_counter
               ) -> tuple[Callable[[dict[str, int]], None], Callable[[str, int], None]]:
    """(on_plan(todo), on_batch(split, n)) of an extraction: one progress task per split (named ``split +
    suffix``), splits done one after the other in ``todo``'s order. Each task's clock starts when the split
    starts (the previous split's last batch ended), so its rate, elapsed time and ETA are the split's own,
    not the whole job's; after the first batches ``say`` gets the measured rate and the ETA of the job."""
    tasks: dict[str, int] = {}
    order: list[str] = []
    hint: list[SpeedHint] = []
    started: dict[str, float] = {}

    def start(split: str) -> None:
        started[split] = clock()
        bar.start_task(tasks[split])

    def on_plan(todo: dict[str, int]) -> None:
        order.extend(s for s, n in todo.items() if n)
        tasks.update({s: bar.add_task(s + suffix, total=todo[s], start=False, rate="") for s in order})
        if order:
            start(order[0])
        if say:
            hint.append(SpeedHint(sum(todo.values()), say, clock=clock))

    def on_batch(split: str, n: int) -> None:
        if hint:
            hint[0].batch(n)
        if split not in started:  # splits out of the planned order: this one started with its first batch
            start(split)
        task = tasks[split]
        bar.advance(task, n)
        done = bar.tasks[task].completed
        bar.update(task, rate=rate_text(done, clock() - started[split]))
        following = order[order.index(split) + 1:] if split in order else []
        if done >= (bar.tasks[task].total or 0) and following and following[0] not in started:
            start(following[0])

    return on_plan, on_batch


def named_bars(bar: Any, prefix: str) -> tuple[Callable[[str, int], None], Callable[[int], None]]:
    """(on_start(name, total), on_batch(n)): one progress task ``<prefix> <name>`` per named job in turn
    (an evaluation per target), with its rate."""
    state: dict = {}

    def on_start(name: str, n: int) -> None:
        state.update(task=bar.add_task(f"{prefix} {name}", total=n, rate=""), t0=time.perf_counter())

    def on_batch(n: int) -> None:
        bar.advance(state["task"], n)
        bar.update(state["task"], rate=rate_text(bar.tasks[state["task"]].completed, time.perf_counter() - state["t0"]))

    return on_start, on_batch


def device_hint(device: Any, precision: str) -> str:
    """``cpu, fp32, 2 threads`` (the torch thread count on the CPU; the GPU's name on CUDA)."""
    import torch

    kind = getattr(device, "type", str(device))
    if kind == "cuda":
        return f"{torch.cuda.get_device_name(device)}, {precision}"
    return f"{kind}, {precision}, {torch.get_num_threads()} threads"
