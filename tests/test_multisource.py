"""Training on several sources: the union's size and order, the draws of each --balance mode, per-source test
accuracies, the refusal of mixed fingerprints, and one source taking exactly the path it always took."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from cafe_cache import synth
from cafe_cache.distributed import Ranks
from cafe_cache.errors import CafeError
from cafe_cache.extract.reader import FeatureCache
from cafe_cache.history import EpochLog, history_to_json
from cafe_cache.run.config import TrainConfig
from cafe_cache.run.data import PairedSamples
from cafe_cache.train.loop import train
from cafe_cache.train.sources import BalancedSampler, UnionSamples, load_sources, make_sampler

from .conftest import make_cache

A, B = "synth-line", "synth-color"


@pytest.fixture(scope="module")
def caches(tmp_path_factory) -> Path:
    """Two synthetic domains of different sizes cached with the tiny random CLIP, and a third cache of the second
    domain whose fingerprint records another CLIP seed."""
    base = tmp_path_factory.mktemp("multi")
    data = base / "data"
    synth.write_rafdb(data / A, "line", 6, 2, size=32, seed=1)  # 42 train / 14 test
    synth.write_folder(data / B, "color", 2, 2, size=32, seed=2)  # 14 train / 14 test
    make_cache(data / A, base / "cache" / f"{A}.h5", dataset="rafdb", cache_name=A, batch_size=32)
    make_cache(data / B, base / "cache" / f"{B}.h5", cache_name=B, batch_size=32)
    make_cache(data / B, base / "other" / "odd.h5", cache_name="odd", batch_size=32, seed=9)
    return base / "cache"


def config(caches: Path, **kw) -> TrainConfig:
    base = dict(source=f"{A},{B}", cache_dir=str(caches), backbone_weights="none", epochs=1, batch_size=14,
                lr=1e-3, image_size=32, workers=0, seed=3)
    return TrainConfig(**{**base, **kw})


def test_union_holds_every_source_in_order(caches):
    data = load_sources(config(caches), torch.device("cpu"), log=lambda s: None)
    union = data.train_set
    parts = {n: FeatureCache(caches / f"{n}.h5").load("train") for n in (A, B)}
    assert isinstance(union, UnionSamples) and len(union) == 42 + 14 == len(parts[A].labels) + len(parts[B].labels)
    assert list(data.test_sets) == [A, B] and [len(t) for t in data.test_sets.values()] == [14, 14]
    for i, (source, j) in enumerate([(A, 0), (A, 41), (B, 0), (B, 13)]):
        index = {0: 0, 1: 41, 2: 42, 3: 55}[i]
        _, feature, label = union[index]
        assert label == parts[source].labels[j]
        view = feature.numpy()
        assert any(np.array_equal(view, parts[source].features[j, v]) for v in range(2))
    with pytest.raises(IndexError):
        union[56]


def test_mixed_fingerprints_are_refused_by_name(caches, tmp_path):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for name in (A, B):
        (mixed / f"{name}.h5").symlink_to(caches / f"{name}.h5")
    (mixed / "odd.h5").symlink_to(caches.parent / "other" / "odd.h5")
    refused = r"caches of odd and synth-line were extracted differently \(seed 9 vs 0: .*must share one extractor"
    with pytest.raises(CafeError, match=refused):
        load_sources(config(mixed, source=f"{A},odd"), torch.device("cpu"), log=lambda s: None)


def test_source_names_are_checked():
    with pytest.raises(CafeError, match="several distinct ones"):
        TrainConfig(source="a,a")
    with pytest.raises(CafeError, match="--balance 'sources'"):
        TrainConfig(source="a,b", balance="sources")
    with pytest.raises(CafeError, match="--root applies to a single --source"):
        TrainConfig(source="a,b", root="/data")
    assert TrainConfig(source=" a , b").source == "a,b" and TrainConfig(source="a,b").sources == ("a", "b")


# -- draws -------------------------------------------------------------------------------------------
BATCH, EPOCHS = 8, 200
SIGMAS = 5  # each member's draw count lies within 5 binomial standard deviations of its expectation


def batches(sampler: BalancedSampler, epoch: int) -> list[np.ndarray]:
    sampler.set_epoch(epoch)
    order = np.array(list(sampler))
    return [order[i:i + BATCH] for i in range(0, len(order), BATCH)]


def test_balance_domains_draws_each_source_equally_per_batch():
    domains = np.array([0] * 90 + [1] * 10)  # a large and a small source
    sampler = BalancedSampler(domains, seed=3)
    counts = np.zeros(100)
    for epoch in range(EPOCHS):
        for batch in batches(sampler, epoch):
            shares = np.bincount(domains[batch], minlength=2)
            assert abs(shares[0] - shares[1]) <= 1  # every batch: the two sources in equal shares (within one)
            np.add.at(counts, batch, 1)
    assert len(list(sampler)) == 100  # an epoch draws as many samples as the union holds
    per_member = {0: counts[:90], 1: counts[90:]}
    for source, got in per_member.items():  # uniform within a source: 50 draws per epoch spread over its members
        draws, p = EPOCHS * 50, 1 / len(got)
        expected, sd = draws * p, (draws * p * (1 - p)) ** 0.5
        assert got.sum() == draws and np.all(np.abs(got - expected) < SIGMAS * sd), (source, got.min(), got.max())
    assert batches(sampler, 7)[0].tolist() == batches(BalancedSampler(domains, seed=3), 7)[0].tolist()  # seeded
    assert batches(sampler, 7)[0].tolist() != batches(sampler, 8)[0].tolist()


def test_balance_classes_draws_each_class_equally():
    labels = np.array([3] * 60 + [0] * 25 + [6] * 10 + [1] * 5)
    sampler = BalancedSampler(labels, seed=0)
    drawn = np.zeros(7)
    for epoch in range(EPOCHS):
        for batch in batches(sampler, epoch):
            shares = np.bincount(labels[batch], minlength=7)[[0, 1, 3, 6]]
            assert shares.max() - shares.min() <= 1
            np.add.at(drawn, labels[batch], 1)
    assert drawn[[2, 4, 5]].sum() == 0 and np.all(drawn[[0, 1, 3, 6]] == EPOCHS * 25)


def test_balanced_draws_split_over_ranks_like_distributed_sampler():
    labels = np.arange(30) % 3
    whole = BalancedSampler(labels, seed=5)
    ranks = [BalancedSampler(labels, seed=5, num_replicas=2, rank=r) for r in range(2)]
    for s in (whole, *ranks):
        s.set_epoch(2)
    order = whole.draws()
    assert list(ranks[0]) == order[0::2].tolist() and list(ranks[1]) == order[1::2].tolist()


def test_one_source_takes_the_path_it_always_took(caches):
    """Single source, --balance none: the train set is the source's PairedSamples seeded with --seed (no union)
    and the sampler is the DistributedSampler of before, so each epoch's order and draws are unchanged."""
    cfg = config(caches, source=A)
    data = load_sources(cfg, torch.device("cpu"), log=lambda s: None)
    assert type(data.train_set) is PairedSamples and data.train_set.seed == cfg.seed
    for world in (1, 2):
        for rank in range(world):
            ranks = Ranks(rank=rank, world=world, local_rank=rank, local_world=world)
            ours = make_sampler(data.train_set, cfg, ranks)
            before = DistributedSampler(data.train_set, num_replicas=world, rank=rank, seed=cfg.seed)
            assert type(ours) is DistributedSampler
            for epoch in range(3):
                ours.set_epoch(epoch)
                before.set_epoch(epoch)
                assert list(ours) == list(before)


