"""The frozen extractor run on every batch instead of read from the cache: ``--online-clip``, ``--bgr-targets``,
predict, export. Whatever the cache was made with (open_clip or timm, :mod:`.extractor`) is rebuilt from its
fingerprint."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import CafeError
from .extractor import FeatureExtractor, display_name, load_extractor
from .fingerprint import Fingerprint
from .weights import ClipSpec, Pretrained, RandomInit


def spec_of(fingerprint: Fingerprint, weights_file: str | None) -> ClipSpec:
    """The extractor spec that rebuilds a cache's model and weights (a file's weights need ``weights_file``)."""
    source = fingerprint.source
    if isinstance(source, RandomInit):
        return ClipSpec(model=fingerprint.model, random_weights=True, seed=source.seed,
                        activation=fingerprint.activation)
    if isinstance(source, Pretrained):
        return ClipSpec(model=fingerprint.model, pretrained=source.tag, activation=fingerprint.activation)
    if not weights_file:
        raise CafeError(f"the cache was made from the {display_name(fingerprint.model)} weights file "
                        f"{source.name}; pass it again with --clip-weights FILE to run it online.")
    return ClipSpec(model=fingerprint.model, weights=weights_file, activation=fingerprint.activation)


def clip_for(fingerprint: Fingerprint, weights_file: str | None, device, *, images: bool = True,
             official_fp16: bool = False) -> FeatureExtractor:
    """The extractor a cache was made with (for --online-clip, --bgr-targets, predict; ``images=False``: CLIP's
    text tower only).

    ``official_fp16``: on CUDA keep the weights in fp16, as the official code does when it runs CLIP
    on every batch (:func:`online_features` casts the input and returns fp32 features).
    """
    if images and fingerprint.preprocess != "official":
        raise CafeError(f"running {display_name(fingerprint.model)} online reproduces the official input only; this "
                        f"cache used --preprocess {fingerprint.preprocess}. Re-extract with --preprocess official.")
    clip = load_extractor(spec_of(fingerprint, weights_file), device, fingerprint.preprocess)
    if official_fp16 and torch.device(device).type == "cuda":
        clip.model.half()  # the official code keeps CLIP's weights in fp16 on CUDA; features come back fp32
    if fingerprint.weights_sha256 and clip.info.sha256 != fingerprint.weights_sha256:
        raise CafeError(f"--clip-weights {weights_file} is not the file the cache was made with (sha256 differs).")
    if images and clip.image_size != fingerprint.image_size:
        raise CafeError(f"{display_name(fingerprint.model)} now runs at {clip.image_size} px, the cache was made at "
                        f"{fingerprint.image_size} px; re-extract the cache with this cafe.")
    return clip


def online_features(clip: FeatureExtractor, images: torch.Tensor) -> torch.Tensor:
    """The extractor on the same normalised tensor the mask branch sees (the official code's input)."""
    if images.shape[-1] != clip.image_size:
        images = F.interpolate(images, size=(clip.image_size,) * 2, mode="bilinear", antialias=True,
                               align_corners=False)
    return clip.encode(images.to(next(clip.model.parameters()).dtype)).float()
