"""Digit strings and their renders: the glyph demo's prompts (``data: {builtin: glyph}``) and training images."""

from __future__ import annotations

import functools
import random
from typing import Any

import numpy as np

from verirl.data import GLYPH_ALPHABET as DEFAULT_ALPHABET
from verirl.data import glyph

__all__ = ["DEFAULT_ALPHABET", "glyph", "render"]

HEIGHT, WIDTH = 32, 64


@functools.lru_cache(maxsize=4)
def _font(size: int) -> Any:
    from PIL import ImageFont

    from verirl.rewards.textpecker.synth import font_paths

    return ImageFont.truetype(str(font_paths(("DejaVuSans-Bold.ttf", "DejaVuSans.ttf"))[0]), size)


def render(text: str, height: int = HEIGHT, width: int = WIDTH, jitter: random.Random | None = None) -> np.ndarray:
    """Black text on white, centred (shifted by up to 3 px with ``jitter``), as an (H, W, 3) uint8 array."""
    from PIL import Image, ImageDraw

    font = _font(int(height * 0.7))
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = (width - (right - left)) / 2 - left
    y = (height - (bottom - top)) / 2 - top
    if jitter is not None:
        x += jitter.uniform(-3, 3)
        y += jitter.uniform(-2, 2)
    draw.text((x, y), text, font=font, fill=0)
    return np.repeat(np.asarray(image)[:, :, None], 3, axis=2)
