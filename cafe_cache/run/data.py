"""Stage-two samples: an image for the mask branch paired with its cached CLIP feature.

Each training sample flips its image with probability 1/2 and then takes the cached feature of
the matching view (``hflip`` for a flipped image), so image and feature always agree. Gaussian
noise is added to the uint8 image at its source size (100 px RAF-DB, 48 px FERPlus) before the
resize, as the official code does (with ``--store-images S``, the stored S x S image). The
official code also adds Gaussian noise and random erasing before CLIP; with the cache CLIP sees
only the clean/flipped view while the mask branch sees the fully augmented image. That is the
named deviation ``clip_input = "cached-views"``; ``--online-clip`` restores the official
behaviour (CLIP runs on every augmented batch).

Every random draw is seeded from (seed, epoch, index), so an epoch is the same whatever the
number of workers, and a resumed run repeats exactly what an uninterrupted one would do.

When the cache stores images (``cafe extract --store-images S``) they are read from it instead of
decoding the files: the same pixels when S is the training image size, else resized from S.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from ..datasets import Reader, build_reader
from ..datasets.base import ImageReadError
from ..errors import CafeError
from ..extract.preprocess import IMAGENET_MEAN, IMAGENET_STD
from ..extract.reader import FeatureCache, SplitData
from .config import Augment

NOISE_VARIANCE = 30.0  # on 0-255 pixels, as the official code
NOISE_P = 0.5
ERASE_SCALE = (0.02, 0.25)


def reader_for(cache: FeatureCache, root: str | None = None) -> Reader | None:
    """The dataset reader a cache was made with, so stage two can open the same images.

    None when the images are gone but the cache stores them (``cafe extract --store-images``).
    """
    try:
        return build_reader(cache.dataset, root or cache.root, strict=False, **cache.reader_options)
    except CafeError as e:
        if cache.stored_image_size:
            return None
        raise CafeError(f"images of cache {cache.path} are not where it was made ({e}); "
                        "pass --root with the dataset's new location.") from e


def to_tensor(image: Image.Image, size: int) -> torch.Tensor:
    """The official input: resize to (size, size), [0, 1] floats (normalised later)."""
    arr = np.array(image.resize((size, size), Image.BILINEAR), dtype=np.float32)
    return torch.from_numpy(arr).permute(2, 0, 1).div_(255)


def add_noise(pixels: np.ndarray, generator: torch.Generator) -> np.ndarray:
    """Gaussian noise of variance 30 on a uint8 (H, W, 3) image at its source size, clipped to 0..255 and
    truncated back to uint8, as the official code does before its resize to 224 (the resize then
    smooths it: spatially correlated noise, about 0.67x the per-pixel std of noise added at 224)."""
    noise = torch.randn(pixels.shape, generator=generator).numpy() * NOISE_VARIANCE ** 0.5
    return np.clip(pixels.astype(np.float32) + noise, 0, 255).astype(np.uint8)


def _normalize(x: torch.Tensor) -> torch.Tensor:
    return v2.functional.normalize(x, IMAGENET_MEAN, IMAGENET_STD)


class PairedSamples(Dataset):
    """(image, CLIP feature, label) for one split of a cache."""

    def __init__(self, data: SplitData, reader: Reader | None, views: tuple[str, ...], image_size: int,
                 augment: Augment = Augment.none(), seed: int = 0, bgr: bool = False):
        self.data, self.reader, self.image_size, self.augment, self.seed, self.bgr = \
            data, reader, image_size, augment, seed, bgr
        self.clean, self.flipped = views.index("clean"), (views.index("hflip") if "hflip" in views else None)
        if augment.flip and self.flipped is None:
            raise CafeError("training with flips needs the cache's 'hflip' view; re-extract with --views clean,hflip "
                            "or train with --no-flip.")
        self.epoch = 0
        self._erase = v2.RandomErasing(p=0.5, scale=ERASE_SCALE)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.data.labels)

    def generator(self, i: int) -> torch.Generator:
        """The generator of sample ``i``'s random draws this epoch (noise?, noise, flip?, erasing)."""
        return torch.Generator().manual_seed(hash((self.seed, self.epoch, i)) % (2**63))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        g = self.generator(i)
        pixels = np.asarray(self.image(i), dtype=np.uint8)
        if self.augment.noise and torch.rand(1, generator=g).item() < NOISE_P:
            pixels = add_noise(pixels, g)  # the official order: on the uint8 image at its own size
        x = to_tensor(Image.fromarray(pixels), self.image_size)
        if self.bgr:
            x = x.flip(0)
        view = self.clean
        if self.augment.flip and torch.rand(1, generator=g).item() < 0.5:
            x, view = x.flip(-1), self.flipped
        x = _normalize(x)
        if self.augment.erase:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=g)))
                x = self._erase(x)
        return x, torch.from_numpy(self.data.features[i, view]), int(self.data.labels[i])

    def image(self, i: int) -> Image.Image:
        """Sample ``i``'s picture, from the cache's stored images or the dataset's file."""
        if self.data.images is not None:
            return Image.fromarray(self.data.images[int(self.data.rows[i])])
        path = self.data.paths[i]
        try:
            return self.reader.open(path)
        except ImageReadError as e:
            raise CafeError(f"{self.reader.root / path}: {e}. The image was readable at extraction; if the "
                            "dataset moved pass --root, else re-extract.") from e


def limit_split(data: SplitData, limit: int | None, seed: int) -> SplitData:
    """A class-stratified subset of at most ``limit`` samples (for quick CPU runs)."""
    if not limit or limit >= len(data.labels):
        return data
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(data.labels))
    # round-robin over classes so every class keeps its share
    by_class = [order[data.labels[order] == c] for c in np.unique(data.labels)]
    picked = []
    k = 0
    while len(picked) < limit:
        for idx in by_class:
            if k < len(idx) and len(picked) < limit:
                picked.append(idx[k])
        k += 1
    keep = np.sort(np.array(picked))
    return SplitData(data.features[keep], data.labels[keep], [data.paths[j] for j in keep], data.rows[keep],
                     data.images)
