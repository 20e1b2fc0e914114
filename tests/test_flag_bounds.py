"""Issue 26 (26b): every numeric flag has a bound, checked before any work, said in one line with the
limit; the library's job dataclasses check the same bounds (cafe_cache/bounds.py, one place)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from cafe_cache.bounds import BOUNDS, max_workers
from cafe_cache.errors import CafeError
from cafe_cache.extract.job import ExtractJob
from cafe_cache.extract.weights import ClipSpec
from cafe_cache.run.config import TrainConfig

from .conftest import TINY_CLIP, write_folder_dataset
from .test_faults import cafe_error

HUGE = "99999999999999999999"  # beyond int64: overflowed inside torch/numpy before


def extract_args(root: Path, cache_dir: Path) -> list[str]:
    return ["extract", "--dataset", "folder", "--root", str(root), "--model", TINY_CLIP, "--random-weights",
            "--cache-dir", str(cache_dir), "--workers", "0", "--device", "cpu"]


@pytest.mark.parametrize("flag,value,limit", [
    ("--batch-size", HUGE, "between 1 and 4,096"),
    ("--batch-size", "0", "between 1 and 4,096"),
    ("--seed", HUGE, "between 0 and 4,294,967,295"),
    ("--seed", "-1", "between 0 and 4,294,967,295"),
    ("--workers", "99999", f"between 0 and {max_workers():,}"),
    ("--store-images", "99999", "0 (off) or between 16 and 1,024"),
    ("--store-images", "3", "0 (off) or between 16 and 1,024"),
    ("--limit", HUGE, "between 1 and 1,000,000,000"),
])
def test_extract_refuses_out_of_range_numbers_before_any_work(tmp_path, monkeypatch, capsys, flag, value, limit):
    root = write_folder_dataset(tmp_path / "toyset", {"train": 1})
    msg = cafe_error(monkeypatch, capsys, *extract_args(root, tmp_path / "cache"), flag, value)
    assert msg.startswith(f"error: {flag} {value}: must be {limit}"), msg
    assert not (tmp_path / "cache").exists()  # refused before the cache folder was made


@pytest.mark.parametrize("flag,value,limit", [
    ("--seed", "-1", "between 0 and 4,294,967,295"),  # extract and train: one rule
    ("--seed", HUGE, "between 0 and 4,294,967,295"),
    ("--batch-size", HUGE, "between 1 and 4,096"),
    ("--image-size", "100000", "between 16 and 1,024"),
    ("--epochs", HUGE, "between 1 and 10,000"),
    ("--limit", "3", "between 7 and 1,000,000,000"),
    ("--workers", "99999", f"between 0 and {max_workers():,}"),
])
def test_train_refuses_out_of_range_numbers_before_any_work(tmp_path, monkeypatch, capsys, flag, value, limit):
    msg = cafe_error(monkeypatch, capsys, "train", "--source", "nosuch", "--cache-dir", str(tmp_path / "cache"),
                     "--out", str(tmp_path / "run"), flag, value)
    assert msg.startswith(f"error: {flag} {value}: must be {limit}"), msg  # not "no feature cache": checked first
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("args", [["eval", "-c", "run", "--batch-size", HUGE], ["eval", "-c", "run", "--workers", HUGE],
                                  ["predict", "x.jpg", "--every", "0"], ["predict", "x.jpg", "--batch-size", HUGE],
                                  ["reproduce", "--nproc-per-node", HUGE], ["synth", "out", "--seed", "-1"],
                                  ["plot", "run", "--gradcam", HUGE]])
def test_other_commands_refuse_out_of_range_numbers(tmp_path, monkeypatch, capsys, args):
    monkeypatch.chdir(tmp_path)
    flag = next(a for a in args if a.startswith("--"))
    msg = cafe_error(monkeypatch, capsys, *args)
    assert msg.startswith(f"error: {flag} ") and "must be" in msg and "between" in msg, msg
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_library_checks_the_same_bounds():
    with pytest.raises(CafeError, match=r"--seed -1: must be between 0 and 4,294,967,295"):
        TrainConfig(source="x", seed=-1)
    with pytest.raises(CafeError, match=r"--image-size 100000: must be between 16 and 1,024"):
        TrainConfig(source="x", image_size=100000)
    with pytest.raises(CafeError, match=r"--batch-size 100000000000000000000: must be between 1 and 4,096"):
        ExtractJob(dataset="folder", batch_size=10 ** 20)
    with pytest.raises(CafeError, match=r"--seed -1: must be"):
        ExtractJob(dataset="folder", clip=ClipSpec(random_weights=True, seed=-1))
    with pytest.raises(CafeError, match=r"--workers 99999: must be between 0 and"):
        ExtractJob(dataset="folder", workers=99999)
    assert ExtractJob(dataset="folder", store_images=0).store_images == 0  # 0 is "off", below the low bound
    assert TrainConfig(source="x", seed=BOUNDS["--seed"].upper()).seed == 2 ** 32 - 1


def test_store_images_that_cannot_fit_are_said_before_extraction(tmp_path, monkeypatch, capsys):
    from cli.main import main
    root = write_folder_dataset(tmp_path / "toyset", {"train": 2})
    real = shutil.disk_usage

    def tiny_disk(path):
        return real(path)._replace(free=1000)  # 14 images of 3*16*16 bytes need 10,752

    monkeypatch.setattr(shutil, "disk_usage", tiny_disk)
    monkeypatch.setattr(sys, "argv", ["cafe", *extract_args(root, tmp_path / "cache"), "--store-images", "16"])
    with pytest.raises(SystemExit) as stop:
        main()
    err = " ".join(capsys.readouterr().err.split())
    assert stop.value.code in (0, None)
    assert "--store-images 16 needs 0.00 GiB" in err and "GiB is free" in err and "stops with one line" in err
