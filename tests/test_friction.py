"""Issue 26 (26b), item 4: friction a newcomer met — cache names, escaping names, repeated views, help
text, truncated video, unreadable rows left out silently, duplicate FERPlus rows, "1 figures"."""

from __future__ import annotations

import csv
import sys

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

from cafe_cache.datasets import build_reader
from cafe_cache.datasets.base import DatasetError, Sample
from cafe_cache.metrics import plural
from cli.main import app, main

from .conftest import TINY_CLIP, make_cache, write_folder_dataset
from .test_datasets import ferplus_folder, votes
from .test_faults import cafe_error


def test_cache_info_takes_a_cache_name_as_train_and_eval_do(tmp_path, monkeypatch, capsys):
    make_cache(write_folder_dataset(tmp_path / "toyset", {"test": 1}), tmp_path / "cache" / "toyset.h5")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["cafe", "cache", "info", "toyset"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code in (0, None)
    assert capsys.readouterr().out.startswith("cache/toyset.h5  dataset folder (toyset)")
    msg = cafe_error(monkeypatch, capsys, "cache", "info", "nosuch", "--cache-dir", str(tmp_path / "cache"))
    assert f"no feature cache at {tmp_path / 'cache' / 'nosuch.h5'}" in msg


@pytest.mark.parametrize("args,said", [
    (["--name", "../escape"], "cache name '../escape': must be a plain name"),
    (["--name", "a/b"], "cache name 'a/b': must be a plain name"),
    (["--views", "clean,clean"], "--views 'clean,clean': clean given twice"),
])
def test_extract_refuses_names_outside_the_cache_dir_and_repeated_views(tmp_path, monkeypatch, capsys, args, said):
    root = write_folder_dataset(tmp_path / "toyset", {"test": 1})
    msg = cafe_error(monkeypatch, capsys, "extract", "--dataset", "folder", "--root", str(root), "--model", TINY_CLIP,
                     "--random-weights", "--cache-dir", str(tmp_path / "cache" / "in"), *args)
    assert said in msg
    assert not (tmp_path / "cache").exists() and not (tmp_path / "escape.h5").exists()


def test_help_shows_the_datasets_table_name():
    for command in (["datasets"], ["extract"]):
        text = " ".join(CliRunner().invoke(app, [*command, "--help"], terminal_width=200).output.split())
        assert "[datasets]" in text and "or  in" not in text and "or ." not in text


def test_a_truncated_video_says_so_after_its_frames(tmp_path):
    cv2 = pytest.importorskip("cv2")
    from cafe_cache.predict.media import VideoReadError, iter_video_frames

    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 32))
    for i in range(30):
        writer.write(np.full((32, 32, 3), i * 8, np.uint8))
    writer.release()
    assert len(list(iter_video_frames(path))) == 30  # whole: no complaint
    cut = tmp_path / "cut.avi"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    frames = []
    with pytest.raises(VideoReadError, match=r"cut.avi: the video stops after frame \d+ of the 30 frames its header "
                                             r"announces: the file is truncated"):
        for frame in iter_video_frames(cut):
            frames.append(frame)
    assert 0 < len(frames) < 30  # the frames before were given


def test_train_and_eval_say_how_many_unreadable_rows_they_left_out(tmp_path, monkeypatch, capsys):
    root = write_folder_dataset(tmp_path / "toyset", {"train": 2, "test": 1})
    (root / "train" / "angry" / "000.png").write_bytes(b"not a png")  # read error, recorded in the cache
    (root / "test" / "happy" / "000.png").write_bytes(b"not a png")
    cache_dir = tmp_path / "cache"
    make_cache(root, cache_dir / "toyset.h5")
    with h5py.File(cache_dir / "toyset.h5") as f:
        assert sum(e != b"" for e in f["splits/train/error"][:]) == 1
    monkeypatch.setattr(sys, "argv", ["cafe", "train", "--source", "toyset", "--cache-dir", str(cache_dir), "--out",
                                      str(tmp_path / "run"), "--backbone-weights", "none", "--epochs", "1",
                                      "--image-size", "32", "--workers", "0", "--no-plots"])
    with pytest.raises(SystemExit) as stop:
        main()
    captured = capsys.readouterr()
    text = " ".join((captured.out + captured.err).split())
    assert stop.value.code in (0, None), text
    assert "1 unreadable image of toyset train left out" in text
    assert "1 unreadable image of toyset test left out" in text  # training's test split, and eval's
    md = (tmp_path / "run" / "eval-last" / "results.md").read_text()
    assert "- 1 unreadable image of toyset test left out" in md


def test_duplicate_ferplus_rows_are_one_sample(tmp_path):
    data = tmp_path / "data"
    ferplus_folder(data, "FER2013Test", [("a.png", votes(happiness=8, neutral=2)), ("b.png", votes(neutral=10))])
    with open(data / "FER2013Test" / "label.csv", "a", newline="") as f:
        csv.writer(f).writerow(["a.png", "(0, 0, 48, 48)", *votes(happiness=7, neutral=3)])  # same image, same label
    result = build_reader("ferplus", data).read()
    assert result.samples == [Sample("FER2013Test/a.png", 3, "test"), Sample("FER2013Test/b.png", 6, "test")]
    assert ("FER2013Test/label.csv:3", "FER2013Test/a.png repeats line 1") in result.skipped
    with open(data / "FER2013Test" / "label.csv", "a", newline="") as f:
        csv.writer(f).writerow(["b.png", "(0, 0, 48, 48)", *votes(anger=10)])
    with pytest.raises(DatasetError, match="b.png is listed twice with different majority labels: line 2 .* line 4"):
        build_reader("ferplus", data).read()


def test_counts_read_as_english():
    assert plural(1, "figure") == "1 figure" and plural(3, "figure") == "3 figures"
    assert plural(1, "test set") == "1 test set" and plural(1_000, "image") == "1,000 images"
