"""Questions for the search agent: the built-in sets and a user's JSONL file.

A question file is JSONL, one object per line::

    {"question": str, "answers": [str, ...], "image": optional path, "evidence": optional [corpus titles]}

``image`` is relative to the JSONL file's directory; ``evidence`` names the corpus passages that support the answer
(used by the retrieval-fidelity reward). Other keys are ignored. A line may give ``"flag": "<flagpy name>"`` instead
of ``image``: the query image is then a distorted copy of that country's flag (below).

Built-in tasks (``BUILTIN_TASKS``), each with a ``train`` and a held-out ``test`` split, generated once from
BIG-bench ``qa_wikidata`` (Apache 2.0) by ``scripts/make_search_questions.py``; see ``verirl/search/data/README.md``:

* ``search-2hop``: 2-hop questions over the ``wiki-vital`` corpus ("What is the capital of the country of citizenship
  of Jean Sibelius?"), evidence = the two hop passages.
* ``search-flags``: image questions: a flag, and a question about the country that never names it.

Our choices: the query image of a flag question is not the clean flagpy image (reverse image search would then be an
exact lookup) but a distorted copy, deterministic per question: a small random crop, a resize to 60-90 %, mild
Gaussian noise and a JPEG round trip. The PNGs are written once into ``cache_dir()/search/flags`` (atomically, so
several processes may do it at once) and reused.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from verirl.errors import VerirlError
from verirl.models import cache_dir
from verirl.search.flags import flag_names, load_flag

BUILTIN_TASKS = ("search-2hop", "search-flags")
SPLITS = ("train", "test")
DATA_DIR = Path(__file__).resolve().parent / "data"
_FILES = {
    ("search-2hop", "train"): "text_2hop_train.jsonl",
    ("search-2hop", "test"): "text_2hop_test.jsonl",
    ("search-flags", "train"): "flags_train.jsonl",
    ("search-flags", "test"): "flags_test.jsonl",
}
# Part of every distorted image's file name: bump it when distort_flag changes.
DISTORT_VERSION = 1
FORMAT_HINT = 'expected JSONL lines of {"question": str, "answers": [str, ...], "image"?: path, "evidence"?: [str]}'


@dataclass(frozen=True)
class Question:
    question: str
    answers: tuple[str, ...]
    image: str | None = None  # absolute path
    evidence: tuple[str, ...] = ()


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _parse_row(row: Any, where: str, base: Path) -> Question:
    if not isinstance(row, dict):
        raise VerirlError(f"{where}: expected a JSON object, got {_kind(row)} ({FORMAT_HINT})")
    question = row.get("question")
    if "question" not in row:
        raise VerirlError(f"{where}: 'question' is missing (expected a non-empty string)")
    if not isinstance(question, str) or not question.strip():
        raise VerirlError(f"{where}: 'question' must be a non-empty string, got {_kind(question)}")
    answers = row.get("answers")
    if "answers" not in row:
        raise VerirlError(f"{where}: 'answers' is missing (expected a non-empty list of strings)")
    if not isinstance(answers, list) or not answers:
        raise VerirlError(f"{where}: 'answers' must be a non-empty list of strings, got {_kind(answers)}")
    if not all(isinstance(a, str) and a.strip() for a in answers):
        raise VerirlError(f"{where}: 'answers' must be a non-empty list of non-empty strings")
    evidence = row.get("evidence")
    if evidence is None:
        evidence = []
    if not isinstance(evidence, list) or not all(isinstance(t, str) for t in evidence):
        raise VerirlError(f"{where}: 'evidence' must be a list of corpus titles (strings), got {_kind(evidence)}")
    image = row.get("image")
    flag = row.get("flag")
    if image is not None and flag is not None:
        raise VerirlError(f"{where}: give 'image' or 'flag', not both")
    if image is not None:
        image = _image_path(image, where, base)
    elif flag is not None:
        if not isinstance(flag, str) or not flag:
            raise VerirlError(f"{where}: 'flag' must be a flagpy country name (string), got {_kind(flag)}")
        try:
            image = str(flag_image(flag, question))
        except VerirlError as exc:
            raise VerirlError(f"{where}: 'flag': {exc}") from None
    return Question(question.strip(), tuple(a.strip() for a in answers), image, tuple(evidence))


def _image_path(image: Any, where: str, base: Path) -> str:
    if not isinstance(image, str) or not image.strip():
        raise VerirlError(f"{where}: 'image' must be a path (string) relative to the file, got {_kind(image)}")
    path = base / image
    try:
        found = path.is_file()
    except (OSError, ValueError):
        found = False
    if not found:
        raise VerirlError(f"{where}: 'image' file not found: {str(path)!r} (paths are relative to the JSONL file)")
    return str(path.resolve())


def read_questions(path: str | Path) -> list[Question]:
    """The questions of a JSONL file; any malformed line is a one-line :class:`VerirlError` naming ``file:line``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except (OSError, ValueError) as exc:
        raise VerirlError(f"{path}: cannot read the question file ({exc.__class__.__name__}); {FORMAT_HINT}") from None
    base = path.resolve().parent
    questions = []
    for n, raw in enumerate(data.split(b"\n"), 1):
        where = f"{path}:{n}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise VerirlError(f"{where}: not UTF-8 text") from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise VerirlError(f"{where}: not JSON ({exc.msg} at column {exc.colno}); {FORMAT_HINT}") from None
        except (ValueError, RecursionError) as exc:
            raise VerirlError(f"{where}: not JSON ({exc.__class__.__name__}); {FORMAT_HINT}") from None
        questions.append(_parse_row(row, where, base))
    if not questions:
        raise VerirlError(f"{path}: no questions ({FORMAT_HINT})")
    return questions


