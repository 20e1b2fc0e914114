"""``cafe zeroshot`` on a tiny random-CLIP cache: metrics, the text-feature cache, the Exp-CLIP head."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import cafe_cache.zeroshot
from cafe_cache.classes import CLASSES
from cafe_cache.errors import CafeError
from cli.main import app

from .conftest import TINY_CLIP, write_folder_dataset


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    """cache/toyset.h5: 7 classes x 2 test images, tiny CLIP with random weights (32-d)."""
    base = tmp_path_factory.mktemp("zeroshot")
    root = write_folder_dataset(base / "toyset", {"train": 1, "test": 2})
    r = CliRunner().invoke(app, ["extract", "--dataset", "folder", "--root", str(root), "--model", TINY_CLIP,
                                 "--random-weights", "--workers", "0", "--cache-dir", str(base / "cache")])
    assert r.exit_code == 0, r.output
    return base / "cache"


def zeroshot(cache_dir: Path, out: Path, *extra: str):
    return CliRunner().invoke(app, ["zeroshot", "--cache-dir", str(cache_dir), "--out", str(out), *extra])


def test_metrics_random_title_and_text_cache_reuse(cache_dir, tmp_path, monkeypatch):
    caches = shutil.copytree(cache_dir, tmp_path / "cache")  # a text cache of its own
    r = zeroshot(caches, tmp_path / "a")
    assert r.exit_code == 0, r.output
    (table,) = json.loads((tmp_path / "a" / "results.json").read_text())["tables"]
    assert table["method"] == "CLIP" and table["random_weights"] and table["published"] == {}
    assert table["title"].startswith("RANDOM CLIP WEIGHTS, not a real result")
    m = table["targets"]["toyset"]
    assert m["n"] == 14 and 0 <= m["accuracy"] <= 100 and 0 <= m["uar"] <= 100
    assert set(m["per_class"]) == set(CLASSES)
    assert len(m["confusion"]) == 7 and sum(map(sum, m["confusion"])) == 14
    assert "RANDOM CLIP WEIGHTS" in (tmp_path / "a" / "results.md").read_text()
    (text_file,) = (caches / "text").glob("*.npy")
    stamp = text_file.stat().st_mtime_ns

    def no_clip(*_args, **_kw):
        raise AssertionError("the cached text features should have been used")

    monkeypatch.setattr(cafe_cache.zeroshot, "clip_for", no_clip)
    r = zeroshot(caches, tmp_path / "b")
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "b" / "results.json").read_text())["tables"][0]["targets"] == table["targets"]
    assert text_file.stat().st_mtime_ns == stamp


def test_expclip_head_rows_and_a_wrong_shape(cache_dir, tmp_path):
    good, bad = tmp_path / "good.pth", tmp_path / "bad.pth"
    torch.save({"state_dict": {"module.proj.weight": torch.randn(64, 32)}}, good)
    torch.save({"proj.weight": torch.randn(64, 16)}, bad)
    r = zeroshot(cache_dir, tmp_path / "out", "--expclip", str(good), "--targets", "toyset")
    assert r.exit_code == 0, r.output
    clip_table, exp_table = json.loads((tmp_path / "out" / "results.json").read_text())["tables"]
    assert (clip_table["method"], exp_table["method"]) == ("CLIP", "Exp-CLIP")
    assert "good.pth" in exp_table["title"] and exp_table["targets"]["toyset"]["n"] == 14
    assert "Exp-CLIP" in (tmp_path / "out" / "results.md").read_text()

    r = zeroshot(cache_dir, tmp_path / "out2", "--expclip", str(bad))
    assert isinstance(r.exception, CafeError)
    assert "(64, 16)" in str(r.exception) and "(out_features, 32)" in str(r.exception)
    assert not (tmp_path / "out2").exists()
