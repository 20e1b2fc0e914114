"""``cafe reproduce``: the paper's tables, by extracting and training every experiment in this process
(:func:`cafe_cache.reproduce.reproduce`).

``--extract-args`` and ``--train-args`` are parsed here, once, by the ``cafe extract`` and ``cafe train``
commands' own options (the same defaults and checks) into the typed extraction and training every step
starts from; a bad flag in them is one line before anything runs.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from cafe_cache.errors import CafeError
from cafe_cache.options import DEFAULT_WHICH, TABLES, TRAIN_PRECISIONS, split_list

from . import extract as extract_cmd
from . import train as train_cmd
from .common import bounded, console, progress, say_plain
from .evaluate import print_results, show_evaluation

# set by cafe reproduce for every step: refused in --extract-args / --train-args
SET_BY_REPRODUCE = {"extract": ("name", "cache_dir"),
                    "train": ("source", "cache_dir", "out", "resume", "targets", "evaluate", "eval_which")}


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
    from cafe_cache.lodo import reproduce_lodo  # torch, h5py: not for --help
    from cafe_cache.reproduce import ReproduceJob, reproduce

    train, plots = parse_train_args(train_args, precision)
    job = ReproduceJob(datasets=split_list(datasets), tables=tuple(split_list(tables) or ()), sweep=sweep,
                       cache_dir=cache_dir, runs=runs, results=results, extract=parse_extract_args(extract_args),
                       train=train, plots=plots, expclip=expclip, which=which, nproc_per_node=nproc_per_node,
                       dry_run=dry_run, protocol=protocol)

    views = _views()
    if models is not None:
        from cafe_cache.models_study import reproduce_models

        written = reproduce_models(job, split_list(models) or [], say_plain, views)  # commands on one line
    else:
        written = (reproduce_lodo if job.protocol == "lodo" else reproduce)(job, say_plain, views)
    for path in written:
        console.print(f"written {path}")
        if path.suffix == ".md":
            console.print(path.read_text())


def _views():
    """What the steps show: the lines, bars and tables of `cafe extract`, `cafe train` and `cafe zeroshot`."""
    from cafe_cache.steps import Views

    def zero_shot_tables(tables: list) -> None:
        for t in tables:
            print_results(t.targets, None, t.title)

    return Views(say=say_plain, plain=say_plain, extract_bars=extract_cmd.bars, train_bars=progress,
                 show=show_evaluation, show_zero_shot=zero_shot_tables)


def _parse(command, name: str, option: str, text: str, fixed: tuple[str, ...] = ()) -> typer.Context:
    """``text`` (after the words ``fixed``) parsed by the options of ``cafe NAME`` (their defaults, types and
    bounds); an error is one line."""
    app = typer.Typer()
    app.command(name)(command)
    try:
        return typer.main.get_command(app).make_context(name, [*fixed, *_words(text, option)])
    except typer.TyperException as e:  # an unknown flag, a value of the wrong type
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        raise CafeError(f"{option} {text!r}: {message}") from None
    except CafeError as e:
        raise CafeError(f"{option}: {e}") from None


def _words(text: str, option: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as e:
        raise CafeError(f"{option} {text!r}: {e} (quote as in a shell).") from None


def _refuse_set_by_reproduce(ctx: typer.Context, name: str, option: str) -> None:
    given = train_cmd.given_options(ctx)
    flags = {p.name: p.opts[0] for p in ctx.command.params}
    if taken := [flags[k] for k in SET_BY_REPRODUCE[name] if k in given]:
        raise CafeError(f"{option}: {', '.join(taken)} {'is' if len(taken) == 1 else 'are'} set by cafe reproduce "
                        "for every step (use its own --cache-dir, --runs, --datasets); remove it.")


def parse_train_args(text: str, precision: str):
    """``--train-args`` as the (TrainConfig, plots) every experiment starts from; ``--precision`` is
    ``precision`` unless the words give their own."""
    from cafe_cache.reproduce import default_train
    from cafe_cache.run.config import TrainConfig

    ctx = _parse(train_cmd.train, "train", "--train-args", text)
    _refuse_set_by_reproduce(ctx, "train", "--train-args")
    options = train_cmd.training_options(ctx.params) | {"source": default_train().source}
    if "precision" not in train_cmd.given_options(ctx):
        options["precision"] = precision
    try:
        return TrainConfig.from_dict(options), ctx.params["plots"]
    except CafeError as e:
        raise CafeError(f"--train-args: {e}") from None


def parse_extract_args(text: str):
    """``--extract-args`` as the ExtractJob every extraction starts from (its dataset set per step)."""
    ctx = _parse(extract_cmd.extract, "extract", "--extract-args", text, fixed=("--dataset", ""))
    if ctx.params["dataset"]:
        raise CafeError("--extract-args: --dataset is set by cafe reproduce for every step (use its --datasets); "
                        "remove it.")
    _refuse_set_by_reproduce(ctx, "extract", "--extract-args")
    try:
        return extract_cmd.job_from(ctx)
    except CafeError as e:
        raise CafeError(f"--extract-args: {e}") from None
