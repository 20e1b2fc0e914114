"""Startup time of the CLI: ``cafe --help`` and the first batch of ``cafe extract``, each in a fresh process.

What a user waits for before anything happens: the imports behind ``--help``, and for an
extraction everything up to its first written batch (imports, reading labels, building CLIP, the
first forward pass). The first batch is seen as the first plain progress line on the redirected
output (``CAFE_PROGRESS_INTERVAL=0`` prints one per batch).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "CAFE_PROGRESS_INTERVAL": "0"}


def help_seconds() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cli.main", "--help"], check=True, capture_output=True, env=_env(), cwd=REPO)
    return time.perf_counter() - t0


def first_batch_seconds(root: Path, cache_dir: Path, model: str, batch_size: int) -> float:
    """Seconds from launching ``cafe extract`` to its first progress line (its first batch written)."""
    cmd = [sys.executable, "-m", "cli.main", "extract", "--dataset", "folder", "--root", str(root), "--model", model,
           "--random-weights", "--batch-size", str(batch_size), "--cache-dir", str(cache_dir), "--force"]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO)
    seconds = None
    try:
        for line in proc.stderr:
            if "img/s" in line and "/" in line.split(":", 1)[-1]:
                seconds = time.perf_counter() - t0
                break
    finally:
        proc.kill()
        proc.wait()
    if seconds is None:
        raise RuntimeError(f"cafe extract printed no progress line: {' '.join(cmd)}")
    return seconds


def startup(root: Path, work: Path, model: str, batch_size: int, repeats: int) -> dict:
    """Median seconds of ``cafe --help`` and of ``cafe extract`` to its first batch, with every run."""
    helps = [help_seconds() for _ in range(repeats)]
    firsts = [first_batch_seconds(root, work / "startup-cache", model, batch_size) for _ in range(repeats)]
    return {"help_seconds": statistics.median(helps), "help_runs": helps,
            "extract_first_batch_seconds": statistics.median(firsts), "extract_first_batch_runs": firsts,
            "clip_model": model, "batch_size": batch_size}