def builtin_questions(task: str, split: str) -> list[Question]:
    """A built-in question set: ``task`` in :data:`BUILTIN_TASKS`, ``split`` ``"train"`` or ``"test"``."""
    if task not in BUILTIN_TASKS:
        raise VerirlError(f"unknown built-in search task {task!r}: expected one of {', '.join(BUILTIN_TASKS)}")
    if split not in SPLITS:
        raise VerirlError(f"unknown split {split!r} of {task}: expected one of {', '.join(SPLITS)}")
    return read_questions(DATA_DIR / _FILES[(task, split)])


def distort_flag(flag: np.ndarray, seed: bytes) -> Image.Image:
    """A deterministic, mildly degraded copy of ``flag``: crop, resize to 60-90 %, Gaussian noise, JPEG."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed).digest()[:8], "little"))
    image = Image.fromarray(flag).convert("RGB")
    w, h = image.size
    left, right = (int(v) for v in rng.integers(0, max(1, w // 12) + 1, size=2))
    top, bottom = (int(v) for v in rng.integers(0, max(1, h // 12) + 1, size=2))
    image = image.crop((left, top, w - right, h - bottom))
    scale = float(rng.uniform(0.6, 0.9))
    size = (max(8, round(image.width * scale)), max(8, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.BILINEAR)
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0.0, float(rng.uniform(3.0, 8.0)), (size[1], size[0], 3))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(noisy, 0, 255).round().astype(np.uint8)).save(
        buffer, "JPEG", quality=int(rng.integers(30, 61))
    )
    buffer.seek(0)
    with Image.open(buffer) as jpeg:
        return jpeg.convert("RGB")


def flag_image(flag: str, question: str) -> Path:
    """The query image of a flag question: a distorted flag PNG in the cache, written once (atomically)."""
    if flag not in flag_names():
        raise VerirlError(f"unknown flag {flag[:80]!r}: expected a flagpy name such as 'France' or 'The_Gambia'")
    key = f"{DISTORT_VERSION}\0{flag}\0{question}".encode("utf-8", "surrogatepass")
    digest = hashlib.sha256(key).hexdigest()[:16]
    folder = cache_dir() / "search" / "flags"
    path = folder / f"{''.join(c if c.isalnum() else '_' for c in flag)}-{digest}.png"
    if path.is_file():
        return path
    image = distort_flag(load_flag(flag), key)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.stem}-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                image.save(f, "PNG")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise VerirlError(
            f"{folder}: cannot write the flag images ({exc}); set VERIRL_CACHE to a writable folder"
        ) from None
    return path
