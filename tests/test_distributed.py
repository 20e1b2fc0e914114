"""Scaling out with torchrun: sharded extraction and DDP training, 2 CPU processes over gloo.

The torchrun launches are real subprocesses (``python -m torch.distributed.run --standalone``); the
workers in ``tests/ranks/`` add only what a test needs (a rank that kills itself, a fixed batch).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from cafe_cache.distributed import SINGLE, GlobalBatchNorm, Ranks, from_env, global_batchnorm, rank_device
from cafe_cache.errors import CafeError
from cafe_cache.extract.paths import shards_dir
from cafe_cache.extract.reader import FeatureCache
from cafe_cache.extract.shards import cut
from cafe_cache.model.cafe import CAFEModel
from cafe_cache.model.config import ModelConfig
from cafe_cache.train.loop import rank_batch
from cli.main import app

from .conftest import TINY_CLIP, write_folder_dataset

pytestmark = pytest.mark.slow  # torchrun launches: `make test-fast` leaves them out

REPO = Path(__file__).resolve().parents[1]
RANKS = Path(__file__).resolve().parent / "ranks"
EXTRACT = ["extract", "-d", "folder", "--model", TINY_CLIP, "--random-weights", "--batch-size", "4",
           "--dtype", "float32"]
TRAIN = ["train", "-s", "toy", "--backbone-weights", "none", "--image-size", "32", "--batch-size", "8",
         "--no-eval", "--no-plots"]


def launch(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run ``cmd`` in its own session; a hang is killed with all its processes after 300 s."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and every rank it started
        out, err = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} hung:\n{out[-2000:]}{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def torchrun(*args: str, cwd: Path, nproc: int = 2, restarts: int = 0) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node N ARGS`` in ``cwd``; ARGS is a script or ``-m cli ...``."""
    return launch([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                   f"--max-restarts={restarts}", *args], cwd)


