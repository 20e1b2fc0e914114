"""Issue 26 (26b): `cafe reproduce` titles name every reduced setting (limited caches, epochs, image size,
views) as they name random weights; its dry run names the CLIP weights and checks the existing caches."""

from __future__ import annotations

import json
from pathlib import Path

from cafe_cache.errors import CafeError
from cafe_cache.reproduce import Experiment, Settings, write_tables
from cafe_cache.run.config import TrainConfig
from cli.reproduce import parse_extract_args, parse_train_args

from .conftest import make_cache, set_cache_attrs, write_eval_results, write_folder_dataset, write_run_config
from .test_reproduce import (  # noqa: F401 (a fixture)
    REPO,  # noqa: F401 (a fixture)
    cafe,
    two_datasets,
)


def limited_run(tmp_path: Path, limit: int | None) -> Experiment:
    """A run folder as `cafe train --epochs 1 --image-size 32` leaves it, its source cache a --limit one."""
    cache_dir = tmp_path / "cache"
    make_cache(write_folder_dataset(tmp_path / "rafdb", {"train": 2, "test": 2}), cache_dir / "rafdb.h5",
               cache_name="rafdb")
    if limit is not None:  # what `cafe extract --limit N` records
        set_cache_attrs(cache_dir / "rafdb.h5", subset=json.dumps({"limit": limit}))
    run = tmp_path / "runs" / "table1" / "rafdb"
    write_eval_results(run, {"rafdb": 70.0})
    write_run_config(run, {"online_clip": True, "epochs": 1, "image_size": 32, "limit": 70},
                     backbone_init={"source": "/w/resnet18_msceleb.pth"}, mask_precision="fp32",
                     clip={"random_weights": False, "fingerprint": json.dumps({"views": ["clean"]})},
                     source_cache=str(cache_dir / "rafdb.h5"))
    return Experiment("1", "CAFE", "rafdb", run)


def test_table_titles_name_limit_epochs_image_size_and_views(tmp_path):
    title = write_tables([limited_run(tmp_path, 50)], tmp_path / "results")[0].read_text().splitlines()[0]
    assert "1 epoch, not the paper's 60" in title
    assert "32px mask input, not 224" in title
    assert "at most 70 training images" in title
    assert "partial caches (rafdb: --limit 50 per split)" in title
    assert "views clean, not clean,hflip" in title


def test_settings_from_the_command_line_name_the_reductions():
    train = parse_train_args("--epochs 2 --image-size=64", "fp32")[0]
    s = Settings.from_configs("last", parse_extract_args("--limit 20 --views clean"), train)
    assert s.reductions() == ["2 epochs, not the paper's 60", "64px mask input, not 224",
                              "partial caches (every cache: --limit 20 per split), not the whole datasets",
                              "views clean, not clean,hflip"]
    paper = Settings.from_configs("last", parse_extract_args(""), parse_train_args("", "fp32")[0])
    assert paper.reductions() == [] and paper.deviations() == [  # the paper's settings: nothing reduced
        "ImageNet init, not the paper's", "cached CLIP views, not per-step CLIP"]
    assert TrainConfig.epochs == 60 and paper.epochs == 60  # the defaults are cafe train's


def test_dry_run_names_the_weights_and_what_a_limited_cache_will_do(two_datasets):  # noqa: F811
    cache_dir = two_datasets / "cache"
    make_cache(two_datasets / "raf", cache_dir / "rafdb.h5", dataset="rafdb", cache_name="rafdb")
    set_cache_attrs(cache_dir / "rafdb.h5", subset=json.dumps({"limit": 5}))
    args = ("reproduce", "--tables", "1", "--extract-args", "--random-weights")
    dry = cafe(*args, "--dry-run")
    assert dry.exit_code == 0, dry.stderr[-2000:] + repr(dry.exception)
    lines = dry.stderr.splitlines()
    assert "CLIP weights: ViT-B-32 RANDOM WEIGHTS (seed 0)" in lines
    assert any(line.startswith("rafdb: cache/rafdb.h5 complete") and "--limit 5 per split" in line for line in lines)
    assert any(line.startswith("would stop: cache/rafdb.h5: it holds --limit 5 per split, --extract-args ask for "
                               "the whole dataset") for line in lines), dry.stderr
    assert any(line.startswith("mma: no cache yet") for line in lines)
    real = cafe(*args)
    assert isinstance(real.exception, CafeError) and "would refuse it" in str(real.exception)
    assert not (two_datasets / "cache" / "mma.h5").exists()  # stopped before any step ran
