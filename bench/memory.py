"""Peak memory of one run in a fresh process: ``python -m bench.memory '<job as JSON>'`` prints JSON.

A job is an extraction (``{"kind": "extract", "root", "cache_dir", "model", "batch_size", "workers",
"store_images", "device"}``) or one training epoch (``{"kind": "train", "cache_dir", "source",
"image_size", "batch_size", "limit", "workers", "online", "device", "run"}``). Reported, in MiB: the peak
resident set (VmHWM) of this process and the largest one among its DataLoader workers, which
counts the pages they share with this process. Linux only (``/proc``); ``ru_maxrss`` would not
do, as it keeps the parent's peak across fork and exec.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import psutil
import torch

from cafe_cache.device import resolve_precision
from cafe_cache.extract.clip import ClipSpec, load_clip

from .workloads import extract_cache, train_config, train_epoch


def peak_rss_mib(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


class WorkerPeaks(threading.Thread):
    """Samples the peak RSS of this process's children (DataLoader workers) while they live."""

    def __init__(self, every_s: float = 0.05):
        super().__init__(daemon=True)
        self.every_s, self.peaks, self.finished = every_s, {}, threading.Event()

    def run(self) -> None:
        me = psutil.Process()
        while not self.finished.wait(self.every_s):
            for child in me.children(recursive=True):
                try:
                    self.peaks[child.pid] = max(self.peaks.get(child.pid, 0.0), peak_rss_mib(child.pid))
                except (FileNotFoundError, ProcessLookupError, RuntimeError):
                    pass  # it ended between listing and reading

    def largest(self) -> float:
        self.finished.set()
        self.join()
        return max(self.peaks.values(), default=0.0)


def run(job: dict) -> dict:
    workers = WorkerPeaks()
    workers.start()
    device = torch.device(job["device"])
    if job["kind"] == "extract":
        clip = load_clip(ClipSpec(model=job["model"], random_weights=True), device)
        report = extract_cache(Path(job["root"]), Path(job["cache_dir"]), clip, device=device,
                               precision=resolve_precision("auto", device), batch_size=job["batch_size"],
                               workers=job["workers"], store_images=job["store_images"])
        done = {"images": report.images, "images_per_s": report.rate}
    else:
        cfg = train_config(Path(job["cache_dir"]), job["source"], image_size=job["image_size"],
                           batch_size=job["batch_size"], workers=job["workers"], device=job["device"],
                           online=job["online"], limit=job["limit"])
        done = {"images_per_s": train_epoch(cfg, Path(job["run"]))}
    return done | {"peak_rss_mib": peak_rss_mib(), "worker_peak_rss_mib": workers.largest()}


if __name__ == "__main__":
    print(json.dumps(run(json.loads(sys.argv[1]))))
