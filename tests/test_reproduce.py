"""make reproduce: the experiment plan, skipping unconfigured datasets, and the tables."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from cafe_cache.errors import CafeError
from cafe_cache.reproduce import ReproduceJob, available_datasets, default_train, plan

from .conftest import configure_raf_and_mma, write_eval_results, write_run_config

REPO = Path(__file__).resolve().parents[1]


def cafe(*args: str):
    """``cafe ARGS`` in this process (no Python and torch start-up per call): ``exit_code``, ``stdout``,
    ``stderr``; a user error is ``exception`` (a CafeError: the one line the command prints)."""
    from typer.testing import CliRunner

    from cli.main import app

    return CliRunner().invoke(app, list(args))


def step_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("$ ")]


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
    assert {(e.variant, e.w_sep, e.w_div) for e in exps if e.table in "245"} >= {
        ("no_mask", None, None), (None, 0.0, 0.0), (None, None, 0.0), ("clip_finetune", None, None),
        ("no_sigmoid", None, None)}


def test_an_experiment_is_the_jobs_training_with_its_own_changes(tmp_path):
    base = default_train()
    mask = next(e for e in plan(["mma", "sfew"], tmp_path, ("2",)) if e.label == "mask")
    cfg = mask.train_config(ReproduceJob(train=base).train, tmp_path / "cache")
    assert (cfg.source, cfg.cache_dir, cfg.w_sep, cfg.w_div) == ("mma", str(tmp_path / "cache"), 0.0, 0.0)
    assert cfg.variant == base.variant and cfg.precision == "fp32"  # the rest is the job's (official fp32)
    sweep = [e.train_config(base, tmp_path) for e in plan(["rafdb"], tmp_path, (), sweep=True)]
    assert [c.w_sep for c in sweep[:5]] == [0.5, 1.0, 1.5, 2.0, 3.0] and {c.w_div for c in sweep[:5]} == {base.w_div}


def test_unconfigured_datasets_are_named_with_the_setting_to_fill(two_datasets):
    usable, missing = available_datasets(two_datasets / "cache")
    assert usable == ["rafdb", "mma"]
    assert any("CAFE_SFEW_ROOT" in m and "cafe.toml" in m for m in missing) and len(missing) == 3


@pytest.mark.slow
def test_reproduce_runs_end_to_end_and_writes_tables(two_datasets):
    args = ("reproduce", "--tables", "1,5", "--extract-args", "--model cafe-tiny --random-weights --workers 0",
            "--train-args", "--backbone-weights none --epochs 1 --image-size 32 --workers 0 --no-plots")
    proc = cafe(*args)
    assert proc.exit_code == 0, proc.stdout[-2000:] + proc.stderr[-3000:] + repr(proc.exception)
    assert "skipping" in proc.stderr and "CAFE_AFFECTNET_ROOT" in proc.stderr
    t1 = (two_datasets / "results" / "table1.md").read_text()
    assert "RANDOM WEIGHTS" in t1 and "| CAFE | RAF-DB |" in t1 and "| CAFE (paper) | RAF-DB | 88.72" in t1
    assert "| CAFE | MMA |" in t1 and "| zero-shot CLIP (no FER training) | - |" in t1
    assert (two_datasets / "results" / "cross-domain.png").stat().st_size > 10_000
    t5 = (two_datasets / "results" / "table5.md").read_text()
    assert "| No sigmoid | RAF-DB |" in t5 and "58.05" not in t5.split("(paper)")[0]
    config = json.loads((two_datasets / "runs/reproduce/table5/no_sigmoid/config.json").read_text())
    assert config["train"]["epochs"] == 1 and config["train"]["image_size"] == 32  # --train-args reached the run
    assert config["model"]["variant"] == "no_sigmoid" and config["train"]["precision"] == "fp32"
    assert not (two_datasets / "runs/reproduce/table1/rafdb/figures").exists()  # --no-plots too
    # a rerun repeats nothing
    again = cafe(*args)
    assert again.exit_code == 0 and again.stderr.count("done already") == 3


@pytest.mark.slow
def test_an_interrupted_run_resumes_and_a_failing_one_does_not_stop_the_others(two_datasets):
    """MMA's run stopped after its first epoch (only resume.pt) goes on to its last; RAF-DB's run cannot start
    (its --out is a file): said, the other runs and the tables are made, and the error names it at the end."""
    args = ("reproduce", "--tables", "1", "--extract-args", "--model cafe-tiny --random-weights --workers 0",
            "--train-args", "--backbone-weights none --epochs 1 --image-size 32 --workers 0 --no-plots")
    first = cafe(*args)
    assert first.exit_code == 0, first.stderr[-3000:] + repr(first.exception)
    mma = two_datasets / "runs/reproduce/table1/mma"
    for which in ("last", "best"):  # as if started with --epochs 2 and stopped after epoch 1
        shutil.rmtree(mma / f"eval-{which}")
    config = json.loads((mma / "config.json").read_text())
    config["train"]["epochs"] = 2
    (mma / "config.json").write_text(json.dumps(config))
    raf = two_datasets / "runs/reproduce/table1/rafdb"
    shutil.rmtree(raf)
    raf.write_text("not a folder")
    again = cafe(*args)
    assert isinstance(again.exception, CafeError) and "1 step(s) failed" in str(again.exception)
    assert "table1/rafdb" in str(again.exception) and "failed:" in again.stderr
    assert "$ cafe train --resume --cache-dir cache --targets rafdb,mma --out runs/reproduce/table1/mma" in again.stderr
    history = json.loads((mma / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]  # resumed at epoch 2 with its saved settings
    assert "| CAFE | MMA |" in (two_datasets / "results" / "table1.md").read_text()  # the tables of the others


def test_nproc_per_node_launches_every_extraction_and_training_with_torchrun(two_datasets):
    proc = cafe("reproduce", "--tables", "1", "--nproc-per-node", "4", "--dry-run")
    assert proc.exit_code == 0, proc.stderr[-2000:]
    lines = step_lines(proc.stderr)
    launched = [line for line in lines if line.startswith("$ torchrun --standalone --nproc-per-node=4 -m cli ")]
    assert len(launched) == 4  # extract rafdb, mma; train rafdb, mma
    assert [line for line in lines if line not in launched][0].startswith("$ cafe zeroshot")


def test_a_step_under_torchrun_reads_its_typed_settings_back(tmp_path):
    from cafe_cache.pipeline import TrainRequest
    from cafe_cache.steps import read_step, write_step
    from cli.reproduce import parse_extract_args

    job = ReproduceJob(extract=parse_extract_args("--model cafe-tiny --random-weights --limit 20 --splits test "
                                                  "--views clean --ckplus-peak 2"))
    extraction = job.extraction("rafdb", tmp_path / "cache")
    assert read_step(write_step(extraction, tmp_path / "e.json")) == extraction
    request = TrainRequest(default_train(), {}, out=tmp_path / "run", targets=["rafdb"], plots=False)
    assert read_step(write_step(request, tmp_path / "t.json")) == request


def test_train_and_extract_args_are_checked_by_the_commands_own_options(two_datasets):
    from cli.reproduce import parse_extract_args, parse_train_args

    cfg, plots = parse_train_args("--epochs 3 --no-flip --online-clip --no-plots", "bf16")
    assert (cfg.epochs, cfg.augment.flip, cfg.online_clip, cfg.precision, plots) == (3, False, True, "bf16", False)
    assert parse_train_args("--precision fp32", "bf16")[0].precision == "fp32"  # the words' own wins
    assert parse_extract_args("--limit 5 --views clean").limit == 5
    for args, message in ((("--train-args", "--epoch 3"), "No such option: --epoch"),
                          (("--train-args", "--epochs 0"), "--epochs 0: must be"),
                          (("--train-args", "--lr -1"), "--lr -1.0: must be"),
                          (("--train-args", "--out x"), "--out is set by cafe reproduce"),
                          (("--train-args", "--no-eval -s mma"), "--source, --eval are set by cafe reproduce"),
                          (("--extract-args", "--dataset mma"), "--dataset is set by cafe reproduce"),
                          (("--extract-args", "--views clean,nope"), "--views"),
                          (("--extract-args", "--random-weights --weights w.pt"), "--random-weights with --weights"),
                          (("--extract-args", "--limit '5"), "quote as in a shell")):
        proc = cafe("reproduce", "--tables", "1", *args)
        assert isinstance(proc.exception, CafeError) and message in str(proc.exception), (args, proc.exception)
        assert str(proc.exception).startswith(args[0]) and "\n" not in str(proc.exception)
    assert not (two_datasets / "cache").exists()  # refused before any step


def test_dry_run_shows_the_official_settings_and_names_each_deviation(two_datasets):
    proc = cafe("reproduce", "--tables", "1", "--dry-run")
    assert proc.exit_code == 0, proc.stderr[-2000:]
    out = " ".join(proc.stderr.split())  # Rich wraps long lines
    assert "evaluation: final epoch (official)" in out and "mask branch: fp32 (official)" in out
    assert "resnet18_msceleb.pth" in out and "not the paper's MS-Celeb init" in out
    trains = [line for line in step_lines(proc.stderr) if line.startswith("$ cafe train")]
    assert len(trains) == 2
    assert all("--precision fp32" in t and "--eval-which last,best" in t for t in trains)
    fast = cafe("reproduce", "--tables", "1", "--dry-run", "--precision", "bf16", "--which", "best")
    out = " ".join(fast.stderr.split())
    assert fast.exit_code == 0 and "mask branch: bf16" in out and "(test-set selection)" in out
    assert "mask branch: bf16 (official)" not in out
    assert all("--precision bf16" in t for t in step_lines(fast.stderr) if t.startswith("$ cafe train"))


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


@pytest.mark.slow
def test_a_step_under_torchrun_runs_its_step_file_on_every_rank(tmp_path, monkeypatch):
    """--nproc-per-node 2: an extraction runs as `torchrun -m cli.step FILE` (a training goes the same way: its
    request reads back equal, above); the two-rank cache equals the one-process cache and no step file is left."""
    from cafe_cache.extract.job import ExtractJob
    from cafe_cache.extract.weights import ClipSpec
    from cafe_cache.steps import Runner, Views

    from .conftest import TINY_CLIP, write_folder_dataset
    from .test_distributed import assert_same_cache

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    write_folder_dataset(tmp_path / "toy", {"train": 3, "test": 2}, size=20)
    job = ExtractJob("folder", root=tmp_path / "toy", clip=ClipSpec(TINY_CLIP, random_weights=True), batch_size=4,
                     dtype="float32", cache_dir=tmp_path / "one")
    lines: list[str] = []
    two = Runner(Views(say=lines.append), nproc=2, step_dir=tmp_path / "runs")
    assert Runner(Views(say=lines.append)).extract(job) and two.extract(replace(job, cache_dir=tmp_path / "two"))
    assert_same_cache(tmp_path / "one" / "toy.h5", tmp_path / "two" / "toy.h5")
    assert "$ cafe extract --dataset folder" in lines[0]
    assert any("$ torchrun --standalone --nproc-per-node=2 -m cli extract" in line for line in lines)
    assert not list((tmp_path / "runs").glob(".step-*"))  # the step file is removed
