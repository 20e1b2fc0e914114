"""Grad-CAM (Selvaraju et al. 2017) of any layer of a model: the maps of the paper's Fig. 4.

Computation only; :func:`cafe_cache.figures.plot_gradcam_grid` draws them and :mod:`cafe_cache.report`
picks the layer and the images.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def grad_cam(model: torch.nn.Module, target_layer: torch.nn.Module,
             forward: Callable[[], torch.Tensor], class_idx: torch.Tensor,
             size: tuple[int, int]) -> np.ndarray:
    """Grad-CAM maps (B, H, W) in [0, 1] for ``class_idx`` at ``target_layer``'s output.

    ``forward()`` runs the model on the batch and returns logits (B, C); it is a closure so
    any wiring (CAFE feeds cached CLIP features and images to different branches) works.
    The map is ReLU(sum_k w_k A_k) with w_k the spatial mean of d logit / d A_k, upsampled
    bilinearly to ``size`` and divided by its maximum per image (all zeros stays zeros).
    Put the model in eval mode first: in train mode batch norm couples the images.
    Parameter gradients are left untouched (gradients are taken w.r.t. the activation only).
    """
    if not any(m is target_layer for m in model.modules()):
        raise ValueError("target_layer is not a submodule of model")
    captured: list[torch.Tensor] = []

    def keep_output(_module, _inputs, output):
        # A frozen branch gives an output without a graph; a leaf copy makes it differentiable.
        if not output.requires_grad:
            output = output.detach().requires_grad_(True)
        captured.append(output)
        return output

    handle = target_layer.register_forward_hook(keep_output)
    try:
        with torch.enable_grad():
            logits = forward()
    finally:
        handle.remove()
    if len(captured) != 1:
        raise ValueError(f"target_layer ran {len(captured)} times in forward(); expected once")
    activation = captured[0]
    if activation.ndim != 4:
        raise ValueError(f"target_layer output must be (B, C, h, w); got {tuple(activation.shape)}")

    idx = torch.as_tensor(class_idx, device=logits.device).long().reshape(-1, 1)
    score = logits.gather(1, idx).sum()
    (grads,) = torch.autograd.grad(score, activation)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation).sum(dim=1, keepdim=True)).detach()
    cam = torch.nn.functional.interpolate(cam.float(), size=tuple(size), mode="bilinear",
                                          align_corners=False)[:, 0]
    peak = cam.flatten(1).amax(dim=1).clamp_min(1e-12)[:, None, None]
    return (cam / peak).cpu().numpy()
