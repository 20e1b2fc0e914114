"""The paper's experiments as a plan of ``cafe extract`` / ``cafe train`` commands, and their tables.

Tables (results/): Table 1 cross-domain matrix (train on each of the five datasets, test on all),
Table 2 ablation (no mask, mask, + separation, + diverse), Table 4 CLIP+finetune, Table 5 no
sigmoid, and the loss-weight sweep of Fig. 3. Ablations train on RAF-DB as the paper does (or on
the first available dataset, said in the table). Each table prints our numbers next to the paper's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from . import paper
from .datasets import default_root, root_env_var
from .extract.cache import FeatureCache, cache_path
from .options import TABLES

SWEEP_SEP = (0.5, 1.0, 1.5, 2.0, 3.0)  # with w_div = 5
SWEEP_DIV = (1.0, 3.0, 5.0, 7.0, 10.0)  # with w_sep = 1.5


@dataclass
class Experiment:
    table: str  # "1", "2", "4", "5" or "sweep"
    label: str  # the row's name in its table
    source: str
    run: Path
    flags: list[str] = field(default_factory=list)  # extra `cafe train` flags

    def results(self) -> dict | None:
        f = self.run / "eval-best" / "results.json"
        return json.loads(f.read_text()) if f.is_file() else None


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
        exps.append(Experiment("4", "CLIP+Finetune", abl, runs / "table4" / "clip_finetune", ["--variant", "clip_finetune"]))
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


def _means(acc: dict[str, float], source: str) -> tuple[float | None, float | None]:
    have = [d for d in paper.DATASETS if d in acc]
    unseen = [d for d in have if d != source]
    return (sum(acc[d] for d in have) / len(have) if len(have) == len(paper.DATASETS) else None,
            sum(acc[d] for d in unseen) / len(unseen) if unseen else None)


def table_markdown(title: str, rows: list[tuple[str, str, dict[str, float]]], note: str = "") -> str:
    """rows: (label, source, {target: acc}); columns are the five datasets then the two means."""
    head = "| method | trained on | " + " | ".join(paper.DATASET_NAMES[d] for d in paper.DATASETS) + \
           " | paper Mean (5 sets, source incl.) | unseen Mean |"
    lines = [f"## {title}", "", head, "|" + "---|" * (len(paper.DATASETS) + 4)]
    for label, source, acc in rows:
        pm, um = _means(acc, source)
        cells = " | ".join(_cell(acc.get(d)) for d in paper.DATASETS)
        lines.append(f"| {label} | {paper.DATASET_NAMES.get(source, source)} | {cells} | {_cell(pm)} | {_cell(um)} |")
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def ours(exp: Experiment) -> dict[str, float]:
    res = exp.results()
    return {t: m["accuracy"] for t, m in res["targets"].items()} if res else {}


def zero_shot_rows(results_dir: Path) -> list[tuple[str, str, dict[str, float]]]:
    """Reference lines with no FER training at all, from `cafe zeroshot` (results/zeroshot/results.json)."""
    f = results_dir / "zeroshot" / "results.json"
    if not f.is_file():
        return []
    tables = json.loads(f.read_text())["tables"]
    return [(f"zero-shot {t['method']} (no FER training)", "-", {k: m["accuracy"] for k, m in t["targets"].items()})
            for t in tables]


def write_tables(experiments: list[Experiment], results_dir: Path) -> list[Path]:
    """Markdown per table with the paper's rows beside ours, plus results/summary.json."""
    results_dir.mkdir(parents=True, exist_ok=True)
    random = any((e.results() or {}).get("random_weights") for e in experiments)
    warn = "**RANDOM WEIGHTS — not a real result.** " if random else ""
    missing = "Datasets not run are shown as -; the paper's rows are from the published tables."
    by_table: dict[str, list[Experiment]] = {}
    for e in experiments:
        by_table.setdefault(e.table, []).append(e)
    written = []
    paper_rows = {
        "1": lambda srcs: [(f"CAFE (paper)", r.source, dict(r.acc)) for r in paper.TABLE1
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
    summary = {}
    for table, exps in by_table.items():
        rows = [(e.label, e.source, ours(e)) for e in exps]
        if table == "1":
            rows += zero_shot_rows(results_dir)
        if table == "5":
            full = [e for e in experiments if e.table == "1" and e.source == exps[0].source]
            rows += [("CAFE", e.source, ours(e)) for e in full]
        sources = {e.source for e in exps}
        text = table_markdown(titles[table] + (" — RANDOM WEIGHTS" if random else ""),
                              rows + paper_rows[table](sources), warn + missing)
        path = results_dir / f"table{table}.md" if table != "sweep" else results_dir / "sweep.md"
        path.write_text(text)
        written.append(path)
        summary[table] = [{"label": l, "source": s, "accuracy": a} for l, s, a in rows]
    (results_dir / "summary.json").write_text(json.dumps({"random_weights": random, "tables": summary}, indent=2))
    return written
