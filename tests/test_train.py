"""Stage two: the training loop, resume, checkpoints, online vs cached CLIP, evaluation metrics."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from cafe_cache import synth
from cafe_cache.errors import CafeError
from cafe_cache.extract.online import clip_for, online_features
from cafe_cache.extract.reader import FeatureCache
from cafe_cache.history import EpochLog, read_history
from cafe_cache.metrics import confusion_matrix, metrics, summary
from cafe_cache.model.config import ModelConfig
from cafe_cache.model.losses import total_loss
from cafe_cache.results import Summary
from cafe_cache.run.checkpoint import load_model, load_resume
from cafe_cache.run.config import TrainConfig
from cafe_cache.run.data import Augment, PairedSamples, reader_for
from cafe_cache.train import loop
from cafe_cache.train.loop import train

from .conftest import make_cache, target_metrics


@pytest.fixture(scope="module")
def caches(tmp_path_factory) -> Path:
    """Two synthetic domains (RAF-DB layout + class folders) cached with the tiny random CLIP."""
    base = tmp_path_factory.mktemp("train")
    data = base / "data"
    synth.write_rafdb(data / "synth-line", "line", 10, 4, size=40, seed=1)
    synth.write_folder(data / "synth-color", "color", 4, 3, size=40, seed=2)
    make_cache(data / "synth-line", base / "cache" / "synth-line.h5", dataset="rafdb", cache_name="synth-line",
               batch_size=32)
    make_cache(data / "synth-color", base / "cache" / "synth-color.h5", cache_name="synth-color", batch_size=32)
    return base / "cache"


def config(caches: Path, **kw) -> TrainConfig:
    base = dict(source="synth-line", cache_dir=str(caches), backbone_weights="none", epochs=8, batch_size=14,
                lr=1e-3, image_size=32, workers=0, seed=3)
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def trained(caches, tmp_path_factory) -> tuple[Path, list]:
    run = tmp_path_factory.mktemp("run")
    return run, train(config(caches), run, log=lambda s: None)


def test_loss_falls_and_source_accuracy_beats_chance(trained):
    run, history = trained
    assert len(history) == 8
    assert history[-1].loss < history[0].loss - 0.05
    assert history[-1].ce < history[0].ce
    assert max(h.source_test_acc for h in history) > 2 * 100 / 7 + 1  # chance is 14.3%: at least 9 of 28
    assert history[1].lr == pytest.approx(1e-3 * 0.9)  # ExponentialLR steps once per epoch
    assert read_history(run / "metrics.json") == history and all(isinstance(h, EpochLog) for h in history)
    assert load_resume(run).history == history  # the resume state holds the same epochs


def test_checkpoint_round_trip_and_config(trained, caches):
    run, history = trained
    model, cfg = load_model(run, "last")
    state = load_file(str(run / "last.safetensors"))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert cfg.model == ModelConfig("resnet18", clip_dim=32, num_classes=7, variant="cafe")
    assert cfg.clip.random_weights and "RANDOM WEIGHTS" in cfg.clip.label
    assert cfg.backbone_init.random_init and cfg.clip_input == "cached-views" and cfg.train == config(caches)
    written = json.loads((run / "config.json").read_text())  # the shape config.json always had
    assert written["model"] == cfg.model.to_dict() and written["train"] == config(caches).to_dict()
    best, _ = load_model(run / "best.safetensors")
    best_epoch = max(history, key=lambda h: h.source_test_acc)
    # the best checkpoint reproduces the best epoch's source test accuracy
    cache = FeatureCache(caches / "synth-line.h5")
    ds = PairedSamples(cache.load("test"), reader_for(cache), cache.fingerprint.views, 32)
    from cafe_cache.run.predictions import predict_split
    pred = predict_split(best, ds, workers=0)
    assert 100 * (pred.y_true == pred.y_pred).mean() == pytest.approx(best_epoch.source_test_acc)


@pytest.mark.slow
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(caches, tmp_path):
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train(config(caches, epochs=3), whole, log=lambda s: None)

    def interrupt(epoch, n):
        if epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config(caches, epochs=3), parts, log=lambda s: None, on_step=interrupt)
    assert len(json.loads((parts / "metrics.json").read_text())) == 2
    history = train(config(caches, epochs=3), parts, resume=True, log=lambda s: None)
    assert len(history) == 3
    a, b = load_file(str(whole / "last.safetensors")), load_file(str(parts / "last.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((whole / "metrics.json").read_text())[-1]["loss"] == history[-1].loss


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(caches, tmp_path, monkeypatch):
    calls = {"n": 0}

    def poisoned(*args, **kw):
        calls["n"] += 1
        parts = total_loss(*args, **kw)
        if calls["n"] > 5:  # epoch 1 has 5 steps of 14 of 70 images
            parts = replace(parts, total=parts.total * float("nan"))
        return parts

    monkeypatch.setattr(loop, "total_loss", poisoned)
    with pytest.raises(loop.NonFiniteLoss, match="loss became nan at epoch 2, step 1.*last.safetensors"):
        train(config(caches, epochs=3), tmp_path, log=lambda s: None)
    assert len(json.loads((tmp_path / "metrics.json").read_text())) == 1
    model, _ = load_model(tmp_path, "last")
    assert all(torch.isfinite(v.float()).all() for v in model.state_dict().values())


def test_online_clip_and_cache_give_the_same_loss_on_the_same_batch(caches):
    cache = FeatureCache(caches / "synth-line.h5")
    clip = clip_for(cache.fingerprint, None, "cpu")
    ds = PairedSamples(cache.load("train"), reader_for(cache), cache.fingerprint.views, clip.image_size, Augment.none())
    images, cached, labels = (torch.stack(x) if isinstance(x[0], torch.Tensor) else torch.tensor(x)
                              for x in zip(*[ds[i] for i in range(8)]))
    online = online_features(clip, images)
    torch.testing.assert_close(online, cached, rtol=1e-4, atol=1e-5)
    from cafe_cache.model.cafe import CAFEModel
    torch.manual_seed(0)
    model = CAFEModel(ModelConfig(clip_dim=32)).eval()
    drop = torch.ones(32)
    a = total_loss(model(images, cached).logits, labels, model(images, cached).masked, drop).total
    b = total_loss(model(images, online).logits, labels, model(images, online).masked, drop).total
    assert a.item() == pytest.approx(b.item(), rel=1e-5)


def test_flipped_images_get_the_flipped_view(caches):
    cache = FeatureCache(caches / "synth-line.h5")
    data = cache.load("train")
    flip_only = Augment(flip=True, noise=False, erase=False)
    ds = PairedSamples(data, reader_for(cache), cache.fingerprint.views, 32, flip_only)
    plain = PairedSamples(data, reader_for(cache), cache.fingerprint.views, 32)
    flips = 0
    for i in range(20):
        x, f, _ = ds[i]
        x0, f0, _ = plain[i]
        if torch.equal(x, x0):
            assert torch.equal(f, torch.from_numpy(data.features[i, 0]))
        else:
            flips += 1
            assert torch.equal(x, x0.flip(-1)) and torch.equal(f, torch.from_numpy(data.features[i, 1]))
    assert 3 <= flips <= 17


def test_metrics_against_a_hand_made_confusion_matrix():
    y_true = np.array([0, 0, 0, 1, 1, 3, 3, 3, 3, 6])
    y_pred = np.array([0, 0, 1, 1, 0, 3, 3, 3, 6, 6])
    cm = confusion_matrix(y_true, y_pred)
    assert cm[0].tolist() == [2, 1, 0, 0, 0, 0, 0] and cm[3, 6] == 1 and cm.sum() == 10
    m = metrics(y_true, y_pred)
    assert m.accuracy == pytest.approx(70.0) and m.n == 10 and m.confusion == cm.tolist()
    # classes present: 0 (2/3), 1 (1/2), 3 (3/4), 6 (1/1)
    assert m.uar == pytest.approx(100 * (2 / 3 + 1 / 2 + 3 / 4 + 1) / 4)
    assert m.per_class["Fear"] == pytest.approx(50.0) and m.per_class["Anger"] is None
    s = summary({"a": target_metrics(80.0), "b": target_metrics(40.0), "c": target_metrics(60.0)}, "a")
    assert s == Summary(pytest.approx(60.0), pytest.approx(50.0), 80.0)


def test_cli_train_then_eval_labels_random_weights(caches, tmp_path):
    from typer.testing import CliRunner

    from cli.main import app
    run = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", "--source", "synth-line", "--cache-dir", str(caches), "--out", str(run),
                                 "--backbone-weights", "none", "--epochs", "1", "--image-size", "32",
                                 "--workers", "0", "--no-plots"])
    assert r.exit_code == 0, r.output
    results = json.loads((run / "eval-last" / "results.json").read_text())  # the final epoch, as the paper
    assert results["which"] == "last" and not (run / "eval-best").exists()
    assert set(results["targets"]) == {"synth-line", "synth-color"}
    assert results["title"].startswith("RANDOM CLIP WEIGHTS") and results["random_weights"]
    md = (run / "eval-last" / "results.md").read_text()
    assert "Mean (all 2 test sets" in md and "paper Mean" not in md  # not the paper's five sets
    r = CliRunner().invoke(app, ["train", "--source", "synth-line", "--cache-dir", str(caches), "--out", str(run)])
    assert r.exit_code != 0 and "--resume" in str(r.exception)


def test_eval_refuses_caches_made_with_other_clip_weights(caches, tmp_path, trained):
    run, _ = trained
    import shutil
    other = tmp_path / "other"
    shutil.copytree(caches, other)
    import h5py
    with h5py.File(other / "synth-color.h5", "r+") as f:
        fp = json.loads(f.attrs["fingerprint"])
        fp["weights"]["seed"] = 9
        f.attrs["fingerprint"] = json.dumps(fp, sort_keys=True)
        from cafe_cache.extract.integrity import ATTRS_DIGEST, attrs_digest
        f.attrs[ATTRS_DIGEST] = attrs_digest(f.attrs)  # a whole cache made with other weights, not a damaged one
    from cafe_cache.evaluate.targets import evaluate_run
    with pytest.raises(CafeError, match="synth-color.h5 was made with CLIP cafe-tiny RANDOM WEIGHTS \\(seed 9\\)"):
        evaluate_run(run, "best", cache_dir=other, workers=0)


def test_bgr_targets_swap_channels_for_clip_and_mask_branch(trained, caches):
    """The official notebooks' colour bug, on request: CLIP runs online on the BGR image."""
    from cafe_cache.evaluate.targets import evaluate_caches, target_caches
    model, _ = load_model(trained[0])
    cs = target_caches(caches, ["synth-color"])
    rgb = evaluate_caches(model, cs, image_size=32, workers=0)
    bgr = evaluate_caches(model, cs, image_size=32, workers=0, bgr_targets=("synth-color",)).targets["synth-color"]
    assert bgr.bgr and not rgb.targets["synth-color"].bgr and bgr.n == rgb.targets["synth-color"].n
    cache = cs["synth-color"]
    ds = PairedSamples(cache.load("test"), reader_for(cache), cache.fingerprint.views, 32, bgr=True)
    plain = PairedSamples(cache.load("test"), reader_for(cache), cache.fingerprint.views, 32)
    x, _, _ = ds[0]
    x0, _, _ = plain[0]
    from cafe_cache.extract.preprocess import IMAGENET_MEAN, IMAGENET_STD
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    torch.testing.assert_close((x * std + mean), (x0 * std + mean).flip(0))
    assert rgb.mean_masks["synth-color"].shape == (7, 32)


@pytest.mark.slow
def test_bf16_mixed_precision_trains_in_channels_last(caches, tmp_path):
    """--precision bf16: autocast + channels_last for the mask branch; weights stay fp32 and finite."""
    from cafe_cache.device import resolve_train_precision
    assert resolve_train_precision("auto", torch.device("cpu")) == "fp32"
    with pytest.raises(CafeError, match="--precision 'fp8'"):
        resolve_train_precision("fp8", torch.device("cpu"))
    history = train(config(caches, epochs=2, precision="bf16"), tmp_path, log=lambda s: None)
    assert all(np.isfinite(h.loss) for h in history) and history[1].loss < history[0].loss
    state = load_file(str(tmp_path / "last.safetensors"))
    assert state["fc.weight"].dtype == torch.float32
    model, _ = load_model(tmp_path)
    assert model.fc.weight.dtype == torch.float32
