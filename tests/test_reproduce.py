"""make reproduce: the experiment plan, skipping unconfigured datasets, and the tables."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cafe_cache.reproduce import available_datasets, plan

from .conftest import configure_raf_and_mma, write_eval_results, write_run_config

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def two_datasets(tmp_path, monkeypatch):
    """RAF-DB and MMA in their native layouts (synthetic), the other three unconfigured."""
    return configure_raf_and_mma(tmp_path, monkeypatch, train=6, test=3, size=40)


def test_plan_covers_the_tables_and_trains_the_full_model_once(tmp_path):
    exps = plan(["rafdb", "ferplus", "mma"], tmp_path, ("1", "2", "4", "5"), sweep=True)
    runs = {e.run for e in exps}
    assert sum(e.table == "1" for e in exps) == 3
    assert [e.label for e in exps if e.table == "2"] == ["baseline (no mask)", "mask", "mask + separation",
                                                          "mask + separation + diverse"]
    full = [e for e in exps if e.label == "mask + separation + diverse"][0]
    assert full.run == tmp_path / "table1" / "rafdb"  # Table 2's full model is Table 1's run
    assert len(runs) == 3 + 3 + 1 + 1 + 10
    assert {tuple(e.flags) for e in exps if e.table in "245"} >= {
        ("--variant", "no_mask"), ("--w-div", "0"), ("--variant", "clip_finetune"), ("--variant", "no_sigmoid")}


def test_unconfigured_datasets_are_named_with_the_setting_to_fill(two_datasets):
    usable, missing = available_datasets(two_datasets / "cache")
    assert usable == ["rafdb", "mma"]
    assert any("CAFE_SFEW_ROOT" in m and "cafe.toml" in m for m in missing) and len(missing) == 3


@pytest.mark.slow
def test_reproduce_runs_end_to_end_and_writes_tables(two_datasets):
    cmd = [sys.executable, "-m", "cli.main", "reproduce", "--tables", "1,5",
           "--extract-args", "--model cafe-tiny --random-weights --workers 0",
           "--train-args", "--backbone-weights none --epochs 1 --image-size 32 --workers 0 --no-plots"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=two_datasets)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "skipping" in proc.stderr and "CAFE_AFFECTNET_ROOT" in proc.stderr
    t1 = (two_datasets / "results" / "table1.md").read_text()
    assert "RANDOM WEIGHTS" in t1 and "| CAFE | RAF-DB |" in t1 and "| CAFE (paper) | RAF-DB | 88.72" in t1
    assert "| CAFE | MMA |" in t1 and "| zero-shot CLIP (no FER training) | - |" in t1
    assert (two_datasets / "results" / "cross-domain.png").stat().st_size > 10_000
    t5 = (two_datasets / "results" / "table5.md").read_text()
    assert "| No sigmoid | RAF-DB |" in t5 and "58.05" not in t5.split("(paper)")[0]
    # a rerun repeats nothing
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=two_datasets)
    assert again.returncode == 0 and again.stderr.count("done already") == 3


def test_nproc_per_node_launches_every_extraction_and_training_with_torchrun(two_datasets):
    cmd = [sys.executable, "-m", "cli.main", "reproduce", "--tables", "1", "--nproc-per-node", "4", "--dry-run"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=two_datasets)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("$ ")]
    launched = [line for line in lines if line.startswith("$ torchrun --standalone --nproc-per-node=4 -m cli ")]
    assert len(launched) == 4  # extract rafdb, mma; train rafdb, mma
    assert [line for line in lines if line not in launched][0].startswith("$ cafe zeroshot")


def test_dry_run_shows_the_official_settings_and_names_each_deviation(two_datasets):
    cmd = [sys.executable, "-m", "cli.main", "reproduce", "--tables", "1", "--dry-run"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=two_datasets)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = " ".join(proc.stderr.split())  # Rich wraps long lines
    assert "evaluation: final epoch (official)" in out and "mask branch: fp32 (official)" in out
    assert "resnet18_msceleb.pth" in out and "not the paper's MS-Celeb init" in out
    trains = [line for line in proc.stderr.splitlines() if line.startswith("$ cafe train")]
    assert len(trains) == 2
    assert all("--precision fp32" in t and "--eval-which last,best" in t for t in trains)
    fast = subprocess.run(cmd + ["--precision", "bf16", "--which", "best"], capture_output=True, text=True, env=env,
                          cwd=two_datasets)
    out = " ".join(fast.stderr.split())
    assert fast.returncode == 0 and "mask branch: bf16" in out and "(test-set selection)" in out
    assert "mask branch: bf16 (official)" not in out


def test_table_titles_name_every_setting_that_is_not_the_official_one(tmp_path):
    from cafe_cache.reproduce import Experiment, write_tables
    run = tmp_path / "table1" / "rafdb"
    for which, acc in (("last", 70.0), ("best", 72.0)):
        write_eval_results(run, {"rafdb": acc, "mma": acc - 20}, which=which)
    config = {"backbone_init": {"source": "imagenet"}, "mask_precision": "bf16", "clip": {"random_weights": False}}
    write_run_config(run, {"online_clip": False}, **config)
    exps = [Experiment("1", "CAFE", "rafdb", run)]
    t1 = write_tables(exps, tmp_path / "results")[0].read_text()
    title = t1.splitlines()[0]
    assert "final epoch" in title and "ImageNet init, not the paper's" in title
    assert "cached CLIP views, not per-step CLIP" in title and "bf16 mask branch, not fp32" in title
    assert "resnet18_msceleb.pth" in t1  # how to supply the paper's init
    assert "| CAFE | RAF-DB | 70.00 |" in t1 and "test-set selection" in t1 and "| 52.00 |" in t1  # best: extra column
    config.update(backbone_init={"source": "/w/resnet18_msceleb.pth"}, mask_precision="fp32")
    write_run_config(run, {"online_clip": True}, **config)
    title = write_tables(exps, tmp_path / "results")[0].read_text().splitlines()[0]
    assert title == "## Table 1: cross-domain accuracy (%), final epoch"  # the official run: nothing to name
