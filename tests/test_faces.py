"""Face detection, alignment and media reading for `cafe predict`, on real photos from scikit-image.

`astronaut()` is a 512x512 portrait (Eileen Collins): her face spans about x 175-275,
y 55-180.  `coffee()` is a cup of coffee with no face.
"""

from __future__ import annotations

import socket
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from cafe_cache.datasets.base import ImageReadError
from cafe_cache.errors import CafeError
from cafe_cache.predict import faces as faces_mod
from cafe_cache.predict.faces import (
    RAF_TEMPLATE,
    Face,
    align_face,
    alignment_matrix,
    get_detector,
    mtcnn_available,
    similarity_matrix,
)
from cafe_cache.predict.media import VideoReadError, iter_inputs, iter_video_frames, read_image

FACE_REGION = (160, 40, 290, 195)  # x1, y1, x2, y2 that the astronaut's whole face lies within

# Not importorskip: importing facenet_pytorch itself needs `requests`, which cafe avoids needing.
needs_mtcnn = pytest.mark.skipif(not mtcnn_available(), reason="facenet-pytorch is not installed")


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def coffee() -> Image.Image:
    return Image.fromarray(data.coffee())


@pytest.fixture(scope="module")
def mtcnn():
    if not mtcnn_available():
        pytest.skip("facenet-pytorch is not installed")
    return get_detector("mtcnn")


def inside(box, region, slack: float = 0.0) -> bool:
    return (box[0] >= region[0] - slack and box[1] >= region[1] - slack
            and box[2] <= region[2] + slack and box[3] <= region[3] + slack)


