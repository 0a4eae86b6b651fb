"""``ocr_match``: how well the single line of text in each image reads as the target text (PP-OCRv5, offline).

Our design, for images that hold one line of text (the glyph demo, signs, captions): the whole image goes through
paddleocr's PP-OCRv5 recognition model (no detection step, so a faint or broken rendering still gets a reading),
then one of three scores (``mode``): ``edit`` (default) ``1 - normalised edit distance`` between the greedy CTC
reading and the target; ``exact`` 1 or 0; ``likelihood`` the target's per-character CTC probability,
``exp(log p(target | image) / len(target))`` -- a smooth score that also ranks near-misses whose greedy reading is
the same. Case-insensitive unless ``case_sensitive`` (``likelihood`` is always exact). Unreadable images (missing,
corrupt, empty) score ``None`` and are counted by the guard.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from verirl.rewards.base import reward, target_texts

_LOCK = threading.Lock()
_RECOGNIZER: Any = None


def recognizer() -> Any:
    """The shared PP-OCRv5 recognizer (loaded once per process)."""
    global _RECOGNIZER
    with _LOCK:
        if _RECOGNIZER is None:
            from verirl.rewards.textpecker.ocr import REC_NAME, CTCRecognizer, prepare_models

            _RECOGNIZER = CTCRecognizer(prepare_models() / REC_NAME)
        return _RECOGNIZER


def posteriors(images: list[Any]) -> list[Any]:
    """The recognizer's (T, C) CTC posteriors for each image read as one line (``None`` if it cannot be read)."""
    from verirl.rewards.textpecker.images import to_bgr

    arrays, index = [], []
    for i, image in enumerate(images):
        array, _ = to_bgr(image)
        if array is not None:
            arrays.append(array)
            index.append(i)
    out: list[Any] = [None] * len(images)
    if arrays:
        for i, probs in zip(index, recognizer().posteriors(arrays), strict=True):
            out[i] = probs
    return out


def read_lines(images: list[Any]) -> list[str | None]:
    """The text of each image read as one line (``None`` for an image that cannot be read)."""
    rec = recognizer() if images else None
    return [None if p is None else rec.decode(p)[0].strip() for p in posteriors(images)]


@reward("ocr_match")
class OCRMatchReward:
    """How well each image's single line of text (PP-OCRv5 reading) matches its target: edit | exact | likelihood."""

    def __init__(self, text_column: str = "text", mode: str = "edit", case_sensitive: bool = False):
        if mode not in ("edit", "exact", "likelihood"):
            raise ValueError(f"ocr_match: mode must be edit, exact or likelihood, got {mode!r}")
        self.text_column = text_column
        self.mode = mode
        self.case_sensitive = case_sensitive
        self.__name__ = "ocr_match"

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        from rapidfuzz.distance import Levenshtein

        targets = target_texts(kwargs, self.text_column, "ocr_match")
        rec = recognizer() if completions else None
        scores: list[float | None] = []
        for probs, target in zip(posteriors(list(completions)), targets, strict=True):
            if probs is None:
                scores.append(None)
            elif self.mode == "likelihood":
                ll = rec.target_log_likelihood(probs, target)
                scores.append(0.0 if ll is None else math.exp(ll / max(1, len(target))))
            else:
                read = rec.decode(probs)[0].strip()
                if not self.case_sensitive:
                    read, target = read.lower(), target.lower()
                if self.mode == "exact":
                    scores.append(float(read == target))
                else:
                    scores.append(1.0 - Levenshtein.normalized_distance(read, target))
        return scores
