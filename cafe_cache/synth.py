"""Synthetic cartoon faces for the 7 expressions, in several visual domains and real dataset layouts.

This is what ``make demo`` and the tests run on: no real face data is needed to exercise the whole
pipeline.  Each expression is drawn from FACS-style shapes (brows, eyes, mouth, nose wrinkles)
with per-sample jitter, so a class is a distribution rather than one picture.  The domains
(``line``, ``color``, ``lowres``) look clearly different, which gives a built-in cross-domain
task: train on one domain, test on the others.  The files are written in the real RAF-DB and
class-folder layouts so that the real dataset readers are what reads them.

Everything is deterministic: an image's pixels depend only on (seed, domain, split, index).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from .classes import CLASSES, NUM_CLASSES
from .errors import CafeError

SPLIT_NAMES = ("train", "test")
# Lower-case SFEW/MMA-style folder names (not CLASSES' spelling), so the folder reader must map them.
FOLDER_NAMES: tuple[str, ...] = ("surprise", "fear", "disgust", "happy", "sad", "angry", "neutral")
NOTE_FILE = "SYNTH.txt"
SUPERSAMPLE = 2  # draw at 2x and downsample: cheap anti-aliasing


@dataclass(frozen=True)
class Domain:
    """One visual domain: how its faces look and how its files are stored."""

    name: str
    description: str
    size: int  # default image side in pixels
    layout: str  # "rafdb" or "folder": the layout make_demo_sample writes it in
    ext: str  # image file extension in the folder layout


DOMAINS: dict[str, Domain] = {
    "line": Domain("line", "black line drawing on white, RGB", 100, "rafdb", "jpg"),
    "color": Domain("color", "shaded colour faces, random skin tones, cluttered backgrounds",
                    100, "folder", "jpg"),
    "lowres": Domain("lowres", "greyscale, blurred, Gaussian noise, small like FERPlus",
                     48, "folder", "png"),
}
DOMAIN_IDS = {name: i for i, name in enumerate(DOMAINS)}

# -- expression shapes ------------------------------------------------------------------------
# Face-relative units: 1 = half the face width; v grows downwards.  Brow "dy" > 0 raises an end,
# mouth "corner" > 0 lifts the corners, "up"/"down" move the upper/lower lip midpoints.
NEUTRAL: dict[str, float] = {
    "brow_y": -0.50, "brow_inner_dy": 0.0, "brow_outer_dy": 0.0, "brow_arch": 0.02, "brow_inner_x": 0.16,
    "eye_open": 1.0, "eye_w": 0.15,
    "mouth_w": 0.30, "mouth_corner": 0.0, "mouth_up": 0.0, "mouth_down": 0.0, "mouth_round": 1.0,
    "mouth_asym": 0.0,
}
# Per class: the shape at full intensity (only what differs from NEUTRAL), then the chance of
# bared teeth and of nose wrinkles.
EXPRESSIONS: tuple[tuple[dict[str, float], float, float], ...] = (
    # Surprise: raised arched brows, wide round eyes, round open "O" mouth.
    ({"brow_y": -0.70, "brow_arch": 0.12, "eye_open": 1.55, "mouth_w": 0.13, "mouth_up": -0.15,
      "mouth_down": 0.22, "mouth_round": 0.5}, 0.0, 0.0),
    # Fear: raised brows pulled together, inner ends up; wide eyes; wide flat stretched open mouth.
    ({"brow_y": -0.63, "brow_inner_dy": 0.13, "brow_outer_dy": -0.05, "brow_inner_x": 0.07,
      "brow_arch": 0.0, "eye_open": 1.45, "mouth_w": 0.38, "mouth_corner": -0.06, "mouth_up": -0.06,
      "mouth_down": 0.13, "mouth_round": 0.6}, 0.6, 0.0),
    # Disgust: lowered brows, narrowed eyes, nose wrinkles, asymmetric raised upper lip.
    ({"brow_y": -0.40, "brow_inner_dy": -0.05, "brow_inner_x": 0.12, "eye_open": 0.5,
      "mouth_w": 0.26, "mouth_corner": -0.05, "mouth_up": -0.07, "mouth_down": 0.03,
      "mouth_asym": 0.12}, 0.5, 1.0),
    # Happy: relaxed brows, slightly closed eyes, big upward-curved smile.
    ({"brow_y": -0.54, "brow_arch": 0.05, "eye_open": 0.45, "mouth_w": 0.42, "mouth_corner": 0.17,
      "mouth_up": 0.02, "mouth_down": 0.24}, 0.6, 0.0),
    # Sad: inner brow ends raised (slanting down outwards), slightly closed eyes, downturned mouth.
    ({"brow_inner_dy": 0.12, "brow_outer_dy": -0.10, "eye_open": 0.75, "mouth_w": 0.28,
      "mouth_corner": -0.13, "mouth_up": -0.06, "mouth_down": -0.06}, 0.0, 0.0),
    # Anger: brows lowered and pulled together into a V, narrowed eyes, tight flat (or bared) mouth.
    ({"brow_y": -0.38, "brow_inner_dy": -0.15, "brow_outer_dy": 0.07, "brow_inner_x": 0.07,
      "eye_open": 0.55, "mouth_w": 0.24, "mouth_corner": -0.03}, 0.4, 0.0),
    # Neutral: straight brows, normal eyes, straight mouth.
    ({}, 0.0, 0.0),
)
# Per-sample noise (standard deviation) added after the intensity scaling.
JITTER: dict[str, float] = {
    "brow_y": 0.03, "brow_inner_dy": 0.02, "brow_outer_dy": 0.02, "brow_arch": 0.015, "brow_inner_x": 0.015,
    "eye_open": 0.08, "eye_w": 0.012, "mouth_w": 0.025, "mouth_corner": 0.02, "mouth_up": 0.015,
    "mouth_down": 0.015, "mouth_round": 0.05, "mouth_asym": 0.01,
}


def expression_params(label: int, rng: np.random.Generator) -> dict[str, float]:
    """Shape parameters of one face: neutral + intensity * (class - neutral) + jitter.

    The random intensity (0.7 to 1.15) makes weak and strong versions of an expression, so the
    classes are distributions that overlap a little, as real expressions do.
    """
    target, p_teeth, p_wrinkle = EXPRESSIONS[label]
    intensity = rng.uniform(0.7, 1.15)
    p = {k: v + intensity * (target.get(k, v) - v) + rng.normal(0.0, JITTER[k]) for k, v in NEUTRAL.items()}
    p["mouth_asym"] *= rng.choice([-1.0, 1.0])  # which side of the lip is raised
    bared = rng.random() < p_teeth
    if bared and label == 5:  # anger: bared teeth instead of pressed lips
        p["mouth_up"] -= 0.05
        p["mouth_down"] += 0.06
    p["teeth"] = float(bared)
    p["wrinkle"] = float(rng.random() < p_wrinkle)
    return p


# -- drawing ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Style:
    """Colours of one rendered face (RGB tuples); ``None`` fills mean outline only."""

    skin: tuple[int, int, int] | None
    ink: tuple[int, int, int]  # outlines, brows, pupils
    eye_white: tuple[int, int, int] | None
    iris: tuple[int, int, int]
    lips: tuple[int, int, int]
    mouth: tuple[int, int, int]  # inside of an open mouth
    hair: tuple[int, int, int] | None
    shading: float  # 0 = flat fill; more = darker edges


@dataclass(frozen=True)
class FaceBox:
    """Where the face lies on the canvas: centre, half-width ``a``, half-height ``b``, tilt."""

    cx: float
    cy: float
    a: float
    b: float
    angle: float

    def xy(self, u: float, v: float) -> tuple[float, float]:
        return self.cx + u * self.a, self.cy + v * self.a


def _style(domain: str, rng: np.random.Generator) -> Style:
    """Random colours for a domain; ``line`` is always black on white."""
    if domain == "line":
        return Style(None, (0, 0, 0), None, (0, 0, 0), (0, 0, 0), (20, 20, 20), None, 0.0)
    if domain == "color":
        tone = rng.uniform(0.0, 1.0)  # pale to dark skin
        skin = tuple(int(c) for c in np.array([250, 214, 185]) * (1 - tone) + np.array([112, 72, 48]) * tone)
        hair = tuple(int(c) for c in rng.integers(10, 140, 3))
        iris = tuple(int(c) for c in rng.integers(20, 160, 3))
        lips = tuple(int(c) for c in np.array(skin) * 0.4 + np.array([120, 15, 30]) * 0.6)
        return Style(skin, (40, 25, 20), (250, 250, 245), iris, lips, (90, 20, 25), hair, 0.45)
    grey = int(rng.integers(150, 210))
    return Style((grey, grey, grey), (35, 35, 35), (225, 225, 225), (40, 40, 40), (90, 90, 90),
                 (25, 25, 25), (int(rng.integers(30, 90)),) * 3, 0.55)


def _background(domain: str, side: int, rng: np.random.Generator) -> Image.Image:
    """Plain white for ``line``; random shapes and stripes for ``color``; a grey gradient for ``lowres``."""
    if domain == "line":
        return Image.new("RGB", (side, side), (255, 255, 255))
    if domain == "lowres":
        lo, hi = sorted(rng.integers(40, 170, 2))
        ramp = np.linspace(lo, hi, side)[:, None] * np.ones((1, side))
        if rng.random() < 0.5:
            ramp = ramp.T
        return Image.fromarray(np.repeat(ramp[..., None], 3, axis=2).astype(np.uint8))
    img = Image.new("RGB", (side, side), tuple(int(c) for c in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(img)
    if rng.random() < 0.5:  # stripes
        width = int(rng.integers(side // 20, side // 6))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        for x in range(-side, 2 * side, 2 * width):
            slant = side // 2
            draw.polygon([(x, 0), (x + width, 0), (x + width + slant, side), (x + slant, side)], fill=colour)
    for _ in range(int(rng.integers(3, 9))):
        x0, y0 = rng.integers(-side // 4, side, 2)
        w, h = rng.integers(side // 8, side // 2, 2)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([int(x0), int(y0), int(x0 + w), int(y0 + h)], fill=colour)
    return img


def _curve(face: FaceBox, p0: tuple[float, float], p1: tuple[float, float], p2: tuple[float, float],
           n: int = 16) -> list[tuple[float, float]]:
    """Canvas points of a quadratic Bezier given by three face-relative (u, v) points."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    pts = (1 - t) ** 2 * np.array(p0) + 2 * (1 - t) * t * np.array(p1) + t ** 2 * np.array(p2)
    return [face.xy(u, v) for u, v in pts]


