"""The ``open_clip`` extractor (bare ``--model`` names and ``open_clip:NAME``): the frozen CLIP image tower,
never falling back to random weights.

open_clip quietly builds a randomly initialised model when ``pretrained`` is neither a known tag
nor an existing file; :func:`load_clip` checks both first, so random weights only ever come from
an explicit ``random_weights=True``. Hub weights come from the local Hugging Face cache when they are
there, and fail at once in one line when they are not and the hub cannot be reached (:mod:`.hub`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import warnings
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

import open_clip
import torch

from ..errors import CafeError
from ..options import DEFAULT_PRETRAINED
from .extractor import canonical_model
from .hub import first_line, forced_offline, hub_file, quiet_hub, url_reachable_or_fail
from .weights import (  # defined apart from open_clip (light imports)
    ClipSpec,
    Pretrained,
    RandomInit,
    WeightsFile,
    WeightsInfo,
)

CONFIG_DIR = Path(__file__).parent / "model_configs"  # cafe's own configs (e.g. the tiny test model)
open_clip.add_model_config(CONFIG_DIR)

ACTIVATIONS = ("auto", "quickgelu", "gelu")  # --activation; auto: what the weights were trained with


@dataclass
class LoadedClip:
    model: torch.nn.Module  # the full open_clip model (image tower used for features)
    info: WeightsInfo
    image_size: int
    embed_dim: int
    mean: tuple[float, float, float]  # CLIP's own normalisation (for --preprocess clip)
    std: tuple[float, float, float]
    interpolation: str
    resize_mode: str
    crop_pct: float = 1.0  # CLIP's own transform: shorter side to S, centre crop S

    @torch.no_grad()  # not inference_mode: --online-clip feeds these features into autograd
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Raw (not L2-normalised) image features, as CAFE uses them."""
        return self.model.encode_image(images, normalize=False)

    def image_tower(self) -> torch.nn.Module:
        """``model.visual``: images -> the raw features of :meth:`encode`."""
        return self.model.visual

    def transform(self, preprocess: str) -> str | None:
        """Nothing beyond the preprocessing's name (open_clip caches never recorded more)."""
        return None


def check_name(name: str) -> None:
    """Refuse a model open_clip does not know, in one line."""
    _check_model_name(name)


def load(spec: ClipSpec, device: str | torch.device = "cpu", preprocess: str = "official") -> LoadedClip:
    """The extractor registry's entry (:mod:`.extractor`): ``open_clip:NAME`` is ``NAME``."""
    return load_clip(replace(spec, model=canonical_model(spec.model)), device)


def official_activation(model: str, pretrained: str | None = DEFAULT_PRETRAINED) -> str:
    """The MLP activation ``model``'s weights were trained with: ``quickgelu`` or ``gelu``.

    OpenAI's CLIP (and the official CAFE code) use QuickGELU, x * sigmoid(1.702 x); open_clip's plain
    configs (``ViT-B-32``) build GELU even with the ``openai`` tag and only log a warning. The answer
    comes from the pretrained tag's own ``quick_gelu`` flag: the given tag, or, for a file or random
    weights, the model's ``openai`` tag (so the default ViT-B-32 is always built as OpenAI's CLIP).
    ``-quickgelu`` model names are QuickGELU by their config.
    """
    if model.endswith("-quickgelu"):
        return "quickgelu"
    cfg = open_clip.get_pretrained_cfg(model, pretrained or DEFAULT_PRETRAINED) or {}
    return "quickgelu" if cfg.get("quick_gelu") else "gelu"


def resolve_activation(spec: ClipSpec) -> str:
    """``spec.activation``, with ``auto`` resolved (see :func:`official_activation`)."""
    if spec.activation not in ACTIVATIONS:
        raise CafeError(f"--activation {spec.activation!r}: choose from {', '.join(ACTIVATIONS)}.")
    file_or_random = spec.weights or spec.random_weights
    official = official_activation(spec.model, None if file_or_random else spec.pretrained)
    if spec.activation == "auto":
        return official
    if spec.model.endswith("-quickgelu") and spec.activation == "gelu":
        raise CafeError(f"--model {spec.model} is QuickGELU by name; drop --activation gelu or use the plain name.")
    return spec.activation


def _create(model: str, activation: str, pretrained: str | None = None) -> torch.nn.Module:
    """open_clip's model with the activation asked for (``-quickgelu`` configs carry it already)."""
    quick = activation == "quickgelu" and not model.endswith("-quickgelu")
    if pretrained:
        return open_clip.create_model(model, pretrained=pretrained, force_quick_gelu=quick)
    # random or file weights: cafe says which itself (the RANDOM WEIGHTS banner, the file's name), so
    # open_clip's "No pretrained weights loaded ... initialized randomly" is noise, and false for a file
    quiet = _DropMessage("No pretrained weights loaded")
    logging.getLogger().addFilter(quiet)
    try:
        return open_clip.create_model(model, pretrained=None, force_quick_gelu=quick)
    finally:
        logging.getLogger().removeFilter(quiet)


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def is_torchscript_archive(path: Path) -> bool:
    """OpenAI's own ``ViT-B-32.pt`` files are TorchScript archives: a zip with ``constants.pkl`` and ``code/``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(name.endswith("/constants.pkl") for name in z.namelist())


def _load_file(model: torch.nn.Module, path: Path) -> None:
    """Weights from a local file into ``model`` (strict), in any layout open_clip reads.

    ``torch.load`` refuses TorchScript archives with ``weights_only=True``; for them it hands the file
    to ``torch.jit.load``, which reads tensors and TorchScript code, never pickled Python objects, so
    ``weights_only=False`` is used for archives only.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's "looks like a TorchScript archive" and jit deprecation notes
        open_clip.load_checkpoint(model, str(path), strict=True, weights_only=not is_torchscript_archive(path))


