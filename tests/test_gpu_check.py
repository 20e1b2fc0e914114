"""``make gpu-check GPU_ARGS='--device cpu --quick'``: the GPU check runs on the CPU, reports every step,
and marks what needs a GPU as skipped (with a reason) rather than filling in numbers."""

from __future__ import annotations

import json

import pytest
import torch

from bench.gpu_check import STATUSES, error_line, main, nccl_part

STEPS = ("extract", "train", "torchrun", "predict", "environment")


@pytest.mark.slow
def test_cpu_quick_run_reports_every_step_and_skips_gpu_only_parts(tmp_path):
    main(["--device", "cpu", "--quick", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "gpu-check.json").read_text())
    steps = result["steps"]
    assert list(steps) == list(STEPS)
    assert all(step["status"] in STATUSES for step in steps.values())
    for name in ("extract", "train", "predict", "environment"):  # CPU-runnable: really ran
        assert steps[name]["status"] == "ran", steps[name].get("error")
    assert result["meta"]["quick"] and "cafe-tiny" in result["meta"]["clip_model_note"]
    assert "RANDOM" in result["meta"]["weights"] and result["meta"]["failed"] == []

    ex = steps["extract"]
    assert ex["end_to_end_images_per_s"] > 0 and ex["model_only_images_per_s"] > 0
    assert ex["end_to_end_over_model_only"] > 0 and 0 < ex["fp16_max_rel_error_vs_fp32"] < 0.1
    assert ex["peak_gpu_memory"]["status"] == "skipped" and "CUDA" in ex["peak_gpu_memory"]["reason"]
    assert "mib" not in ex["peak_gpu_memory"]

    for precision in ("fp32", "bf16"):
        tr = steps["train"][precision]
        assert tr["cached_images_per_s"] > 0 and tr["online_clip_images_per_s"] > 0
        assert tr["epoch_time_cached_over_online"] > 0 and 0 < tr["cached_compute_share"] <= 1
    assert steps["train"]["peak_gpu_memory"]["status"] == "skipped"

    # GPU-only: skipped with a reason, no figures
    assert steps["torchrun"]["status"] == "skipped" and "NCCL" in steps["torchrun"]["reason"]
    assert "nproc_per_node" not in steps["torchrun"]
    pr = steps["predict"]
    assert pr["mtcnn_device"] == "cpu" and pr["mtcnn_on_cuda"]["status"] == "skipped"
    assert pr["onnx_runs_on"] == "onnxruntime CPU" and pr["onnx_cuda_provider"]["status"] == "skipped"
    assert pr["onnx_cuda_provider"]["reason"] and pr["crops_predicted"] > 0
    assert pr["onnx_vs_torch_max_abs_prob_diff"] < 1e-3
    env = steps["environment"]
    assert env["torch"] and env["cuda"]["status"] == "skipped" and env["cuda"]["reason"]
    assert result["meta"]["process_seconds"] >= result["meta"]["seconds"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_asking_for_cuda_without_one_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--device", "cuda", "--out", str(tmp_path)])
    assert e.value.code == 2 and "--device cpu" in capsys.readouterr().err
    assert not (tmp_path / "gpu-check.json").exists()


def test_a_failed_launch_is_reported_by_the_line_that_says_why():
    torchrun_output = ("Traceback (most recent call last):\n  File x\n"
                       "error (rank 1 of 2): --batch-size 7 does not split\n"
                       "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\n=====\ncli FAILED\n")
    assert error_line(torchrun_output) == "error (rank 1 of 2): --batch-size 7 does not split"
    crash = "Traceback (most recent call last):\n  File x\nRuntimeError: CUDA error: no kernel image\n===\n"
    assert error_line(crash) == "RuntimeError: CUDA error: no kernel image"
    assert error_line("") == "no output"


def test_nccl_on_a_cpu_is_skipped_with_the_reason_not_claimed():
    part = nccl_part(torch.device("cpu"), gpus=0, nproc=2)
    assert part["status"] == "skipped" and "CUDA" in part["reason"] and "gloo" in part["reason"]
