"""``cafe reproduce --models A,B,...``: the backbone study the paper leaves open. Table 1 (train on each
source, test on every dataset) once per frozen extractor (:mod:`cafe_cache.extract.extractor`: open_clip
names, ``timm:NAME``), and one table of them all.

Each model has its own cache folder ``<cache-dir>/<model>/``, its run folders
``<runs>/models/<model>/table1/<source>`` and its Table 1 in ``<results>/models/<model>/``.
``<results>/models.md`` (and ``models.json``, ``models.png``) has one row per model: for each source
the unseen mean and the paper-style mean (source included), with the paper's CAFE ViT-B/32 numbers
as the reference row, averaged over the same test sets, and every deviation from the official
protocol named in the title (:meth:`cafe_cache.reproduce.Settings.deviations`). Resumable like
``cafe reproduce``: finished caches and runs are not redone.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from . import paper
from .errors import CafeError
from .extract.extractor import canonical_model, split_model
from .messages import heading, warning
from .metrics import means
from .reproduce import (
    MSCELEB_HINT,
    Experiment,
    ReproduceJob,
    Say,
    Settings,
    ours,
    plan,
    run_step,
    usable_datasets,
    write_tables,
)
from .run.folder import RunFolder

PAPER_ROW = "CAFE ViT-B/32 (paper)"


def model_slug(model: str) -> str:
    """A folder name for ``model``: ``timm:vit_base_patch14_dinov2.lvd142m`` ->
    ``timm-vit_base_patch14_dinov2.lvd142m``."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", canonical_model(model))


@dataclass(frozen=True)
class ModelPlan:
    """One model's share of the study: its folders and its Table 1 runs."""

    model: str
    cache_dir: Path
    results: Path
    experiments: list[Experiment]


def model_plans(job: ReproduceJob, models: list[str], datasets: list[str]) -> list[ModelPlan]:
    """A plan per model, each in its own cache, run and result folders (below ``job``'s)."""
    out = []
    for m in models:
        slug = model_slug(m)
        out.append(ModelPlan(m, job.cache_dir / slug, job.results / "models" / slug,
                             plan(datasets, job.runs / "models" / slug, ("1",))))
    return out


def check_models(models: list[str], job: ReproduceJob) -> list[str]:
    """The models, checked: known schemes, no repeats, and no ``--model`` in ``--extract-args``."""
    if not models:
        raise CafeError("--models: give at least one model, e.g. ViT-B-32,timm:vit_base_patch14_dinov2.lvd142m.")
    for m in models:
        split_model(m)  # an unknown scheme: one line now, not after hours
    slugs = [model_slug(m) for m in models]
    if len(set(slugs)) != len(slugs):
        raise CafeError(f"--models {','.join(models)}: a model is named twice.")
    if any(w == "--model" or w.startswith("--model=") for w in job.extract_args):
        raise CafeError("--models sets each extraction's --model; remove --model from --extract-args.")
    if job.protocol != "paper":
        raise CafeError(f"--models runs the paper's Table 1 per model; drop --protocol {job.protocol}.")
    if "1" not in job.tables:
        raise CafeError(f"--models makes Table 1 per model; --tables {','.join(job.tables)} has no Table 1.")
    return models


def train_step(e: Experiment, cache_dir: Path, targets: str, job: ReproduceJob, say: Say) -> None:
    """Train (or resume) one run and evaluate it on ``targets``; a finished run is skipped."""
    if e.results():
        say(f"done already: {e.run}")
        return
    common = ["--cache-dir", str(cache_dir), "--targets", targets, "--out", str(e.run), "--eval-which", "last,best"]
    resume = RunFolder(e.run).resume.is_file()
    cmd = ["train", "--resume", *common] if resume else ["train", "--source", e.source, *common, *e.flags,
                                                         *job.train_words]
    run_step(cmd, job, say, job.nproc_per_node)


def reproduce_models(job: ReproduceJob, models: list[str], say: Say) -> list[Path]:
    """Extract and train Table 1 for every model (the plans printed, and only printed with ``--dry-run``), then
    each model's Table 1 and the models table; returns the paths written (none with ``--dry-run``)."""
    check_models(models, job)
    if set(job.tables) - {"1"} or job.sweep:
        say(warning("--models makes Table 1 only", " (one per model); the ablations (Tables 2, 4, 5, the sweep) are "
                    "made by `cafe reproduce` without --models."))
    settings = Settings.from_args(job.which, list(job.extract_args), job.train_words)
    say("settings:\n" + "\n".join(f"  {line}" for line in settings.summary()))
    if not settings.paper_init:
        say(warning("not the paper's backbone init", f": {MSCELEB_HINT}"))
    usable = usable_datasets(job, say)
    targets = ",".join(usable)
    plans = model_plans(job, models, usable)
    for i, p in enumerate(plans, 1):
        say(heading(f"plan {i}/{len(plans)}: model {p.model}", f" — caches in {p.cache_dir}, "
                    f"{len(p.experiments)} runs, Table 1 in {p.results}"))
        for d in usable:
            run_step(["extract", "--dataset", d, "--cache-dir", str(p.cache_dir), "--model", p.model,
                      *job.extract_args], job, say, job.nproc_per_node)
        for e in p.experiments:
            train_step(e, p.cache_dir, targets, job, say)
    if job.dry_run:
        return []
    written = [name_model(path, p.model) for p in plans for path in write_tables(p.experiments, p.results, job.which)]
    return written + write_models_table(plans, job.results, job.which)


