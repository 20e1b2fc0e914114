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

from cafe_cache.predict.onnx_export import OnnxPredictor
from cafe_cache.predict.infer import Predictor
from cli.main import app

from .conftest import write_folder_dataset

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
