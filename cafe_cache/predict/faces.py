"""Offline face detection and RAF-DB-style alignment for ``cafe predict``.

CAFE is trained on aligned face crops (RAF-DB's 100x100 "aligned" images and the like),
so a raw photo or video frame must first be cut into such crops: detect every face,
then warp each one so the eyes, nose and mouth land where they sit in the training crops.

Detectors (pick one with :func:`get_detector`):

``mtcnn`` (default)
    facenet-pytorch's MTCNN.  Its P/R/O-net weights ship inside the facenet-pytorch wheel
    (``facenet_pytorch/data/*.pt``), so nothing is downloaded.  Gives 5 landmarks, so
    faces get a similarity alignment.
``lbp`` (fallback)
    The LBP frontal-face cascade from OpenCV that scikit-image ships
    (``skimage.data.lbp_frontal_face_cascade_filename()``), run by
    ``skimage.feature.Cascade``.  OpenCV 5 no longer has ``cv2.CascadeClassifier`` nor the
    Haar XML files, hence scikit-image.  No landmarks and no confidence: every face gets
    score 1.0 and the crop is a square around the box.
``auto``
    ``mtcnn`` when facenet-pytorch is installed, else ``lbp`` with
    ``detector.fallback_reason`` set so the caller can warn.

Coordinates are image pixels in the orientation a viewer sees (``read_image`` applies
EXIF rotation), x to the right, y down.  Landmark order: left eye, right eye, nose,
mouth left, mouth right, where "left" is the viewer's left (the subject's right eye).
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

from ..errors import CafeError
from ..options import DETECTOR_NAMES

MTCNN_INSTALL = "pip install --no-deps facenet-pytorch==2.6.0"

# insightface's ArcFace 5-point template for 112x112 crops (`arcface_dst` in
# insightface/utils/face_align.py), in pixels: left eye, right eye, nose, mouth corners.
_ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
_ZOOM_OUT = 0.9  # RAF-DB aligned crops keep the chin and forehead: a little wider than ArcFace's
_EYE_LINE = 0.40  # RAF-DB aligned crops have the eyes at about 40% of the height (ArcFace: 46%)


def _raf_template() -> np.ndarray:
    """The canonical 5 points in unit coordinates (multiply by the crop size).

    Defined here: the ArcFace template divided by 112, shrunk by ``_ZOOM_OUT`` about the
    crop centre, then moved up so the eye line sits at ``_EYE_LINE``.  Result, rounded:
    eyes (0.358, 0.401) and (0.641, 0.399), nose (0.500, 0.562), mouth corners
    (0.384, 0.728) and (0.618, 0.726): inter-eye distance 0.28 of the width, which frames
    forehead to chin like RAF-DB's 100x100 aligned images.
    """
    unit = 0.5 + _ZOOM_OUT * (_ARCFACE_112 / 112.0 - 0.5)
    eye_y = unit[:2, 1].mean()
    return unit + np.array([0.0, _EYE_LINE - eye_y])


RAF_TEMPLATE = _raf_template()


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face, in image pixels (see the module docstring for orientation)."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    score: float  # detector confidence in [0, 1]; 1.0 for detectors without one (lbp)
    landmarks: np.ndarray | None = None  # (5, 2) x, y: left eye, right eye, nose, mouth left, mouth right


class FaceDetector(Protocol):
    name: str
    fallback_reason: str | None  # set when `auto` could not give the preferred detector

    def detect(self, images: list[Image.Image]) -> list[list[Face]]:
        """Faces of each image, largest first."""
        ...


class _Detector:
    """Shared front end: RGB conversion, downscaling of big images, largest-first order.

    Big photos are shrunk to ``max_side`` before detection because MTCNN's pyramid makes
    a 3000x3000 image take ~8 s here; faces that end up under ``min_size`` pixels after
    shrinking would be too small to classify anyway.
    """

    name = ""

    def __init__(self, min_size: int, max_side: int | None):
        self.min_size = min_size
        self.max_side = max_side
        self.fallback_reason: str | None = None

    def detect(self, images: list[Image.Image]) -> list[list[Face]]:
        shrunk = [self._shrink(im.convert("RGB")) for im in images]
        found = self._detect_rgb([im for im, _ in shrunk])
        return [_largest_first([_scaled(f, k) for f in faces]) for faces, (_, k) in zip(found, shrunk)]

    def _shrink(self, image: Image.Image) -> tuple[Image.Image, float]:
        """The image to run on and the factor that maps its pixels back to the original's."""
        side = max(image.size)
        if self.max_side is None or side <= self.max_side:
            return image, 1.0
        k = side / self.max_side
        small_size = (round(image.width / k), round(image.height / k))
        small = image.resize(small_size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        return small, image.width / small.width

    def _detect_rgb(self, images: list[Image.Image]) -> list[list[Face]]:
        raise NotImplementedError


def _scaled(face: Face, k: float) -> Face:
    if k == 1.0:
        return face
    marks = None if face.landmarks is None else face.landmarks * k
    return Face(tuple(v * k for v in face.box), face.score, marks)


def _largest_first(faces: list[Face]) -> list[Face]:
    return sorted(faces, key=lambda f: -(f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))


_FACENET_ALIAS = "_cafe_facenet_models"


def mtcnn_available() -> bool:
    return importlib.util.find_spec("facenet_pytorch") is not None


def _mtcnn_class() -> type:
    """facenet-pytorch's MTCNN class, loaded without running ``facenet_pytorch/__init__``.

    That ``__init__`` imports InceptionResnetV1, whose module imports ``requests`` to
    download recognition weights we never use.  Registering the wheel's ``models`` folder
    as a private package and importing ``mtcnn`` from it needs only torch, torchvision,
    numpy and pillow, so ``pip install --no-deps facenet-pytorch`` is enough.
    """
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or spec.origin is None:
        raise CafeError(
            f"face detector 'mtcnn' needs facenet-pytorch: run `{MTCNN_INSTALL}` (or `make setup`), "
            "or pick the weaker built-in detector with `--detector lbp`."
        )
    if _FACENET_ALIAS not in sys.modules:
        package = types.ModuleType(_FACENET_ALIAS)
        package.__path__ = [str(Path(spec.origin).parent / "models")]
        sys.modules[_FACENET_ALIAS] = package
    return importlib.import_module(f"{_FACENET_ALIAS}.mtcnn").MTCNN


class MtcnnDetector(_Detector):
    """MTCNN with all faces kept; batches same-sized images (video frames) together."""

    name = "mtcnn"

    def __init__(self, device: str = "cpu", min_score: float = 0.9, min_size: int = 20,
                 max_side: int | None = 1024, batch_size: int = 8):
        super().__init__(min_size, max_side)
        import torch

        self.min_score = min_score
        self.batch_size = batch_size
        self._mtcnn = _mtcnn_class()(keep_all=True, min_face_size=min_size, device=torch.device(device))

    def _detect_rgb(self, images: list[Image.Image]) -> list[list[Face]]:
        found: list[list[Face]] = [[] for _ in images]
        by_size: dict[tuple[int, int], list[int]] = {}
        for i, im in enumerate(images):
            if min(im.size) >= self.min_size:  # smaller ones crash MTCNN's empty pyramid
                by_size.setdefault(im.size, []).append(i)
        for indices in by_size.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start:start + self.batch_size]
                boxes, probs, points = self._mtcnn.detect([images[i] for i in chunk], landmarks=True)
                for i, b, p, pts in zip(chunk, boxes, probs, points):
                    found[i] = self._faces(b, p, pts)
        return found

    def _faces(self, boxes, probs, points) -> list[Face]:
        if boxes is None:
            return []
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        probs = np.asarray(probs, dtype=np.float64).reshape(-1)
        points = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2)
        return [
            Face(tuple(float(v) for v in b), float(p), pts)
            for b, p, pts in zip(boxes, probs, points)
            if p >= self.min_score
        ]


