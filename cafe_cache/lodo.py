"""``cafe reproduce --protocol lodo``: leave one domain out.

For every configured dataset D: train on all the others together (``TrainConfig(source="a,b,c")``, plain
union) and test on D, the held-out set, and on every other cache present (the sources' own test sets
and extra targets such as CK+ or JAFFE). CAFE and the no_mask baseline (plain ResNet-18 + FC, Table 2's
first row) are trained the same way. Beside each held-out set stands the single-source Table 1 run
that scores best on it (its runs are part of the plan), so the table shows what the extra sources buy.

Run folders: ``<runs>/lodo/<held-out>/{cafe,no_mask}`` and Table 1's ``<runs>/table1/<source>``.
Results: ``results/lodo.md``, ``results/lodo.json`` and the heat map ``results/lodo.png``. Finished runs
are skipped and an interrupted one resumes, as for the paper's tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from . import paper
from .errors import CafeError
from .extract.paths import find_caches
from .extract.reader import FeatureCache
from .model.variants import CAFE, NO_MASK
from .options import DEFAULT_WHICH
from .reproduce import (
    MSCELEB_HINT,
    Experiment,
    ReproduceJob,
    Settings,
    extract_all,
    plan,
    say_settings,
    train_all,
    usable_datasets,
)
from .results import EvalResult, read_eval_result_if_any
from .run.folder import RunFolder
from .steps import Say, Views

MIN_DATASETS = 3  # with two, "all the others" is one dataset: that is Table 1
METHODS = (("CAFE", CAFE.name, None), ("baseline (no mask)", NO_MASK.name, NO_MASK.name))  # (row, folder, variant)


@dataclass
class LodoRun:
    """One training of the protocol: ``method`` on every dataset but ``held_out``."""

    held_out: str
    sources: list[str]
    method: str  # the row's name: "CAFE" or "baseline (no mask)"
    run: Path
    variant: str | None = None  # None: the job's own (CAFE)

    def results(self, which: str = DEFAULT_WHICH) -> EvalResult | None:
        return read_eval_result_if_any(RunFolder(self.run).results_json(which))

    def accuracy(self, which: str = DEFAULT_WHICH) -> dict[str, float]:
        res = self.results(which)
        return res.accuracies if res else {}

    def as_experiment(self) -> Experiment:
        """The same run as :class:`~cafe_cache.reproduce.Experiment` (for :meth:`Settings.from_runs`)."""
        return Experiment("lodo", self.method, ",".join(self.sources), self.run, variant=self.variant)


def plan_lodo(datasets: list[str], runs: Path) -> list[LodoRun]:
    """Every held-out dataset with each method, trained on the others in the order given."""
    if len(datasets) < MIN_DATASETS:
        raise CafeError(f"--protocol lodo needs at least {MIN_DATASETS} datasets (have {', '.join(datasets)}): with "
                        "two, training on the other one is Table 1's cross-domain run (`cafe reproduce --tables 1`).")
    return [LodoRun(d, [s for s in datasets if s != d], method, runs / "lodo" / d / folder, variant)
            for d in datasets for method, folder, variant in METHODS]


def extra_targets(cache_dir: Path, datasets: list[str]) -> list[str]:
    """Complete caches in ``cache_dir`` besides the protocol's datasets (e.g. ckplus, jaffe): tested too."""
    return [p.stem for p in find_caches(cache_dir) if p.stem not in datasets and FeatureCache(p).complete]


def reproduce_lodo(job: ReproduceJob, say: Say, views: Views | None = None) -> list[Path]:
    """Extract every usable dataset, train Table 1's single-source runs and the protocol's runs, then write
    ``lodo.md``, ``lodo.json`` and ``lodo.png`` (the markdown's path returned, the others said; none with
    ``--dry-run``). A failed run is named after the tables of the others are written."""
    say("protocol: leave one domain out (train on all configured datasets but one, test on that one)")
    say_settings(job.settings(), say)
    usable = usable_datasets(job, say)
    runs = plan_lodo(usable, job.runs)
    runner = job.runner(say, views)
    extract_all(job, runner, usable)
    targets = usable + extra_targets(job.cache_dir, usable)
    say(f"held-out sets: {', '.join(usable)}; every run is tested on {','.join(targets)}")
    singles = plan(usable, job.runs, ("1",))
    train_all(job, runner, singles + [r.as_experiment() for r in runs], targets, say)
    if job.dry_run:
        return []
    markdown, *others = write_lodo(runs, singles, job.results, job.which)
    for path in others:
        say(f"written {path}")
    runner.check()
    return [markdown]


# --------------------------------------------------------------------------- results


@dataclass
class HeldOutRow:
    """One held-out dataset's line of ``lodo.md``."""

    held_out: str
    sources: list[str]
    accuracy: dict[str, float | None]  # method -> accuracy on the held-out set (None: not run yet)
    best_single: tuple[str, float] | None  # (source, accuracy on the held-out set) of the best Table 1 run


def best_single_source(held_out: str, singles: list[Experiment], which: str) -> tuple[str, float] | None:
    """The single-source Table 1 run (another source) with the best accuracy on ``held_out``."""
    scored = []
    for e in singles:
        res = e.results(which)
        if e.source != held_out and res and held_out in res.targets:
            scored.append((res.targets[held_out].accuracy, e.source))
    return (max(scored)[1], max(scored)[0]) if scored else None


