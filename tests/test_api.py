"""The Python API (`cafe_cache.load` -> Recognizer -> FacePrediction), `cafe package` and hf:// loading.

The run is the one of tests/test_predict.py: `cafe-tiny` random CLIP (32 px input) over a generated
folder dataset, one epoch of a random ResNet-18 at image_size 40, then evaluated on its own cache so
the package's model card has a results table.  Photos come from scikit-image.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
import weakref
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from typer.testing import CliRunner

import cafe_cache as cafe
from cafe_cache.classes import CLASSES
from cafe_cache.errors import CafeError
from cafe_cache.evaluate.targets import evaluate_run
from cafe_cache.predict import recognizer as recognizer_module
from cafe_cache.predict.hub import parse_hf
from cafe_cache.predict.infer import Preprocess
from cafe_cache.predict.model_card import model_card
from cafe_cache.predict.onnx_export import PARITY_TOLERANCE
from cafe_cache.predict.package_config import WEIGHTS_FILE, PackageConfig, PackagedClip
from cafe_cache.results import EvalResult, Summary
from cafe_cache.run.folder import RunConfig
from cli.main import app

from .conftest import target_metrics, train_tiny_run, write_hf_snapshot

REPO = Path(__file__).resolve().parents[1]
FACE_REGION = (160, 40, 290, 195)  # the astronaut's face (see test_faces.py)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("api")
    train_tiny_run(base)
    evaluate_run(base / "run", cache_dir=base / "cache", device="cpu", workers=0, log=lambda _: None)
    return base / "run"


@pytest.fixture(scope="module")
def recognizer(run_dir):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cafe.RandomWeightsWarning)
        return cafe.load(run_dir, device="cpu")


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> dict[str, Path]:
    """Two face crops of different sizes, a crop of no face, and a whole photo with one face."""
    folder = tmp_path_factory.mktemp("pictures")
    astronaut = Image.fromarray(data.astronaut())
    files = {"face": folder / "face.png", "small": folder / "small.png", "cup": folder / "cup.png",
             "photo": folder / "photo.jpg"}
    astronaut.crop(FACE_REGION).save(files["face"])
    astronaut.crop((170, 50, 270, 170)).resize((60, 72)).save(files["small"])
    Image.fromarray(data.coffee()).resize((48, 32)).save(files["cup"])
    astronaut.save(files["photo"], quality=95)
    return files


def cli_rows(*args: str) -> list[dict]:
    """`cafe predict ARGS --out FILE.json`: its rows."""
    out = Path(args[-1])
    result = CliRunner().invoke(app, ["predict", *args[:-1], "--out", str(out)])
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(out.read_text())["rows"]


def probs_of(face) -> np.ndarray:
    values = face.probs if hasattr(face, "probs") else face
    return np.array([values[c] for c in CLASSES])


def as_inputs(path: Path) -> dict[str, object]:
    """The same picture as every input type predict takes."""
    pil = Image.open(path).convert("RGB")
    array = np.asarray(pil)
    return {"path": path, "str": str(path), "pil": pil, "ndarray": array,
            "tensor uint8": torch.from_numpy(array.copy()).permute(2, 0, 1),
            "tensor float": torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255}


def test_top_level_names():
    assert {"load", "Recognizer", "FacePrediction"} <= set(dir(cafe)) & set(cafe.__all__)
    assert cafe.Recognizer is recognizer_module.Recognizer and cafe.FacePrediction is recognizer_module.FacePrediction


def test_import_cafe_cache_stays_light():
    code = "import sys, cafe_cache; print(sorted(m for m in ('torch', 'open_clip', 'cv2') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


def test_each_input_type_gives_the_probabilities_of_cafe_predict(run_dir, recognizer, pictures, tmp_path):
    crops = [pictures[k] for k in ("face", "small", "cup")]
    rows = cli_rows("-c", str(run_dir), "--no-detect", *map(str, crops), str(tmp_path / "crops.json"))
    for path, row in zip(crops, rows):
        for kind, image in as_inputs(path).items():
            [face] = recognizer.predict(image, detect=False)
            np.testing.assert_allclose(probs_of(face), probs_of(row), atol=1e-5, err_msg=kind)
            assert {k: v for k, v in face.to_dict().items() if k not in CLASSES} == {
                k: row[k] for k in ("x1", "y1", "x2", "y2", "score", "label")}, kind
    [row] = cli_rows("-c", str(run_dir), str(pictures["photo"]), str(tmp_path / "photo.json"))
    for kind in ("path", "ndarray", "tensor uint8"):
        [face] = recognizer.predict(as_inputs(pictures["photo"])[kind])
        np.testing.assert_allclose(probs_of(face), probs_of(row), atol=1e-5, err_msg=kind)
        assert face.box == (row["x1"], row["y1"], row["x2"], row["y2"]) and face.score == row["score"]


def test_detect_false_takes_each_input_as_one_face_crop(recognizer, pictures):
    [face] = recognizer.predict(pictures["small"], detect=False)
    assert face.box == (0.0, 0.0, 60.0, 72.0) and face.score == 1.0
    assert list(face.probs) == list(CLASSES) == list(recognizer.classes)
    assert sum(face.probs.values()) == pytest.approx(1.0, abs=1e-6)
    assert face.label == max(face.probs, key=face.probs.get)
    with pytest.raises(Exception):  # frozen
        face.label = "Happy"
    assert recognizer.predict(pictures["cup"]) == []  # with detection: no face in a cup


def test_predict_batch_equals_predict_per_image(recognizer, pictures):
    images = [pictures["face"], Image.open(pictures["small"]), np.asarray(Image.open(pictures["cup"]).convert("RGB"))]
    batched = recognizer.predict_batch(images, detect=False, batch_size=2)
    single = [recognizer.predict(im, detect=False) for im in images]
    assert [len(b) for b in batched] == [1, 1, 1]
    for b, s in zip(batched, single):
        np.testing.assert_allclose(probs_of(b[0]), probs_of(s[0]), atol=1e-6)
    detected = recognizer.predict_batch([pictures["photo"], pictures["cup"], pictures["photo"]])
    assert [len(faces) for faces in detected] == [1, 0, 1]
    np.testing.assert_allclose(probs_of(detected[0][0]), probs_of(recognizer.predict(pictures["photo"])[0]),
                               atol=1e-6)


def test_preprocess_and_info(recognizer, run_dir):
    pre = recognizer.preprocess
    assert (pre.clip_size, pre.mask_size, pre.colour_order) == (32, 40, "RGB")
    clip_image, mask_image = pre([Image.new("RGB", (50, 70), (255, 0, 0))])
    assert clip_image.shape == (1, 3, 32, 32) and mask_image.shape == (1, 3, 40, 40)
    assert clip_image[0, 0, 0, 0].item() == pytest.approx((1 - pre.mean[0]) / pre.std[0], abs=1e-6)
    info = recognizer.info
    assert info.backend == "pytorch" and info.clip_model == "cafe-tiny" and info.clip_weights == "random"
    assert info.clip_random_weights and info.backbone_init == "none" and info.backbone_random_init
    assert info.trained_on == "toyset" and info.mask_image_size == 40 and "RANDOM CLIP WEIGHTS" in recognizer.warning


def test_load_warns_about_random_weights(run_dir):
    with pytest.warns(cafe.RandomWeightsWarning, match="RANDOM CLIP WEIGHTS"):
        cafe.load(run_dir, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cafe.load(run_dir, device="cpu", warn=False).warning


@pytest.mark.parametrize("bad, message", [
    (np.zeros((8, 8, 3), dtype=np.float32), "uint8"),
    (torch.zeros(8, 8, 3, dtype=torch.uint8), "(3, H, W)"),
    (b"bytes", "cannot predict on a bytes"),
])
def test_bad_inputs_are_one_clear_error(recognizer, bad, message):
    with pytest.raises(CafeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        recognizer.predict(bad, detect=False)


@pytest.mark.parametrize("source, message", [("nowhere/run", "no such file or folder"),
                                             ("hf://just-a-name", "hf://ORG/NAME")])
def test_bad_sources_are_one_clear_error(source, message):
    with pytest.raises(CafeError, match=message):
        cafe.load(source)


def test_onnx_backend_matches_pytorch(recognizer, pictures, tmp_path):
    path = tmp_path / "cafe.onnx"
    report = recognizer.export_onnx(path)
    assert report.max_abs_diff <= PARITY_TOLERANCE
    onnx_model = cafe.load(path, device="cpu", warn=False)
    images = [pictures["face"], pictures["small"], pictures["photo"]]
    for a, b in zip(recognizer.predict_batch(images), onnx_model.predict_batch(images)):
        assert len(a) == len(b) == 1 and a[0].box == b[0].box
        assert np.abs(probs_of(a[0]) - probs_of(b[0])).max() <= PARITY_TOLERANCE
    assert onnx_model.info.backend == "onnxruntime" and onnx_model.info.clip_model == "cafe-tiny"
    assert onnx_model.info.backbone_random_init and onnx_model.preprocess == recognizer.preprocess
    with pytest.raises(CafeError, match="already an ONNX file"):
        onnx_model.export_onnx(tmp_path / "again.onnx")


def test_predict_video_holds_few_frames_at_a_time(recognizer, tmp_path, monkeypatch):
    """60 frames go through predict_video; at every yield at most one batch of decoded frames is alive."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (48, 48))
    for i in range(60):
        writer.write(np.full((48, 48, 3), 4 * i, dtype=np.uint8))
    writer.release()
    decoded: list[weakref.ref] = []
    real = recognizer_module.iter_video_frames

    def tracked(*args, **kwargs):
        for index, seconds, image in real(*args, **kwargs):
            decoded.append(weakref.ref(image))
            yield index, seconds, image

    monkeypatch.setattr(recognizer_module, "iter_video_frames", tracked)
    alive, seen = [], []
    for index, seconds, faces in recognizer.predict_video(path, every=2, detect=False, batch_size=4):
        alive.append(sum(ref() is not None for ref in decoded))
        seen.append((index, seconds, len(faces)))
    assert [s[0] for s in seen] == list(range(0, 60, 2)) and seen[1][1] == pytest.approx(0.2)
    assert all(n == 1 for *_, n in seen) and len(decoded) == 30
    assert max(alive) <= 4, alive  # one batch, never the whole video


