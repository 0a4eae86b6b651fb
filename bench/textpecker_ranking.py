"""TextPecker ranking: does the reward put a clean text image above the same text with one damaged glyph?

The anomaly detector trains on PIL-drawn lines whose glyph masks are edited in the raster domain (synth.py). This
benchmark measures generalisation away from that: a different renderer (matplotlib rasterising glyph OUTLINES,
``TextPath`` + ``PathPatch``, antialiased Agg), damage made mostly in the vector domain, and only the held-out fonts
(``HELDOUT_FONTS`` for English, ``ZH_HELDOUT_FONTS`` for Chinese, rotated across texts).

Damage types, each on one non-space glyph: ``missing`` (part erased by background-coloured shapes: a band at a random
angle, a blob or 2-3 fragments), ``spurious`` (an extra ink line or arc), ``distort`` (non-affine warp of the outline
vertices), ``blur`` (Gaussian or motion blur of the glyph's box, after rasterisation), ``misalign`` (off the baseline,
rotated or rescaled), ``fuse`` (pushed into its left neighbour) and ``mirror`` (flipped left-right; symmetric glyphs
and b d p q are skipped). Every damage is checked to be visible: at least 15 % of the glyph's ink changes (beyond
one-pixel shifts).

Measures:

* ranking: per (language, damage type), the share of pairs (same font, size, colours, position) with
  ``reward(clean) > reward(damaged)`` strictly (ties fail). ``ranking_min_type`` is the minimum over the
  (language, type) cells. Targets: >= 0.90 per damage type, >= 0.95 overall.
* monotonicity: damage 1, 2 and 3 distinct glyphs of a text (nested, random types): the share of texts with
  r0 > r1 > r2 > r3 (strict) and with r0 >= r1 >= r2 >= r3 and r0 > r3. Target: monotone for >= 90 % of texts.

    OMP_NUM_THREADS=1 python bench/textpecker_ranking.py --out ranking.json --grid ranking.png
    OMP_NUM_THREADS=1 python bench/textpecker_ranking.py --n-texts 3 --lang en      # a quick look
    OMP_NUM_THREADS=1 python bench/textpecker_ranking.py --omega 1                  # the paper's evaluation omega
    OMP_NUM_THREADS=1 python bench/textpecker_ranking.py --tie-break 0.01           # ties ordered by probabilities

Ends with ``ranking_overall=X ranking_min_type=X monotone_strict=X monotone=X``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

EN_TEXTS = (
    "Fresh Bread",
    "EXIT 12",
    "harbor view",
    "Night Owl",
    "Open Daily",
    "PARK HERE",
    "quiet zone",
    "Lemonade",
    "Gate B7",
    "Blue Lagoon",
    "Sunset Drive",
    "FARM MARKET",
    "city hall",
    "Tea Room",
    "Hot Soup",
    "Jazz Club",
    "Platform 4",
    "Wild Honey",
    "Keep Left",
    "snow day",
    "Green Valley",
    "Bike Lane",
    "ROOM 305",
    "Maple Street",
)
ZH_TEXTS = (
    "开心",
    "地铁站",
    "游泳池",
    "外卖",
    "美食街",
    "体育馆",
    "牛肉面",
    "儿童乐园",
    "洗手间",
    "植物园",
    "网球场",
    "早餐店",
)
DAMAGES = ("missing", "spurious", "distort", "blur", "misalign", "fuse", "mirror")
MIRROR_TWINS = frozenset("bdpq")  # a flipped b is a d: a different letter, not a damaged one
MIN_CHANGE = 0.15  # a damaged glyph differs from the clean one in at least this share of its ink
TRIES = 6  # parameter draws per glyph before another glyph is tried
DPI = 100
HEIGHT = 160
MIN_WIDTH = 640


@dataclass(frozen=True)
class Glyph:
    ch: str
    path: Any  # matplotlib Path in canvas pixels (y up); None for a space


@dataclass(frozen=True)
class Stroke:
    path: Any  # an open matplotlib Path in canvas pixels
    width: float  # line width in pixels


@dataclass(frozen=True)
class Blur:
    box: tuple[int, int, int, int]  # image pixels (x0, y0, x1, y1), y down
    sigma: float  # Gaussian blur; 0 when motion blur
    length: float = 0.0  # motion blur length in pixels; 0 when Gaussian
    angle: float = 0.0  # motion blur direction in degrees


@dataclass(frozen=True)
class Scene:
    width: int
    height: int
    bg: tuple[int, int, int]
    ink: tuple[int, int, int]
    size: float
    font: str
    glyphs: tuple[Glyph, ...]
    erasures: tuple[Any, ...] = ()  # closed Paths painted in the background colour over the glyphs
    strokes: tuple[Stroke, ...] = ()
    blurs: tuple[Blur, ...] = ()


@dataclass
class Damaged:
    scene: Scene
    image: Any
    index: int  # the damaged glyph
    kind: str


@dataclass
class Pair:
    lang: str
    text: str
    font: str
    kind: str
    index: int
    clean: Any
    damaged: Any
    scores: list[Any] = field(default_factory=list)  # clean, damaged


# ----------------------------------------------------------------------------------------------- rendering


def layout(text: str, font: Path, rng: random.Random) -> Scene:
    """The text set left to right as glyph outlines, at a random size, position and colours."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath, TextToPath

    size = rng.uniform(40, 64)
    prop = FontProperties(fname=str(font), size=size)
    measure = TextToPath()
    advances = [measure.get_text_width_height_descent(ch, prop, ismath=False)[0] for ch in text]
    margin = rng.uniform(24, 64)
    width = max(MIN_WIDTH, math.ceil(sum(advances) + 2 * margin))
    x = rng.uniform(margin, width - sum(advances) - margin)
    baseline = HEIGHT / 2 - 0.3 * size + rng.uniform(-8, 8)
    glyphs = []
    for ch, advance in zip(text, advances, strict=True):
        path = None if ch.isspace() else TextPath((x, baseline), ch, size=size, prop=prop)
        glyphs.append(Glyph(ch, path))
        x += advance
    bg = tuple(rng.randint(205, 255) for _ in range(3))
    ink = tuple(rng.randint(0, 70) for _ in range(3))
    return Scene(width, HEIGHT, bg, ink, size, font.name, tuple(glyphs))  # type: ignore[arg-type]


