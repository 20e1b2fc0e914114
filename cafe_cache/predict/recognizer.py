"""The Python API's objects: :class:`Recognizer` (what ``cafe_cache.load`` returns, see :mod:`.api`), whose
``predict`` gives one :class:`FacePrediction` per face.

    import cafe_cache as cafe
    recognizer = cafe.load("runs/rafdb-<time>")          # or a .onnx file, a package folder, hf://ORG/NAME
    for face in recognizer.predict("photo.jpg"):
        print(face.box, face.label, face.probs["Happy"])

``cafe predict`` and ``cafe export`` are callers of this module.  Only the base install is needed
to load a model and predict face crops (``detect=False``): OpenCV (video), scikit-image (the LBP
detector) and onnx/onnxruntime (``.onnx`` files, export) are imported when those paths run, and a
missing one stops with the one-line install hint.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from ..classes import CLASSES
from ..device import pick_device
from ..errors import CafeError, missing_extra
from ..extract.fingerprint import Fingerprint
from ..run.folder import RunConfig, RunFolder
from ..version import __version__
from .faces import FaceDetector, align_face, get_detector
from .hub import HF_PREFIX, resolve_hf
from .infer import CROP_SIZE, FacePredictor, Predictor, Preprocess, clamp_box
from .media import iter_video_frames, read_image
from .onnx_export import OnnxPredictor, write_onnx
from .package import is_package, read_package

if TYPE_CHECKING:
    from .onnx_export import ExportReport

# What predict takes: a file path, a PIL image, an (H, W, 3) uint8 RGB array or a (3, H, W) tensor.
ImageLike = str | Path | Image.Image | np.ndarray | torch.Tensor


@dataclass(frozen=True)
class FacePrediction:
    """One face: where it is, how sure the detector was, and the expression probabilities."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the input (whole image without detection)
    score: float  # detector confidence; 1.0 without detection (and for the LBP detector, which has none)
    probs: dict[str, float]  # the 7 classes in CLASSES order -> probability; they sum to 1
    label: str  # the most probable class

    def to_dict(self) -> dict[str, Any]:
        """Flat: x1, y1, x2, y2, score, one entry per class, label (the columns of ``cafe predict --out``)."""
        return {**dict(zip(("x1", "y1", "x2", "y2"), self.box)), "score": self.score, **self.probs,
                "label": self.label}


@dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is: which CLIP, how its mask branch started, what it was trained on."""

    source: str  # what load() was given
    backend: str  # "pytorch" or "onnxruntime"
    model: str  # a readable one-line name
    variant: str | None = None
    trained_on: str | None = None  # the source dataset (cache name)
    clip_model: str | None = None
    clip_weights: str | None = None  # "pretrained:<tag>", "file:<name>" or "random"
    clip_weights_sha256: str | None = None
    clip_activation: str | None = None
    clip_random_weights: bool = False
    backbone_init: str | None = None  # a file, "imagenet" or "none"
    backbone_random_init: bool = False
    clip_image_size: int | None = None
    mask_image_size: int | None = None
    cafe_version: str | None = None  # the cafe that trained the model

    @property
    def random_weights(self) -> bool:
        return self.clip_random_weights or self.backbone_random_init

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of_run(cls, config: RunConfig, source: str, model: str, clip_image_size: int) -> ModelInfo:
        fp = Fingerprint.from_json(config.clip.fingerprint) if config.clip.fingerprint else None
        return cls(source, "pytorch", model, config.variant, config.source,
                   fp and fp.model, fp and fp.weights, fp and fp.weights_sha256, fp and fp.activation,
                   config.clip.random_weights, config.backbone_init.source, config.backbone_init.random_init,
                   clip_image_size, config.image_size, config.cafe_version)


def as_image(image: ImageLike) -> Image.Image:
    """An RGB PIL image of any input ``predict`` takes (see :data:`ImageLike`)."""
    if isinstance(image, (str, Path)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise CafeError(f"a tensor image must be (3, H, W), got {tuple(image.shape)}.")
        if image.dtype != torch.uint8:  # floats in [0, 1]
            image = (image.detach().float() * 255).round().clamp(0, 255).to(torch.uint8)
        image = image.detach().cpu().permute(1, 2, 0).numpy()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
            raise CafeError(f"a numpy image must be (H, W, 3) uint8 RGB (or (H, W) grey), got {image.shape} "
                            f"{image.dtype}; convert with np.asarray(pil_image.convert('RGB')).")
        return Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    raise CafeError(f"cannot predict on a {type(image).__name__}: pass a file path, a PIL image, an (H, W, 3) "
                    "uint8 RGB numpy array or a (3, H, W) tensor.")


class Recognizer:
    """A loaded model (PyTorch or onnxruntime) and, when asked to detect, a face detector (built on first use)."""

    classes: tuple[str, ...] = CLASSES

    def __init__(self, backend: FacePredictor, info: ModelInfo, *, detector: str = "auto", device: str = "cpu"):
        self.backend, self.info = backend, info
        self._detector_name, self._device = detector, device
        self._detector: FaceDetector | None = None

    def __repr__(self) -> str:
        return f"Recognizer({self.description}, detector={self._detector_name})"

    @property
    def preprocess(self) -> Preprocess:
        """The exact transform of a face crop into the model's inputs."""
        return self.backend.preprocess

    @property
    def warning(self) -> str | None:
        """Why the predictions mean little (random weights), or None for a real model."""
        return self.backend.warning

    @property
    def description(self) -> str:
        return self.backend.description

    @property
    def detector(self) -> FaceDetector:
        """The face detector (``detector`` of :func:`load`), built the first time it is needed."""
        if self._detector is None:
            try:
                self._detector = get_detector(self._detector_name, device=self._device)
            except ModuleNotFoundError as e:
                raise (missing_extra(e) or e) from None
        return self._detector

    def predict(self, image: ImageLike, *, detect: bool = True) -> list[FacePrediction]:
        """The faces of one image, largest first (``detect=False``: the image is one face crop)."""
        return self.predict_batch([image], detect=detect)[0]

    def predict_batch(self, images: Sequence[ImageLike], *, detect: bool = True,
                      batch_size: int | None = None) -> list[list[FacePrediction]]:
        """:meth:`predict` of each image; the faces of all images go through the model ``batch_size`` at a time
        (default: the ``batch_size`` of :func:`load`, 32)."""
        pictures = [as_image(im) for im in images]
        if detect:
            found = self.detector.detect(pictures)
            crops = [align_face(p, face, CROP_SIZE) for p, faces in zip(pictures, found) for face in faces]
            boxes = [[(clamp_box(f.box, p.width, p.height), f.score) for f in faces]
                     for p, faces in zip(pictures, found)]
        else:  # each input is a face crop, as the datasets store them
            crops = pictures
            boxes = [[((0.0, 0.0, float(p.width), float(p.height)), 1.0)] for p in pictures]
        probs = iter(self.backend.predict_faces(crops, batch_size))
        return [[_prediction(box, score, next(probs)) for box, score in faces] for faces in boxes]

    def predict_video(self, path: str | Path, every: int = 1, *, detect: bool = True,
                      batch_size: int = 8) -> Iterator[tuple[int, float | None, list[FacePrediction]]]:
        """``(frame index, seconds or None, faces)`` for frames 0, every, 2*every, ... one frame at a time.

        Frames are decoded as they are needed and predicted ``batch_size`` at a time, so at most that
        many are held in memory however long the video (needs OpenCV, the predict extra).
        """
        frames = iter_video_frames(path, every)
        while chunk := list(islice(frames, batch_size)):
            found = self.predict_batch([image for _, _, image in chunk], detect=detect, batch_size=batch_size)
            for (index, seconds, _), faces in zip(chunk, found):
                yield index, seconds, faces
            del chunk, found

    def export_onnx(self, out: str | Path, *, opset: int = 17, quantize: str | None = None,
                    seed: int = 0) -> ExportReport:
        """Write this model as a ``cafe export`` ONNX file, checked against PyTorch (see :mod:`.onnx_export`)."""
        if not isinstance(self.backend, Predictor):
            raise CafeError(f"{self.info.source} is already an ONNX file; export needs the PyTorch model (a run "
                            "folder, a `cafe package` folder or hf://ORG/NAME).")
        if self.backend.device.type != "cpu":
            raise CafeError(f"export traces the model on the CPU: load it with cafe_cache.load({self.info.source!r}, "
                            "device='cpu').")
        try:
            return write_onnx(self.backend, out, source=self.info.source, info=self.info.to_dict(), opset=opset,
                              seed=seed, quantize=quantize)
        except ModuleNotFoundError as e:  # onnx, onnxruntime: the predict extra
            raise (missing_extra(e) or e) from None


