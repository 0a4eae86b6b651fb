"""Character-level structural-anomaly detection for TextPecker (arXiv 2602.20903; docs/textpecker.md).

The paper flags malformed glyphs with a fine-tuned 8B VLM recogniser (it writes ``<#>`` for a flawed character).
We do not run an 8B model in a reward loop on a CPU; our design combines the evidence the OCR recogniser already
computes with a small learned classifier:

* the recogniser's CTC posteriors locate every decoded character in its line (the run of timesteps where it is the
  argmax) and give its peak posterior and its margin over the runner-up class;
* :class:`CropClassifier`, a ~0.5M-parameter CNN, looks at each character's crop (cut at the midpoints between
  neighbouring characters' CTC positions, 32x32 grey), at its context (the same cut widened to its neighbours) and
  at the reference glyph of the character expected there (:mod:`.reference`), together with those numbers, and
  outputs the probability that the glyph is structurally flawed (weights trained by earlier versions, with two
  input channels or the 0.17M network's narrower layers, still load: the layout is read from the file);
* it is trained on the synthesis engine (:mod:`.synth`, eight damage kinds from :mod:`.damage`) with the same OCR
  crops and posteriors it sees at reward time (``verirl textpecker train-detector``, 40,000 lines per script, about two
  hours on 2 CPU cores); the weights ship with the package (``detector.safetensors``, ~2 MB).

:class:`EvidenceDetector` (thresholds on peak posterior and margin only) is kept as the model-free fallback and as
the baseline the learned detector must beat. A detector maps one OCR line to the indices of its flagged characters.
"""

from __future__ import annotations

import difflib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from verirl.rewards.textpecker.ocr import OCRLine, ctc_path, peak_evidence
from verirl.rewards.textpecker.reference import CROP, normalised, reference_chars, with_reference

CHANNELS = 3  # the character's crop, its context (with its neighbours) and the expected character's reference glyph
# Flag a character above this probability unless the weights file names its own (chosen on validation lines in the
# training fonts by `verirl textpecker train-detector`: the lowest threshold flagging at most 2 % of clean characters).
DEFAULT_THRESHOLD = 0.9
WEIGHTS = Path(__file__).with_name("detector.safetensors")


class AnomalyDetector(Protocol):
    def flag(self, line: OCRLine, targets: list[str | None] | None = None) -> list[int]: ...


@dataclass
class EvidenceDetector:
    """Flags a character whose peak posterior is below ``min_prob`` or whose margin is below ``min_margin``."""

    min_prob: float = 0.9
    min_margin: float = 0.5

    def flag(self, line: OCRLine, targets: list[str | None] | None = None) -> list[int]:
        if len(line.char_probs) != len(line.text):  # evidence does not line up with the text: flag nothing
            return []
        return [
            i
            for i, (ch, p, m) in enumerate(zip(line.text, line.char_probs, line.char_margins, strict=True))
            if not ch.isspace() and (p < self.min_prob or m < self.min_margin)
        ]


# ------------------------------------------------------------------------------------------------ character crops


def char_spans(probs: np.ndarray) -> list[tuple[int, int]]:
    """Greedy CTC: the [first, last] timestep of each decoded character (same order as the decoded text)."""
    return [(a, b) for _, a, b in ctc_path(probs)]


def char_crops(
    crop: np.ndarray, probs: np.ndarray, height: int = 48, spans: list[tuple[int, int]] | None = None
) -> np.ndarray:
    """(N, 2, CROP, CROP) float32 grey crops of the N decoded characters of a BGR line crop: channel 0 the character,
    cut at the midpoints between neighbouring characters' CTC centres; channel 1 its context, from the left
    neighbour's cut to the right neighbour's (a glyph off the baseline, overlapping its neighbour or with a stray
    stroke reaching out is seen against the glyphs beside it). ``spans``: :func:`char_spans` of ``probs``."""
    import cv2

    spans = char_spans(probs) if spans is None else spans
    if not spans:
        return np.zeros((0, 2, CROP, CROP), dtype=np.float32)
    grey = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
    h, w = grey.shape
    grey = _trim_rows(grey)  # OCR crops are tight, rendered lines padded: the same scale for both
    px_per_step = (height * w / max(1, h)) / probs.shape[0] * (h / height)  # timesteps -> crop pixels
    centres = [(a + b + 1) / 2 * px_per_step for a, b in spans]
    gaps = np.diff(centres) if len(centres) > 1 else np.array([h * 0.6])
    half = float(np.median(gaps)) / 2
    edges = [max(0.0, centres[0] - half)]
    edges += [(a + b) / 2 for a, b in zip(centres[:-1], centres[1:], strict=True)]
    edges.append(min(float(w), centres[-1] + half))
    n = len(spans)
    out = np.zeros((n, 2, CROP, CROP), dtype=np.float32)
    for i in range(n):
        x0, x1 = int(edges[i]), max(int(edges[i]) + 1, int(round(edges[i + 1])))
        out[i, 0] = normalised(grey[:, x0:x1])
        c0, c1 = int(edges[max(0, i - 1)]), max(x1, int(round(edges[min(n, i + 2)])))
        out[i, 1] = normalised(grey[:, c0:c1])
    return out


