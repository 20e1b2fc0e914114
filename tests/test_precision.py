"""Compute precision of extraction: what ``--precision auto`` picks keeps CLIP features within 1e-2
(relative) of fp32. Measured with ViT-B-32 (random weights: no download) on image-like input.

bf16 autocast is not among the choices: it lands at about 1e-2 (see ``make bench``), so ``auto``
is fp32 on the CPU and fp16 on CUDA.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cafe_cache.device import resolve_precision
from cafe_cache.extract.clip import ClipSpec, load_clip
from cafe_cache.extract.loop import batch_features
from cafe_cache.extract.preprocess import IMAGENET_MEAN, IMAGENET_STD

TOLERANCE = 1e-2
VIEWS = ("clean", "hflip")


@pytest.fixture(scope="module")
def vit():
    return load_clip(ClipSpec(model="ViT-B-32", random_weights=True))


def image_like(n: int, size: int) -> torch.Tensor:
    """Smooth uint8 images (upsampled coarse noise): the value ranges of photos, not white noise."""
    coarse = torch.randint(0, 256, (n, 3, 7, 7), generator=torch.Generator().manual_seed(0)).float()
    return F.interpolate(coarse, size=(size, size), mode="bilinear").round().clamp(0, 255).to(torch.uint8)


def max_rel_error(clip, images: torch.Tensor, precision: str) -> float:
    ref = batch_features(clip, images, IMAGENET_MEAN, IMAGENET_STD, VIEWS, "fp32")
    got = batch_features(clip, images, IMAGENET_MEAN, IMAGENET_STD, VIEWS, precision)
    return float((np.linalg.norm(got - ref, axis=-1) / np.linalg.norm(ref, axis=-1)).max())


def test_auto_is_fp32_on_cpu_and_fp16_on_cuda():
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "fp16"


def test_fp16_keeps_features_within_tolerance(vit):
    """fp16 autocast, run on the CPU here: the number format CUDA's ``auto`` uses."""
    assert max_rel_error(vit, image_like(2, vit.image_size), "fp16") <= TOLERANCE


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_auto_on_cuda_keeps_features_within_tolerance(vit):
    gpu = load_clip(ClipSpec(model="ViT-B-32", random_weights=True), "cuda")
    images = image_like(8, vit.image_size)
    ref = batch_features(vit, images, IMAGENET_MEAN, IMAGENET_STD, VIEWS, "fp32")
    auto = resolve_precision("auto", torch.device("cuda"))
    got = batch_features(gpu, images.cuda(), IMAGENET_MEAN, IMAGENET_STD, VIEWS, auto)
    assert (np.linalg.norm(got - ref, axis=-1) / np.linalg.norm(ref, axis=-1)).max() <= TOLERANCE
