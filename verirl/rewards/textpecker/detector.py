"""Character-level structural-anomaly detection for TextPecker (ALGORITHMS.md §2).

The paper flags malformed glyphs with a fine-tuned 8B VLM recogniser (it writes ``<#>`` for a flawed character).
We do not run an 8B model in a reward loop on a CPU; instead the detector reads the evidence the OCR recogniser
already computes (our design):

* :class:`EvidenceDetector` (this module, the current default): a character is flagged when the recogniser's
  posterior at its most confident CTC timestep is below ``min_prob`` or its margin over the runner-up class is below
  ``min_margin``. The thresholds are provisional: the learned classifier over character crops trained on the
  stroke-editing synthesis engine (issue 4, still open) replaces them, and the held-out F1 decides.

A detector maps one :class:`~verirl.rewards.textpecker.ocr.OCRLine` to the indices of its flagged characters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from verirl.rewards.textpecker.ocr import OCRLine


class AnomalyDetector(Protocol):
    def flag(self, line: OCRLine) -> list[int]: ...


@dataclass
class EvidenceDetector:
    min_prob: float = 0.9
    min_margin: float = 0.5

    def flag(self, line: OCRLine) -> list[int]:
        if len(line.char_probs) != len(line.text):  # evidence does not line up with the text: flag nothing
            return []
        return [
            i
            for i, (ch, p, m) in enumerate(zip(line.text, line.char_probs, line.char_margins, strict=True))
            if not ch.isspace() and (p < self.min_prob or m < self.min_margin)
        ]
