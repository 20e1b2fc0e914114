"""The steps of ``cafe reproduce`` as library calls: extract a dataset
(:func:`~cafe_cache.extract.job.extract_dataset`), train and evaluate a run
(:func:`~cafe_cache.pipeline.train_and_evaluate`), the zero-shot reference.

Each step is printed first as the ``cafe`` command that does the same (copy-pasteable; only printed with
``--dry-run``), then run in this process. With several processes per node a step runs under torchrun, which
starts ``python -m cli.step FILE``: the step's typed settings in a JSON file (:func:`write_step`,
:func:`read_step`), never a command line to parse again. A step that fails is said in one line and
recorded (:attr:`Runner.failures`); the other steps go on.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from .datasets.options import NativeFlags
from .errors import CafeError
from .extract.job import Bars, ExtractJob
from .extract.weights import ClipSpec
from .messages import command, stop
from .pipeline import TrainRequest
from .results import ZeroShotTable
from .run.config import TrainConfig

Say = Callable[[str], None]  # prints one line of text (cafe_cache.messages)
EVAL_WHICH = "last,best"  # every reproduction run is evaluated with both weights (the tables pick one)


@dataclass(frozen=True)
class Views:
    """Where the steps show what they do: ``say`` lines (toned ones are :mod:`.messages`), ``plain`` text as is,
    the progress bars of an extraction (``extract_bars``) and of a training (``train_bars()``), and the tables of
    an evaluation (``show``) and of the zero-shot reference (``show_zero_shot``). Only ``say`` is needed."""

    say: Say = print
    plain: Say | None = None
    extract_bars: Bars | None = None
    train_bars: Callable[[], Any] | None = None
    show: Callable[[Any], None] | None = None
    show_zero_shot: Callable[[list[ZeroShotTable]], None] | None = None


# --------------------------------------------------------------------------- the steps as commands (printed)


def _flags(value: Any, default: Any) -> list[str]:
    """The ``cafe`` flags of every field of the dataclass ``value`` that differs from ``default`` (nested
    dataclasses flattened; ``--x`` for a true bool, ``--no-x`` for a false one, lists joined by commas)."""
    words: list[str] = []
    for f in fields(value):
        mine, theirs = getattr(value, f.name), getattr(default, f.name)
        flag = "--" + f.name.replace("_", "-")
        if mine == theirs or mine is None:
            continue
        if is_dataclass(mine):
            words += _flags(mine, theirs)
        elif isinstance(mine, bool):
            words.append(flag if mine else flag.replace("--", "--no-", 1))
        else:
            words += [flag, ",".join(mine) if isinstance(mine, (tuple, list)) else str(mine)]
    return words


def extract_command(job: ExtractJob) -> list[str]:
    """``cafe extract ...`` doing ``job`` (its extractor always named)."""
    default = ExtractJob(dataset=job.dataset, clip=ClipSpec(model=job.clip.model))
    return ["extract", "--dataset", job.dataset, "--cache-dir", str(job.cache_dir), "--model", job.clip.model,
            *_flags(replace(job, cache_dir=default.cache_dir), default)]


def train_command(request: TrainRequest, cfg: TrainConfig | None) -> list[str]:
    """``cafe train ...`` doing ``request``: a new run of ``cfg``, or (None) the resumption of ``request.out``."""
    where = ["--targets", ",".join(request.targets or []), "--out", str(request.out), "--eval-which",
             request.eval_which]
    plots = [] if request.plots else ["--no-plots"]
    if cfg is None:
        return ["train", "--resume", "--cache-dir", str(request.given.get("cache_dir", "cache")), *where, *plots]
    default = TrainConfig(source=cfg.source, cache_dir=cfg.cache_dir)
    return ["train", "--source", cfg.source, "--cache-dir", cfg.cache_dir, *where, *_flags(cfg, default), *plots]


def launcher(nproc: int) -> list[str]:
    return ["torchrun", "--standalone", f"--nproc-per-node={nproc}", "-m", "cli"] if nproc > 1 else ["cafe"]


# --------------------------------------------------------------------------- step files (for torchrun)


def write_step(step: ExtractJob | TrainRequest, path: Path) -> Path:
    """``step`` as JSON (what ``python -m cli.step FILE`` runs on every rank)."""
    if isinstance(step, ExtractJob):
        data: dict[str, Any] = {"extract": asdict(step)}
    else:
        data = {"train": asdict(step)}
    path.write_text(json.dumps(data, indent=2, default=str))
    return path


def read_step(path: Path) -> ExtractJob | TrainRequest:
    """The step :func:`write_step` wrote in ``path``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise CafeError(f"{path}: not a step file of cafe reproduce ({e}).") from None
    if "extract" in data:
        d = data["extract"]
        return ExtractJob(**d | {"root": Path(d["root"]) if d["root"] else None, "cache_dir": Path(d["cache_dir"]),
                                 "native": NativeFlags(**d["native"]), "clip": ClipSpec(**d["clip"]),
                                 "views": tuple(d["views"]), "splits": tuple(d["splits"]) if d["splits"] else None})
    d = data["train"]
    return TrainRequest(**d | {"out": Path(d["out"]) if d["out"] else None,
                               "config": TrainConfig.from_dict(d["config"]) if d["config"] else None})