def _prediction(box: tuple[float, ...], score: float, probs: np.ndarray) -> FacePrediction:
    return FacePrediction(tuple(round(float(v), 1) for v in box), float(score),
                          {c: float(p) for c, p in zip(CLASSES, probs)}, CLASSES[int(np.argmax(probs))])


def open_recognizer(source: str, *, hub_folder: Path | None = None, device: str = "auto", detector: str = "auto",
                    which: str | None = None, clip_weights: str | None = None, batch_size: int = 32) -> Recognizer:
    """The :class:`Recognizer` of ``source`` (see :func:`cafe_cache.predict.api.load`, which checks the
    arguments and resolves an ``hf://`` source to ``hub_folder`` before torch is imported)."""
    backend, info = _open(source, hub_folder, which, clip_weights, device, batch_size)
    return Recognizer(backend, info, detector=detector, device=str(pick_device(device)))


def source_kind(source: str) -> str:
    """What ``source`` names: ``hub``, ``onnx``, ``package`` or ``run`` (a missing path is one clear error)."""
    if source.startswith(HF_PREFIX):
        return "hub"
    path = Path(source).expanduser()
    if not path.exists():
        raise CafeError(f"{source}: no such file or folder. Pass a run folder of `cafe train`, a checkpoint in one, "
                        "a `cafe export` .onnx file, a `cafe package` folder or hf://ORG/NAME.")
    if path.suffix.lower() == ".onnx":
        return "onnx"
    return "package" if is_package(path.parent if path.is_file() else path) else "run"


def _open(source: str, hub_folder: Path | None, which: str | None, clip_weights: str | None, device: str,
          batch_size: int) -> tuple[FacePredictor, ModelInfo]:
    """The backend and its :class:`ModelInfo` for each kind of ``source`` :func:`load` takes."""
    kind, path = source_kind(source), Path(source).expanduser()
    if which is not None and kind != "run":
        raise CafeError(f"which={which!r} picks the weights of a run folder; {source} holds one set of weights.")
    if kind == "hub":
        return _package(hub_folder or resolve_hf(source), source, clip_weights, device, batch_size)
    if kind == "package":
        return _package(path.parent if path.is_file() else path, source, clip_weights, device, batch_size)
    if kind == "onnx":
        try:  # onnxruntime, a module of the predict extra
            onnx = OnnxPredictor(path, device, batch_size)
        except ModuleNotFoundError as e:
            raise (missing_extra(e) or e) from None
        return onnx, _onnx_info(onnx, source)
    predictor = Predictor.from_run(path, which=which, clip_weights=clip_weights, device=device, batch_size=batch_size)
    config = RunFolder.of_checkpoint(path)[0].read_config()
    return predictor, ModelInfo.of_run(config, source, predictor.name, predictor.clip_size)


def _package(folder: Path, source: str, clip_weights: str | None, device: str,
             batch_size: int) -> tuple[FacePredictor, ModelInfo]:
    model, config = read_package(folder)
    predictor = Predictor.from_model(model, config, source, clip_weights=clip_weights, device=device,
                                     batch_size=batch_size)
    return predictor, ModelInfo.of_run(config, source, predictor.name, predictor.clip_size)


def _onnx_info(onnx: OnnxPredictor, source: str) -> ModelInfo:
    """From the file's metadata (files of cafe before the API carry no ``info``: the name and flags only)."""
    meta = onnx.meta
    known = {k: v for k, v in (meta.get("info") or {}).items() if k in ModelInfo.__dataclass_fields__}
    known.update(source=source, backend="onnxruntime", model=onnx.name)
    known.setdefault("clip_random_weights", bool(meta.get("random_weights")))
    known.setdefault("cafe_version", meta.get("cafe_version", __version__))
    return ModelInfo(**known)
