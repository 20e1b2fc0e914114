"""``cafe reproduce``: the paper's tables, by running ``cafe extract`` and ``cafe train`` per experiment
(:func:`cafe_cache.reproduce.reproduce`)."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from cafe_cache.options import DEFAULT_WHICH, TABLES, TRAIN_PRECISIONS, split_list

from .common import bounded, console, say_plain


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
    nproc_per_node: int = typer.Option(1, "--nproc-per-node", callback=bounded(),
                                       help="Run each extraction and training as this "
                                                                          "many processes on this node (torchrun; one "
                                                                          "per GPU)."),
    models: str | None = typer.Option(None, "--models", help="The backbone study: Table 1 once per frozen extractor, "
                                      "e.g. 'ViT-B-32,ViT-L-14,timm:vit_base_patch14_dinov2.lvd142m', each in its own "
                                      "cache folder (CACHE_DIR/<model>), then results/models.md and models.png: one "
                                      "row per model beside the paper's ViT-B/32. Makes Table 1 only."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the commands without running them."),
    protocol: str = typer.Option("paper", help="paper: the paper's tables; lodo: leave one domain out (train on "
                                               "all configured datasets but one, test on that one; CAFE and the "
                                               "no_mask baseline, beside the best single source of Table 1) into "
                                               "results/lodo.md and lodo.png."),
) -> None:
    """Reproduce the paper's tables for every dataset whose root is configured (resumable: rerun to continue)."""
    from cafe_cache.lodo import reproduce_lodo  # h5py: not for --help
    from cafe_cache.reproduce import ReproduceJob, reproduce

    job = ReproduceJob(datasets=split_list(datasets), tables=tuple(split_list(tables) or ()), sweep=sweep,
                       cache_dir=cache_dir, runs=runs, results=results, extract_args=tuple(shlex.split(extract_args)),
                       train_args=tuple(shlex.split(train_args)), expclip=expclip, which=which, precision=precision,
                       nproc_per_node=nproc_per_node, dry_run=dry_run, protocol=protocol)

    def say(line: str) -> None:
        say_plain(line)  # commands on one line

    if models is not None:
        from cafe_cache.models_study import reproduce_models

        written = reproduce_models(job, split_list(models) or [], say)
    else:
        written = (reproduce_lodo if job.protocol == "lodo" else reproduce)(job, say=say)
    for path in written:
        console.print(f"written {path}")
        if path.suffix == ".md":
            console.print(path.read_text())
