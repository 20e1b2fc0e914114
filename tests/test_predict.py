"""`cafe predict` on real photos and a video, and `cafe export` to ONNX, with a tiny trained run.

The run: `cafe-tiny` random CLIP (32 px input) cached over a generated folder dataset, then one
epoch of the real training loop with a random ResNet-18 at image_size 40, so the CLIP and
mask-branch inputs differ in size.  Photos come from scikit-image (`astronaut()` is a real
portrait, `coffee()` has no face).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from skimage import data
from torchvision.transforms import v2
from typer.testing import CliRunner

from cafe_cache.classes import CLASSES
from cafe_cache.errors import CafeError
from cafe_cache.extract.clip import ClipSpec, load_clip
from cafe_cache.extract.preprocess import IMAGENET_MEAN, IMAGENET_STD, load_uint8, normalize
from cafe_cache.predict import infer
from cafe_cache.predict.api import load
from cafe_cache.predict.faces import align_face, get_detector
from cafe_cache.predict.infer import NO_FACE, Predictor, predict_inputs
from cafe_cache.predict.media import iter_inputs
from cafe_cache.predict.onnx_export import OnnxPredictor
from cafe_cache.run.checkpoint import load_model
from cafe_cache.run.data import to_tensor
from cli.main import app

from .conftest import TINY_CLIP, train_tiny_run

FACE_REGION = (160, 40, 290, 195)  # where the astronaut's face lies (see test_faces.py)
FPS = 10.0


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("predict")
    train_tiny_run(base)
    return base / "run"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """A folder as users have them: a portrait, a photo without a face, junk, and a short video."""
    folder = tmp_path_factory.mktemp("inputs")
    astronaut = data.astronaut()
    Image.fromarray(astronaut).save(folder / "a_astronaut.jpg")
    Image.fromarray(data.coffee()).save(folder / "b_coffee.png")
    (folder / "c_corrupt.jpg").write_bytes(np.random.default_rng(0).bytes(600))
    (folder / "d_notes.txt").write_text("not a picture")
    writer = cv2.VideoWriter(str(folder / "e_clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (256, 256))
    frame = cv2.cvtColor(np.ascontiguousarray(astronaut[::2, ::2]), cv2.COLOR_RGB2BGR)
    for i in range(5):
        writer.write(np.roll(frame, 4 * i, axis=1))  # the face moves a little each frame
    writer.release()
    return folder


@pytest.fixture(scope="module")
def onnx_file(run_dir, tmp_path_factory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("onnx") / "cafe.onnx"
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(run_dir), "--out", str(path)])
    assert result.exit_code == 0, result.output
    return path, result.output


def invoke(*args: str) -> str:
    """Run `cafe predict`; its screen output with rich's line wrapping undone."""
    result = CliRunner().invoke(app, ["predict", *args])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_predictor_sees_faces_as_training_did(run_dir):
    """The probabilities equal the model run on the official inputs, built the way training built them."""
    predictor = Predictor.from_run(run_dir, device="cpu")
    photo = Image.fromarray(data.astronaut())
    [[face]] = get_detector("auto").detect([photo])
    crop = align_face(photo, face, 100)
    model, _ = load_model(run_dir)
    clip = load_clip(ClipSpec(model=TINY_CLIP, random_weights=True))
    clip_input = normalize(load_uint8(crop, 32, "official")[None], IMAGENET_MEAN, IMAGENET_STD)
    mask_input = v2.functional.normalize(to_tensor(crop, 40), IMAGENET_MEAN, IMAGENET_STD)[None]
    with torch.no_grad():
        expected = torch.softmax(model(mask_input, clip.encode(clip_input)).logits, 1).numpy()
    np.testing.assert_allclose(predictor.predict_faces([crop]), expected, atol=1e-6)
    assert (predictor.clip_size, predictor.mask_size) == (32, 40)


