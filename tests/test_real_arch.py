"""The real-architecture tier: every command that touches CLIP, once, on the real ViT-B-32 graph.

The suite's other tests use the 1-head ``cafe-tiny`` CLIP, which hides what only a real ViT does (12
heads took PyTorch's fused attention fast path, which the ONNX exporter cannot write).  Here the
default ``--model ViT-B-32`` runs with random weights (no download) on a synthetic dataset of one
image per class and split, the mask branch at ``--image-size 32`` for one epoch; all marked ``real``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cafe_cache.predict.infer import Predictor
from cafe_cache.predict.onnx_export import OnnxPredictor
from cli.main import app

from .conftest import write_folder_dataset, write_hf_snapshot

pytestmark = pytest.mark.real


def cafe(*args: str) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return " ".join(result.output.split())


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A ViT-B-32 cache of a one-image-per-class dataset and a one-epoch run trained on it."""
    base = tmp_path_factory.mktemp("real")
    root = write_folder_dataset(base / "toyset", {"train": 1, "test": 1}, size=32)
    cafe("extract", "--dataset", "folder", "--root", root, "--random-weights", "--cache-dir", base / "cache",
         "--batch-size", 8)
    cafe("train", "--source", "toyset", "--cache-dir", base / "cache", "--out", base / "run", "--epochs", 1,
         "--image-size", 32, "--backbone-weights", "none", "--batch-size", 7, "--no-plots", "--no-eval",
         "--device", "cpu")
    return base


@pytest.fixture(scope="module")
def exported(base) -> tuple[Path, str]:
    path = base / "cafe.onnx"
    return path, cafe("export", "--checkpoint", base / "run", "--out", path)


def faces(base: Path) -> list[Image.Image]:
    return [Image.open(p).convert("RGB") for p in sorted((base / "toyset" / "test").glob("*/*.png"))[:4]]


def test_export_of_the_default_vit_b_32_passes_its_parity_check(base, exported):
    path, output = exported
    diff = float(output.split("max |logit difference| ")[1].split()[0])
    assert diff <= 1e-3 and path.exists()
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}
    assert meta["inputs"] == {"clip_image": 224, "mask_image": 32} and "ViT-B-32" in meta["model"]
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert "MatMul" in ops and not any("MultiHead" in op for op in ops)
    assert torch.backends.mha.get_fastpath_enabled()  # restored after the export


def test_onnx_predictions_equal_pytorch_on_vit_b_32(base, exported):
    crops = faces(base)
    torch_probs = Predictor.from_run(base / "run", device="cpu").predict_faces(crops)
    onnx_probs = OnnxPredictor(exported[0], "cpu").predict_faces(crops)
    np.testing.assert_allclose(onnx_probs, torch_probs, atol=1e-4)
    assert (onnx_probs.argmax(1) == torch_probs.argmax(1)).all()


def test_predict_cli_with_pytorch_and_with_onnx_agree(base, exported, tmp_path):
    files = [str(p) for p in sorted((base / "toyset" / "test").glob("*/*.png"))[:3]]
    rows = {}
    for backend in (("--checkpoint", base / "run"), ("--onnx", exported[0])):
        out = tmp_path / f"{backend[0][2:]}.json"
        output = cafe("predict", *backend, "--no-detect", "--device", "cpu", *files, "--out", out)
        assert "RANDOM CLIP WEIGHTS" in output
        rows[backend[0]] = json.loads(out.read_text())["rows"]
    assert len(rows["--checkpoint"]) == len(rows["--onnx"]) == 3
    for a, b in zip(rows["--checkpoint"], rows["--onnx"]):
        assert a["label"] == b["label"] and a["file"] == b["file"]
        assert abs(a["Happy"] - b["Happy"]) < 1e-4


def test_train_online_clip_runs_vit_b_32_on_every_batch(base, monkeypatch):
    """One epoch with CLIP on every augmented batch: 7 images, so a couple of ViT-B-32 forwards."""
    import cafe_cache.train.loop as loop

    seen = []
    real = loop.online_features

    def spy(clip, images):
        features = real(clip, images)
        seen.append((clip.info.model, tuple(images.shape[-2:]), tuple(features.shape[1:])))
        return features

    monkeypatch.setattr(loop, "online_features", spy)
    cafe("train", "--source", "toyset", "--cache-dir", base / "cache", "--out", base / "online", "--epochs", 1,
         "--image-size", 32, "--backbone-weights", "none", "--batch-size", 7, "--no-plots", "--no-eval",
         "--online-clip", "--device", "cpu")
    assert seen and set(seen) == {("ViT-B-32", (32, 32), (512,))}
    config = json.loads((base / "online" / "config.json").read_text())
    assert config["train"]["online_clip"] and (base / "online" / "last.safetensors").exists()


