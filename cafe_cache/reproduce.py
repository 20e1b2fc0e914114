"""The paper's experiments as a plan of ``cafe extract`` / ``cafe train`` commands, and their tables.

Tables (results/): Table 1 cross-domain matrix (train on each of the five datasets, test on all),
Table 2 ablation (no mask, mask, + separation, + diverse), Table 4 CLIP+finetune, Table 5 no
sigmoid, and the loss-weight sweep of Fig. 3. Ablations train on RAF-DB as the paper does (or on
the first available dataset, said in the table). Each table prints our numbers next to the paper's.

The official configuration is the default (:class:`Settings`): final-epoch evaluation, fp32 mask
branch, MS-Celeb ResNet-18 init (a file only the user can supply). Every setting that differs from it
is named in the title of every table written, so a table never passes for the paper's protocol.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import paper
from .datasets import default_root, root_env_var
from .errors import CafeError
from .extract.paths import cache_path
from .extract.reader import FeatureCache
from .extract.subset import describe
from .files import write_text
from .messages import command, stop, warning
from .metrics import means
from .options import DEFAULT_MODEL, DEFAULT_PRETRAINED, DEFAULT_WHICH, PROTOCOLS, TABLES, TRAIN_PRECISIONS, VIEWS, WHICH
from .results import EvalResult, accuracies, read_eval_result_if_any, read_zero_shot_tables
from .run.config import TrainConfig
from .run.folder import RunConfig, RunFolder
from .run.official import PaperSettings

SWEEP_SEP = (0.5, 1.0, 1.5, 2.0, 3.0)  # with w_div = 5
SWEEP_DIV = (1.0, 3.0, 5.0, 7.0, 10.0)  # with w_sep = 1.5


@dataclass
class Experiment:
    table: str  # "1", "2", "4", "5" or "sweep"
    label: str  # the row's name in its table
    source: str
    run: Path
    flags: list[str] = field(default_factory=list)  # extra `cafe train` flags

    def results(self, which: str = DEFAULT_WHICH) -> EvalResult | None:
        return read_eval_result_if_any(RunFolder(self.run).results_json(which))

    def config(self) -> RunConfig | None:
        folder = RunFolder(self.run)
        return folder.read_config() if folder.is_run() else None


MSCELEB_HINT = ("The paper initialises ResNet-18 from MS-Celeb-1M face recognition (resnet18_msceleb.pth, "
                "shared by the CAFE/EAC/SCN authors; it cannot be downloaded automatically). Supply it with "
                "`make reproduce TRAIN_ARGS='--backbone-weights /path/resnet18_msceleb.pth'` "
                "(or cafe reproduce --train-args '--backbone-weights FILE').")


@dataclass(frozen=True)
class Settings(PaperSettings):
    """A reproduction's settings, read from its commands or from its finished runs."""

    @classmethod
    def from_args(cls, which: str, extract_args: list[str], train_args: list[str]) -> Settings:
        """What the commands will use (for --dry-run and the start of a run)."""
        subset = requested_subset(extract_args)
        return cls(which=which, backbone_init=_flag(train_args, "--backbone-weights", "imagenet"),
                   mask_precision=_flag(train_args, "--precision", "fp32"),
                   clip_input="online" if "--online-clip" in train_args else "cached-views",
                   random_clip="--random-weights" in extract_args,
                   epochs=_int_flag(train_args, "--epochs", TrainConfig.epochs),
                   image_size=_int_flag(train_args, "--image-size", TrainConfig.image_size),
                   train_limit=_int_flag(train_args, "--limit", None),
                   partial_caches=(f"every cache: {describe(subset)}",) if subset else (),
                   views=tuple(_flag(extract_args, "--views", ",".join(VIEWS)).split(",")))

    @classmethod
    def from_runs(cls, experiments: list[Experiment], which: str) -> Settings:
        """What the finished runs used, read from their config.json (the first run differing decides)."""
        configs = [c for c in (e.config() for e in experiments) if c]
        def pick(values, official):
            values = [v for v in values if v is not None]
            return next((v for v in values if v != official), values[0] if values else official)
        inits = [c.backbone_init.source for c in configs]
        trains = [c.train for c in configs]
        return cls(which=which,
                   backbone_init=next((v for v in inits if v in ("imagenet", "none")),
                                      inits[0] if inits else "imagenet"),
                   mask_precision=pick([c.mask_precision for c in configs], "fp32"),
                   clip_input=pick([c.clip_input for c in configs], "online"),
                   random_clip=any(c.clip.random_weights for c in configs),
                   epochs=pick([t.epochs for t in trains], TrainConfig.epochs),
                   image_size=pick([t.image_size for t in trains], TrainConfig.image_size),
                   train_limit=pick([t.limit for t in trains], None),
                   partial_caches=partial_caches(experiments, which),
                   views=pick([_cache_views(c) for c in configs], VIEWS))


