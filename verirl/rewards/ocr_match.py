"""``ocr_match``: how well the single line of text in each image reads as the target text (PP-OCRv5, offline).

Our design, for images that hold one line of text (the glyph demo, signs, captions): the whole image goes through
paddleocr's PP-OCRv5 recognition model (no detection step, so a faint or broken rendering still gets a reading),
greedy CTC decoding, then ``1 - normalised edit distance`` to the target (``exact: true``: 1 or 0). Case-insensitive
unless ``case_sensitive``. Unreadable images (missing, corrupt, empty) score ``None`` and are counted by the guard.
"""

from __future__ import annotations

import threading
from typing import Any

from verirl.rewards.base import reward

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


def read_lines(images: list[Any]) -> list[str | None]:
    """The text of each image read as one line (``None`` for an image that cannot be read)."""
    from verirl.rewards.textpecker.images import to_bgr

    arrays, index = [], []
    for i, image in enumerate(images):
        array, _ = to_bgr(image)
        if array is not None:
            arrays.append(array)
            index.append(i)
    texts: list[str | None] = [None] * len(images)
    if arrays:
        rec = recognizer()
        for i, probs in zip(index, rec.posteriors(arrays), strict=True):
            texts[i] = rec.decode(probs)[0].strip()
    return texts


@reward("ocr_match")
class OCRMatchReward:
    """1 - normalised edit distance between the OCR reading of each image (one line) and its target text."""

    def __init__(self, text_column: str = "text", exact: bool = False, case_sensitive: bool = False):
        self.text_column = text_column
        self.exact = exact
        self.case_sensitive = case_sensitive
        self.__name__ = "ocr_match"

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        from rapidfuzz.distance import Levenshtein

        if self.text_column not in kwargs:
            raise KeyError(
                f"ocr_match: the dataset has no column {self.text_column!r} with the target text "
                f"(set the reward's text_column; columns: {', '.join(sorted(kwargs)) or 'none'})"
            )
        targets = [str(t) for t in kwargs[self.text_column]]
        scores: list[float | None] = []
        for read, target in zip(read_lines(list(completions)), targets, strict=True):
            if read is None:
                scores.append(None)
                continue
            if not self.case_sensitive:
                read, target = read.lower(), target.lower()
            if self.exact:
                scores.append(float(read == target))
            else:
                scores.append(1.0 - Levenshtein.normalized_distance(read, target))
        return scores
