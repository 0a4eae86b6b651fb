"""Simple image rewards (ours): pixel statistics, cheap enough for tests and smoke runs of image RL."""

from __future__ import annotations

from typing import Any

import numpy as np

from verirl.rewards.base import reward


def _gray(image: Any) -> np.ndarray | None:
    from verirl.rewards.textpecker.images import to_bgr

    array, _ = to_bgr(image)
    return None if array is None else array.astype(np.float32).mean(axis=2) / 255.0


@reward("brightness")
def brightness(prompts: list[Any], completions: list[Any], target: float | None = None, **kwargs: Any) -> list:
    """Mean pixel brightness in [0, 1] (or ``1 - |brightness - target|`` with ``target``); None if unreadable."""
    scores: list[float | None] = []
    for image in completions:
        gray = _gray(image)
        if gray is None:
            scores.append(None)
            continue
        value = float(gray.mean())
        scores.append(value if target is None else 1.0 - abs(value - target))
    return scores