def _int_flag(args: list[str], name: str, default: int | None) -> int | None:
    """The integer value of ``name`` in ``args`` (``default`` when absent or not a number: the command refuses it)."""
    text = _flag(args, name, "")
    try:
        return int(text) if text else default
    except ValueError:
        return default


def requested_subset(extract_args: list[str]) -> dict:
    """The subset record (:func:`cafe_cache.extract.subset.select`) that ``--extract-args`` asks for."""
    limit, splits = _int_flag(extract_args, "--limit", None), _flag(extract_args, "--splits", "")
    record: dict = {"splits": sorted(s for s in splits.split(",") if s)} if splits else {}
    return record | ({"limit": limit} if limit is not None else {})


def requested_clip(extract_args: list[str]) -> str:
    """The CLIP weights ``--extract-args`` asks for, in words."""
    model = _flag(extract_args, "--model", DEFAULT_MODEL)
    if "--random-weights" in extract_args:
        return f"{model} RANDOM WEIGHTS (seed {_flag(extract_args, '--seed', '0')})"
    if weights := _flag(extract_args, "--weights", ""):
        return f"{model} from the file {weights}"
    tag = _flag(extract_args, "--pretrained", DEFAULT_PRETRAINED)
    return f"{model} pretrained:{tag} (downloaded once, or from your Hugging Face cache)"


def partial_caches(experiments: list[Experiment], which: str) -> tuple[str, ...]:
    """``rafdb: --limit 50 per split`` for each cache behind the runs' results that is not its whole dataset
    (the source caches named in the runs' config.json, the targets' caches beside them)."""
    found: dict[str, str] = {}
    for e in experiments:
        config = e.config()
        if config is None or not config.source_cache:
            continue
        folder = Path(config.source_cache).parent
        res = e.results(which)
        for name in [e.source, *(res.targets if res else ())]:
            subset = _cache_subset(cache_path(folder, name))
            if subset:
                found[name] = describe(subset)
    return tuple(f"{name}: {text}" for name, text in sorted(found.items()))


def _cache_subset(path: Path) -> dict:
    try:
        return FeatureCache(path).subset if path.is_file() else {}
    except CafeError:
        return {}


def _cache_views(config: RunConfig) -> tuple[str, ...] | None:
    fp = config.clip.fingerprint
    return tuple(json.loads(fp).get("views", VIEWS)) if fp else None


def _flag(args: list[str], name: str, default: str) -> str:
    """The value of ``name VALUE`` or ``name=VALUE`` in a list of command-line words (the last wins)."""
    value = default
    for i, a in enumerate(args):
        if a == name and i + 1 < len(args):
            value = args[i + 1]
        elif a.startswith(name + "="):
            value = a.split("=", 1)[1]
    return value


