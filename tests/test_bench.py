"""``make bench --quick`` (python -m bench.run --quick): the benchmark runs in seconds and writes its JSON."""

from __future__ import annotations

import json
import re

import pytest

from bench.run import headline_note, main


@pytest.mark.slow
def test_quick_bench_writes_every_section(tmp_path):
    main(["--quick", "--out", str(tmp_path)])
    [path] = tmp_path.glob("bench-*-quick.json")
    result = json.loads(path.read_text())
    assert (tmp_path / path.name.replace(".json", ".md")).is_file()
    [ex] = result["extraction"]
    for name in ("end_to_end", "end_to_end_store_images", "model_only", "loading_only"):
        assert ex[name]["images_per_s"] > 0
    assert ex["model_only_variants"]["bf16"]["max_rel_error_vs_fp32"] > 0
    tr = result["training"]
    default = tr["online_clip"]["images_per_s"] / tr["cached_from_files"]["images_per_s"]
    assert tr["headline_ratio"] == tr["epoch_time_cached_from_files_over_online"] == pytest.approx(default)
    assert tr["target_met"] == (default <= tr["target_ratio"])  # the default path's ratio, not the best one
    assert result["evaluation"]["from_stored_images"]["images_per_s"] > 0
    assert result["memory"]["train_cached"]["peak_rss_mib"] > 0 and "extract_growth_mib" in result["memory"]
    ex = result["export"]
    for label in ("default_threads", "1_thread"):
        assert ex[label]["fp32"]["images_per_s"] > 0 and ex[label]["int8_speedup"] > 0
    assert ex["file_mib"]["int8"] < ex["file_mib"]["fp32"] and 0 <= ex["bench_inputs_agreement"] <= 1
    assert 0 <= ex["export_check_agreement"] <= 1 and ex["export_keeps_int8"] == (ex["export_check_agreement"] >= 0.98)
    assert re.match(r"\d+ images of \w+ \(", ex["check_faces"]) and ex["check_inputs"] == 32  # the run's images
    assert isinstance(ex["speedup_real"], bool)
    st = result["startup"]
    assert 0 < st["help_seconds"] < st["extract_first_batch_seconds"]
    md = (tmp_path / path.name.replace(".json", ".md")).read_text()
    assert "int8 speed-up" in md and f"on {ex['check_faces']} as cafe export checks" in md
    assert "the default path (cached features, images from files, fp32)" in md and "best of the ratios" not in md
    assert "cafe --help" in (tmp_path / path.name.replace(".json", ".md")).read_text()
    assert "RANDOM" in result["meta"]["weights"] and result["meta"]["torch"] and result["meta"]["load_average_end"]


def test_the_headline_is_the_default_paths_ratio():
    tr = {"headline_ratio": 0.73, "headline_path": "cached features, images from files, fp32", "target_ratio": 0.45,
          "epoch_time_cached_from_stored_images_over_online": 0.40}  # an option meets the target, the default not
    note = headline_note(tr)
    assert "= 0.73: the default path (cached features, images from files, fp32)" in note and note.endswith("NOT met")
