"""The feature-extractor seam (issue 24): names pick open_clip or timm, fingerprints tell them apart, old
open_clip caches stay valid, timm weights load offline from the Hugging Face cache, zero-shot refuses a timm
cache, and missing hub weights fail at once in one line.

The fast tests use timm's own tiny ``test_vit`` (a real timm VisionTransformer, 160 px, built at 224 for
the official input); tests/test_timm_pipeline.py runs DINOv2 ViT-S/14 and ViT-B/14 through every command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from cafe_cache.errors import CafeError
from cafe_cache.evaluate.targets import check_same_weights
from cafe_cache.extract.extractor import canonical_model, has_text_tower, load_extractor, own_preprocess, split_model
from cafe_cache.extract.fingerprint import Fingerprint
from cafe_cache.extract.integrity import ATTRS_DIGEST, attrs_digest
from cafe_cache.extract.preprocess import IMAGENET_MEAN, IMAGENET_STD, load_uint8, normalize
from cafe_cache.extract.reader import FeatureCache
from cafe_cache.extract.weights import ClipSpec, Pretrained, WeightsFile
from cli.main import app

from .conftest import TINY_CLIP, make_cache, write_folder_dataset

REPO = Path(__file__).resolve().parents[1]
TEST_VIT = "timm:test_vit.r160_in1k"
DINO_S = "vit_small_patch14_dinov2.lvd142m"


def cafe(*args) -> CliRunner:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def two_caches(tmp_path_factory) -> Path:
    """cache/toyset.h5 from the tiny CLIP and timm/toyset.h5 from timm's test_vit, both random weights."""
    base = tmp_path_factory.mktemp("extractors")
    root = write_folder_dataset(base / "toyset", {"train": 1, "test": 1})
    for model, folder in ((TINY_CLIP, "clip"), (TEST_VIT, "timm")):
        r = cafe("extract", "--dataset", "folder", "--root", root, "--model", model, "--random-weights",
                 "--workers", "0", "--cache-dir", base / folder)
        assert r.exit_code == 0, r.output
    return base


def test_model_names_pick_the_extractor_by_scheme():
    assert split_model("ViT-B-32") == ("open_clip", "ViT-B-32")
    assert split_model("open_clip:ViT-L-14") == ("open_clip", "ViT-L-14")
    assert split_model("timm:" + DINO_S) == ("timm", DINO_S)
    assert split_model("hf-hub:org/repo") == ("open_clip", "hf-hub:org/repo")  # open_clip's own scheme
    assert canonical_model("open_clip:ViT-B-32") == "ViT-B-32"  # recorded as before the seam
    assert canonical_model("timm:" + DINO_S) == "timm:" + DINO_S
    assert has_text_tower("ViT-B-32") and not has_text_tower("timm:" + DINO_S)
    assert own_preprocess("ViT-B-32", "model") == "clip" and own_preprocess("timm:x", "clip") == "model"
    with pytest.raises(CafeError, match="unknown extractor 'dino'"):
        split_model("dino:vits14")
    with pytest.raises(CafeError, match="unknown timm model 'no_such_net'"):
        load_extractor(ClipSpec(model="timm:no_such_net", random_weights=True))


def test_open_clip_prefix_is_the_same_extractor_and_fingerprint():
    bare = load_extractor(ClipSpec(model=TINY_CLIP, random_weights=True))
    prefixed = load_extractor(ClipSpec(model=f"open_clip:{TINY_CLIP}", random_weights=True))
    x = torch.randn(2, 3, bare.image_size, bare.image_size)
    assert torch.equal(bare.encode(x), prefixed.encode(x))
    fp = [Fingerprint.for_extractor(c, preprocess="official", views=("clean",), dtype="float32", precision="fp32")
          for c in (bare, prefixed)]
    assert fp[0] == fp[1] and "transform" not in fp[0].to_dict()


