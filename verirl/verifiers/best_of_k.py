"""Best-of-K: generate K candidates per prompt, let a listwise evaluator pick one.

Any :class:`~verirl.generators.base.Generator` and any evaluator with ``score_group`` (FlashEvaluator scores the K
candidates jointly in one pass; :class:`~verirl.verifiers.groups.RewardEvaluator` wraps a reward).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from verirl.generators.base import SamplingParams
from verirl.verifiers.groups import best_index


@dataclass
class Choice:
    prompt: Any
    index: int | None  # None when the generator returned no candidates
    text: str | None
    candidates: list[str]
    scores: list[float]


class BestOfK:
    def __init__(self, generator: Any, evaluator: Any, k: int = 8, sampling: SamplingParams | None = None):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.generator = generator
        self.evaluator = evaluator
        self.k = k
        self.sampling = sampling or SamplingParams(temperature=0.7)

    def select(self, prompts: list[Any]) -> list[Choice]:
        rollouts = self.generator.generate(list(prompts), n=self.k, sampling=self.sampling)
        return [self.choose(p, group) for p, group in zip(prompts, rollouts.texts, strict=True)]

    def choose(self, prompt: Any, candidates: list[str]) -> Choice:
        scores = list(self.evaluator.score_group(prompt, candidates))
        if not scores:
            return Choice(prompt, None, None, list(candidates), [])
        best = best_index(scores)
        return Choice(prompt, best, candidates[best], list(candidates), scores)
