"""A run folder: the one place for the names of what ``cafe train`` and ``cafe eval`` write there.

    RUN/config.json           RunConfig: model config, training config, CLIP weights, backbone init, caches
    RUN/last.safetensors      the last finished epoch: the weights the paper's numbers come from
    RUN/best.safetensors      best accuracy on the source's own test set (test-set selection, an extra)
    RUN/resume.pt             weights, optimiser, scheduler and history of the last finished epoch (one file)
    RUN/metrics.json          per-epoch history
    RUN/checksums.json        sha256 of best, last and resume, {"best.safetensors": [sha256], ...}
    RUN/eval-<which>/         results.json, results.md, mean_masks.npz of ``cafe eval --which``: every cache, or
                              the targets of ``cafe train``; ``cafe eval --targets A,B`` writes results-A+B.*
    RUN/figures/              the figures of ``cafe plot``
    RUN/run.lock              held by the one ``cafe train`` writing the run (removed when it ends)

:class:`RunConfig` is the typed view of ``config.json``: its ``model`` is the run's
:class:`~cafe_cache.model.config.ModelConfig`, its ``train`` the :class:`~cafe_cache.run.config.TrainConfig`.
It reads the run folders of every cafe version: the file keeps the shape it always had (``model`` and
``train`` as ``ModelConfig.to_dict`` / ``TrainConfig.to_dict`` write them), options added later take
their defaults, and entries written later, such as ``mask_precision``, are None in older ones. No torch here.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..errors import CafeError
from ..files import check_writable
from ..model.config import ModelConfig
from ..options import DEFAULT_WHICH
from .config import TrainConfig

CONFIG = "config.json"
SECTIONS = ("model", "train")  # the entries of config.json every cafe version writes
RESUME = "resume.pt"
METRICS = "metrics.json"
CHECKSUMS = "checksums.json"
FIGURES = "figures"
RUN_LOCK = "run.lock"
RESULTS = "results"  # eval-<which>/results.json and results.md (results-A+B.* for cafe eval --targets A,B)
MEAN_MASKS = "mean_masks.npz"


@dataclass(frozen=True)
class RunFolder:
    """The paths of one run folder (nothing is read or made by building one)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def of_checkpoint(cls, checkpoint: str | Path) -> tuple[RunFolder, str]:
        """``runs/x``, ``runs/x/best.safetensors`` or ``runs/x/last.safetensors`` -> (run folder, which)."""
        p = Path(checkpoint)
        if p.suffix == ".safetensors":
            return cls(p.parent), p.stem
        return cls(p), DEFAULT_WHICH

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def resume(self) -> Path:
        return self.path / RESUME

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def checksums(self) -> Path:
        return self.path / CHECKSUMS

    @property
    def figures(self) -> Path:
        return self.path / FIGURES

    def weights(self, which: str) -> Path:
        return self.path / f"{which}.safetensors"

    def eval_dir(self, which: str) -> Path:
        return self.path / f"eval-{which}"

    def results_json(self, which: str, targets: list[str] | None = None) -> Path:
        """The results of an evaluation: ``results.json`` the run's full one, ``results-A+B.json`` that of
        ``cafe eval --targets A,B`` (which never replaces the full one)."""
        return self.eval_dir(which) / (results_stem(targets) + ".json")

    def results_md(self, which: str, targets: list[str] | None = None) -> Path:
        return self.eval_dir(which) / (results_stem(targets) + ".md")

    def mean_masks(self, which: str) -> Path:
        return self.eval_dir(which) / MEAN_MASKS

    def is_run(self) -> bool:
        """Whether a ``config.json`` is there (what makes a folder a run folder)."""
        return self.config.is_file()

    def has_run(self) -> bool:
        """Whether a run finished at least one epoch here (its resume state exists)."""
        return self.resume.exists()

    def read_config(self) -> RunConfig:
        """``config.json``, typed (a damaged one is refused in one line naming the file)."""
        data = read_config_json(self, need=SECTIONS)
        try:
            return RunConfig.from_json(data)
        except (TypeError, ValueError) as e:  # a CafeError of the entries' own checks passes through
            raise CafeError(f"{self.config}: its 'model' or 'train' entry is not the one `cafe train` writes "
                            f"({e}); it is damaged or not from cafe.") from None


