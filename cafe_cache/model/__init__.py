"""The model: CAFE and its ablation variants (:mod:`.cafe`), the mask-branch backbones and their
weight loading (:mod:`.backbones`), the paper's losses, one function per term (:mod:`.losses`, eqs. 3-9)."""