@contextmanager
def _step_file(step: ExtractJob | TrainRequest, folder: Path) -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=folder, prefix=".step-", suffix=".json", delete=False) as f:
        path = Path(f.name)
    try:
        yield write_step(step, path)
    finally:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- running them


@dataclass
class Runner:
    """Runs the steps of one reproduction: in this process, or as ``nproc`` processes under torchrun (step files in
    ``step_dir``); with ``dry_run`` each is only printed. Failed steps are said and collected in ``failures``."""

    views: Views = field(default_factory=Views)
    nproc: int = 1
    dry_run: bool = False
    step_dir: Path = Path("runs")
    failures: list[str] = field(default_factory=list)

    def extract(self, job: ExtractJob) -> bool:
        """Stage one for ``job`` (a finished cache is checked and skipped by the extraction itself)."""
        return self._run(extract_command(job), job, lambda: _extract(job, self.views), self.nproc)

    def train(self, cfg: TrainConfig, out: Path, targets: list[str], plots: bool = True) -> bool:
        """Train ``cfg`` into ``out`` and evaluate it on ``targets``; an interrupted run (its resume state in
        ``out``) goes on with its saved settings."""
        from .run.folder import RunFolder

        resume = RunFolder(out).resume.is_file()
        request = TrainRequest(config=None if resume else cfg, given={"cache_dir": cfg.cache_dir} if resume else {},
                               out=out, resume=resume, targets=targets, eval_which=EVAL_WHICH, plots=plots)
        return self._run(train_command(request, None if resume else cfg), request,
                         lambda: _train(request, self.views), self.nproc)

    def zero_shot(self, cache_dir: Path, targets: list[str], out: Path, expclip: Path | None) -> bool:
        """The zero-shot reference rows (no FER training), one process."""
        cmd = ["zeroshot", "--targets", ",".join(targets), "--cache-dir", str(cache_dir), "--out", str(out)]
        cmd += ["--expclip", str(expclip)] if expclip else []
        return self._run(cmd, None, lambda: _zero_shot(cache_dir, targets, out, expclip, self.views), 1)

    def _run(self, cmd: list[str], step: ExtractJob | TrainRequest | None, here: Callable[[], None],
             nproc: int) -> bool:
        line = shlex.join(launcher(nproc) + cmd)
        self.views.say(command(f"$ {line}"))
        if self.dry_run:
            return True
        try:
            if nproc > 1 and step is not None:
                self._launch(step, nproc)
            else:
                here()
        except Exception as e:  # noqa: BLE001 (one failing step must not lose the others)
            why = str(e) if isinstance(e, CafeError) else "".join(traceback.format_exception_only(e)).strip()
            self.failures.append(f"`{line}`: {why}")
            self.views.say(stop("failed", f": {why}"))
            return False
        return True

    def _launch(self, step: ExtractJob | TrainRequest, nproc: int) -> None:
        with _step_file(step, self.step_dir) as path:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                   "-m", "cli.step", str(path)]
            code = subprocess.run(cmd).returncode
        if code != 0:
            raise CafeError(f"torchrun exited with {code}; its processes said why above.")

    def check(self) -> None:
        """One line naming every failed step, if any (raised after the others ran and the tables were written)."""
        if self.failures:
            raise CafeError(f"{len(self.failures)} step(s) failed: " + "; ".join(self.failures) + ". Fix the cause "
                            "and rerun `cafe reproduce`: finished steps are not repeated.")


def _extract(job: ExtractJob, views: Views) -> None:
    from .extract.job import extract_dataset  # torch: only when running

    extract_dataset(job, say=views.say, bars=views.extract_bars)


def _train(request: TrainRequest, views: Views) -> None:
    from .pipeline import train_and_evaluate  # torch: only when running

    train_and_evaluate(request, log=views.say, plain=views.plain or views.say, bars=views.train_bars,
                       show=views.show)


def _zero_shot(cache_dir: Path, targets: list[str], out: Path, expclip: Path | None, views: Views) -> None:
    from . import zeroshot  # torch, open_clip: only when running
    from .device import pick_device
    from .evaluate.targets import target_caches

    caches = target_caches(cache_dir, targets)
    tables = zeroshot.zero_shot_tables(caches, text_dir=cache_dir / "text", expclip=expclip, clip_weights=None,
                                       device=pick_device("auto"), log=views.say)
    if views.show_zero_shot:
        views.show_zero_shot(tables)
    zeroshot.write_results(out, tables, expclip)
    views.say(f"written: {out}/results.json, results.md")