def _lip(face: FaceBox, p: dict[str, float], mid: float, n: int = 24) -> list[tuple[float, float]]:
    """A lip line from the left to the right mouth corner through the midpoint offset ``mid``.

    ``mouth_round`` < 1 rounds the shape towards an ellipse; ``mouth_asym`` lifts one side.
    """
    y0, w = 0.55, p["mouth_w"]
    t = np.linspace(-1.0, 1.0, n)
    bump = np.clip(1 - t ** 2, 0.0, 1.0) ** max(p["mouth_round"], 0.2)
    lift = p["mouth_asym"] * np.clip(t, 0, 1) * bump * 2
    v = y0 - p["mouth_corner"] + (mid + p["mouth_corner"]) * bump - lift
    return [face.xy(float(u), float(y)) for u, y in zip(t * w, v)]


def _draw_brows(draw: ImageDraw.ImageDraw, face: FaceBox, p: dict[str, float], style: Style, lw: int) -> None:
    for side in (-1, 1):
        inner = (side * p["brow_inner_x"], p["brow_y"] - p["brow_inner_dy"])
        outer = (side * 0.62, p["brow_y"] - p["brow_outer_dy"])
        mid = ((inner[0] + outer[0]) / 2, (inner[1] + outer[1]) / 2 - 2 * p["brow_arch"])
        colour = tuple(int(c * 0.6) for c in style.hair) if style.hair else style.ink
        draw.line(_curve(face, inner, mid, outer), fill=colour, width=int(lw * 1.8), joint="curve")


