"""Shared fixtures. Tests never touch the network: the HF hub is switched offline before any import."""

from __future__ import annotations

import json
import os
from dataclasses import replace

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a missing download fails at once instead of retrying
os.environ.setdefault("OMP_NUM_THREADS", "1")  # pytest -n 2 on 2 cores: one thread per worker

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from cafe_cache.classes import CLASSES  # noqa: E402
from cafe_cache.datasets import build_reader  # noqa: E402
from cafe_cache.extract.clip import ClipSpec, load_clip  # noqa: E402
from cafe_cache.extract.fingerprint import Fingerprint  # noqa: E402
from cafe_cache.extract.loop import ExtractReport, extract  # noqa: E402
from cafe_cache.extract.weights import RandomInit  # noqa: E402
from cafe_cache.extract.writer import CacheWriter  # noqa: E402
from cafe_cache.results import EvalResult, Summary, TargetMetrics  # noqa: E402

torch.set_num_threads(1)

TINY_CLIP = "cafe-tiny"  # cafe_cache/extract/model_configs/cafe-tiny.json: 32-d features, 32 px input
FOLDER_CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")


def target_metrics(accuracy: float, n: int = 10, **kw) -> TargetMetrics:
    """A test set's metrics with the given accuracy (for the tables and means built from them)."""
    return TargetMetrics(n, accuracy, accuracy, {c: None for c in CLASSES}, [[0] * len(CLASSES)] * len(CLASSES), **kw)


def write_eval_results(run: Path, accuracy: dict[str, float], *, which: str = "last", source: str | None = None,
                       random: bool = False) -> Path:
    """``RUN/eval-<which>/results.json`` written through the schema, as ``cafe eval`` writes it."""
    result = EvalResult(f"{source} -> targets", source, which, random, "test",
                        {t: target_metrics(a) for t, a in accuracy.items()}, Summary())
    path = run / f"eval-{which}" / "results.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict()))
    return path


def write_folder_dataset(root: Path, per_class: dict[str, int], size: int = 24, seed: int = 0) -> Path:
    """<root>/<split>/<class>/<i>.png with a class-dependent colour, for fast extraction tests."""
    rng = np.random.default_rng(seed)
    for split, n in per_class.items():
        for c, cls in enumerate(FOLDER_CLASSES):
            d = root / split / cls
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
                img[..., c % 3] += np.uint8(30 * (c + 1))
                Image.fromarray(img).save(d / f"{i:03d}.png")
    return root


def fingerprint(clip, **kw) -> Fingerprint:
    """What the tests' caches record: ``official`` preprocessing, views clean and hflip, float32 features
    computed in fp32; ``kw`` replaces any other field (``seed=1``: the random weights' seed, ``activation="gelu"``)."""
    base = dict(preprocess="official", views=("clean", "hflip"), dtype="float32", precision="fp32")
    fp = Fingerprint.for_clip(clip, **{k: kw.pop(k, v) for k, v in base.items()})
    weights = {"activation": kw.pop("activation")} if "activation" in kw else {}
    if "seed" in kw:
        weights["source"] = RandomInit(kw.pop("seed"))
    return replace(fp, weights_info=replace(fp.weights_info, **weights), **kw)


def make_cache(root: Path, path: Path, clip=None, *, dataset: str = "folder", cache_name: str | None = None,
               force: bool = False, store_images: int = 0, batch_size: int = 4, on_batch=None,
               **fp_kw) -> ExtractReport:
    """The ``dataset`` at ``root`` extracted in this process into the cache file ``path``, as `cafe extract`
    does, with the tiny random CLIP (or ``clip``); ``fp_kw`` changes the :func:`fingerprint`. Its report."""
    clip = clip or load_clip(ClipSpec(model=TINY_CLIP, random_weights=True))
    reader = build_reader(dataset, root)
    found = reader.read()
    splits = {s: found.split(s) for s in found.splits()}
    with CacheWriter.for_dataset(path, fingerprint(clip, **fp_kw), reader, splits, clip.embed_dim,
                                 skipped=found.skipped, cache_name=cache_name, force=force,
                                 store_images=store_images) as writer:
        return extract(reader, splits, clip, writer, batch_size=batch_size, workers=0, on_batch=on_batch)


