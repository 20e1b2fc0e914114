"""The model: CAFE (:mod:`.cafe`) and its configuration (:mod:`.config`), the variant registry (the paper's
method and its ablations, :mod:`.variants`), the mask-branch backbones, their weight loading and Grad-CAM
layers (:mod:`.backbones`), the paper's losses, one function per term, and the loss-term registry
(:mod:`.losses`, eqs. 3-9). :mod:`.config` and :mod:`.variants` load without torch."""