def available_datasets(cache_dir: Path) -> tuple[list[str], list[str]]:
    """(datasets we can use, a message per dataset we cannot, naming the setting to fill in)."""
    usable, missing = [], []
    for d in paper.DATASETS:
        has_cache = cache_path(cache_dir, d).is_file() and FeatureCache(cache_path(cache_dir, d)).complete
        if has_cache or default_root(d) is not None:
            usable.append(d)
        else:
            missing.append(f"{paper.DATASET_NAMES[d]}: no root configured; set {root_env_var(d)}=PATH or add "
                           f"`{d} = \"PATH\"` under [datasets] in cafe.toml")
    return usable, missing


def plan(datasets: list[str], runs: Path, tables: tuple[str, ...] = TABLES, sweep: bool = False) -> list[Experiment]:
    """Every training run the requested tables need (Table 2's full model is Table 1's run)."""
    exps = [Experiment("1", "CAFE", s, runs / "table1" / s) for s in datasets] if "1" in tables else []
    if not datasets:
        return exps
    abl = "rafdb" if "rafdb" in datasets else datasets[0]
    full = Experiment("2", "mask + separation + diverse", abl, runs / "table1" / abl)
    if "2" in tables:
        exps += [Experiment("2", "baseline (no mask)", abl, runs / "table2" / "no_mask", ["--variant", "no_mask"]),
                 Experiment("2", "mask", abl, runs / "table2" / "mask", ["--w-sep", "0", "--w-div", "0"]),
                 Experiment("2", "mask + separation", abl, runs / "table2" / "mask_sep", ["--w-div", "0"]),
                 full]
    if "4" in tables:
        exps.append(Experiment("4", "CLIP+Finetune", abl, runs / "table4" / "clip_finetune",
                               ["--variant", "clip_finetune"]))
    if "5" in tables:
        exps.append(Experiment("5", "No sigmoid", abl, runs / "table5" / "no_sigmoid", ["--variant", "no_sigmoid"]))
    if sweep:
        exps += [Experiment("sweep", f"w_sep={w:g}, w_div=5", abl, runs / "sweep" / f"sep{w:g}", ["--w-sep", str(w)])
                 for w in SWEEP_SEP]
        exps += [Experiment("sweep", f"w_sep=1.5, w_div={w:g}", abl, runs / "sweep" / f"div{w:g}", ["--w-div", str(w)])
                 for w in SWEEP_DIV]
    return exps  # the full model appears in Tables 1 and 2 with one run folder: it trains once


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


BEST_COLUMN = "unseen Mean, best epoch (test-set selection)"


def table_markdown(title: str, rows: list[tuple[str, str, dict[str, float]]], note: str = "",
                   selected: dict[tuple[str, str], float | None] | None = None,
                   over: tuple[str, ...] = paper.DATASETS) -> str:
    """rows: (label, source, {target: acc}); columns are the five datasets then the two means over the
    datasets ``over`` (the ones run; the paper's rows are averaged over the same ones), and, with
    ``selected`` ((label, source) -> unseen mean of the ``best`` weights), the test-set-selection extra."""
    mean_name = "paper Mean (5 sets, source incl.)" if tuple(over) == paper.DATASETS else \
        f"Mean ({', '.join(paper.DATASET_NAMES[d] for d in over)}; source incl.)"
    head = "| method | trained on | " + " | ".join(paper.DATASET_NAMES[d] for d in paper.DATASETS) + \
           f" | {mean_name} | unseen Mean |" + (f" {BEST_COLUMN} |" if selected else "")
    width = len(paper.DATASETS) + 4 + bool(selected)
    lines = [f"## {title}", "", head, "|" + "---|" * width]
    for label, source, acc in rows:
        pm, um = means(acc, source, over)
        cells = " | ".join(_cell(acc.get(d)) for d in paper.DATASETS)
        extra = f" {_cell(selected.get((label, source)))} |" if selected else ""
        lines.append(f"| {label} | {paper.DATASET_NAMES.get(source, source)} | {cells} | {_cell(pm)} | "
                     f"{_cell(um)} |{extra}")
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def covered(rows: list[tuple[str, str, dict[str, float]]]) -> tuple[str, ...]:
    """The paper's datasets our rows have a number for (all five when none has any): what the means are over."""
    return tuple(d for d in paper.DATASETS if any(d in acc for _, _, acc in rows)) or paper.DATASETS


