"""Stage one as one library call: an :class:`ExtractJob` holds every option of ``cafe extract``, and
:func:`extract_dataset` reads the dataset, loads CLIP and fills the cache, in one process or, under
torchrun (or to finish the shards of an earlier torchrun launch), sharded (:mod:`.shards`).

What the command shows goes through callbacks: ``say`` for rank 0's lines, ``stopped`` for the line
every rank prints when SIGTERM or Ctrl-C stops it (plain text, the lines that deserve a colour
toned: :mod:`cafe_cache.messages`), and ``bars`` for the progress bars. This module
imports nothing heavy at the top, so the CLI reads its option defaults from :class:`ExtractJob`.
"""

from __future__ import annotations

import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..bounds import check_all
from ..datasets.options import NativeFlags
from ..errors import CafeError
from ..messages import alert, done, warning
from ..options import EXTRACT_PRECISIONS, PREPROCESS, VIEWS, check_cache_name, check_views, split_list
from .weights import ClipSpec

if TYPE_CHECKING:
    from ..datasets.base import Reader, ReadResult, Sample
    from ..distributed import Ranks
    from .loop import Extraction, ExtractReport

DTYPES = ("float16", "float32")
RANDOM_BANNER = alert("RANDOM WEIGHTS", ": features are meaningless except for testing the pipeline.")

OnPlan = Callable[[dict[str, int]], None]  # rows to do per split, before the work starts
OnBatch = Callable[[str, int], None]  # (split, images) after every batch written
# progress bars of one rank: given a suffix for the task names, a context yielding (on_plan, on_batch)
Bars = Callable[[str], AbstractContextManager[tuple[OnPlan | None, OnBatch | None]]]


def parse_views(text: str) -> tuple[str, ...]:
    """``--views 'clean,hflip'`` -> ``("clean", "hflip")``, checked."""
    return check_views(tuple(split_list(text) or ()), text)


@dataclass(frozen=True)
class ExtractJob:
    """Every option of ``cafe extract``: which dataset, which CLIP, what to store and how to compute."""

    dataset: str  # reader name (cafe_cache.datasets.READERS)
    root: Path | None = None  # default: $CAFE_<NAME>_ROOT or cafe.toml [datasets]
    name: str | None = None  # cache name (file stem); for the folder reader also the dataset's name
    class_map: str | None = None  # folder reader: 'folder=id,...' (cafe_cache.datasets.options)
    ferplus_ties: str | None = None  # FERPlus: drop or first
    native: NativeFlags = field(default_factory=NativeFlags)  # --ckplus-* and --kdef-views
    skip_bad: bool = False  # skip malformed label entries instead of stopping
    splits: tuple[str, ...] | None = None  # extract only these splits (recorded in the cache)
    limit: int | None = None  # at most N images per split (recorded in the cache)
    clip: ClipSpec = field(default_factory=ClipSpec)
    views: tuple[str, ...] = VIEWS
    preprocess: str = "official"
    dtype: str = "float16"  # stored feature dtype
    precision: str = "auto"  # compute precision (cafe_cache.device.resolve_precision)
    batch_size: int = 64
    device: str = "auto"
    workers: int | None = None  # None: cafe_cache.device.default_workers
    store_images: int = 0  # side of the stored uint8 images, 0 = none
    cache_dir: Path = Path("cache")
    force: bool = False  # recompute even if a finished or different cache exists

    def __post_init__(self) -> None:
        check_views(self.views)
        if self.name is not None:
            check_cache_name(self.name)
        if self.preprocess not in PREPROCESS:
            raise CafeError(f"--preprocess {self.preprocess!r}: choose official or model (clip: the same).")
        from .extractor import own_preprocess, split_model

        split_model(self.clip.model)  # an unknown scheme is refused before any work
        object.__setattr__(self, "preprocess", own_preprocess(self.clip.model, self.preprocess))
        if self.dtype not in DTYPES:
            raise CafeError(f"--dtype {self.dtype!r}: choose float16 or float32.")
        if self.precision not in EXTRACT_PRECISIONS:
            raise CafeError(f"--precision {self.precision!r}: choose from {', '.join(EXTRACT_PRECISIONS)}.")
        check_all({"--batch-size": self.batch_size, "--workers": self.workers, "--store-images": self.store_images,
                   "--limit": self.limit, "--seed": self.clip.seed})

    def reader(self) -> Reader:
        """The dataset's reader (``name`` renames the cache; only the folder reader takes it as its own)."""
        from ..datasets import build_reader
        from ..datasets.options import reader_options

        folder_name = self.name if self.dataset == "folder" else None
        options = reader_options(self.dataset, self.class_map, folder_name, self.ferplus_ties, self.native)
        return build_reader(self.dataset, self.root, strict=not self.skip_bad, **options)


