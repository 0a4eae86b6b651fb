"""TextPecker: a reward for rendering the requested text correctly and with structurally sound glyphs.

Paper: "Rewarding Structural Anomaly Quantification for Enhancing Visual Text Rendering" (TextPecker, arXiv
2602.20903, CVPR 2026). From the paper: the semantic score S_E, the structural score S_Q with omega = 5 for training,
and R = 0.5 S_E + 0.5 S_Q (:mod:`.score`). Our design: the recogniser is paddleocr (PP-OCRv5, onnxruntime, offline;
:mod:`.ocr`) instead of the paper's fine-tuned 8B VLM, and structural anomalies come from a character-level detector
over the recogniser's own evidence (:mod:`.detector`); a target character the OCR did not read counts as a flawed
one in S_Q, as the paper's ``<#>`` does (``unread``, :mod:`.score`); ``tie_break`` (off by default) mixes in a small
share of S_Q over the detector's summed probabilities, to order images the paper's reward ties. Bad images never
raise: an image that cannot be read scores ``None`` (not applicable: usually a pipeline error, not the model's), an
image that is too small or holds no text scores 0 (the model drew no legible text); both carry a reason.

Use it as the reward ``textpecker`` (completions are images: PIL images, paths or arrays; the target text comes
from a dataset column, ``text`` by default) or through :class:`TextPecker` / ``verirl score textpecker``.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from verirl.rewards.base import reward, target_texts
from verirl.rewards.textpecker.score import semantic_score, structural_score, unread_characters

# N_a in S_Q: "flags" counts the characters flagged above the detector's threshold (the paper's count); "expected" sums
# every character's anomaly probability (our option: the expected number of flawed characters, so that damage the
# detector half-sees still lowers the reward and ties between a clean and a damaged image are rare)
ANOMALY_COUNTS = ("flags", "expected")
# target characters the OCR did not read: "anomaly" counts each as a flawed character (the paper's recogniser writes
# <#> for a glyph too flawed to read; an OCR drops it), "ignore" scores only what was read (:mod:`.score`)
UNREAD = ("anomaly", "ignore")

# the numeric options: what each accepts, and how its one-line error says so
_NUMBER_RANGES: dict[str, tuple[Callable[[float], bool], str]] = {
    "semantic_weight": (lambda v: v >= 0, ">= 0"),
    "structural_weight": (lambda v: v >= 0, ">= 0"),
    "omega": (lambda v: v >= 0, ">= 0"),
    "threshold": (lambda v: 0 < v < 1, "between 0 and 1 (a flag probability)"),
    "tie_break": (lambda v: 0 <= v < 1, ">= 0 and < 1 (a share of the reward)"),
}


@dataclass
class TextPeckerScore:
    reward: float | None
    semantic: float | None = None
    structural: float | None = None
    recognized: str = ""
    anomalies: list[int] = field(default_factory=list)  # indices into ``recognized`` of flagged characters
    reason: str | None = None
    unread: int = 0  # target characters the OCR did not read (in S_Q as flawed ones unless ``unread: ignore``)
    expected_anomalies: float | None = None  # sum of the recognised characters' anomaly probabilities (None: no
    # probabilities from this detector)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class TextPecker:
    """Scores images against target texts: OCR once per batch, then S_E, S_Q and the weighted reward."""

    def __init__(
        self,
        *,
        semantic_weight: float = 0.5,
        structural_weight: float = 0.5,
        omega: float = 5.0,
        backend: Any = None,
        detector: Any = None,
        limit_side_len: int = 736,
        anomaly_count: str = "flags",
        threshold: float | None = None,
        unread: str = "anomaly",
        tie_break: float = 0.0,
    ):
        numbers = {"semantic_weight": semantic_weight, "structural_weight": structural_weight, "omega": omega}
        numbers.update(tie_break=tie_break, **({} if threshold is None else {"threshold": threshold}))
        for name, value in numbers.items():  # a recipe's YAML can hold anything
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"textpecker: {name} must be a finite number, got {value!r}")
            in_range, expected = _NUMBER_RANGES[name]
            if not in_range(value):
                raise ValueError(f"textpecker: {name} must be {expected}, got {value}")
        if anomaly_count not in ANOMALY_COUNTS:
            choices = ", ".join(ANOMALY_COUNTS)
            raise ValueError(f"textpecker: anomaly_count must be one of {choices}, got {anomaly_count!r}")
        if unread not in UNREAD:
            raise ValueError(f"textpecker: unread must be one of {', '.join(UNREAD)}, got {unread!r}")
        self.semantic_weight, self.structural_weight, self.omega = semantic_weight, structural_weight, omega
        self.anomaly_count, self.threshold, self.unread, self.tie_break = anomaly_count, threshold, unread, tie_break
        self._backend, self._detector, self._limit = backend, detector, limit_side_len
        self._lock = threading.Lock()

    @property
    def backend(self) -> Any:
        with self._lock:  # the reward guard may call from a worker thread
            if self._backend is None:
                from verirl.rewards.textpecker.ocr import PaddleOCRBackend

                self._backend = PaddleOCRBackend(limit_side_len=self._limit)
            return self._backend

    @property
    def detector(self) -> Any:
        if self._detector is None:
            from verirl.rewards.textpecker.detector import default_detector

            self._detector = default_detector(self.threshold)
            if hasattr(self._detector, "index"):  # the learned detector compares against the target's characters
                self._detector.index = self.backend.recognizer.index
        return self._detector

    def score(self, images: list[Any], targets: list[str]) -> list[TextPeckerScore]:
        from verirl.rewards.textpecker.images import to_bgr

        if len(images) != len(targets):
            raise ValueError(f"textpecker: {len(images)} images but {len(targets)} target texts")
        out: list[TextPeckerScore | None] = [None] * len(images)
        arrays, where = [], []
        for i, image in enumerate(images):
            array, reason = to_bgr(image)
            if array is None:
                small = reason is not None and reason.startswith("image too small")
                out[i] = TextPeckerScore(0.0 if small else None, reason=reason)
            else:
                arrays.append(array)
                where.append(i)
        for i, result in zip(where, self.backend.read(arrays) if arrays else [], strict=True):
            out[i] = self._score_one(result, str(targets[i] or ""))
        return out  # type: ignore[return-value]

    def _score_one(self, result: Any, target: str) -> TextPeckerScore:
        if result.error:
            return TextPeckerScore(None, reason=result.error)
        from verirl.rewards.textpecker.detector import aligned_targets

        lines = [line for line in result.lines if line.text]
        recognized = " ".join(line.text for line in lines)
        _, expected = aligned_targets(recognized, target)  # per recognised character, the target's (or None)
        anomalies, offset, expected_count = [], 0, 0.0
        soft = hasattr(self.detector, "char_probabilities")
        for line in lines:
            targets = expected[offset : offset + len(line.text)]
            if soft:
                probabilities = self.detector.char_probabilities(line, targets)
                expected_count += sum(probabilities)
                anomalies += [offset + j for j, p in enumerate(probabilities) if p > self.detector.threshold]
            else:
                anomalies += [offset + j for j in self.detector.flag(line, targets)]
            offset += len(line.text) + 1
        semantic = semantic_score(target, recognized)
        unread = unread_characters(target, recognized)
        counted = unread if self.unread == "anomaly" else 0
        n_anomalies = expected_count if soft and self.anomaly_count == "expected" else len(anomalies)
        structural = structural_score(recognized, n_anomalies, self.omega, counted)
        total = self.semantic_weight + self.structural_weight
        value = (self.semantic_weight * semantic + self.structural_weight * structural) / total if total else 0.0
        if soft and self.tie_break:
            value = (1 - self.tie_break) * value + self.tie_break * structural_score(
                recognized, expected_count, 1.0, counted
            )
        reason = None if recognized.strip() else "no text found"
        return TextPeckerScore(
            value, semantic, structural, recognized, anomalies, reason, unread, expected_count if soft else None
        )


@reward("textpecker")
class TextPeckerReward:
    """TextPecker OCR reward for images: 0.5 x semantic match + 0.5 x glyph soundness (paddleocr, offline)."""

    def __init__(self, text_column: str = "text", **options: Any):
        self.text_column = text_column
        self.scorer = TextPecker(**options)
        self.__name__ = "textpecker"

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        scores = self.scorer.score(list(completions), target_texts(kwargs, self.text_column, "textpecker"))
        return [s.reward for s in scores]
