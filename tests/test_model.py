"""The CAFE model, its variants, the backbones and backbone weight loading (tiny CPU inputs)."""

import argparse
import json
import urllib.error

import pytest
import torch
import torchvision.models as tvm
from safetensors.torch import save_file

from cafe_cache.errors import CafeError
from cafe_cache.model import losses
from cafe_cache.model.backbones import build_backbone, load_backbone_weights, reduce_width
from cafe_cache.model.cafe import CAFEModel, ModelOutput
from cafe_cache.model.config import ModelConfig


def images(batch: int = 4) -> torch.Tensor:
    return torch.randn(batch, 3, 32, 32)


@pytest.fixture(scope="module")
def resnet18_cafe() -> CAFEModel:
    torch.manual_seed(0)
    return CAFEModel(ModelConfig()).eval()


def test_sigmoid_mask_in_half_open_range(resnet18_cafe):
    clip = torch.randn(4, 512)
    with torch.no_grad():
        out = resnet18_cafe(images(), clip)
    assert out.mask.shape == (4, 512)
    assert out.mask.min() >= 0.5 and out.mask.max() < 1
    assert torch.equal(out.masked, clip * out.mask)


def test_no_sigmoid_multiplies_by_raw_mask():
    model = CAFEModel(ModelConfig(variant="no_sigmoid")).eval()
    x, clip = images(), torch.randn(4, 512)
    with torch.no_grad():
        out = model(x, clip)
        raw = model.backbone(x)
    assert raw.min() >= 0  # pooled after the final ReLU
    assert torch.equal(out.mask, raw)
    assert torch.equal(out.masked, clip * raw)


@pytest.mark.parametrize("variant, has_mask", [("cafe", True), ("no_sigmoid", True),
                                               ("no_mask", False), ("clip_finetune", False)])
def test_variant_shapes(variant, has_mask):
    model = CAFEModel(ModelConfig(variant=variant, clip_dim=64)).eval()
    with torch.no_grad():
        out = model(images(), torch.randn(4, 64))
    assert isinstance(out, ModelOutput) and isinstance(out, tuple)  # a tuple: what DDP and tracing walk through
    assert out.logits.shape == (4, 7)
    assert (out.masked is not None) == has_mask and (out.mask is not None) == has_mask
    if has_mask:
        assert out.masked.shape == out.mask.shape == (4, 64)
    expected_fc = {"cafe": 64, "no_sigmoid": 64, "no_mask": 512, "clip_finetune": 64 + 512}
    assert model.fc.in_features == expected_fc[variant] and model.fc.bias is not None


def test_no_mask_ignores_clip():
    model = CAFEModel(ModelConfig(variant="no_mask")).eval()
    x = images()
    with torch.no_grad():
        assert torch.equal(model(x).logits, model(x, torch.randn(4, 512)).logits)


def test_reduce_width_by_hand():
    features = torch.arange(8.0).reshape(1, 8)
    assert reduce_width(features, 8) is features
    # The paper's 2048 -> 512 rule in small: (1, 8) -> (1, 2, 4) -> mean.
    assert reduce_width(features, 2).tolist() == [[1.5, 5.5]]
    # 6 -> 4 is not a divisor: adaptive pooling over bins [0,2) [1,3) [3,5) [4,6).
    assert reduce_width(torch.arange(6.0).reshape(1, 6), 4).tolist() == [[0.5, 1.5, 3.5, 4.5]]


def test_resnet50_mask_is_mean_of_consecutive_channels():
    model = CAFEModel(ModelConfig(backbone="resnet50", variant="no_sigmoid")).eval()
    x = images(2)
    with torch.no_grad():
        raw = model.backbone(x)
        out = model(x, torch.ones(2, 512))
    assert raw.shape == (2, 2048)
    assert torch.allclose(out.mask[:, 0], raw[:, :4].mean(dim=1))
    assert torch.allclose(out.mask[:, 511], raw[:, 2044:].mean(dim=1))


@pytest.mark.parametrize("backbone", ["resnet18", "mobilenet_v3_small", "mobilenet_v2"])
def test_backbone_mask_takes_the_clip_width(backbone):
    for clip_dim in (32, 48):  # 48 divides none of 512, 576, 1280: adaptive pooling
        model = CAFEModel(ModelConfig(backbone=backbone, clip_dim=clip_dim)).eval()
        with torch.no_grad():
            out = model(images(2), torch.randn(2, clip_dim))
        assert out.mask.shape == out.masked.shape == (2, clip_dim)
        assert out.logits.shape == (2, 7)


def test_clip_width_mismatch_is_a_user_error(resnet18_cafe):
    with pytest.raises(CafeError, match="CLIP width 512"):
        resnet18_cafe(images(), torch.randn(4, 32))


