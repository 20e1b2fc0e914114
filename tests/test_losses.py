"""CAFE's losses against hand-computed values (eqs. 3-9)."""

import math

import pytest
import torch
import torch.nn.functional as F

from cafe_cache.errors import CafeError
from cafe_cache.model import losses
from cafe_cache.model.losses import (
    channel_drop_mask,
    classification_loss,
    diverse_loss,
    group_max_logits,
    separation_loss,
    total_loss,
)


def test_drop_mask_512_drops_10_per_group_of_73():
    mask = channel_drop_mask(512)
    assert mask.shape == (512,) and mask.dtype == torch.float32
    assert set(mask.tolist()) == {0.0, 1.0}
    zeros_per_group = (mask[:438].reshape(6, 73) == 0).sum(dim=1)
    assert zeros_per_group.tolist() == [10] * 6
    assert (mask[438:] == 0).sum() == 10  # group 6 places its 10 zeros among 74 positions, 511 included
    assert mask.sum() == 512 - 70


def test_drop_law_of_group_6_is_the_official_one():
    """Official Mask(): 10 zeros among positions 438..511; 511 is never pooled, so group 6 loses 10
    pooled channels with p = 64/74 and 9 otherwise (mean 9.865), and 511 is zero with p = 10/74."""
    g = torch.Generator().manual_seed(0)
    masks = torch.stack([channel_drop_mask(512, generator=g) for _ in range(20000)])
    pooled_drops = (masks[:, 438:511] == 0).sum(dim=1)
    assert set(pooled_drops.unique().tolist()) == {9, 10}
    p10 = (pooled_drops == 10).double().mean().item()
    se = math.sqrt(64 / 74 * 10 / 74 / len(masks))
    assert abs(p10 - 64 / 74) < 4 * se  # 4 standard errors: fails for "always 10" (p = 1) and uniform laws
    assert abs((masks[:, 511] == 0).double().mean().item() - 10 / 74) < 4 * se
    assert ((masks[:, :438].reshape(-1, 6, 73) == 0).sum(dim=2) == 10).all()  # groups 0-5: always 10


def test_drop_mask_draws_differ_and_seed_repeats():
    assert not torch.equal(channel_drop_mask(512), channel_drop_mask(512))
    first = channel_drop_mask(512, generator=torch.Generator().manual_seed(3407))
    again = channel_drop_mask(512, generator=torch.Generator().manual_seed(3407))
    assert torch.equal(first, again)


def test_drop_mask_small_width():
    # 23 channels, 7 classes: groups of k = 3, channels 21 and 22 in no group but placed with the
    # last group's draw (as 511 for 512); default drop = max(1, round(3 * 10 / 73)) = 1 per group.
    mask = channel_drop_mask(23)
    assert (mask[:18].reshape(6, 3) == 0).sum(dim=1).tolist() == [1] * 6
    assert (mask[18:] == 0).sum() == 1
    assert mask.sum() == 16
    two = channel_drop_mask(23, drop=2)
    assert (two[:18].reshape(6, 3) == 0).sum(dim=1).tolist() == [2] * 6
    assert (two[18:] == 0).sum() == 2
    assert channel_drop_mask(21, drop=0).sum() == 21


def test_drop_mask_bad_arguments():
    with pytest.raises(CafeError, match="group width 3"):
        channel_drop_mask(21, drop=4)
    with pytest.raises(CafeError, match="at least one channel per class"):
        channel_drop_mask(5)


def test_group_max_logits_512_by_hand():
    features = torch.zeros(1, 512)
    for g in range(7):
        features[0, g * 73 + (g * 11) % 73] = g + 1.0
    features[0, 511] = 1000.0  # channel 511 is never pooled
    assert group_max_logits(features).tolist() == [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]


def test_group_max_logits_equals_official_max_pool():
    features = torch.randn(3, 512)
    official = F.max_pool1d(features.unsqueeze(1), kernel_size=73, stride=73).squeeze(1)
    assert torch.equal(group_max_logits(features), official)


