"""``cafe extract --store-images``: stored pixels equal a fresh decode + resize, and training on them
is training on the files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms import v2

from cafe_cache.datasets import build_reader, open_rgb
from cafe_cache.errors import CafeError
from cafe_cache.extract.paths import cache_path
from cafe_cache.extract.preprocess import IMAGENET_MEAN, IMAGENET_STD
from cafe_cache.extract.reader import FeatureCache
from cafe_cache.run.config import TrainConfig
from cafe_cache.run.data import Augment, PairedSamples, reader_for, to_tensor
from cafe_cache.train.loop import train

from .conftest import TINY_CLIP, make_cache, write_folder_dataset

TINY_SIZE = 32  # the tiny CLIP's input side


def make(root: Path, cache_dir: Path, store: int) -> FeatureCache:
    """The folder dataset at ``root`` extracted into ``cache_dir`` with ``--store-images store``."""
    path = cache_path(cache_dir, build_reader("folder", root).cache_name)
    make_cache(root, path, store_images=store)
    return FeatureCache(path)


@pytest.mark.parametrize("store", [TINY_SIZE, 40])  # the CLIP input itself, and a second resize
def test_stored_images_equal_a_fresh_decode_and_resize(folder_dataset, tmp_path, store):
    (folder_dataset / "train" / "happy" / "001.png").write_bytes(b"not a png")
    plain, stored = make(folder_dataset, tmp_path / "plain", 0), make(folder_dataset, tmp_path / "stored", store)
    assert stored.stored_image_size == store and plain.stored_image_size == 0
    assert stored.fingerprint == plain.fingerprint  # the images are no part of the features' identity
    for split in ("train", "test"):
        data = stored.load(split)
        assert np.array_equal(data.features, plain.load(split).features) and plain.load(split).images is None
        for row, rel in zip(data.rows, data.paths):
            fresh = np.array(open_rgb(folder_dataset / rel).resize((store, store), Image.BILINEAR))
            assert np.array_equal(data.images[row], fresh)
    assert len(stored.load("train").labels) == 20  # the unreadable image is left out, as before


def test_resuming_with_other_store_images_is_refused(folder_dataset, tmp_path):
    make(folder_dataset, tmp_path, TINY_SIZE)
    with pytest.raises(CafeError, match="--store-images 32, asked for 0.*--force"):
        make(folder_dataset, tmp_path, 0)


def samples(cache: FeatureCache, image_size: int) -> PairedSamples:
    ds = PairedSamples(cache.load("train"), reader_for(cache), cache.fingerprint.views, image_size, Augment(), seed=5)
    ds.set_epoch(2)
    return ds


@pytest.fixture
def source_sized(tmp_path: Path) -> Path:
    """Images already at the stored size: noise is added at the source size, which is then the stored size
    (a stored image of another size gets its noise at that size: the README's named deviation)."""
    return write_folder_dataset(tmp_path / "toyset", {"train": 3, "test": 2}, size=TINY_SIZE)


def test_stored_images_give_the_same_augmented_samples(source_sized, tmp_path):
    folder_dataset = source_sized
    plain, stored = make(folder_dataset, tmp_path / "plain", 0), make(folder_dataset, tmp_path / "stored", TINY_SIZE)
    a, b = samples(plain, TINY_SIZE), samples(stored, TINY_SIZE)
    for i in range(len(a)):
        for x, y in zip(a[i], b[i]):
            assert torch.equal(torch.as_tensor(x), torch.as_tensor(y))
    # another training size: the stored pixels are resized to it
    data = stored.load("train")
    other = PairedSamples(data, reader_for(stored), stored.fingerprint.views, 24)
    expected = to_tensor(Image.fromarray(data.images[data.rows[0]]), 24)
    assert torch.allclose(other[0][0], v2.functional.normalize(expected, IMAGENET_MEAN, IMAGENET_STD))
    # DataLoader workers open the file themselves, also after this process has opened it
    one = next(iter(DataLoader(b, batch_size=len(b))))
    two = next(iter(DataLoader(b, batch_size=len(b), num_workers=2)))
    assert all(torch.equal(p, q) for p, q in zip(one, two))


def test_training_on_stored_images_gives_the_same_loss(source_sized, tmp_path):
    folder_dataset = source_sized
    make(folder_dataset, tmp_path / "plain", 0)
    make(folder_dataset, tmp_path / "stored", TINY_SIZE)
    losses = []
    for name in ("plain", "stored"):
        cfg = TrainConfig(source="toyset", cache_dir=str(tmp_path / name), backbone_weights="none", epochs=1,
                          batch_size=7, image_size=TINY_SIZE, workers=0, seed=3)
        losses.append(train(cfg, tmp_path / f"run-{name}", log=lambda *_: None)[0].loss)
    assert losses[0] == losses[1]


def test_cli_store_images(folder_dataset, tmp_path):
    from typer.testing import CliRunner

    from cli.main import app
    r = CliRunner().invoke(app, ["extract", "--dataset", "folder", "--root", str(folder_dataset), "--model", TINY_CLIP,
                                 "--random-weights", "--workers", "0", "--store-images", "48",
                                 "--cache-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "storing images at 48x48" in r.output
    assert FeatureCache(cache_path(tmp_path, "toyset")).stored_image_size == 48


def test_stored_images_train_without_the_dataset_folder(folder_dataset, tmp_path):
    """Once the cache stores the pixels, the original images may go: training gives the same loss."""
    import shutil
    make(folder_dataset, tmp_path / "stored", TINY_SIZE)
    make(folder_dataset, tmp_path / "plain", 0)
    cfg = dict(source="toyset", backbone_weights="none", epochs=1, batch_size=7, image_size=TINY_SIZE, workers=0,
               seed=3)
    before = train(TrainConfig(cache_dir=str(tmp_path / "stored"), **cfg), tmp_path / "run-a", log=lambda *_: None)
    shutil.rmtree(folder_dataset)
    after = train(TrainConfig(cache_dir=str(tmp_path / "stored"), **cfg), tmp_path / "run-b", log=lambda *_: None)
    assert after[0].loss == before[0].loss
    with pytest.raises(CafeError, match="pass --root"):
        train(TrainConfig(cache_dir=str(tmp_path / "plain"), **cfg), tmp_path / "run-c", log=lambda *_: None)
    from typer.testing import CliRunner

    from cli.main import app
    r = CliRunner().invoke(app, ["cache", "info", str(tmp_path / "stored" / "toyset.h5")])
    assert "images stored at 32px" in r.output
