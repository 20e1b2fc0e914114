"""The registries (issue 27): a new variant or loss term is one registration, read by the model, the loss
and the training loop; each backbone names its Grad-CAM layer."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from cafe_cache import synth
from cafe_cache.errors import CafeError
from cafe_cache.model import losses, variants
from cafe_cache.model.backbones import BACKBONES, build_backbone, gradcam_layer
from cafe_cache.model.cafe import CAFEModel
from cafe_cache.model.config import ModelConfig
from cafe_cache.model.losses import LossTerm, PaperWeights, register_loss_term, total_loss, weighted_terms
from cafe_cache.model.variants import Variant, register_variant, sigmoid
from cafe_cache.run.checkpoint import load_model
from cafe_cache.run.config import Augment, TrainConfig
from cafe_cache.train.loop import train

from .conftest import make_cache


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("registries")
    synth.write_rafdb(base / "data", "line", 4, 2, size=32, seed=1)
    make_cache(base / "data", base / "cache" / "toy.h5", dataset="rafdb", cache_name="toy", batch_size=32)
    return base / "cache"


def one_epoch(cache_dir: Path, **kw) -> TrainConfig:
    return TrainConfig(**{"source": "toy", "cache_dir": str(cache_dir), "backbone_weights": "none", "epochs": 1,
                          "batch_size": 14, "image_size": 32, "workers": 0, "augment": Augment.none(),
                          "device": "cpu", **kw})


@pytest.fixture
def own_registries(monkeypatch):
    """The registries as copies, so what a test registers is gone after it."""
    monkeypatch.setattr(variants, "VARIANTS", dict(variants.VARIANTS))
    monkeypatch.setattr(losses, "LOSS_TERMS", dict(losses.LOSS_TERMS))


# --------------------------------------------------------------------------- variants


def test_each_variant_says_its_fc_width_and_whether_it_has_a_mask():
    widths = {name: v.fc_width(64, 512) for name, v in variants.VARIANTS.items()}
    assert widths == {"cafe": 64, "no_sigmoid": 64, "no_mask": 512, "clip_finetune": 64 + 512}
    assert [n for n, v in variants.VARIANTS.items() if v.has_mask] == ["cafe", "no_sigmoid"]
    assert not variants.NO_MASK.uses_clip and variants.CLIP_FINETUNE.uses_clip


def test_a_variant_is_checked_as_it_is_registered(own_registries):
    with pytest.raises(ValueError, match="'masked' only with a mask"):
        register_variant(Variant("masked_without_mask", ("masked",)))
    with pytest.raises(ValueError, match="must name parts"):
        register_variant(Variant("bad_part", ("pixels",)))
    with pytest.raises(ValueError, match="registered already"):
        register_variant(Variant("cafe", ("masked",), sigmoid))
    with pytest.raises(CafeError, match="unknown model variant 'nope'; choose one of cafe, no_sigmoid"):
        ModelConfig(variant="nope")


def test_a_registered_variant_builds_and_trains_with_no_other_change(own_registries, cache_dir, tmp_path):
    """One registration: the model's FC, the forward pass, the losses (CE alone: no mask), the run folder."""
    register_variant(Variant("clip_probe", ("clip",)))  # a linear probe on the CLIP features
    model = CAFEModel(ModelConfig(clip_dim=32, variant="clip_probe"))
    assert model.fc.in_features == 32
    clip = torch.randn(2, 32)
    assert torch.allclose(model(torch.rand(2, 3, 32, 32), clip).logits, model.fc(clip))  # the backbone unused
    history = train(one_epoch(cache_dir, variant="clip_probe"), tmp_path / "run", log=lambda s: None)
    assert history[0].sep is None and history[0].div is None and history[0].loss == history[0].ce
    rebuilt, config = load_model(tmp_path / "run")
    assert config.variant == "clip_probe" and rebuilt.fc.in_features == 32


def test_a_variant_with_a_mask_and_the_backbone_feature_in_its_fc(own_registries):
    register_variant(Variant("masked_and_backbone", ("masked", "backbone"), sigmoid))
    model = CAFEModel(ModelConfig(clip_dim=64, variant="masked_and_backbone")).eval()
    out = model(torch.rand(2, 3, 32, 32), torch.randn(2, 64))
    assert model.fc.in_features == 64 + 512 and out.logits.shape == (2, 7)
    assert out.mask.min() > 0 and out.mask.max() < 1  # the sigmoid mask was applied


