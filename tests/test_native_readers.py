"""The native readers of the usual extra targets (CK+, JAFFE, KDEF, ExpW), each on a tree generated in its
release layout: the RAF-DB class order (0 Surprise, 1 Fear, 2 Disgust, 3 Happy, 4 Sad, 5 Anger, 6 Neutral),
what each drops and counts, and a malformed label line reported as file:line."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cafe_cache.datasets import DatasetError, build_reader
from cafe_cache.datasets.options import NativeFlags, reader_options
from cafe_cache.errors import CafeError

from .conftest import make_cache


def image(path: Path, size: tuple[int, int] = (16, 16), value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (np.arange(size[0] * size[1] * 3).reshape(size[1], size[0], 3) + value) % 256
    Image.fromarray(pixels.astype(np.uint8)).save(path)


# -- CK+ ----------------------------------------------------------------------------------------
# the documented CK+ codes: 0 neutral, 1 anger, 2 contempt, 3 disgust, 4 fear, 5 happy, 6 sadness, 7 surprise
def write_ckplus(root: Path, sequences: dict[tuple[str, str], tuple[int, str | None]]) -> Path:
    """cohn-kanade-images/S*/NNN/*.png with ``frames`` frames, Emotion/S*/NNN/*_emotion.txt holding ``text``."""
    for (subject, seq), (frames, text) in sequences.items():
        for f in range(1, frames + 1):
            image(root / "cohn-kanade-images" / subject / seq / f"{subject}_{seq}_{f:08d}.png", value=f)
        if text is not None:
            label = root / "Emotion" / subject / seq / f"{subject}_{seq}_{frames:08d}_emotion.txt"
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(text)
    (root / "Emotion").mkdir(parents=True, exist_ok=True)
    return root


CK_SEQUENCES = {("S005", "001"): (4, "   3.0000000e+00\n"),  # disgust -> 2
                ("S010", "002"): (3, "   7.0000000e+00\n"),  # surprise -> 0
                ("S010", "004"): (3, "   2.0000000e+00\n"),  # contempt: dropped
                ("S011", "001"): (5, "   1.0000000e+00\n"),  # anger -> 5
                ("S011", "002"): (2, None)}  # unlabelled: dropped


def test_ckplus_peak_frames_neutral_first_and_contempt_dropped(tmp_path):
    root = write_ckplus(tmp_path / "CK+", CK_SEQUENCES)
    result = build_reader("ckplus", root).read()
    s005 = "cohn-kanade-images/S005/001/S005_001_0000000"
    assert [(s.path, s.label, s.split) for s in result.samples if s.path.startswith(s005[:27])] == [
        (f"{s005}1.png", 6, "test"), (f"{s005}4.png", 2, "test")]
    assert Counter(s.label for s in result.samples) == {6: 3, 2: 1, 0: 1, 5: 1}
    assert sorted(reason.split(" ")[0] for _, reason in result.skipped) == ["contempt", "unlabelled"]

    peak3 = build_reader("ckplus", root, peak=3, neutral="none").read()
    assert Counter(s.label for s in peak3.samples) == {2: 3, 0: 3, 5: 3}
    # peak frames never take the first (neutral) frame: a 3-frame sequence gives 1 neutral + 2 surprise
    both = build_reader("ckplus", root, peak=5).read()
    assert Counter(s.label for s in both.samples) == {6: 3, 2: 3, 0: 2, 5: 4}


def test_ckplus_subject_folds_and_options(tmp_path):
    root = write_ckplus(tmp_path / "CK+", CK_SEQUENCES)
    reader = build_reader("ckplus", root, fold="1/2")
    splits = {s.path.split("/")[1]: s.split for s in reader.read().samples}
    assert splits == {"S005": "train", "S010": "test", "S011": "train"}  # sorted subjects 0, 1, 2: fold j mod 2
    assert reader.cache_name == "ckplus-fold1of2" and reader.options() == {"fold": "1/2"}
    assert build_reader("ckplus", root, **reader.options()).read().samples == reader.read().samples
    for bad in ({"fold": "2/2"}, {"peak": 0}, {"neutral": "last"}):
        with pytest.raises(DatasetError):
            build_reader("ckplus", root, **bad)


def test_ckplus_malformed_emotion_file(tmp_path):
    root = write_ckplus(tmp_path / "CK+", {("S005", "001"): (2, "\n  happy\n"), ("S006", "001"): (2, "9.0\n")})
    label = root / "Emotion/S005/001/S005_001_00000002_emotion.txt"
    with pytest.raises(DatasetError, match=re.escape(f"{label}:2: expected one CK+ emotion code")):
        build_reader("ckplus", root).read()
    lenient = build_reader("ckplus", root, strict=False).read()
    assert lenient.samples == [] and [w.rsplit("/", 1)[-1] for w, _ in lenient.skipped] == [
        "S005_001_00000002_emotion.txt:2", "S006_001_00000002_emotion.txt:1"]


# -- JAFFE --------------------------------------------------------------------------------------
def test_jaffe_codes_in_file_names(tmp_path):
    root = tmp_path / "jaffe"
    names = ["KA.AN1.39.tiff", "KA.DI2.43.tiff", "KL.FE1.174.tiff", "KM.HA3.6.TIFF", "NA.NE1.202.png",
             "TM.SA2.191.jpg", "YM.SU1.58.tiff", "KA.XX1.1.tiff", "README.tiff"]
    for n in names:
        image(root / n)
    (root / "README").write_text("not an image")
    result = build_reader("jaffe", root).read()
    assert {s.path: s.label for s in result.samples} == {
        "KA.AN1.39.tiff": 5, "KA.DI2.43.tiff": 2, "KL.FE1.174.tiff": 1, "KM.HA3.6.TIFF": 3, "NA.NE1.202.png": 6,
        "TM.SA2.191.jpg": 4, "YM.SU1.58.tiff": 0}
    assert {s.split for s in result.samples} == {"test"}
    assert dict(result.skipped) == {"KA.XX1.1.tiff": "unknown expression code 'XX' (JAFFE: AN DI FE HA NE SA SU)",
                                    "README.tiff": "name not XX.YYn.NNN.<ext> (e.g. KA.AN1.39.tiff)"}


# -- KDEF ---------------------------------------------------------------------------------------
def write_kdef(root: Path) -> Path:
    for person in ("AF01", "BM02"):
        for code in ("AF", "AN", "DI", "HA", "NE", "SA", "SU"):
            for view in ("FL", "HL", "S", "HR", "FR"):
                image(root / "KDEF" / person / f"{person}{code}{view}.JPG", (8, 8))
    image(root / "KDEF" / "AF01" / "AF01XXS.JPG", (8, 8))
    image(root / "KDEF" / "AF01" / "photo.JPG", (8, 8))
    return root


def test_kdef_codes_views_and_drops(tmp_path):
    root = write_kdef(tmp_path / "KDEF_and_AKDEF")
    straight = build_reader("kdef", root)
    result = straight.read()
    assert straight.root == root / "KDEF" and straight.cache_name == "kdef"
    assert {s.path: s.label for s in result.samples if s.path.startswith("AF01/")} == {
        "AF01/AF01AFS.JPG": 1, "AF01/AF01ANS.JPG": 5, "AF01/AF01DIS.JPG": 2, "AF01/AF01HAS.JPG": 3,
        "AF01/AF01NES.JPG": 6, "AF01/AF01SAS.JPG": 4, "AF01/AF01SUS.JPG": 0}
    reasons = Counter(reason for _, reason in result.skipped)
    assert reasons == {"view FL not selected (--kdef-views)": 14, "view HL not selected (--kdef-views)": 14,
                       "view HR not selected (--kdef-views)": 14, "view FR not selected (--kdef-views)": 14,
                       "unknown expression code 'XX' (KDEF: AF AN DI HA NE SA SU)": 1,
                       "name not <id><expr><view> (e.g. AF01ANS.JPG)": 1}
    every = build_reader("kdef", root, views="all")
    assert len(every.read().samples) == 70 and every.cache_name == "kdef-all"
    halves = build_reader("kdef", root / "KDEF", views="hr,HL")
    assert len(halves.read().samples) == 28 and halves.options() == {"views": "HL,HR"}
    with pytest.raises(DatasetError, match="KDEF views 'S,UP'"):
        build_reader("kdef", root, views="S,UP")


# -- ExpW ---------------------------------------------------------------------------------------
# the documented ExpW labels: 0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral
def write_expw(root: Path, lines: list[str]) -> Path:
    image(root / "image/origin/a.jpg", (40, 30), value=1)
    image(root / "image/origin/b.jpg", (40, 30), value=2)
    (root / "label").mkdir(parents=True, exist_ok=True)
    (root / "label/label.lst").write_text("\n".join(lines) + "\n")
    return root


EXPW_LINES = [f"a.jpg 0 2 3 20 22 51.2 {k}" for k in range(7)] + ["b.jpg 1 5 10 35 25 12.0 4"]


def test_expw_class_order_and_box_crops(tmp_path):
    root = write_expw(tmp_path / "ExpW", EXPW_LINES)
    reader = build_reader("expw", root)
    result = reader.read()
    assert [s.label for s in result.samples] == [5, 2, 1, 3, 4, 0, 6, 4]  # angry ... neutral in RAF-DB ids
    face = result.samples[-1]
    assert face.path == "image/origin/b.jpg#1:5,10,35,25" and face.split == "test"
    crop = reader.open(face.path)
    photo = np.asarray(Image.open(root / "image/origin/b.jpg").convert("RGB"))
    assert crop.size == (25, 20) and np.array_equal(np.asarray(crop), photo[5:25, 10:35])  # top:bottom, left:right
    assert np.array_equal(np.asarray(build_reader("expw", root).open(face.path)), np.asarray(crop))  # same every time


def test_expw_malformed_lines(tmp_path):
    root = write_expw(tmp_path / "ExpW", EXPW_LINES[:2] + ["a.jpg 0 2 3 20", "a.jpg 0 9 9 5 20 1.0 3",
                                                          "a.jpg 0 2 3 20 22 1.0 7", "c.jpg 0 2 3 20 22 1.0 3"])
    label = root / "label/label.lst"
    with pytest.raises(DatasetError, match=re.escape(f"{label}:3: expected 'image_name face_id top left right bottom")):
        build_reader("expw", root).read()
    lenient = build_reader("expw", root, strict=False).read()
    assert len(lenient.samples) == 2
    assert [w.rsplit(":", 1)[-1] for w, _ in lenient.skipped] == ["3", "4", "5", "6"]


def test_expw_crops_go_into_a_cache(tmp_path):
    root = write_expw(tmp_path / "ExpW", EXPW_LINES)
    report = make_cache(root, tmp_path / "expw.h5", dataset="expw")
    assert report.errors == []  # every box crops to a readable face
    from cafe_cache.extract.reader import FeatureCache

    data = FeatureCache(tmp_path / "expw.h5").load("test")
    assert len(data.labels) == 8 and data.paths[-1] == "image/origin/b.jpg#1:5,10,35,25"


# -- flags ----------------------------------------------------------------------------------------
def test_native_flags_apply_to_their_reader_only():
    assert reader_options("ckplus", None, None, native=NativeFlags(ckplus_peak=3, ckplus_neutral="none")) == {
        "peak": 3, "neutral": "none"}
    assert reader_options("kdef", None, None, native=NativeFlags(kdef_views="all")) == {"views": "all"}
    with pytest.raises(CafeError, match="--kdef-views applies only to --dataset kdef"):
        reader_options("ckplus", None, None, native=NativeFlags(kdef_views="all"))
    with pytest.raises(CafeError, match="--ckplus-peak, --ckplus-fold applies only to --dataset ckplus"):
        reader_options("rafdb", None, None, native=NativeFlags(ckplus_peak=2, ckplus_fold="0/5"))


def test_cli_counts_ckplus_with_its_flags(tmp_path):
    from typer.testing import CliRunner

    from cli.main import app
    root = write_ckplus(tmp_path / "CK+", CK_SEQUENCES)
    shown = CliRunner().invoke(app, ["datasets", "ckplus", "--root", str(root), "--ckplus-peak", "2"])
    assert shown.exit_code == 0, shown.output
    assert "skipped 2 entries" in shown.output and "contempt" in shown.output
    bad = CliRunner().invoke(app, ["datasets", "jaffe", "--root", str(root), "--kdef-views", "all"])
    assert bad.exit_code == 2 and "--kdef-views applies only to --dataset kdef" in bad.output


def test_cli_extract_passes_the_kdef_views_to_the_reader(tmp_path):
    from typer.testing import CliRunner

    from cafe_cache.extract.reader import FeatureCache
    from cli.main import app
    root = write_kdef(tmp_path / "KDEF_and_AKDEF")
    r = CliRunner().invoke(app, ["extract", "--dataset", "kdef", "--root", str(root), "--kdef-views", "HL,HR",
                                 "--model", "cafe-tiny", "--random-weights", "--workers", "0",
                                 "--cache-dir", str(tmp_path / "cache")])
    assert r.exit_code == 0, (r.output, r.exception)
    cache = FeatureCache(tmp_path / "cache" / "kdef-hl-hr.h5")
    assert cache.reader_options == {"views": "HL,HR"} and len(cache.load("test").labels) == 28
