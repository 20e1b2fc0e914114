"""The models behind ``cafe_cache.load`` and ``cafe predict``: backends, preprocessing, result rows.

The model sees faces exactly as it did in training and evaluation (the official
preprocessing, :class:`Preprocess`): a face crop framed like RAF-DB's 100x100 aligned images
is resized (PIL bilinear, aspect ratio not kept) to CLIP's input size for the frozen CLIP tower
and, separately, to the run's ``image_size`` for the mask branch; both are scaled to
[0, 1] and standardised with the ImageNet mean/std, colours in RGB order.

Two backends share :class:`FacePredictor`'s interface: :class:`Predictor` (PyTorch, from
a run folder or a package) here and ``OnnxPredictor`` (onnxruntime, from ``cafe export``'s file)
in :mod:`cafe_cache.predict.onnx_export`; :class:`~cafe_cache.predict.recognizer.Recognizer`
wraps either.  :func:`predict_inputs` turns files into per-face rows with a Recognizer
(``cafe predict``), :func:`write_rows` writes them.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor, nn

from ..classes import CLASSES
from ..device import pick_device
from ..errors import CafeError, MissingExtra
from ..extract.extractor import display_name
from ..extract.fingerprint import Fingerprint
from ..extract.online import clip_for
from ..extract.preprocess import IMAGENET_MEAN, IMAGENET_STD, load_uint8, normalize
from ..files import write_atomic, write_text
from ..model.cafe import CAFEModel
from ..run.checkpoint import load_model
from .media import InputItem, iter_video_frames, read_image

if TYPE_CHECKING:
    from ..run.folder import RunConfig
    from .recognizer import Recognizer

CROP_SIZE = 100  # RAF-DB's aligned faces are 100x100; detected faces are cut the same way
NO_FACE = "no face found"
COLUMNS = ("file", "frame", "time_s", "face", "x1", "y1", "x2", "y2", "score", *CLASSES, "label", "error")


def random_warning(random_clip: bool, random_backbone: bool) -> str | None:
    """The warning every prediction run prints for a model that is not a real result."""
    if random_clip and random_backbone:
        return ("this model was trained on RANDOM CLIP WEIGHTS and its ResNet mask branch started from random "
                "weights (--backbone-weights none) (a smoke test): its predictions mean nothing.")
    if random_clip:
        return ("this model was trained on RANDOM CLIP WEIGHTS (a smoke test): its predictions mean nothing.")
    if random_backbone:
        return ("this model's ResNet mask branch started from random weights (--backbone-weights none), not "
                "face-pretrained ones: expect weak predictions.")
    return None


def clamp_box(box: tuple[float, float, float, float], width: int, height: int) -> tuple[float, float, float, float]:
    """A detector's box cut to the image (detectors may reach past the border; the crop is taken from
    the unclamped box, as its margins matter for the alignment)."""
    x1, y1, x2, y2 = box
    return (min(max(x1, 0.0), width), min(max(y1, 0.0), height), min(max(x2, 0.0), width), min(max(y2, 0.0), height))


def face_tensor(crops: list[Image.Image], size: int, mean: tuple = IMAGENET_MEAN, std: tuple = IMAGENET_STD,
                device: torch.device | str = "cpu") -> Tensor:
    """(N, 3, size, size) float32 of RGB crops, preprocessed as the cache and the training were."""
    batch = torch.stack([load_uint8(c.convert("RGB"), size, "official") for c in crops])
    return normalize(batch.to(device), mean, std)


@dataclass(frozen=True)
class Preprocess:
    """The exact input transform: a face crop -> (CLIP input, mask-branch input), as training saw it.

    Each crop (RGB; detected faces are aligned to ``crop_size`` first) is resized with PIL bilinear,
    aspect ratio not kept, to ``clip_size`` and to ``mask_size``, scaled to [0, 1] and standardised
    with ``mean``/``std``.  Calling it on a list of PIL crops gives the two (N, 3, S, S) tensors.
    """

    clip_size: int
    mask_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_size: int = CROP_SIZE
    colour_order: str = "RGB"
    resize: str = "PIL bilinear to each input's size, aspect ratio not kept"

    def __call__(self, crops: list[Image.Image]) -> tuple[Tensor, Tensor]:
        return tuple(face_tensor(crops, s, self.mean, self.std) for s in (self.clip_size, self.mask_size))

    def to_dict(self) -> dict[str, Any]:
        """As ONNX metadata and package configs record it."""
        return {"face_crop": f"RAF-DB-style aligned face, {self.crop_size}x{self.crop_size} "
                             "(cafe_cache.predict.faces.align_face)",
                "resize": self.resize, "colour_order": self.colour_order, "scale": "pixel / 255",
                "mean": list(self.mean), "std": list(self.std)}


def softmax(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.from_numpy(np.asarray(logits, dtype=np.float32)), dim=1).numpy()


class InferenceGraph(nn.Module):
    """The frozen extractor's image tower (CLIP's ``visual``, a timm model) + CAFE: (its input, mask-branch
    input) -> logits.

    Two inputs rather than one resized inside the graph: training resized each face
    separately to both sizes with PIL, which an in-graph resize would not reproduce.
    This module is what ``cafe export`` writes to ONNX, so both backends run the same graph.
    """

    def __init__(self, clip_visual: nn.Module, model: CAFEModel):
        super().__init__()
        self.clip_visual = clip_visual
        self.model = model

    def forward(self, clip_image: Tensor, mask_image: Tensor) -> Tensor:
        clip_features = self.clip_visual(clip_image).float()  # raw features, as the extractor's encode()
        return self.model(mask_image, clip_features).logits


class FacePredictor:
    """Shared front: batching and softmax; a backend supplies ``_logits`` of one batch."""

    preprocess: Preprocess
    batch_size: int
    warning: str | None  # printed on every run (random weights), None for a real model
    name: str  # which model: checkpoint or file, variant, CLIP weights
    runs_on: str  # the device or onnxruntime provider

    @property
    def clip_size(self) -> int:
        return self.preprocess.clip_size

    @property
    def mask_size(self) -> int:
        return self.preprocess.mask_size

    @property
    def description(self) -> str:
        return f"{self.name} on {self.runs_on}"

    def predict_faces(self, crops: list[Image.Image], batch_size: int | None = None) -> np.ndarray:
        """(N, classes) probabilities of aligned face crops, in ``CLASSES`` order, ``batch_size`` at a time."""
        if not crops:
            return np.zeros((0, len(CLASSES)), dtype=np.float32)
        size = batch_size or self.batch_size
        chunks = [crops[i:i + size] for i in range(0, len(crops), size)]
        return softmax(np.concatenate([self._logits(c) for c in chunks]))

    def _logits(self, crops: list[Image.Image]) -> np.ndarray:
        raise NotImplementedError


def frozen_clip_tower(config: RunConfig, clip_weights: str | None, device: torch.device) -> tuple[nn.Module, int]:
    """The one place predict builds CLIP: the frozen image tower the run's cache was made with, and its input size.

    CLIP is rebuilt from the run's cache fingerprint (random-weights runs from their seed); a run
    whose cache came from a CLIP file needs that file as ``clip_weights``.
    """
    fingerprint = Fingerprint.from_json(config.clip.fingerprint)
    clip = clip_for(fingerprint, clip_weights, device)
    return clip.image_tower(), clip.image_size


class Predictor(FacePredictor):
    """A trained run (its CAFE weights and the CLIP its cache was made with) on CPU or CUDA."""

    def __init__(self, graph: InferenceGraph, clip_size: int, mask_size: int, device: torch.device,
                 batch_size: int = 32, warning: str | None = None, name: str = "CAFE"):
        self.graph = graph.to(device).eval()
        self.preprocess = Preprocess(clip_size, mask_size)
        self.device, self.runs_on = device, str(device)
        self.batch_size, self.warning, self.name = batch_size, warning, name

    @classmethod
    def from_model(cls, model: CAFEModel, config: RunConfig, name: str, *, clip_weights: str | None = None,
                   device: str = "auto", batch_size: int = 32) -> Predictor:
        """``model`` (the weights of a run or a package, ``config`` its run's config) with its frozen CLIP."""
        dev = pick_device(device)
        visual, clip_size = frozen_clip_tower(config, clip_weights, dev)
        warning = random_warning(config.clip.random_weights, config.backbone_init.random_init)
        model_name = Fingerprint.from_json(config.clip.fingerprint).model
        name = f"{name} ({config.variant}, {display_name(model_name, config.clip.label)})"
        return cls(InferenceGraph(visual, model), clip_size, config.image_size, dev, batch_size, warning, name)

    @classmethod
    def from_run(cls, checkpoint: str | Path, *, which: str | None = None, clip_weights: str | None = None,
                 device: str = "auto", batch_size: int = 32) -> Predictor:
        """Load ``checkpoint`` (a run folder or one of its .safetensors) and its CLIP."""
        model, config = load_model(checkpoint, which)
        return cls.from_model(model, config, str(checkpoint), clip_weights=clip_weights, device=device,
                              batch_size=batch_size)

    @torch.inference_mode()
    def logits(self, clip_image: Tensor, mask_image: Tensor) -> Tensor:
        """The graph on already-preprocessed tensors (the ONNX export's parity reference)."""
        return self.graph(clip_image.to(self.device), mask_image.to(self.device)).float().cpu()

    def _logits(self, crops: list[Image.Image]) -> np.ndarray:
        return self.logits(*self.preprocess(crops)).numpy()


@dataclass
class PictureResult:
    """One photo or video frame, or one input that could not be used (``image`` None, an error row)."""

    index: int  # the input file's position among all inputs
    path: Path
    frame: int | None
    seconds: float | None
    image: Image.Image | None
    rows: list[dict[str, Any]] = field(default_factory=list)


def _row(path: Path, frame: int | None, seconds: float | None, **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS)
    row.update(file=str(path), frame=frame, time_s=None if seconds is None else round(seconds, 4), **values)
    return row


def _pictures(items: Iterable[InputItem], every: int) -> Iterator[PictureResult]:
    """Every photo and sampled video frame; a bad input becomes a result holding its error row."""
    for index, item in enumerate(items):
        if item.error:
            yield PictureResult(index, item.path, None, None, None, [_row(item.path, None, None, error=item.error)])
            continue
        try:
            if item.kind == "video":
                for frame, seconds, image in iter_video_frames(item.path, every):
                    yield PictureResult(index, item.path, frame, seconds, image)
            else:
                yield PictureResult(index, item.path, None, None, read_image(item.path))
        except MissingExtra:
            raise  # every video would fail alike: stop with the install hint
        except CafeError as e:
            yield PictureResult(index, item.path, None, None, None, [_row(item.path, None, None, error=str(e))])


def _predict_chunk(chunk: list[PictureResult], recognizer: Recognizer, detect: bool) -> None:
    """Fill the rows of ``chunk``: one :meth:`Recognizer.predict_batch` over its pictures (all faces in one go).
    Each row is the file, frame and face number beside ``FacePrediction.to_dict()``."""
    found = recognizer.predict_batch([p.image for p in chunk], detect=detect)
    for picture, faces in zip(chunk, found):
        for k, face in enumerate(faces):
            picture.rows.append(_row(picture.path, picture.frame, picture.seconds, face=k, **face.to_dict()))
        if not faces:
            picture.rows.append(_row(picture.path, picture.frame, picture.seconds, error=NO_FACE))


def predict_inputs(items: Iterable[InputItem], recognizer: Recognizer, detect: bool = True, *,
                   every: int = 1, chunk_size: int = 16) -> Iterator[PictureResult]:
    """Per picture, in input order, its rows: one per face, or one with an ``error``.

    ``detect`` False treats every input as one face crop.  Pictures are detected and
    predicted ``chunk_size`` at a time (frames of a video, or photos of several files), so
    at most that many decoded pictures are held in memory.
    """
    pending: list[PictureResult] = []
    try:
        for picture in _pictures(items, every):
            if picture.image is not None:
                pending.append(picture)
                if len(pending) < chunk_size:
                    continue
            if pending:
                _predict_chunk(pending, recognizer, detect)
                yield from pending
                pending = []
            if picture.image is None:
                yield picture
    except MissingExtra:  # the pictures read before it still get their rows
        if pending:
            _predict_chunk(pending, recognizer, detect)
            yield from pending
        raise
    if pending:
        _predict_chunk(pending, recognizer, detect)
        yield from pending


def summary(rows: list[dict[str, Any]]) -> dict[str, int]:
    """Counts for the closing line: faces, pictures without a face, inputs that failed."""
    pictures = {(r["file"], r["frame"]) for r in rows if r["error"] is None or r["error"] == NO_FACE}
    return {
        "files": len({r["file"] for r in rows}),
        "pictures": len(pictures),
        "faces": sum(r["error"] is None for r in rows),
        "no_face": sum(r["error"] == NO_FACE for r in rows),
        "failed": sum(r["error"] not in (None, NO_FACE) for r in rows),
    }


def all_failed(rows: list[dict[str, Any]]) -> bool:
    """Whether every input failed (no row is a face or a picture without one): the run exits non-zero."""
    return all(r["error"] not in (None, NO_FACE) for r in rows)


def draw_faces(image: Image.Image, rows: list[dict[str, Any]]) -> Image.Image:
    """A copy of ``image`` with each face's box and top label (probability) drawn on it."""
    canvas = image.convert("RGB")
    draw = ImageDraw.Draw(canvas)
    width = max(2, round(max(image.size) / 300))
    font = ImageFont.load_default(size=max(10, round(max(image.size) / 40)))
    for r in rows:
        if r["error"] is not None:
            continue
        box = (r["x1"], r["y1"], r["x2"], r["y2"])
        draw.rectangle(box, outline=(255, 210, 0), width=width)
        text = f"{r['label']} {r[r['label']]:.2f}"
        left, top, right, bottom = draw.textbbox((box[0], box[1]), text, font=font)
        y = max(0.0, box[1] - (bottom - top) - 2 * width)
        draw.rectangle((box[0], y, box[0] + right - left + 2 * width, y + bottom - top + 2 * width), fill=(255, 210, 0))
        draw.text((box[0] + width, y + width - (top - box[1])), text, fill=(0, 0, 0), font=font)
    return canvas


def save_annotated(image: Image.Image, path: Path) -> None:
    """An annotated picture as JPEG, written atomically (a full disk is one line naming the file)."""
    write_atomic(path, lambda p: image.save(p, format="JPEG", quality=95))


def write_rows(path: Path, rows: list[dict[str, Any]], predictor: Recognizer | FacePredictor) -> None:
    """All rows as CSV (one line per face or error) or JSON (rows plus the model and a summary), written
    atomically; file names that are not UTF-8 keep their bytes (CSV) or their escapes (JSON)."""
    if path.suffix.lower() == ".csv":
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        write_text(path, text.getvalue())
    else:
        data = {"model": predictor.description, "warning": predictor.warning, "summary": summary(rows), "rows": rows}
        write_text(path, json.dumps(data, indent=2))