def test_open_clip_cache_written_before_the_seam_still_loads_and_resumes(folder_dataset, tmp_path):
    """A cache whose fingerprint is the JSON cafe wrote before this change (no transform key) and before the
    weights' source was tagged ("weights": "random" beside seed and random_weights)."""
    path = tmp_path / "old.h5"
    make_cache(folder_dataset, path)
    old = {"activation": "gelu", "dtype": "float32", "image_size": 32, "model": TINY_CLIP, "precision": "fp32",
           "preprocess": "official", "random_weights": True, "seed": 0, "views": ["clean", "hflip"],
           "weights": "random", "weights_sha256": None}
    with h5py.File(path, "r+") as f:
        f.attrs["fingerprint"] = json.dumps(old, sort_keys=True)
        f.attrs[ATTRS_DIGEST] = attrs_digest(f.attrs)  # as that cafe stamped it
    cache = FeatureCache(path)
    assert cache.load("train").features.shape == (21, 2, 32)
    now = Fingerprint.for_extractor(load_extractor(ClipSpec(model=TINY_CLIP, random_weights=True)),
                                    preprocess="official", views=("clean", "hflip"), dtype="float32", precision="fp32")
    assert cache.fingerprint == now and cache.fingerprint.differences(now) == []
    assert json.loads(now.to_json())["weights"] == {"kind": "random", "seed": 0}  # today's form: the source tagged
    report = make_cache(folder_dataset, path)  # the same extraction today continues the old cache
    assert report.images == 0


def test_fingerprints_differ_between_extractors_and_other_caches_are_refused_by_name(two_caches):
    clip, timm_cache = FeatureCache(two_caches / "clip" / "toyset.h5"), FeatureCache(two_caches / "timm" / "toyset.h5")
    diff = " ".join(timm_cache.fingerprint.differences(clip.fingerprint))
    assert f"model: cache has '{TEST_VIT}', asked for '{TINY_CLIP}'" in diff and "transform" in diff
    assert timm_cache.fingerprint.transform.startswith("resize 224x224 bilinear, ImageNet mean/std")
    assert timm_cache.fingerprint.image_size == 224 and timm_cache.fingerprint.activation == "native"
    with pytest.raises(CafeError, match=f"toyset.h5 was made with {TEST_VIT} RANDOM WEIGHTS.*trained on CLIP "
                                        f"{TINY_CLIP}"):
        check_same_weights(clip.fingerprint, {"toyset": timm_cache})
    # extraction into a cache of the other extractor: refused, the differing fields named
    r = cafe("extract", "--dataset", "folder", "--root", two_caches / "toyset", "--model", TEST_VIT,
             "--random-weights", "--workers", "0", "--cache-dir", two_caches / "clip")
    assert isinstance(r.exception, CafeError) and "was made with other settings (model: cache has 'cafe-tiny'" in \
        str(r.exception)


def test_training_with_targets_of_another_extractor_is_refused_before_training(two_caches, tmp_path):
    import shutil

    mixed = tmp_path / "mixed"
    shutil.copytree(two_caches / "clip", mixed)
    shutil.copy(two_caches / "timm" / "toyset.h5", mixed / "dino.h5")
    r = cafe("train", "--source", "toyset", "--cache-dir", mixed, "--targets", "toyset,dino", "--out", tmp_path / "r",
             "--epochs", 1, "--image-size", 32, "--backbone-weights", "none", "--no-plots", "--device", "cpu")
    assert isinstance(r.exception, CafeError) and "dino.h5 was made with timm:test_vit" in str(r.exception)
    assert not (tmp_path / "r" / "last.safetensors").exists()  # refused before any training


def test_zeroshot_on_a_timm_cache_is_one_line_exit_2(two_caches, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cli", "zeroshot", "--cache-dir", str(two_caches / "timm"), "--out",
                           str(tmp_path / "zs")], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"})
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stdout + proc.stderr
    assert "timm:test_vit.r160_in1k features, an image-only model without a text tower" in lines[0]
    assert not (tmp_path / "zs").exists()


def write_timm_hf_cache(root: Path, monkeypatch, name: str, state: dict[str, torch.Tensor]) -> Path:
    """A Hugging Face hub cache as timm leaves it after downloading ``name`` (model.safetensors), pointed at for
    this test, hub offline."""
    import huggingface_hub.constants
    import timm
    from safetensors.torch import save_file

    repo = timm.models.get_pretrained_cfg(name).hf_hub_id
    revision = "0" * 40
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    file = repo_dir / "snapshots" / revision / "model.safetensors"
    file.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(file))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return file