def _draw_eyes(draw: ImageDraw.ImageDraw, face: FaceBox, p: dict[str, float], style: Style, lw: int) -> None:
    half_w = p["eye_w"] * face.a
    half_h = max(0.09 * p["eye_open"], 0.015) * face.a
    for side in (-1, 1):
        x, y = face.xy(side * 0.36, -0.18)
        draw.ellipse([x - half_w, y - half_h, x + half_w, y + half_h], fill=style.eye_white,
                     outline=style.ink, width=lw)
        r = min(0.055 * face.a, half_h)
        if style.skin is not None:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=style.iris)
        draw.ellipse([x - r * 0.55, y - r * 0.55, x + r * 0.55, y + r * 0.55], fill=style.ink)


def _draw_nose(draw: ImageDraw.ImageDraw, face: FaceBox, p: dict[str, float], style: Style, lw: int) -> None:
    draw.line([face.xy(0.02, -0.02), face.xy(0.07, 0.22), face.xy(-0.04, 0.25)], fill=style.ink,
              width=lw, joint="curve")
    if p["wrinkle"]:  # disgust: wrinkled nose bridge
        for side in (-1, 1):
            for k in range(3):
                v = -0.04 + 0.07 * k
                draw.line([face.xy(side * 0.10, v), face.xy(side * 0.18, v - 0.04)], fill=style.ink,
                          width=max(1, lw - 1))


