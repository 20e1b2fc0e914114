"""Figures: each writes a PNG of the promised pixel size from small fake data; Grad-CAM
finds the region a constructed net looks at."""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from cafe_cache import figures
from cafe_cache.gradcam import grad_cam
from cafe_cache.history import EpochLog
from cafe_cache.paper import CAFE_CROSS_DOMAIN

DPI = 50  # small images keep the tests quick; the layout is the same at any dpi


def png_size(path: Path) -> tuple[int, int]:
    assert path.exists() and path.stat().st_size > 1000
    with Image.open(path) as im:
        assert im.format == "PNG"
        return im.size


def test_class_masks(tmp_path):
    rng = np.random.default_rng(0)
    masks = 0.5 + 0.5 * rng.random((7, 512))
    out = figures.plot_class_masks(masks, tmp_path / "masks.png", random_weights=True, dpi=DPI)
    assert png_size(out) == (13 * DPI, round(4.2 * DPI))
    with pytest.raises(ValueError, match="mean_masks"):
        figures.plot_class_masks(masks[:6], tmp_path / "bad.png")


def test_confusion_with_an_empty_class_row(tmp_path):
    counts = np.random.default_rng(1).integers(0, 30, (7, 7))
    counts[2] = 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no division-by-zero / NaN warnings
        out = figures.plot_confusion(counts, tmp_path / "sub" / "cm.png", "RAF-DB -> MMA",
                                     dpi=DPI)
    assert png_size(out) == (round(7.5 * DPI), round(6.8 * DPI))


@pytest.mark.parametrize("with_paper", [False, True])
def test_cross_domain(tmp_path, with_paper):
    ours = {s: {t: v - 3.0 for t, v in row.items()} for s, row in CAFE_CROSS_DOMAIN.items()
            if s in ("rafdb", "ferplus", "mma")}
    del ours["mma"]["sfew"]  # an unmeasured pair is left blank
    out = figures.plot_cross_domain(ours, tmp_path / "xd.png",
                                    CAFE_CROSS_DOMAIN if with_paper else None, dpi=DPI)
    panels = 3 if with_paper else 1
    assert png_size(out) == (round(6.5 * panels * DPI), round((2.6 + 0.6 * 3) * DPI))


def test_training_curves_tolerate_missing_values(tmp_path):
    history = [EpochLog(e, 2.0 / e, 1.0 / e, 0.5 / e, 0.1, 0.5 + e / 20, 0.4 + e / 20, 2e-4 * 0.9 ** (e - 1), 1.0, 9.0)
               for e in range(1, 6)]
    history[2] = replace(history[2], sep=None)  # the separation loss off
    history[3] = replace(history[3], lr=float("nan"))
    assert figures._series(history, "sep")[0] == [1.0, 2.0, 4.0, 5.0]
    assert figures._series(history, "lr")[0] == [1.0, 2.0, 3.0, 5.0]
    out = figures.plot_training_curves(history, tmp_path / "curves.png", dpi=DPI)
    assert png_size(out) == (13 * DPI, round(4.8 * DPI))
    empty = figures.plot_training_curves([], tmp_path / "empty.png", dpi=DPI)
    assert png_size(empty) == (13 * DPI, round(4.8 * DPI))


def test_gradcam_grid(tmp_path):
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 255, (40, 40, 3), dtype=np.uint8) for _ in range(5)]
    cams = [rng.random((7, 7)) for _ in range(5)]  # smaller than the image: resized
    titles = [f"true Happy / pred Sad #{i}" for i in range(5)]
    out = figures.plot_gradcam_grid(images, cams, titles, tmp_path / "gc.png", ncols=3,
                                    random_weights=True, dpi=DPI)
    assert png_size(out) == (round(2.6 * 3 * DPI), round((2.9 * 2 + 0.7) * DPI))
    with pytest.raises(ValueError, match="equally many"):
        figures.plot_gradcam_grid(images, cams[:2], titles, tmp_path / "bad.png")


class BrightnessNet(nn.Module):
    """Logit 0 = mean brightness map, logit 1 = mean darkness map (stride-2 conv features)."""

    def __init__(self):
        super().__init__()
        conv = nn.Conv2d(3, 2, 3, stride=2, padding=1)
        with torch.no_grad():
            conv.weight[0].fill_(1 / 27)
            conv.weight[1].fill_(-1 / 27)
            conv.bias.copy_(torch.tensor([0.0, 1.0]))
        self.features = nn.Sequential(conv, nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


@pytest.mark.parametrize("frozen", [False, True])
def test_grad_cam_peaks_where_the_class_evidence_is(frozen):
    net = BrightnessNet().eval()
    net.requires_grad_(not frozen)
    x = torch.zeros(2, 3, 32, 32)
    x[0, :, 4:12, 20:28] = 1.0  # bright patch top right
    x[1, :, 22:30, 2:10] = 1.0  # bright patch bottom left
    cam = grad_cam(net, net.features, lambda: net(x), torch.tensor([0, 0]), (32, 32))
    assert cam.shape == (2, 32, 32) and cam.min() >= 0 and cam.max() == pytest.approx(1.0)
    r0, c0 = np.unravel_index(cam[0].argmax(), (32, 32))
    r1, c1 = np.unravel_index(cam[1].argmax(), (32, 32))
    assert 4 <= r0 < 12 and 20 <= c0 < 28
    assert 22 <= r1 < 30 and 2 <= c1 < 10

    dark = grad_cam(net, net.features, lambda: net(x), torch.tensor([1, 1]), (16, 16))
    assert dark.shape == (2, 16, 16)
    assert dark[0, 3:5, 11:13].max() < 0.2 and dark[0, 12, 3] > 0.9  # patch dark, rest lit
    assert not net.features[0]._forward_hooks  # hook removed
    assert all(p.grad is None for p in net.parameters())  # parameters untouched


def test_grad_cam_refuses_a_foreign_layer():
    net = BrightnessNet()
    with pytest.raises(ValueError, match="not a submodule"):
        grad_cam(net, nn.ReLU(), lambda: net(torch.zeros(1, 3, 8, 8)),
                         torch.tensor([0]), (8, 8))