@pytest.mark.slow
def test_offline_hf_cache_load_of_dinov2_equals_timms_own_file_load(folder_dataset, tmp_path, monkeypatch):
    """DINOv2 ViT-S/14 (made for 518 px, its position embeddings resampled to 224): the cached features of the
    hub weights equal a direct ``timm.create_model(..., pretrained_cfg_overlay=dict(file=...))`` forward."""
    import timm

    torch.manual_seed(3)
    weights = timm.create_model(DINO_S, pretrained=False).state_dict()  # the hub checkpoint's layout, at 518 px
    file = write_timm_hf_cache(tmp_path / "hub", monkeypatch, DINO_S, weights)
    loaded = load_extractor(ClipSpec(model="timm:" + DINO_S), "cpu", "official")
    assert loaded.info.source == Pretrained("timm/" + DINO_S) and not loaded.info.random_weights
    cache = tmp_path / "dino.h5"
    make_cache(folder_dataset, cache, loaded, dtype="float16", views=("clean",))
    got = FeatureCache(cache).load("test")
    direct = timm.create_model(DINO_S, pretrained=True, pretrained_cfg_overlay=dict(file=str(file)), num_classes=0,
                               img_size=224).eval()
    images = [Image.open(folder_dataset / p).convert("RGB") for p in got.paths[:3]]
    x = normalize(torch.stack([load_uint8(i, 224, "official") for i in images]), IMAGENET_MEAN, IMAGENET_STD)
    with torch.no_grad():
        want = direct(x).numpy()
    assert got.features.shape[-1] == 384 == want.shape[-1]
    np.testing.assert_allclose(got.features[:3, 0], want, rtol=1e-3, atol=1e-3 * np.abs(want).max())
    other = timm.create_model(DINO_S, pretrained=False, num_classes=0, img_size=224).eval()  # not the file's weights
    with torch.no_grad():
        assert not np.allclose(got.features[:3, 0], other(x).numpy(), atol=1e-2)


