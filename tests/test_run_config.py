"""``config.json`` typed (issue 27): RunConfig holds a ModelConfig and a TrainConfig, and the file keeps the
shape of every cafe version, so old run folders still read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cafe_cache.errors import CafeError
from cafe_cache.model.config import ModelConfig
from cafe_cache.run.config import Augment, TrainConfig
from cafe_cache.run.folder import BackboneInit, ClipInfo, RunConfig, RunFolder

# config.json as the first cafe version wrote it: no clip_input, precision, balance, mask_precision, ranks
OLD_CONFIG = {
    "cafe_version": "0.1.0",
    "model": {"backbone": "resnet18", "clip_dim": 512, "num_classes": 7, "variant": "no_sigmoid"},
    "train": {"source": "rafdb", "cache_dir": "cache", "root": None, "backbone": "resnet18",
              "backbone_weights": "imagenet", "variant": "no_sigmoid", "w_sep": 1.5, "w_div": 5.0, "epochs": 60,
              "batch_size": 32, "lr": 0.0002, "weight_decay": 0.0001, "gamma": 0.9, "seed": 3407,
              "image_size": 224, "augment": {"flip": True, "noise": True, "erase": False}, "online_clip": True,
              "clip_weights": None, "limit": None, "workers": 2, "device": "auto"},
    "clip": {"fingerprint": None, "label": "ViT-B-32 pretrained:openai", "random_weights": False},
    "backbone_init": {"source": "imagenet", "loaded": 120, "missing": [], "random_init": False},
    "source_cache": "cache/rafdb.h5", "samples": {"train": 12271, "test": 3068},
}


def write(run: Path, config: dict) -> RunFolder:
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps(config))
    return RunFolder(run)


def test_an_old_run_folder_reads_typed(tmp_path):
    config = write(tmp_path / "old", OLD_CONFIG).read_config()
    assert config.model == ModelConfig("resnet18", 512, 7, "no_sigmoid") and config.model.has_mask
    assert isinstance(config.train, TrainConfig) and config.train.augment == Augment(True, True, False)
    assert config.train.precision == "auto" and config.train.balance == "none"  # added later: their defaults
    assert config.clip_input == "online" and config.source == "rafdb" and config.image_size == 224
    assert config.mask_precision is None and config.ranks is None
    assert config.clip.label == "ViT-B-32 pretrained:openai" and not config.random


def test_config_json_keeps_its_shape(tmp_path):
    """What cafe train writes: model and train as ModelConfig.to_dict / TrainConfig.to_dict (with clip_input)."""
    train = TrainConfig(source="rafdb,ferplus", balance="domains", epochs=3)
    config = RunConfig(ModelConfig(clip_dim=768, variant="clip_finetune"), train, ClipInfo(label="x"),
                       BackboneInit("none", random_init=True), mask_precision="fp32")
    data = json.loads(json.dumps(config.to_json()))
    assert data["model"] == {"backbone": "resnet18", "clip_dim": 768, "num_classes": 7, "variant": "clip_finetune"}
    assert data["train"] == train.to_dict() and data["train"]["clip_input"] == "cached-views"
    assert data["train"]["augment"] == {"flip": True, "noise": True, "erase": True}
    assert RunConfig.from_json(data) == config
    old = RunConfig.from_json(OLD_CONFIG).to_json()
    assert {k: v for k, v in old["train"].items() if k in OLD_CONFIG["train"]} == OLD_CONFIG["train"]


@pytest.mark.parametrize("change, message", [
    ({"train": None}, "lacks the 'model' and 'train'"),
    ({"model": "resnet18"}, "lacks the 'model' and 'train'"),
    ({"train": {"cache_dir": "cache"}}, "'model' or 'train' entry is not the one `cafe train` writes"),
    ({"model": {**OLD_CONFIG["model"], "variant": "cafe++"}}, "unknown model variant 'cafe\\+\\+'"),
    ({"train": {**OLD_CONFIG["train"], "dropout": 0.5}}, "unknown training options \\['dropout'\\]"),
])
def test_a_damaged_config_is_one_line(tmp_path, change, message):
    folder = write(tmp_path / "run", {**OLD_CONFIG, **change})
    with pytest.raises(CafeError, match=message) as e:
        folder.read_config()
    assert "\n" not in str(e.value)


def test_the_config_schema_loads_without_torch():
    """The command line reads TrainConfig's defaults and the variant names at start-up: no torch for that."""
    import subprocess
    import sys

    code = ("import sys, cafe_cache.run.folder, cafe_cache.model.variants; "
            "print([m for m in ('torch', 'torchvision') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


def test_an_unknown_variant_is_refused_with_the_training_options():
    """Before any data is read: the registry's names in one line."""
    with pytest.raises(CafeError, match="unknown model variant 'cafe2'; choose one of cafe, no_sigmoid, no_mask, "
                                        "clip_finetune"):
        TrainConfig(source="rafdb", variant="cafe2")