def _rgb(color: tuple[int, int, int]) -> tuple[float, ...]:
    return tuple(c / 255 for c in color)


def render(scene: Scene) -> Any:
    """Rasterise the scene with matplotlib (Agg) to a PIL RGB image of scene.width x scene.height pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import PathPatch
    from PIL import Image

    fig = Figure(figsize=(scene.width / DPI, scene.height / DPI), dpi=DPI, facecolor=_rgb(scene.bg))
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.set_xlim(0, scene.width)
    ax.set_ylim(0, scene.height)
    ink, bg = _rgb(scene.ink), _rgb(scene.bg)
    for glyph in scene.glyphs:
        if glyph.path is not None:
            ax.add_patch(PathPatch(glyph.path, facecolor=ink, edgecolor="none", linewidth=0))
    for shape in scene.erasures:
        ax.add_patch(PathPatch(shape, facecolor=bg, edgecolor="none", linewidth=0))
    for stroke in scene.strokes:
        width = stroke.width * 72 / DPI  # points
        ax.add_patch(PathPatch(stroke.path, fill=False, edgecolor=ink, linewidth=width, capstyle="round"))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, facecolor=fig.get_facecolor())
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB")
    if image.size != (scene.width, scene.height):
        image = image.resize((scene.width, scene.height))
    for blur in scene.blurs:
        image = apply_blur(image, blur)
    return image


def _motion_kernel(length: float, angle: float) -> np.ndarray:
    import cv2

    size = int(math.ceil(length)) | 1
    kernel = np.zeros((size, size), np.float32)
    c, half = size // 2, length / 2
    dx, dy = half * math.cos(math.radians(angle)), half * math.sin(math.radians(angle))
    cv2.line(kernel, (round(c - dx), round(c - dy)), (round(c + dx), round(c + dy)), 1.0, 1, cv2.LINE_AA)
    return kernel / kernel.sum()


def apply_blur(image: Any, blur: Blur) -> Any:
    """Blur the box (feathered edge); the rest of the image stays as it was."""
    import cv2
    from PIL import Image, ImageDraw, ImageFilter

    x0, y0, x1, y1 = blur.box
    spread = blur.length / 2 if blur.length else blur.sigma
    pad = int(math.ceil(3 * spread + 2))
    outer = (max(0, x0 - pad), max(0, y0 - pad), min(image.width, x1 + pad), min(image.height, y1 + pad))
    crop = image.crop(outer)
    if blur.length:
        array = cv2.filter2D(np.asarray(crop), -1, _motion_kernel(blur.length, blur.angle))
        blurred = Image.fromarray(array)
    else:
        blurred = crop.filter(ImageFilter.GaussianBlur(blur.sigma))
    mask = Image.new("L", crop.size, 0)
    box = (x0 - outer[0] - spread, y0 - outer[1] - spread, x1 - outer[0] + spread, y1 - outer[1] + spread)
    ImageDraw.Draw(mask).rectangle(box, fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(max(1.0, spread / 2)))
    out = image.copy()
    out.paste(blurred, outer[:2], mask)
    return out


def _luma(color: tuple[int, int, int]) -> float:
    return (299 * color[0] + 587 * color[1] + 114 * color[2]) / 1000


def ink_level(image: Any, scene: Scene) -> np.ndarray:
    """Per pixel, 0 = background colour, 1 = ink colour."""
    luma = np.asarray(image.convert("L"), dtype=np.float32)
    bg, ink = _luma(scene.bg), _luma(scene.ink)
    return np.clip((bg - luma) / (bg - ink), 0.0, 1.0)


def image_box(scene: Scene, extents: Any, pad: float) -> tuple[int, int, int, int]:
    """A canvas Bbox (y up) as an image box (x0, y0, x1, y1), y down, padded and clipped to the image."""
    x0 = max(0, math.floor(extents.x0 - pad))
    x1 = min(scene.width, math.ceil(extents.x1 + pad))
    y0 = max(0, math.floor(scene.height - extents.y1 - pad))
    y1 = min(scene.height, math.ceil(scene.height - extents.y0 + pad))
    return x0, y0, x1, y1


# ----------------------------------------------------------------------------------------------- damage


def _with_glyph(scene: Scene, index: int, path: Any) -> Scene:
    glyphs = list(scene.glyphs)
    glyphs[index] = Glyph(glyphs[index].ch, path)
    return replace(scene, glyphs=tuple(glyphs))


def _outline_points(path: Any, step: float) -> list[np.ndarray]:
    """The glyph's closed contours as polygons with a vertex at least every ``step`` pixels."""
    polygons = []
    for polygon in path.to_polygons(closed_only=True):
        pieces = []
        for a, b in zip(polygon[:-1], polygon[1:], strict=True):
            n = max(1, math.ceil(float(np.hypot(*(b - a))) / step))
            pieces.append(a + (b - a) * (np.arange(n)[:, None] / n))
        pieces.append(polygon[-1:])
        polygons.append(np.concatenate(pieces))
    return polygons