def test_group_max_logits_small_width():
    features = torch.arange(21.0).reshape(1, 21)
    assert group_max_logits(features).tolist() == [[2.0, 5.0, 8.0, 11.0, 14.0, 17.0, 20.0]]


def test_diverse_loss_by_hand():
    assert diverse_loss(torch.ones(2, 512)).item() == pytest.approx(1 - 1 / 73)
    # Sample 0: every group max is 73 (ratio 1); sample 1: all zero -> 1 - mean(1,..,0,..) = 0.5.
    features = torch.zeros(2, 512)
    features[0, :511] = 73.0
    features[1, 511] = 1e6  # not pooled
    assert diverse_loss(features).item() == pytest.approx(0.5)
    # k = 3 normalisation: group maxima 3, 6, 0, 0, 0, 0, 0 -> 1 - (1 + 2) / 7.
    small = torch.zeros(1, 21)
    small[0, 1], small[0, 5] = 3.0, 6.0
    assert diverse_loss(small).item() == pytest.approx(1 - 3 / 7)


def test_separation_loss_is_ce_of_group_maxima():
    masked = torch.zeros(1, 21)
    masked[0, 0] = 2.0  # logits (2, 0, 0, 0, 0, 0, 0)
    expected = -math.log(math.exp(2) / (math.exp(2) + 6))
    loss = separation_loss(masked, torch.tensor([0]), torch.ones(21))
    assert loss.item() == pytest.approx(expected)
    wrong_label = separation_loss(masked, torch.tensor([3]), torch.ones(21))
    assert wrong_label.item() == pytest.approx(-math.log(1 / (math.exp(2) + 6)))


def test_dropping_the_group_max_falls_back_to_the_next():
    masked = torch.zeros(1, 21)
    masked[0, :3] = torch.tensor([1.0, 5.0, 3.0])
    drop = torch.ones(21)
    drop[1] = 0.0
    assert group_max_logits(masked * drop)[0, 0] == 3.0
    expected = -math.log(math.exp(3) / (math.exp(3) + 6))
    assert separation_loss(masked, torch.tensor([0]), drop).item() == pytest.approx(expected)


def test_classification_loss_uniform_logits():
    loss = classification_loss(torch.zeros(2, 7), torch.tensor([0, 6]))
    assert loss.item() == pytest.approx(math.log(7))


def test_total_loss_weights_and_parts():
    torch.manual_seed(0)
    logits, labels = torch.randn(4, 7), torch.tensor([0, 1, 2, 3])
    masked, drop = torch.rand(4, 512), channel_drop_mask(512)
    parts = total_loss(logits, labels, masked, drop)
    assert list(parts.terms) == ["ce", "sep", "div"]
    assert parts.terms["sep"] == separation_loss(masked, labels, drop)
    assert parts.terms["div"] == diverse_loss(masked)
    expected = parts.terms["ce"] + 1.5 * parts.terms["sep"] + 5 * parts.terms["div"]
    assert parts.total.item() == pytest.approx(expected.item())


def test_zero_weights_skip_terms(monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("a term with weight 0 was computed")

    monkeypatch.setattr(losses, "channel_drop_mask", must_not_run)
    monkeypatch.setattr(losses, "separation_loss", must_not_run)
    logits, labels, masked = torch.randn(4, 7), torch.tensor([0, 1, 2, 3]), torch.rand(4, 512)
    parts = total_loss(logits, labels, masked, w_sep=0)
    assert list(parts.terms) == ["ce", "div"]
    monkeypatch.setattr(losses, "diverse_loss", must_not_run)
    parts = total_loss(logits, labels, masked, w_sep=0, w_div=0)
    assert list(parts.terms) == ["ce"] and parts.total == parts.terms["ce"]


def test_total_loss_without_mask():
    logits, labels = torch.randn(4, 7), torch.tensor([0, 1, 2, 3])
    with pytest.raises(CafeError, match="weights to 0"):
        total_loss(logits, labels, None)
    assert list(total_loss(logits, labels, None, w_sep=0, w_div=0).terms) == ["ce"]
