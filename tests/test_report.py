"""Run figures: ``cafe train`` and ``cafe plot`` on a tiny real run; the cross-domain matrix of run folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cafe_cache import synth
from cafe_cache.errors import CafeError
from cafe_cache.report import cross_domain_matrix, plot_runs_cross_domain, spread_over_classes
from cli.main import app

from .conftest import TINY_CLIP, write_eval_results, write_run_config

TARGETS = ("synth-line", "synth-color")
# pixel sizes at the default 100 dpi (figure inches x 100)
CURVES, CONFUSION, MASKS = (1300, 480), (750, 680), (1300, 420)


def gradcam_size(n: int, ncols: int = 4) -> tuple[int, int]:
    cols = min(n, ncols)
    rows = -(-n // cols)
    return round(260 * cols), round(290 * rows + 70)


def png_sizes(folder: Path) -> dict[str, tuple[int, int]]:
    sizes = {}
    for f in folder.glob("*.png"):
        assert f.stat().st_size > 1000
        with Image.open(f) as im:
            assert im.format == "PNG"
            sizes[f.name] = im.size
    return sizes


def cli(*args: str):
    r = CliRunner().invoke(app, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """One epoch on synth-line (64 px, random backbone and CLIP), evaluated on both caches, plotted."""
    base = tmp_path_factory.mktemp("report")
    synth.write_rafdb(base / "data" / "synth-line", "line", 2, 2, size=40, seed=1)
    synth.write_folder(base / "data" / "synth-color", "color", 1, 2, size=40, seed=2)
    for name, dataset in zip(TARGETS, ("rafdb", "folder")):
        cli("extract", "--dataset", dataset, "--root", base / "data" / name, "--name", name, "--model", TINY_CLIP,
            "--random-weights", "--workers", "0", "--cache-dir", base / "cache")
    cli("train", "--source", "synth-line", "--cache-dir", base / "cache", "--out", base / "run",
        "--backbone-weights", "none", "--epochs", "1", "--batch-size", "14", "--image-size", "64", "--workers", "0")
    return base / "run"


def test_train_writes_every_figure(run):
    expected = {"training-curves.png": CURVES}
    for t in TARGETS:
        expected |= {f"confusion-{t}.png": CONFUSION, f"masks-{t}.png": MASKS, f"gradcam-{t}.png": gradcam_size(8)}
    assert png_sizes(run / "figures") == expected


def test_plot_command_and_a_missing_cache(run, tmp_path):
    copy = shutil.copytree(run, tmp_path / "run", ignore=shutil.ignore_patterns("figures"))
    cli("plot", copy, "--gradcam", "3", "--device", "cpu")
    sizes = png_sizes(copy / "figures")
    assert sizes["gradcam-synth-color.png"] == gradcam_size(3) and len(sizes) == 7

    shutil.rmtree(copy / "figures")
    r = cli("plot", copy, "--cache-dir", tmp_path / "nowhere")
    assert "no Grad-CAM for synth-line" in r.output
    assert sorted(png_sizes(copy / "figures")) == sorted(
        ["training-curves.png"] + [f"{kind}-{t}.png" for kind in ("confusion", "masks") for t in TARGETS])


def test_plot_folder_of_runs_adds_the_cross_domain_matrix(run, tmp_path):
    shutil.copytree(run, tmp_path / "runs" / "a", ignore=shutil.ignore_patterns("figures"))
    second = shutil.copytree(run, tmp_path / "runs" / "b", ignore=shutil.ignore_patterns("figures"))
    config = json.loads((second / "config.json").read_text())
    config["train"]["source"] = "synth-color"
    (second / "config.json").write_text(json.dumps(config))
    cli("plot", tmp_path / "runs", "--gradcam", "0")
    assert (tmp_path / "runs" / "a" / "figures" / "training-curves.png").is_file()
    assert png_sizes(tmp_path / "runs" / "figures") == {"cross-domain.png": (650, 380)}  # no paper: random CLIP


def fake_run(folder: Path, source: str, accuracy: dict[str, float], random: bool = False) -> Path:
    write_eval_results(folder, accuracy, source=source)
    write_run_config(folder, {"source": source}, clip={"random_weights": random})
    return folder


def test_cross_domain_matrix_and_plot(tmp_path):
    raf = fake_run(tmp_path / "r1", "rafdb", {"rafdb": 85.0, "ferplus": 70.0, "mma": 50.0})
    fer = fake_run(tmp_path / "r2", "ferplus", {"rafdb": 68.0, "ferplus": 88.0})
    assert cross_domain_matrix([raf, fer]) == {"rafdb": {"rafdb": 85.0, "ferplus": 70.0, "mma": 50.0},
                                               "ferplus": {"rafdb": 68.0, "ferplus": 88.0}}
    # real weights: ours, the paper's and the difference side by side (3 panels)
    out = plot_runs_cross_domain([raf, fer], tmp_path / "cd.png")
    assert png_sizes(tmp_path) == {"cd.png": (1950, 380)}
    random = fake_run(tmp_path / "r3", "mma", {"mma": 30.0}, random=True)
    out = plot_runs_cross_domain([raf, fer, random], tmp_path / "cd.png")
    with Image.open(out) as im:
        assert im.size == (650, 440)  # ours only

    with pytest.raises(CafeError, match="both trained on rafdb"):
        cross_domain_matrix([raf, fake_run(tmp_path / "r4", "rafdb", {"rafdb": 1.0})])
    (fer / "eval-last" / "results.json").unlink()
    with pytest.raises(CafeError, match="cafe eval"):
        cross_domain_matrix([raf, fer])


def test_spread_over_classes():
    labels = np.array([3, 3, 3, 0, 0, 6])
    assert spread_over_classes(labels, 4) == [0, 3, 4, 5]  # one per class (3, 0, 6), then class 0 again
    assert spread_over_classes(labels, 10) == list(range(6))