def _draw_mouth(draw: ImageDraw.ImageDraw, face: FaceBox, p: dict[str, float], style: Style, lw: int) -> None:
    upper = _lip(face, p, p["mouth_up"])
    lower = _lip(face, p, max(p["mouth_down"], p["mouth_up"]))
    if p["mouth_down"] - p["mouth_up"] < 0.03:  # closed: one line
        middle = [((x1 + x2) / 2, (y1 + y2) / 2) for (x1, y1), (x2, y2) in zip(upper, lower)]
        draw.line(middle, fill=style.lips if style.skin else style.ink, width=int(lw * 1.4), joint="curve")
        return
    inside = (255, 255, 255) if p["teeth"] else style.mouth
    draw.polygon(upper + lower[::-1], fill=inside, outline=style.lips if style.skin else style.ink, width=lw)
    if p["teeth"]:
        middle = [((x1 + x2) / 2, (y1 + y2) / 2) for (x1, y1), (x2, y2) in zip(upper, lower)]
        draw.line(middle[2:-2], fill=style.ink, width=max(1, lw // 2))


def _shaded_face(side: int, face: FaceBox, style: Style) -> Image.Image:
    """RGBA layer with the face ellipse, darker towards its edge (light from the upper left)."""
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    r2 = ((xx - face.cx) / face.a) ** 2 + ((yy - face.cy) / face.b) ** 2
    lit = ((xx - face.cx + 0.3 * face.a) / face.a) ** 2 + ((yy - face.cy + 0.3 * face.b) / face.b) ** 2
    shade = 1.0 - style.shading * np.clip(lit / 2.2, 0.0, 1.0)
    rgb = np.array(style.skin, np.float32) * shade[..., None]
    alpha = np.where(r2 <= 1.0, 255, 0)
    return Image.fromarray(np.dstack([rgb, alpha]).clip(0, 255).astype(np.uint8), "RGBA")


def _face_layer(side: int, face: FaceBox, p: dict[str, float], style: Style, lw: int,
                rng: np.random.Generator) -> Image.Image:
    """The face (hair, head, features) on a transparent layer, upright; the caller tilts it."""
    layer = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    box = [face.cx - face.a, face.cy - face.b, face.cx + face.a, face.cy + face.b]
    for s in (-1, 1):  # ears
        ex, ey = face.xy(s * 0.98, -0.05)
        draw.ellipse([ex - 0.14 * face.a, ey - 0.22 * face.a, ex + 0.14 * face.a, ey + 0.22 * face.a],
                     fill=style.skin and tuple(int(c * 0.9) for c in style.skin), outline=style.ink, width=lw)
    if style.skin is None:
        draw.ellipse(box, fill=(255, 255, 255), outline=style.ink, width=lw)
    else:
        layer.alpha_composite(_shaded_face(side, face, style))
        draw = ImageDraw.Draw(layer)
        draw.ellipse(box, outline=style.ink, width=max(1, lw // 2))
    if style.hair is not None:  # a hair cap over the top of the head, its lower edge above the brows
        top = face.cy - face.b * rng.uniform(1.12, 1.22)
        edge = face.cy - face.a * rng.uniform(0.98, 1.08)
        box = [face.cx - face.a * 1.06, top, face.cx + face.a * 1.06, 2 * edge - top]
        draw.chord(box, 180, 360, fill=style.hair)
    _draw_brows(draw, face, p, style, lw)
    _draw_eyes(draw, face, p, style, lw)
    _draw_nose(draw, face, p, style, lw)
    _draw_mouth(draw, face, p, style, lw)
    return layer


def render(label: int, domain: str, size: int | None = None,
           rng: np.random.Generator | None = None) -> Image.Image:
    """One synthetic face of class ``label`` (cafe_cache.classes order) in ``domain``.

    Returns an RGB image for ``line``/``color`` and a greyscale ("L") one for ``lowres``.  The
    generator draws the same numbers whatever the label, so one generator state gives the same
    pose, colours and background for every class: only the expression changes.
    """
    if domain not in DOMAINS:
        raise CafeError(f"unknown synthetic domain {domain!r}; known: {', '.join(DOMAINS)}")
    rng = rng if rng is not None else np.random.default_rng(0)
    size = size or DOMAINS[domain].size
    side = size * SUPERSAMPLE if domain != "lowres" else max(size, 48) * SUPERSAMPLE
    a = side * rng.uniform(0.27, 0.32)
    face = FaceBox(cx=side / 2 + rng.normal(0, 0.03 * side),
                   cy=side / 2 + rng.normal(0.02 * side, 0.03 * side), a=a,
                   b=a * rng.uniform(1.18, 1.3), angle=rng.uniform(-8.0, 8.0))
    style = _style(domain, rng)
    params = expression_params(label, rng)
    lw = max(1, round(side * rng.uniform(0.014, 0.02) * (1.6 if domain == "lowres" else 1.0)))
    img = _background(domain, side, rng).convert("RGBA")
    layer = _face_layer(side, face, params, style, lw, rng)
    img.alpha_composite(layer.rotate(face.angle, resample=Image.BICUBIC, center=(face.cx, face.cy)))
    img = img.convert("RGB")
    if domain != "lowres":
        return img.resize((size, size), Image.LANCZOS)
    return _degrade(img.convert("L"), size, rng)


def _degrade(img: Image.Image, size: int, rng: np.random.Generator) -> Image.Image:
    """FERPlus-like: blur, shrink, random contrast and Gaussian noise."""
    img = img.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.6, 1.2)))
    img = img.resize((size, size), Image.BILINEAR)
    x = np.asarray(img, np.float32)
    x = (x - x.mean()) * rng.uniform(0.7, 1.1) + x.mean() + rng.normal(0, rng.uniform(3.0, 8.0), x.shape)
    return Image.fromarray(x.clip(0, 255).astype(np.uint8), "L")


def sample_rng(seed: int, domain: str, split: str, index: int) -> np.random.Generator:
    """The generator of one image: its pixels depend on nothing else, not even writing order."""
    return np.random.default_rng([seed, DOMAIN_IDS[domain], SPLIT_NAMES.index(split), index])


# -- writers ----------------------------------------------------------------------------------
Progress = Callable[[int], None]


def _labels(seed: int, domain: str, split: str, per_class: int) -> list[int]:
    """``per_class`` of each label, shuffled deterministically so classes are interleaved."""
    labels = np.repeat(np.arange(NUM_CLASSES), per_class)
    rng = np.random.default_rng([seed, DOMAIN_IDS[domain], 99, SPLIT_NAMES.index(split)])
    return [int(x) for x in rng.permutation(labels)]


def _prepare(root: Path, overwrite: bool) -> None:
    """Create ``root``; an existing non-empty one is replaced only if ``overwrite`` and it is ours."""
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise CafeError(f"{root} exists and is not empty; choose another folder or overwrite it")
        if not (root / NOTE_FILE).is_file():
            raise CafeError(f"{root} is not empty and has no {NOTE_FILE}, so it was not made by "
                            "cafe synth; refusing to delete it")
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)


