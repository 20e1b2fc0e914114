"""Stage two: train CAFE's mask branch against cached, frozen CLIP features.

:mod:`.model` holds the CAFE model and its ablation variants, :mod:`.backbones` the mask-branch
backbones and their weight loading, :mod:`.losses` the paper's losses (eqs. 3-9).
"""

from .backbones import BACKBONES, LoadReport, build_backbone, load_backbone_weights
from .losses import channel_drop_mask, total_loss
from .model import VARIANTS, CAFEModel, ModelConfig

__all__ = ["BACKBONES", "VARIANTS", "CAFEModel", "LoadReport", "ModelConfig", "build_backbone",
           "channel_drop_mask", "load_backbone_weights", "total_loss"]
