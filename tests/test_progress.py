"""Issue 14: a long job that a person can watch in a log file, extract --splits/--limit, and the
friction items found on real hold-out data."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
from rich.console import Console
from typer.testing import CliRunner

from cafe_cache.datasets import build_reader
from cafe_cache.extract.lock import writing_progress
from cafe_cache.extract.paths import cache_path, progress_file
from cafe_cache.extract.reader import FeatureCache
from cafe_cache.extract.writer import CacheWriter
from cafe_cache.predict.infer import clamp_box, random_warning
from cafe_cache.progress import PlainProgress, SpeedHint, status_line
from cli.main import app

from .conftest import TINY_CLIP, fingerprint, target_metrics, write_folder_dataset
from .test_datasets import ferplus_folder, votes

REPO = Path(__file__).resolve().parents[1]


def cli_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "CAFE_PROGRESS_INTERVAL": "0", "OMP_NUM_THREADS": "1", **extra}


def extract_args(root: Path, cache_dir: Path, *more: str) -> list[str]:
    return [sys.executable, "-m", "cli.main", "extract", "--dataset", "folder", "--root", str(root), "--model",
            TINY_CLIP, "--random-weights", "--workers", "0", "--batch-size", "4", "--cache-dir", str(cache_dir), *more]


# -- progress lines in a redirected log ------------------------------------------------------------
def test_plain_progress_prints_lines_at_the_interval_and_a_final_one():
    lines: list[str] = []
    bar = PlainProgress(write=lines.append, interval=3600)
    task = bar.add_task("train", total=10)
    bar.advance(task, 4)
    assert lines == []  # the interval has not passed
    bar.advance(task, 6)
    assert len(lines) == 1 and lines[0].startswith("train: 10/10 (100%)") and "img/s" in lines[0]
    bar.advance(task, 0)
    assert len(lines) == 1  # a finished task says so once
    every = PlainProgress(write=lines.append, interval=0)
    t = every.add_task("test", total=100)
    every.advance(t, 5)
    assert lines[-1].startswith("test: 5/100 (5%)") and "ETA" in lines[-1]


def test_status_line_without_total_and_speed_hint():
    assert status_line("epoch 1", 7, None, 2.0).startswith("epoch 1: 7  3.5 img/s")
    said: list[str] = []
    hint = SpeedHint(1000, said.append, batches=3)
    for _ in range(3):
        time.sleep(0.01)
        hint.batch(10)
    assert len(said) == 1 and "img/s" in said[0] and "1,000 img take about" in said[0] and "ETA" in said[0]


@pytest.mark.slow
def test_redirected_extract_and_train_logs_show_progress_while_running(tmp_path):
    root = write_folder_dataset(tmp_path / "toyset", {"train": 3, "test": 2})
    log = tmp_path / "extract.log"
    with log.open("w") as f:  # as `cafe extract ... > log 2>&1`
        proc = subprocess.run(extract_args(root, tmp_path / "cache"), stdout=f, stderr=subprocess.STDOUT,
                              env=cli_env(), cwd=tmp_path, timeout=300)
    text = log.read_text()
    assert proc.returncode == 0, text
    lines = text.splitlines()
    done = next(i for i, line in enumerate(lines) if line.startswith("done"))
    progress = [i for i, line in enumerate(lines) if line.startswith("train: ") and "img/s" in line]
    assert progress and progress[0] < done  # lines while it runs, not only at the end
    assert any(line.startswith("train: 4/21 (19%)") and "ETA" in line for line in lines)
    assert any(line.startswith("test: 14/14 (100%)") for line in lines)
    assert "measured" in text and "threads" in text  # the speed hint: device, threads, then the rate
    assert "2 views each" in text
    assert not Path(str(cache_path(tmp_path / "cache", "toyset")) + ".lock").exists()  # item 8: no lock left
    assert "No pretrained weights loaded" not in text  # item 8: open_clip's warning not shown

    log = tmp_path / "train.log"
    with log.open("w") as f:
        proc = subprocess.run([sys.executable, "-m", "cli.main", "train", "--source", "toyset", "--cache-dir",
                               str(tmp_path / "cache"), "--out", str(tmp_path / "run"), "--backbone-weights", "none",
                               "--epochs", "2", "--batch-size", "8", "--image-size", "32", "--workers", "0",
                               "--no-eval", "--no-plots"],
                              stdout=f, stderr=subprocess.STDOUT, env=cli_env(), cwd=tmp_path, timeout=300)
    text = log.read_text()
    assert proc.returncode == 0, text
    lines = text.splitlines()
    assert any(line.startswith("epoch 1/2: 8/21 (38%)") for line in lines)  # a known total, no "8/?"
    first_end = next(i for i, line in enumerate(lines) if line.startswith("epoch 1/2: 21/21 (100%)"))
    assert first_end < next(i for i, line in enumerate(lines) if line.startswith("epoch 2/2: "))
    assert "RANDOM WEIGHTS" in text and "CLIP features of toyset" in text  # item 4
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["backbone_init"]["random_init"] and config["backbone_init"]["missing"] == []  # item 8


def test_sigterm_during_extraction_says_what_was_kept(tmp_path):
    root = write_folder_dataset(tmp_path / "big", {"train": 40}, size=16)
    log = tmp_path / "log"
    with log.open("w") as f:
        proc = subprocess.Popen(extract_args(root, tmp_path / "cache", "--batch-size", "1"), stdout=f,
                                stderr=subprocess.STDOUT, env=cli_env(), cwd=tmp_path)
        deadline = time.time() + 240
        while "train: 3/" not in log.read_text() and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
    text = log.read_text()
    assert rc == 143, text
    stopped = [line for line in text.splitlines() if "SIGTERM" in line]
    assert len(stopped) == 1 and "kept in" in stopped[0] and "resume" in stopped[0], text
    assert "Traceback" not in text
    with h5py.File(cache_path(tmp_path / "cache", "big"), "r") as f:
        kept = int(f["splits/train"].attrs["n_done"])
    assert 3 <= kept < 280 and f"train {kept:,}/280" in stopped[0]


# -- cache info while a writer runs -----------------------------------------------------------------
def test_cache_info_shows_rows_done_of_a_cache_being_written(folder_dataset, tmp_path):
    from cafe_cache.extract.clip import ClipSpec, load_clip

    clip = load_clip(ClipSpec(model=TINY_CLIP, random_weights=True))
    reader = build_reader("folder", folder_dataset)
    res = reader.read()
    splits = {s: res.split(s) for s in res.splits()}
    path = tmp_path / "c.h5"
    with CacheWriter.for_dataset(path, fingerprint(clip), reader, splits, clip.embed_dim) as w:
        import numpy as np
        w.write("train", 0, np.zeros((5, 2, clip.embed_dim), np.float32), [""] * 5)
        assert writing_progress(path) == {"train": (5, 21), "test": (0, 14)}
        r = CliRunner().invoke(app, ["cache", "info", str(path)])
        assert r.exit_code == 0, r.output
        assert "being written" in r.output and "5 of 35 rows" in r.output
    assert writing_progress(path) is None and not progress_file(path).exists()
    assert Path(str(path) + ".lock").exists()  # unfinished: the lock file stays (only complete caches drop it)


# -- extract --splits / --limit ---------------------------------------------------------------------
def test_extract_splits_and_limit_are_deterministic_recorded_and_not_taken_for_full(tmp_path):
    root = write_folder_dataset(tmp_path / "toyset", {"train": 3, "test": 2})
    runner = CliRunner()

    def extract(cache_dir: Path, *more: str):
        return runner.invoke(app, extract_args(root, cache_dir, *more)[3:])

    r = extract(tmp_path / "a", "--splits", "test", "--limit", "5")
    assert r.exit_code == 0, r.output
    a = FeatureCache(cache_path(tmp_path / "a", "toyset"))
    assert a.splits == {"test": (5, 5)} and a.subset == {"splits": ["test"], "limit": 5}
    assert extract(tmp_path / "b", "--splits", "test", "--limit", "5").exit_code == 0
    b = FeatureCache(cache_path(tmp_path / "b", "toyset"))
    assert a.load("test").paths == b.load("test").paths  # the same images each time
    assert len({p.split("/")[1] for p in a.load("test").paths}) > 1  # not just the first class folder
    r = runner.invoke(app, ["cache", "info", str(a.path)])
    assert "partial extraction: --limit 5 per split, --splits test" in r.output
    r = extract(tmp_path / "a")
    assert r.exit_code != 0 and "a partial cache is never taken for a full one" in str(r.exception)
    r = extract(tmp_path / "a", "--splits", "val")
    assert r.exit_code != 0 and "no split val" in str(r.exception)


def test_training_on_a_limited_cache_says_so(tmp_path):
    from cafe_cache.run.config import TrainConfig
    from cafe_cache.train.loop import train

    root = write_folder_dataset(tmp_path / "toyset", {"train": 3, "test": 2})
    r = CliRunner().invoke(app, extract_args(root, tmp_path / "cache", "--limit", "14")[3:])
    assert r.exit_code == 0, r.output
    said: list[str] = []
    train(TrainConfig(source="toyset", cache_dir=str(tmp_path / "cache"), backbone_weights="none", epochs=1,
                      batch_size=7, image_size=16, workers=0), tmp_path / "run", log=said.append)
    assert any("partial extraction (--limit 14 per split)" in s for s in said)


# -- FERPlus: the repository's layout and the tie rule on the commands ------------------------------
def ferplus_repo(tmp_path: Path) -> Path:
    """The FERPlus repository's layout: fer2013new.csv beside data/FER2013*/ (no fer2013.csv)."""
    repo = tmp_path / "FERPlus"
    ferplus_folder(repo / "data", "FER2013Train", [("a.png", votes(happiness=5, sadness=5)),
                                                   ("b.png", votes(surprise=9, fear=1))])
    ferplus_folder(repo / "data", "FER2013Test", [("c.png", votes(neutral=10))])
    with open(repo / "fer2013new.csv", "w", newline="") as f:
        csv.writer(f).writerow(["Usage", "Image name", "neutral"])
    return repo