def test_config_round_trip_and_validation():
    config = ModelConfig(backbone="mobilenet_v2", clip_dim=768, variant="clip_finetune")
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(CafeError, match="variant"):
        ModelConfig(variant="cafe++")
    with pytest.raises(CafeError, match="resnet18"):
        CAFEModel(ModelConfig(backbone="vgg16"))  # the backbone registry checks the name as the model is built
    with pytest.raises(CafeError, match="unknown fields"):
        ModelConfig.from_dict({**config.to_dict(), "dropout": 0.5})


def test_training_step_updates_backbone_and_fc_not_clip():
    torch.manual_seed(0)
    model = CAFEModel(ModelConfig(clip_dim=32)).train()
    clip = torch.randn(4, 32)
    clip_before = clip.clone()
    conv_before = model.backbone.conv1.weight.detach().clone()
    fc_before = model.fc.weight.detach().clone()
    out = model(images(), clip)
    parts = losses.total_loss(out.logits, torch.tensor([0, 1, 2, 6]), out.masked)
    parts.total.backward()
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    assert model.fc.weight.grad.abs().sum() > 0
    torch.optim.Adam(model.parameters(), lr=1e-2).step()
    assert not torch.equal(model.backbone.conv1.weight, conv_before)
    assert not torch.equal(model.fc.weight, fc_before)
    assert clip.grad is None and torch.equal(clip, clip_before)


@pytest.fixture(scope="module")
def source_resnet18() -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    return tvm.resnet18(weights=None).state_dict()  # with its 1000-way fc


def assert_same_weights(backbone: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_load_msceleb_checkpoint(tmp_path, source_resnet18):
    path = tmp_path / "resnet18_msceleb.pth"
    wrapped = {"module." + k: v for k, v in source_resnet18.items()}
    torch.save({"state_dict": wrapped, "epoch": 30}, path)
    backbone = build_backbone("resnet18")
    report = load_backbone_weights(backbone, str(path))
    assert_same_weights(backbone, source_resnet18)
    assert sorted(report.unexpected) == ["fc.bias", "fc.weight"]
    assert report.missing == [] and report.mismatched == []
    assert len(report.loaded) == len(backbone.state_dict())
    assert report.source == str(path) and "loaded" in report.summary()


def test_load_plain_and_safetensors_state_dicts(tmp_path, source_resnet18):
    plain, safe = tmp_path / "imagenet.pth", tmp_path / "weights.safetensors"
    torch.save(source_resnet18, plain)
    save_file({k: v.contiguous() for k, v in source_resnet18.items()}, str(safe))
    for path in (plain, safe):
        backbone = build_backbone("resnet18")
        load_backbone_weights(backbone, str(path))
        assert_same_weights(backbone, source_resnet18)


def test_shape_mismatch_is_skipped_and_listed(tmp_path, source_resnet18):
    path = tmp_path / "odd.pth"
    torch.save({**source_resnet18, "conv1.weight": torch.zeros(64, 1, 7, 7)}, path)
    backbone = build_backbone("resnet18")
    before = backbone.conv1.weight.detach().clone()
    report = load_backbone_weights(backbone, str(path))
    assert report.mismatched == ["conv1.weight"]
    assert torch.equal(backbone.conv1.weight, before)
    assert torch.equal(backbone.layer4[1].conv2.weight, source_resnet18["layer4.1.conv2.weight"])


def test_unusable_files_raise(tmp_path):
    backbone = build_backbone("resnet18")
    wrong = tmp_path / "wrong.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, wrong)
    with pytest.raises(CafeError, match="none of the 1 tensors"):
        load_backbone_weights(backbone, str(wrong))
    pickled = tmp_path / "pickled.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(1)}, "args": argparse.Namespace(a=1)},
               pickled)
    with pytest.raises(CafeError, match="re-save"):
        load_backbone_weights(backbone, str(pickled))
    with pytest.raises(CafeError, match="not found"):
        load_backbone_weights(backbone, str(tmp_path / "missing.pth"))


def test_none_keeps_random_init():
    backbone = build_backbone("resnet18")
    before = backbone.conv1.weight.detach().clone()
    report = load_backbone_weights(backbone, "none")
    assert report.loaded == [] and "conv1.weight" in report.missing
    assert "random" in report.summary()
    assert torch.equal(backbone.conv1.weight, before)


def test_imagenet_offline_asks_for_a_local_file(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tvm._api, "load_state_dict_from_url", offline)
    model = CAFEModel(ModelConfig())
    with pytest.raises(CafeError, match="local weights file"):
        model.load_backbone("imagenet")