def mapped(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


@needs_mtcnn
def test_mtcnn_weights_come_from_the_wheel(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the detector tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert get_detector("mtcnn").name == "mtcnn"


def test_mtcnn_finds_the_astronaut(mtcnn, astronaut):
    [found] = mtcnn.detect([astronaut])
    assert len(found) == 1
    face = found[0]
    assert face.score > 0.9
    assert inside(face.box, FACE_REGION)
    assert face.box[2] - face.box[0] > 60 and face.box[3] - face.box[1] > 60
    marks = face.landmarks
    assert marks.shape == (5, 2)
    assert all(inside((x, y, x, y), face.box) for x, y in marks)
    left_eye, right_eye, nose, mouth_left, mouth_right = marks
    assert left_eye[0] < nose[0] < right_eye[0]  # viewer's left first
    assert mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


@pytest.mark.parametrize("angle", [0, 25])
def test_alignment_puts_landmarks_on_the_template(mtcnn, astronaut, angle):
    image = astronaut.rotate(angle, resample=Image.Resampling.BICUBIC)
    [[face]] = mtcnn.detect([image])
    crop = align_face(image, face, size=100)
    assert crop.size == (100, 100) and crop.mode == "RGB"
    template = RAF_TEMPLATE * 100
    assert np.abs(mapped(alignment_matrix(face, 100), face.landmarks) - template).max() < 6
    # Independent check on the pixels: MTCNN run again on the crop sees level eyes on the template.
    [[again]] = mtcnn.detect([crop])
    eyes = again.landmarks[:2]
    assert abs(eyes[0, 1] - eyes[1, 1]) < 3
    assert np.abs(eyes - template[:2]).max() < 4


def test_no_face_in_coffee(mtcnn, coffee):
    assert mtcnn.detect([coffee]) == [[]]
    assert get_detector("lbp").detect([coffee]) == [[]]


def test_lbp_fallback_finds_the_astronaut(astronaut):
    detector = get_detector("lbp")
    [found] = detector.detect([astronaut])
    on_face = [f for f in found if inside(f.box, FACE_REGION)]
    assert len(on_face) == 1
    face = on_face[0]
    assert face.landmarks is None and face.score == 1.0
    assert face.box[2] - face.box[0] > 60
    crop = align_face(astronaut, face, size=64)
    assert crop.size == (64, 64)


def test_two_faces_side_by_side(mtcnn, astronaut):
    head = astronaut.crop((150, 30, 300, 200))  # 150 x 170
    canvas = Image.new("RGB", (340, 200), (128, 128, 128))
    canvas.paste(head, (10, 15))
    canvas.paste(head.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (180, 15))
    [found] = mtcnn.detect([canvas])
    assert len(found) == 2
    centres = sorted((f.box[0] + f.box[2]) / 2 for f in found)
    assert centres[0] < 170 < centres[1]
    crops = [align_face(canvas, face, size=64) for face in found]
    assert [c.size for c in crops] == [(64, 64), (64, 64)]


def test_batches_of_mixed_sizes_and_big_images(mtcnn, astronaut, coffee):
    small = astronaut.resize((256, 256))
    big = astronaut.resize((2048, 2048))  # shrunk to 1024 for detection, boxes mapped back
    found = mtcnn.detect([astronaut, coffee, small, astronaut, big, Image.new("RGB", (10, 10))])
    assert [len(f) for f in found] == [1, 0, 1, 1, 1, 0]
    box = np.array(found[0][0].box)
    assert np.allclose(np.array(found[2][0].box) * 2, box, atol=8)
    assert np.allclose(np.array(found[4][0].box) / 4, box, atol=8)
    assert np.allclose(found[4][0].landmarks / 4, found[0][0].landmarks, atol=4)


def test_similarity_fit_recovers_a_known_transform():
    angle, scale, shift = np.deg2rad(20), 1.7, np.array([5.0, -3.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = RAF_TEMPLATE * 80
    matrix = similarity_matrix(src, src @ rot.T + shift)
    assert np.allclose(matrix, np.hstack([rot, shift[:, None]]))


def test_box_crop_is_a_square_around_the_box():
    face = Face((10.0, 20.0, 30.0, 60.0), 1.0)
    matrix = alignment_matrix(face, size=50, margin=0.25)  # side 50 px, centred on (20, 40)
    assert np.allclose(mapped(matrix, np.array([[20.0, 40.0], [-5.0, 15.0]])), [[25, 25], [0, 0]])


def test_missing_facenet_says_how_to_install(monkeypatch):
    real_find_spec = faces_mod.importlib.util.find_spec
    monkeypatch.setattr(
        faces_mod.importlib.util, "find_spec",
        lambda name, *a: None if name == "facenet_pytorch" else real_find_spec(name, *a),
    )
    with pytest.raises(CafeError, match=r"pip install --no-deps facenet-pytorch==2\.6\.0.*--detector lbp"):
        get_detector("mtcnn")
    fallback = get_detector("auto")
    assert fallback.name == "lbp" and "facenet-pytorch" in fallback.fallback_reason
    with pytest.raises(CafeError, match="auto, mtcnn, lbp"):
        get_detector("haar")


@needs_mtcnn
def test_auto_prefers_mtcnn():
    detector = get_detector("auto")
    assert detector.name == "mtcnn" and detector.fallback_reason is None


def test_inputs_are_classified_and_never_raise(tmp_path: Path, astronaut):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    astronaut.resize((64, 64)).save(folder / "b_good.png")
    (folder / "a_corrupt.jpg").write_bytes(np.random.default_rng(0).bytes(500))
    (folder / "notes.txt").write_text("hello")
    (folder / ".DS_Store").write_bytes(b"\0")
    (folder / "sub" / "clip.MP4").write_bytes(b"")
    (tmp_path / "empty").mkdir()
    missing = tmp_path / "nope.jpg"

    items = list(iter_inputs([folder, missing, tmp_path / "empty"]))
    got = [(i.path.relative_to(tmp_path).as_posix(), i.kind, i.error is not None) for i in items]
    assert got == [
        ("in/a_corrupt.jpg", "image", False),
        ("in/b_good.png", "image", False),
        ("in/notes.txt", "unsupported", True),
        ("in/sub/clip.MP4", "video", False),
        ("nope.jpg", "missing", True),
        ("empty", "missing", True),
    ]
    assert read_image(folder / "b_good.png").size == (64, 64)
    with pytest.raises(ImageReadError, match="a_corrupt.jpg"):
        read_image(folder / "a_corrupt.jpg")
    with pytest.raises(ImageReadError):
        read_image(missing)


def test_read_image_follows_exif_orientation(tmp_path: Path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: the viewer rotates it 90 degrees clockwise
    Image.new("L", (40, 20)).save(tmp_path / "side.jpg", exif=exif)
    image = read_image(tmp_path / "side.jpg")
    assert image.size == (20, 40) and image.mode == "RGB"


def write_video(path: Path, frames: int = 10, fps: float = 5.0) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 64))
    assert writer.isOpened()
    for i in range(frames):
        frame = np.zeros((64, 64, 3), np.uint8)
        frame[..., 2] = 20 * i + 30  # red channel in BGR order, brighter each frame
        writer.write(frame)
    writer.release()


def test_video_frames_and_timestamps(tmp_path: Path):
    path = tmp_path / "clip.avi"
    write_video(path)
    frames = list(iter_video_frames(path))
    assert [i for i, _, _ in frames] == list(range(10))
    first = np.asarray(frames[0][2])
    assert frames[0][2].size == (64, 64) and first.shape == (64, 64, 3)
    assert first[..., 0].mean() > first[..., 2].mean() + 20  # came back as RGB
    every3 = list(iter_video_frames(path, every=3))
    assert [(i, t) for i, t, _ in every3] == [(i, pytest.approx(i / 5.0)) for i in (0, 3, 6, 9)]
    red = [np.asarray(im)[..., 0].mean() for _, _, im in every3]
    assert red == sorted(red)  # frames 0, 3, 6, 9 in order, not the first four


def test_bad_videos_raise_clear_errors(tmp_path: Path):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(1).bytes(2000))
    with pytest.raises(VideoReadError, match="junk.mp4"):
        list(iter_video_frames(junk))
    with pytest.raises(VideoReadError):
        iter_video_frames(tmp_path / "absent.mp4")
    write_video(tmp_path / "ok.avi", frames=2)
    with pytest.raises(CafeError, match="1 or more"):
        iter_video_frames(tmp_path / "ok.avi", every=0)
