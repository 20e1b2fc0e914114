"""``make bench --quick`` (python -m bench.run --quick): the benchmark runs in seconds and writes its JSON."""

from __future__ import annotations

import json

from bench.run import main


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
    assert tr["epoch_time_cached_from_files_over_online"] > 0 and isinstance(tr["target_met"], bool)
    assert result["evaluation"]["from_stored_images"]["images_per_s"] > 0
    assert result["memory"]["train_cached"]["peak_rss_mib"] > 0 and "extract_growth_mib" in result["memory"]
    ex = result["export"]
    for label in ("default_threads", "1_thread"):
        assert ex[label]["fp32"]["images_per_s"] > 0 and ex[label]["int8_speedup"] > 0
    assert ex["file_mib"]["int8"] < ex["file_mib"]["fp32"] and 0 <= ex["bench_inputs_agreement"] <= 1
    assert 0 <= ex["export_check_agreement"] <= 1 and ex["export_keeps_int8"] == (ex["export_check_agreement"] >= 0.98)
    assert isinstance(ex["speedup_real"], bool)
    st = result["startup"]
    assert 0 < st["help_seconds"] < st["extract_first_batch_seconds"]
    assert "int8 speed-up" in (tmp_path / path.name.replace(".json", ".md")).read_text()
    assert "cafe --help" in (tmp_path / path.name.replace(".json", ".md")).read_text()
    assert "RANDOM" in result["meta"]["weights"] and result["meta"]["torch"] and result["meta"]["load_average_end"]