class LbpDetector(_Detector):
    """scikit-image's bundled LBP frontal-face cascade; one image at a time, no landmarks.

    ``scale_factor=1.2`` and ``min_neighbor_number=6`` were picked on scikit-image's sample
    photos: they keep the astronaut's face and drop the false hits on ``coffee`` and
    ``camera`` that the library defaults give.  ``min_score`` does not apply (no score).
    """

    name = "lbp"

    def __init__(self, min_size: int = 20, max_side: int | None = 1024):
        super().__init__(min_size, max_side)
        from skimage import data
        from skimage.feature import Cascade

        self._cascade = Cascade(data.lbp_frontal_face_cascade_filename())

    def _detect_rgb(self, images: list[Image.Image]) -> list[list[Face]]:
        return [self._detect_one(np.asarray(im.convert("L"))) for im in images]

    def _detect_one(self, gray: np.ndarray) -> list[Face]:
        if min(gray.shape) < self.min_size:
            return []
        hits = self._cascade.detect_multi_scale(
            img=gray, scale_factor=1.2, step_ratio=1, min_size=(self.min_size, self.min_size),
            max_size=gray.shape, min_neighbor_number=6,
        )
        return [
            Face((float(h["c"]), float(h["r"]), float(h["c"] + h["width"]), float(h["r"] + h["height"])), 1.0)
            for h in hits
        ]