def test_ferplus_root_at_the_repository_layout_reads_data_folders(tmp_path):
    reader = build_reader("ferplus", ferplus_repo(tmp_path))
    assert reader.root.name == "data" and len(reader.read().samples) == 2


def test_ferplus_tie_rule_is_an_option_of_datasets_and_extract(tmp_path):
    repo = ferplus_repo(tmp_path)
    r = CliRunner().invoke(app, ["datasets", "ferplus", "--root", str(repo), "--ferplus-ties", "first"])
    assert r.exit_code == 0 and "1 label entries" not in r.output and "tied" not in r.output, r.output
    r = CliRunner().invoke(app, ["datasets", "ferplus", "--root", str(repo)])
    assert "tied majority vote" in r.output
    r = CliRunner().invoke(app, ["extract", "--dataset", "ferplus", "--root", str(repo), "--ferplus-ties", "first",
                                 "--model", TINY_CLIP, "--random-weights", "--workers", "0",
                                 "--cache-dir", str(tmp_path / "cache")])
    assert r.exit_code == 0, r.output
    c = FeatureCache(cache_path(tmp_path / "cache", "ferplus"))
    assert c.reader_options == {"ties": "first"} and c.splits["train"] == (2, 2)
    r = CliRunner().invoke(app, ["extract", "--dataset", "folder", "--root", str(repo), "--ferplus-ties", "first"])
    assert r.exit_code != 0 and "--ferplus-ties applies only to --dataset ferplus" in str(r.exception)