def test_folder_with_photos_junk_and_video(run_dir, inputs, tmp_path):
    out, annotated = tmp_path / "results.csv", tmp_path / "annotated"
    output = invoke("--checkpoint", str(run_dir), str(inputs), "--every", "2", "--out", str(out),
                    "--save-annotated", str(annotated))
    assert "RANDOM CLIP WEIGHTS" in output
    rows = read_csv(out)
    by_file = {}
    for r in rows:
        by_file.setdefault(Path(r["file"]).name, []).append(r)

    [face] = by_file["a_astronaut.jpg"]
    box = [float(face[k]) for k in ("x1", "y1", "x2", "y2")]
    assert FACE_REGION[0] <= box[0] < box[2] <= FACE_REGION[2] and FACE_REGION[1] <= box[1] < box[3] <= FACE_REGION[3]
    probs = np.array([float(face[c]) for c in CLASSES])
    assert probs.sum() == pytest.approx(1.0, abs=1e-5) and face["label"] == CLASSES[probs.argmax()]
    assert float(face["score"]) > 0.5 and face["error"] == ""

    assert [r["error"] for r in by_file["b_coffee.png"]] == [NO_FACE]
    assert "cannot read this image" in by_file["c_corrupt.jpg"][0]["error"]
    assert "not an image or video" in by_file["d_notes.txt"][0]["error"]

    video = by_file["e_clip.avi"]
    assert [(int(r["frame"]), float(r["time_s"])) for r in video] == [(0, 0.0), (2, 0.2), (4, 0.4)]
    assert all(r["error"] == "" and r["label"] in CLASSES for r in video)

    assert "4 faces in 5 images/frames from 5 inputs; no face in 1 images/frames; 2 inputs failed" in output
    assert sorted(p.name for p in annotated.iterdir()) == [
        "0000_a_astronaut.jpg", "0001_b_coffee.jpg",
        "0004_e_clip_f000000.jpg", "0004_e_clip_f000002.jpg", "0004_e_clip_f000004.jpg"]


def test_no_detect_and_json(run_dir, tmp_path):
    """--no-detect: each input is one face crop, whole image, no detector score."""
    astronaut = Image.fromarray(data.astronaut())
    astronaut.crop(FACE_REGION).save(tmp_path / "face.png")
    Image.fromarray(data.coffee()).resize((48, 32)).save(tmp_path / "cup.png")
    out = tmp_path / "r.json"
    invoke("-c", str(run_dir), str(tmp_path / "face.png"), str(tmp_path / "cup.png"), "--no-detect", "--out", str(out))
    result = json.loads(out.read_text())
    assert result["summary"] == {"files": 2, "pictures": 2, "faces": 2, "no_face": 0, "failed": 0}
    assert "RANDOM CLIP WEIGHTS" in result["warning"]
    face, cup = result["rows"]
    assert (face["x1"], face["y1"], face["x2"], face["y2"]) == (0.0, 0.0, 130.0, 155.0)
    assert (cup["x2"], cup["y2"], cup["score"], cup["face"]) == (48.0, 32.0, 1.0, 0)
    assert sum(face[c] for c in CLASSES) == pytest.approx(1.0, abs=1e-5)


def test_rows_are_kept_when_a_later_input_crashes(run_dir, inputs, tmp_path, monkeypatch):
    real = infer.predict_inputs

    def fails_after_first(*args, **kwargs):
        results = real(*args, **kwargs)
        yield next(results)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(infer, "predict_inputs", fails_after_first)  # cafe predict imports it when it runs
    out = tmp_path / "partial.csv"
    result = CliRunner().invoke(app, ["predict", "-c", str(run_dir), str(inputs / "a_astronaut.jpg"),
                                      str(inputs / "b_coffee.png"), "--out", str(out)])
    assert isinstance(result.exception, RuntimeError)
    assert [Path(r["file"]).name for r in read_csv(out)] == ["a_astronaut.jpg"]


@pytest.mark.parametrize("args, message", [
    (["--out", "r.txt"], "csv or .json"),
    ([], "either --checkpoint"),
])
def test_bad_arguments_are_refused(inputs, args, message):
    result = CliRunner().invoke(app, ["predict", str(inputs), *args])
    assert result.exit_code != 0 and message in str(result.exception)


def test_export_parity_and_metadata(run_dir, onnx_file):
    path, output = onnx_file
    assert "max |logit difference|" in output and "RANDOM CLIP WEIGHTS" in output
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}
    assert meta["classes"] == list(CLASSES) and meta["random_weights"] is True
    assert meta["inputs"] == {"clip_image": 32, "mask_image": 40}
    assert meta["preprocessing"]["colour_order"] == "RGB" and meta["preprocessing"]["mean"] == list(IMAGENET_MEAN)
    predictor = Predictor.from_run(run_dir, device="cpu")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    generator = torch.Generator().manual_seed(1)
    for batch in (1, 3):
        x = torch.randn(batch, 3, 32, 32, generator=generator), torch.randn(batch, 3, 40, 40, generator=generator)
        [got] = session.run(["logits"], {"clip_image": x[0].numpy(), "mask_image": x[1].numpy()})
        diff = np.abs(got - predictor.logits(*x).numpy()).max()
        assert got.shape == (batch, len(CLASSES)) and diff < 1e-3
    print(f"ONNX vs PyTorch max |logit difference|: {diff:.2e}")


