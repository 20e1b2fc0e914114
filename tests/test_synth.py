"""The synthetic demo data: deterministic, in the real layouts, with real class and domain differences."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from cafe_cache.classes import NUM_CLASSES, class_id
from cafe_cache.errors import CafeError
from cafe_cache.synth import (
    DOMAINS,
    FOLDER_NAMES,
    NOTE_FILE,
    make_demo_sample,
    render,
    sample_rng,
    write_folder,
    write_rafdb,
)
from cli.synth import synth

LIST = Path("EmoLabel/list_patition_label.txt")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[str, Path, str]]]:
    root = tmp_path_factory.mktemp("demo")
    return root, make_demo_sample(root, seed=3, n_train_per_class=3, n_test_per_class=2)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def grey(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"), np.float32)


def parse_rafdb(root: Path) -> list[tuple[str, int]]:
    """Our own reading of the RAF-DB list, independent of the project's reader."""
    raw = (root / LIST).read_bytes()
    assert raw.endswith(b"\r\n") and raw.count(b"\n") == raw.count(b"\r\n"), "every line must end in CRLF"
    rows = []
    for line in raw.decode().split("\r\n")[:-1]:
        name, label = line.split(" ")
        assert re.fullmatch(r"train_\d{5}\.jpg|test_\d{4}\.jpg", name), name
        rows.append((name, int(label)))
    return rows


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    for domain, writer in (("line", write_rafdb), ("lowres", write_folder)):
        a = writer(tmp_path / f"a-{domain}", domain, 2, 1, 32, seed=5)
        b = writer(tmp_path / f"b-{domain}", domain, 2, 1, 32, seed=5)
        c = writer(tmp_path / f"c-{domain}", domain, 2, 1, 32, seed=6)
        assert a == b
        first, same, other = (tmp_path / f"{k}-{domain}" for k in "abc")
        for rel, _, _ in a:
            assert np.array_equal(pixels(first / rel), pixels(same / rel))
        assert any(not np.array_equal(pixels(first / r1), pixels(other / r2))
                   for (r1, _, _), (r2, _, _) in zip(a, c))
    assert (tmp_path / "a-line" / LIST).read_bytes() == (tmp_path / "b-line" / LIST).read_bytes()


def test_rafdb_layout_parses(demo: tuple[Path, list]) -> None:
    root = demo[0] / "synth-line"
    rows = parse_rafdb(root)
    assert len(rows) == NUM_CLASSES * (3 + 2)
    for name, label in rows:
        assert 1 <= label <= NUM_CLASSES
        with Image.open(root / "Image" / "aligned" / name.replace(".jpg", "_aligned.jpg")) as im:
            assert im.format == "JPEG" and im.size == (100, 100)
    for split in ("train", "test"):
        labels = [label for name, label in rows if name.startswith(split)]
        assert sorted(set(labels)) == list(range(1, NUM_CLASSES + 1))
        assert labels != sorted(labels), "labels should be interleaved like the real file"
    assert "SYNTHETIC" in (root / NOTE_FILE).read_text()


@pytest.mark.parametrize("domain, size, mode", [("color", 100, "RGB"), ("lowres", 48, "L")])
def test_folder_layout(demo: tuple[Path, list], domain: str, size: int, mode: str) -> None:
    root = demo[0] / f"synth-{domain}"
    for split, per_class in (("train", 3), ("test", 2)):
        folders = sorted(p.name for p in (root / split).iterdir())
        assert folders == sorted(FOLDER_NAMES)
        assert sorted(class_id(f) for f in folders) == list(range(NUM_CLASSES))
        for folder in folders:
            files = sorted((root / split / folder).iterdir())
            assert len(files) == per_class and all(f.suffix == f".{DOMAINS[domain].ext}" for f in files)
            with Image.open(files[0]) as im:
                assert im.size == (size, size) and im.mode == mode
    assert (root / NOTE_FILE).is_file()


def test_demo_return_value_and_preview(demo: tuple[Path, list]) -> None:
    root, datasets = demo
    assert datasets == [("rafdb", root / "synth-line", "synth-line"),
                        ("folder", root / "synth-color", "synth-color"),
                        ("folder", root / "synth-lowres", "synth-lowres")]
    with Image.open(root / "preview.png") as im:
        assert im.width > im.height > 0


def test_project_readers_read_the_demo(demo: tuple[Path, list]) -> None:
    datasets_module = pytest.importorskip("cafe_cache.datasets")
    for reader, root, _ in demo[1]:
        result = datasets_module.build_reader(reader, root).read()
        assert not result.skipped
        for split, per_class in (("train", 3), ("test", 2)):
            labels = [s.label for s in result.split(split)]
            assert sorted(labels) == sorted(list(range(NUM_CLASSES)) * per_class)