@pytest.fixture(scope="module")
def package(run_dir, tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("pkg") / "cafe-toyset"
    result = CliRunner().invoke(app, ["package", str(run_dir), str(out), "--repo", "org/cafe-toyset"])
    assert result.exit_code == 0, (result.output, result.exception)
    return out, " ".join(result.output.split())


def test_package_layout_config_and_card(package, run_dir):
    out, output = package
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert "huggingface-cli upload org/cafe-toyset" in output
    config = json.loads((out / "config.json").read_text())
    assert config["classes"] == list(CLASSES) and config["inputs"] == {"clip_image": 32, "mask_image": 40}
    assert config["clip"]["model"] == "cafe-tiny" and config["clip"]["random_weights"]
    assert config["weights"]["which"] == "last" and config["preprocessing"]["colour_order"] == "RGB"
    assert "RANDOM CLIP WEIGHTS" in config["deviations"] and config["run"]["train"]["image_size"] == 40
    card = (out / "README.md").read_text()
    results = json.loads((run_dir / "eval-last" / "results.json").read_text())
    accuracy = results["targets"]["toyset"]["accuracy"]
    assert card.startswith("---\nlibrary_name: cafe-fer") and "RANDOM WEIGHTS" in card
    assert f"| toyset (source) | 7 | {accuracy:.2f} |" in card
    assert 'cafe.load("hf://org/cafe-toyset")' in card and "zhang2024generalizable" in card


def test_model_card_puts_the_papers_numbers_beside_ours(run_dir):
    config = RunConfig.from_json(json.loads((run_dir / "config.json").read_text()))
    config = replace(config, train=replace(config.train, source="rafdb"))
    clip = PackagedClip("ViT-B-32", "pretrained:openai", None, "quickgelu", False, None)
    package = PackageConfig(clip=clip, preprocess=Preprocess(224, 224), weights_sha256="0" * 64, which="last",
                            random_clip=False, random_backbone=False, warning=None, deviations=(), run=config)
    m = replace(target_metrics(50.0), uar=40.0)
    card = model_card(package, EvalResult("t", "rafdb", "last", False, "", {"rafdb": m, "ferplus": m}, Summary()),
                      "o/n")
    assert "| FERPlus | 10 | 50.00 | 40.00 | 73.16 |" in card
    assert "| RAF-DB (source) | 10 | 50.00 | 40.00 | 88.72 |" in card
    assert "RANDOM" not in card and "- none" in card


def test_a_package_config_reads_back_as_written(package):
    """One schema: config.json read as a PackageConfig and written again gives the same file."""
    path = package[0] / "config.json"
    data = json.loads(path.read_text())
    typed = PackageConfig.from_json(data, path)
    assert typed.to_json() == data
    assert typed.random_clip and typed.which == "last" and typed.preprocess.mask_size == 40
    assert typed.run.train.image_size == 40 and typed.clip.model == "cafe-tiny"


def test_package_round_trips_through_an_offline_hf_cache(package, recognizer, pictures, tmp_path, monkeypatch):
    import huggingface_hub.constants

    write_hf_snapshot(tmp_path / "hub", "org/cafe-toyset", package[0])
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    images = [pictures["face"], pictures["small"], pictures["cup"]]
    expected = recognizer.predict_batch(images, detect=False)
    for source in ("hf://org/cafe-toyset", "hf://org/cafe-toyset@main", str(package[0]),
                   str(package[0] / WEIGHTS_FILE)):
        got = cafe.load(source, device="cpu", warn=False).predict_batch(images, detect=False)
        assert got == expected, source
    hub = cafe.load("hf://org/cafe-toyset", device="cpu", warn=False)
    assert hub.info.source == "hf://org/cafe-toyset" and hub.info.clip_random_weights and hub.warning
    assert "hf://org/cafe-toyset" in repr(hub)
    with pytest.raises(CafeError, match="holds one set of weights"):
        cafe.load("hf://org/cafe-toyset", which="best")


def test_cafe_export_takes_a_hub_package(package, tmp_path, monkeypatch):
    """`cafe export` goes through cafe_cache.load, so every source it takes exports."""
    import huggingface_hub.constants
    import onnx

    write_hf_snapshot(tmp_path / "hub", "org/cafe-toyset", package[0])
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(app, ["export", "-c", "hf://org/cafe-toyset", "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, (result.output, result.exception)
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert meta["info"]["source"] == "hf://org/cafe-toyset" and meta["info"]["trained_on"] == "toyset"


def test_a_corrupted_package_is_refused_by_name(package, tmp_path):
    damaged = shutil.copytree(package[0], tmp_path / "damaged")
    weights = damaged / WEIGHTS_FILE
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0xFF
    weights.write_bytes(bytes(raw))
    with pytest.raises(CafeError) as e:
        cafe.load(damaged, device="cpu")
    assert str(weights) in str(e.value) and "sha256" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("change, message", [
    ({"format": "cafe-package-9"}, "cafe-package-9 package"),
    ({"classes": ["a", "b"]}, "predicts classes"),
    ({"run": None}, "is not the config.json `cafe package` writes"),
])
def test_a_package_config_this_cafe_cannot_read_is_refused(package, tmp_path, change, message):
    folder = shutil.copytree(package[0], tmp_path / "pkg")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(CafeError, match=message) as e:
        cafe.load(folder, device="cpu")
    assert str(folder / "config.json") in str(e.value)


def test_a_package_that_cannot_be_written_is_one_line_and_leaves_nothing(run_dir, tmp_path, monkeypatch):
    from cafe_cache.predict import package as package_module

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(package_module, "save_file", full_disk)
    with pytest.raises(CafeError, match="No space left on device") as e:
        package_module.package_run(run_dir, tmp_path / "out")
    assert "\n" not in str(e.value) and list(tmp_path.iterdir()) == []


def test_package_refuses_a_folder_with_files(run_dir, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    result = CliRunner().invoke(app, ["package", str(run_dir), str(tmp_path)])
    assert isinstance(result.exception, CafeError) and "not an empty folder" in str(result.exception)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize("offline, endpoint, says", [
    (True, None, "HF_HUB_OFFLINE is set"),
    (False, "http://127.0.0.1:9", "the Hub cannot be reached (ConnectError"),  # nothing listens on port 9
])
def test_an_uncached_hf_package_fails_at_once_with_one_line(pictures, tmp_path, monkeypatch, capsys, offline,
                                                            endpoint, says):
    """`cafe predict --checkpoint hf://...` through the console entry point: exit 2, one whole line on stderr."""
    import huggingface_hub.constants

    from cli.main import main

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    if endpoint:
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(sys, "argv", ["cafe", "predict", "--checkpoint", "hf://org/not-cached",
                                      str(pictures["face"]), "--no-detect"])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert exit_.value.code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert "hf://org/not-cached" in lines[0] and says in lines[0]
    assert "huggingface-cli download org/not-cached" in lines[0] and lines[0].rstrip().endswith(".")


def test_an_uncached_hf_package_fails_before_torch_is_imported(tmp_path):
    """The Hub lookup comes before the heavy imports, so the failure costs only Python and huggingface_hub."""
    code = ("import sys\nfrom cafe_cache.predict.api import load\nfrom cafe_cache.errors import CafeError\n"
            "try:\n    load('hf://org/not-cached')\nexcept CafeError as e:\n    print('torch' in sys.modules, e)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
                               "HF_HUB_CACHE": str(tmp_path / "empty-hub")})
    assert proc.returncode == 0 and proc.stdout.startswith("False hf://org/not-cached"), (proc.stdout, proc.stderr)


def test_hf_names():
    assert parse_hf("hf://org/name") == ("org/name", None)
    assert parse_hf("hf://org/name@v1.0") == ("org/name", "v1.0")
    for bad in ("hf://org", "hf://org/name/x", "hf://org/name@"):
        with pytest.raises(CafeError):
            parse_hf(bad)


BLOCKED = ("cv2", "skimage", "onnx", "onnxruntime")
WITHOUT_EXTRAS = textwrap.dedent("""
    import json, sys, warnings
    for name in {blocked!r}:
        sys.modules[name] = None  # import raises ModuleNotFoundError, as if not installed
    import cafe_cache as cafe
    from cafe_cache.errors import CafeError
    warnings.simplefilter("ignore")
    model = cafe.load(sys.argv[1], device="cpu", detector="lbp")
    out = {{"probs": [f.probs for f in model.predict(sys.argv[2], detect=False)]}}
    for name, call in (("detect", lambda: model.predict(sys.argv[2])),
                       ("video", lambda: next(model.predict_video(sys.argv[3])))):
        try:
            call()
        except CafeError as e:
            out[name] = str(e)
    out["loaded"] = sorted(m for m in {blocked!r} if sys.modules.get(m) is not None)
    print(json.dumps(out))
""")


def test_load_and_predict_crops_without_opencv_skimage_onnx(run_dir, recognizer, pictures, tmp_path):
    script = tmp_path / "no_extras.py"
    script.write_text(WITHOUT_EXTRAS.format(blocked=BLOCKED))
    video = tmp_path / "v.avi"
    video.write_bytes(b"not read: OpenCV is missing")
    proc = subprocess.run([sys.executable, str(script), str(run_dir), str(pictures["face"]), str(video)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    [face] = recognizer.predict(pictures["face"], detect=False)
    np.testing.assert_allclose(probs_of(out["probs"][0]), probs_of(face), atol=1e-6)
    assert "'skimage' is not installed" in out["detect"] and "cafe-fer[predict]" in out["detect"]
    assert "'cv2' is not installed" in out["video"] and out["loaded"] == []


def readme_blocks(heading: str) -> list[str]:
    """The ```python blocks of the README section ``heading``."""
    text = (REPO / "README.md").read_text()
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return [block.split("```", 1)[0] for block in section.split("```python\n")[1:]]


def test_the_readme_python_api_example_runs_as_written(run_dir, pictures, tmp_path, monkeypatch, capsys):
    """The README's example, with `make demo`'s run and pictures replaced by this test's."""
    crops = tmp_path / "demo" / "data" / "synth-color" / "test" / "happy"
    crops.mkdir(parents=True)
    for k in ("face", "small", "cup"):
        shutil.copy(pictures[k], crops / f"test_{k}.png")
    shutil.copy(pictures["photo"], tmp_path / "demo" / "data" / "preview.png")
    shutil.copytree(run_dir, tmp_path / "demo" / "run")
    monkeypatch.chdir(tmp_path)
    example, video = readme_blocks("Python API")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", cafe.RandomWeightsWarning)
        exec(compile(example, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 + 3 and printed[1].startswith("test_cup.png ")  # the photo's face, then 3 crops
    assert "predict_video(" in video


def test_cafe_predict_on_a_video_without_opencv_stops_with_the_hint(run_dir, pictures, tmp_path, monkeypatch):
    video = tmp_path / "v.avi"
    video.write_bytes(b"never opened")
    monkeypatch.setitem(sys.modules, "cv2", None)  # as if OpenCV were not installed
    out = tmp_path / "rows.csv"
    result = CliRunner().invoke(app, ["predict", "-c", str(run_dir), "--no-detect", str(pictures["face"]), str(video),
                                      "--out", str(out)])
    assert isinstance(result.exception, CafeError) and "'cv2' is not installed" in str(result.exception)
    assert "cafe-fer[predict]" in str(result.exception) and out.read_text().count("face.png") == 1