def test_onnx_predictions_equal_torch(run_dir, inputs, onnx_file, tmp_path):
    path, _ = onnx_file
    files = [str(inputs / "a_astronaut.jpg"), str(inputs / "e_clip.avi")]
    invoke("-c", str(run_dir), *files, "--every", "2", "--out", str(tmp_path / "torch.json"))
    output = invoke("--onnx", str(path), *files, "--every", "2", "--out", str(tmp_path / "onnx.json"))
    assert "RANDOM CLIP WEIGHTS" in output and "onnxruntime" in output
    torch_rows = json.loads((tmp_path / "torch.json").read_text())["rows"]
    onnx_rows = json.loads((tmp_path / "onnx.json").read_text())["rows"]
    assert len(onnx_rows) == len(torch_rows) == 4
    for a, b in zip(torch_rows, onnx_rows):
        assert (a["file"], a["frame"], a["label"]) == (b["file"], b["frame"], b["label"])
        assert max(abs(a[c] - b[c]) for c in CLASSES) < 1e-4

    # the library path too, batched across the face crops of a chunk
    recognizer = load(path, device="cpu", batch_size=2, warn=False)
    pictures = list(predict_inputs(list(iter_inputs(files)), recognizer, True, every=2, chunk_size=3))
    assert [len(p.rows) for p in pictures] == [1, 1, 1, 1]


def test_not_a_cafe_onnx_file(tmp_path, inputs):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07junk")
    result = CliRunner().invoke(app, ["predict", "--onnx", str(junk), str(inputs / "a_astronaut.jpg")])
    assert result.exit_code != 0 and "cafe export" in str(result.exception)


def test_an_op_the_exporter_cannot_write_is_one_cafe_line(run_dir, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::fused_thing' is not supported\n\n"
                           + "graph(%clip_image : Float(3, 3, 32, 32)):\n  %1 = aten::fused_thing(%clip_image)\n" * 50)

    monkeypatch.setattr(torch.onnx, "export", refuse)
    out = tmp_path / "x.onnx"
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(run_dir), "--out", str(out)])
    message = str(result.exception)
    assert isinstance(result.exception, CafeError) and "\n" not in message
    assert str(run_dir) in message and "fused_thing" in message and "--opset" in message
    assert not out.exists() and not list(tmp_path.iterdir())
    assert torch.backends.mha.get_fastpath_enabled()


def test_export_quantize_int8_agrees_with_fp32(run_dir, inputs, onnx_file, tmp_path, monkeypatch):
    from cafe_cache.predict import onnx_export
    # the random tiny model's logits nearly tie, so int8 flips some of the run's faces (issue 26: the check
    # is on face crops, and refuses that; see test_int8_check.py); here: what a kept int8 file is
    monkeypatch.setattr(onnx_export, "MIN_INT8_AGREEMENT", 0.0)
    path = tmp_path / "int8.onnx"
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(run_dir), "--out", str(path), "--quantize", "int8"])
    assert result.exit_code == 0, (result.output, result.exception)
    agreement = float(" ".join(result.output.split()).split("agrees with fp32 on ")[1].split("%")[0])
    assert 0 <= agreement <= 100 and "images of folder" in result.output
    model = onnx.load(str(path))
    assert any(n.op_type in ("MatMulInteger", "DynamicQuantizeLinear") for n in model.graph.node)
    assert not any(n.op_type == "MatMulInteger" for n in onnx.load(str(onnx_file[0])).graph.node)
    crop = Image.fromarray(data.astronaut()).resize((100, 100))
    int8, fp32 = (OnnxPredictor(p, "cpu").predict_faces([crop]) for p in (path, onnx_file[0]))
    assert int8.argmax() == fp32.argmax() and np.abs(int8 - fp32).max() < 0.05
    assert not list(tmp_path.glob("*.int8")) and not list(tmp_path.glob("*.tmp"))


def test_export_quantize_refuses_other_choices(run_dir, tmp_path):
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(run_dir), "--out", str(tmp_path / "x.onnx"),
                                      "--quantize", "int4"])
    assert isinstance(result.exception, CafeError) and "int8" in str(result.exception)