class RunLock:
    """``--out`` held by one ``cafe train``: a second one into the same folder is refused in one line.

    :meth:`acquire` also checks that the folder can be written, before any work starts; :meth:`release`
    removes the lock file, and the folder itself when this process made it and no epoch finished there
    (a failed start leaves no empty run folder behind)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.made = False
        self._lock = None

    def acquire(self) -> None:
        from filelock import FileLock, Timeout

        self.made = not self.path.exists()
        check_writable(self.path, "--out")
        self._lock = FileLock(str(self.path / RUN_LOCK), timeout=0)
        try:
            self._lock.acquire()
        except Timeout:
            self._lock = None
            raise CafeError(f"{self.path} is being written by another `cafe train` (lock {self.path / RUN_LOCK} is "
                            "held); wait for it to finish, or pass another --out.") from None

    def release(self) -> None:
        if self._lock is None:
            return
        self._lock.release()
        self._lock = None
        (self.path / RUN_LOCK).unlink(missing_ok=True)
        if self.made and not RunFolder(self.path).has_run():  # nothing finished: leave no run folder behind
            shutil.rmtree(self.path, ignore_errors=True)


def results_stem(targets: list[str] | None) -> str:
    """``results`` for the full evaluation (None), ``results-rafdb+sfew`` for the set of targets named."""
    return RESULTS + ("-" + "+".join(targets) if targets else "")


def find_runs(folder: Path) -> list[Path]:
    """The run folders (with a config.json) directly inside ``folder``."""
    return sorted(p.parent for p in Path(folder).glob(f"*/{CONFIG}"))


def read_config_json(run: RunFolder | Path, need: tuple[str, ...] = ()) -> dict[str, Any]:
    """``run/config.json`` as written; ``need``: entries that must be there (each a JSON object)."""
    folder = run if isinstance(run, RunFolder) else RunFolder(run)
    f = folder.config
    if not f.is_file():
        raise CafeError(f"{folder.path} is not a cafe run folder (no config.json); pass the folder `cafe train` wrote.")
    try:
        config = json.loads(f.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise CafeError(f"{f} is not valid JSON ({e}); it is damaged. Restore it or retrain.") from None
    if not isinstance(config, dict) or not all(isinstance(config.get(k), dict) for k in need):
        raise CafeError(f"{f} lacks the {' and '.join(repr(k) for k in need) or 'JSON object'} `cafe train` "
                        "writes; it is damaged or not from cafe.")
    return config


@dataclass(frozen=True)
class ClipInfo:
    """The CLIP the run's cache was made with."""

    fingerprint: str | None = None  # Fingerprint.to_json() of the source cache
    label: str = ""  # Fingerprint.weights_label
    random_weights: bool = False


@dataclass(frozen=True)
class BackboneInit:
    """How the mask branch's backbone was initialised (``LoadReport`` of ``--backbone-weights``)."""

    source: str = ""  # a file, "imagenet" or "none"
    loaded: int = 0  # tensors loaded
    missing: list[str] = field(default_factory=list)  # backbone keys left at random init
    random_init: bool = False  # --backbone-weights none


@dataclass(frozen=True)
class RunConfig:
    """The typed view of ``config.json``: everything needed to rebuild, resume and describe the run."""

    model: ModelConfig
    train: TrainConfig
    clip: ClipInfo = field(default_factory=ClipInfo)
    backbone_init: BackboneInit = field(default_factory=BackboneInit)
    mask_precision: str | None = None  # --precision resolved on the training device (auto: bf16 on CUDA)
    source_cache: str | None = None  # the (first) source's cache
    source_caches: dict[str, str] | None = None  # several sources: name -> cache, in --source order
    samples_per_source: dict[str, dict[str, int]] | None = None  # several sources: name -> {"train": n, "test": n}
    samples: dict[str, int] | None = None  # {"train": n, "test": n}
    ranks: dict[str, int] | None = None  # {"world": W, "batch_per_rank": B / W}
    cafe_version: str | None = None

    @property
    def source(self) -> str:
        return self.train.source

    @property
    def sources(self) -> tuple[str, ...]:
        """Every source the run trained on (``source`` joins them with commas)."""
        return self.train.sources

    @property
    def variant(self) -> str:
        return self.model.variant

    @property
    def image_size(self) -> int:
        return self.train.image_size

    @property
    def clip_input(self) -> str:
        """``online`` or ``cached-views`` (from ``online_clip``, also in run folders from before it was recorded)."""
        return self.train.clip_input

    @property
    def random(self) -> bool:
        """Random CLIP weights or a random backbone init: the run tests the pipeline, not the method."""
        return self.clip.random_weights or self.backbone_init.random_init

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunConfig:
        """From the ``config.json`` of any cafe version (missing entries: their defaults; ``model`` and
        ``train`` must be there, as every version writes them)."""
        lacking = [k for k in SECTIONS if not (isinstance(data, dict) and isinstance(data.get(k), dict))]
        if lacking:
            raise CafeError(f"the run's config lacks the {' and '.join(repr(k) for k in lacking)} `cafe train` "
                            "writes; it is damaged or not from cafe.")
        known = {k: data[k] for k in ("mask_precision", "source_cache", "source_caches", "samples_per_source",
                                      "samples", "ranks", "cafe_version") if k in data}
        return cls(ModelConfig.from_dict(data["model"]), TrainConfig.from_dict(data["train"]), **known,
                   clip=_section(ClipInfo, data.get("clip")),
                   backbone_init=_section(BackboneInit, data.get("backbone_init")))

    def to_json(self) -> dict[str, Any]:
        """The JSON ``cafe train`` writes (``write_json`` sorts the keys): the shape of every cafe version."""
        return asdict(self) | {"model": self.model.to_dict(), "train": self.train.to_dict()}


def _section(cls, data: Any):
    """``cls`` from a JSON object, keeping the keys it knows (an older or newer writer may differ)."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names}) if isinstance(data, dict) else cls()
