"""The ``timm`` extractor: ``--model timm:NAME`` is any timm image model, frozen, its pooled pre-logits features
(``num_classes=0``) as the cached features (DINOv2, EVA-02, SigLIP, ConvNeXt, ...).

Weights, exactly one of: the model's hub weights (``NAME`` with its tag, e.g.
``vit_small_patch14_dinov2.lvd142m``) from the local Hugging Face cache, downloaded only when missing and
the hub answers (:mod:`.hub`); ``--weights FILE`` (any checkpoint timm's own loader reads, sha256 recorded);
or ``--random-weights`` (seeded, marked everywhere). Both file and hub weights go through
``timm.create_model(NAME, pretrained=True, pretrained_cfg_overlay=dict(file=...))``, timm's own loader
(its checkpoint filter converts original checkpoints and resamples position embeddings).

Preprocessing: ``official`` (default, CAFE's input) feeds 224x224 squashed images with the ImageNet
mean/std; a ViT made for another size (DINOv2: 518) is built at 224 (``img_size=224``, its position
embeddings resampled on load). ``model`` uses the model's ``pretrained_cfg``: shorter side to
S / crop_pct with its interpolation, centre crop S, its mean/std. Either is named in the fingerprint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import timm
import torch

from ..errors import CafeError
from .clip import sha256_file
from .extractor import canonical_model, split_model
from .hub import first_line, hub_file
from .weights import ClipSpec, Pretrained, RandomInit, WeightsFile, WeightsInfo

OFFICIAL_SIZE = 224  # CAFE's input side (the official code's Resize((224, 224)))
ACTIVATION = "native"  # timm models are built as their config says; nothing to choose
HUB_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm's hub loader tries, in its order


@dataclass
class LoadedTimm:
    model: torch.nn.Module  # the timm model, classifier removed (num_classes=0)
    info: WeightsInfo
    image_size: int
    embed_dim: int
    mean: tuple[float, float, float]  # the pretrained_cfg's (``--preprocess model``)
    std: tuple[float, float, float]
    interpolation: str
    crop_pct: float
    native_size: int  # the pretrained_cfg's input side

    @torch.no_grad()  # not inference_mode: --online-clip feeds these features into autograd
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled pre-logits features (B, D)."""
        return self.model(images)

    def image_tower(self) -> torch.nn.Module:
        return self.model

    def transform(self, preprocess: str) -> str:
        """The preprocessing recorded in the fingerprint."""
        if preprocess == "official":
            built = "" if self.image_size == self.native_size else f", run at {self.image_size} px " \
                f"(native {self.native_size})"
            return f"resize {self.image_size}x{self.image_size} bilinear, ImageNet mean/std{built}"
        return (f"timm pretrained_cfg: shorter side to {resize_side(self.image_size, self.crop_pct)} "
                f"{self.interpolation}, centre crop {self.image_size}, mean {list(self.mean)}, std {list(self.std)}")


def resize_side(size: int, crop_pct: float) -> int:
    """timm's eval resize: the shorter side to floor(size / crop_pct) before the centre crop."""
    return math.floor(size / crop_pct)


def check_name(name: str) -> None:
    """Refuse a name timm does not know, in one line."""
    if not timm.is_model(name):
        raise CafeError(f"unknown timm model {name!r}. Examples: vit_small_patch14_dinov2.lvd142m, "
                        "vit_base_patch14_dinov2.lvd142m, eva02_base_patch14_224.mim_in22k, "
                        "vit_base_patch16_siglip_224.webli (list: python -c 'import timm; "
                        "print(timm.list_pretrained())').")


def _how(name: str) -> str:
    return (f"Give weights one of three ways: the hub weights of timm:{name} in your Hugging Face cache (or with "
            "internet), --weights FILE with a local checkpoint of that model, or --random-weights for a smoke test "
            "only (features are then meaningless).")


def _create(name: str, preprocess: str, file: Path | None) -> torch.nn.Module:
    """``timm.create_model`` without a classifier, with the weights of ``file`` (None: random); for ``official``
    a model made for another size is built for 224 px when it takes an ``img_size`` (ViTs; convolutional
    networks take any size as they are)."""
    kw: dict = {"num_classes": 0}
    cfg = timm.models.get_pretrained_cfg(name)
    if file is not None:
        kw.update(pretrained=True, pretrained_cfg_overlay={"file": str(file)})
    if preprocess == "official" and cfg is not None and cfg.input_size[-1] != OFFICIAL_SIZE:
        try:
            return timm.create_model(name, img_size=OFFICIAL_SIZE, **kw)
        except TypeError as e:  # no img_size argument: a model without a built-in input size
            if "img_size" not in str(e):
                raise
    return timm.create_model(name, **kw)


