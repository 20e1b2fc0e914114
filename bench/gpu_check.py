"""``make gpu-check``: one prepared run that proves cafe's CUDA paths and measures the GPU.

    python -m bench.gpu_check [--device auto|cuda|cpu] [--quick] [--out bench-results]

Built for the few minutes a GPU machine is lent (one H200, 16 cores: under 6 minutes with start-up).
Data are generated (:mod:`bench.images`, :mod:`cafe_cache.synth`), weights are RANDOM.

1. extract: ViT-B-32, fp16 autocast, default workers: images/s end to end (the library's
   ``extract`` writing the cache) and model only (batches made beforehand), their ratio; peak GPU
   memory; the largest relative error of fp16 features against fp32 on the same images.
2. train: one epoch cached and one ``--online-clip``, fp32 and bf16: images/s, the epoch-time ratio
   cached / online, and the share of a cached epoch spent computing (epoch rate / step-only rate).
3. torchrun: ``--nproc-per-node`` = the visible GPUs (NCCL for training's tensors): a short sharded
   extraction, compared with a one-process cache, and one training epoch. With one GPU (torchrun
   with one process joins no group, and NCCL takes one GPU per rank) the same launch runs with 2 CPU
   processes over gloo, and NCCL is checked by a one-rank ``cpu:gloo,cuda:nccl`` group on the GPU
   (init, an all_reduce, an object gather); on a CPU device the step is skipped unless ``--cpu-torchrun``.
4. predict: generated photos through MTCNN (on the device) and the trained run; the run exported
   to ONNX and run by onnxruntime with the CUDA provider when it has one (else CPU, said so).
5. environment: device, driver, torch/CUDA/cuDNN/onnxruntime versions.

Every step runs on its own: ``ran``, ``skipped`` (reason) or ``failed`` (one-line error), and the
run goes on. Parts that need a GPU are reported ``skipped`` on the CPU, never filled in.
``--device cpu --quick`` is the same script with tiny sizes and the tiny CLIP (``cafe-tiny``): the
test suite runs it so the script keeps working where there is no GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from cafe_cache.device import default_workers, pick_device
from cafe_cache.extract.clip import ClipSpec, LoadedClip, load_clip
from cafe_cache.extract.paths import cache_path
from cafe_cache.extract.reader import FeatureCache
from cafe_cache.history import read_history
from cafe_cache.run.folder import RunFolder

from . import images
from .machine import cpu_name
from .run import measure, rel_error
from .workloads import extract_cache, loading_pass, model_pass, sync, train_config, train_epoch, train_step

REPO = Path(__file__).resolve().parents[1]
TARGET_SECONDS = 360  # the whole run, start-up included, on one H200
EXTRACT_PRECISION = "fp16"
TRAIN_PRECISIONS = ("fp32", "bf16")
STATUSES = ("ran", "skipped", "failed")


@dataclass(frozen=True)
class Sizes:
    clip_model: str
    raf_size: int  # side of the generated RAF-like JPEGs
    image_size: int  # stage-two input side
    batch_size: int  # extraction and training (torchrun: the global batch)
    train_per_class: int  # RAF-like training images per class (7 classes)
    test_per_class: int
    ddp_per_class: int  # images per class of the torchrun step's small dataset
    photos: int  # generated photos for predict
    photo_size: int
    step_repeats: int  # stage-two steps timed on tensors without loading


FULL = Sizes(clip_model="ViT-B-32", raf_size=100, image_size=224, batch_size=64, train_per_class=256,
             test_per_class=8, ddp_per_class=16, photos=16, photo_size=320, step_repeats=10)
QUICK = Sizes(clip_model="cafe-tiny", raf_size=24, image_size=32, batch_size=8, train_per_class=2,
              test_per_class=1, ddp_per_class=2, photos=2, photo_size=96, step_repeats=1)


class Skip(Exception):
    """A step (or part) that cannot run here; the message says why."""


def skipped(reason: str) -> dict[str, str]:
    return {"status": "skipped", "reason": reason}


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return f"{type(e).__name__}: {text[:300]}"


def run_step(name: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``fn``'s results with ``status`` and ``seconds``; a failure becomes one line, and the run goes on."""
    print(f"{name}...", end="", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        out = {"status": "ran", **fn()}
    except Skip as e:
        out = skipped(str(e))
    except Exception as e:  # noqa: BLE001 - any failure is reported and the other steps still run
        out = {"status": "failed", "error": one_line(e), "traceback": traceback.format_exc()[-3000:]}
    out["seconds"] = time.perf_counter() - t0
    print(f" {out['status']} ({out['seconds']:.0f} s)", file=sys.stderr)
    return out


def gpu_only(device: torch.device, what: str) -> None:
    if device.type != "cuda":
        raise Skip(f"{what} needs a CUDA device; this run is on {device.type}")


def part(fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """One GPU-only measure inside a step: its values, or why it was skipped."""
    try:
        return {"status": "ran", **fn()}
    except Skip as e:
        return skipped(str(e))


# -- 1. extraction ------------------------------------------------------------------------------

def peak_memory(device: torch.device) -> dict[str, Any]:
    gpu_only(device, "peak GPU memory (torch.cuda.max_memory_allocated)")
    return {"mib": torch.cuda.max_memory_allocated(device) / 2**20}


def extract_check(s: Sizes, clip: LoadedClip, raf: Path, work: Path) -> dict[str, Any]:
    device = next(clip.model.parameters()).device
    workers = default_workers(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _, batches = loading_pass(raf, clip.image_size, batch_size=s.batch_size, workers=workers)
    batches = [b.to(device) for b in batches]
    kw = dict(device=device, precision=EXTRACT_PRECISION, batch_size=s.batch_size, workers=workers)
    runs = measure({"end_to_end": lambda: extract_cache(raf, work / "cache", clip, **kw).rate,
                    "model_only": lambda: model_pass(clip, batches, precision=EXTRACT_PRECISION)}, repeats=1)
    return {"device": str(device), "clip_model": clip.info.label, "precision": EXTRACT_PRECISION,
            "workers": workers, "images": sum(len(b) for b in batches), "batch_size": s.batch_size,
            "end_to_end_images_per_s": runs["end_to_end"]["images_per_s"],
            "model_only_images_per_s": runs["model_only"]["images_per_s"],
            "end_to_end_over_model_only": runs["end_to_end"]["images_per_s"] / runs["model_only"]["images_per_s"],
            "fp16_max_rel_error_vs_fp32": rel_error(clip, batches[0], "fp16"),
            "peak_gpu_memory": part(lambda: peak_memory(device))}


# -- 2. training --------------------------------------------------------------------------------

def step_rate(s: Sizes, clip: LoadedClip, precision: str) -> float:
    """Images/s of cached stage-two steps on tensors already on the device (no loading)."""
    from cafe_cache.model.cafe import CAFEModel
    from cafe_cache.model.config import ModelConfig

    device = next(clip.model.parameters()).device
    layout = torch.channels_last if precision != "fp32" else torch.contiguous_format
    model = CAFEModel(ModelConfig("resnet18", clip_dim=clip.embed_dim)).to(device, memory_format=layout).train()
    x = torch.rand(s.batch_size, 3, s.image_size, s.image_size, device=device).contiguous(memory_format=layout)
    feats = torch.randn(s.batch_size, clip.embed_dim, device=device)
    labels = torch.randint(0, 7, (s.batch_size,), device=device)
    train_step(model, x, feats, labels, precision=precision)  # warm-up (cuDNN picks its kernels)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(s.step_repeats):
        train_step(model, x, feats, labels, precision=precision)
    return s.step_repeats * s.batch_size / (time.perf_counter() - t0)


def train_check(s: Sizes, clip: LoadedClip, work: Path) -> dict[str, Any]:
    device = next(clip.model.parameters()).device
    workers = default_workers(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    out: dict[str, Any] = {"device": str(device), "backbone": "resnet18", "batch_size": s.batch_size,
                           "image_size": s.image_size, "workers": workers, "images_per_epoch": 7 * s.train_per_class}
    for precision in TRAIN_PRECISIONS:
        rates = {}
        for mode, online in (("cached", False), ("online_clip", True)):
            cfg = train_config(work / "cache", "raf", image_size=s.image_size, batch_size=s.batch_size,
                               workers=workers, device=str(device), online=online, precision=precision)
            rates[mode] = train_epoch(cfg, work / f"run-{mode}-{precision}")
        step = step_rate(s, clip, precision)
        out[precision] = {"cached_images_per_s": rates["cached"], "online_clip_images_per_s": rates["online_clip"],
                          "epoch_time_cached_over_online": rates["online_clip"] / rates["cached"],
                          "cached_step_only_images_per_s": step,
                          # the share of a cached epoch the mask branch computes (the rest: waiting for data)
                          "cached_compute_share": min(1.0, rates["cached"] / step)}
    out["peak_gpu_memory"] = part(lambda: peak_memory(device))
    return out


# -- 3. torchrun --------------------------------------------------------------------------------

def error_line(output: str) -> str:
    """Why a cafe command failed: its first ``error`` line (cafe's one-line errors), else the last
    exception line (not torchrun's ChildFailedError summary), else the last line."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error")]
    exceptions = [ln for ln in lines if "Error" in ln.split(":")[0] and "ChildFailedError" not in ln]
    return (errors[:1] or exceptions[-1:] or lines[-1:] or ["no output"])[0]


def launch(cmd: list[str], what: str, timeout: float = 240) -> str:
    """Run ``cmd`` from the repository; its output, or a RuntimeError naming ``what`` and why."""
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode:
        raise RuntimeError(f"{what} exited {proc.returncode}: {error_line(proc.stdout + proc.stderr)}")
    return proc.stdout


def cafe(*args: str) -> str:
    return launch([sys.executable, "-m", "cli", *args], f"cafe {args[0]}")


def torchrun(nproc: int, *args: str) -> str:
    return launch([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                   "-m", "cli", *args], f"torchrun --nproc-per-node {nproc} cafe {args[0]}")


def max_feature_diff(a: Path, b: Path) -> float:
    ca, cb = FeatureCache(a), FeatureCache(b)
    worst = 0.0
    for split in ("train", "test"):
        fa, fb = ca.load(split).features, cb.load(split).features
        if fa.shape != fb.shape:
            raise RuntimeError(f"split {split}: sharded cache has shape {fa.shape}, one-process {fb.shape}")
        worst = max(worst, float(np.abs(fa.astype(np.float32) - fb.astype(np.float32)).max()))
    return worst


def nccl_one_process(device: torch.device) -> dict[str, Any]:
    """With one GPU, NCCL itself: a one-rank group with cafe's backends (``cpu:gloo,cuda:nccl``, as
    :func:`cafe_cache.distributed.process_group` joins), an all_reduce on the GPU and an object
    collective. cafe joins no group for one process, and NCCL refuses two ranks on one GPU."""
    import torch.distributed as dist

    gpu_only(device, "NCCL")
    if not dist.is_nccl_available():
        raise Skip("this torch build has no NCCL")
    torch.cuda.set_device(device)
    dist.init_process_group("cpu:gloo,cuda:nccl", store=dist.HashStore(), rank=0, world_size=1)
    try:
        tensor = torch.arange(4.0, device=device)
        dist.all_reduce(tensor)
        box: list[Any] = [None]
        dist.all_gather_object(box, {"rank": 0})
        ok = tensor.cpu().tolist() == [0.0, 1.0, 2.0, 3.0] and box == [{"rank": 0}]
    finally:
        dist.destroy_process_group()
    if not ok:
        raise RuntimeError(f"one-rank NCCL all_reduce gave {tensor.cpu().tolist()}, object gather {box}")
    return {"world_size": 1, "backend": "cpu:gloo,cuda:nccl",
            "nccl_version": ".".join(map(str, torch.cuda.nccl.version()))}


def nccl_part(device: torch.device, gpus: int, nproc: int) -> dict[str, Any]:
    """How NCCL was exercised: by the launches (2+ GPUs), by a one-rank group (1 GPU), or not (CPU)."""
    if gpus >= 2:
        return {"status": "ran", "by": f"the torchrun launches ({nproc} GPUs)"}
    if device.type != "cuda":
        return skipped(f"NCCL needs CUDA GPUs; this run is on {device.type} (the launches ran {nproc} CPU "
                       "processes over gloo)")
    by = "a one-rank group on the only GPU (the launches ran 2 CPU processes over gloo: NCCL needs a GPU per rank)"
    try:
        return {**part(lambda: nccl_one_process(device)), "by": by}
    except Exception as e:  # noqa: BLE001 - reported; the launches' results are kept
        return {"status": "failed", "error": one_line(e), "by": by}


def torchrun_check(s: Sizes, device: torch.device, work: Path, cpu_torchrun: bool = False) -> dict[str, Any]:
    if device.type != "cuda" and not cpu_torchrun:
        raise Skip("torchrun with NCCL needs CUDA GPUs (the same launch over gloo on 2 CPU processes: "
                   "--cpu-torchrun; tests/test_distributed.py covers gloo)")
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    nccl = gpus >= 2
    nproc, dev = (gpus, "cuda") if nccl else (2, "cpu")
    root = images.write_dataset(work / "ddp-data", "raf", {"train": s.ddp_per_class, "test": 1}, s.raf_size)
    extract = ["extract", "--dataset", "folder", "--root", str(root), "--name", "raf", "--model", s.clip_model,
               "--random-weights", "--device", dev, "--batch-size", str(s.batch_size // 2), "--force"]
    t0 = time.perf_counter()
    torchrun(nproc, *extract, "--cache-dir", str(work / "ddp-sharded"))
    extract_s = time.perf_counter() - t0
    cafe(*extract, "--cache-dir", str(work / "ddp-single"))
    diff = max_feature_diff(cache_path(work / "ddp-sharded", "raf"), cache_path(work / "ddp-single", "raf"))
    if diff > 1e-3:
        raise RuntimeError(f"the {nproc}-rank cache differs from the one-process cache by up to {diff:.3g}")
    batch = max(nproc, s.batch_size // nproc * nproc)
    t0 = time.perf_counter()
    torchrun(nproc, "train", "--source", "raf", "--cache-dir", str(work / "ddp-sharded"), "--out",
             str(work / "ddp-run"), "--backbone-weights", "none", "--epochs", "1", "--image-size", str(s.image_size),
             "--batch-size", str(batch), "--device", dev)
    [epoch] = read_history(RunFolder(work / "ddp-run").metrics)
    return {"nproc_per_node": nproc, "device": dev, "backend": "nccl (tensors) + gloo (objects)" if nccl else "gloo",
            "visible_gpus": gpus, "images": 7 * (s.ddp_per_class + 1),
            "extract_seconds_with_launch": extract_s, "sharded_vs_single_max_abs_diff": diff,
            "sharded_equals_single": diff == 0.0,
            "train_epoch_seconds_with_launch": time.perf_counter() - t0, "train_images_per_s": epoch.images_per_s,
            "nccl": nccl_part(device, gpus, nproc)}


# -- 4. predict ---------------------------------------------------------------------------------

def write_photos(folder: Path, s: Sizes) -> list[Path]:
    """Generated photos: a synthetic face (cafe_cache.synth) in a larger scene."""
    from PIL import Image

    from cafe_cache import synth

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(s.photos):
        rng = np.random.default_rng([7, i])
        face = synth.render(i % 7, "color", s.photo_size // 2, rng)
        photo = Image.new("RGB", (s.photo_size, s.photo_size), tuple(int(v) for v in rng.integers(0, 255, 3)))
        photo.paste(face, (s.photo_size // 4, s.photo_size // 4))
        paths.append(folder / f"photo-{i:02d}.jpg")
        photo.save(paths[-1], quality=92)
    return paths


def why_onnx_cpu(device: torch.device, providers: list[str]) -> str:
    if device.type != "cuda":
        return "this run is on the CPU"
    if "CUDAExecutionProvider" in providers:
        return "onnxruntime's CUDAExecutionProvider is installed but did not load (see onnxruntime's warnings)"
    return f"onnxruntime has no CUDAExecutionProvider (available: {', '.join(providers)}; pip install onnxruntime-gpu)"


def predict_check(s: Sizes, device: torch.device, work: Path) -> dict[str, Any]:
    from PIL import Image

    from cafe_cache.predict.faces import MtcnnDetector, align_face, mtcnn_available
    from cafe_cache.predict.infer import CROP_SIZE, Predictor
    from cafe_cache.predict.onnx_export import OnnxPredictor, export_onnx

    run = work / "run-cached-fp32"
    if not RunFolder(run).config.is_file():
        raise Skip("no trained run: the train step did not finish")
    if not mtcnn_available():
        raise Skip("facenet-pytorch is not installed (pip install --no-deps facenet-pytorch==2.6.0)")
    photos = [Image.open(p).convert("RGB") for p in write_photos(work / "photos", s)]
    detector = MtcnnDetector(str(device))
    t0 = time.perf_counter()
    found = detector.detect(photos)
    detect_s = time.perf_counter() - t0
    # faces MTCNN found, else the photos' centres as crops: the predictor runs either way
    crops = [align_face(p, f, CROP_SIZE) for p, faces in zip(photos, found) for f in faces] or \
        [p.crop((s.photo_size // 4,) * 2 + (3 * s.photo_size // 4,) * 2).resize((CROP_SIZE,) * 2) for p in photos]
    predictor = Predictor.from_run(run, device=str(device))
    predictor.predict_faces(crops)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    torch_probs = predictor.predict_faces(crops)
    torch_s = time.perf_counter() - t0
    report = export_onnx(run, work / "model.onnx")
    onnx = OnnxPredictor(report.path, device="cuda" if device.type == "cuda" else "cpu")
    onnx.predict_faces(crops)  # warm-up
    t0 = time.perf_counter()
    onnx_probs = onnx.predict_faces(crops)
    onnx_s = time.perf_counter() - t0
    import onnxruntime as ort

    providers = ort.get_available_providers()
    cuda_provider = onnx.runs_on.endswith("CUDA")
    return {"mtcnn_device": str(detector._mtcnn.device), "photos": len(photos),
            "faces_found": sum(len(f) for f in found), "crops_predicted": len(crops),
            "crops_are": "MTCNN faces" if any(found) else "photo centres (MTCNN found no face)",
            "mtcnn_images_per_s": len(photos) / detect_s, "predictor_device": predictor.runs_on,
            "predictor_faces_per_s": len(crops) / torch_s, "onnx_export_parity_max_abs_logit_diff": report.max_abs_diff,
            "onnx_runs_on": onnx.runs_on, "onnx_faces_per_s": len(crops) / onnx_s,
            "onnx_vs_torch_max_abs_prob_diff": float(np.abs(onnx_probs - torch_probs).max()),
            "mtcnn_on_cuda": {"status": "ran"} if detector._mtcnn.device.type == "cuda"
            else skipped(f"MTCNN ran on {detector._mtcnn.device.type}: no CUDA device in this run"),
            "onnx_cuda_provider": {"status": "ran"} if cuda_provider else skipped(
                "ran with onnxruntime's CPU provider: " + why_onnx_cpu(device, providers))}


# -- 5. environment -----------------------------------------------------------------------------

def nvidia_driver() -> str:
    if not shutil.which("nvidia-smi"):
        raise Skip("nvidia-smi not found")
    out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                         text=True, timeout=30)
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else "unknown"


def cuda_info(device: torch.device) -> dict[str, Any]:
    gpu_only(device, "GPU name, driver and CUDA versions")
    props = torch.cuda.get_device_properties(device)
    return {"name": props.name, "memory_gib": props.total_memory / 2**30, "capability": f"{props.major}.{props.minor}",
            "visible_gpus": torch.cuda.device_count(), "driver": part(lambda: {"version": nvidia_driver()}),
            "cuda_runtime": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "bf16_supported": torch.cuda.is_bf16_supported()}


def environment_check(device: torch.device) -> dict[str, Any]:
    import onnxruntime as ort

    from cafe_cache.predict.faces import mtcnn_available

    return {"device": str(device), "torch": torch.__version__, "python": platform.python_version(),
            "cpus": os.cpu_count(), "cpu": cpu_name(),
            "onnxruntime": ort.__version__, "onnxruntime_providers": ort.get_available_providers(),
            "facenet_pytorch": mtcnn_available(), "cuda": part(lambda: cuda_info(device))}


# -- report -------------------------------------------------------------------------------------

def highlights(name: str, step: dict[str, Any]) -> str:
    """One cell of the table: the step's main figures, its skip reason or its error."""
    if step["status"] != "ran":
        return step.get("reason") or step.get("error", "")

    def sub(d: dict[str, Any]) -> str:
        return {"ran": "ok"}.get(d["status"], d["status"])

    if name == "extract":
        mem = step["peak_gpu_memory"]
        return (f"{step['end_to_end_images_per_s']:.0f} img/s end to end, {step['model_only_images_per_s']:.0f} model "
                f"only (ratio {step['end_to_end_over_model_only']:.2f}); fp16 rel. error "
                f"{step['fp16_max_rel_error_vs_fp32']:.1e}; peak GPU memory "
                + (f"{mem['mib']:.0f} MiB" if mem["status"] == "ran" else "skipped"))
    if name == "train":
        return "; ".join(f"{p}: cached {step[p]['cached_images_per_s']:.0f} / online "
                         f"{step[p]['online_clip_images_per_s']:.0f} img/s, time ratio "
                         f"{step[p]['epoch_time_cached_over_online']:.2f}, compute share "
                         f"{step[p]['cached_compute_share']:.0%}" for p in TRAIN_PRECISIONS)
    if name == "torchrun":
        return (f"{step['nproc_per_node']} x {step['device']} ({step['backend']}); sharded == single: "
                f"{step['sharded_equals_single']} (max diff {step['sharded_vs_single_max_abs_diff']:.1e}); "
                f"train {step['train_images_per_s']:.0f} img/s; NCCL {sub(step['nccl'])}")
    if name == "predict":
        return (f"MTCNN on {step['mtcnn_device']}: {step['faces_found']} faces in {step['photos']} photos; "
                f"{step['predictor_faces_per_s']:.0f} faces/s torch, {step['onnx_faces_per_s']:.0f} ONNX "
                f"({step['onnx_runs_on']})")
    cuda = step["cuda"]
    return (f"{cuda['name']}, driver {cuda['driver'].get('version', 'skipped')}, CUDA {cuda['cuda_runtime']}"
            if cuda["status"] == "ran" else f"{step['device']} ({step['cpu']}, {step['cpus']} CPUs)") + \
        f"; torch {step['torch']}, onnxruntime {step['onnxruntime']}"


def show(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    meta = result["meta"]
    table = Table(title=f"cafe gpu-check on {meta['device']} ({meta['process_seconds']:.0f} s with start-up; "
                        f"{meta['weights']})")
    for col in ("step", "status", "seconds", "result"):
        table.add_column(col)
    colour = {"ran": "green", "skipped": "yellow", "failed": "red"}
    for name, step in result["steps"].items():
        table.add_row(name, f"[{colour[step['status']]}]{step['status']}[/]", f"{step['seconds']:.1f}",
                      highlights(name, step))
    Console().print(table)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (cuda when present), cuda or cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and the tiny CLIP (cafe-tiny): CPU smoke test")
    parser.add_argument("--cpu-torchrun", action="store_true",
                        help="on a CPU device, still run step 3 (2 processes over gloo; slow on few cores)")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results", help="folder of gpu-check.json")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is visible here; run with --device cpu --quick")
    t0 = time.perf_counter()
    s = QUICK if args.quick else FULL
    device = pick_device(args.device)
    result: dict[str, Any] = {"meta": {
        "device": str(device), "quick": args.quick, "sizes": asdict(s),
        "clip_model_note": ("quick: the tiny CLIP cafe-tiny stands in for ViT-B-32" if s.clip_model != "ViT-B-32"
                            else "ViT-B-32"),
        "weights": "RANDOM WEIGHTS (CLIP and mask branch); generated data",
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}, "steps": {}}
    steps = result["steps"]
    work = Path(tempfile.mkdtemp(prefix="cafe-gpu-check-"))
    try:
        steps["environment"] = run_step("environment", lambda: environment_check(device))
        raf = images.write_dataset(work / "raf", "raf", {"train": s.train_per_class, "test": s.test_per_class},
                                   s.raf_size)
        clip: dict[str, LoadedClip] = {}

        def extract() -> dict[str, Any]:
            clip["c"] = load_clip(ClipSpec(model=s.clip_model, random_weights=True), device)
            return extract_check(s, clip["c"], raf, work)

        def needs_extract(fn: Callable[[LoadedClip], dict[str, Any]]) -> Callable[[], dict[str, Any]]:
            def run() -> dict[str, Any]:
                if steps["extract"]["status"] != "ran":
                    raise Skip("needs the extract step's cache, and that step did not run")
                return fn(clip["c"])
            return run

        steps["extract"] = run_step("extract", extract)
        steps["train"] = run_step("train", needs_extract(lambda c: train_check(s, c, work)))
        steps["torchrun"] = run_step("torchrun", lambda: torchrun_check(s, device, work, args.cpu_torchrun))
        steps["predict"] = run_step("predict", lambda: predict_check(s, device, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    order = ("extract", "train", "torchrun", "predict", "environment")  # the issue's numbering
    result["steps"] = {k: steps[k] for k in order if k in steps}
    seconds = time.perf_counter() - t0
    since_start = time.time() - psutil.Process().create_time()  # start-up (imports) included
    result["meta"] |= {"seconds": seconds, "process_seconds": since_start, "target_seconds": TARGET_SECONDS,
                       "within_target": since_start <= TARGET_SECONDS,
                       "failed": [k for k, v in steps.items() if v["status"] == "failed"]}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "gpu-check.json"
    path.write_text(json.dumps(result, indent=2, default=str))
    show(result)
    for name in result["meta"]["failed"]:
        print(f"{name} failed: {steps[name]['error']}", file=sys.stderr)
    print(f"{path}, {seconds:.0f} s")
    return result


if __name__ == "__main__":
    main()
