"""Worker for tests/test_distributed.py, run by torchrun (or plainly, as one process).

    python grad_step.py OUT.pt STEPS DTYPE

Builds the tiny CAFE model, prepares it for the ranks as training does
(:func:`cafe_cache.distributed.data_parallel`) and takes STEPS Adam steps on a fixed global batch
of 8 that every step draws afresh; rank r feeds rows [8r/W, 8(r+1)/W) of it. Rank 0 saves the
gradients of the first step and the final state.
"""

import sys

import torch

from cafe_cache.distributed import data_parallel, from_env, process_group, unwrap
from cafe_cache.model.cafe import CAFEModel
from cafe_cache.model.config import ModelConfig
from cafe_cache.model.losses import channel_drop_mask, total_loss

out, steps, dtype = sys.argv[1], int(sys.argv[2]), getattr(torch, sys.argv[3])
torch.set_num_threads(1)
torch.set_default_dtype(dtype)
ranks = from_env()
data = torch.Generator().manual_seed(0)
batch = 8
mine = slice(ranks.rank * batch // ranks.world, (ranks.rank + 1) * batch // ranks.world)
with process_group(torch.device("cpu"), ranks):
    torch.manual_seed(0)
    model = data_parallel(CAFEModel(ModelConfig("resnet18", clip_dim=32)), ranks, torch.device("cpu")).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    first = None
    for step in range(steps):
        images, feats = torch.randn(batch, 3, 32, 32, generator=data), torch.randn(batch, 32, generator=data)
        labels, drop = torch.arange(batch) % 7, channel_drop_mask(32, generator=data)
        out_ = model(images[mine], feats[mine])
        loss = total_loss(out_.logits, labels[mine], out_.masked, drop).total
        optimizer.zero_grad()
        loss.backward()
        if first is None:
            first = {k: p.grad.clone() for k, p in unwrap(model).named_parameters()}
        optimizer.step()
    if ranks.is_main:
        torch.save({"grads": first, "state": unwrap(model).state_dict()}, out)
