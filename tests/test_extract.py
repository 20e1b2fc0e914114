"""Stage one: extraction with a tiny random open_clip model into the HDF5 cache."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cafe_cache.errors import CafeError
from cafe_cache.extract.clip import ClipSpec, load_clip
from cafe_cache.extract.paths import cache_path
from cafe_cache.extract.preprocess import IMAGENET_MEAN, IMAGENET_STD, load_uint8, normalize
from cafe_cache.extract.reader import FeatureCache
from cafe_cache.extract.weights import WeightsFile
from cli.main import app

from .conftest import TINY_CLIP, make_cache

REPO = Path(__file__).resolve().parents[1]


def test_features_match_a_direct_forward_pass(folder_dataset, tmp_path):
    clip = load_clip(ClipSpec(model=TINY_CLIP, random_weights=True))
    cache = tmp_path / "c.h5"
    report = make_cache(folder_dataset, cache, clip)
    assert report.images == 7 * 5 and not report.errors
    data = FeatureCache(cache).load("test")
    assert data.features.shape == (14, 2, 32) and data.labels.tolist()[:2] == [5, 5]  # angry -> Anger (5)
    from PIL import Image
    img = Image.open(folder_dataset / "test" / "angry" / "000.png").convert("RGB")
    x = normalize(load_uint8(img, clip.image_size, "official")[None], IMAGENET_MEAN, IMAGENET_STD)
    np.testing.assert_allclose(data.features[0, 0], clip.encode(x)[0].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(data.features[0, 1], clip.encode(torch.flip(x, [-1]))[0].numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(data.features[0, 0], data.features[0, 1])


def test_random_weights_are_seeded_and_recorded(folder_dataset, tmp_path):
    make_cache(folder_dataset, tmp_path / "a.h5")
    make_cache(folder_dataset, tmp_path / "b.h5")
    a, b = FeatureCache(tmp_path / "a.h5"), FeatureCache(tmp_path / "b.h5")
    assert np.array_equal(a.load("train").features, b.load("train").features)
    assert a.random_weights and a.fingerprint.seed == 0 and "RANDOM WEIGHTS" in a.fingerprint.weights_label
    other = load_clip(ClipSpec(model=TINY_CLIP, random_weights=True, seed=1))
    make_cache(folder_dataset, tmp_path / "c.h5", other, seed=1)
    assert not np.allclose(FeatureCache(tmp_path / "c.h5").load("train").features, a.load("train").features)


def test_interrupted_run_resumes_to_identical_features(folder_dataset, tmp_path):
    make_cache(folder_dataset, tmp_path / "clean.h5")
    calls = []

    def stop_after_two(split, n):
        calls.append(n)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        make_cache(folder_dataset, tmp_path / "resumed.h5", on_batch=stop_after_two)
    with h5py.File(tmp_path / "resumed.h5") as f:
        assert f["splits/train"].attrs["n_done"] == 8 and f["splits/test"].attrs["n_done"] == 0
        assert not f.attrs["complete"]
    with pytest.raises(CafeError, match="unfinished"):
        FeatureCache(tmp_path / "resumed.h5").load("test")
    report = make_cache(folder_dataset, tmp_path / "resumed.h5")
    assert report.resumed_from["train"] == 8 and report.images == 35 - 8
    for split in ("train", "test"):
        assert np.array_equal(FeatureCache(tmp_path / "clean.h5").load(split).features,
                              FeatureCache(tmp_path / "resumed.h5").load(split).features)


def test_killed_process_resumes_to_identical_features(folder_dataset, tmp_path):
    """A real SIGKILL between batches: the file stays readable and the rerun completes it."""
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from tests.conftest import make_cache
        from pathlib import Path
        n = []
        def kill(split, k):
            n.append(k)
            if len(n) == 3:
                os.kill(os.getpid(), signal.SIGKILL)
        make_cache(Path({str(folder_dataset)!r}), Path({str(tmp_path / 'killed.h5')!r}), on_batch=kill)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    make_cache(folder_dataset, tmp_path / "killed.h5")
    make_cache(folder_dataset, tmp_path / "clean.h5")
    for split in ("train", "test"):
        assert np.array_equal(FeatureCache(tmp_path / "clean.h5").load(split).features,
                              FeatureCache(tmp_path / "killed.h5").load(split).features)


def test_corrupt_image_is_recorded_and_the_run_goes_on(folder_dataset, tmp_path):
    bad = folder_dataset / "train" / "happy" / "001.png"
    bad.write_bytes(b"not a png at all")
    report = make_cache(folder_dataset, tmp_path / "c.h5")
    assert [(s, p) for s, p, _ in report.errors] == [("train", "train/happy/001.png")]
    cache = FeatureCache(tmp_path / "c.h5")
    assert cache.complete and len(cache.load("train").labels) == 20
    assert cache.errors()[0][1] == "train/happy/001.png" and "Error" in cache.errors()[0][2]


def test_finished_cache_with_other_settings_is_refused(folder_dataset, tmp_path):
    make_cache(folder_dataset, tmp_path / "c.h5")
    with pytest.raises(CafeError, match="preprocess: cache has 'official', asked for 'clip'.*--force"):
        make_cache(folder_dataset, tmp_path / "c.h5", preprocess="clip")
    report = make_cache(folder_dataset, tmp_path / "c.h5", preprocess="clip", force=True)
    assert report.images == 35 and FeatureCache(tmp_path / "c.h5").fingerprint.preprocess == "clip"


def test_changed_dataset_is_refused_on_resume(folder_dataset, tmp_path):
    make_cache(folder_dataset, tmp_path / "c.h5")
    (folder_dataset / "test" / "sad" / "000.png").unlink()
    with pytest.raises(CafeError, match="split 'test' lists other images"):
        make_cache(folder_dataset, tmp_path / "c.h5")


def test_second_writer_is_locked_out(folder_dataset, tmp_path):
    cache = tmp_path / "c.h5"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from filelock import FileLock
        lock = FileLock({str(cache) + '.lock'!r}); lock.acquire()
        print('locked', flush=True); time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(CafeError, match="being written by another cafe process"):
            make_cache(folder_dataset, cache)
        assert not cache.exists()
    finally:
        holder.kill()
        holder.wait()
    make_cache(folder_dataset, cache)  # free again once the holder is gone


def test_local_weights_file_is_loaded_and_hashed(tmp_path):
    src = load_clip(ClipSpec(model=TINY_CLIP, random_weights=True, seed=5))
    f = tmp_path / "tiny.pt"
    torch.save(src.model.state_dict(), f)
    loaded = load_clip(ClipSpec(model=TINY_CLIP, weights=str(f)))
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded.encode(x), src.encode(x))
    assert not loaded.info.random_weights and len(loaded.info.sha256) == 64
    assert loaded.info.source == WeightsFile("tiny.pt", loaded.info.sha256)


@pytest.mark.parametrize("spec, message", [
    (ClipSpec(model=TINY_CLIP, pretrained=None, weights="/no/such/file.pt"), "weights file not found"),
    (ClipSpec(model="ViT-B-32", pretrained="openai"),
     "ViT-B-32 weights 'openai' are not in the Hugging Face cache.*HF_HUB_OFFLINE.*--weights FILE"),
    (ClipSpec(model="ViT-B-32", pretrained="no-such-tag"), "has no pretrained tag 'no-such-tag'"),
    (ClipSpec(model="ViT-Q-99"), "unknown CLIP model"),
    (ClipSpec(model=TINY_CLIP, pretrained=None), "no CLIP weights given"),
])
def test_missing_weights_give_a_clear_error(spec, message):
    with pytest.raises(CafeError, match=message):
        load_clip(spec)


def test_wrong_weights_file_is_refused(tmp_path):
    f = tmp_path / "junk.pt"
    torch.save({"something": torch.zeros(3)}, f)
    with pytest.raises(CafeError, match="not a checkpoint of cafe-tiny"):
        load_clip(ClipSpec(model=TINY_CLIP, weights=str(f)))


def test_cli_extract_and_cache_info(folder_dataset, tmp_path):
    r = CliRunner().invoke(app, ["extract", "--dataset", "folder", "--root", str(folder_dataset), "--model", TINY_CLIP,
                                 "--random-weights", "--workers", "0", "--batch-size", "8",
                                 "--cache-dir", str(tmp_path / "cache")])
    assert r.exit_code == 0, r.output
    assert "RANDOM WEIGHTS" in r.output and "35 images" in r.output
    path = cache_path(tmp_path / "cache", "toyset")
    assert path.is_file()
    r = CliRunner().invoke(app, ["extract", "--dataset", "folder", "--root", str(folder_dataset), "--model", TINY_CLIP,
                                 "--random-weights", "--workers", "0", "--cache-dir", str(tmp_path / "cache")])
    assert r.exit_code == 0 and "nothing to do" in r.output
    r = CliRunner().invoke(app, ["cache", "info", str(path)])
    assert r.exit_code == 0 and "RANDOM WEIGHTS" in r.output and "complete" in r.output
    assert "train" in r.output and "21" in r.output


def test_cli_errors_are_one_line_without_traceback(folder_dataset, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cli.main", "extract", "--dataset", "folder", "--root",
                           str(folder_dataset), "--model", TINY_CLIP, "--views", "clean,upside-down"],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "upside-down" in proc.stderr and "Traceback" not in proc.stderr
