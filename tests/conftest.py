"""Shared fixtures. Tests never touch the network: the HF hub is switched offline before any import."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a missing download fails at once instead of retrying
os.environ.setdefault("OMP_NUM_THREADS", "1")  # pytest -n 2 on 2 cores: one thread per worker

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

torch.set_num_threads(1)

TINY_CLIP = "cafe-tiny"  # cafe_cache/extract/model_configs/cafe-tiny.json: 32-d features, 32 px input
FOLDER_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def write_folder_dataset(root: Path, per_class: dict[str, int], size: int = 24, seed: int = 0) -> Path:
    """<root>/<split>/<class>/<i>.png with a class-dependent colour, for fast extraction tests."""
    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for c, cls in enumerate(FOLDER_CLASSES):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
                img[..., c % 3] += np.uint8(30 * (c + 1))
                Image.fromarray(img).save(d / f"{i:03d}.png")
    return root


@pytest.fixture
def folder_dataset(tmp_path: Path) -> Path:
    return write_folder_dataset(tmp_path / "toyset", {"train": 3, "test": 2})


def write_hf_cache(root: Path, monkeypatch, model: str, tag: str, state: dict[str, torch.Tensor],
                   fmt: str = "safetensors") -> Path:
    """A Hugging Face hub cache as open_clip leaves it after downloading ``model``/``tag`` (offline use).

    ``fmt`` "safetensors" writes ``open_clip_model.safetensors`` (what open_clip prefers), "bin" writes
    ``open_clip_pytorch_model.bin``. The hub's cache folder is pointed at ``root`` for this test.
    """
    import huggingface_hub.constants
    import open_clip
    from open_clip.pretrained import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
    from safetensors.torch import save_file

    repo, filename = os.path.split(open_clip.get_pretrained_cfg(model, tag)["hf_hub"])
    filename = filename or (HF_SAFE_WEIGHTS_NAME if fmt == "safetensors" else HF_WEIGHTS_NAME)
    revision = "0" * 40
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    file = repo_dir / "snapshots" / revision / filename
    file.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(file))
    else:
        torch.save(state, file)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return file