def ours(exp: Experiment, which: str = DEFAULT_WHICH) -> dict[str, float]:
    res = exp.results(which)
    return res.accuracies if res else {}


def zero_shot_rows(results_dir: Path) -> list[tuple[str, str, dict[str, float]]]:
    """Reference lines with no FER training at all, from `cafe zeroshot` (results/zeroshot/results.json)."""
    f = results_dir / "zeroshot" / "results.json"
    if not f.is_file():
        return []
    return [(f"zero-shot {t.method} (no FER training)", "-", accuracies(t.targets)) for t in read_zero_shot_tables(f)]


def write_tables(experiments: list[Experiment], results_dir: Path, which: str = DEFAULT_WHICH) -> list[Path]:
    """Markdown per table with the paper's rows beside ours, plus results/summary.json.

    Our numbers are those of the ``which`` weights (default the final epoch, as the paper); every title
    names the settings that differ from the official run (:meth:`Settings.deviations`).
    """
    results_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_runs(experiments, which)
    deviations = settings.deviations()
    random = settings.random_clip or any(res.random_weights for e in experiments if (res := e.results(which)))
    warn = "**RANDOM WEIGHTS — not a real result.** " if random else ""
    missing = ("Datasets not run are shown as -; the paper's rows are from the published tables, their means "
               "taken over the same datasets as ours.")
    if not settings.paper_init:
        missing += " " + MSCELEB_HINT
    by_table: dict[str, list[Experiment]] = {}
    for e in experiments:
        by_table.setdefault(e.table, []).append(e)
    written = []
    paper_rows = {
        "1": lambda srcs: [("CAFE (paper)", r.source, dict(r.acc)) for r in paper.TABLE1
                           if r.method == "CAFE" and r.source in srcs],
        "2": lambda srcs: [(f"{r.method} (paper)", r.source, dict(r.acc)) for r in paper.TABLE2],
        "4": lambda srcs: [("CLIP+Finetune (paper)", "rafdb", dict(paper.TABLE4_CLIP_FINETUNE.acc))],
        "5": lambda srcs: [("No sigmoid (paper)", "rafdb", dict(paper.TABLE5_NO_SIGMOID.acc)),
                           ("CAFE (paper)", "rafdb", dict(paper.CAFE_CROSS_DOMAIN["rafdb"]))],
        "sweep": lambda srcs: [],
    }
    titles = {"1": "Table 1: cross-domain accuracy (%)", "2": "Table 2: ablation (%)",
              "4": "Table 4: CLIP+finetune (%)", "5": "Table 5: without sigmoid (%)",
              "sweep": "Fig. 3: loss-weight sweep (%)"}
    epoch = "final epoch" if which == "last" else "best epoch on the source test set"
    summary = {}
    for table, exps in by_table.items():
        if table == "5":
            exps = exps + [e for e in experiments if e.table == "1" and e.source == exps[0].source]
        labelled = [(("CAFE" if e.table == "1" and table == "5" else e.label), e) for e in exps]
        rows = [(label, e.source, ours(e, which)) for label, e in labelled]
        over = covered(rows)
        selected = None
        if which == "last" and any(e.results("best") for e in exps):  # the test-set selection, as an extra
            selected = {(label, e.source): means(ours(e, "best"), e.source, over)[1]
                        for label, e in labelled}
        if table == "1":
            rows += zero_shot_rows(results_dir)
        sources = {e.source for e in exps}
        title = f"{titles[table]}, {epoch}" + "".join(f" — {d}" for d in deviations)
        text = table_markdown(title, rows + paper_rows[table](sources), warn + missing, selected, over)
        path = results_dir / f"table{table}.md" if table != "sweep" else results_dir / "sweep.md"
        write_text(path, text)
        written.append(path)
        summary[table] = [{"label": lab, "source": s, "accuracy": a} for lab, s, a in rows]
    write_text(results_dir / "summary.json", json.dumps(
        {"random_weights": random, "which": which, "deviations": deviations, "tables": summary}, indent=2))
    return written