def get_detector(
    name: str = "mtcnn", device: str = "cpu", min_score: float = 0.9, min_size: int = 20
) -> FaceDetector:
    """Build a detector by name (``auto``, ``mtcnn``, ``lbp``); see the module docstring.

    ``min_size`` is the smallest face side in pixels (after big images are shrunk to
    1024 px); ``min_score`` drops MTCNN faces with a lower probability.
    """
    if name == "auto":
        if mtcnn_available():
            return MtcnnDetector(device, min_score, min_size)
        detector = LbpDetector(min_size)
        detector.fallback_reason = (
            f"facenet-pytorch is not installed, so faces are found with the weaker LBP cascade and "
            f"cropped without landmark alignment; run `{MTCNN_INSTALL}` for MTCNN."
        )
        return detector
    if name == "mtcnn":
        return MtcnnDetector(device, min_score, min_size)
    if name == "lbp":
        return LbpDetector(min_size)
    raise CafeError(f"unknown face detector {name!r}: pick one of {', '.join(DETECTOR_NAMES)}.")


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2x3 rotation + uniform scale + translation that best maps ``src`` onto ``dst``.

    Least squares, closed form (Umeyama 1991, "Least-squares estimation of transformation
    parameters between two point patterns"); reflections are excluded.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s_c, d_c = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(d_c.T @ s_c / len(src))
    flip = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rot = u @ flip @ vt
    scale = np.trace(np.diag(sig) @ flip) / (s_c ** 2).sum(1).mean()
    return np.hstack([scale * rot, (mu_d - scale * rot @ mu_s)[:, None]])


def alignment_matrix(face: Face, size: int = 100, margin: float = 0.6) -> np.ndarray:
    """2x3 map from image pixels to crop pixels for :func:`align_face`.

    With landmarks: the similarity fit onto ``RAF_TEMPLATE * size``.  Without: a square of
    side ``(1 + margin) * max(box width, box height)`` centred on the box.  The default
    margin suits the LBP cascade, whose boxes span brows to mouth: on the astronaut photo
    it gives the same framing as the landmark alignment.
    """
    if face.landmarks is not None:
        return similarity_matrix(face.landmarks, RAF_TEMPLATE * size)
    x1, y1, x2, y2 = face.box
    side = (1.0 + margin) * max(x2 - x1, y2 - y1)
    k = size / side
    return np.array([[k, 0.0, size / 2 - k * (x1 + x2) / 2], [0.0, k, size / 2 - k * (y1 + y2) / 2]])


def align_face(image: Image.Image, face: Face, size: int = 100, margin: float = 0.6) -> Image.Image:
    """An RGB ``size`` x ``size`` crop framed like RAF-DB's aligned faces (see ``alignment_matrix``).

    Areas outside the image come out black.  Large faces are box-averaged down first so
    that shrinking a 600 px face to 100 px does not alias.
    """
    forward = alignment_matrix(face, size, margin)
    image = image.convert("RGB")
    scale = float(np.sqrt(abs(np.linalg.det(forward[:, :2]))))  # crop pixels per image pixel
    factor = int(1.0 / scale) if scale < 0.5 else 1
    if factor > 1:
        image = image.reduce(factor)
        forward = forward @ np.diag([factor, factor, 1.0])  # reduced pixel x' covers x = factor * x'
    inverse = np.linalg.inv(np.vstack([forward, [0.0, 0.0, 1.0]]))[:2]
    affine = tuple(inverse.ravel())
    return image.transform((size, size), Image.Transform.AFFINE, affine, Image.Resampling.BICUBIC)