# -- predict: the random backbone, the table at 80 columns, clamped boxes ---------------------------
def test_predict_warning_names_a_random_backbone_with_random_clip():
    both = random_warning(True, True)
    assert "RANDOM CLIP WEIGHTS" in both and "--backbone-weights none" in both


def test_predict_table_reads_at_80_columns_and_boxes_are_clamped():
    from cafe_cache.classes import CLASSES
    from cli.predict import table_of

    assert clamp_box((-118.0, -3.5, 250.0, 700.0), 200, 640) == (0.0, 0.0, 200.0, 640.0)
    probs = {c: 0.0 for c in CLASSES} | {"happiness": 0.87}
    rows = [{"file": "/some/long/folder/holiday-photo-of-the-family-2026.jpg", "frame": None, "time_s": None,
             "face": k, "x1": 0.0, "y1": 12.0, "x2": 180.0, "y2": 200.0, "score": 0.9731, **probs,
             "label": "happiness", "error": None} for k in range(2)]
    console = Console(width=80, file=io.StringIO(), record=True)
    console.print(table_of(rows))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "expression" in text and "happiness 0.87" in text and "0,12,180,200" in text and "score" in text
    assert "frame" not in text and "error" not in text  # empty columns are left out
    video = [r | {"frame": 120, "time_s": 4.8, "x2": 1180.0, "y2": 1200.0} for r in rows]
    video.append(rows[0] | {"error": "no face found in this frame of the video", "label": None, "score": None})
    console = Console(width=80, file=io.StringIO(), record=True)
    console.print(table_of(video))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "happiness 0.87" in text and "0,12,1180,1200" in text and "time s" in text and "error: no face" in text


# -- the means' label -------------------------------------------------------------------------------
def test_paper_mean_label_only_for_the_papers_five_sets():
    from cafe_cache.metrics import means_line

    def result(acc):
        return target_metrics(acc)

    mine = means_line({"ck": result(80.0), "jaffe": result(60.0)}, "ck")
    assert mine[0].startswith("Mean (all 2 test sets")
    paper = means_line({k: result(50.0) for k in ("rafdb", "ferplus", "affectnet", "sfew", "mma")}, "rafdb")
    assert paper[0].startswith("paper Mean (all 5 test sets")
