"""Digit strings and their renders: the glyph demo's prompts (``data: {builtin: glyph}``) and training images."""

from __future__ import annotations

import functools
import itertools
import random
from typing import Any

import numpy as np

DEFAULT_ALPHABET = "0123456789"
HEIGHT, WIDTH = 32, 64


def glyph(
    n_train: int = 2000,
    n_eval: int = 100,
    seed: int = 0,
    alphabet: str = DEFAULT_ALPHABET,
    min_len: int = 2,
    max_len: int = 3,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Distinct strings of ``min_len``..``max_len`` characters of ``alphabet``; eval strings never appear in train.

    Rows: ``question`` (the prompt: the string itself), ``text`` (the string to draw; the OCR rewards' target) and
    ``answer`` (the same, for rewards that read ``answer``).
    """
    if not alphabet or len(set(alphabet)) != len(alphabet):
        raise ValueError(f"alphabet: expected distinct characters, got {alphabet!r}")
    if any(ch.isspace() or ch.isupper() for ch in alphabet):
        raise ValueError("alphabet: no spaces or upper-case letters (the CLIP tokenizer lower-cases prompts)")
    if not 1 <= min_len <= max_len:
        raise ValueError(f"min_len/max_len: expected 1 <= min_len <= max_len, got {min_len}, {max_len}")
    space = sum(len(alphabet) ** k for k in range(min_len, max_len + 1))
    if n_train + n_eval > space:
        raise ValueError(f"only {space} distinct strings; n_train + n_eval = {n_train + n_eval}")
    rng = random.Random(seed)
    if space <= 200_000:
        pool = ["".join(p) for k in range(min_len, max_len + 1) for p in itertools.product(alphabet, repeat=k)]
        strings = rng.sample(pool, n_train + n_eval)
    else:
        seen: set[str] = set()
        while len(seen) < n_train + n_eval:
            seen.add("".join(rng.choice(alphabet) for _ in range(rng.randint(min_len, max_len))))
        strings = sorted(seen)
        rng.shuffle(strings)
    rows = [{"question": s, "text": s, "answer": s} for s in strings]
    return rows[n_eval:], rows[:n_eval]


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
