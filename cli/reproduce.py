"""``cafe reproduce``: the paper's tables, by running ``cafe extract`` and ``cafe train`` per experiment."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import typer
from rich.markup import escape

from cafe_cache import paper
from cafe_cache.errors import CafeError
from cafe_cache.options import DEFAULT_WHICH, TABLES, TRAIN_PRECISIONS, WHICH

from .common import console, split_list


def _run(cmd: list[str], dry_run: bool, nproc: int = 1) -> None:
    """``cafe CMD`` as one process, or as ``nproc`` processes on this node under torchrun."""
    launcher = ["torchrun", "--standalone", f"--nproc-per-node={nproc}", "-m", "cli"] if nproc > 1 else ["cafe"]
    console.print(f"[bold cyan]$ {shlex.join(launcher + cmd)}[/]", soft_wrap=True)  # one line: copy-pasteable
    if dry_run:
        return
    python = ([sys.executable, "-m", "torch.distributed.run", *launcher[1:]] if nproc > 1
              else [sys.executable, "-m", "cli"])
    proc = subprocess.run([*python, *cmd])
    if proc.returncode != 0:
        raise CafeError(f"`{shlex.join(launcher + cmd)}` failed (exit {proc.returncode}); fix the cause above and "
                        "rerun `cafe reproduce`: finished steps are not repeated.")


def _usable_datasets(cache_dir: Path, datasets: str | None) -> list[str]:
    """The datasets of --datasets (default: all) that have a root or a cache; says which are skipped and why."""
    from cafe_cache.reproduce import available_datasets  # h5py: not for --help

    usable, missing = available_datasets(cache_dir)
    if datasets:
        wanted = split_list(datasets) or []
        unknown = [d for d in wanted if d not in paper.DATASETS]
        if unknown:
            raise CafeError(f"--datasets: unknown {unknown}; choose from {', '.join(paper.DATASETS)}.")
        usable = [d for d in usable if d in wanted]
    for m in missing:
        console.print(f"[yellow]skipping[/] {escape(m)}")  # the message names the [datasets] table
    if not usable:
        raise CafeError("no dataset to run: configure at least one root (README, 'Dataset roots').")
    return usable


def reproduce(
    datasets: str | None = typer.Option(None, help="Subset of rafdb,ferplus,affectnet,sfew,mma; default: every one "
                                                   "with a configured root or cache."),
    tables: str = typer.Option(",".join(TABLES), help="Tables to make: 1 (cross-domain), 2 (ablation), 4 "
                                                      "(CLIP+finetune), 5 (no sigmoid)."),
    sweep: bool = typer.Option(False, "--sweep", help="Also the loss-weight sweep (the paper's Fig. 3)."),
    cache_dir: Path = typer.Option(Path("cache"), help="Feature caches (made here if missing)."),
    runs: Path = typer.Option(Path("runs/reproduce"), help="Run folders, one per experiment."),
    results: Path = typer.Option(Path("results"), help="Where the tables go."),
    extract_args: str = typer.Option("", help="Extra `cafe extract` flags, e.g. '--weights ViT-B-32.pt' or "
                                              "'--random-weights'."),
    train_args: str = typer.Option("", help="Extra `cafe train` flags, e.g. '--backbone-weights "
                                            "resnet18_msceleb.pth'."),
    expclip: Path | None = typer.Option(None, help="Exp-CLIP head checkpoint: adds its zero-shot rows to Table 1."),
    which: str = typer.Option(DEFAULT_WHICH, help="Weights the tables show: last (the final epoch, as the paper) or "
                                                  "best (best on the source's own test set: test-set selection, then "
                                                  "named in every title). Both are evaluated; with last, best's unseen "
                                                  "mean is an extra column."),
    precision: str = typer.Option("fp32", help="Mask-branch precision passed to `cafe train` "
                                               f"({'/'.join(TRAIN_PRECISIONS)}); fp32 as the official code. bf16 is "
                                               "faster on GPUs and named in every title."),
    nproc_per_node: int = typer.Option(1, "--nproc-per-node", min=1, help="Run each extraction and training as this "
                                                                          "many processes on this node (torchrun; one "
                                                                          "per GPU)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the commands without running them."),
) -> None:
    """Reproduce the paper's tables for every dataset whose root is configured (resumable: rerun to continue)."""
    from cafe_cache.report import plot_runs_cross_domain  # torch, matplotlib: only when running
    from cafe_cache.reproduce import MSCELEB_HINT, Settings, plan, write_tables  # h5py: not for --help
    from cafe_cache.runs import RunFolder

    if which not in WHICH:
        raise CafeError(f"--which {which!r}: choose last (the final epoch, official) or best.")
    if precision not in TRAIN_PRECISIONS:
        raise CafeError(f"--precision {precision!r}: choose from {', '.join(TRAIN_PRECISIONS)}.")
    train_words = shlex.split(train_args)
    if not any(w == "--precision" or w.startswith("--precision=") for w in train_words):
        train_words += ["--precision", precision]
    settings = Settings.from_args(which, shlex.split(extract_args), train_words)
    console.print("settings:\n" + "\n".join(f"  {line}" for line in settings.summary()))
    if not settings.paper_init:
        console.print(f"[yellow]not the paper's backbone init[/]: {MSCELEB_HINT}")
    usable = _usable_datasets(cache_dir, datasets)
    wanted_tables = tuple(split_list(tables) or ())
    if bad := [t for t in wanted_tables if t not in TABLES]:
        raise CafeError(f"--tables: unknown {bad}; choose from {', '.join(TABLES)}.")

    for d in usable:  # stage one: finished caches are checked and skipped by cafe extract itself
        _run(["extract", "--dataset", d, "--cache-dir", str(cache_dir), *shlex.split(extract_args)], dry_run,
             nproc_per_node)
    experiments = plan(usable, runs, wanted_tables, sweep)
    targets = ",".join(usable)
    for e in {e.run: e for e in experiments}.values():  # stage two, once per run folder
        if e.results():
            console.print(f"done already: {e.run}")
            continue
        common = ["--cache-dir", str(cache_dir), "--targets", targets, "--out", str(e.run), "--eval-which", "last,best"]
        if RunFolder(e.run).resume.is_file():
            _run(["train", "--resume", *common], dry_run, nproc_per_node)
        else:
            _run(["train", "--source", e.source, *common, *e.flags, *train_words], dry_run,
                 nproc_per_node)
    zeroshot = ["zeroshot", "--targets", targets, "--cache-dir", str(cache_dir), "--out", str(results / "zeroshot")]
    _run(zeroshot + (["--expclip", str(expclip)] if expclip else []), dry_run)  # reference: no FER training
    if dry_run:
        return
    table1 = [e.run for e in experiments if e.table == "1" and e.results()]
    if table1:
        console.print(f"written {plot_runs_cross_domain(table1, results / 'cross-domain.png', which)}")
    for path in write_tables(experiments, results, which):
        console.print(f"written {path}")
        console.print(path.read_text())