def held_out_rows(runs: list[LodoRun], singles: list[Experiment], which: str) -> list[HeldOutRow]:
    rows: dict[str, HeldOutRow] = {}
    for r in runs:
        row = rows.setdefault(r.held_out, HeldOutRow(r.held_out, r.sources, {},
                                                     best_single_source(r.held_out, singles, which)))
        row.accuracy[r.method] = r.accuracy(which).get(r.held_out)
    return list(rows.values())


def _name(d: str) -> str:
    return paper.DATASET_NAMES.get(d, d)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _mean(values: list[float | None]) -> float | None:
    return sum(values) / len(values) if values and all(v is not None for v in values) else None  # type: ignore[misc]


def lodo_markdown(rows: list[HeldOutRow], title: str, note: str) -> str:
    """The held-out table: per held-out set, each method trained on the others, and the best single source."""
    methods = [m for m, _, _ in METHODS]
    head = "| held-out test set | trained on | " + " | ".join(f"{m}, LODO" for m in methods) + \
           " | best single source (Table 1 CAFE) | CAFE LODO − best single |"
    lines = [f"## {title}", "", head, "|" + "---|" * (len(methods) + 4)]
    for row in rows:
        best = row.best_single
        cafe = row.accuracy.get("CAFE")
        gain = None if best is None or cafe is None else cafe - best[1]
        lines.append(f"| {_name(row.held_out)} | {' + '.join(_name(s) for s in row.sources)} | "
                     + " | ".join(_cell(row.accuracy.get(m)) for m in methods)
                     + f" | {f'{_name(best[0])}: {best[1]:.2f}' if best else '-'} | "
                     + ("-" if gain is None else f"{gain:+.2f}") + " |")
    means = [_mean([r.accuracy.get(m) for r in rows]) for m in methods]
    best_mean = _mean([r.best_single[1] if r.best_single else None for r in rows])
    lines.append("| **mean over held-out sets** | | " + " | ".join(_cell(m) for m in means)
                 + f" | {_cell(best_mean)} | " + ("-" if means[0] is None or best_mean is None
                                                  else f"{means[0] - best_mean:+.2f}") + " |")
    return "\n".join(lines + ["", note]) + "\n"


def every_target_markdown(runs: list[LodoRun], which: str) -> str:
    """Every test set each LODO run was evaluated on; the held-out one is marked with *."""
    targets = sorted({t for r in runs for t in r.accuracy(which)},
                     key=lambda t: (t not in paper.DATASETS, paper.DATASETS.index(t) if t in paper.DATASETS else 0, t))
    lines = ["### Every test set (* = held out; the others are the sources' own test sets or extra targets)", "",
             "| method | held out | " + " | ".join(_name(t) for t in targets) + " |",
             "|" + "---|" * (len(targets) + 2)]
    for r in runs:
        acc = r.accuracy(which)
        cells = [("-" if t not in acc else f"{acc[t]:.2f}" + ("*" if t == r.held_out else "")) for t in targets]
        lines.append(f"| {r.method} | {_name(r.held_out)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_lodo(runs: list[LodoRun], singles: list[Experiment], results_dir: Path, which: str = DEFAULT_WHICH
               ) -> list[Path]:
    """``lodo.md``, ``lodo.json`` and (when a run finished) the heat map ``lodo.png``; every title names the
    settings that differ from the official ones and says when weights were random."""
    results_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings.from_runs([r.as_experiment() for r in runs] + singles, which)
    random = settings.random_clip or any(res.random_weights for r in runs if (res := r.results(which)))
    epoch = "final epoch" if which == "last" else "best epoch on the sources' test sets (test-set selection)"
    title = f"Leave-one-domain-out accuracy (%) on the held-out set, {epoch}" + \
        "".join(f" — {d}" for d in settings.deviations())
    note = ("The best single source is the Table 1 run (CAFE, one source) that scores highest on the held-out set: "
            "chosen on that test set, so it is an upper reference, not a method. LODO runs train on the union of "
            "the other datasets (`cafe train --source a,b,...`, --balance none); `best` weights are chosen on the "
            "mean of the sources' test sets (test-set selection).")
    if not settings.paper_init:
        note += " " + MSCELEB_HINT
    if random:
        note = "**RANDOM WEIGHTS — not a real result.** " + note
    rows = held_out_rows(runs, singles, which)
    md = results_dir / "lodo.md"
    md.write_text(lodo_markdown(rows, title, note) + "\n" + every_target_markdown(runs, which))
    data = {"title": title, "which": which, "random_weights": random, "deviations": settings.deviations(),
            "held_out": [{"held_out": r.held_out, "sources": r.sources, "accuracy": r.accuracy,
                          "best_single_source": r.best_single} for r in rows],
            "runs": [{"method": r.method, "held_out": r.held_out, "sources": r.sources, "run": str(r.run),
                      "accuracy": r.accuracy(which)} for r in runs]}
    (results_dir / "lodo.json").write_text(json.dumps(data, indent=2))
    written = [md, results_dir / "lodo.json"]
    drawn = [(f"{r.method}, all but {_name(r.held_out)}", r.held_out, r.accuracy(which)) for r in runs
             if r.accuracy(which)]
    if drawn:
        from .figures import plot_lodo  # matplotlib, torch: only when there is something to draw

        names = {t: _name(t) for _, _, acc in drawn for t in acc}
        written.append(plot_lodo(drawn, results_dir / "lodo.png", names, title=title.split(" — ")[0],
                                 random_weights=random))
    return written