def _polygon_path(points: np.ndarray) -> Any:
    from matplotlib.path import Path as MplPath

    return MplPath(np.vstack([points, points[:1]]), closed=True)


def _ellipse(center: np.ndarray, rx: float, ry: float, angle: float) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
    c, s = math.cos(angle), math.sin(angle)
    x, y = rx * np.cos(t), ry * np.sin(t)
    return np.stack([center[0] + c * x - s * y, center[1] + s * x + c * y], axis=1)


def _erase_shapes(bb: Any, path: Any, size: float, rng: random.Random) -> list[np.ndarray]:
    center = np.array([(bb.x0 + bb.x1) / 2, (bb.y0 + bb.y1) / 2])
    mode = rng.choice(("band", "blob", "fragments"))
    if mode == "band":
        theta = rng.uniform(0, math.pi)
        along, normal = np.array([math.cos(theta), math.sin(theta)]), np.array([-math.sin(theta), math.cos(theta)])
        extent = abs(normal[0]) * bb.width + abs(normal[1]) * bb.height
        thickness = rng.uniform(0.25, 0.45) * extent
        mid = center + rng.uniform(-0.25, 0.25) * extent * normal
        reach = 2 * size * along
        half = thickness / 2 * normal
        return [np.array([mid - reach - half, mid + reach - half, mid + reach + half, mid - reach + half])]
    if mode == "blob":
        jitter = np.array([rng.uniform(-0.25, 0.25) * bb.width, rng.uniform(-0.25, 0.25) * bb.height])
        rx = rng.uniform(0.2, 0.35) * max(bb.width, 0.5 * size)
        ry = rng.uniform(0.2, 0.35) * max(bb.height, 0.5 * size)
        return [_ellipse(center + jitter, rx, ry, rng.uniform(0, math.pi))]
    points = np.concatenate(_outline_points(path, 2.0))
    shapes = []
    for _ in range(rng.randint(2, 3)):
        radius = rng.uniform(0.08, 0.14) * size
        shapes.append(_ellipse(points[rng.randrange(len(points))], radius, radius * rng.uniform(0.7, 1.3), 0.0))
    return shapes


