"""CLIP run on every batch instead of read from the cache: ``--online-clip``, ``--bgr-targets``, predict."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import CafeError
from .cache import Fingerprint
from .clip import ClipSpec, LoadedClip, load_clip


def clip_for(fingerprint: Fingerprint, weights_file: str | None, device, *, images: bool = True,
             official_fp16: bool = False) -> LoadedClip:
    """The CLIP a cache was made with (for --online-clip, --bgr-targets, predict; ``images=False``: text only).

    ``official_fp16``: on CUDA keep CLIP's weights in fp16, as the official code does when it runs CLIP
    on every batch (:func:`online_features` casts the input and returns fp32 features).
    """
    if images and fingerprint.preprocess != "official":
        raise CafeError("online CLIP reproduces the official input only; this cache used --preprocess "
                        f"{fingerprint.preprocess}. Re-extract with --preprocess official.")
    if fingerprint.random_weights:
        spec = ClipSpec(model=fingerprint.model, random_weights=True, seed=fingerprint.seed,
                        activation=fingerprint.activation)
    elif fingerprint.weights.startswith("pretrained:"):
        spec = ClipSpec(model=fingerprint.model, pretrained=fingerprint.weights.split(":", 1)[1],
                        activation=fingerprint.activation)
    else:
        if not weights_file:
            raise CafeError(f"the cache was made from the CLIP file {fingerprint.weights[5:]}; pass it again "
                            "with --clip-weights FILE to run CLIP online.")
        spec = ClipSpec(model=fingerprint.model, weights=weights_file, activation=fingerprint.activation)
    clip = load_clip(spec, device)
    if official_fp16 and torch.device(device).type == "cuda":
        clip.model.half()  # the official code keeps CLIP's weights in fp16 on CUDA; features come back fp32
    if fingerprint.weights_sha256 and clip.info.sha256 != fingerprint.weights_sha256:
        raise CafeError(f"--clip-weights {weights_file} is not the file the cache was made with (sha256 differs).")
    return clip


def online_features(clip: LoadedClip, images: torch.Tensor) -> torch.Tensor:
    """CLIP on the same normalised tensor the mask branch sees (the official code's input)."""
    if images.shape[-1] != clip.image_size:
        images = F.interpolate(images, size=(clip.image_size,) * 2, mode="bilinear", antialias=True,
                               align_corners=False)
    return clip.encode(images.to(next(clip.model.parameters()).dtype)).float()