def _check_model_name(model: str) -> None:
    if model not in open_clip.list_models():
        raise CafeError(f"unknown CLIP model {model!r}. open_clip knows e.g. ViT-B-32, ViT-B-16, ViT-L-14 "
                        "(full list: python -c 'import open_clip; print(open_clip.list_models())').")


def _how_to_get_weights(model: str) -> str:
    tags = open_clip.list_pretrained_tags_by_model(model)
    shown = ", ".join(tags[:5]) + (", ..." if len(tags) > 5 else "") if tags else "none"
    return (f"Give weights one of three ways: --pretrained TAG with internet or a filled HF/open_clip cache "
            f"(tags for {model}: {shown}), "
            f"--weights FILE with a local checkpoint (e.g. the open_clip/OpenAI ViT-B-32 .pt or .bin), or "
            f"--random-weights for a smoke test only (features are then meaningless).")


def load_clip(spec: ClipSpec, device: str | torch.device = "cpu") -> LoadedClip:
    """Build the CLIP model named by ``spec`` with its weights, frozen and in eval mode."""
    _check_model_name(spec.model)
    act = resolve_activation(spec)
    if spec.random_weights:
        if spec.weights:
            raise CafeError("--random-weights and --weights exclude each other; pass one.")
        with torch.random.fork_rng(devices=[]):  # seeded, without disturbing the caller's RNG
            torch.manual_seed(spec.seed)
            model = _create(spec.model, act)
        info = WeightsInfo(spec.model, RandomInit(spec.seed), act)
    elif spec.weights:
        path = Path(spec.weights).expanduser()
        if not path.is_file():
            raise CafeError(f"weights file not found: {path}. " + _how_to_get_weights(spec.model))
        model = _create(spec.model, act)
        try:
            _load_file(model, path)
        except Exception as e:  # open_clip raises RuntimeError/KeyError/pickle errors for a wrong file
            raise CafeError(f"{path}: not a checkpoint of {spec.model} ({first_line(e)}). "
                            "Check --model matches the file.") from e
        info = WeightsInfo(spec.model, WeightsFile(path.name, sha256_file(path)), act)
    elif spec.pretrained:
        model = _pretrained(spec.model, spec.pretrained, act)
        info = WeightsInfo(spec.model, Pretrained(spec.pretrained), act)
    else:
        raise CafeError("no CLIP weights given. " + _how_to_get_weights(spec.model))

    model = model.to(device).eval().requires_grad_(False)
    cfg = open_clip.get_model_preprocess_cfg(model)
    size = cfg.get("size", model.visual.image_size)
    size = size[0] if isinstance(size, (tuple, list)) else size
    return LoadedClip(
        model=model, info=info, image_size=int(size), embed_dim=_embed_dim(model, int(size), device),
        mean=tuple(cfg["mean"]), std=tuple(cfg["std"]),
        interpolation=cfg.get("interpolation", "bicubic"), resize_mode=cfg.get("resize_mode", "shortest"))


def _pretrained(model: str, tag: str, activation: str) -> torch.nn.Module:
    """open_clip's ``model`` with the weights of ``tag``: from the local caches without touching the network,
    else downloaded; a cache miss without a reachable server fails at once in one line."""
    cfg = open_clip.get_pretrained_cfg(model, tag)
    how = _how_to_get_weights(model)
    if not cfg:
        raise CafeError(f"{model} has no pretrained tag {tag!r}. " + how)
    what = f"CLIP {model} weights {tag!r}"
    offline = False
    if cfg.get("hf_hub"):
        repo, filename = os.path.split(cfg["hf_hub"])
        hub_file(repo, _hub_names(filename), what, how)  # cached, or downloaded now
        offline = True  # open_clip finds the file in the cache: no request needed
    elif cfg.get("url") and not _url_cached(cfg["url"]):
        url_reachable_or_fail(cfg["url"], what, how)
    try:
        with quiet_hub(), forced_offline() if offline else contextlib.nullcontext():
            return _create(model, activation, tag)
    except Exception as e:  # download or load failures: RuntimeError/OSError/HF errors
        raise CafeError(f"could not load {what} ({first_line(e)}). " + how) from e


def _hub_names(filename: str) -> list[str]:
    """The files open_clip tries for an ``hf_hub`` entry, in its order (safetensors first)."""
    from open_clip.pretrained import HF_WEIGHTS_NAME, _get_safe_alternatives

    filename = filename or HF_WEIGHTS_NAME
    return [*_get_safe_alternatives(filename), filename]


def _url_cached(url: str) -> bool:
    """Whether open_clip's own download folder (``~/.cache/clip``) holds the file of ``url``."""
    return (Path("~/.cache/clip").expanduser() / os.path.basename(url)).is_file()


def _embed_dim(model: torch.nn.Module, size: int, device) -> int:
    dim = getattr(model.visual, "output_dim", None)
    if dim:
        return int(dim)
    with torch.inference_mode():
        return int(model.encode_image(torch.zeros(1, 3, size, size, device=device)).shape[-1])