def missing(scene: Scene, index: int, rng: random.Random) -> Scene | None:
    """Part of the glyph erased by background-coloured shapes, clipped to the glyph's box."""
    from matplotlib.transforms import Bbox

    path = scene.glyphs[index].path
    bb = path.get_extents()
    clip = Bbox.from_extents(bb.x0 - 1, bb.y0 - 1, bb.x1 + 1, bb.y1 + 1)
    shapes = []
    for points in _erase_shapes(bb, path, scene.size, rng):
        clipped = _polygon_path(points).clip_to_bbox(clip, inside=True)
        if len(clipped.vertices):
            shapes.append(clipped)
    return replace(scene, erasures=scene.erasures + tuple(shapes)) if shapes else None


def spurious(scene: Scene, index: int, rng: random.Random) -> Scene | None:
    """An extra ink stroke (a line or an arc) over or next to the glyph."""
    from matplotlib.path import Path as MplPath

    bb, size = scene.glyphs[index].path.get_extents(), scene.size
    width = rng.uniform(0.065, 0.095) * size
    if rng.random() < 0.5:
        start = np.array([rng.uniform(bb.x0, bb.x1), rng.uniform(bb.y0, bb.y1)])
        theta, length = rng.uniform(0, 2 * math.pi), rng.uniform(0.45, 0.85) * size
        points = np.array([start, start + length * np.array([math.cos(theta), math.sin(theta)])])
    else:
        center = np.array([(bb.x0 + bb.x1) / 2, (bb.y0 + bb.y1) / 2]) + [rng.uniform(-0.3, 0.3) * size for _ in "xy"]
        radius, start = rng.uniform(0.2, 0.4) * size, rng.uniform(0, 2 * math.pi)
        t = start + np.linspace(0, math.radians(rng.uniform(100, 200)), 40)
        points = np.stack([center[0] + radius * np.cos(t), center[1] + radius * np.sin(t)], axis=1)
    return replace(scene, strokes=scene.strokes + (Stroke(MplPath(points), width),))


def _displacement(points: np.ndarray, bb: Any, size: float, rng: random.Random) -> np.ndarray:
    amplitude = rng.uniform(0.15, 0.3) * size
    cx, cy = (bb.x0 + bb.x1) / 2, (bb.y0 + bb.y1) / 2
    x, y = points[:, 0], points[:, 1]
    shift = np.zeros_like(points)
    shift[:, 0] = rng.uniform(-0.35, 0.35) * (y - cy)  # shear
    if rng.random() < 0.5:  # sine waves across both axes
        wave_x, wave_y = rng.uniform(0.7, 1.3) * size, rng.uniform(0.7, 1.3) * size
        shift[:, 0] += amplitude * np.sin(2 * math.pi * (y - cy) / wave_y + rng.uniform(0, 2 * math.pi))
        shift[:, 1] += 0.6 * amplitude * np.sin(2 * math.pi * (x - cx) / wave_x + rng.uniform(0, 2 * math.pi))
    else:  # elastic: a few smooth Gaussian bumps
        for _ in range(3):
            center = np.array([rng.uniform(bb.x0, bb.x1), rng.uniform(bb.y0, bb.y1)])
            reach, theta = rng.uniform(0.25, 0.45) * size, rng.uniform(0, 2 * math.pi)
            weight = np.exp(-np.sum((points - center) ** 2, axis=1) / (2 * reach**2))
            shift += amplitude * weight[:, None] * np.array([math.cos(theta), math.sin(theta)])
    return points + shift


def distort(scene: Scene, index: int, rng: random.Random) -> Scene | None:
    """A non-affine warp of the densified outline: shear plus sine or elastic displacement."""
    from matplotlib.path import Path as MplPath

    path = scene.glyphs[index].path
    bb = path.get_extents()
    contours = _outline_points(path, 1.5)
    warped = _displacement(np.concatenate(contours), bb, scene.size, rng)
    cuts = np.cumsum([len(c) for c in contours])[:-1]
    new = MplPath.make_compound_path(*[MplPath(c, closed=True) for c in np.split(warped, cuts)])
    return _with_glyph(scene, index, new)


