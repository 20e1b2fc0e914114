"""The paper's experiments as a plan of extractions and trainings, run in this process, and their tables.

Tables (results/): Table 1 cross-domain matrix (train on each of the five datasets, test on all),
Table 2 ablation (no mask, mask, + separation, + diverse), Table 4 CLIP+finetune, Table 5 no
sigmoid, and the loss-weight sweep of Fig. 3. Ablations train on RAF-DB as the paper does (or on
the first available dataset, said in the table). Each table prints our numbers next to the paper's.

Every experiment is the training template of :class:`ReproduceJob` (a :class:`TrainConfig`) with its source and
its own changes (:meth:`Experiment.train_config`); every extraction is the job's :class:`ExtractJob` for one
dataset. :mod:`cafe_cache.steps` runs them (under torchrun with several processes per node).

The official configuration is the default (:class:`Settings`): final-epoch evaluation, fp32 mask
branch, MS-Celeb ResNet-18 init (a file only the user can supply). Every setting that differs from it
is named in the title of every table written, so a table never passes for the paper's protocol.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import paper
from .datasets import default_root, root_env_var
from .errors import CafeError
from .extract.job import ExtractJob
from .extract.paths import cache_path
from .extract.reader import FeatureCache
from .extract.subset import describe
from .files import write_text
from .messages import stop, warning
from .metrics import means
from .model.variants import CLIP_FINETUNE, NO_MASK, NO_SIGMOID
from .options import DEFAULT_WHICH, PROTOCOLS, TABLES, TRAIN_PRECISIONS, VIEWS, WHICH
from .results import EvalResult, accuracies, read_eval_result_if_any, read_zero_shot_tables
from .run.config import TrainConfig
from .run.folder import RunConfig, RunFolder
from .run.official import PaperSettings
from .steps import Runner, Say, Views

SWEEP_SEP = (0.5, 1.0, 1.5, 2.0, 3.0)  # with w_div = 5
SWEEP_DIV = (1.0, 3.0, 5.0, 7.0, 10.0)  # with w_sep = 1.5


@dataclass
class Experiment:
    table: str  # "1", "2", "4", "5" or "sweep"
    label: str  # the row's name in its table
    source: str
    run: Path
    variant: str | None = None  # what the experiment changes in the job's training (None: the job's own)
    w_sep: float | None = None
    w_div: float | None = None

    def train_config(self, base: TrainConfig, cache_dir: Path) -> TrainConfig:
        """``base`` trained on this experiment's source (caches in ``cache_dir``) with its own changes."""
        changes = {"variant": self.variant, "w_sep": self.w_sep, "w_div": self.w_div}
        return replace(base, source=self.source, cache_dir=str(cache_dir),
                       **{k: v for k, v in changes.items() if v is not None})

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
    def from_configs(cls, which: str, extract: ExtractJob, train: TrainConfig) -> Settings:
        """What the extractions and trainings of a job will use (for --dry-run and the start of a run)."""
        subset = requested_subset(extract)
        return cls(which=which, backbone_init=train.backbone_weights, mask_precision=train.precision,
                   clip_input=train.clip_input, random_clip=extract.clip.random_weights, epochs=train.epochs,
                   image_size=train.image_size, train_limit=train.limit,
                   partial_caches=(f"every cache: {describe(subset)}",) if subset else (), views=tuple(extract.views))

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


def requested_subset(extract: ExtractJob) -> dict:
    """The subset record (:func:`cafe_cache.extract.subset.select`) that the extraction asks for."""
    record: dict = {"splits": sorted(extract.splits)} if extract.splits else {}
    return record | ({"limit": extract.limit} if extract.limit is not None else {})