# --------------------------------------------------------------------------- cafe reproduce as one call

Say = Callable[[str], None]  # prints one line of text (cafe_cache.messages)


@dataclass(frozen=True)
class ReproduceJob:
    """Every option of ``cafe reproduce`` (flags already split into words)."""

    datasets: list[str] | None = None  # default: every dataset with a root or a cache
    tables: tuple[str, ...] = TABLES
    sweep: bool = False
    cache_dir: Path = Path("cache")
    runs: Path = Path("runs/reproduce")
    results: Path = Path("results")
    extract_args: tuple[str, ...] = ()
    train_args: tuple[str, ...] = ()
    expclip: Path | None = None
    which: str = DEFAULT_WHICH
    precision: str = "fp32"  # the official mask-branch precision
    nproc_per_node: int = 1
    dry_run: bool = False
    protocol: str = "paper"  # "paper": reproduce(), the paper's tables; "lodo": cafe_cache.lodo.reproduce_lodo()

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise CafeError(f"--protocol {self.protocol!r}: choose paper (the paper's tables) or lodo (leave one "
                            "domain out).")
        if self.protocol == "lodo" and (self.sweep or self.tables != TABLES):
            raise CafeError("--tables and --sweep choose the paper's tables; --protocol lodo makes its own "
                            "(results/lodo.md): drop them, or run the paper protocol separately.")
        if self.which not in WHICH:
            raise CafeError(f"--which {self.which!r}: choose last (the final epoch, official) or best.")
        if self.precision not in TRAIN_PRECISIONS:
            raise CafeError(f"--precision {self.precision!r}: choose from {', '.join(TRAIN_PRECISIONS)}.")

    @property
    def train_words(self) -> list[str]:
        """--train-args, with --precision added unless it is there already."""
        words = list(self.train_args)
        if not any(w == "--precision" or w.startswith("--precision=") for w in words):
            words += ["--precision", self.precision]
        return words


def run_step(cmd: list[str], job: ReproduceJob, say: Say, nproc: int = 1) -> None:
    """``cafe CMD`` as one process, or as ``nproc`` processes on this node under torchrun; printed first
    as one copy-pasteable line, and only printed with ``--dry-run``."""
    launcher = ["torchrun", "--standalone", f"--nproc-per-node={nproc}", "-m", "cli"] if nproc > 1 else ["cafe"]
    say(command(f"$ {shlex.join(launcher + cmd)}"))
    if job.dry_run:
        return
    python = ([sys.executable, "-m", "torch.distributed.run", *launcher[1:]] if nproc > 1
              else [sys.executable, "-m", "cli"])
    proc = subprocess.run([*python, *cmd])
    if proc.returncode != 0:
        raise CafeError(f"`{shlex.join(launcher + cmd)}` failed (exit {proc.returncode}); fix the cause above and "
                        "rerun `cafe reproduce`: finished steps are not repeated.")


def usable_datasets(job: ReproduceJob, say: Say) -> list[str]:
    """The datasets of ``job.datasets`` (default: all) that have a root or a cache; says which are skipped."""
    usable, missing = available_datasets(job.cache_dir)
    if job.datasets:
        unknown = [d for d in job.datasets if d not in paper.DATASETS]
        if unknown:
            raise CafeError(f"--datasets: unknown {unknown}; choose from {', '.join(paper.DATASETS)}.")
        usable = [d for d in usable if d in job.datasets]
    for m in missing:
        say(warning("skipping", f" {m}"))
    if not usable:
        raise CafeError("no dataset to run: configure at least one root (README, 'Dataset roots').")
    return usable