def blur(scene: Scene, index: int, rng: random.Random) -> Scene | None:
    """Gaussian or motion blur of the glyph's box, applied to the rasterised image."""
    box = image_box(scene, scene.glyphs[index].path.get_extents(), 1)
    if rng.random() < 0.6:
        effect = Blur(box, rng.uniform(0.08, 0.15) * scene.size)
    else:
        effect = Blur(box, 0.0, rng.uniform(0.3, 0.5) * scene.size, rng.uniform(0, 180))
    return replace(scene, blurs=scene.blurs + (effect,))


def misalign(scene: Scene, index: int, rng: random.Random) -> Scene | None:
    """The glyph off the baseline, rotated, or scaled about its centre."""
    from matplotlib.transforms import Affine2D

    path = scene.glyphs[index].path
    bb = path.get_extents()
    cx, cy = (bb.x0 + bb.x1) / 2, (bb.y0 + bb.y1) / 2
    mode = rng.choice(("shift", "rotate", "scale"))
    move = Affine2D().translate(-cx, -cy)
    if mode == "shift":
        move.translate(0, rng.choice((-1, 1)) * rng.uniform(0.25, 0.45) * scene.size)
    elif mode == "rotate":
        move.rotate_deg(rng.choice((-1, 1)) * rng.uniform(20, 45))
    else:
        move.scale(rng.uniform(0.5, 0.65) if rng.random() < 0.5 else rng.uniform(1.4, 1.6))
    return _with_glyph(scene, index, path.transformed(move.translate(cx, cy)))


def fuse(scene: Scene, index: int, rng: random.Random) -> Scene | None:
    """The glyph moved left until it overlaps its (non-space) left neighbour by 35-60 % of its width."""
    from matplotlib.transforms import Affine2D

    if index == 0 or scene.glyphs[index - 1].path is None:
        return None
    path = scene.glyphs[index].path
    bb, left = path.get_extents(), scene.glyphs[index - 1].path.get_extents()
    dx = left.x1 - bb.x0 - rng.uniform(0.35, 0.6) * bb.width
    return _with_glyph(scene, index, path.transformed(Affine2D().translate(dx, 0)))


def mirror(scene: Scene, index: int, rng: random.Random) -> Scene | None:
    """The glyph flipped left-right about its centre (not b d p q, which flip into other letters)."""
    from matplotlib.transforms import Affine2D

    glyph = scene.glyphs[index]
    if glyph.ch in MIRROR_TWINS:
        return None
    bb = glyph.path.get_extents()
    cx = (bb.x0 + bb.x1) / 2
    flip = Affine2D().translate(-cx, 0).scale(-1, 1).translate(cx, 0)
    return _with_glyph(scene, index, glyph.path.transformed(flip))


EDITS = {
    "missing": missing,
    "spurious": spurious,
    "distort": distort,
    "blur": blur,
    "misalign": misalign,
    "fuse": fuse,
    "mirror": mirror,
}


def glyph_ink(scene: Scene, index: int) -> int:
    """Ink pixels of glyph ``index`` drawn alone."""
    alone = tuple(g if i == index else Glyph(g.ch, None) for i, g in enumerate(scene.glyphs))
    lone = replace(scene, glyphs=alone, erasures=(), strokes=(), blurs=())
    return int((ink_level(render(lone), lone) > 0.5).sum())


def changed_share(before: Scene, after: Scene, images: tuple[Any, Any], index: int, ink: int) -> float:
    """Changed pixels around the glyph (old and new outline, new strokes) as a share of the glyph's ink; ink that
    appears or disappears with no ink within one pixel on the other side counts, so near-symmetric glyphs that a
    flip only shifts by a pixel are not counted as damaged."""
    import cv2
    from matplotlib.transforms import Bbox

    boxes = [before.glyphs[index].path.get_extents(), after.glyphs[index].path.get_extents()]
    boxes += [s.path.get_extents() for s in after.strokes[len(before.strokes) :]]
    x0, y0, x1, y1 = image_box(after, Bbox.union(boxes), 0.15 * after.size)
    a = np.ascontiguousarray(ink_level(images[0], before)[y0:y1, x0:x1])
    b = np.ascontiguousarray(ink_level(images[1], after)[y0:y1, x0:x1])
    near = np.ones((3, 3), np.uint8)  # ink within one pixel is not a change: sub-pixel shifts and edge rounding
    added, removed = b - cv2.dilate(a, near) > 0.35, a - cv2.dilate(b, near) > 0.35
    return float((added | removed).sum()) / max(ink, 1)