def extract_dataset(job: ExtractJob, *, say: Callable[[str], None] = print,
                    stopped: Callable[[str], None] | None = None, bars: Bars | None = None,
                    ranks: Ranks | None = None) -> ExtractReport | None:
    """Run ``job``: its dataset's features (and stored images) into its cache, resuming where an earlier run
    stopped. None when the cache was complete already. ``ranks``: default from torchrun's environment.

    SIGTERM and Ctrl-C stop it between batches' writes with ``stopped`` saying what was kept, then
    ``SystemExit`` (143 or 130): the cache keeps every batch written and rerunning the job resumes.
    """
    from ..device import default_workers, resolve_precision
    from ..distributed import from_env, process_group, rank_device  # torch: only when running

    ranks = ranks or from_env()
    say = ranks.main_only(say)
    reader, result, splits, subset = _read(job, say)
    dev = rank_device(job.device, ranks)
    prec = resolve_precision(job.precision, dev)
    workers = default_workers(dev, ranks.local_world) if job.workers is None else job.workers
    # collectives of stage one are small Python objects (gloo); the device is passed so each rank makes
    # its own GPU current (else pinned-memory copies put a CUDA context of every rank on GPU 0)
    with process_group(dev, ranks):
        ex = _prepare(job, ranks, reader, result, splits, subset, dev, prec, workers)
        _say_plan(job, ex, ranks, say)
        with _stop_on_signals(ex.path, stopped or say):
            report = _run(job, ex, ranks, say, bars)
    if report is not None:
        _say_done(job, ex, report, result, say)
    return report


def _read(job: ExtractJob, say: Callable[[str], None]
          ) -> tuple[Reader, ReadResult, dict[str, list[Sample]], dict]:
    """The reader, what it read, the splits to extract (cut to ``--splits``/``--limit``) and that subset's record."""
    from .subset import describe, select

    reader = job.reader()
    say(f"reading {job.dataset} labels from {reader.root}")
    result = reader.read()
    splits = {s: result.split(s) for s in result.splits()}
    if not splits:
        raise CafeError(f"{reader.root}: the {job.dataset} reader found no labelled images ({reader.layout}).")
    splits, subset = select(splits, list(job.splits) if job.splits else None, job.limit)
    if subset:
        say(f"extracting a subset: {describe(subset)} ({', '.join(f'{s} {len(v):,}' for s, v in splits.items())})")
    return reader, result, splits, subset


def _prepare(job: ExtractJob, ranks: Ranks, reader: Reader, result: ReadResult, splits: dict[str, list[Sample]],
             subset: dict, device, precision: str, workers: int) -> Extraction:
    """The extractor loaded (a download happens once per node) and everything the extraction needs in one place."""
    from .extractor import load_extractor
    from .fingerprint import Fingerprint
    from .loop import Extraction
    from .paths import cache_path

    with ranks.local_main_first():
        clip = load_extractor(job.clip, device, job.preprocess)
    fp = Fingerprint.for_clip(clip, preprocess=job.preprocess, views=job.views, dtype=job.dtype, precision=precision)
    cache_name = job.name or reader.cache_name
    return Extraction(reader, splits, result.skipped, clip, fp, cache_path(job.cache_dir, cache_name), cache_name,
                      subset=subset, store_images=job.store_images, force=job.force, batch_size=job.batch_size,
                      workers=workers, device=device, precision=precision)


def _say_plan(job: ExtractJob, ex: Extraction, ranks: Ranks, say: Callable[[str], None]) -> None:
    """Which extractor on which device, what is stored where."""
    from ..progress import device_hint
    from .extractor import display_name
    from .paths import shards_dir

    say(f"{display_name(ex.clip.info.model, ex.clip.info.label)} on {device_hint(ex.device, ex.precision)}, "
        f"{job.preprocess} preprocessing at {ex.clip.image_size}px, views {', '.join(job.views)} -> {ex.path}")
    if ranks.distributed:
        say(f"{ranks.world} ranks (torchrun); each extracts its shards into {shards_dir(ex.path)}")
    if job.store_images:
        n = sum(len(v) for v in ex.splits.values())
        need = n * 3 * job.store_images ** 2
        say(f"storing images at {job.store_images}x{job.store_images} px: {need / 2 ** 30:.2f} GiB")
        if short := _room_short(ex.path, need):
            say(warning(f"--store-images {job.store_images} {short}", ": the extraction stops with one line when the "
                        "disk is full, keeping the rows written (rerun to continue after freeing space)."))
    if job.clip.random_weights:
        say(RANDOM_BANNER)


def _room_short(path: Path, need: int) -> str | None:
    """``needs 3.20 GiB in cache but 1.10 GiB is free`` when ``need`` bytes cannot fit beside what ``path`` holds
    already; None when they fit."""
    folder = next(p for p in (path.parent, *path.parent.parents, Path(".")) if p.exists())
    have = shutil.disk_usage(folder).free + (path.stat().st_size if path.exists() else 0)
    if need <= have:
        return None
    return f"needs {need / 2 ** 30:.2f} GiB in {folder} but {have / 2 ** 30:.2f} GiB is free"