# -- training ------------------------------------------------------------------------------------------
def test_per_source_test_accuracies_and_config(caches, tmp_path):
    run = tmp_path / "run"
    lines = []
    history = train(config(caches, epochs=2, balance="domains"), run, log=lines.append)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics == history_to_json(history) and len(metrics) == 2
    for entry in metrics:
        accs = entry["source_test_accs"]
        assert set(accs) == {A, B}
        assert entry["source_test_acc"] == pytest.approx((accs[A] + accs[B]) / 2)
    assert any("mean source test" in line and f"{A} " in line and f"{B} " in line for line in lines)
    config_json = json.loads((run / "config.json").read_text())
    assert config_json["train"]["source"] == f"{A},{B}" and config_json["train"]["balance"] == "domains"
    assert set(config_json["source_caches"]) == {A, B}  # (write_json sorts keys; the order is in train.source)
    assert config_json["samples_per_source"] == {A: {"train": 42, "test": 14}, B: {"train": 14, "test": 14}}
    assert config_json["samples"] == {"train": 56, "test": 28}


def test_cli_train_on_two_sources_end_to_end(caches, tmp_path):
    from typer.testing import CliRunner

    from cli.main import app
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "--source", f"{A},{B}", "--cache-dir", str(caches), "--out", str(run),
                                 "--backbone-weights", "none", "--epochs", "1", "--image-size", "32",
                                 "--workers", "0", "--no-plots", "--balance", "classes"])
    assert r.exit_code == 0, r.output
    assert "mean test accuracy of the 2 sources" in r.output and "test-set selection" in r.output
    results = json.loads((run / "eval-last" / "results.json").read_text())
    assert results["source"] == f"{A},{B}" and A in results["title"] and B in results["title"]
    assert set(results["targets"]) == {A, B}
    assert results["summary"]["unseen_mean"] is None  # both test sets are sources: nothing unseen
    md = (run / "eval-last" / "results.md").read_text()
    assert f"| {A} (source) |" in md and f"| {B} (source) |" in md
    bad = CliRunner().invoke(app, ["train", "--source", f"{A},{B}", "--cache-dir", str(caches), "--balance", "x"])
    assert bad.exit_code != 0 and "--balance 'x': choose from none, domains, classes" in str(bad.exception)


@pytest.mark.slow
def test_a_balanced_multi_source_run_resumes_to_the_same_weights(caches, tmp_path):
    from safetensors.torch import load_file

    cfg = config(caches, epochs=2, balance="classes")
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train(cfg, whole, log=lambda s: None)

    def interrupt(epoch, n):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, parts, log=lambda s: None, on_step=interrupt)
    history = train(cfg, parts, resume=True, log=lambda s: None)
    a, b = load_file(str(whole / "last.safetensors")), load_file(str(parts / "last.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the draws of epoch 2 were repeated
    assert json.loads((whole / "metrics.json").read_text())[-1]["loss"] == history[-1].loss


def test_training_curves_show_each_source(tmp_path):
    from cafe_cache.figures import _per_source, _series, plot_training_curves

    history = [EpochLog(e, 2.0 - e / 10, 1.0, None, None, 30.0 + e, 25.0 + e, 1e-3, 1.0, 10.0,
                        {A: 20.0 + e, B: 30.0 + e}) for e in (1, 2)]
    assert _per_source(history) == [A, B] and _series(history, f"test:{B}") == ([1.0, 2.0], [31.0, 32.0])
    assert _per_source([replace(h, source_test_accs={A: 1.0}) for h in history]) == []  # one source: no extra lines
    assert plot_training_curves(history, tmp_path / "curves.png").stat().st_size > 5_000