def _write_note(root: Path, domain: str, layout: str, seed: int, size: int, counts: dict[str, int]) -> None:
    """SYNTH.txt: so nobody mistakes the folder for real face data."""
    d = DOMAINS[domain]
    lines = [
        "SYNTHETIC DATA - cartoon faces, not real people and not a real FER dataset.",
        "",
        f"Made by `cafe synth` (cafe_cache.synth) with seed {seed}.",
        f"Domain: {domain} ({d.description}); {size}x{size} px; written in the {layout} layout.",
        "Images per split: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
        "Classes (id: name): " + ", ".join(f"{i}: {c}" for i, c in enumerate(CLASSES)),
        "The same seed and options regenerate identical files.",
    ]
    (root / NOTE_FILE).write_text("\n".join(lines) + "\n")


def _save(img: Image.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jpg":
        img.save(path, quality=92)
    else:
        img.save(path)


def write_rafdb(root: str | Path, domain: str, n_train_per_class: int, n_test_per_class: int,
                size: int | None = None, seed: int = 0, *, overwrite: bool = False,
                on_image: Progress | None = None) -> list[tuple[str, int, str]]:
    """Write ``domain`` faces in the RAF-DB basic layout below ``root``.

    ``EmoLabel/list_patition_label.txt`` (CRLF, ``train_00001.jpg 5``, label = class id + 1) and
    ``Image/aligned/<stem>_aligned.jpg``.  Returns (relative image path, class id, split) per image.
    """
    root = Path(root)
    size = size or DOMAINS[domain].size
    _prepare(root, overwrite)
    written: list[tuple[str, int, str]] = []
    lines: list[str] = []
    for split, per_class, digits in (("train", n_train_per_class, 5), ("test", n_test_per_class, 4)):
        for i, label in enumerate(_labels(seed, domain, split, per_class)):
            name = f"{split}_{i + 1:0{digits}d}.jpg"
            rel = f"Image/aligned/{name[:-4]}_aligned.jpg"
            _save(render(label, domain, size, sample_rng(seed, domain, split, i)).convert("RGB"), root / rel)
            lines.append(f"{name} {label + 1}")
            written.append((rel, label, split))
            if on_image:
                on_image(1)
    (root / "EmoLabel").mkdir(exist_ok=True)
    (root / "EmoLabel" / "list_patition_label.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    _write_note(root, domain, "RAF-DB", seed, size, _counts(written))
    return written


def write_folder(root: str | Path, domain: str, n_train_per_class: int, n_test_per_class: int,
                 size: int | None = None, seed: int = 0, *, overwrite: bool = False,
                 on_image: Progress | None = None) -> list[tuple[str, int, str]]:
    """Write ``domain`` faces as ``root/{train,test}/<class folder>/<split>_00001.<ext>``.

    Folder names are the lower-case SFEW/MMA ones (``angry``, ``surprise``...), see FOLDER_NAMES.
    Returns (relative image path, class id, split) per image.
    """
    root = Path(root)
    size = size or DOMAINS[domain].size
    _prepare(root, overwrite)
    written: list[tuple[str, int, str]] = []
    for split, per_class in (("train", n_train_per_class), ("test", n_test_per_class)):
        for i, label in enumerate(_labels(seed, domain, split, per_class)):
            rel = f"{split}/{FOLDER_NAMES[label]}/{split}_{i + 1:05d}.{DOMAINS[domain].ext}"
            _save(render(label, domain, size, sample_rng(seed, domain, split, i)), root / rel)
            written.append((rel, label, split))
            if on_image:
                on_image(1)
    _write_note(root, domain, "class-folder", seed, size, _counts(written))
    return written


def _counts(written: list[tuple[str, int, str]]) -> dict[str, int]:
    return {s: sum(1 for w in written if w[2] == s) for s in SPLIT_NAMES}


def contact_sheet(rows: dict[str, list[tuple[Path, int]]], cell: int = 112) -> Image.Image:
    """A labelled grid: one row per domain, one column per class, from (image file, label) pairs."""
    pad, head, left = 4, 18, 56
    width, height = left + NUM_CLASSES * (cell + pad), head + len(rows) * (cell + pad)
    sheet = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for c, name in enumerate(CLASSES):
        draw.text((left + c * (cell + pad) + 4, 3), name, fill=(0, 0, 0), font=font)
    for r, (domain, items) in enumerate(rows.items()):
        y = head + r * (cell + pad)
        draw.text((4, y + cell // 2 - 6), domain, fill=(0, 0, 0), font=font)
        for c in range(NUM_CLASSES):
            path = next((p for p, label in items if label == c), None)
            if path is not None:
                with Image.open(path) as im:
                    tile = im.convert("RGB").resize((cell, cell), Image.NEAREST)
                sheet.paste(tile, (left + c * (cell + pad), y))
    return sheet


def check_demo_folder(out: Path, overwrite: bool) -> None:
    """Refuse an ``out`` that is a file, or a non-empty folder unless ``overwrite`` (``cafe synth --force``:
    the synth-* folders and preview.png in it are replaced)."""
    if out.exists() and not out.is_dir():
        raise CafeError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise CafeError(f"{out} is not empty; pass --force to write into it anyway "
                        "(its synth-* folders and preview.png are replaced) or choose another folder")


def demo_image_count(domains: tuple[str, ...] | list[str], n_train_per_class: int, n_test_per_class: int) -> int:
    """How many images :func:`make_demo_sample` writes."""
    return len(domains) * NUM_CLASSES * (n_train_per_class + n_test_per_class)


def make_demo_sample(root: str | Path, seed: int = 0, n_train_per_class: int = 24,
                     n_test_per_class: int = 8, size: int | None = None,
                     domains: tuple[str, ...] | list[str] = tuple(DOMAINS), *, overwrite: bool = False,
                     on_image: Progress | None = None) -> list[tuple[str, Path, str]]:
    """Write the demo set: ``root/synth-<domain>`` per domain, plus ``root/preview.png``.

    ``line`` goes in the RAF-DB layout, the others in the class-folder layout.  ``size`` None
    keeps each domain's own size (100 px; 48 px for lowres).  Returns one
    (dataset reader name, dataset root, intended cache name) per domain, for ``cafe extract``.
    """
    root = Path(root)
    unknown = [d for d in domains if d not in DOMAINS]
    if unknown or not domains:
        raise CafeError(f"unknown synthetic domain(s) {', '.join(unknown) or '(none given)'}; "
                        f"known: {', '.join(DOMAINS)}")
    datasets: list[tuple[str, Path, str]] = []
    preview: dict[str, list[tuple[Path, int]]] = {}
    for domain in domains:
        layout = DOMAINS[domain].layout
        where = root / f"synth-{domain}"
        write = write_rafdb if layout == "rafdb" else write_folder
        written = write(where, domain, n_train_per_class, n_test_per_class, size, seed,
                        overwrite=overwrite, on_image=on_image)
        preview[domain] = [(where / rel, label) for rel, label, _ in written]
        datasets.append((layout, where, f"synth-{domain}"))
    contact_sheet(preview).save(root / "preview.png")
    return datasets