def test_domains_look_different(demo: tuple[Path, list]) -> None:
    def stats(domain: str) -> tuple[float, float, tuple[int, int]]:
        files = sorted(f for f in (demo[0] / f"synth-{domain}").rglob("*") if f.suffix in (".jpg", ".png"))
        sat, bright = [], []
        for f in files:
            with Image.open(f) as im:
                size = im.size
                sat.append(np.asarray(im.convert("HSV"))[..., 1].mean())
                bright.append(np.asarray(im.convert("L")).mean())
        return float(np.mean(sat)), float(np.mean(bright)), size

    line, color, lowres = stats("line"), stats("color"), stats("lowres")
    assert line[0] < 10 and lowres[0] < 1 and color[0] > 60  # saturation
    assert line[1] > 200 and lowres[1] < 170  # white paper vs grey photos
    assert (line[2], color[2], lowres[2]) == ((100, 100), (100, 100), (48, 48))


def test_classes_differ_with_nuisance_held_fixed() -> None:
    """Same generator state = same pose, colours and background: only the expression changes."""
    for domain in DOMAINS:
        for seed in range(3):
            imgs = [grey(render(c, domain, 48, np.random.default_rng(seed))) for c in range(NUM_CLASSES)]
            assert np.array_equal(imgs[0], grey(render(0, domain, 48, np.random.default_rng(seed))))
            gaps = [np.abs(imgs[a] - imgs[b]).mean() for a in range(NUM_CLASSES) for b in range(a)]
            assert min(gaps) > 0.3, (domain, seed)  # mean |difference| in 0-255 grey levels


def test_classes_are_learnable_but_not_by_one_pixel() -> None:
    """A ridge classifier on 32x32 line-domain pixels clearly beats chance (1/7) on held-out faces,
    yet no single pixel threshold splits any two classes: the jitter makes each class a distribution."""
    n = 16
    x = np.stack([grey(render(c, "line", 32, sample_rng(0, "line", "train", c * 100 + i))).ravel() / 255
                  for c in range(NUM_CLASSES) for i in range(2 * n)])
    y = np.repeat(np.arange(NUM_CLASSES), 2 * n)
    train = np.arange(len(y)) % (2 * n) < n
    centred = x - x[train].mean(0)
    w = np.linalg.solve(centred[train].T @ centred[train] + np.eye(x.shape[1]),
                        centred[train].T @ np.eye(NUM_CLASSES)[y[train]])
    assert ((centred[~train] @ w).argmax(1) == y[~train]).mean() > 0.45

    lo = np.stack([x[y == c].min(0) for c in range(NUM_CLASSES)])
    hi = np.stack([x[y == c].max(0) for c in range(NUM_CLASSES)])
    for a in range(NUM_CLASSES):
        for b in range(a):
            assert not np.any((lo[a] > hi[b]) | (lo[b] > hi[a])), (a, b)


def test_overwrite_is_refused_unless_ours(tmp_path: Path) -> None:
    write_folder(tmp_path / "d", "lowres", 1, 1, 24)
    with pytest.raises(CafeError, match="not empty"):
        write_folder(tmp_path / "d", "lowres", 1, 1, 24)
    write_folder(tmp_path / "d", "lowres", 1, 1, 24, overwrite=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "precious.txt").write_text("x")
    with pytest.raises(CafeError, match="not made by cafe synth"):
        write_folder(tmp_path / "other", "lowres", 1, 1, 24, overwrite=True)
    assert (tmp_path / "other" / "precious.txt").exists()


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("synth")(synth)
    app.command("other")(lambda: None)  # two commands, so "synth" is a sub-command as in cafe
    return app


def test_cli_writes_and_refuses_overwrite_without_force(tmp_path: Path) -> None:
    args = ["synth", str(tmp_path / "out"), "--train-per-class", "1", "--test-per-class", "1", "--size", "24"]
    first = CliRunner().invoke(cli(), args)
    assert first.exit_code == 0, first.output
    assert "cafe extract --dataset rafdb" in first.output and "--name synth-line" in first.output
    assert (tmp_path / "out" / "synth-lowres" / "train" / "angry").is_dir()

    again = CliRunner().invoke(cli(), args)
    assert again.exit_code == 2 and "--force" in again.output

    forced = CliRunner().invoke(cli(), args + ["--force", "--domains", "lowres"])
    assert forced.exit_code == 0, forced.output

    bad = CliRunner().invoke(cli(), ["synth", str(tmp_path / "new"), "--domains", "line,sketch"])
    assert bad.exit_code == 2 and "sketch" in bad.output and not (tmp_path / "new").exists()