def damage(scene: Scene, kind: str, rng: random.Random, exclude: set[int], clean: Any = None) -> Damaged | None:
    """Damage one non-space glyph not in ``exclude`` visibly; None if no glyph takes this damage."""
    candidates = [i for i, g in enumerate(scene.glyphs) if g.path is not None and i not in exclude]
    rng.shuffle(candidates)
    clean = render(scene) if clean is None else clean
    for index in candidates:
        ink = glyph_ink(scene, index)
        for _ in range(1 if kind == "mirror" else TRIES):
            after = EDITS[kind](scene, index, rng)
            if after is None:
                break
            image = render(after)
            if changed_share(scene, after, (clean, image), index, ink) >= MIN_CHANGE:
                return Damaged(after, image, index, kind)
    return None


# ----------------------------------------------------------------------------------------------- benchmark


def _rng(*parts: object) -> random.Random:
    return random.Random(":".join(map(str, parts)))


def make_pairs(lang: str, texts: tuple[str, ...], fonts: list[Path], seed: int) -> tuple[list[Pair], list[str]]:
    pairs, skipped = [], []
    for t, text in enumerate(texts):
        for kind in DAMAGES:
            rng = _rng(seed, lang, t, kind)
            scene = layout(text, fonts[t % len(fonts)], rng)
            clean = render(scene)
            result = damage(scene, kind, rng, set(), clean)
            if result is None:
                skipped.append(f"{lang} {text!r} {kind}")
                continue
            pairs.append(Pair(lang, text, scene.font, kind, result.index, clean, result.image))
    return pairs, skipped


def make_chain(lang: str, t: int, text: str, fonts: list[Path], seed: int) -> dict[str, Any] | None:
    """Clean, then 1, 2 and 3 damaged glyphs (nested); None if the text cannot take three."""
    rng = _rng(seed, lang, t, "monotone")
    scene = layout(text, fonts[t % len(fonts)], rng)
    if sum(g.path is not None for g in scene.glyphs) < 3:
        return None
    images, done, kinds = [render(scene)], set(), []
    for _ in range(3):
        step = None
        for kind in rng.sample(DAMAGES, len(DAMAGES)):
            step = damage(scene, kind, rng, done, images[-1])
            if step is not None:
                break
        if step is None:
            return None
        scene = step.scene
        images.append(step.image)
        done.add(step.index)
        kinds.append(f"{step.kind}@{step.index}")
    return {"lang": lang, "text": text, "font": scene.font, "damages": kinds, "images": images}


def score_all(
    images: list[Any],
    targets: list[str],
    batch: int,
    omega: float = 5.0,
    weights: str | None = None,
    anomaly_count: str = "flags",
    unread: str = "anomaly",
    tie_break: float = 0.0,
) -> list[Any]:
    from verirl.rewards.textpecker import TextPecker
    from verirl.rewards.textpecker.detector import LearnedDetector

    detector = LearnedDetector(weights) if weights else None
    scorer = TextPecker(
        omega=omega, detector=detector, anomaly_count=anomaly_count, unread=unread, tie_break=tie_break
    )
    if weights:  # the learned detector compares against the target's characters
        scorer.detector.index = scorer.backend.recognizer.index
    out: list[Any] = []
    for i in range(0, len(images), batch):
        out += scorer.score(images[i : i + batch], targets[i : i + batch])
    return out


def _value(score: Any) -> float:
    return float("nan") if score.reward is None else float(score.reward)


