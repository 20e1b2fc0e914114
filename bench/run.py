"""``make bench``: speed and memory of cafe, all figures side by side from one run on one machine.

    python -m bench.run [--quick] [--out bench-results] [--device auto]

1. Extraction (``cafe extract``), CPU always and CUDA when present: images/s end to end (the
   library's ``extract`` with cafe extract's default DataLoader workers, writing the HDF5 cache),
   also with the old default of min(8, CPUs) workers and with ``--store-images``; the model alone
   on batches made beforehand (the ceiling); the loading alone (decode + resize, no model).
   Model-only variants: bf16/fp16 autocast (with their feature error against fp32), channels_last,
   one thread.
2. Stage two (``cafe train``): images/s of a training epoch with cached CLIP features (images read
   from files, or from the images stored in the cache) and with ``--online-clip``, same batch,
   image size and backbone (ResNet-18); the ratio of epoch times cached / online (target <= 0.45).
   Beside it: the loading alone (decode, resize, augment), and one step on tensors made
   beforehand, in fp32 and with the mask branch in bf16 autocast + channels_last. The headline ratio
   (and the target) is the default path's: images read from files, fp32; the others are options.
3. Memory: peak RSS of extraction over two dataset sizes (must be flat; the tiny CLIP keeps 10,000
   images fast on a CPU) and of training, each in its own process.
4. Evaluation (``cafe eval``): images/s on a cached FERPlus-like target, from files and stored images.
5. Export (:mod:`bench.export`): ``cafe export`` of the training section's run, fp32 and
   ``--quantize int8``; onnxruntime CPU images/s of both (default threads and one thread), the int8
   speed-up, file sizes and top-1 agreement.
6. Startup (:mod:`bench.startup`): seconds of ``cafe --help`` and of ``cafe extract`` until its first
   batch is written, each in a fresh process.

Workers: ``cafe_cache.device.default_workers`` everywhere (0 on the CPU, where worker
processes only take cores from the model); the old defaults are timed beside it.

Every measure is run once to warm up, then ``repeats`` rounds in which every measure of a section
runs in turn (so load from other processes falls on all alike); the median is reported, with all
runs in the JSON. Weights are RANDOM (speed does not depend on weight values); images are generated
(:mod:`bench.images`). ``--quick`` uses the tiny CLIP and tiny images: a smoke test of seconds.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch

from cafe_cache.device import default_workers, pick_device, resolve_precision
from cafe_cache.extract.clip import ClipSpec, LoadedClip, load_clip
from cafe_cache.extract.loop import batch_features
from cafe_cache.extract.paths import cache_path
from cafe_cache.extract.preprocess import mean_std
from cafe_cache.model.cafe import CAFEModel
from cafe_cache.model.config import ModelConfig

from . import images
from .export import export_speed
from .machine import cpu_name
from .startup import startup
from .workloads import (
    PREPROCESS,
    VIEWS,
    channels_last,
    evaluate_target,
    extract_cache,
    loading_pass,
    model_pass,
    sample_pass,
    threads,
    train_config,
    train_epoch,
    train_step,
)

REPO = Path(__file__).resolve().parents[1]
TARGET_RATIO = 0.45  # stage-two epoch, cached / online (issue 4), for the default path:
HEADLINE_RATIO = "epoch_time_cached_from_files_over_online"
HEADLINE_PATH = "cached features, images from files, fp32"
# stage-two step on tensors without loading: mask-branch autocast precision and channels_last (CLIP stays fp32)
STEP_MODES = {"fp32": ("fp32", False), "mask branch bf16 autocast + channels_last": ("bf16", True)}
OLD_EXTRACT_WORKERS = min(8, os.cpu_count() or 1)  # cafe extract's default before this benchmark
OLD_TRAIN_WORKERS = 2  # cafe train's and cafe eval's default when this benchmark was written
MIB_PER_IMAGE_STORED = 3 / 2**20


@dataclass(frozen=True)
class Settings:
    clip_model: str
    image_size: int  # stage-two input side (the paper: 224); images are stored at this size
    raf_size: int  # side of the generated RAF-like JPEGs
    ferplus_size: int  # side of the generated FERPlus-like PNGs
    batch_size: int  # extraction and training
    train_per_class: int  # RAF-like training images per class (7 classes)
    test_per_class: int
    target_per_class: int  # FERPlus-like target images per class (evaluation)
    memory_model: str  # CLIP of the memory runs (the tiny one keeps 10,000 images fast on a CPU)
    memory_images: tuple[int, int]  # two extraction sizes whose peak RSS must agree
    repeats: int
    old_defaults: bool  # also time the worker counts the CLI used before this benchmark
    export_batch: int  # inputs per onnxruntime run of the export section


FULL = Settings(clip_model="ViT-B-32", image_size=224, raf_size=100, ferplus_size=48, batch_size=32,
                train_per_class=10, test_per_class=1, target_per_class=4, memory_model="cafe-tiny",
                memory_images=(1000, 10000), repeats=3, old_defaults=True, export_batch=16)
QUICK = Settings(clip_model="cafe-tiny", image_size=32, raf_size=24, ferplus_size=16, batch_size=8,
                 train_per_class=2, test_per_class=1, target_per_class=1, memory_model="cafe-tiny",
                 memory_images=(35, 140), repeats=1, old_defaults=False, export_batch=4)


def measure(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, dict]:
    """Each run once to warm up, then ``repeats`` rounds of all runs in turn; each run returns images/s."""
    for run in runs.values():
        run()
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            rates[name].append(run())
    return {name: {"images_per_s": statistics.median(r), "runs": r} for name, r in rates.items()}


def rel_error(clip: LoadedClip, batch: torch.Tensor, precision: str) -> float:
    """Largest ||f - f_fp32|| / ||f_fp32|| over the features of ``batch`` (all views)."""
    mean, std = mean_std(PREPROCESS, clip.mean, clip.std)
    ref = batch_features(clip, batch, mean, std, VIEWS, "fp32")
    got = batch_features(clip, batch, mean, std, VIEWS, precision)
    return float((np.linalg.norm(got - ref, axis=-1) / np.linalg.norm(ref, axis=-1)).max())


def extraction(s: Settings, clip: LoadedClip, raf: Path, work: Path) -> dict:
    """Section 1 on ``clip``'s device; leaves the RAF-like caches (without / with stored images) in ``work``."""
    device = next(clip.model.parameters()).device
    precision = resolve_precision("auto", device)
    workers = default_workers(device)
    _, batches = loading_pass(raf, clip.image_size, batch_size=s.batch_size, workers=workers)
    batches = [b.to(device) for b in batches]
    kw = dict(device=device, precision=precision, batch_size=s.batch_size, workers=workers)
    old = {} if workers == OLD_EXTRACT_WORKERS or not s.old_defaults else {
        "end_to_end_old_workers": lambda: extract_cache(raf, work / "cache-files", clip,
                                                        **kw | {"workers": OLD_EXTRACT_WORKERS}).rate}
    runs = measure({
        "end_to_end": lambda: extract_cache(raf, work / "cache-files", clip, **kw).rate,
        **old,
        "end_to_end_store_images": lambda: extract_cache(raf, work / "cache-stored", clip, store_images=s.image_size,
                                                         **kw).rate,
        "model_only": lambda: model_pass(clip, batches, precision=precision),
        "loading_only": lambda: loading_pass(raf, clip.image_size, batch_size=s.batch_size, workers=workers)[0],
        "loading_only_1_process": lambda: loading_pass(raf, clip.image_size, batch_size=s.batch_size, workers=0)[0],
    }, s.repeats)

    one = [batches[0][:s.batch_size // 2]]
    one_cl = [b.contiguous(memory_format=torch.channels_last) for b in one]

    def with_channels_last() -> float:
        with channels_last(clip.model):
            return model_pass(clip, one_cl, precision=precision)

    def one_thread() -> float:
        with threads(1):
            return model_pass(clip, one, precision=precision)

    variants = measure({
        **{p: (lambda p=p: model_pass(clip, one, precision=p)) for p in ("fp32", "bf16", "fp16")},
        f"{precision} channels_last": with_channels_last,
        f"{precision} 1 thread": one_thread,
    }, s.repeats)
    for p in ("bf16", "fp16"):
        variants[p]["max_rel_error_vs_fp32"] = rel_error(clip, one[0], p)
    n = sum(len(b) for b in batches)
    return {"device": device.type, "precision": precision, "workers": workers, "old_workers": OLD_EXTRACT_WORKERS,
            "images": n,
            "stored_image_mib_per_image": s.image_size ** 2 * MIB_PER_IMAGE_STORED, **runs,
            "end_to_end_over_model_only": runs["end_to_end"]["images_per_s"] / runs["model_only"]["images_per_s"],
            "model_only_variants": {"images": len(one[0]), **variants}}


def training(s: Settings, clip: LoadedClip, work: Path) -> dict:
    """Section 2 on ``clip``'s device, from the caches section 1 left."""
    device = next(clip.model.parameters()).device
    runs = itertools.count()
    workers = default_workers(device)

    def epoch(cache: str, online: bool, workers: int = workers, precision: str = "fp32") -> Callable[[], float]:
        cfg = train_config(work / cache, "raf", image_size=s.image_size, batch_size=s.batch_size,
                           workers=workers, device=device.type, online=online, precision=precision)
        return lambda: train_epoch(cfg, work / f"run-{next(runs)}")

    old = {} if workers == OLD_TRAIN_WORKERS or not s.old_defaults else {
        "cached_from_files_old_workers": epoch("cache-files", False, OLD_TRAIN_WORKERS)}
    epochs = measure({"cached_from_files": epoch("cache-files", False), **old,
                      "cached_from_stored_images": epoch("cache-stored", False),
                      "online_clip": epoch("cache-files", True),
                      # cafe train --precision bf16: mask branch in bf16 autocast + channels_last, both paths
                      "cached_from_files_bf16": epoch("cache-files", False, precision="bf16"),
                      "online_clip_bf16": epoch("cache-files", True, precision="bf16")}, s.repeats)
    loading = measure({name: (lambda c=cache: sample_pass(work / c, "raf", s.image_size))
                       for name, cache in (("from_files", "cache-files"), ("from_stored_images", "cache-stored"))},
                      s.repeats)
    online = epochs["online_clip"]["images_per_s"]
    ratios = {f"epoch_time_{name}_over_online": online / epochs[name]["images_per_s"]
              for name in ("cached_from_files", "cached_from_stored_images")}
    ratios["epoch_time_cached_from_files_bf16_over_online_bf16"] = (
        epochs["online_clip_bf16"]["images_per_s"] / epochs["cached_from_files_bf16"]["images_per_s"])

    model = CAFEModel(ModelConfig("resnet18", clip_dim=clip.embed_dim)).to(device).train()
    x = torch.rand(s.batch_size, 3, s.image_size, s.image_size, device=device)
    feats = torch.randn(s.batch_size, clip.embed_dim, device=device)
    labels = torch.randint(0, 7, (s.batch_size,), device=device)

    def step(precision: str, layout: bool, online: bool) -> Callable[[], float]:
        def run() -> float:
            with channels_last(model) if layout else nullcontext():
                images = x.contiguous(memory_format=torch.channels_last) if layout else x
                return train_step(model, images, feats, labels, precision=precision, clip=clip if online else None)
        return run

    steps = {name: measure({"cached": step(precision, layout, False), "online": step(precision, layout, True)},
                           s.repeats)
             for name, (precision, layout) in STEP_MODES.items()}
    for v in steps.values():
        v["step_time_cached_over_online"] = v["online"]["images_per_s"] / v["cached"]["images_per_s"]
    headline = ratios[HEADLINE_RATIO]
    return {"device": device.type, "backbone": "resnet18", "batch_size": s.batch_size, "image_size": s.image_size,
            "workers": workers, "old_workers": OLD_TRAIN_WORKERS, "images_per_epoch": 7 * s.train_per_class,
            **epochs, **ratios, "headline_ratio": headline, "headline_path": HEADLINE_PATH,
            "target_ratio": TARGET_RATIO, "target_met": headline <= TARGET_RATIO,
            "loading_only_1_process": loading, "step_without_loading": steps}


def headline_note(tr: dict) -> str:
    """The training section's claim: the default path's ratio against the target, never another path's."""
    met = "met" if tr["headline_ratio"] <= tr["target_ratio"] else "NOT met"
    return (f"epoch time / online = {tr['headline_ratio']:.2f}: the default path ({tr['headline_path']}); "
            f"target <= {tr['target_ratio']}: {met}")


def evaluation(s: Settings, clip: LoadedClip, ferplus: Path, work: Path) -> dict:
    """Section 4: ``cafe eval`` of a random ResNet-18 CAFE model on the FERPlus-like target."""
    device = next(clip.model.parameters()).device
    kw = dict(device=device, precision=resolve_precision("auto", device), batch_size=s.batch_size,
              workers=default_workers(device))
    extract_cache(ferplus, work / "target-files", clip, **kw)
    extract_cache(ferplus, work / "target-stored", clip, store_images=s.image_size, **kw)
    model = CAFEModel(ModelConfig("resnet18", clip_dim=clip.embed_dim))

    def evaluate(folder: str) -> Callable[[], float]:
        return lambda: evaluate_target(model, cache_path(work / folder, ferplus.name), image_size=s.image_size,
                                       workers=default_workers(device), device=device.type)

    runs = measure({"from_files": evaluate("target-files"), "from_stored_images": evaluate("target-stored")},
                   s.repeats)
    return {"device": device.type, "workers": default_workers(device), "images": 7 * s.target_per_class,
            "image_file": f"{s.ferplus_size}px PNG", **runs}


def memory(s: Settings, device: torch.device, work: Path) -> dict:
    """Section 3: every job in its own process, all at once (peak RSS does not depend on speed)."""
    jobs = {}
    for n in s.memory_images:
        root = images.write_dataset(work / f"memory-{n}", "raf", {"train": n // 7}, s.raf_size)
        jobs[f"extract_{7 * (n // 7)}_images"] = {
            "kind": "extract", "root": str(root), "cache_dir": str(work / f"memory-cache-{n}"),
            "model": s.memory_model, "batch_size": s.batch_size, "workers": default_workers(device),
            "store_images": 0, "device": device.type}
    for name, online in (("train_cached", False), ("train_online_clip", True)):
        jobs[name] = {"kind": "train", "cache_dir": str(work / "cache-files"), "source": "raf",
                      "image_size": s.image_size, "batch_size": s.batch_size, "limit": s.batch_size,
                      "workers": default_workers(device), "online": online, "device": device.type,
                      "run": str(work / f"memory-{name}")}
    procs = {name: subprocess.Popen([sys.executable, "-m", "bench.memory", json.dumps(job)], cwd=REPO,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name, job in jobs.items()}
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate()
        if proc.returncode:
            raise RuntimeError(f"memory job {name} failed:\n{stderr[-3000:]}")
        out[name] = json.loads(stdout.strip().splitlines()[-1])
    small, big = (out[k]["peak_rss_mib"] for k in list(out)[:2])
    return {"clip_model_for_extraction": s.memory_model, **out, "extract_growth_mib": big - small}


def environment(device: torch.device) -> dict:
    return {"time": time.strftime("%Y-%m-%d %H:%M:%S"), "python": platform.python_version(), "torch": torch.__version__,
            "open_clip": open_clip.__version__, "cpu": cpu_name(), "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch_interop_threads": torch.get_num_interop_threads(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "extract_compute_dtype": resolve_precision("auto", device), "stored_feature_dtype": "float16",
            "train_dtype": "fp32", "weights": "RANDOM (CLIP and backbone): speed does not depend on weight values",
            "load_average_start": os.getloadavg()}


def table(result: dict) -> str:
    """The headline numbers as a markdown table."""
    rows = []
    for ex in result["extraction"]:
        rows.append((f"extract ({ex['device']}, {ex['precision']}, {ex['workers']} workers)", "end to end",
                     ex["end_to_end"]["images_per_s"], ""))
        if "end_to_end_old_workers" in ex:
            rows.append(("", f"end to end, {ex['old_workers']} workers (the old default)",
                         ex["end_to_end_old_workers"]["images_per_s"], ""))
        rows += [("", f"end to end, --store-images {result['settings']['image_size']}",
                  ex["end_to_end_store_images"]["images_per_s"],
                  f"+{ex['stored_image_mib_per_image'] * 1024:.0f} KiB/image"),
                 ("", "model only (pre-made batches)", ex["model_only"]["images_per_s"],
                  f"end to end / model only = {ex['end_to_end_over_model_only']:.2f}"),
                 ("", "loading only (decode + resize)", ex["loading_only"]["images_per_s"],
                  f"{ex['workers']} workers"),
                 ("", "loading only, 1 process", ex["loading_only_1_process"]["images_per_s"], "")]
        for name, v in ex["model_only_variants"].items():
            if name != "images":
                err = v.get("max_rel_error_vs_fp32")
                rows.append(("", f"model only, 1 batch: {name}", v["images_per_s"],
                             "" if err is None else f"max rel. error vs fp32 {err:.1e}"))
    tr = result["training"]
    rows.append((f"train epoch ({tr['device']}, resnet18, {tr['image_size']}px, batch {tr['batch_size']}, "
                 f"{tr['workers']} workers)", "cached, images from files (default)",
                 tr["cached_from_files"]["images_per_s"], headline_note(tr)))
    if "cached_from_files_old_workers" in tr:
        rows.append(("", f"cached, images from files, {tr['old_workers']} workers (the old default)",
                     tr["cached_from_files_old_workers"]["images_per_s"], ""))
    rows += [("", "option: cached, images stored in the cache (--store-images)",
              tr["cached_from_stored_images"]["images_per_s"],
              f"option: epoch time / online = {tr['epoch_time_cached_from_stored_images_over_online']:.2f}"),
             ("", "--online-clip", tr["online_clip"]["images_per_s"], ""),
             ("", "option: cached, --precision bf16", tr["cached_from_files_bf16"]["images_per_s"],
              f"option: epoch time / online bf16 = {tr['epoch_time_cached_from_files_bf16_over_online_bf16']:.2f}"),
             ("", "option: --online-clip --precision bf16", tr["online_clip_bf16"]["images_per_s"], ""),
             ("", "loading only, 1 process: from files", tr["loading_only_1_process"]["from_files"]["images_per_s"],
              "decode, resize, augment"),
             ("", "loading only, 1 process: from stored images",
              tr["loading_only_1_process"]["from_stored_images"]["images_per_s"], "")]
    for name, v in tr["step_without_loading"].items():
        rows += [("", f"step without loading, {name}: cached", v["cached"]["images_per_s"],
                  f"step time / online = {v['step_time_cached_over_online']:.2f}"),
                 ("", f"step without loading, {name}: online", v["online"]["images_per_s"], "")]
    ev = result["evaluation"]
    rows += [(f"eval ({ev['device']}, {ev['image_file']} target)", "images from files",
              ev["from_files"]["images_per_s"], ""),
             ("", "images stored in the cache", ev["from_stored_images"]["images_per_s"], "")]
    lines = ["| stage | measure | images/s | note |", "|---|---|---:|---|"]
    lines += [f"| {a} | {b} | {c:,.1f} | {d} |" for a, b, c, d in rows]
    st = result["startup"]
    lines += ["", "| startup (fresh process) | seconds |", "|---|---:|",
              f"| cafe --help | {st['help_seconds']:.2f} |",
              f"| cafe extract to its first batch ({st['clip_model']}, batch {st['batch_size']}) | "
              f"{st['extract_first_batch_seconds']:.2f} |"]
    ex = result["export"]
    lines += ["", f"| cafe export ({ex['model']}), onnxruntime CPU, batch {ex['batch']} | fp32 images/s | "
                  "int8 images/s | int8 speed-up |", "|---|---:|---:|---:|"]
    lines += [f"| {label.replace('_', ' ')} | {ex[label]['fp32']['images_per_s']:,.1f} | "
              f"{ex[label]['int8']['images_per_s']:,.1f} | {ex[label]['int8_speedup']:.2f}x |"
              for label in ("default_threads", "1_thread")]
    kept = "kept" if ex["export_keeps_int8"] else "REFUSED"
    lines += ["", f"export files: fp32 {ex['file_mib']['fp32']:,.0f} MiB, int8 {ex['file_mib']['int8']:,.0f} MiB; "
                  f"int8 top-1 agreement with fp32 {ex['export_check_agreement']:.1%} on {ex['check_faces']} as "
                  f"cafe export checks ({kept} by cafe export at >= {ex['min_agreement']:.0%}), "
                  f"{ex['bench_inputs_agreement']:.1%} on {ex['batch']} random inputs; "
                  f"speed-up real: {'yes' if ex['speedup_real'] else 'NO'}"]
    mem = result["memory"]
    lines += ["", "| peak RSS (own process) | MiB | DataLoader worker MiB |", "|---|---:|---:|"]
    lines += [f"| {name} | {v['peak_rss_mib']:,.0f} | {v['worker_peak_rss_mib']:,.0f} |"
              for name, v in mem.items() if isinstance(v, dict)]
    meta = result["meta"]
    lines += ["", f"extraction peak RSS growth from {result['settings']['memory_images'][0]:,} to "
                  f"{result['settings']['memory_images'][1]:,} images ({mem['clip_model_for_extraction']}): "
                  f"{mem['extract_growth_mib']:+.1f} MiB",
              f"{meta['cpu']} ({meta['cpu_count']} cores), {meta['device']}, torch {meta['torch']}, "
              f"{meta['torch_threads']} threads; load average {meta['load_average_start'][0]:.1f} at start, "
              f"{meta['load_average_end'][0]:.1f} at end. {meta['weights']}."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny CLIP, tiny images, one round: a smoke test")
    parser.add_argument("--out", type=Path, default=REPO / "bench-results", help="folder of the JSON and table")
    parser.add_argument("--device", default="auto", help="device of training and evaluation (default: cuda if present)")
    args = parser.parse_args(argv)
    s = QUICK if args.quick else FULL
    device = pick_device(args.device)
    devices = [torch.device("cpu")] + ([device] if device.type != "cpu" else [])
    result = {"meta": environment(device), "settings": asdict(s)}
    work = Path(tempfile.mkdtemp(prefix="cafe-bench-"))
    t0 = time.perf_counter()
    try:
        raf = images.write_dataset(work / "raf", "raf", {"train": s.train_per_class, "test": s.test_per_class},
                                   s.raf_size)
        ferplus = images.write_dataset(work / "ferplus", "ferplus", {"test": s.target_per_class}, s.ferplus_size)
        clips = [load_clip(ClipSpec(model=s.clip_model, random_weights=True), d) for d in devices]
        # the last extraction leaves the caches that training and evaluation read
        sections = {"extraction": lambda: [extraction(s, clip, raf, work) for clip in clips],
                    "training": lambda: training(s, clips[-1], work),
                    "evaluation": lambda: evaluation(s, clips[-1], ferplus, work),
                    "memory": lambda: memory(s, device, work),
                    # run-0: the training section's first (warm-up) epoch, cached features from files
                    "export": lambda: export_speed(work / "run-0", work, batch=s.export_batch, repeats=s.repeats),
                    "startup": lambda: startup(raf, work, s.clip_model, s.batch_size, s.repeats)}
        for name, section in sections.items():
            started = time.perf_counter()
            print(f"{name}...", end="", file=sys.stderr, flush=True)
            result[name] = section()
            result["meta"][f"{name}_seconds"] = time.perf_counter() - started
            print(f" {result['meta'][f'{name}_seconds']:.0f} s", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["meta"] |= {"load_average_end": os.getloadavg(), "seconds": time.perf_counter() - t0}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}{'-quick' if args.quick else ''}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2))
    text = table(result)
    stem.with_suffix(".md").write_text(text + "\n")
    print(text)
    print(f"\n{stem}.json, {time.perf_counter() - t0:.0f} s")
    return result


if __name__ == "__main__":
    main()
