"""What the official CAFE computes: QuickGELU CLIP, noise at source size (the drop law is in test_losses).

The CLIP tests build the real ViT-B-32 graph (random weights, no download), so they are marked ``real``.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from cafe_cache.errors import CafeError
from cafe_cache.extract.clip import ClipSpec, load_clip, official_activation
from cafe_cache.extract.fingerprint import Fingerprint
from cafe_cache.extract.reader import FeatureCache, SplitData
from cafe_cache.extract.weights import Pretrained, RandomInit, WeightsInfo
from cafe_cache.extract.writer import CacheWriter
from cafe_cache.run.data import NOISE_P, NOISE_VARIANCE, Augment, PairedSamples, _normalize

from .conftest import TINY_CLIP, write_hf_cache


def activations(model: torch.nn.Module) -> set[str]:
    """Class names of the visual transformer's MLP activations."""
    return {type(block.mlp.gelu).__name__ for block in model.visual.transformer.resblocks}


def official_features(state: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """A direct open_clip forward of OpenAI's architecture (the -quickgelu config) with these weights."""
    ref = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    ref.load_state_dict(state)
    with torch.no_grad():
        return ref.eval().encode_image(images, normalize=False)


@pytest.fixture(scope="module")
def vit_b_32(tmp_path_factory):
    """A random-weights ViT-B-32 as cafe builds it by default, its weights saved as a user's file."""
    clip = load_clip(ClipSpec(random_weights=True, seed=7))
    state = {k: v.clone() for k, v in clip.model.state_dict().items()}
    path = tmp_path_factory.mktemp("vit") / "ViT-B-32.bin"
    torch.save(state, path)
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    return clip, state, path, images


@pytest.mark.real
def test_default_vit_b_32_with_random_weights_is_quickgelu(vit_b_32):
    clip, state, _, images = vit_b_32
    assert activations(clip.model) == {"QuickGELU"}
    assert clip.info.activation == "quickgelu" and "quickgelu" in clip.info.label
    assert torch.allclose(clip.encode(images), official_features(state, images), atol=1e-5)


@pytest.mark.real
def test_default_vit_b_32_from_a_weights_file_is_quickgelu(vit_b_32):
    _, state, path, images = vit_b_32
    clip = load_clip(ClipSpec(weights=str(path)))
    assert activations(clip.model) == {"QuickGELU"}
    assert torch.allclose(clip.encode(images), official_features(state, images), atol=1e-5)


@pytest.mark.real
def test_pretrained_openai_from_an_offline_hf_cache_is_quickgelu(vit_b_32, tmp_path, monkeypatch):
    _, state, _, images = vit_b_32
    write_hf_cache(tmp_path, monkeypatch, "ViT-B-32", "openai", state, "safetensors")
    clip = load_clip(ClipSpec(pretrained="openai"))
    assert activations(clip.model) == {"QuickGELU"} and clip.info.source == Pretrained("openai")
    assert torch.allclose(clip.encode(images), official_features(state, images), atol=1e-5)


def test_activation_follows_the_pretrained_tag():
    assert official_activation("ViT-B-32") == "quickgelu"  # the openai tag declares quick_gelu
    assert official_activation("ViT-B-32", "laion2b_s34b_b79k") == "gelu"
    assert official_activation("ViT-B-16-quickgelu", None) == "quickgelu"
    assert official_activation(TINY_CLIP) == "gelu"  # no tags: open_clip's config as it is
    tiny = load_clip(ClipSpec(model=TINY_CLIP, random_weights=True, activation="quickgelu"))
    assert activations(tiny.model) == {"QuickGELU"} and tiny.info.activation == "quickgelu"
    with pytest.raises(CafeError, match="--activation 'swish'"):
        load_clip(ClipSpec(model=TINY_CLIP, random_weights=True, activation="swish"))


def _fingerprint(model: str = TINY_CLIP, activation: str = "gelu") -> Fingerprint:
    return Fingerprint(WeightsInfo(model, RandomInit(0), activation), preprocess="official",
                       views=("clean",), image_size=32, dtype="float32", precision="fp32")


def _empty_cache(path: Path, fp: Fingerprint) -> None:
    with CacheWriter(path, fp, dataset="folder", cache_name=path.stem, root=path.parent, reader_options={},
                     splits={"train": []}, skipped=[], feature_dim=32) as w:
        w.finish()


def test_a_cache_of_another_activation_is_refused_with_force_named(tmp_path):
    path = tmp_path / "c.h5"
    _empty_cache(path, _fingerprint(activation="gelu"))
    with pytest.raises(CafeError, match=r"activation: cache has 'gelu', asked for 'quickgelu'.*--force"):
        _empty_cache(path, _fingerprint(activation="quickgelu"))


def test_a_gelu_cache_of_cafe_0_1_is_refused_for_training(tmp_path):
    path = tmp_path / "old.h5"
    _empty_cache(path, _fingerprint(model="ViT-B-32", activation="gelu"))
    FeatureCache(path).require_complete()  # recorded: a deliberate --activation gelu is used as asked
    with h5py.File(path, "r+") as f:  # what cafe 0.1 wrote: no activation in the fingerprint
        fp = json.loads(f.attrs["fingerprint"])
        del fp["activation"]
        f.attrs["fingerprint"] = json.dumps(fp)
        del f.attrs["attrs_sha256"]  # nor the checksum of its attributes
    cache = FeatureCache(path)
    assert cache.fingerprint.activation == "gelu"
    with pytest.raises(CafeError, match="need QuickGELU.*--force"):
        cache.require_complete()


def test_noise_is_added_at_source_size_before_the_resize_as_the_official_order():
    """A 48 px image (FERPlus): the official code adds N(0, 30) to the uint8 image, truncates to uint8, then
    resizes to 224; with the same generator the training sample must hold exactly those pixels."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (8, 48, 48, 3), dtype=np.uint8)
    data = SplitData(np.zeros((8, 1, 8), np.float32), np.arange(8), [f"{i}.png" for i in range(8)], np.arange(8),
                     images)
    samples = PairedSamples(data, None, ("clean",), 224, Augment(flip=False, noise=True, erase=False), seed=5)
    noisy = 0
    for i in range(8):
        g = samples.generator(i)
        pixels = images[i]
        if torch.rand(1, generator=g).item() < NOISE_P:
            noise = torch.randn((48, 48, 3), generator=g).numpy() * NOISE_VARIANCE ** 0.5
            pixels = np.clip(pixels.astype(np.float32) + noise, 0, 255).astype(np.uint8)
            noisy += 1
        resized = np.asarray(Image.fromarray(pixels).resize((224, 224), Image.BILINEAR), np.float32) / 255
        expected = _normalize(torch.from_numpy(resized).permute(2, 0, 1))
        assert torch.allclose(samples[i][0], expected, atol=1e-6)
    assert 0 < noisy < 8  # both branches checked
