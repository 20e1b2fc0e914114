"""Mask-branch backbones: torchvision networks without their classifier, and their weights.

Each backbone maps images to a pooled (B, W) feature.  Its classifier is replaced by an
identity, so its state-dict keys are torchvision's own (``conv1.weight``, ``layer1.0...``) and
MS-Celeb (CAFE/EAC/SCN) or ImageNet checkpoints load into it directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torchvision.models as tvm
from safetensors.torch import load_file as load_safetensors
from torch import Tensor, nn

from ..errors import CafeError


@dataclass(frozen=True)
class BackboneSpec:
    factory: Callable[..., nn.Module]  # torchvision builder, called with weights=None
    head: str  # attribute holding the classifier, replaced by nn.Identity
    width: int  # W, width of the pooled feature once the head is gone
    imagenet: tvm.WeightsEnum  # torchvision ImageNet weights for source "imagenet"
    gradcam_layer: str  # the last convolutional stage (a submodule path): Grad-CAM's layer (CAFE Fig. 4)


BACKBONES: dict[str, BackboneSpec] = {
    # layer4 -> ReLU -> global average pool: values >= 0, so sigmoid(M) lies in [0.5, 1).
    "resnet18": BackboneSpec(tvm.resnet18, "fc", 512, tvm.ResNet18_Weights.IMAGENET1K_V1, "layer4"),
    "resnet50": BackboneSpec(tvm.resnet50, "fc", 2048, tvm.ResNet50_Weights.IMAGENET1K_V1, "layer4"),
    "mobilenet_v3_small": BackboneSpec(tvm.mobilenet_v3_small, "classifier", 576,
                                       tvm.MobileNet_V3_Small_Weights.IMAGENET1K_V1, "features.12"),
    "mobilenet_v2": BackboneSpec(tvm.mobilenet_v2, "classifier", 1280,
                                 tvm.MobileNet_V2_Weights.IMAGENET1K_V1, "features.18"),
}


def backbone_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise CafeError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


def build_backbone(name: str) -> nn.Module:
    """A randomly initialised backbone returning its pooled (B, W) feature."""
    spec = backbone_spec(name)
    net = spec.factory(weights=None)
    setattr(net, spec.head, nn.Identity())
    return net


def gradcam_layer(name: str, backbone: nn.Module) -> tuple[str, nn.Module]:
    """(path, module) of the Grad-CAM layer the registry names for the backbone ``name`` built as ``backbone``."""
    path = backbone_spec(name).gradcam_layer
    return path, backbone.get_submodule(path)


def reduce_width(features: Tensor, dim: int) -> Tensor:
    """Resize a (B, W) backbone feature to the CLIP width ``dim`` to serve as the mask logits.

    The paper's rule for ResNet-50 (2048 -> 512): when ``dim`` divides W, reshape to
    (B, dim, W // dim) and average the consecutive channels.  Otherwise adaptive average
    pooling over the channel axis, written as a product with its (W, dim) averaging matrix: the same
    numbers as ``F.adaptive_avg_pool1d`` (up to float rounding), and exportable to ONNX, which has no
    adaptive pooling to a size that does not divide the input (timm extractors: D = 384, 768, 1024).
    """
    batch, width = features.shape
    if width == dim:
        return features
    if width % dim == 0:
        return features.reshape(batch, dim, width // dim).mean(dim=2)
    return features @ adaptive_pool_matrix(width, dim, features.device, features.dtype)


def adaptive_pool_matrix(width: int, dim: int, device=None, dtype=torch.float32) -> Tensor:
    """(width, dim): column i averages channels floor(i W / dim) .. ceil((i + 1) W / dim) - 1, the bins of
    adaptive average pooling."""
    i = torch.arange(dim, device=device)
    start, end = (i * width) // dim, ((i + 1) * width + dim - 1) // dim
    j = torch.arange(width, device=device)[:, None]
    bins = ((j >= start) & (j < end)).to(dtype)
    return bins / bins.sum(0)


@dataclass
class LoadReport:
    """What ``load_backbone_weights`` did; the names are the backbone's own keys."""

    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # backbone keys absent from the file
    unexpected: list[str] = field(default_factory=list)  # file keys the backbone lacks (fc.*)
    mismatched: list[str] = field(default_factory=list)  # in both, shapes differ: skipped

    def summary(self) -> str:
        if self.source == "none":
            return "backbone: random initialisation (weights 'none')"
        text = f"backbone weights {self.source}: loaded {len(self.loaded)} tensors"
        for label, keys in (("kept random init", self.missing), ("unused", self.unexpected),
                            ("shape mismatch, skipped", self.mismatched)):
            if keys:
                text += f"; {label}: {len(keys)} ({_first(keys)})"
        return text


def _first(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


def load_backbone_weights(backbone: nn.Module, source: str, arch: str | None = None) -> LoadReport:
    """Initialise ``backbone`` from ``source`` and report which tensors were loaded.

    ``source`` is ``"none"`` (keep the random init), ``"imagenet"`` (torchvision's ImageNet
    weights for ``arch``, a BACKBONES name; needs internet or torch's download cache) or a local
    file: a torch checkpoint (``{'state_dict': ...}`` as MS-Celeb files, or a plain state dict;
    ``module.`` prefixes are stripped) or a ``.safetensors`` file.  Tensors the backbone lacks
    (the classifier ``fc.*``) and shape mismatches are skipped and listed; a CafeError is raised
    when no tensor matches at all, so a wrong file never silently leaves a random init.
    """
    if source == "none":
        return LoadReport(source, missing=list(backbone.state_dict()))
    if source == "imagenet":
        state = _imagenet_state_dict(arch)
    else:
        state = _read_state_dict(Path(source))
    return _apply_state_dict(backbone, state, source)


def _imagenet_state_dict(arch: str | None) -> dict[str, Tensor]:
    if arch is None:
        raise ValueError("load_backbone_weights(..., 'imagenet') needs arch, the backbone name")
    weights = backbone_spec(arch).imagenet
    try:
        return weights.get_state_dict(progress=False)
    except (OSError, RuntimeError) as err:  # no network (URLError is an OSError), bad download
        raise CafeError(f"could not get torchvision's {weights} weights ({err}); without internet, "
                        f"pass a local weights file (.pth or .safetensors) instead of "
                        f"'imagenet'") from err


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if not path.is_file():
        raise CafeError(f"backbone weights file {path} not found; pass a local .pth/.safetensors "
                        f"file, 'imagenet' or 'none'")
    try:
        if path.suffix == ".safetensors":
            obj = load_safetensors(str(path))
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load and safetensors raise many types for unreadable files
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CafeError(f"cannot read backbone weights {path} as a tensors-only checkpoint "
                        f"({reason}); if it pickles other objects, load it once in trusted Python "
                        f"and re-save its state dict: torch.save(state_dict, 'weights.pth')") from err
    if not isinstance(obj, dict):
        obj = {}
    if isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    tensors = {_strip_module(str(k)): v for k, v in obj.items() if isinstance(v, Tensor)}
    if not tensors:
        raise CafeError(f"{path} holds no state dict of tensors; save the backbone's weights with "
                        f"torch.save(model.state_dict(), path)")
    return tensors


def _strip_module(key: str) -> str:
    """Drop the ``module.`` prefix that DataParallel checkpoints carry."""
    return key.removeprefix("module.")


def _apply_state_dict(backbone: nn.Module, state: dict[str, Tensor], source: str) -> LoadReport:
    own = backbone.state_dict()
    report = LoadReport(source)
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
        elif value.shape != own[key].shape:
            report.mismatched.append(key)
        else:
            report.loaded.append(key)
    if not report.loaded:
        raise CafeError(f"none of the {len(state)} tensors in {source} match this backbone (file "
                        f"keys like {_first(list(state))}; expected keys like {_first(list(own))}): "
                        f"pass weights of the same architecture")
    backbone.load_state_dict({k: state[k] for k in report.loaded}, strict=False)
    report.missing = [k for k in own if k not in state]
    return report