@pytest.mark.slow
def test_missing_hub_weights_fail_at_once_in_one_whole_line(folder_dataset, tmp_path):
    """No HF_HUB_OFFLINE, an unreachable hub (a closed local port), an empty cache: one line, no retries (before,
    the hub client retried five times for about a minute, each warning printed twice, the message cut)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_CACHE": str(tmp_path / "empty"),
           "HF_ENDPOINT": "http://127.0.0.1:9", "HOME": str(tmp_path)}
    env.pop("HF_HUB_OFFLINE", None)
    for model in ("ViT-B-32", "timm:" + DINO_S):
        proc = subprocess.run([sys.executable, "-m", "cli", "extract", "--dataset", "folder", "--root",
                               str(folder_dataset), "--model", model, "--cache-dir", str(tmp_path / "c")],
                              capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2, proc.stderr
        errors = [line for line in lines if line.startswith("error: ")]
        assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr  # after "reading folder labels from ..."
        assert "cannot be reached" in errors[0] and errors[0].endswith("(features are then meaningless).")
        assert "--weights FILE" in errors[0] and "--random-weights" in errors[0]
        assert "Retry" not in proc.stderr and "WARNING" not in proc.stderr and "ERROR:root" not in proc.stderr


def test_preprocess_model_is_timms_own_eval_transform(folder_dataset, tmp_path):
    """``--preprocess model``: the pretrained_cfg's resize to S / crop_pct (bicubic), centre crop and mean/std,
    equal to timm's own ``create_transform`` of the model's data config, and named in the fingerprint."""
    from timm.data import create_transform, resolve_data_config

    loaded = load_extractor(ClipSpec(model=TEST_VIT, random_weights=True), "cpu", "model")
    assert loaded.image_size == 160 and loaded.crop_pct == 0.95
    make_cache(folder_dataset, tmp_path / "m.h5", loaded, preprocess="model", views=("clean",))
    cache = FeatureCache(tmp_path / "m.h5")
    assert cache.fingerprint.preprocess == "model" and cache.fingerprint.image_size == 160
    assert cache.fingerprint.transform == ("timm pretrained_cfg: shorter side to 168 bicubic, centre crop 160, "
                                           "mean [0.5, 0.5, 0.5], std [0.5, 0.5, 0.5]")
    data = cache.load("test")
    transform = create_transform(**resolve_data_config(model=loaded.model))
    x = torch.stack([transform(Image.open(folder_dataset / p).convert("RGB")) for p in data.paths[:3]])
    np.testing.assert_allclose(data.features[:3, 0], loaded.encode(x).numpy(), rtol=1e-4, atol=1e-4)
    official = load_extractor(ClipSpec(model=TEST_VIT, random_weights=True), "cpu", "official")
    assert official.image_size == 224  # built at CAFE's input size for the official preprocessing


def test_timm_weights_file_is_loaded_hashed_and_rebuilt_online(tmp_path):
    import timm

    from cafe_cache.extract.online import clip_for

    torch.manual_seed(1)
    state = timm.create_model("test_vit.r160_in1k", pretrained=False).state_dict()
    file = tmp_path / "test_vit.pth"
    torch.save(state, file)
    loaded = load_extractor(ClipSpec(model=TEST_VIT, weights=str(file)), "cpu", "official")
    assert loaded.info.source == WeightsFile("test_vit.pth", loaded.info.sha256) and len(loaded.info.sha256) == 64
    direct = timm.create_model("test_vit.r160_in1k", pretrained=True, pretrained_cfg_overlay=dict(file=str(file)),
                               num_classes=0, img_size=224).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(loaded.encode(x), direct(x), atol=1e-6)
    fp = Fingerprint.for_extractor(loaded, preprocess="official", views=("clean",), dtype="float32", precision="fp32")
    with pytest.raises(CafeError, match="weights file test_vit.pth; pass it again with --clip-weights"):
        clip_for(fp, None, "cpu")
    again = clip_for(fp, str(file), "cpu")  # what --online-clip, --bgr-targets and predict rebuild
    assert torch.equal(again.encode(x), loaded.encode(x))
    with pytest.raises(CafeError, match="not a checkpoint of timm:vit_small_patch14_dinov2"):
        load_extractor(ClipSpec(model="timm:" + DINO_S, weights=str(file)), "cpu", "official")


def test_pretrained_flag_is_refused_for_a_timm_model(folder_dataset, tmp_path):
    r = cafe("extract", "--dataset", "folder", "--root", folder_dataset, "--model", TEST_VIT, "--pretrained", "openai",
             "--cache-dir", tmp_path / "c")
    assert isinstance(r.exception, CafeError) and "takes its weights' tag in its name" in str(r.exception)


@pytest.mark.slow
def test_two_rank_torchrun_extraction_of_a_timm_model_equals_one_process(tmp_path):
    """The shard path (each rank loads the extractor from the job, rank 0 joins the shards) with timm."""
    from .test_distributed import assert_same_cache, ok, torchrun
    from .test_distributed import cafe as one_process

    write_folder_dataset(tmp_path / "toy", {"train": 3, "test": 2}, size=20)
    args = ["extract", "-d", "folder", "--root", "toy", "--model", TEST_VIT, "--random-weights", "--batch-size", "4",
            "--dtype", "float32", "--workers", "0"]
    ok(one_process(*args, "--cache-dir", "one", cwd=tmp_path))
    out = ok(torchrun("-m", "cli", *args, "--cache-dir", "two", cwd=tmp_path))
    assert "on 2 ranks" in out and TEST_VIT in out
    assert_same_cache(tmp_path / "one" / "toy.h5", tmp_path / "two" / "toy.h5")


def test_online_clip_training_runs_the_timm_model_on_every_batch(two_caches, tmp_path, monkeypatch):
    import cafe_cache.train.loop as loop

    seen = []
    real = loop.online_features

    def spy(extractor, images):
        features = real(extractor, images)
        seen.append((extractor.info.model, tuple(features.shape[1:])))
        return features

    monkeypatch.setattr(loop, "online_features", spy)
    r = cafe("train", "--source", "toyset", "--cache-dir", two_caches / "timm", "--out", tmp_path / "online",
             "--epochs", 1, "--image-size", 32, "--backbone-weights", "none", "--batch-size", 7, "--no-plots",
             "--no-eval", "--online-clip", "--device", "cpu", "--workers", 0)
    assert r.exit_code == 0, (r.output, r.exception)
    width = FeatureCache(two_caches / "timm" / "toyset.h5").load("train").features.shape[-1]
    assert seen and set(seen) == {(TEST_VIT, (width,))}


def test_a_convolutional_timm_model_runs_at_the_official_224_px():
    """No img_size to set (timm's test ConvNeXt, made for 160 px): built as it is and fed 224 px."""
    loaded = load_extractor(ClipSpec(model="timm:test_convnext.r160_in1k", random_weights=True), "cpu", "official")
    assert loaded.image_size == 224 and loaded.encode(torch.randn(1, 3, 224, 224)).shape == (1, loaded.embed_dim)
    assert loaded.transform("official").endswith("run at 224 px (native 160)")