def check_existing_caches(job: ReproduceJob, usable: list[str], say: Say) -> None:
    """Names the CLIP weights the extractions use and what each existing cache holds; an existing cache that
    `cafe extract` would refuse (another --limit/--splits, or random weights where real ones are asked for
    or the reverse) stops the run now, before any step, or is said as such by a dry run."""
    args = list(job.extract_args)
    say(f"CLIP weights: {requested_clip(args)}")
    want, random = requested_subset(args), "--random-weights" in args
    for d in usable:
        path = cache_path(job.cache_dir, d)
        try:
            cache = FeatureCache(path) if path.is_file() else None
        except CafeError as e:
            say(warning(str(e)))
            continue
        if cache is None:
            say(f"{d}: no cache yet; it will be extracted into {path}")
            continue
        state = "complete (extraction skipped)" if cache.complete else "unfinished (the extraction resumes it)"
        say(f"{d}: {path} {state}, CLIP {cache.fingerprint.weights_label}, "
            f"{describe(cache.subset)}")
        problem = None
        if cache.subset != want:
            problem = f"it holds {describe(cache.subset)}, --extract-args ask for {describe(want)}"
        elif cache.random_weights != random:
            problem = f"it was made with CLIP {cache.fingerprint.weights_label}, --extract-args ask for another"
        if problem and "--force" not in args:
            message = (f"{path}: {problem}, so `cafe extract` would refuse it. Pass the cache's own settings in "
                       "--extract-args, add --force to them to replace it, or use another --cache-dir.")
            if not job.dry_run:
                raise CafeError(message)
            say(stop("would stop", f": {message}"))


def reproduce(job: ReproduceJob, say: Say) -> list[Path]:
    """Stage one for every usable dataset, stage two once per run folder, the zero-shot reference, then the
    figure and the tables (their paths returned; none with ``--dry-run``). Finished steps are skipped.
    (``--protocol lodo`` is :func:`cafe_cache.lodo.reproduce_lodo`.)"""
    settings = Settings.from_args(job.which, list(job.extract_args), job.train_words)
    say("settings:\n" + "\n".join(f"  {line}" for line in settings.summary()))
    if not settings.paper_init:
        say(warning("not the paper's backbone init", f": {MSCELEB_HINT}"))
    usable = usable_datasets(job, say)
    if bad := [t for t in job.tables if t not in TABLES]:
        raise CafeError(f"--tables: unknown {bad}; choose from {', '.join(TABLES)}.")
    check_existing_caches(job, usable, say)
    for d in usable:  # stage one: finished caches are checked and skipped by cafe extract itself
        run_step(["extract", "--dataset", d, "--cache-dir", str(job.cache_dir), *job.extract_args], job, say,
                 job.nproc_per_node)
    experiments = plan(usable, job.runs, job.tables, job.sweep)
    targets = ",".join(usable)
    for e in {e.run: e for e in experiments}.values():  # stage two, once per run folder
        if e.results():
            say(f"done already: {e.run}")
            continue
        common = ["--cache-dir", str(job.cache_dir), "--targets", targets, "--out", str(e.run),
                  "--eval-which", "last,best"]
        resume = RunFolder(e.run).resume.is_file()
        cmd = ["train", "--resume", *common] if resume else ["train", "--source", e.source, *common, *e.flags,
                                                             *job.train_words]
        run_step(cmd, job, say, job.nproc_per_node)
    zeroshot = ["zeroshot", "--targets", targets, "--cache-dir", str(job.cache_dir),
                "--out", str(job.results / "zeroshot")]
    run_step(zeroshot + (["--expclip", str(job.expclip)] if job.expclip else []), job, say)  # no FER training
    if job.dry_run:
        return []
    from .report import plot_runs_cross_domain  # torch, matplotlib: only when tables are made

    table1 = [e.run for e in experiments if e.table == "1" and e.results()]
    if table1:
        say(f"written {plot_runs_cross_domain(table1, job.results / 'cross-domain.png', job.which)}")
    return write_tables(experiments, job.results, job.which)
