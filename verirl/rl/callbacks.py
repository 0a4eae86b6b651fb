"""Trainer callbacks: metrics as JSON lines (one object per logging step, appended, so a resumed run continues)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value


def append_metrics(path: Path, step: int, logs: dict[str, Any]) -> None:
    """One JSON line ``{"step", "time", **logs}`` appended to ``path`` (NaN/inf become null, tensors numbers)."""
    record = {"step": step, "time": round(time.time(), 3)}
    record.update({k: _jsonable(v) for k, v in logs.items()})
    with Path(path).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


class MetricsJSONLCallback(TrainerCallback):
    """Append every ``on_log`` dict (loss, rewards/<name>/mean, reward_failures/<name>, ...) to ``metrics.jsonl``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        append_metrics(self.path, state.global_step, logs)
