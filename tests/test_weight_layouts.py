"""CLIP weights in the layouts users really have, loaded through `cafe extract`'s flags, offline.

Each test writes one random ViT-B-32 state (one per module) in a user's layout, extracts a cache of
a few images from it with the CLI, and checks the stored features are those of a direct open_clip
forward of OpenAI's architecture (``ViT-B-32-quickgelu``) with the same weights and the official
preprocessing (PIL bilinear resize to 224, /255, ImageNet mean/std), written out here independently.
The MS-Celeb ResNet-18 ``{'state_dict': ...}`` file is tested in test_train.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from cafe_cache.extract.reader import FeatureCache
from cli.main import app

from .conftest import write_hf_cache

pytestmark = pytest.mark.real

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])  # ImageNet
OPENAI_EXTRAS = {"input_resolution": 224, "context_length": 77, "vocab_size": 49408}  # in OpenAI's archives


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    torch.manual_seed(11)
    model = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """A folder dataset of 2 test images of different sizes (the resize matters)."""
    root = tmp_path_factory.mktemp("layouts") / "faces"
    rng = np.random.default_rng(3)
    for i, (cls, size) in enumerate([("happy", 100), ("sad", 48)]):
        (root / "test" / cls).mkdir(parents=True)
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / "test" / cls / f"{i}.png")
    return root


def official_input(path: Path) -> torch.Tensor:
    pixels = np.asarray(Image.open(path).convert("RGB").resize((224, 224), Image.BILINEAR), np.float64) / 255
    return torch.from_numpy(((pixels - MEAN) / STD).astype(np.float32)).permute(2, 0, 1)


def direct_features(state: dict[str, torch.Tensor], root: Path) -> np.ndarray:
    ref = open_clip.create_model("ViT-B-32-quickgelu", pretrained=None)
    ref.load_state_dict({k: v.float() for k, v in state.items()})
    batch = torch.stack([official_input(p) for p in sorted((root / "test").glob("*/*.png"))])
    with torch.no_grad():
        return ref.eval().encode_image(batch, normalize=False).numpy()


def extract(root: Path, cache_dir: Path, *flags: str) -> tuple[np.ndarray, str]:
    """`cafe extract` of ``root`` with the CLIP ``flags``: (stored clean-view features, CLIP label)."""
    result = CliRunner().invoke(app, ["extract", "--dataset", "folder", "--root", str(root), "--cache-dir",
                                      str(cache_dir), "--views", "clean", "--dtype", "float32", *flags])
    assert result.exit_code == 0, (result.output, result.exception)
    cache = FeatureCache(cache_dir / "faces.h5")
    data = cache.load("test")
    order = np.argsort(data.paths)  # the direct forward goes in sorted path order
    return data.features[order, 0], cache.fingerprint.activation


def check(features: np.ndarray, activation: str, state: dict[str, torch.Tensor], root: Path) -> None:
    assert activation == "quickgelu"
    np.testing.assert_allclose(features, direct_features(state, root), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_pretrained_openai_from_an_offline_hf_cache(state, images, tmp_path, monkeypatch, fmt):
    write_hf_cache(tmp_path / "hub", monkeypatch, "ViT-B-32", "openai", state, fmt)
    check(*extract(images, tmp_path / "cache", "--pretrained", "openai"), state, images)


def test_an_open_clip_bin_state_dict(state, images, tmp_path):
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(state, path)
    check(*extract(images, tmp_path / "cache", "--weights", str(path)), state, images)


class _Holder(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def openai_archive(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """A TorchScript archive as OpenAI's ``ViT-B-32.pt``: their key names (open_clip's CLIP keeps them),
    fp16 weights, and the three int entries OpenAI stores beside them; returns the weights it holds."""
    held = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    root = _Holder()
    for key, value in {**held, **{k: torch.tensor(v) for k, v in OPENAI_EXTRAS.items()}}.items():
        *parents, leaf = key.split(".")
        module = root
        for name in parents:
            if not hasattr(module, name):
                module.add_module(name, _Holder())
            module = getattr(module, name)
        module.register_buffer(leaf, value)
    torch.jit.save(torch.jit.script(root), str(path))
    return held


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit is deprecated, OpenAI archives are not
def test_openai_torchscript_archive(state, images, tmp_path):
    path = tmp_path / "ViT-B-32.pt"
    held = openai_archive(state, path)
    assert "visual.transformer.resblocks.0.attn.in_proj_weight" in torch.jit.load(str(path)).state_dict()
    check(*extract(images, tmp_path / "cache", "--weights", str(path)), held, images)