EVIDENCE = 3


def target_indices(recognizer_index: dict[str, int], targets: list[str | None]) -> list[list[int]]:
    """Dictionary indices of each decoded character's target character (both cases: S_E ignores case)."""
    out = []
    for ch in targets:
        if ch is None:
            out.append([])
        else:
            out.append(sorted({recognizer_index[c] for c in {ch, ch.lower(), ch.upper()} if c in recognizer_index}))
    return out


def _trim_rows(grey: np.ndarray) -> np.ndarray:
    """Rows of the line that hold ink (Otsu; ink is the minority class), with a one-pixel margin."""
    import cv2

    if grey.size == 0 or grey.max() - grey.min() < 16:
        return grey
    _, binary = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    ink = binary if binary.mean() < 0.5 else 1 - binary
    rows = np.nonzero(ink.sum(1) >= max(1, ink.shape[1] // 200))[0]
    if len(rows) < 4:
        return grey
    return grey[max(0, rows[0] - 1) : rows[-1] + 2]


def _evidence(
    probs: np.ndarray, targets: list[list[int]] | None = None, path: list[tuple[int, int, int]] | None = None
) -> np.ndarray:
    """(N, 3) per decoded character: peak posterior, margin over the runner-up there, and the best posterior of the
    character the target text expects at that position within the character's span (the peak when no target is
    known or aligned) -- the per-character form of the target's CTC likelihood."""
    path = ctc_path(probs) if path is None else path
    out = np.zeros((len(path), EVIDENCE), dtype=np.float32)
    out[:, :2] = peak_evidence(probs, path)
    out[:, 2] = out[:, 0]
    for n, (_, a, b) in enumerate(path):
        expected = targets[n] if targets is not None and n < len(targets) else []
        if expected:
            out[n, 2] = probs[a : b + 1, expected].max()
    return out


# ------------------------------------------------------------------------------------------------------ classifier


WIDTHS = (48, 96, 160, 128)  # the three convolutions' channels and the head's hidden units (0.17M: 32, 64, 96, 64)


def _classifier(channels: int = CHANNELS, widths: tuple[int, int, int, int] = WIDTHS):
    import torch
    from torch import nn

    c1, c2, c3, hidden = widths

    class CropClassifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Sequential(
                nn.Conv2d(channels, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(c2, c3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            )  # fmt: skip
            self.head = nn.Sequential(nn.Linear(c3 * 16 + EVIDENCE, hidden), nn.ReLU(), nn.Linear(hidden, 1))

        def forward(self, crops: torch.Tensor, evidence: torch.Tensor) -> torch.Tensor:
            x = nn.functional.dropout(self.conv(crops).flatten(1), 0.3, self.training)  # it overfits without
            return self.head(torch.cat([x, evidence], dim=-1)).squeeze(-1)

    return CropClassifier()


def classify(model: Any, crops: np.ndarray, evidence: np.ndarray) -> np.ndarray:
    """Anomaly probabilities of characters from their (N, CHANNELS, CROP, CROP) crops and (N, EVIDENCE) evidence (a
    model with fewer input channels, trained before the reference glyph, sees the first ones)."""
    import torch

    if len(crops) == 0:
        return np.zeros(0, dtype=np.float32)
    crops = np.ascontiguousarray(crops[:, : input_channels(model)])
    with torch.no_grad():
        return torch.sigmoid(model(torch.from_numpy(crops), torch.from_numpy(evidence))).numpy()


def _architecture(state: dict[str, Any]) -> tuple[int, tuple[int, int, int, int]]:
    """Input channels and widths of the network a weights file was saved from, so weights trained by an earlier
    version (two input channels, or the 0.17M network's narrower layers) still load."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    try:
        channels = shapes["conv.0.weight"][1]
        widths = (shapes["conv.0.weight"][0], shapes["conv.3.weight"][0], shapes["conv.6.weight"][0])
        return channels, (*widths, shapes["head.0.weight"][0])
    except (KeyError, IndexError):
        return CHANNELS, WIDTHS  # not our network's layout: load_state_dict names what is missing


def input_channels(model: Any) -> int:
    return int(model.conv[0].in_channels)


class LearnedDetector:
    """Character-crop CNN + CTC evidence; flags characters whose anomaly probability exceeds ``threshold``."""

    def __init__(self, weights: Path | str | None = None, threshold: float | None = None):
        from safetensors.torch import load_file

        path = Path(weights) if weights else WEIGHTS
        if not path.is_file():
            raise FileNotFoundError(f"TextPecker detector weights {path} not found (verirl textpecker train-detector)")
        from safetensors import safe_open

        state = load_file(str(path))
        self.model = _classifier(*_architecture(state))
        self.model.load_state_dict(state)
        self.model.eval()
        with safe_open(str(path), "pt") as f:  # the threshold chosen on validation when the weights were trained
            chosen = (f.metadata() or {}).get("threshold")
        self.threshold = threshold if threshold is not None else float(chosen or DEFAULT_THRESHOLD)
        self.index: dict[str, int] = {}  # character -> recogniser class, set by the OCR backend (target evidence)

    def probabilities(
        self,
        crop: np.ndarray,
        probs: np.ndarray,
        targets: list[list[int]] | None = None,
        path: list[tuple[int, int, int]] | None = None,
        chars: list[str] | None = None,
    ) -> np.ndarray:
        """Anomaly probability of each decoded character of a BGR line crop with its (T, C) posteriors (and the
        dictionary indices of the target character aligned to each decoded one, where known; ``path``: the line's
        :func:`ctc_path`, when the OCR already walked it; ``chars``: per decoded character, the character whose
        reference glyph it is compared with — the target's where aligned, else the one read; blank where missing)."""
        path = ctc_path(probs) if path is None else path  # one CTC walk for both the crops and the evidence
        crops = char_crops(crop, probs, spans=[(a, b) for _, a, b in path])
        if input_channels(self.model) > 2:
            crops = with_reference(crops, chars or [])
        return self.classify(crops, _evidence(probs, targets, path))

    def classify(self, crops: np.ndarray, evidence: np.ndarray) -> np.ndarray:
        return classify(self.model, crops, evidence)

    def char_probabilities(self, line: OCRLine, targets: list[str | None] | None = None) -> list[float]:
        """Per character of ``line.text``, the probability that it is flawed (0 for spaces); empty when the line has
        no evidence or it does not line up with the text. ``targets``: per character, the target text's character
        aligned to it (None where none is)."""
        if line.crop is None or line.posteriors is None:
            return []
        expected = target_indices(self.index, targets) if targets is not None else None
        p = self.probabilities(line.crop, line.posteriors, expected, line.path, reference_chars(line.text, targets))
        if len(p) != len(line.text):
            return []
        return [0.0 if ch.isspace() else float(v) for ch, v in zip(line.text, p, strict=True)]

    def flag(self, line: OCRLine, targets: list[str | None] | None = None) -> list[int]:
        """Flagged character indices of ``line`` (probability above the threshold)."""
        return [i for i, v in enumerate(self.char_probabilities(line, targets)) if v > self.threshold]


def default_detector(threshold: float | None = None) -> AnomalyDetector:
    """The learned detector when its weights are present (flagging above ``threshold``, default the one stored with
    the weights), else the evidence thresholds."""
    if WEIGHTS.is_file():
        return LearnedDetector(threshold=threshold)
    if threshold is not None:
        raise ValueError("textpecker: threshold needs the learned detector, whose weights are missing")
    return EvidenceDetector()


# ------------------------------------------------------------------------------------- training and evaluation


def align(decoded: str, text: str) -> dict[int, int]:
    """decoded index -> text index for characters the OCR read in place (equal, or replaced one for one)."""
    mapping = {}
    for op, a0, a1, b0, b1 in difflib.SequenceMatcher(None, decoded, text, autojunk=False).get_opcodes():
        if op == "equal" or (op == "replace" and a1 - a0 == b1 - b0):
            mapping.update({a0 + k: b0 + k for k in range(a1 - a0)})
    return mapping


def aligned_targets(recognized: str, target: str) -> tuple[dict[int, int], list[str | None]]:
    """Case-insensitive :func:`align` of a recognised string to the target, and per recognised character the target
    character aligned to it (None where none is)."""
    mapping = align(recognized.lower(), target.lower())
    return mapping, [target[mapping[j]] if j in mapping else None for j in range(len(recognized))]


@dataclass
class LineEvidence:
    text: str
    labels: list[int]
    decoded: str
    crops: np.ndarray  # (N decoded, CHANNELS, CROP, CROP): with the reference glyph of the aligned target character
    evidence: np.ndarray  # (N decoded, EVIDENCE)
    mapping: dict[int, int]  # decoded index -> text index


def read_lines(lines: list[Any], recognizer: Any, chunk: int = 256) -> list[LineEvidence]:
    """Run the recogniser on synthetic lines (each image is one line crop, as OCR would cut it), ``chunk`` lines at
    a time: a line's posteriors are (T, ~18k classes) floats, so only the crops and evidence are kept."""
    out = []
    for start in range(0, len(lines), chunk):
        out += _read_chunk(lines[start : start + chunk], recognizer)
    return out


def _read_chunk(lines: list[Any], recognizer: Any) -> list[LineEvidence]:
    import cv2

    arrays = [cv2.cvtColor(np.asarray(line.image.convert("RGB")), cv2.COLOR_RGB2BGR) for line in lines]
    out = []
    for line, array, probs in zip(lines, arrays, recognizer.posteriors(arrays), strict=True):
        path = ctc_path(probs)
        decoded = "".join(recognizer.characters[c] for c, _, _ in path)
        mapping, expected = aligned_targets(decoded, line.text)
        crops = char_crops(array, probs, spans=[(a, b) for _, a, b in path])
        crops = with_reference(crops, reference_chars(decoded, expected))
        evidence = _evidence(probs, target_indices(recognizer.index, expected), path)
        out.append(LineEvidence(line.text, line.labels, decoded, crops, evidence, mapping))
    return out


def train_detector(
    train: list[LineEvidence], epochs: int = 8, seed: int = 0, log: Any = print
) -> tuple[Any, dict[str, Any]]:
    import torch

    torch.manual_seed(seed)
    crops, evidence, labels = [], [], []
    for line in train:
        for j, i in line.mapping.items():
            if not line.text[i].isspace():
                crops.append(line.crops[j])
                evidence.append(line.evidence[j])
                labels.append(float(line.labels[i]))
    # from_numpy shares the stacked array (40,000 lines per script are ~5 GB of crops: no second copy)
    x, e, y = torch.from_numpy(np.stack(crops)), torch.from_numpy(np.stack(evidence)), torch.tensor(labels)
    model = _classifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-3)
    steps = epochs * ((len(y) + 127) // 128)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps, pct_start=0.2)
    pos_weight = (len(y) - y.sum()) / y.sum().clamp(min=1)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        model.train()
        order, total = torch.randperm(len(y), generator=generator), 0.0
        for start in range(0, len(y), 128):
            idx = order[start : start + 128]
            xb = x[idx]
            if random.Random(seed + start + epoch).random() < 0.5:  # brightness jitter
                xb = (xb * (0.8 + 0.4 * torch.rand(len(idx), 1, 1, 1))).clamp(0, 1)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                model(xb, e[idx]), y[idx], pos_weight=pos_weight
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(idx)
        if log:
            log(json.dumps({"epoch": epoch, "loss": round(total / len(y), 4)}))
    model.eval()
    return model, {"characters": len(y), "anomalous": int(y.sum())}


def _prf(pairs: list[tuple[bool, int]]) -> dict[str, float]:
    tp = sum(hit and label == 1 for hit, label in pairs)
    fp = sum(hit and label == 0 for hit, label in pairs)
    fn = sum((not hit) and label == 1 for hit, label in pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "characters": len(pairs)}


def _judged(line: LineEvidence, hits: set[int], scope: str) -> list[tuple[bool, int]]:
    """(flagged, label) per non-space target character. ``scope="localised"``: only characters the OCR read (aligned
    to a decoded one); ``"all"``: every character, those the OCR lost counting as flagged (the system noticed)."""
    read = set(line.mapping.values())
    out = []
    for i, (ch, label) in enumerate(zip(line.text, line.labels, strict=True)):
        if ch.isspace() or (scope == "localised" and i not in read):
            continue
        out.append((i in hits or i not in read, label))
    return out


def f1_scores(lines: list[LineEvidence], flags: list[list[int]], scope: str = "localised") -> dict[str, float]:
    """Precision/recall/F1 of a detector's ``flags`` (decoded indices per line) over the target characters."""
    pairs = []
    for line, flagged in zip(lines, flags, strict=True):
        pairs += _judged(line, {line.mapping[j] for j in flagged if j in line.mapping}, scope)
    return _prf(pairs)


def plain_ocr_f1(lines: list[LineEvidence], scope: str = "localised") -> dict[str, float]:
    """Plain OCR as an anomaly detector: a character is flagged when the OCR did not read it as the target
    (case-insensitive, as S_E)."""
    pairs = []
    for line in lines:
        misread = {i for j, i in line.mapping.items() if line.decoded[j].lower() != line.text[i].lower()}
        pairs += _judged(line, misread, scope)
    return _prf(pairs)
