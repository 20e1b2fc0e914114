"""``cafe export`` and ``--quantize int8`` for CPU deployment: speed, size and top-1 agreement.

The run trained by the benchmark's training section is exported twice through the library's own
``export_onnx`` (each file passes export's parity check, the int8 one its agreement check), then
both files run in onnxruntime on the CPU on the same batch of random standardised inputs, with
onnxruntime's default threads and with one thread.  Reported: images/s of each, the int8
speed-up (int8 images/s / fp32 images/s), the file sizes, export's own agreement figure and the
agreement on the benchmark's inputs.  The issue's rule: keep int8 only with >= 98% agreement and
a real speed-up (> 1).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from cafe_cache.predict.onnx_export import MIN_INT8_AGREEMENT, export_onnx

MIB = 2**20


def _session(path: Path, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _rate(session, feeds: dict[str, np.ndarray], repeats: int) -> tuple[float, list[float], np.ndarray]:
    """Median images/s over ``repeats`` runs (after one warm-up) and the logits."""
    wanted = {i.name for i in session.get_inputs()}
    feeds = {k: v for k, v in feeds.items() if k in wanted}
    logits = session.run(["logits"], feeds)[0]
    n = len(next(iter(feeds.values())))
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        session.run(["logits"], feeds)
        rates.append(n / (time.perf_counter() - t0))
    return float(np.median(rates)), rates, logits


def export_speed(run: Path, work: Path, *, batch: int, repeats: int) -> dict:
    """Both exports of ``run`` and their onnxruntime CPU speed on ``batch`` inputs."""
    files = {"fp32": work / "cafe-fp32.onnx", "int8": work / "cafe-int8.onnx"}
    reports = {name: export_onnx(run, path, quantize=None if name == "fp32" else "int8")
               for name, path in files.items()}
    sizes = reports["fp32"].metadata["inputs"]
    g = torch.Generator().manual_seed(1)
    feeds = {name: torch.randn(batch, 3, side, side, generator=g).numpy() for name, side in sizes.items()}
    out: dict = {"model": reports["fp32"].metadata["model"], "batch": batch,
                 "file_mib": {name: path.stat().st_size / MIB for name, path in files.items()},
                 "parity_max_abs_diff_fp32": reports["fp32"].max_abs_diff,
                 "export_check_agreement": reports["int8"].int8_agreement}
    for label, threads in (("default_threads", None), ("1_thread", 1)):
        timed = {name: _rate(_session(path, threads), feeds, repeats) for name, path in files.items()}
        out[label] = {name: {"images_per_s": rate, "runs": runs} for name, (rate, runs, _) in timed.items()}
        out[label]["int8_speedup"] = timed["int8"][0] / timed["fp32"][0]
    top = [out_logits.argmax(1) for *_, out_logits in timed.values()]
    out["bench_inputs_agreement"] = float((top[0] == top[1]).mean())
    out["min_agreement"] = MIN_INT8_AGREEMENT
    out["keep_int8"] = bool(out["export_check_agreement"] >= MIN_INT8_AGREEMENT
                            and out["1_thread"]["int8_speedup"] > 1 and out["default_threads"]["int8_speedup"] > 1)
    return out
