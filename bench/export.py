"""``cafe export`` and ``--quantize int8`` for CPU deployment: speed, size and top-1 agreement.

The run trained by the benchmark's training section is exported by the library's own ``export_onnx``
(fp32, with its parity check) and quantised by the function ``cafe export --quantize int8`` uses
(:func:`~cafe_cache.predict.onnx_export.quantize_int8`); both files then run in onnxruntime on the
CPU on the same batch of random standardised inputs, with onnxruntime's default threads and with
one thread.  Reported: images/s of each, the int8 speed-up (int8 images/s / fp32 images/s), the
file sizes and the top-1 agreement, on the 32 face crops export checks (the run's images, else generated
faces: :mod:`cafe_cache.predict.check_faces`) and on the benchmark's random inputs.  The rule of
``cafe export``: int8 is kept only with >= 98% agreement on its check; the benchmark says whether that
holds for this run (a random-weights run has near-equal logits, so it often falls short on faces) and
whether the speed-up is real (> 1).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from cafe_cache.predict.check_faces import check_faces
from cafe_cache.predict.onnx_export import (
    MIN_INT8_AGREEMENT,
    QUANTIZE_CHECK_FACES,
    export_onnx,
    quantize_int8,
    top1_agreement,
)

MIB = 2**20


def _session(path: Path, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _rate(session, feeds: dict[str, np.ndarray], repeats: int) -> tuple[float, list[float]]:
    """Median images/s over ``repeats`` runs, after one warm-up."""
    wanted = {i.name for i in session.get_inputs()}
    feeds = {k: v for k, v in feeds.items() if k in wanted}
    session.run(["logits"], feeds)
    n = len(next(iter(feeds.values())))
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        session.run(["logits"], feeds)
        rates.append(n / (time.perf_counter() - t0))
    return float(np.median(rates)), rates


def export_speed(run: Path, work: Path, *, batch: int, repeats: int) -> dict:
    """Both exports of ``run`` and their onnxruntime CPU speed on ``batch`` inputs."""
    files = {"fp32": work / "cafe-fp32.onnx", "int8": work / "cafe-int8.onnx"}
    report = export_onnx(run, files["fp32"])
    quantize_int8(files["fp32"], files["int8"])
    sizes = report.metadata["inputs"]
    g = torch.Generator().manual_seed(0)

    def inputs(n: int) -> tuple[torch.Tensor, ...]:
        return tuple(torch.randn(n, 3, sizes[name], sizes[name], generator=g) for name in ("clip_image", "mask_image"))

    sessions = [_session(files[name], None) for name in ("fp32", "int8")]
    faces = check_faces(run, sizes["clip_image"], sizes["mask_image"], QUANTIZE_CHECK_FACES)
    check = top1_agreement(*sessions, faces.inputs)
    bench_inputs = inputs(batch)
    feeds = {"clip_image": bench_inputs[0].numpy(), "mask_image": bench_inputs[1].numpy()}
    model = str(report.metadata["model"]).removeprefix(str(run)).strip()[1:-1]  # "<run> (cafe, CLIP ...)"
    out: dict = {"model": model, "batch": batch,
                 "file_mib": {name: path.stat().st_size / MIB for name, path in files.items()},
                 "parity_max_abs_diff_fp32": report.max_abs_diff, "check_inputs": len(faces),
                 "check_faces": faces.source,
                 "export_check_agreement": check, "bench_inputs_agreement": top1_agreement(*sessions, bench_inputs)}
    for label, threads in (("default_threads", None), ("1_thread", 1)):
        timed = {name: _rate(_session(path, threads), feeds, repeats) for name, path in files.items()}
        out[label] = {name: {"images_per_s": rate, "runs": runs} for name, (rate, runs) in timed.items()}
        out[label]["int8_speedup"] = timed["int8"][0] / timed["fp32"][0]
    out["min_agreement"] = MIN_INT8_AGREEMENT
    out["export_keeps_int8"] = bool(check >= MIN_INT8_AGREEMENT)
    out["speedup_real"] = bool(min(out[label]["int8_speedup"] for label in ("default_threads", "1_thread")) > 1)
    return out


def main(argv: list[str] | None = None) -> dict:
    """``python -m bench.export``: this section alone on a real-size model (the full ``make bench`` runs it
    on the run of its training section)."""
    import argparse
    import json
    import os
    import shutil
    import tempfile

    from cafe_cache.extract.clip import ClipSpec, load_clip

    from . import images
    from .machine import cpu_name
    from .workloads import extract_cache, train_config, train_epoch

    parser = argparse.ArgumentParser(prog="python -m bench.export", description=main.__doc__.split("\n")[0])
    parser.add_argument("--model", default="ViT-B-32", help="open_clip model (RANDOM weights)")
    parser.add_argument("--image-size", type=int, default=224, help="the run's mask-branch input side")
    parser.add_argument("--batch", type=int, default=16, help="inputs per onnxruntime run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    cpu = torch.device("cpu")
    work = Path(tempfile.mkdtemp(prefix="cafe-bench-export-"))
    try:
        clip = load_clip(ClipSpec(model=args.model, random_weights=True), cpu)
        root = images.write_dataset(work / "raf", "raf", {"train": 1, "test": 1}, 64)
        extract_cache(root, work / "cache", clip, device=cpu, precision="fp32", batch_size=8, workers=0)
        train_epoch(train_config(work / "cache", "raf", image_size=args.image_size, batch_size=7, workers=0,
                                 device="cpu", online=False), work / "run")
        out = export_speed(work / "run", work, batch=args.batch, repeats=args.repeats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out |= {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "load_average_end": os.getloadavg(),
            "weights": "RANDOM (CLIP and backbone): speed does not depend on weight values"}
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
