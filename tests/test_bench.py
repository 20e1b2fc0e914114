"""``make bench`` (python -m bench.run): what its numbers mean, on the smallest workloads (the tiny CLIP, tiny
tensors; the slow epochs replaced by known rates), and one whole ``--quick`` run (slow) whose table says what
its JSON holds."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
import torch

import bench.run as bench
from bench.run import QUICK, headline_note, main, measure, rel_error


def test_measure_is_the_median_of_the_rounds_after_one_warm_up_run():
    calls = iter([1000.0, 3.0, 9.0, 5.0])  # the warm-up (1000) is run, never counted

    result = measure({"x": lambda: next(calls)}, repeats=3)
    assert result["x"] == {"images_per_s": 5.0, "runs": [3.0, 9.0, 5.0]}


def test_reduced_precision_error_is_measured_against_fp32():
    from cafe_cache.extract.clip import ClipSpec, load_clip

    clip = load_clip(ClipSpec(model="cafe-tiny", random_weights=True), torch.device("cpu"))
    batch = torch.randint(0, 256, (2, 3, clip.image_size, clip.image_size), dtype=torch.uint8)
    assert rel_error(clip, batch, "fp32") == 0.0  # fp32 against itself
    assert 0 < rel_error(clip, batch, "bf16") < 0.1  # bf16 rounds: a small, non-zero error


def test_training_ratios_are_epoch_times_over_online_and_the_headline_is_the_default_paths(monkeypatch, tmp_path):
    """Epochs at known rates (images/s): an epoch-time ratio is online's rate over the path's (time = 1/rate), and
    the headline is the default path's (cached, from files, fp32) even when another path does better."""
    from cafe_cache.extract.clip import ClipSpec, load_clip

    rates = {(False, "fp32", "cache-files"): 20.0, (False, "fp32", "cache-stored"): 50.0,
             (True, "fp32", "cache-files"): 10.0, (False, "bf16", "cache-files"): 40.0,
             (True, "bf16", "cache-files"): 16.0}
    monkeypatch.setattr(bench, "train_epoch", lambda cfg, run: rates[cfg.online_clip, cfg.precision,
                                                                      Path(cfg.cache_dir).name])
    monkeypatch.setattr(bench, "sample_pass", lambda *a: 1.0)
    clip = load_clip(ClipSpec(model="cafe-tiny", random_weights=True), torch.device("cpu"))
    tr = bench.training(QUICK, clip, tmp_path)
    assert tr["epoch_time_cached_from_files_over_online"] == pytest.approx(10 / 20)
    assert tr["epoch_time_cached_from_stored_images_over_online"] == pytest.approx(10 / 50)
    assert tr["epoch_time_cached_from_files_bf16_over_online_bf16"] == pytest.approx(16 / 40)
    assert tr["headline_ratio"] == pytest.approx(0.5) and tr["target_met"] is False  # 0.5 > 0.45: not the 0.2
    for mode in tr["step_without_loading"].values():  # real steps on tensors: the same meaning
        assert mode["step_time_cached_over_online"] == pytest.approx(
            mode["online"]["images_per_s"] / mode["cached"]["images_per_s"])


def test_the_headline_is_the_default_paths_ratio():
    tr = {"headline_ratio": 0.73, "headline_path": "cached features, images from files, fp32", "target_ratio": 0.45,
          "epoch_time_cached_from_stored_images_over_online": 0.40}  # an option meets the target, the default not
    note = headline_note(tr)
    assert "= 0.73: the default path (cached features, images from files, fp32)" in note and note.endswith("NOT met")


@pytest.mark.slow
def test_quick_bench_runs_whole_and_its_table_says_what_its_json_holds(tmp_path):
    main(["--quick", "--out", str(tmp_path)])
    [path] = tmp_path.glob("bench-*-quick.json")
    result = json.loads(path.read_text())
    md = (tmp_path / path.name.replace(".json", ".md")).read_text()
    [ex] = result["extraction"]
    for name in ("end_to_end", "end_to_end_store_images", "model_only", "loading_only"):
        assert ex[name]["images_per_s"] == statistics.median(ex[name]["runs"]) > 0
    assert ex["images"] == 7 * (QUICK.train_per_class + QUICK.test_per_class)
    tr = result["training"]
    default = tr["online_clip"]["images_per_s"] / tr["cached_from_files"]["images_per_s"]
    assert tr["headline_ratio"] == pytest.approx(default) and headline_note(tr) in md
    memory = result["memory"]
    small, big = (memory[k]["peak_rss_mib"] for k in list(memory)[1:3])
    assert memory["extract_growth_mib"] == pytest.approx(big - small)
    export = result["export"]
    assert export["file_mib"]["int8"] < export["file_mib"]["fp32"]
    assert export["export_keeps_int8"] == (export["export_check_agreement"] >= 0.98)
    assert f"on {export['check_faces']} as cafe export checks" in md and "RANDOM" in result["meta"]["weights"]
    assert 0 < result["startup"]["help_seconds"] < result["startup"]["extract_first_batch_seconds"]
