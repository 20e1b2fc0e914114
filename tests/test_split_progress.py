"""Issue 26 (26b): progress rate and ETA per split from that split's own start, log lines at the
interval (not per batch), and redirected output not hard-wrapped at 80 columns. Time is injected."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cafe_cache.progress import PlainProgress, split_bars

REPO = Path(__file__).resolve().parents[1]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_later_split_has_its_own_rate_and_eta():
    clock, lines = Clock(), []
    bar = PlainProgress(write=lines.append, interval=10, clock=clock)
    on_plan, on_batch = split_bars(bar, clock=clock)
    on_plan({"train": 1000, "test": 300})
    for _ in range(10):  # train: fast, 100 images per second for 10 s
        clock.now += 1
        on_batch("train", 100)
    clock.now += 100  # test: a slow split, 64 images in 100 s
    on_batch("test", 64)
    test = [line for line in lines if line.startswith("test: ")]
    assert test and test[-1].startswith("test: 64/300 (21%)  0.6 img/s  elapsed 1:40"), lines
    assert test[-1].endswith("ETA 6:09"), test[-1]  # (300 - 64) / 0.64 s, not from the job's 110 s
    assert bar.tasks[1].fields["rate"] == "0.6 img/s"


def test_log_lines_come_at_the_interval_not_per_batch():
    clock, lines = Clock(), []
    bar = PlainProgress(write=lines.append, interval=10, clock=clock)
    on_plan, on_batch = split_bars(bar, clock=clock)
    on_plan({"train": 400, "test": 400})
    for split in ("train", "test"):
        for _ in range(100):  # a batch every 0.5 s: 50 s per split
            clock.now += 0.5
            on_batch(split, 4)
    for split in ("train", "test"):
        mine = [line for line in lines if line.startswith(split + ": ")]
        assert 5 <= len(mine) <= 6, mine  # every 10 s of 50 s, and the final line; never one per batch
        assert mine[-1].startswith(f"{split}: 400/400 (100%)  8.0 img/s  elapsed 0:50"), mine[-1]


def test_a_task_added_stopped_starts_its_clock_when_started():
    clock, lines = Clock(), []
    bar = PlainProgress(write=lines.append, interval=0, clock=clock)
    task = bar.add_task("eval", total=10, start=False)
    clock.now += 500  # waiting for its turn
    bar.start_task(task)
    clock.now += 2
    bar.advance(task, 10)
    assert lines == ["eval: 10/10 (100%)  5.0 img/s  elapsed 0:02"]


def test_redirected_output_is_not_wrapped_at_80_columns(tmp_path):
    long = str(tmp_path / ("a-folder-with-a-long-name-" * 6) / "cache")
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | {"PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", "from cli.common import console, out\nfrom rich.table import "
                           "Table\nimport sys\nt = Table('target', 'path')\nt.add_row('rafdb', sys.argv[1])\n"
                           "out.print(t)\nconsole.print('written: ' + sys.argv[1])", long],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert any(long in line for line in proc.stdout.splitlines()), proc.stdout  # the table row whole
    assert f"written: {long}" in proc.stderr.splitlines(), proc.stderr


def test_terminal_bars_time_each_split_from_its_own_start():
    import io

    from rich.console import Console
    from rich.progress import Progress

    clock = Clock()
    bar = Progress(console=Console(file=io.StringIO()), get_time=clock, auto_refresh=False)
    on_plan, on_batch = split_bars(bar, clock=clock)
    on_plan({"train": 100, "test": 64})
    assert bar.tasks[1].start_time is None  # waits for its turn
    clock.now += 1000
    on_batch("train", 100)
    clock.now += 100
    on_batch("test", 64)
    assert bar.tasks[0].finished_time == 1000 and bar.tasks[1].elapsed == 100  # what TimeElapsedColumn shows
    assert bar.tasks[1].fields["rate"] == "0.6 img/s"
