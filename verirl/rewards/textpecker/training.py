"""Train and evaluate TextPecker's character anomaly detector on the synthesis engine (``verirl textpecker
train-detector``): synthetic lines in the training fonts -> the same OCR crops and CTC evidence the reward sees ->
:class:`~verirl.rewards.textpecker.detector.CropClassifier`; F1 on held-out lines (other seed, other fonts) beside
the evidence thresholds and plain OCR."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def _learned_flags(model: Any, lines: list[Any], threshold: float) -> list[list[int]]:
    import torch

    out = []
    for line in lines:
        if len(line.crops) == 0:
            out.append([])
            continue
        with torch.no_grad():
            p = torch.sigmoid(model(torch.from_numpy(line.crops), torch.from_numpy(line.evidence))).numpy()
        out.append([j for j, v in enumerate(p) if v > threshold and not line.decoded[j].isspace()])
    return out


def _evidence_flags(lines: list[Any], min_prob: float = 0.9, min_margin: float = 0.5) -> list[list[int]]:
    return [
        [
            j
            for j, row in enumerate(line.evidence)
            if (row[0] < min_prob or row[1] < min_margin) and not line.decoded[j].isspace()
        ]
        for line in lines
    ]


def run(
    out: Path,
    n_train: int = 6000,
    n_heldout: int = 800,
    epochs: int = 15,
    seed: int = 1,
    log: Any = print,
) -> dict[str, Any]:
    """Synthesise, read, train, evaluate; writes ``detector.safetensors`` and ``detector_metrics.json`` to ``out``."""
    from safetensors.torch import save_file

    from verirl.rewards.textpecker import detector as det
    from verirl.rewards.textpecker.ocr import REC_NAME, CTCRecognizer, prepare_models
    from verirl.rewards.textpecker.synth import HELDOUT_FONTS, TRAIN_FONTS, synthesize

    start = time.monotonic()
    recognizer = CTCRecognizer(prepare_models() / REC_NAME)
    train = det.read_lines(synthesize(n_train, seed, TRAIN_FONTS), recognizer)
    heldout = det.read_lines(synthesize(n_heldout, seed + 1000, HELDOUT_FONTS), recognizer)
    log(f"synthesised and read {n_train} + {n_heldout} lines in {time.monotonic() - start:.0f} s")
    model, info = det.train_detector(train, epochs=epochs, seed=seed, log=log)
    results = {
        "threshold": det.DEFAULT_THRESHOLD,
        "train_lines": n_train,
        "heldout_lines": n_heldout,
        "train_fonts": list(TRAIN_FONTS),
        "heldout_fonts": list(HELDOUT_FONTS),
        **info,
        # localised: characters the OCR read (the same set for every detector); all: every target character, those
        # the OCR lost counting as flagged for every detector
        "learned": det.f1_scores(heldout, _learned_flags(model, heldout, det.DEFAULT_THRESHOLD)),
        "evidence_thresholds": det.f1_scores(heldout, _evidence_flags(heldout)),
        "plain_ocr": det.plain_ocr_f1(heldout),
        "all_characters": {
            "learned": det.f1_scores(heldout, _learned_flags(model, heldout, det.DEFAULT_THRESHOLD), "all"),
            "evidence_thresholds": det.f1_scores(heldout, _evidence_flags(heldout), "all"),
            "plain_ocr": det.plain_ocr_f1(heldout, "all"),
        },
        "anomalous_share_heldout": float(
            np.mean([label for line in heldout for ch, label in zip(line.text, line.labels, strict=True) if ch != " "])
        ),
        "seconds": round(time.monotonic() - start, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "detector.safetensors"))
    (out / "detector_metrics.json").write_text(json.dumps(results, indent=2) + "\n")
    return results
