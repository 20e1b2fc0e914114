"""Dataset readers on tiny fixtures written in each dataset's own layout, and ``cafe datasets``."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cafe_cache.datasets import READERS, DatasetError, Sample, build_reader, default_root
from cafe_cache.datasets.ferplus import VOTE_COLUMNS, majority
from cafe_cache.datasets.options import parse_class_map, reader_options
from cafe_cache.errors import CafeError

SHARED = Path("/work/shared/datasets")


def image(path: Path, value: int = 0) -> Path:
    """A tiny grey image file; the format follows the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = "PNG" if path.suffix.lower() == ".png" else "JPEG"
    Image.new("RGB", (8, 8), (value, value, value)).save(path, format=fmt)
    return path


def tree(root: Path, files: list[str]) -> Path:
    for name in files:
        image(root / name)
    return root


# -- RAF-DB ------------------------------------------------------------------------------------
def rafdb(root: Path, lines: list[str], images: list[str]) -> Path:
    (root / "EmoLabel").mkdir(parents=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_bytes("\r\n".join(lines).encode() + b"\r\n")
    (root / "Image" / "aligned").mkdir(parents=True)
    for name in images:
        image(root / "Image" / "aligned" / f"{Path(name).stem}_aligned.jpg")
        image(root / "Image" / "original" / name)
    return root


def test_rafdb_crlf_list_labels_minus_one_and_split_from_prefix(tmp_path):
    root = rafdb(tmp_path, ["train_00002.jpg 5", "", "test_0001.jpg 1", "train_00001.jpg 7"],
                 ["train_00001.jpg", "train_00002.jpg", "test_0001.jpg"])
    result = build_reader("rafdb", root).read()
    assert result.samples == [Sample("Image/aligned/train_00002_aligned.jpg", 4, "train"),
                              Sample("Image/aligned/test_0001_aligned.jpg", 0, "test"),
                              Sample("Image/aligned/train_00001_aligned.jpg", 6, "train")]
    assert result.skipped == []
    original = build_reader("rafdb", root, aligned=False)
    assert [s.path for s in original.read().samples][0] == "Image/original/train_00002.jpg"
    assert original.options() == {"aligned": False} and build_reader("rafdb", root).options() == {}


def test_rafdb_accepts_the_parent_of_basic(tmp_path):
    rafdb(tmp_path / "basic", ["test_0001.jpg 3"], ["test_0001.jpg"])
    reader = build_reader("rafdb", tmp_path)
    assert reader.root == tmp_path / "basic"
    assert reader.open(reader.read().samples[0].path).size == (8, 8)


@pytest.mark.parametrize("bad", ["train_00003.jpg 5 extra", "train_00003.jpg x", "train_00003.jpg 8",
                                 "train_00003.jpg 0", "val_00003.jpg 5"])
def test_rafdb_malformed_line_names_file_and_line(tmp_path, bad):
    root = rafdb(tmp_path, ["train_00001.jpg 1", "", bad], ["train_00001.jpg", "train_00003.jpg", "val_00003.jpg"])
    with pytest.raises(DatasetError, match=r"list_patition_label\.txt:3: .*--skip-bad") as err:
        build_reader("rafdb", root).read()
    assert err.value.line == 3


def test_rafdb_missing_image_is_an_error_and_skip_bad_counts_it(tmp_path):
    root = rafdb(tmp_path, ["train_00001.jpg 1", "train_00002.jpg 2", "test_0001.jpg 9", "test_0002.jpg 4"],
                 ["train_00001.jpg", "test_0001.jpg", "test_0002.jpg"])
    with pytest.raises(DatasetError, match=r"txt:2: image Image/aligned/train_00002_aligned\.jpg not found"):
        build_reader("rafdb", root).read()
    result = build_reader("rafdb", root, strict=False).read()
    assert [s.path for s in result.samples] == ["Image/aligned/train_00001_aligned.jpg",
                                                "Image/aligned/test_0002_aligned.jpg"]
    assert [where.rsplit(":", 1)[1] for where, _ in result.skipped] == ["2", "3"]


def test_rafdb_wrong_root_names_the_expected_file(tmp_path):
    with pytest.raises(DatasetError, match="EmoLabel/list_patition_label.txt not found"):
        build_reader("rafdb", tmp_path)


# -- FERPlus -----------------------------------------------------------------------------------
def votes(**counts: int) -> list[int]:
    return [counts.get(name, 0) for name in VOTE_COLUMNS]


def test_ferplus_majority_tie_rules_and_dropped_winners():
    assert majority(votes(sadness=6, fear=4), "drop") == (4, None)
    assert majority(votes(neutral=4, happiness=4, anger=2), "drop") == (None, "tied majority vote")
    assert majority(votes(neutral=4, happiness=4, anger=2), "first") == (6, None)
    assert majority(votes(disgust=3, fear=3), "first") == (2, None)
    for column in ("contempt", "unknown", "NF"):
        assert majority(votes(**{column: 7, "neutral": 3}), "first") == (None, f"majority vote {column}")
    assert majority(votes(contempt=5, neutral=5), "first") == (6, None)  # neutral comes first
    assert majority(votes(), "first") == (None, "no votes")


def ferplus_folder(root: Path, folder: str, rows: list[tuple[str, list[int]]]) -> None:
    (root / folder).mkdir(parents=True)
    with open(root / folder / "label.csv", "w", newline="") as f:
        for name, counts in rows:
            csv.writer(f).writerow([name, "(0, 0, 48, 48)", *counts])
            image(root / folder / name)


def test_ferplus_folders_votes_ties_and_parent_root(tmp_path):
    data = tmp_path / "data"
    ferplus_folder(data, "FER2013Train", [("a.png", votes(surprise=9, fear=1)),
                                          ("b.png", votes(happiness=5, sadness=5)),
                                          ("c.png", votes(contempt=6, anger=4)),
                                          ("d.png", votes(unknown=10)),
                                          ("e.png", votes(NF=8, neutral=2))])
    ferplus_folder(data, "FER2013Valid", [("f.png", votes(anger=7, disgust=3))])
    ferplus_folder(data, "FER2013Test", [("g.png", votes(neutral=10))])
    dropped = build_reader("ferplus", tmp_path).read()  # the parent of data/ works too
    assert dropped.samples == [Sample("FER2013Train/a.png", 0, "train"), Sample("FER2013Valid/f.png", 5, "val"),
                               Sample("FER2013Test/g.png", 6, "test")]
    assert dropped.skipped == [("FER2013Train/label.csv:2", "tied majority vote"),
                               ("FER2013Train/label.csv:3", "majority vote contempt"),
                               ("FER2013Train/label.csv:4", "majority vote unknown"),
                               ("FER2013Train/label.csv:5", "majority vote NF")]
    first = build_reader("ferplus", data, ties="first")
    assert Sample("FER2013Train/b.png", 3, "train") in first.read().samples
    assert first.options() == {"ties": "first"}
    with pytest.raises(DatasetError, match="ties must be"):
        build_reader("ferplus", data, ties="random")


def test_ferplus_short_row_is_reported_with_line(tmp_path):
    ferplus_folder(tmp_path, "FER2013Test", [("a.png", votes(neutral=10))])
    with open(tmp_path / "FER2013Test" / "label.csv", "a") as f:
        f.write('b.png,"(0, 0, 48, 48)",1,2,3\n')
    with pytest.raises(DatasetError, match=r"FER2013Test/label\.csv:2: expected name"):
        build_reader("ferplus", tmp_path).read()


def ferplus_csv(root: Path, usages: list[str], names: list[str], counts: list[list[int]]) -> list[np.ndarray]:
    """fer2013.csv with a distinct pixel pattern per row, and the aligned fer2013new.csv."""
    faces = [(np.arange(48 * 48) * (i + 1) % 256).astype(np.uint8).reshape(48, 48) for i in range(len(usages))]
    with open(root / "fer2013.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["emotion", "pixels", "Usage"])
        w.writerows([0, " ".join(map(str, face.ravel())), usage] for face, usage in zip(faces, usages))
    with open(root / "fer2013new.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Usage", "Image name", *VOTE_COLUMNS])
        w.writerows([usage, name, *c] for usage, name, c in zip(usages, names, counts))
    return faces


def test_ferplus_csv_form_decodes_pixel_rows(tmp_path):
    faces = ferplus_csv(tmp_path, ["Training", "Training", "PublicTest", "PrivateTest"],
                        ["fer0.png", "", "fer2.png", "fer3.png"],
                        [votes(happiness=8), votes(sadness=9), votes(fear=6, sadness=1), votes(anger=5, neutral=5)])
    reader = build_reader("ferplus", tmp_path)
    result = reader.read()
    assert result.samples == [Sample("fer2013.csv#0", 3, "train"), Sample("fer2013.csv#2", 1, "val")]
    assert [reason for _, reason in result.skipped] == ["no image name (dropped by FERPlus)", "tied majority vote"]
    rgb = np.asarray(reader.open("fer2013.csv#2"))
    assert rgb.shape == (48, 48, 3) and (rgb == faces[2][..., None]).all()


def test_ferplus_csv_rows_must_align(tmp_path):
    ferplus_csv(tmp_path, ["Training", "PublicTest"], ["a.png", "b.png"], [votes(neutral=9)] * 2)
    rows = (tmp_path / "fer2013new.csv").read_text().splitlines()
    (tmp_path / "fer2013new.csv").write_text("\n".join([rows[0], rows[2], rows[1]]) + "\n")
    with pytest.raises(DatasetError, match=r"fer2013new\.csv:2: row 0 does not match"):
        build_reader("ferplus", tmp_path).read()


def test_ferplus_wrong_root_names_the_expected_folders(tmp_path):
    with pytest.raises(DatasetError, match="FER2013Train/"):
        build_reader("ferplus", tmp_path)
    (tmp_path / "fer2013new.csv").write_text("Usage,Image name\n")
    with pytest.raises(DatasetError, match="fer2013.csv not found"):
        build_reader("ferplus", tmp_path)


# -- AffectNet ---------------------------------------------------------------------------------
AFFECTNET_HEADER = ["subDirectory_filePath", "face_x", "face_y", "face_width", "face_height",
                    "facial_landmarks", "expression", "valence", "arousal"]


def affectnet_list(root: Path, name: str, expressions: list[int], make_images: bool = True) -> None:
    (root / "Manually_Annotated_file_lists").mkdir(exist_ok=True)
    with open(root / "Manually_Annotated_file_lists" / name, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(AFFECTNET_HEADER)
        for i, expression in enumerate(expressions):
            path = f"{i}/{name[:3]}{i}.jpg"
            w.writerow([path, 0, 0, 8, 8, "1.0;2.0", expression, 0.1, -0.1])
            if make_images:
                image(root / "Manually_Annotated_Images" / path)


def test_affectnet_lists_map_ids_and_drop_7_to_10(tmp_path):
    affectnet_list(tmp_path, "training.csv", list(range(11)))
    affectnet_list(tmp_path, "validation.csv", [3])
    result = build_reader("affectnet", tmp_path).read()
    train = result.split("train")
    assert [s.label for s in train] == [6, 3, 4, 0, 1, 2, 5]
    assert train[0].path == "Manually_Annotated_Images/0/tra0.jpg"
    assert result.split("test") == [Sample("Manually_Annotated_Images/0/val0.jpg", 0, "test")]
    assert [reason for _, reason in result.skipped] == ["class 7 Contempt", "class 8 None", "class 9 Uncertain",
                                                        "class 10 Non-face"]


def test_affectnet_missing_image_and_bad_id_name_file_and_line(tmp_path):
    affectnet_list(tmp_path, "validation.csv", [1, 2])
    (tmp_path / "Manually_Annotated_Images" / "1" / "val1.jpg").unlink()
    with pytest.raises(DatasetError, match=r"validation\.csv:3: image Manually_Annotated_Images/1/val1\.jpg not found"):
        build_reader("affectnet", tmp_path).read()
    affectnet_list(tmp_path, "training.csv", [0, 12])
    with pytest.raises(DatasetError, match=r"training\.csv:3: expression '12'"):
        build_reader("affectnet", tmp_path).read()


def test_affectnet_npy_layout(tmp_path):
    labels = {"train_set": {"10": "6", "2": "1", "1": "7"}, "val_set": {"0": 3}}
    for folder, items in labels.items():
        (tmp_path / folder / "annotations").mkdir(parents=True)
        for stem, value in items.items():
            image(tmp_path / folder / "images" / f"{stem}.jpg")
            np.save(tmp_path / folder / "annotations" / f"{stem}_exp.npy", np.array(value))
    result = build_reader("affectnet", tmp_path).read()
    assert result.samples == [Sample("train_set/images/2.jpg", 3, "train"),
                              Sample("train_set/images/10.jpg", 5, "train"), Sample("val_set/images/0.jpg", 0, "test")]
    assert result.skipped == [("train_set/annotations/1_exp.npy", "class 7 Contempt")]


def test_affectnet_wrong_root(tmp_path):
    with pytest.raises(DatasetError, match="Manually_Annotated_file_lists/"):
        build_reader("affectnet", tmp_path)


# -- SFEW, MMA, folder -------------------------------------------------------------------------
def test_sfew_val_is_test_and_unlabelled_test_is_ignored(tmp_path):
    tree(tmp_path, ["Train/Angry/a.png", "Train/Surprise/b.png", "Val/Happy/c.png", "Test/d.png"])
    result = build_reader("sfew", tmp_path).read()
    assert result.samples == [Sample("Train/Angry/a.png", 5, "train"), Sample("Train/Surprise/b.png", 0, "train"),
                              Sample("Val/Happy/c.png", 3, "test")]


def test_mma_three_splits(tmp_path):
    tree(tmp_path, ["train/fear/a.jpg", "valid/disgust/b.jpg", "test/neutral/c.jpg", "test/sad/d.jpg"])
    result = build_reader("mma", tmp_path).read()
    assert [(s.split, s.label) for s in result.samples] == [("test", 6), ("test", 4), ("train", 1), ("val", 2)]
    with pytest.raises(DatasetError, match="no split folder"):
        build_reader("mma", tmp_path / "test")


def test_folder_class_name_variants_and_image_files(tmp_path):
    tree(tmp_path, ["Training/angry/a.jpg", "Training/HAPPINESS/x/b.PNG", "validation/Anger/c.jpeg",
                    "TEST/ANGRY/d.bmp", "test/surprised/e.png"])
    (tmp_path / "test" / "surprised" / "notes.txt").write_text("not an image")
    (tmp_path / "test" / "surprised" / "._e.png").write_bytes(b"resource fork")
    result = build_reader("folder", tmp_path).read()
    assert Counter((s.split, s.label) for s in result.samples) == Counter(
        {("train", 5): 1, ("train", 3): 1, ("val", 5): 1, ("test", 5): 1, ("test", 0): 1})
    assert "Training/HAPPINESS/x/b.PNG" in {s.path for s in result.samples}


def test_folder_unknown_class_and_explicit_map(tmp_path):
    tree(tmp_path, ["test/AN/a.png", "test/contempt/b.png", "test/happy/c.png"])
    with pytest.raises(DatasetError, match=r"unknown class folder 'AN'.*--class-map"):
        build_reader("folder", tmp_path).read()
    reader = build_reader("folder", tmp_path, class_map={"an": 5, "contempt": -1})
    result = reader.read()
    assert result.samples == [Sample("test/AN/a.png", 5, "test"), Sample("test/happy/c.png", 3, "test")]
    assert result.skipped == [("test/contempt", "class folder mapped to -1 (skipped)")]
    with pytest.raises(DatasetError, match="not a class id"):
        build_reader("folder", tmp_path, class_map={"an": 7})


def test_folder_one_split_or_class_folders_at_the_root(tmp_path):
    tree(tmp_path / "one", ["val/sad/a.png"])
    assert build_reader("folder", tmp_path / "one").read().splits() == ["val"]
    tree(tmp_path / "flat", ["fear/a.png", "neutral/b.png"])
    assert build_reader("folder", tmp_path / "flat").read().samples == [Sample("fear/a.png", 1, "test"),
                                                                        Sample("neutral/b.png", 6, "test")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no split folder"):
        build_reader("folder", tmp_path / "empty")


def test_folder_cache_name_and_options_rebuild_the_reader(tmp_path):
    root = tree(tmp_path / "CK+ 48", ["test/an/a.png"])
    assert build_reader("folder", root, class_map={"an": 5}).cache_name == "CK_48"
    reader = build_reader("folder", root, class_map={"an": 5}, name="ckplus")
    assert reader.cache_name == "ckplus"
    rebuilt = READERS["folder"](root, **reader.options())
    assert rebuilt.cache_name == "ckplus" and rebuilt.read().samples == reader.read().samples


# -- registry and default roots ----------------------------------------------------------------
def test_default_root_from_env_then_cafe_toml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CAFE_MMA_ROOT", raising=False)
    with pytest.raises(DatasetError, match="CAFE_MMA_ROOT"):
        build_reader("mma")
    tree(tmp_path / "from_toml", ["test/happy/a.png"])
    (tmp_path / "cafe.toml").write_text(f'[datasets]\nmma = "{tmp_path / "from_toml"}"\n')
    assert build_reader("mma").root == tmp_path / "from_toml"
    monkeypatch.setenv("CAFE_MMA_ROOT", str(tmp_path / "from_env"))
    assert default_root("mma") == tmp_path / "from_env"
    with pytest.raises(DatasetError, match="unknown dataset 'nope'"):
        build_reader("nope")


def test_every_reader_is_registered_with_a_layout():
    assert set(READERS) == {"rafdb", "ferplus", "affectnet", "sfew", "mma", "folder", "ckplus", "jaffe", "kdef", "expw"}
    assert all(cls.layout and cls.name == key for key, cls in READERS.items())


# -- CLI ---------------------------------------------------------------------------------------
def test_reader_options_parse_class_map():
    assert reader_options("folder", "contempt=-1, AN=anger,HA=3", "ck") == {
        "class_map": {"contempt": -1, "AN": 5, "HA": 3}, "name": "ck"}
    assert reader_options("rafdb", None, None) == {}
    for bad in ("AN", "AN=7", "=3", "AN=grumpy", "AN=--1"):
        with pytest.raises(CafeError, match="--class-map entry"):
            parse_class_map(bad)
    with pytest.raises(CafeError, match="only to --dataset folder"):
        reader_options("sfew", None, "x")


@pytest.fixture(scope="module")
def cli():
    from typer.testing import CliRunner

    from cli.main import app
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["datasets", *args])


def test_cli_lists_readers_and_counts_a_dataset(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in READERS:
        monkeypatch.delenv(f"CAFE_{name.upper()}_ROOT", raising=False)
    monkeypatch.setenv("CAFE_SFEW_ROOT", str(tmp_path / "sfew-root"))
    listing = cli()
    assert listing.exit_code == 0
    assert all(name in listing.output for name in READERS)
    assert listing.output.count("not set") == len(READERS) - 1  # only sfew has a default root
    tree(tmp_path, ["test/angry/a.png", "test/angry/b.png", "train/happy/c.png", "test/grumpy/d.png"])
    shown = cli("folder", "--root", str(tmp_path), "--skip-bad")
    assert shown.exit_code == 0, shown.output
    anger = re.search(r"Anger\s*│\s*(\d+)\s*│\s*(\d+)\s*│\s*(\d+)", shown.output)
    assert anger and anger.groups() == ("0", "2", "2")  # train, test, total
    assert "skipped 1 entries" in shown.output and "grumpy" in shown.output


def test_cli_errors_are_one_line_with_exit_code_2(cli, tmp_path):
    tree(tmp_path, ["test/grumpy/d.png"])
    strict = cli("folder", "--root", str(tmp_path))
    assert strict.exit_code == 2 and "--class-map" in strict.output
    assert cli("folder", "--root", str(tmp_path), "--class-map", "grumpy").exit_code == 2
    mapped = cli("folder", "--root", str(tmp_path), "--class-map", "grumpy=anger")
    assert mapped.exit_code == 0 and re.search(r"Anger\s*│\s*1", mapped.output)


# -- optional: the shared samples of the real datasets -----------------------------------------
@pytest.mark.skipif(not (SHARED / "ferplus-sample").is_dir(), reason="no shared FERPlus sample")
def test_shared_ferplus_sample_counts_and_images():
    data = SHARED / "ferplus-sample" / "data"
    expected: Counter = Counter()
    for folder, split in (("FER2013Train", "train"), ("FER2013Valid", "val"), ("FER2013Test", "test")):
        for row in csv.reader(open(data / folder / "label.csv", newline="")):
            counts = np.array(row[2:], dtype=int)
            if (counts == counts.max()).sum() == 1 and counts.argmax() < 7:
                expected[split] += 1
    reader = build_reader("ferplus", SHARED / "ferplus-sample")
    result = reader.read()
    assert Counter(s.split for s in result.samples) == expected
    assert all(reader.open(s.path).mode == "RGB" for s in result.samples)


@pytest.mark.skipif(not (SHARED / "rafdb-labels").is_dir(), reason="no shared RAF-DB labels")
def test_shared_rafdb_list_parses(tmp_path):
    rafdb(tmp_path, [], [])
    (tmp_path / "EmoLabel" / "list_patition_label.txt").write_bytes(
        (SHARED / "rafdb-labels" / "EmoLabel" / "list_patition_label.txt").read_bytes())
    result = build_reader("rafdb", tmp_path, strict=False).read()
    assert result.samples == []  # the shared copy has labels only: every entry lacks its image
    assert len(result.skipped) == 12271 + 3068
    assert all(reason.endswith("not found") for _, reason in result.skipped)