def ranking_table(pairs: list[Pair], langs: list[str]) -> dict[str, Any]:
    cells: dict[str, Any] = {}
    for lang in langs:
        for kind in DAMAGES:
            rows = [p for p in pairs if p.lang == lang and p.kind == kind]
            if not rows:
                continue
            wins = sum(_value(p.scores[0]) > _value(p.scores[1]) for p in rows)
            cells[f"{lang}/{kind}"] = {
                "share": wins / len(rows),
                "wins": wins,
                "n": len(rows),
                "mean_clean": float(np.nanmean([_value(p.scores[0]) for p in rows])),
                "mean_damaged": float(np.nanmean([_value(p.scores[1]) for p in rows])),
            }
    overall = {}
    for lang in [*langs, "all"]:
        rows = [p for p in pairs if lang in ("all", p.lang)]
        wins = sum(_value(p.scores[0]) > _value(p.scores[1]) for p in rows)
        overall[lang] = {"share": wins / len(rows) if rows else float("nan"), "wins": wins, "n": len(rows)}
    minimum = min((c["share"] for c in cells.values()), default=float("nan"))
    return {"cells": cells, "overall": overall, "min_type": minimum}


def monotone_figures(chains: list[dict[str, Any]]) -> dict[str, Any]:
    strict = loose = 0
    for chain in chains:
        r = chain["rewards"]
        strict += all(a > b for a, b in zip(r, r[1:], strict=False))
        loose += all(a >= b for a, b in zip(r, r[1:], strict=False)) and r[0] > r[-1]
    n = len(chains)
    return {"n": n, "strict": strict / n if n else float("nan"), "monotone": loose / n if n else float("nan")}


def clean_reads(pairs: list[Pair], langs: list[str]) -> dict[str, Any]:
    """How well the clean images read: mean semantic score and the share read exactly."""
    out = {}
    for lang in langs:
        scores = [p.scores[0] for p in pairs if p.lang == lang]
        semantic = [s.semantic if s.semantic is not None else 0.0 for s in scores]
        out[lang] = {
            "mean_semantic": float(np.mean(semantic)) if semantic else float("nan"),
            "exact": sum(s == 1.0 for s in semantic),
            "n": len(semantic),
            "mean_structural": float(np.mean([s.structural or 0.0 for s in scores])) if scores else float("nan"),
        }
    return out


def print_report(table: dict[str, Any], mono: dict[str, Any], reads: dict[str, Any]) -> None:
    print(f"{'language/type':<16} {'share':>6} {'wins/n':>8} {'clean':>7} {'damaged':>8}")
    for name, c in table["cells"].items():
        wins = f"{c['wins']}/{c['n']}"
        print(f"{name:<16} {c['share']:6.3f} {wins:>8} {c['mean_clean']:7.3f} {c['mean_damaged']:8.3f}")
    for lang, o in table["overall"].items():
        print(f"overall {lang:<8} {o['share']:6.3f} {o['wins']:>4}/{o['n']:<3}")
    print(f"minimum over (language, type): {table['min_type']:.3f}")
    for lang, r in reads.items():
        print(
            f"clean {lang}: read exactly {r['exact']}/{r['n']}, mean semantic {r['mean_semantic']:.3f}, "
            f"mean structural {r['mean_structural']:.3f}"
        )
    print(f"monotone over {mono['n']} texts: strict {mono['strict']:.3f}, non-strict {mono['monotone']:.3f}")


def _score_row(score: Any) -> dict[str, Any]:
    return {
        k: getattr(score, k)
        for k in ("reward", "semantic", "structural", "recognized", "unread", "expected_anomalies")
    }


