"""``cafe extract``: stage one, frozen CLIP features of a dataset into the HDF5 cache."""

from __future__ import annotations

import shutil
import signal
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import typer

from cafe_cache.datasets import build_reader
from cafe_cache.errors import CafeError
from cafe_cache.options import DEFAULT_MODEL, DEFAULT_PRETRAINED, PREPROCESS, VIEWS
from cafe_cache.options import EXTRACT_PRECISIONS as PRECISIONS

from .common import console, progress, rate_text, say_plain, split_list
from .datasets import reader_options

RANDOM_BANNER = "[bold yellow]RANDOM WEIGHTS[/]: features are meaningless except for testing the pipeline."


def extract(
    ctx: typer.Context,
    dataset: str = typer.Option(..., "--dataset", "-d", help="Reader name: rafdb, ferplus, affectnet, sfew, mma, folder."),
    root: Path | None = typer.Option(None, help="Dataset root. Default: $CAFE_<NAME>_ROOT or cafe.toml [datasets]."),
    name: str | None = typer.Option(None, help="Cache name (file stem). Default: the dataset name; for `folder`, the root folder's name."),
    class_map: str | None = typer.Option(None, help="folder reader: explicit class map 'folder=id,...' (ids 0..6, -1 = skip)."),
    ferplus_ties: str | None = typer.Option(None, "--ferplus-ties", help="FERPlus tie rule for a shared highest vote count: drop (default: the row is skipped) or first (the first tied class in csv order wins). Recorded in the cache."),
    splits_opt: str | None = typer.Option(None, "--splits", help="Extract only these splits, e.g. 'test' for a target-only dataset (eval reads only test). Recorded in the cache."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="At most N images per split: the first N of a fixed shuffle (deterministic), for quick runs. Recorded in the cache; a later full extraction or `cafe train` says so."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip malformed label lines / missing images (counted) instead of stopping."),
    model: str = typer.Option(DEFAULT_MODEL, help="open_clip model name."),
    pretrained: str = typer.Option(DEFAULT_PRETRAINED, help="open_clip pretrained tag (downloads, or uses your HF cache)."),
    weights: Path | None = typer.Option(None, help="Local CLIP checkpoint file (overrides --pretrained)."),
    random_weights: bool = typer.Option(False, "--random-weights", help="Randomly initialised CLIP (seeded). For smoke tests only; recorded in the cache."),
    seed: int = typer.Option(0, help="Seed of --random-weights."),
    activation: str = typer.Option("auto", help="CLIP MLP activation: auto (what the weights were trained with: QuickGELU for OpenAI's CLIP and the default ViT-B-32, as the official code), quickgelu or gelu."),
    views: str = typer.Option("clean,hflip", help=f"Views to store per image, from {', '.join(VIEWS)}."),
    preprocess: str = typer.Option("official", help="official: resize 224x224 + ImageNet mean/std (the CAFE code); clip: CLIP's own transform."),
    dtype: str = typer.Option("float16", help="Stored feature dtype: float16 or float32."),
    precision: str = typer.Option("auto", help=f"Compute precision {'/'.join(PRECISIONS)}; auto = fp16 on CUDA (as the official code), fp32 on CPU."),
    batch_size: int = typer.Option(64, min=1, help="Images per CLIP forward pass (each view adds a pass's worth)."),
    device: str = typer.Option("auto", help="auto, cpu, cuda, cuda:1, ..."),
    workers: int | None = typer.Option(None, min=0, help="Image-decoding worker processes. Default: min(8, CPUs) on CUDA, 0 on the CPU (there workers only take cores from the model)."),
    store_images: int = typer.Option(0, "--store-images", min=0, metavar="SIZE", help="Also store every image resized to SIZExSIZE as uint8 (224 = the paper's training input), so `cafe train`/`cafe eval` read arrays instead of decoding files. 3*SIZE^2 bytes per image (147 KB at 224). 0 = off."),
    cache_dir: Path = typer.Option(Path("cache"), help="Folder of the feature caches (one .h5 per dataset)."),
    force: bool = typer.Option(False, "--force", help="Recompute even if a finished or different cache exists."),
) -> None:
    """Run frozen CLIP over a dataset once and store its features (stage one).

    Resumable: rerun the same command after an interruption and it continues where it stopped.
    Several GPUs or nodes: launch it with torchrun (`torchrun --nproc-per-node N -m cli extract ...`);
    each process extracts shards of the dataset and the result is the same single cache.
    """
    from cafe_cache.device import default_workers, resolve_precision
    from cafe_cache.distributed import from_env, process_group, rank_device  # torch: only when running
    from cafe_cache.extract.cache import Fingerprint, cache_path, shards_dir
    from cafe_cache.extract.clip import ClipSpec, load_clip
    from cafe_cache.extract.subset import describe, select
    from cafe_cache.progress import device_hint

    view_list = tuple(split_list(views) or ())
    bad = [v for v in view_list if v not in VIEWS]
    if bad or not view_list:
        raise CafeError(f"--views {views!r}: unknown view(s) {bad}; choose from {', '.join(VIEWS)}.")
    if preprocess not in PREPROCESS:
        raise CafeError(f"--preprocess {preprocess!r}: choose official or clip.")
    if dtype not in ("float16", "float32"):
        raise CafeError(f"--dtype {dtype!r}: choose float16 or float32.")
    if precision not in PRECISIONS:
        raise CafeError(f"--precision {precision!r}: choose from {', '.join(PRECISIONS)}.")
    _check_weight_flags(ctx, random_weights, weights)

    ranks = from_env()
    say = ranks.main_only(console.print)
    folder_name = name if dataset == "folder" else None  # other readers: --name only renames the cache
    reader = build_reader(dataset, root, strict=not skip_bad, **reader_options(dataset, class_map, folder_name, ferplus_ties))
    cache_name = name or reader.cache_name
    path = cache_path(cache_dir, cache_name)
    say(f"reading [bold]{dataset}[/] labels from {reader.root}")
    result = reader.read()
    splits = {s: result.split(s) for s in result.splits()}
    if not splits:
        raise CafeError(f"{reader.root}: the {dataset} reader found no labelled images ({reader.layout}).")
    splits, subset = select(splits, split_list(splits_opt), limit)
    if subset:
        say(f"extracting a subset: {describe(subset)} ({', '.join(f'{s} {len(v):,}' for s, v in splits.items())})")

    dev = rank_device(device, ranks)
    prec = resolve_precision(precision, dev)
    workers = default_workers(dev, ranks.local_world) if workers is None else workers
    spec = ClipSpec(model=model, pretrained=pretrained, weights=str(weights) if weights else None,
                    random_weights=random_weights, seed=seed, activation=activation)
    # collectives of stage one are small Python objects (gloo); the device is passed so each rank makes
    # its own GPU current (else pinned-memory copies put a CUDA context of every rank on GPU 0)
    with process_group(dev, ranks):
        with ranks.local_main_first():  # a download happens once per node
            clip = load_clip(spec, dev)
        fp = Fingerprint.for_clip(clip, preprocess=preprocess, views=view_list, dtype=dtype, precision=prec)
        say(f"CLIP {clip.info.label} on {device_hint(dev, prec)}, {preprocess} preprocessing at {clip.image_size}px, "
            f"views {', '.join(view_list)} -> {path}")
        if ranks.distributed:
            say(f"{ranks.world} ranks (torchrun); each extracts its shards into {shards_dir(path)}")
        if store_images:
            n = sum(len(v) for v in splits.values())
            say(f"storing images at {store_images}x{store_images} px: {n * 3 * store_images ** 2 / 2 ** 30:.2f} GiB")
        if random_weights:
            say(RANDOM_BANNER)
        options = dict(batch_size=batch_size, workers=workers, device=dev, precision=prec)
        with _stop_on_sigterm(path):
            if ranks.distributed or (shards_dir(path).exists() and not force):
                report = _sharded(ranks, reader, result, splits, clip, fp, path, dataset, cache_name, store_images,
                                  force, subset, options, say)
            else:
                report = _single(reader, result, splits, clip, fp, path, dataset, cache_name, store_images, force,
                                 subset, options)
    if report is None:
        return
    rate = f"{report.rate:,.1f} img/s" + (f" on {report.ranks} ranks" if report.ranks > 1 else "")
    say(f"[green]done[/]: {report.images:,} images in {report.seconds:.1f} s ({rate}, {len(view_list)} view{'s' if len(view_list) != 1 else ''} each) "
        f"-> {path}")
    if result.skipped:
        say(f"{len(result.skipped):,} label entries skipped by the reader (see `cafe cache info {path}`)")
    if report.errors:
        say(f"[yellow]{len(report.errors):,} images could not be read[/] and are recorded in the cache; first: "
            f"{report.errors[0][1]}: {report.errors[0][2]}")
    if random_weights:
        say(RANDOM_BANNER)


def _check_weight_flags(ctx: typer.Context, random_weights: bool, weights: Path | None) -> None:
    """--random-weights cannot be combined with a typed --pretrained or --weights: one of them would be ignored."""
    source = ctx.get_parameter_source("pretrained")
    typed = source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")
    if random_weights and (typed or weights):
        raise CafeError(f"--random-weights with {'--pretrained' if typed else '--weights'}: pick one (random "
                        "weights ignore the other).")


class Stopped(Exception):
    """SIGTERM arrived during extraction."""


@contextmanager
def _stop_on_sigterm(path: Path):
    """SIGTERM stops the extraction between batches' writes like Ctrl-C does, and one line says what
    was kept and how to go on (the cache keeps every batch written; rerunning resumes)."""
    def stop(signum, frame):
        raise Stopped()

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        yield
    except (Stopped, KeyboardInterrupt) as e:
        why = "SIGTERM" if isinstance(e, Stopped) else "Ctrl-C"
        console.print(f"[yellow]stopped by {why}[/]: {_kept(path)} kept in {path}; rerun the same "
                      "`cafe extract` command to resume from there.", soft_wrap=True)
        raise SystemExit(130 if why == "Ctrl-C" else 143) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _kept(path: Path) -> str:
    """``train 120/1,965, test 0/500`` rows of a cache no one writes now."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return ", ".join(f"{name} {int(g.attrs['n_done']):,}/{len(g['labels']):,}" for name, g in f["splits"].items())
    except (OSError, KeyError):
        return "no rows"


def _bar_hook(bar, suffix: str = "", say=None):
    """(on_plan, on_batch) callbacks that drive one progress task per split with its live rate, and
    say the measured rate and ETA after the first batches (``say``)."""
    from cafe_cache.progress import SpeedHint

    tasks: dict[str, int] = {}
    hint: list[SpeedHint] = []
    started: dict[str, float] = {}
    last = [time.perf_counter()]  # a split starts when the previous one's last batch ended

    def on_plan(todo: dict[str, int]) -> None:
        last[0] = time.perf_counter()
        tasks.update({s: bar.add_task(s + suffix, total=n, rate="") for s, n in todo.items() if n})
        if say:
            hint.append(SpeedHint(sum(todo.values()), say))

    def on_batch(split: str, n: int) -> None:
        if hint:
            hint[0].batch(n)
        started.setdefault(split, last[0])
        last[0] = time.perf_counter()
        bar.advance(tasks[split], n)
        done = bar.tasks[tasks[split]].completed
        bar.update(tasks[split], rate=rate_text(done, time.perf_counter() - started[split]))

    return on_plan, on_batch


def _single(reader, result, splits, clip, fp, path, dataset, cache_name, store_images, force, subset, options):
    """One process writes the cache directly."""
    from cafe_cache.extract.cache import CacheWriter, shards_dir
    from cafe_cache.extract.loop import extract as run_extract

    if force:  # shards of an earlier torchrun launch belong to the cache being replaced
        shutil.rmtree(shards_dir(path), ignore_errors=True)

    with CacheWriter(path, fp, dataset=dataset, cache_name=cache_name, root=reader.root,
                     reader_options=reader.options(), splits=splits, skipped=result.skipped,
                     feature_dim=clip.embed_dim, force=force, store_images=store_images, subset=subset) as writer:
        todo = {s: len(v) - writer.n_done(s) for s, v in splits.items()}
        if not any(todo.values()) and not force:
            writer.finish()
            console.print(f"{path} is complete; nothing to do (--force recomputes).")
            return None
        for s in todo:
            if 0 < writer.n_done(s):
                console.print(f"resuming {s} at image {writer.n_done(s):,} of {len(splits[s]):,}")
        with progress() as bar:
            on_plan, on_batch = _bar_hook(bar, say=say_plain)
            on_plan(todo)
            return run_extract(reader, splits, clip, writer, on_batch=on_batch, **options)


def _sharded(ranks, reader, result, splits, clip, fp, path, dataset, cache_name, store_images, force, subset, options,
             say):
    """Every rank extracts its shards; rank 0 joins them into the cache (cafe_cache.extract.shards)."""
    from cafe_cache.extract.shards import extract_sharded

    with progress() if ranks.is_main else nullcontext() as bar:
        on_plan, on_batch = _bar_hook(bar, f" (rank 0 of {ranks.world})", say_plain) if bar else (None, None)
        report = extract_sharded(ranks, reader, splits, result.skipped, clip, fp, path, dataset=dataset,
                                 cache_name=cache_name, store_images=store_images, force=force, subset=subset,
                                 on_plan=on_plan, on_batch=on_batch, **options)
    if report is None:
        say(f"{path} is complete; nothing to do (--force recomputes).")
    return report