def _say_done(job: ExtractJob, ex: Extraction, report: ExtractReport, result: ReadResult,
              say: Callable[[str], None]) -> None:
    """How many images at what rate, what the reader skipped and which images could not be read."""
    rate = f"{report.rate:,.1f} img/s" + (f" on {report.ranks} ranks" if report.ranks > 1 else "")
    views = len(job.views)
    say(done("done", f": {report.images:,} images in {report.seconds:.1f} s ({rate}, {views} "
                     f"view{'s' if views != 1 else ''} each) -> {ex.path}"))
    if result.skipped:
        say(f"{len(result.skipped):,} label entries skipped by the reader (see `cafe cache info {ex.path}`)")
    if report.errors:
        say(warning(f"{len(report.errors):,} images could not be read", " and are recorded in the cache; first: "
                    f"{report.errors[0][1]}: {report.errors[0][2]}"))
    if job.clip.random_weights:
        say(RANDOM_BANNER)


def _run(job: ExtractJob, ex: Extraction, ranks: Ranks, say: Callable[[str], None],
         bars: Bars | None) -> ExtractReport | None:
    """Sharded under torchrun or when an earlier torchrun launch left shards to finish; else one process."""
    from .paths import shards_dir

    if ranks.distributed or (shards_dir(ex.path).exists() and not job.force):
        return _sharded(ex, ranks, say, bars)
    return _single(ex, say, bars)


def _single(ex: Extraction, say: Callable[[str], None], bars: Bars | None) -> ExtractReport | None:
    """One process writes the cache directly."""
    from .paths import shards_dir

    if ex.force:  # shards of an earlier torchrun launch belong to the cache being replaced
        shutil.rmtree(shards_dir(ex.path), ignore_errors=True)
    with ex.writer() as writer:
        todo = {s: len(v) - writer.n_done(s) for s, v in ex.splits.items()}
        if not any(todo.values()) and not ex.force:
            writer.finish()
            say(f"{ex.path} is complete; nothing to do (--force recomputes).")
            return None
        for s in todo:
            if 0 < writer.n_done(s):
                say(f"resuming {s} at image {writer.n_done(s):,} of {len(ex.splits[s]):,}")
        with _bars(bars, "") as (on_plan, on_batch):
            if on_plan:
                on_plan(todo)
            return ex.run(writer, on_batch=on_batch)


def _sharded(ex: Extraction, ranks: Ranks, say: Callable[[str], None], bars: Bars | None) -> ExtractReport | None:
    """Every rank extracts its shards; rank 0 joins them into the cache (:mod:`.shards`); rank 0 shows bars."""
    from .shards import extract_sharded

    with _bars(bars if ranks.is_main else None, f" (rank 0 of {ranks.world})") as (on_plan, on_batch):
        report = extract_sharded(ranks, ex, on_plan=on_plan, on_batch=on_batch)
    if report is None:
        say(f"{ex.path} is complete; nothing to do (--force recomputes).")
    return report


@contextmanager
def _bars(bars: Bars | None, suffix: str) -> Iterator[tuple[OnPlan | None, OnBatch]]:
    """The bars' callbacks; after each batch written, a SIGTERM that arrived meanwhile stops the extraction."""
    with bars(suffix) if bars else nullcontext((None, None)) as (on_plan, on_batch):
        def after_batch(split: str, n: int) -> None:
            if _SIGTERM.is_set():
                raise Stopped()
            if on_batch:
                on_batch(split, n)

        yield on_plan, after_batch


class Stopped(Exception):
    """SIGTERM arrived during extraction."""


_SIGTERM = threading.Event()  # set by the SIGTERM handler; the next batch boundary stops


@contextmanager
def _stop_on_signals(path: Path, stopped: Callable[[str], None]) -> Iterator[None]:
    """SIGTERM stops the extraction between batches' writes like Ctrl-C does, and one line says what
    was kept and how to go on (the cache keeps every batch written; rerunning resumes)."""
    from .lock import rows_kept

    def stop(signum, frame):  # no raise here: raised inside a weakref callback or __del__ it would be lost
        _SIGTERM.set()

    _SIGTERM.clear()
    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        yield
    except (Stopped, KeyboardInterrupt) as e:
        why = "SIGTERM" if isinstance(e, Stopped) else "Ctrl-C"
        stopped(warning(f"stopped by {why}", f": {rows_kept(path)} kept in {path}; rerun the same "
                        "`cafe extract` command to resume from there."))
        raise SystemExit(130 if why == "Ctrl-C" else 143) from None
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