def write_grid(pairs: list[Pair], langs: list[str], path: str) -> None:
    """One row per damage type: clean | damaged for the first text of each language, rewards underneath."""
    from PIL import Image, ImageDraw, ImageFont

    cell_w, cell_h, label_h, head_h, left_w = 400, 100, 22, 26, 90
    columns = [(lang, side) for lang in langs for side in ("clean", "damaged")]
    grid = Image.new("RGB", (left_w + cell_w * len(columns), head_h + (cell_h + label_h) * len(DAMAGES)), "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default(size=15)
    for c, (lang, side) in enumerate(columns):
        draw.text((left_w + c * cell_w + 6, 4), f"{lang} {side}", fill="black", font=font)
    for r, kind in enumerate(DAMAGES):
        top = head_h + r * (cell_h + label_h)
        draw.text((6, top + cell_h // 2), kind, fill="black", font=font)
        for c, (lang, side) in enumerate(columns):
            pair = next((p for p in pairs if p.lang == lang and p.kind == kind), None)
            if pair is None:
                continue
            image = (pair.clean if side == "clean" else pair.damaged).copy()
            image.thumbnail((cell_w - 8, cell_h - 4))
            grid.paste(image, (left_w + c * cell_w + 4, top + 2))
            score = pair.scores[0 if side == "clean" else 1]
            label = f"R={_value(score):.2f} S_E={score.semantic or 0:.2f} S_Q={score.structural or 0:.2f}"
            draw.text((left_w + c * cell_w + 6, top + cell_h), label, fill="black", font=font)
    grid.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-texts", type=int, default=None, help="the first N texts of each language (default all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", help="write all figures and per-pair rows to this JSON file")
    parser.add_argument("--grid", help="write an example grid (PNG) of every damage type")
    parser.add_argument("--lang", choices=("en", "zh", "both"), default="both")
    parser.add_argument("--omega", type=float, default=5.0, help="the reward's omega (5 trains, 1 evaluates)")
    parser.add_argument("--weights", help="a detector weights file (default: the shipped one)")
    parser.add_argument("--anomaly-count", choices=("flags", "expected"), default="flags", help="N_a in S_Q")
    parser.add_argument(
        "--unread", choices=("anomaly", "ignore"), default="anomaly", help="target characters the OCR did not read"
    )
    parser.add_argument("--tie-break", type=float, default=0.0, help="the reward's tie_break share (0: the paper's)")
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    from verirl.rewards.textpecker.synth import HELDOUT_FONTS, ZH_HELDOUT_FONTS, font_paths

    start = time.perf_counter()
    sources = {"en": (EN_TEXTS, HELDOUT_FONTS), "zh": (ZH_TEXTS, ZH_HELDOUT_FONTS)}
    langs = ["en", "zh"] if args.lang == "both" else [args.lang]
    pairs, skipped, chains = [], [], []
    for lang in langs:
        texts, names = sources[lang]
        texts, fonts = texts[: args.n_texts], font_paths(names)
        made, missed = make_pairs(lang, texts, fonts, args.seed)
        pairs += made
        skipped += missed
        chains += [c for t, text in enumerate(texts) if (c := make_chain(lang, t, text, fonts, args.seed))]
    rendered = time.perf_counter()
    images = [im for p in pairs for im in (p.clean, p.damaged)] + [im for c in chains for im in c["images"]]
    targets = [p.text for p in pairs for _ in range(2)] + [c["text"] for c in chains for _ in range(4)]
    scores = score_all(
        images, targets, args.batch, args.omega, args.weights, args.anomaly_count, args.unread, args.tie_break
    )
    for i, pair in enumerate(pairs):
        pair.scores = scores[2 * i : 2 * i + 2]
    rest = scores[2 * len(pairs) :]
    for i, chain in enumerate(chains):
        chain["scores"] = rest[4 * i : 4 * i + 4]
        chain["rewards"] = [_value(s) for s in chain["scores"]]
    done = time.perf_counter()

    table, mono, reads = ranking_table(pairs, langs), monotone_figures(chains), clean_reads(pairs, langs)
    print_report(table, mono, reads)
    if skipped:
        print(f"skipped (no glyph took the damage visibly): {', '.join(skipped)}")
    print(
        f"{len(images)} images: rendering {rendered - start:.1f} s, scoring {done - rendered:.1f} s "
        f"(incl. model loading), total {done - start:.1f} s"
    )
    if args.out:
        rows = [
            {
                "lang": p.lang,
                "text": p.text,
                "font": p.font,
                "type": p.kind,
                "glyph": p.index,
                "clean": _score_row(p.scores[0]),
                "damaged": _score_row(p.scores[1]),
            }
            for p in pairs
        ]
        chain_rows = [
            {
                **{k: v for k, v in c.items() if k not in ("images", "scores")},
                "steps": [_score_row(s) for s in c["scores"]],
            }
            for c in chains
        ]
        figures = {"ranking": table, "monotone": mono, "clean_reads": reads, "skipped": skipped}
        report = {"args": vars(args), **figures, "pairs": rows, "chains": chain_rows}
        Path(args.out).write_text(json.dumps(report, indent=1, ensure_ascii=False))
    if args.grid:
        write_grid(pairs, langs, args.grid)
    print(
        f"ranking_overall={table['overall']['all']['share']:.3f} ranking_min_type={table['min_type']:.3f} "
        f"monotone_strict={mono['strict']:.3f} monotone={mono['monotone']:.3f}"
    )


if __name__ == "__main__":
    main()
