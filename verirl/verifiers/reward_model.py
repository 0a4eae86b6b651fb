"""A learned reward model (sequence classification, one logit) as a verifier: ``reward_model`` with ``model: DIR|ID``
(an entry point of verirl in the group ``verirl.verifiers``).

Any model TRL's ``RewardTrainer`` trains (``trainer: reward_model`` in verirl, or any Hub reward model with one output
logit) scores a batch of completions in one forward pass (``verify_batch``). Inputs are built exactly as TRL built the
training pairs: chat prompts as ``apply_chat_template(prompt + [assistant completion])``, text prompts as
``prompt + completion + eos``.

A Bradley-Terry reward r is a logit, not a probability. Our design (not from a paper): score = σ((r − center) /
scale), the model's probability that this completion beats a typical one, with ``center`` and ``scale`` the mean and
standard deviation of its rewards on its own training completions (written by verirl's trainer into
``verirl_reward_model.json``; 0 and 1 otherwise, or as given). The verdict's ``probs`` are ``[p, 1 − p]``, so a
mixture reads its uncertainty as the binary entropy: sure near 0 or 1, unsure near 0.5 (docs/verifier_mixtures.md).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from verirl.verifiers.base import Verdict

CALIBRATION_FILE = "verirl_reward_model.json"


def check_model_path(model: str, what: str = "model") -> None:
    """A local path (./, /, ~, or not owner/name) must be a directory; a Hub id cannot be checked offline."""
    if not isinstance(model, str) or not model.strip():
        raise ValueError(f"{what}: expected a model directory or Hub id, got {model!r}")
    local = model.startswith((".", "/", "~")) or model.count("/") != 1
    if local and not Path(model).expanduser().is_dir():
        raise ValueError(f"{what}: {model}: no such directory (and not a Hub id owner/name)")


def calibration(model: str) -> dict[str, float]:
    """``{"center": ..., "scale": ...}`` saved beside a verirl-trained reward model ({} if none)."""
    path = Path(model).expanduser() / CALIBRATION_FILE
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {k: float(data[k]) for k in ("center", "scale") if k in data}


class RewardModelVerifier:
    """A sequence-classification reward model (local dir or Hub id), batched; score = sigmoid((r - center) / scale)."""

    def __init__(
        self,
        model: str,
        batch_size: int = 16,
        max_length: int = 1024,
        center: float | None = None,
        scale: float | None = None,
        revision: str | None = None,
    ):
        check_model_path(model)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
        saved = calibration(model)
        self.center = float(center if center is not None else saved.get("center", 0.0))
        self.scale = float(scale if scale is not None else saved.get("scale", 1.0))
        if not (math.isfinite(self.center) and math.isfinite(self.scale) and self.scale > 0):
            raise ValueError(f"center/scale: expected finite numbers and scale > 0, got {self.center}, {self.scale}")
        self.name, self.revision, self.batch_size, self.max_length = model, revision, batch_size, max_length
        self._model: Any = None  # loaded on first use: validating a recipe loads no weights

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.tokenizer = AutoTokenizer.from_pretrained(self.name, revision=self.revision)
        model = AutoModelForSequenceClassification.from_pretrained(self.name, revision=self.revision, dtype=dtype)
        if model.config.num_labels != 1:
            labels = model.config.num_labels
            raise ValueError(f"{self.name}: expected a reward model with one output (num_labels 1), got {labels}")
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        model.config.pad_token_id = self.tokenizer.pad_token_id
        self._model = model.to(self.device).eval()

    @property
    def model(self) -> Any:
        if self._model is None:
            self._load()
        return self._model

    def encode(self, prompt: Any, completion: str) -> list[int]:
        """Token ids of one (prompt, completion) as TRL's RewardTrainer tokenised its pairs."""
        self.model  # noqa: B018 - loads the tokenizer with the model
        if isinstance(prompt, list):
            messages = [*prompt, {"role": "assistant", "content": completion}]
            ids = self.tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
        else:
            text = f"{prompt or ''}{completion}"
            eos = self.tokenizer.eos_token or ""
            ids = self.tokenizer(text if text.endswith(eos) else text + eos)["input_ids"]
        return list(ids)[-self.max_length :]

    def rewards(self, prompts: list, completions: list[str]) -> list[float]:
        """The raw reward (logit) of each completion."""
        import torch

        out: list[float] = []
        for start in range(0, len(completions), self.batch_size):
            stop = start + self.batch_size
            ids = [self.encode(p, c) for p, c in zip(prompts[start:stop], completions[start:stop], strict=True)]
            batch = self.tokenizer.pad({"input_ids": ids}, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                logits = self.model(**batch).logits[:, 0]
            out.extend(float(x) for x in logits.float().cpu())
        return out

    def verify_batch(self, prompts: list, completions: list[str], **columns: Any) -> list[Verdict]:
        verdicts = []
        for r in self.rewards(list(prompts), [str(c) for c in completions]):
            p = 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, (r - self.center) / self.scale))))
            verdicts.append(Verdict(p, f"reward model: r={r:.3f}, p={p:.3f}", {"reward": r, "probs": [p, 1.0 - p]}))
        return verdicts

    def verify(self, prompt: Any, completion: Any, **ctx: Any) -> Verdict:
        return self.verify_batch([prompt], [str(completion)])[0]

    def __repr__(self) -> str:
        return f"RewardModelVerifier({self.name!r}, center={self.center:.3f}, scale={self.scale:.3f})"
