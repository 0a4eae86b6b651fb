"""A trained FlashEvaluator (docs/flash_evaluator.md) as a verifier: ``flash_evaluator`` with ``model: DIR`` (the
``evaluator/`` folder of a ``trainer: evaluator`` run; an entry point of verirl in the group ``verirl.verifiers``).

The evaluator is listwise: it scores the K completions of one prompt jointly, and only their differences mean
something (it is trained with a softmax over the group). ``verify_batch`` therefore groups the batch's completions by
prompt (GRPO's groups) and, for a group's logits l, gives (our design):

    score_i = exp(l_i − max_j l_j)       (1 for the group's best, less the further behind)
    uncertainty = H(softmax(l)) / log K  (a flat group: the evaluator cannot tell them apart)

The uncertainty is the same for every completion of a prompt, so inside GRPO's group normalisation it rescales the
group, it does not reorder it (docs/verifier_mixtures.md, "a prompt-only factor cancels"). A lone completion
(K = 1) cannot be compared: score 1, uncertainty 1.
"""

from __future__ import annotations

import json
import math
from typing import Any

from verirl.verifiers.base import Verdict


class FlashVerifier:
    """A FlashEvaluator scoring each prompt's completions jointly; score = exp(logit - group max)."""

    group_relative = True  # scores compare a prompt's completions: a lone one scores 1, so it cannot grade held-out

    def __init__(self, model: str):
        from pathlib import Path

        if not isinstance(model, str) or not Path(model).expanduser().is_dir():
            raise ValueError(f"model: {model}: no such directory (the evaluator/ folder of a trainer: evaluator run)")
        self.name = model
        self._evaluator: Any = None  # loaded on first use: validating a recipe loads no weights

    @property
    def evaluator(self) -> Any:
        if self._evaluator is None:
            from verirl.verifiers.flash_evaluator import FlashEvaluator

            self._evaluator = FlashEvaluator.from_pretrained(self.name)
        return self._evaluator

    def verify_batch(self, prompts: list, completions: list[str], **columns: Any) -> list[Verdict]:
        groups: dict[str, list[int]] = {}
        for i, prompt in enumerate(prompts):
            groups.setdefault(json.dumps(prompt, sort_keys=True, default=str), []).append(i)
        verdicts: list[Verdict | None] = [None] * len(completions)
        for members in groups.values():
            if len(members) == 1:
                verdicts[members[0]] = Verdict(1.0, "flash_evaluator: a lone completion", {"uncertainty": 1.0})
                continue
            logits = self.evaluator.score_group(prompts[members[0]], [str(completions[i]) for i in members])
            top = max(logits)
            weights = [math.exp(x - top) for x in logits]
            total = sum(weights)
            probs = [w / total for w in weights]
            entropy = -sum(p * math.log(p) for p in probs if p > 0) / math.log(len(probs))
            for i, w, logit in zip(members, weights, logits, strict=True):
                feedback = f"flash_evaluator: logit {logit:.3f} ({w:.3f} of the group's best)"
                verdicts[i] = Verdict(w, feedback, {"uncertainty": entropy, "logit": logit})
        return verdicts  # type: ignore[return-value]

    def verify(self, prompt: Any, completion: Any, **ctx: Any) -> Verdict:
        return self.verify_batch([prompt], [str(completion)])[0]

    def __repr__(self) -> str:
        return f"FlashVerifier({self.name!r})"