def test_eval_with_online_clip_on_bgr_images(base):
    """`--bgr-targets` makes eval run ViT-B-32 on the target's images (the cached features are RGB)."""
    cafe("eval", "--checkpoint", base / "run", "--cache-dir", base / "cache", "--bgr-targets", "toyset",
         "--device", "cpu")
    results = json.loads((base / "run" / "eval-last" / "results.json").read_text())
    target = results["targets"]["toyset"]
    assert target["bgr"] and target["n"] == 7 and sum(map(sum, target["confusion"])) == 7
    assert results["clip"].startswith("ViT-B-32") and "quickgelu" in results["clip"]


def test_zeroshot_text_tower_of_vit_b_32(base, tmp_path):
    """35 prompts (5 templates x 7 classes) through the real 12-layer text transformer."""
    import shutil

    caches = shutil.copytree(base / "cache", tmp_path / "cache")
    cafe("zeroshot", "--cache-dir", caches, "--out", tmp_path / "zs", "--device", "cpu")
    (text_file,) = (caches / "text").glob("*.npy")
    assert np.load(text_file).shape[-1] == 512
    (table,) = json.loads((tmp_path / "zs" / "results.json").read_text())["tables"]
    assert table["random_weights"] and table["targets"]["toyset"]["n"] == 7


def test_export_quantize_int8_of_vit_b_32(base, exported, tmp_path, monkeypatch):
    """Dynamic int8 of the real graph: kept only with >= 98% top-1 agreement with fp32 on 32 face crops at
    224 px (issue 26: the run's images, then generated faces). Random weights leave the logits nearly tied,
    so that check may refuse it; the file's own properties are checked with the threshold lifted."""
    from cafe_cache.predict import onnx_export

    path = tmp_path / "int8.onnx"
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(base / "run"), "--out", str(path),
                                      "--quantize", "int8"])
    said = " ".join((result.output + str(result.exception or "")).split())
    assert "of 14 images of folder" in said and "18 generated faces" in said and "98%" in said, said
    monkeypatch.setattr(onnx_export, "MIN_INT8_AGREEMENT", 0.0)
    output = cafe("export", "--checkpoint", base / "run", "--out", path, "--quantize", "int8")
    assert 0 <= float(output.split("agrees with fp32 on ")[1].split("%")[0]) <= 100
    # int8 MatMul/Gemm weights (a quarter of their fp32 size), the ResNet's convolutions kept fp32: ~2.8x smaller
    assert path.stat().st_size < exported[0].stat().st_size / 2.5
    crops = faces(base)
    int8, fp32 = (OnnxPredictor(p, "cpu").predict_faces(crops) for p in (path, exported[0]))
    assert (int8.argmax(1) == fp32.argmax(1)).mean() >= 0.75 and np.abs(int8 - fp32).max() < 0.05


def test_python_api_and_package_on_vit_b_32(base, tmp_path, monkeypatch):
    """cafe_cache.load on the run and on its package through an offline HF cache: cafe predict's numbers."""
    import warnings

    import huggingface_hub.constants

    import cafe_cache

    files = [str(p) for p in sorted((base / "toyset" / "test").glob("*/*.png"))[:3]]
    cafe("predict", "--checkpoint", base / "run", "--no-detect", "--device", "cpu", *files,
         "--out", tmp_path / "r.json")
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    expected = np.array([[r[c] for c in cafe_cache.Recognizer.classes] for r in rows])
    cafe("package", base / "run", tmp_path / "pkg")
    write_hf_snapshot(tmp_path / "hub", "org/vit", tmp_path / "pkg")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for source in (base / "run", "hf://org/vit"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", cafe_cache.RandomWeightsWarning)
            model = cafe_cache.load(source, device="cpu")
        got = np.array([list(face.probs.values()) for [face] in model.predict_batch(files, detect=False)])
        np.testing.assert_allclose(got, expected, atol=1e-5)
        assert model.info.clip_model == "ViT-B-32" and model.preprocess.clip_size == 224
        assert model.info.clip_activation == "quickgelu" and model.info.clip_random_weights


def test_two_sources_online_and_an_expw_target_on_vit_b_32(base, tmp_path):
    """ExpW faces cropped from their photos go through ViT-B-32; two sources train with CLIP on every batch."""
    from .test_native_readers import EXPW_LINES, write_expw

    cache = tmp_path / "cache"
    cache.mkdir()
    for name in ("toyset", "toyset2"):  # the same cache under two names: two sources with one fingerprint
        (cache / f"{name}.h5").symlink_to(base / "cache" / "toyset.h5")
    expw = write_expw(tmp_path / "ExpW", EXPW_LINES)
    cafe("extract", "--dataset", "expw", "--root", expw, "--random-weights", "--cache-dir", cache, "--batch-size", 8)
    out = cafe("train", "--source", "toyset,toyset2", "--cache-dir", cache, "--out", tmp_path / "run", "--epochs", 1,
               "--image-size", 32, "--backbone-weights", "none", "--batch-size", 7, "--no-plots", "--online-clip",
               "--balance", "domains", "--targets", "expw", "--device", "cpu")
    assert "mean source test" in out
    results = json.loads((tmp_path / "run" / "eval-last" / "results.json").read_text())
    assert results["source"] == "toyset,toyset2" and results["targets"]["expw"]["n"] == 8
    assert results["clip"].startswith("ViT-B-32")
