"""Character crops as the anomaly detector sees them, and the reference glyph it compares each one with.

The paper's recogniser (TextPecker, arXiv 2602.20903) is an 8B VLM that knows what every character should look like.
Our CNN is small (~0.5M parameters) and cannot memorise the shape of thousands of Chinese characters, so a stray
stroke, a missing part or a mirrored hanzi can look like just another character to it. Our design: beside the
glyph's crop and its context, the detector gets a third channel, the character the target text expects there (or,
where none is aligned, the one the OCR read) rendered in a fixed reference face and cut the way crops are cut. The
network then compares a glyph with its expected structure instead of judging it alone. Measured: docs/benchmarks.md
("A reference glyph for the detector").
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

CROP = 32  # crops are CROP x CROP grey images
REFERENCE_FACES = ("DejaVuSans.ttf", "NotoSansCJKsc-Regular.otf")  # Latin and the rest; CJK from U+2E80 on
_SIZE = 40  # the reference face's pixel size before the cut is scaled to CROP x CROP


def normalised(piece: np.ndarray) -> np.ndarray:
    """A grey piece of a line as a CROP x CROP float image, contrast-stretched, dark ink on a light ground -> ink
    high, whatever the colours."""
    import cv2

    if not piece.size:
        return np.zeros((CROP, CROP), dtype=np.float32)
    piece = cv2.resize(piece, (CROP, CROP), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    lo, hi = piece.min(), piece.max()
    out = (piece - lo) / (hi - lo) if hi - lo > 1e-3 else np.zeros_like(piece)
    return 1.0 - out if out.mean() > 0.5 else out


@lru_cache(maxsize=2)
def _face(cjk: bool):
    """The reference face, looked up and opened once (not once per character)."""
    from PIL import ImageFont

    from verirl.rewards.textpecker.synth import font_paths

    return ImageFont.truetype(str(font_paths((REFERENCE_FACES[1 if cjk else 0],))[0]), _SIZE)


@lru_cache(maxsize=8192)
def reference_glyph(ch: str) -> np.ndarray:
    """``ch`` drawn in the reference face and cut like an OCR crop: its advance width by the rows a line of its script
    spans (crops come from lines trimmed to their ink rows), as CROP x CROP float32, ink high; blank for whitespace."""
    from PIL import Image, ImageDraw

    if ch.isspace():
        return np.zeros((CROP, CROP), dtype=np.float32)
    cjk = ord(ch) > 0x2E80
    font = _face(cjk)
    ascent, descent = font.getmetrics()
    glyph = Image.new("L", (max(4, int(font.getlength(ch))), ascent + descent), 255)
    ImageDraw.Draw(glyph).text((0, 0), ch, fill=0, font=font)
    span = Image.new("L", (200, ascent + descent), 255)
    ImageDraw.Draw(span).text((0, 0), ("国" if cjk else "Hgy") + ch, fill=0, font=font)
    rows = np.nonzero((np.asarray(span) < 128).any(1))[0]
    out = normalised(np.asarray(glyph)[max(0, rows[0] - 1) : rows[-1] + 2])
    out.flags.writeable = False  # shared by the cache
    return out


def reference_chars(read: str, aligned: list[str | None] | None) -> list[str]:
    """Per character of the ``read`` text, the character whose reference glyph it is compared with: the target's
    character aligned to it (``aligned[i]``) where there is one, else the one read (one rule for training and
    reward)."""
    aligned = list(aligned or [])[: len(read)]
    aligned += [None] * (len(read) - len(aligned))
    return [t if t is not None else ch for ch, t in zip(read, aligned, strict=True)]


def with_reference(crops: np.ndarray, chars: list[str]) -> np.ndarray:
    """(N, 2, CROP, CROP) crops -> (N, 3, CROP, CROP), channel 2 the reference glyph of ``chars[i]``."""
    out = np.zeros((len(crops), 3, CROP, CROP), dtype=np.float32)
    out[:, :2] = crops[:, :2]
    for i, ch in enumerate(chars[: len(crops)]):
        out[i, 2] = reference_glyph(ch)
    return out
