"""Issue 26 (26b): `cafe eval --targets` writes a results file of its own and never replaces the full
one, BGR is marked in every format, means say what they cover; heat-map means are filled."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from cafe_cache.figures import _means
from cafe_cache.metrics import means_line
from cafe_cache.run.config import TrainConfig
from cafe_cache.train.loop import train
from cli.main import main

from .conftest import make_cache, target_metrics, write_folder_dataset
from .test_faults import cafe_error


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, Path]:
    """Two cached datasets (toyset, other) and a one-epoch run trained on toyset."""
    base = tmp_path_factory.mktemp("evalfiles")
    cache_dir = base / "cache"
    make_cache(write_folder_dataset(base / "toyset", {"train": 3, "test": 2}), cache_dir / "toyset.h5")
    make_cache(write_folder_dataset(base / "other", {"test": 2}, seed=1), cache_dir / "other.h5")
    run = base / "run"
    train(TrainConfig(source="toyset", cache_dir=str(cache_dir), backbone_weights="none", epochs=1, batch_size=7,
                      image_size=32, workers=0, lr=1e-3), run, log=lambda s: None)
    return {"cache_dir": cache_dir, "run": run}


def cafe(monkeypatch, capsys, *args: str) -> str:
    monkeypatch.setattr(sys, "argv", ["cafe", *args])
    with pytest.raises(SystemExit) as stop:
        main()
    captured = capsys.readouterr()
    assert stop.value.code in (0, None), captured.err
    return captured.out + captured.err


def test_eval_targets_keeps_the_full_results_and_marks_bgr(env, monkeypatch, capsys):
    run, cache_dir = env["run"], str(env["cache_dir"])
    cafe(monkeypatch, capsys, "eval", "-c", str(run), "--cache-dir", cache_dir, "--workers", "0")
    full = run / "eval-last" / "results.json"
    before = {p.name: p.read_bytes() for p in (full, full.with_suffix(".md"))}
    assert set(json.loads(before["results.json"])["targets"]) == {"toyset", "other"}

    text = cafe(monkeypatch, capsys, "eval", "-c", str(run), "--cache-dir", cache_dir, "--workers", "0",
                "--targets", "other", "--bgr-targets", "other")
    assert {p.name: p.read_bytes() for p in (full, full.with_suffix(".md"))} == before  # not replaced
    subset = json.loads((run / "eval-last" / "results-other.json").read_text())
    assert list(subset["targets"]) == ["other"] and subset["bgr_targets"] == ["other"]
    assert subset["targets"]["other"]["bgr"] is True
    assert subset["summary"]["paper_mean"] is None  # no source-included mean without the source
    assert "| other [BGR] |" in (run / "eval-last" / "results-other.md").read_text()
    assert "other [BGR]" in text  # the console table
    assert "source included" not in text and "mean over 1 unseen target (source not evaluated)" in text
    assert "results-other.json" in text


def test_eval_refuses_unknown_bgr_targets_and_a_missing_cache_dir(env, tmp_path, monkeypatch, capsys):
    msg = cafe_error(monkeypatch, capsys, "eval", "-c", str(env["run"]), "--cache-dir", str(env["cache_dir"]),
                     "--bgr-targets", "banana")
    assert "--bgr-targets banana: not among the evaluated caches" in msg
    msg = cafe_error(monkeypatch, capsys, "eval", "-c", str(env["run"]), "--cache-dir", str(tmp_path / "nonexistent"))
    assert "--cache-dir" in msg and "does not exist" in msg


def test_means_say_what_they_cover():
    def res(*names: str) -> dict:
        return {n: target_metrics(50.0 + i) for i, n in enumerate(names)}

    assert means_line(res("rafdb"), "rafdb") == ["Mean (1 test set, source included): 50.00"]
    both = means_line(res("rafdb", "sfew"), "rafdb")
    assert both[0] == "Mean (all 2 test sets, source included): 50.50"
    assert both[1] == "mean over unseen targets only: 51.00"
    assert means_line(res("sfew", "mma"), "rafdb") == ["mean over 2 unseen targets (source not evaluated): 50.50"]


def test_heat_map_means_are_filled_for_the_test_sets_shown():
    acc = {"toyset": {"toyset": 80.0, "other": 40.0}, "other": {"toyset": 30.0, "other": 70.0}}
    m = _means(acc, ["toyset", "other"], ["toyset", "other"])
    assert np.allclose(m, [[60.0, 40.0], [50.0, 30.0]])
    partial = _means({"toyset": {"toyset": 80.0}}, ["toyset"], ["toyset", "other"])
    assert np.isnan(partial).all()  # a row lacking a test set has no mean rather than one over fewer
