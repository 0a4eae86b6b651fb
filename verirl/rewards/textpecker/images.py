"""Loading images for OCR without ever raising: every input becomes a BGR array or a reason why not."""

from __future__ import annotations

import os
import warnings
from typing import Any

import numpy as np

MIN_SIDE = 8  # smaller images cannot hold a legible character
MAX_SIDE = 4096  # larger images are downscaled before OCR (the detector resizes to ~736 px anyway)
MAX_PIXELS = 200_000_000  # above this, decoding alone could exhaust memory: refused


def to_bgr(image: Any) -> tuple[np.ndarray | None, str | None]:
    """A PIL image, a path (str/PathLike) or an (H, W[, C]) uint8 array -> (BGR uint8 array, None) or
    (None, reason)."""
    from PIL import Image

    try:
        if isinstance(image, str | os.PathLike):
            path = os.fspath(image)
            if not os.path.isfile(path):
                return None, f"no such image file: {path}"
            if os.path.getsize(path) == 0:
                return None, f"empty file: {path}"
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as opened:
                    w, h = opened.size
                    if w * h > MAX_PIXELS:
                        return None, f"image too large to decode ({w}x{h})"
                    opened.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at reduced size
                    pil = opened.convert("RGB")
        elif isinstance(image, Image.Image):
            pil = image.convert("RGB")
        elif isinstance(image, np.ndarray):
            arr = image
            if arr.ndim == 2:
                arr = np.stack([arr] * 3, axis=-1)
            if arr.ndim != 3 or arr.shape[-1] not in (3, 4) or arr.dtype != np.uint8:
                return None, f"expected an (H, W, 3) uint8 array, got shape {image.shape} dtype {image.dtype}"
            pil = Image.fromarray(np.ascontiguousarray(arr[..., :3]))
        elif image is None:
            return None, "no image"
        else:
            return None, f"expected a PIL image, a path or an array, got {type(image).__name__}"
    except Exception as exc:  # corrupt or truncated files, unsupported formats
        return None, f"unreadable image ({type(exc).__name__}: {exc})"
    w, h = pil.size
    if min(w, h) < MIN_SIDE:
        return None, f"image too small ({w}x{h}; at least {MIN_SIDE} px a side)"
    if max(w, h) > MAX_SIDE:
        pil.thumbnail((MAX_SIDE, MAX_SIDE))
    return np.ascontiguousarray(np.asarray(pil)[..., ::-1]), None
