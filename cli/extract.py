"""``cafe extract``: stage one, frozen CLIP features of a dataset into the HDF5 cache.

Parses the options into an :class:`~cafe_cache.extract.job.ExtractJob` (the defaults are its fields'
and :class:`~cafe_cache.extract.weights.ClipSpec`'s) and runs :func:`~cafe_cache.extract.job.extract_dataset`,
drawing its lines and progress bars.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from cafe_cache.datasets.options import NativeFlags
from cafe_cache.errors import CafeError
from cafe_cache.extract.job import ExtractJob, parse_views
from cafe_cache.extract.weights import ClipSpec
from cafe_cache.options import EXTRACT_PRECISIONS as PRECISIONS
from cafe_cache.options import VIEWS, field_default, split_list
from cafe_cache.progress import split_bars

from .common import bounded, progress, say, say_plain
from .native_flags import CKPLUS_FOLD, CKPLUS_NEUTRAL, CKPLUS_PEAK, KDEF_VIEWS


def _job(name: str):
    return field_default(ExtractJob, name)


def _clip(name: str):
    return field_default(ClipSpec, name)


def extract(
    ctx: typer.Context,
    dataset: str = typer.Option(..., "--dataset", "-d",
                                help="Reader name: rafdb, ferplus, affectnet, sfew, mma, folder, ckplus, jaffe, "
                                "kdef, expw (`cafe datasets` lists them)."),
    root: Path | None = typer.Option(_job("root"),
                                     help="Dataset root. Default: $CAFE_<NAME>_ROOT or cafe.toml \\[datasets]."),
    name: str | None = typer.Option(_job("name"), help="Cache name (file stem). Default: the dataset name; for "
                                    "`folder`, the root folder's name."),
    class_map: str | None = typer.Option(_job("class_map"), help="folder reader: explicit class map "
                                         "'folder=id,...' (ids 0..6, -1 = skip)."),
    ferplus_ties: str | None = typer.Option(_job("ferplus_ties"), "--ferplus-ties", help="FERPlus tie rule for a "
                                            "shared highest vote count: drop (default: the row is skipped) or first "
                                            "(the first tied class in csv order wins). Recorded in the cache."),
    ckplus_peak: int | None = CKPLUS_PEAK,
    ckplus_neutral: str | None = CKPLUS_NEUTRAL,
    ckplus_fold: str | None = CKPLUS_FOLD,
    kdef_views: str | None = KDEF_VIEWS,
    splits_opt: str | None = typer.Option(_job("splits"), "--splits", help="Extract only these splits, e.g. 'test' "
                                          "for a target-only dataset (eval reads only test). Recorded in the cache."),
    limit: int | None = typer.Option(_job("limit"), "--limit", callback=bounded(),
                                     help="At most N images per split: the first N "
                                     "of a fixed shuffle (deterministic), for quick runs. Recorded in the cache; a "
                                     "later full extraction or `cafe train` says so."),
    skip_bad: bool = typer.Option(_job("skip_bad"), "--skip-bad", help="Skip malformed label lines / missing images "
                                  "(counted) instead of stopping."),
    model: str = typer.Option(_clip("model"), help="The frozen extractor: an open_clip name (ViT-B-32, open_clip:"
                              "ViT-L-14) or timm:NAME.TAG, any timm model (timm:vit_small_patch14_dinov2.lvd142m)."),
    pretrained: str = typer.Option(_clip("pretrained"),
                                   help="open_clip pretrained tag (downloads, or uses your HF cache). timm models "
                                   "take their tag in the --model name and use their hub weights."),
    weights: Path | None = typer.Option(_clip("weights"),
                                        help="Local checkpoint file of --model (overrides --pretrained)."),
    random_weights: bool = typer.Option(_clip("random_weights"), "--random-weights", help="Randomly initialised "
                                        "model (seeded). For smoke tests only; recorded in the cache."),
    seed: int = typer.Option(_clip("seed"), callback=bounded(), help="Seed of --random-weights."),
    activation: str = typer.Option(_clip("activation"), help="CLIP MLP activation: auto (what the weights were "
                                   "trained with: QuickGELU for OpenAI's CLIP and the default ViT-B-32, as the "
                                   "official code), quickgelu or gelu."),
    views: str = typer.Option(",".join(_job("views")), help=f"Views to store per image, from {', '.join(VIEWS)}."),
    preprocess: str = typer.Option(_job("preprocess"), help="official: resize 224x224 + ImageNet mean/std (the CAFE "
                                   "code, every extractor); model (or clip): its own (CLIP's, a timm pretrained_cfg)."),
    dtype: str = typer.Option(_job("dtype"), help="Stored feature dtype: float16 or float32."),
    precision: str = typer.Option(_job("precision"), help=f"Compute precision {'/'.join(PRECISIONS)}; auto = fp16 "
                                  "on CUDA (as the official code), fp32 on CPU."),
    batch_size: int = typer.Option(_job("batch_size"), callback=bounded(),
                                   help="Images per CLIP forward pass (each view adds a pass's worth)."),
    device: str = typer.Option(_job("device"), help="auto, cpu, cuda, cuda:1, ..."),
    workers: int | None = typer.Option(_job("workers"), callback=bounded(),
                                       help="Image-decoding worker processes. Default: "
                                       "min(8, CPUs) on CUDA, 0 on the CPU (there workers only take cores from the "
                                       "model)."),
    store_images: int = typer.Option(_job("store_images"), "--store-images", callback=bounded(), metavar="SIZE",
                                     help="Also "
                                     "store every image resized to SIZExSIZE as uint8 (224 = the paper's training "
                                     "input), so `cafe train`/`cafe eval` read arrays instead of decoding files. "
                                     "3*SIZE^2 bytes per image (147 KB at 224). 0 = off."),
    cache_dir: Path = typer.Option(_job("cache_dir"), help="Folder of the feature caches (one .h5 per dataset)."),
    force: bool = typer.Option(_job("force"), "--force",
                               help="Recompute even if a finished or different cache exists."),
) -> None:
    """Run a frozen image model (CLIP by default, or timm:NAME) over a dataset once and store its features (stage one).

    Resumable: rerun the same command after an interruption and it continues where it stopped.
    Several GPUs or nodes: launch it with torchrun (`torchrun --nproc-per-node N -m cli extract ...`);
    each process extracts shards of the dataset and the result is the same single cache.
    """
    from cafe_cache.extract.job import extract_dataset  # torch, open_clip: only when running

    view_list = parse_views(views)
    job = ExtractJob(
        dataset=dataset, root=root, name=name, class_map=class_map, ferplus_ties=ferplus_ties, skip_bad=skip_bad,
        native=NativeFlags(ckplus_peak, ckplus_neutral, ckplus_fold, kdef_views),
        splits=tuple(split_list(splits_opt) or ()) or None, limit=limit,
        clip=ClipSpec(model=model, pretrained=pretrained, weights=str(weights) if weights else None,
                      random_weights=random_weights, seed=seed, activation=activation),
        views=view_list, preprocess=preprocess, dtype=dtype, precision=precision, batch_size=batch_size,
        device=device, workers=workers, store_images=store_images, cache_dir=cache_dir, force=force)
    _check_weight_flags(ctx, random_weights, weights, model)
    extract_dataset(job, say=say, stopped=say_plain, bars=_bars)


def _check_weight_flags(ctx: typer.Context, random_weights: bool, weights: Path | None, model: str) -> None:
    """--random-weights cannot be combined with a typed --pretrained or --weights: one of them would be ignored;
    a timm model takes its tag in its name, never from --pretrained."""
    from cafe_cache.extract.extractor import split_model

    source = ctx.get_parameter_source("pretrained")
    typed = source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")
    if typed and split_model(model)[0] == "timm":
        raise CafeError(f"--pretrained is open_clip's; a timm model takes its weights' tag in its name "
                        f"(--model {model}.TAG, e.g. timm:vit_small_patch14_dinov2.lvd142m). Drop --pretrained.")
    if random_weights and (typed or weights):
        raise CafeError(f"--random-weights with {'--pretrained' if typed else '--weights'}: pick one (random "
                        "weights ignore the other).")


@contextmanager
def _bars(suffix: str) -> Iterator[tuple]:
    """Progress bars of one rank (task names end in ``suffix``) and the (on_plan, on_batch) callbacks
    that drive them, for :func:`~cafe_cache.extract.job.extract_dataset`."""
    with progress() as bar:
        yield split_bars(bar, suffix, say_plain)