def cafe(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """One plain ``cafe`` process."""
    return launch([sys.executable, "-m", "cli", *args], cwd)


def script(path: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """A worker script of tests/ranks as one plain process."""
    return launch([sys.executable, str(path), *args], cwd)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def assert_same_cache(a: Path, b: Path) -> None:
    """Every dataset and attribute equal, feature for feature."""
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert dict(fa.attrs) == dict(fb.attrs)
        names: list[str] = []
        fa.visit(names.append)
        other: list[str] = []
        fb.visit(other.append)
        assert names == other
        for name in names:
            if isinstance(fa[name], h5py.Dataset):
                assert np.array_equal(fa[name][()], fb[name][()]), name
            assert dict(fa[name].attrs) == dict(fb[name].attrs), name


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A toy dataset (11 and 5 images per class: batches of 4 do not divide the splits) and its cache
    made by one process."""
    d = tmp_path_factory.mktemp("dist")
    write_folder_dataset(d / "toy", {"train": 11, "test": 5}, size=20)
    ok(cafe(*EXTRACT, "--root", "toy", "--store-images", "16", "--cache-dir", "one", cwd=d))
    return d


# -- stage one --------------------------------------------------------------------------------

def test_cut_keeps_whole_batches_and_covers_every_row():
    splits = {"train": list(range(77)), "test": list(range(10))}
    rows = cut(splits, {"train": 5, "test": 0}, shards=3, batch_size=8)
    assert rows["train"] == [(5, 29), (29, 53), (53, 77)]  # 9 batches from row 5: 3 + 3 + 3
    assert rows["test"] == [(0, 0), (0, 8), (8, 10)]  # 2 batches over 3 shards: one shard is empty
    for r in rows.values():
        assert all(lo <= hi for lo, hi in r) and all(a[1] == b[0] for a, b in zip(r, r[1:]))
        assert all((lo - r[0][0]) % 8 == 0 for lo, _ in r)


def test_two_rank_cache_equals_the_one_rank_cache(work):
    out = ok(torchrun("-m", "cli", *EXTRACT, "--root", "toy", "--store-images", "16", "--cache-dir", "two",
                      cwd=work))
    assert_same_cache(work / "one" / "toy.h5", work / "two" / "toy.h5")
    assert not shards_dir(work / "two" / "toy.h5").exists()  # joined and cleaned up
    assert "on 2 ranks" in out and out.count("done:") == 1  # rank 0 reports for both


def test_a_killed_rank_stops_the_run_and_a_rerun_with_one_process_finishes_it(work):
    proc = torchrun(str(RANKS / "kill_rank.py"), "1", "extract", "3", "--", *EXTRACT, "--root", "toy",
                    "--store-images", "16", "--cache-dir", "killed", cwd=work)
    assert proc.returncode != 0
    path = work / "killed" / "toy.h5"
    with pytest.raises(CafeError, match="unfinished"):
        FeatureCache(path).require_complete()
    shards = shards_dir(path)
    done = {}
    for f in sorted(shards.glob("shard-*.h5")):
        with h5py.File(f, "r") as h:
            done[f.name] = int(h["splits/train"].attrs["n_done"])
    assert done["shard-0001.h5"] == 2 * 4  # rank 1 flushed two batches of train before it died
    info = CliRunner().invoke(app, ["cache", "info", str(path)])
    assert "UNFINISHED" in info.output and "2 shard files of a torchrun extraction" in info.output
    # relaunched as one plain process: it takes over both shards, keeps what was done, joins them
    out = ok(cafe(*EXTRACT, "--root", "toy", "--store-images", "16", "--cache-dir", "killed", cwd=work))
    assert "done:" in out
    assert_same_cache(work / "one" / "toy.h5", path)
    assert not shards.exists()


def test_a_finished_cache_is_left_alone_and_other_settings_are_refused_on_every_rank(work):
    out = ok(torchrun("-m", "cli", *EXTRACT, "--root", "toy", "--store-images", "16", "--cache-dir", "one",
                      cwd=work))
    assert "nothing to do" in out
    proc = torchrun("-m", "cli", *EXTRACT, "--root", "toy", "--cache-dir", "one", "--views", "clean", cwd=work)
    assert proc.returncode != 0
    err = proc.stdout + proc.stderr
    assert "made with other settings" in err and err.count("made with other settings") == 1  # said once, by rank 0


# -- stage two --------------------------------------------------------------------------------

def test_two_rank_step_gives_the_gradients_of_one_process_on_the_whole_batch(tmp_path):
    ok(script(RANKS / "grad_step.py", str(tmp_path / "one.pt"), "1", "float32", cwd=tmp_path))
    ok(torchrun(str(RANKS / "grad_step.py"), str(tmp_path / "two.pt"), "1", "float32", cwd=tmp_path))
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    for name, g in one["grads"].items():  # float32 sums in another order: equal to 1e-4 of the largest entry
        assert float((two["grads"][name] - g).abs().max()) <= 1e-4 * float(g.abs().max()), name
    for name, b in one["state"].items():  # batch-norm running statistics of the global batch
        if "running" in name:
            torch.testing.assert_close(two["state"][name], b, rtol=1e-5, atol=1e-6, msg=name)


def test_several_adam_steps_in_float64_agree_to_rounding(tmp_path):
    ok(script(RANKS / "grad_step.py", str(tmp_path / "one.pt"), "4", "float64", cwd=tmp_path))
    ok(torchrun(str(RANKS / "grad_step.py"), str(tmp_path / "two.pt"), "4", "float64", cwd=tmp_path))
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    for name, v in one["state"].items():
        torch.testing.assert_close(two["state"][name], v, rtol=1e-9, atol=1e-10, msg=name)


@pytest.fixture(scope="module")
def even(tmp_path_factory) -> Path:
    """A cache of 56 training images: 7 global batches of 8, so no rank pads its share."""
    d = tmp_path_factory.mktemp("even")
    write_folder_dataset(d / "toy", {"train": 8, "test": 2}, size=20)
    ok(cafe(*EXTRACT, "--root", "toy", "--cache-dir", "cache", cwd=d))
    return d


def test_the_two_rank_loop_sees_the_batches_of_one_process(even):
    """With lr 1e-30 (cafe refuses 0) the weights stay put, so everything the loop computes (losses, accuracy,
    batch-norm statistics over 14 steps) must agree; a real lr only adds Adam's amplification of rounding."""
    args = [*TRAIN, "--epochs", "2", "--lr", "1e-30", "--cache-dir", "cache"]
    ok(cafe(*args, "--out", "lr0-one", cwd=even))
    out = ok(torchrun("-m", "cli", *args, "--out", "lr0-two", cwd=even))
    assert "global batch 8 = 2 x 4" in out
    one = json.loads((even / "lr0-one" / "metrics.json").read_text())
    two = json.loads((even / "lr0-two" / "metrics.json").read_text())
    for a, b in zip(one, two):
        for key in ("loss", "ce", "sep", "div"):
            assert b[key] == pytest.approx(a[key], rel=1e-5), key
        assert (a["train_acc"], a["source_test_acc"]) == (b["train_acc"], b["source_test_acc"])
    wa, wb = (load_file(str(even / name / "last.safetensors")) for name in ("lr0-one", "lr0-two"))
    assert wa.keys() == wb.keys()  # the plain model's names: GlobalBatchNorm is a BatchNorm2d
    for k in wa:
        torch.testing.assert_close(wb[k].float(), wa[k].float(), rtol=1e-4, atol=1e-5, msg=k)
    config = json.loads((even / "lr0-two" / "config.json").read_text())
    assert config["ranks"] == {"world": 2, "batch_per_rank": 4}


def test_a_rank_killed_mid_epoch_is_restarted_and_resumes_from_the_last_epoch(even):
    args = [*TRAIN, "--epochs", "3", "--lr", "1e-3", "--cache-dir", "cache"]
    ok(torchrun("-m", "cli", *args, "--out", "whole", cwd=even))
    # rank 1 dies at step 10 (epoch 2 of 7 steps each); torchrun relaunches both ranks once
    out = ok(torchrun(str(RANKS / "kill_rank.py"), "1", "train", "10", "--", *args, "--out", "killed",
                      cwd=even, restarts=1))
    assert "resuming after epoch 1 of 3" in out
    history = json.loads((even / "killed" / "metrics.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]
    whole, killed = (load_file(str(even / name / "last.safetensors")) for name in ("whole", "killed"))
    for k in whole:
        assert torch.equal(whole[k], killed[k]), k  # every draw is seeded by (seed, epoch, index): bit-exact


# -- in-process pieces ------------------------------------------------------------------------

def test_global_batchnorm_is_batchnorm_for_one_process():
    torch.manual_seed(0)
    model = CAFEModel(ModelConfig("resnet18", clip_dim=32)).train()
    plain = {k: v.clone() for k, v in model.state_dict().items()}
    x, f = torch.randn(4, 3, 32, 32), torch.randn(4, 32)
    expected = model(x, f).logits
    model.load_state_dict(plain)
    converted = global_batchnorm(model)
    assert any(isinstance(m, GlobalBatchNorm) for m in converted.modules())
    assert converted.state_dict().keys() == plain.keys()
    torch.testing.assert_close(converted(x, f).logits, expected)


def test_global_batch_splits_evenly_or_says_what_to_pass():
    assert rank_batch(32, Ranks(world=4)) == 8 and rank_batch(32, SINGLE) == 32
    with pytest.raises(CafeError, match="multiple of 3, e.g. 30"):
        rank_batch(32, Ranks(world=3))


def test_ranks_from_torchrun_environment(monkeypatch):
    for k, v in {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(k, v)
    ranks = from_env()
    assert (ranks.rank, ranks.world, ranks.local_rank, ranks.local_world, ranks.is_main) == (3, 4, 1, 2, False)
    assert rank_device("cpu", ranks) == torch.device("cpu")
    # no GPU here: refused before the rank's device is chosen; with GPUs, CUDA_VISIBLE_DEVICES is named
    with pytest.raises(CafeError, match="no CUDA GPU is usable here" if not torch.cuda.is_available()
                       else "CUDA_VISIBLE_DEVICES"):
        rank_device("cuda:1", ranks)
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(CafeError, match="not numbers"):
        from_env()


def test_train_under_torchrun_needs_an_explicit_run_folder(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    result = CliRunner().invoke(app, ["train", "-s", "toy"])
    assert result.exit_code != 0 and "--out RUN" in str(result.exception)
