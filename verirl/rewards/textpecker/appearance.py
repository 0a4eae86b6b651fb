"""How a synthetic text line looks, whatever its labels: stroke weight, ink and background colours, textures, noise,
blur, JPEG, scale, shear and slight perspective (TextPecker's synthesis engine, :mod:`.synth`).

Our design (the paper's engine extends SynthTIGER, which varies appearance the same way): these changes touch every
glyph of a line alike, so they are never a structural anomaly; they keep the detector from learning the renderer.
Local damage that is applied to pixels (a blurred glyph) runs after colouring and before the whole-line changes, so
it meets the same degradations as the rest of the line.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from typing import Any

import numpy as np


def _colours(rng: random.Random) -> tuple[np.ndarray, np.ndarray]:
    """(background, ink) RGB with a luminance contrast of at least 90; sometimes light ink on a dark ground."""
    while True:
        background = np.array([rng.randint(170, 255) for _ in range(3)], dtype=np.float32)
        if rng.random() < 0.25:  # coloured ink
            ink = np.array([rng.randint(0, 200) for _ in range(3)], dtype=np.float32)
        else:
            ink = np.array([rng.randint(0, 80) for _ in range(3)], dtype=np.float32)
        if rng.random() < 0.12:
            background, ink = 255 - background, 255 - ink
        luma = np.array([0.299, 0.587, 0.114], dtype=np.float32)
        if abs(float(background @ luma - ink @ luma)) >= 90:
            return background, ink


def _background(shape: tuple[int, int], colour: np.ndarray, rng: random.Random) -> np.ndarray:
    """A flat, gradient, textured (low-frequency noise) or faintly striped ground."""
    import cv2

    h, w = shape
    ground = np.broadcast_to(colour, (h, w, 3)).astype(np.float32).copy()
    kind = rng.choice(("flat", "flat", "gradient", "texture", "stripes"))
    sign = -1.0 if colour.mean() > 128 else 1.0  # vary towards the middle, away from the ink
    if kind == "gradient":
        ramp = np.linspace(0, 1, w if rng.random() < 0.7 else h, dtype=np.float32)
        ramp = ramp[None, :, None] if ramp.size == w else ramp[:, None, None]
        ground += sign * rng.uniform(15, 45) * ramp
    elif kind == "texture":
        cells = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 1, (max(2, h // 8), max(2, w // 8)))
        noise = cv2.resize(cells.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        ground += sign * rng.uniform(6, 18) * np.abs(noise)[..., None]
    elif kind == "stripes":
        period = rng.randint(4, 12)
        rows = (np.arange(h) % period == 0).astype(np.float32)[:, None, None]
        ground += sign * rng.uniform(10, 30) * rows
    return ground


def _jpeg(image: Any, rng: random.Random) -> Any:
    from PIL import Image

    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=rng.randint(30, 90))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _perspective(image: Any, rng: random.Random, fill: tuple[int, ...]) -> Any:
    from PIL import Image

    w, h = image.size
    jitter = [rng.uniform(-0.04, 0.04) * (w if k % 2 == 0 else h) for k in range(8)]
    corners = [(0, 0), (w, 0), (w, h), (0, h)]
    src = [(x + jitter[2 * i], y + jitter[2 * i + 1]) for i, (x, y) in enumerate(corners)]
    # PIL wants the coefficients that map output to input corners
    a = []
    for (x, y), (u, v) in zip(corners, src, strict=True):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    coeffs = np.linalg.solve(np.array(a, dtype=np.float64), np.array([c for p in src for c in p], dtype=np.float64))
    bicubic = Image.Resampling.BICUBIC
    return image.transform((w, h), Image.Transform.PERSPECTIVE, tuple(coeffs), bicubic, fillcolor=fill)


def finish_line(
    ink: np.ndarray, rng: random.Random, size: int, local: Callable[[np.ndarray], Any] | None = None
) -> Any:
    """The PIL RGB image of a line from its boolean ink mask; ``local(pixels)`` edits the (H, W, 3) float pixels in
    place after colouring (per-glyph damage such as blur)."""
    import cv2
    from PIL import Image, ImageFilter

    if rng.random() < 0.3:  # stroke weight varies between fonts and renderers: thicken or thin the whole line
        op = cv2.dilate if rng.random() < 0.6 or size < 36 else cv2.erode
        ink = op(ink.astype(np.uint8), np.ones((2, 2), np.uint8)).astype(bool)
    background, colour = _colours(rng)
    ground = _background(ink.shape, background, rng)
    coverage = cv2.GaussianBlur(ink.astype(np.float32), (0, 0), 0.6)[..., None]  # anti-aliased edges
    pixels = ground * (1 - coverage) + colour * coverage
    if local is not None:
        local(pixels)
    pixels += np.random.default_rng(rng.randint(0, 2**31)).normal(0, rng.uniform(0, 6), pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    fill = tuple(int(v) for v in background)
    height, width = ink.shape
    shear = rng.uniform(-0.2, 0.2)
    if abs(shear) > 0.05:
        image = image.transform(
            (width + int(abs(shear) * height), height),
            Image.Transform.AFFINE,
            (1, shear, -abs(shear) * height if shear > 0 else 0, 0, 1, 0),
            fillcolor=fill,
        )
    if rng.random() < 0.25:
        image = _perspective(image, rng, fill)
    if rng.random() < 0.4:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    if rng.random() < 0.2:  # rendered small and scaled up
        w, h = image.size
        factor = rng.uniform(0.55, 0.9)
        small = image.resize((max(8, round(w * factor)), max(8, round(h * factor))), Image.Resampling.BILINEAR)
        image = small.resize((w, h), Image.Resampling.BILINEAR)
    if rng.random() < 0.35:
        image = _jpeg(image, rng)
    return image
