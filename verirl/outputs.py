"""The output directory: what is in it, and the rules that keep anything already written from being lost.

Layout::

    OUTPUT_DIR/
      recipe.yaml          the resolved recipe (after --set), re-loadable
      metrics.jsonl        one JSON object per logging step (appended across resumes)
      eval_results.json    held-out accuracy before/after, reward failure counts, wall time
      README.md            the model card (huggingface_hub ModelCard)
      model files          config + weights + tokenizer, or adapter_* for LoRA
      checkpoint-N/        trainer checkpoints (complete when trainer_state.json exists)
      error.log            traceback of a crash, if any
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from verirl.errors import VerirlError

RECIPE = "recipe.yaml"
METRICS = "metrics.jsonl"
RESULTS = "eval_results.json"
CARD = "README.md"
ERROR_LOG = "error.log"

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def check_output_dir(path: str | Path, overwrite: bool = False, resume: bool = False) -> None:
    """Refuse a non-empty directory unless ``resume`` or ``overwrite``; refuse ``resume`` of an empty one. The path
    is normalised first (``runs/x/..`` is ``runs``), and a path the system cannot use is an error, not a crash."""
    out = Path(os.path.normpath(path))
    try:
        if out.exists() and not out.is_dir():
            raise VerirlError(f"output_dir {out}: exists and is not a directory")
        has_content = out.is_dir() and any(out.iterdir())
    except OSError as exc:
        raise VerirlError(f"output_dir {str(out)[:80]}: not usable ({exc.strerror or exc})") from None
    if resume and not has_content:
        raise VerirlError(f"--resume: output_dir {out} has nothing to resume from")
    if has_content and not (overwrite or resume):
        raise VerirlError(
            f"output_dir {out}: not empty; pass --resume to continue that run, --overwrite to delete it, "
            "or set another output_dir (--set output_dir=...)"
        )


def prepare_output_dir(path: str | Path, overwrite: bool = False, resume: bool = False) -> Path:
    """Create the directory after :func:`check_output_dir`; ``overwrite`` deletes what was there (explicitly asked)."""
    out = Path(os.path.normpath(path))
    check_output_dir(out, overwrite, resume)
    if overwrite and not resume and out.is_dir():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def checkpoints(path: str | Path) -> list[Path]:
    """Checkpoint directories, oldest first."""
    out = Path(path)
    if not out.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in out.iterdir() if p.is_dir() and (m := _CHECKPOINT.match(p.name))]
    return [p for _, p in sorted(found)]


def last_complete_checkpoint(path: str | Path) -> Path | None:
    """The newest checkpoint that was fully written (trainer_state.json is saved last), skipping a torn one."""
    for ckpt in reversed(checkpoints(path)):
        if (ckpt / "trainer_state.json").is_file():
            return ckpt
    return None


def read_results(path: str | Path) -> dict[str, Any]:
    file = Path(path) / RESULTS
    if not file.is_file():
        return {}
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError:
        return {}


def write_json_atomic(file: Path, data: dict[str, Any]) -> None:
    tmp = file.with_suffix(file.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(file)