def requested_clip(extract: ExtractJob) -> str:
    """The CLIP weights the extraction asks for, in words."""
    clip = extract.clip
    if clip.random_weights:
        return f"{clip.model} RANDOM WEIGHTS (seed {clip.seed})"
    if clip.weights:
        return f"{clip.model} from the file {clip.weights}"
    return f"{clip.model} pretrained:{clip.pretrained} (downloaded once, or from your Hugging Face cache)"


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
        exps += [Experiment("2", "baseline (no mask)", abl, runs / "table2" / NO_MASK.name, variant=NO_MASK.name),
                 Experiment("2", "mask", abl, runs / "table2" / "mask", w_sep=0.0, w_div=0.0),
                 Experiment("2", "mask + separation", abl, runs / "table2" / "mask_sep", w_div=0.0),
                 full]
    if "4" in tables:
        exps.append(Experiment("4", "CLIP+Finetune", abl, runs / "table4" / CLIP_FINETUNE.name,
                               variant=CLIP_FINETUNE.name))
    if "5" in tables:
        exps.append(Experiment("5", "No sigmoid", abl, runs / "table5" / NO_SIGMOID.name, variant=NO_SIGMOID.name))
    if sweep:
        exps += [Experiment("sweep", f"w_sep={w:g}, w_div=5", abl, runs / "sweep" / f"sep{w:g}", w_sep=w)
                 for w in SWEEP_SEP]
        exps += [Experiment("sweep", f"w_sep=1.5, w_div={w:g}", abl, runs / "sweep" / f"div{w:g}", w_div=w)
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


def default_train() -> TrainConfig:
    """The training every experiment starts from: the paper's settings (TrainConfig's defaults) with the official
    fp32 mask branch. Its source is a placeholder: each experiment trains on its own."""
    return TrainConfig(source="rafdb", precision="fp32")


@dataclass(frozen=True)
class ReproduceJob:
    """Every option of ``cafe reproduce``: what to run, where, and the typed extraction and training that every
    step starts from (``--extract-args`` and ``--train-args``, parsed by the command line)."""

    datasets: list[str] | None = None  # default: every dataset with a root or a cache
    tables: tuple[str, ...] = TABLES
    sweep: bool = False
    cache_dir: Path = Path("cache")
    runs: Path = Path("runs/reproduce")
    results: Path = Path("results")
    extract: ExtractJob = field(default_factory=lambda: ExtractJob(dataset=""))  # dataset, cache_dir set per step
    train: TrainConfig = field(default_factory=default_train)  # source, cache_dir and changes set per experiment
    plots: bool = True  # each run's figures (cafe train --no-plots in --train-args: False)
    expclip: Path | None = None
    which: str = DEFAULT_WHICH
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
        if self.train.precision not in TRAIN_PRECISIONS:
            raise CafeError(f"--precision {self.train.precision!r}: choose from {', '.join(TRAIN_PRECISIONS)}.")

    def extraction(self, dataset: str, cache_dir: Path | None = None, model: str | None = None) -> ExtractJob:
        """The job's extraction of ``dataset`` into ``cache_dir`` (default the job's), with ``model`` if given."""
        clip = replace(self.extract.clip, model=model) if model else self.extract.clip
        return replace(self.extract, dataset=dataset, cache_dir=cache_dir or self.cache_dir, clip=clip)

    def settings(self) -> Settings:
        return Settings.from_configs(self.which, self.extract, self.train)

    def runner(self, say: Say, views: Views | None = None) -> Runner:
        """What runs the steps, showing them through ``views`` (its ``say`` replaced by ``say``)."""
        return Runner(replace(views, say=say) if views else Views(say=say), self.nproc_per_node, self.dry_run,
                      step_dir=self.runs)


def say_settings(settings: Settings, say: Say) -> None:
    """The settings, one per line, and how to get the paper's backbone init when it is not used."""
    say("settings:\n" + "\n".join(f"  {line}" for line in settings.summary()))
    if not settings.paper_init:
        say(warning("not the paper's backbone init", f": {MSCELEB_HINT}"))


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
    say(f"CLIP weights: {requested_clip(job.extract)}")
    want, random = requested_subset(job.extract), job.extract.clip.random_weights
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
        if problem and not job.extract.force:
            message = (f"{path}: {problem}, so `cafe extract` would refuse it. Pass the cache's own settings in "
                       "--extract-args, add --force to them to replace it, or use another --cache-dir.")
            if not job.dry_run:
                raise CafeError(message)
            say(stop("would stop", f": {message}"))


def extract_all(job: ReproduceJob, runner: Runner, datasets: list[str], cache_dir: Path | None = None,
                model: str | None = None) -> None:
    """Stage one for every dataset (finished caches are checked and skipped by the extraction itself); a failed
    one stops the run here, since every training is tested on every dataset."""
    for d in datasets:
        runner.extract(job.extraction(d, cache_dir, model))
    runner.check()


def train_all(job: ReproduceJob, runner: Runner, experiments: list[Experiment], targets: list[str],
              say: Say, cache_dir: Path | None = None) -> None:
    """Stage two, once per run folder: a finished run is skipped, an interrupted one resumes, a failed one is said
    and the others go on (:meth:`Runner.check` names it at the end)."""
    for e in {e.run: e for e in experiments}.values():
        if e.results():
            say(f"done already: {e.run}")
            continue
        runner.train(e.train_config(job.train, cache_dir or job.cache_dir), e.run, targets, job.plots)


def reproduce(job: ReproduceJob, say: Say, views: Views | None = None) -> list[Path]:
    """Stage one for every usable dataset, stage two once per run folder, the zero-shot reference, then the
    figure and the tables (their paths returned; none with ``--dry-run``). Finished steps are skipped; a step
    that fails is named after the tables of the others are written. (``--protocol lodo`` is
    :func:`cafe_cache.lodo.reproduce_lodo`.)"""
    say_settings(job.settings(), say)
    usable = usable_datasets(job, say)
    if bad := [t for t in job.tables if t not in TABLES]:
        raise CafeError(f"--tables: unknown {bad}; choose from {', '.join(TABLES)}.")
    check_existing_caches(job, usable, say)
    runner = job.runner(say, views)
    extract_all(job, runner, usable)
    experiments = plan(usable, job.runs, job.tables, job.sweep)
    train_all(job, runner, experiments, usable, say)
    runner.zero_shot(job.cache_dir, usable, job.results / "zeroshot", job.expclip)  # no FER training
    if job.dry_run:
        return []
    from .report import plot_runs_cross_domain  # torch, matplotlib: only when tables are made

    table1 = [e.run for e in experiments if e.table == "1" and e.results()]
    if table1:
        say(f"written {plot_runs_cross_domain(table1, job.results / 'cross-domain.png', job.which)}")
    written = write_tables(experiments, job.results, job.which)
    runner.check()
    return written