# --------------------------------------------------------------------------- loss terms


def test_the_loss_terms_and_their_weights():
    names = [t.term.name for t in weighted_terms(PaperWeights())]
    assert names == ["ce", "sep", "div"]
    assert [t.weight for t in weighted_terms(PaperWeights())] == [1.0, 1.5, 5.0]
    assert [t.term.name for t in weighted_terms(PaperWeights(w_sep=0))] == ["ce", "div"]
    assert [t.term.name for t in weighted_terms(PaperWeights(), has_mask=False)] == ["ce"]


def test_losses_travel_named_not_by_position():
    torch.manual_seed(0)
    logits, labels, masked = torch.randn(4, 7), torch.tensor([0, 1, 2, 3]), torch.rand(4, 512)
    out = total_loss(logits, labels, masked, losses.channel_drop_mask(512))
    values = out.read(out.detached().tolist())
    assert values.total == pytest.approx(out.total.item())
    assert values.terms == pytest.approx({k: v.item() for k, v in out.terms.items()})
    with pytest.raises(ValueError):  # a vector of another length is refused, not silently misread
        out.read(out.detached().tolist()[:-1])


def mask_l1(x: losses.LossInput) -> torch.Tensor:
    """A throwaway term: the mean magnitude of the masked features."""
    return x.masked.abs().mean()


def test_a_registered_loss_term_counts_in_the_total_and_the_log(own_registries, cache_dir, tmp_path):
    register_loss_term(LossTerm("mask_l1", mask_l1, weight=0.5, needs_mask=True))
    torch.manual_seed(0)
    logits, labels, masked, drop = torch.randn(4, 7), torch.tensor([0, 1, 2, 3]), torch.rand(4, 512), torch.ones(512)
    out = total_loss(logits, labels, masked, drop)
    assert list(out.terms) == ["ce", "sep", "div", "mask_l1"]
    expected = out.terms["ce"] + 1.5 * out.terms["sep"] + 5 * out.terms["div"] + 0.5 * masked.abs().mean()
    assert out.total.item() == pytest.approx(expected.item())
    assert list(total_loss(logits, labels, None, w_sep=0, w_div=0).terms) == ["ce"]  # no mask: the term is off
    lines: list[str] = []
    train(one_epoch(cache_dir), tmp_path / "run", log=lines.append)
    epoch_line = next(line for line in lines if line.startswith("epoch 1/1"))
    assert ", mask_l1 " in epoch_line and "(ce " in epoch_line


def test_a_loss_term_name_is_registered_once(own_registries):
    with pytest.raises(ValueError, match="registered already"):
        register_loss_term(LossTerm("sep", mask_l1))
    with pytest.raises(ValueError, match="registered already"):
        register_loss_term(LossTerm("loss", mask_l1))  # the total's name in metrics.json


# --------------------------------------------------------------------------- backbones


@pytest.mark.parametrize("name", list(BACKBONES))
def test_each_backbone_names_its_last_convolutional_stage_for_grad_cam(name):
    """The registry's layer is the stage the global pool reads: stride 32, the backbone's full width."""
    net = build_backbone(name).eval()
    path, layer = gradcam_layer(name, net)
    assert path == BACKBONES[name].gradcam_layer
    shapes = []
    hook = layer.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    with torch.no_grad():
        net(torch.rand(1, 3, 64, 64))
    hook.remove()
    assert shapes == [(1, BACKBONES[name].width, 2, 2)]


def test_the_report_takes_the_grad_cam_layer_from_the_registry(monkeypatch):
    from cafe_cache import report

    model = CAFEModel(ModelConfig(backbone="mobilenet_v3_small"))
    assert report.cam_layer(model) == ("features.12", model.backbone.features[12])
    monkeypatch.setitem(BACKBONES, "mobilenet_v3_small", replace(BACKBONES["mobilenet_v3_small"],
                                                                 gradcam_layer="features.11"))
    assert report.cam_layer(model)[1] is model.backbone.features[11]