def name_model(path: Path, model: str) -> Path:
    """A model's own table says which frozen extractor made it (its title's end), beside the paper's ViT-B/32 rows."""
    if path.suffix == ".md":
        title, _, rest = path.read_text().partition("\n")
        path.write_text(f"{title} — frozen extractor {model}\n{rest}")
    return path


@dataclass
class ModelRow:
    """One row of the models table: per source (unseen mean, paper-style mean) of one model."""

    label: str
    extractor: str  # the weights' label from the runs (says RANDOM WEIGHTS), or "published"
    cells: dict[str, tuple[float | None, float | None]]
    random_weights: bool = False

    @property
    def average_unseen(self) -> float | None:
        values = [u for u, _ in self.cells.values()]
        return sum(values) / len(values) if values and None not in values else None


def model_row(p: ModelPlan, which: str, over: tuple[str, ...]) -> ModelRow:
    """``p``'s row: each source's two means over ``over`` (None where a run or a target is missing)."""
    cells, labels, random = {}, [], False
    for e in p.experiments:
        paper_mean, unseen = means(ours(e, which), e.source, over)
        cells[e.source] = (unseen, paper_mean)
        config = e.config()
        if config:
            labels.append(config.clip.label)
            random |= bool(config.clip.random_weights)
    return ModelRow(p.model, labels[0] if labels else "(not run)", cells, random)


def reference_row(sources: list[str], over: tuple[str, ...]) -> ModelRow:
    """The paper's CAFE (ViT-B/32) Table 1 numbers, averaged over the same test sets as ours."""
    cells = {}
    for s in sources:
        paper_mean, unseen = means(paper.CAFE_CROSS_DOMAIN.get(s, {}), s, over)
        cells[s] = (unseen, paper_mean)
    return ModelRow(PAPER_ROW, "published (OpenAI ViT-B/32)", cells)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def models_markdown(title: str, rows: list[ModelRow], sources: list[str], note: str) -> str:
    """The table: per source its unseen mean and paper-style mean, then the average unseen mean."""
    names = [paper.DATASET_NAMES.get(s, s) for s in sources]
    head = "| model | weights | " + " | ".join(f"{n}: unseen | {n}: paper Mean" for n in names) + \
        " | average unseen |"
    lines = [f"## {title}", "", head, "|" + "---|" * (3 + 2 * len(sources))]
    for r in rows:
        cells = " | ".join(f"{_cell(r.cells.get(s, (None, None))[0])} | {_cell(r.cells.get(s, (None, None))[1])}"
                           for s in sources)
        lines.append(f"| {r.label} | {r.extractor} | {cells} | {_cell(r.average_unseen)} |")
    return "\n".join(lines + ["", note]) + "\n"


def study_settings(plans: list[ModelPlan], which: str) -> tuple[list[str], bool]:
    """The deviations of every model's runs together (each named once) and whether any used random weights."""
    deviations: list[str] = []
    random = False
    for p in plans:
        s = Settings.from_runs(p.experiments, which)
        random |= s.random_clip
        deviations += [d for d in s.deviations() if d not in deviations]
    return deviations, random


def write_models_table(plans: list[ModelPlan], results: Path, which: str = "last") -> list[Path]:
    """``results/models.md``, ``models.json`` and the heat map ``models.png``."""
    sources = list(dict.fromkeys(e.source for p in plans for e in p.experiments))
    over = tuple(d for d in paper.DATASETS if d in sources) or paper.DATASETS
    rows = [model_row(p, which, over) for p in plans]
    deviations, random = study_settings(plans, which)
    random |= any(r.random_weights for r in rows)
    epoch = "final epoch" if which == "last" else "best epoch on the source test set"
    title = f"Frozen extractors: CAFE Table 1 per model (accuracy %, {epoch})" + "".join(f" — {d}" for d in deviations)
    over_text = ", ".join(paper.DATASET_NAMES[d] for d in over)
    note = (("**RANDOM WEIGHTS — not a real result.** " if random else "") +
            f"Means over the test sets run ({over_text}): unseen = the source's own excluded, paper Mean = included. "
            f"The reference row is the paper's Table 1 (CAFE, OpenAI CLIP ViT-B/32), averaged over the same sets. "
            "A model's own Table 1 is in models/<model>/table1.md.")
    results.mkdir(parents=True, exist_ok=True)
    md = results / "models.md"
    md.write_text(models_markdown(title, rows + [reference_row(sources, over)], sources, note))
    data = {"title": title, "which": which, "over": list(over), "random_weights": random, "deviations": deviations,
            "rows": [{"model": r.label, "weights": r.extractor, "random_weights": r.random_weights,
                      "sources": {s: {"unseen_mean": u, "paper_mean": m} for s, (u, m) in r.cells.items()},
                      "average_unseen": r.average_unseen} for r in rows],
            "reference": {s: {"unseen_mean": u, "paper_mean": m}
                          for s, (u, m) in reference_row(sources, over).cells.items()}}
    (results / "models.json").write_text(json.dumps(data, indent=2))
    return [md, results / "models.json", _heat_map(rows, sources, results / "models.png", random)]


def _heat_map(rows: list[ModelRow], sources: list[str], path: Path, random: bool) -> Path:
    from .figures import plot_models  # matplotlib: only when the table is written

    reference = reference_row(sources, tuple(d for d in paper.DATASETS if d in sources) or paper.DATASETS)
    values = {r.label: {s: u for s, (u, _) in r.cells.items()} for r in [*rows, reference]}
    return plot_models(values, [r.label for r in rows] + [reference.label], sources, path,
                       title="Unseen-target mean accuracy (%) per frozen extractor and source", random_weights=random)