def set_cache_attrs(path: Path, **attrs) -> None:
    """Change attributes of a cache file as if it had been made with them (their checksum restamped), not as
    damage: e.g. ``subset=json.dumps({"limit": 5})`` for what `cafe extract --limit 5` records."""
    import h5py

    from cafe_cache.extract.integrity import ATTRS_DIGEST, attrs_digest

    with h5py.File(path, "r+") as f:
        f.attrs.update(attrs)
        f.attrs[ATTRS_DIGEST] = attrs_digest(f.attrs)


@pytest.fixture
def folder_dataset(tmp_path: Path) -> Path:
    return write_folder_dataset(tmp_path / "toyset", {"train": 3, "test": 2})


def write_hf_cache(root: Path, monkeypatch, model: str, tag: str, state: dict[str, torch.Tensor],
                   fmt: str = "safetensors") -> Path:
    """A Hugging Face hub cache as open_clip leaves it after downloading ``model``/``tag`` (offline use).

    ``fmt`` "safetensors" writes ``open_clip_model.safetensors`` (what open_clip prefers), "bin" writes
    ``open_clip_pytorch_model.bin``. The hub's cache folder is pointed at ``root`` for this test.
    """
    import huggingface_hub.constants
    import open_clip
    from open_clip.pretrained import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
    from safetensors.torch import save_file

    repo, filename = os.path.split(open_clip.get_pretrained_cfg(model, tag)["hf_hub"])
    filename = filename or (HF_SAFE_WEIGHTS_NAME if fmt == "safetensors" else HF_WEIGHTS_NAME)
    revision = "0" * 40
    repo_dir = root / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    file = repo_dir / "snapshots" / revision / filename
    file.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(file))
    else:
        torch.save(state, file)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return file


def write_hf_snapshot(cache: Path, repo: str, folder: Path, revision: str = "1" * 40) -> Path:
    """``folder`` laid out as huggingface_hub leaves a downloaded repo in its cache ``cache`` (refs/main ->
    snapshots/<revision>), as ``hf://`` loading finds it offline."""
    import shutil

    repo_dir = cache / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(revision)
    snapshot = repo_dir / "snapshots" / revision
    shutil.copytree(folder, snapshot)
    return snapshot


def write_run_config(run: Path, train: dict | None = None, **entries) -> Path:
    """``run/config.json`` in the shape `cafe train` writes, without training: a ResNet-18 CAFE model and
    the training options ``train`` (the source: rafdb unless given), with the other ``entries`` as given."""
    import json

    from cafe_cache.model.config import ModelConfig
    from cafe_cache.run.config import TrainConfig

    run.mkdir(parents=True, exist_ok=True)
    config = {"model": ModelConfig().to_dict(), "train": TrainConfig(**{"source": "rafdb", **(train or {})}).to_dict()}
    (run / "config.json").write_text(json.dumps(config | entries))
    return run / "config.json"


def train_tiny_run(base: Path) -> Path:
    """A one-epoch run of the tiny CLIP on a generated class-folder dataset (``base/run``), for the tests
    that need a trained model (predict, export, the Python API)."""
    from cafe_cache.run.config import Augment, TrainConfig
    from cafe_cache.train.loop import train

    root = write_folder_dataset(base / "toyset", {"train": 2, "test": 1})
    make_cache(root, base / "cache" / "toyset.h5", batch_size=16)
    cfg = TrainConfig(source="toyset", cache_dir=str(base / "cache"), backbone_weights="none", epochs=1,
                      image_size=40, batch_size=16, workers=0, augment=Augment.none(), device="cpu")
    train(cfg, base / "run", log=lambda _: None)
    return base / "run"


def configure_raf_and_mma(base: Path, monkeypatch, train: int, test: int, size: int) -> Path:
    """RAF-DB and MMA in their native layouts (synthetic; ``train``/``test`` images per class, MMA's
    train/ test/ <class>/), configured through CAFE_<NAME>_ROOT; the other paper datasets unset, HOME and the
    working folder ``base`` (no cafe.toml of the user's is read)."""
    from cafe_cache import paper, synth

    synth.write_rafdb(base / "raf", "line", train, test, size=size, seed=1)
    synth.write_folder(base / "mma", "color", train, test, size=size, seed=2)
    for d in paper.DATASETS:
        monkeypatch.delenv(f"CAFE_{d.upper()}_ROOT", raising=False)
    monkeypatch.setenv("CAFE_RAFDB_ROOT", str(base / "raf"))
    monkeypatch.setenv("CAFE_MMA_ROOT", str(base / "mma"))
    monkeypatch.setenv("HOME", str(base))
    monkeypatch.chdir(base)
    return base