def load(spec: ClipSpec, device: str | torch.device = "cpu", preprocess: str = "official") -> LoadedTimm:
    """The timm model ``spec.model`` names, frozen, in eval mode on ``device`` (see the module docstring)."""
    name = split_model(spec.model)[1]
    check_name(name)
    if spec.activation not in ("auto", ACTIVATION):
        raise CafeError(f"--activation {spec.activation} is CLIP's; timm:{name} is built as its config says. Drop it.")
    model_id = canonical_model(spec.model)
    if spec.random_weights:
        if spec.weights:
            raise CafeError("--random-weights and --weights exclude each other; pass one.")
        with torch.random.fork_rng(devices=[]):  # seeded, without disturbing the caller's RNG
            torch.manual_seed(spec.seed)
            model = _create(name, preprocess, None)
        info = WeightsInfo(model_id, RandomInit(spec.seed), ACTIVATION)
    elif spec.weights:
        path = Path(spec.weights).expanduser()
        if not path.is_file():
            raise CafeError(f"weights file not found: {path}. " + _how(name))
        model = _load_file(name, preprocess, path)
        info = WeightsInfo(model_id, WeightsFile(path.name, sha256_file(path)), ACTIVATION)
    elif spec.pretrained:
        repo = _hub_repo(name)
        path = hub_file(repo, _hub_files(name), f"the timm:{name} weights", _how(name))
        model = _load_file(name, preprocess, path)
        info = WeightsInfo(model_id, Pretrained(repo), ACTIVATION)
    else:
        raise CafeError(f"no weights given for timm:{name}. " + _how(name))
    return _loaded(model, info, device, preprocess)


def _hub_repo(name: str) -> str:
    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not cfg.hf_hub_id:
        raise CafeError(f"timm:{name} has no Hugging Face hub weights; give a tag with hub weights (e.g. "
                        f"{name.split('.')[0]}.<tag>, see timm.list_pretrained()) or --weights FILE.")
    return cfg.hf_hub_id


def _hub_files(name: str) -> list[str]:
    cfg = timm.models.get_pretrained_cfg(name)
    return [cfg.hf_hub_filename] if cfg.hf_hub_filename else list(HUB_FILES)


def _load_file(name: str, preprocess: str, path: Path) -> torch.nn.Module:
    try:
        return _create(name, preprocess, path)
    except CafeError:
        raise
    except Exception as e:  # RuntimeError (shapes, missing keys), pickle/safetensors errors for a wrong file
        raise CafeError(f"{path}: not a checkpoint of timm:{name} ({first_line(e)}). Check --model matches "
                        "the file.") from e


def _loaded(model: torch.nn.Module, info: WeightsInfo, device, preprocess: str) -> LoadedTimm:
    model = model.to(device).eval().requires_grad_(False)
    cfg = model.pretrained_cfg
    native = int(cfg["input_size"][-1])
    size = OFFICIAL_SIZE if preprocess == "official" else native
    if not _takes(model, size):
        raise CafeError(f"timm:{info.model.split(':', 1)[1]} takes {native} px inputs only, not the official {size}: "
                        "extract it with --preprocess model (its own transform).")
    with torch.inference_mode():
        dim = int(model(torch.zeros(1, 3, size, size, device=device)).shape[-1])
    return LoadedTimm(model=model, info=info, image_size=size, embed_dim=dim, mean=tuple(cfg["mean"]),
                      std=tuple(cfg["std"]), interpolation=str(cfg.get("interpolation", "bicubic")),
                      crop_pct=float(cfg.get("crop_pct") or 1.0), native_size=native)


def _takes(model: torch.nn.Module, size: int) -> bool:
    """Whether ``model`` runs at ``size`` px: a ViT built for it, or a model without a fixed input size."""
    patch = getattr(model, "patch_embed", None)
    built = getattr(patch, "img_size", None)
    if built is None:
        return True  # convolutional: any size
    return tuple(built) == (size, size) or bool(getattr(patch, "dynamic_img_size", False))
