"""Held-out evaluation: greedy completions scored by a reward; accuracy = share of samples scoring >= threshold."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from verirl.generators.base import Generator, SamplingParams
from verirl.rewards.guard import GuardedReward


def evaluate(
    generator: Generator,
    dataset: Any,
    reward_fn: Callable,
    max_new_tokens: int,
    threshold: float = 1.0,
    show: int = 5,
) -> dict[str, Any]:
    """Score greedy completions of ``dataset['prompt']`` with ``reward_fn`` (called as TRL calls it).

    Samples whose reward is None (not applicable, or failed in the guard) count as wrong and are reported.
    """
    start = time.monotonic()
    prompts = list(dataset["prompt"])
    rollouts = generator.generate(prompts, n=1, sampling=SamplingParams(max_new_tokens=max_new_tokens, temperature=0))
    texts = [group[0] for group in rollouts.texts]
    completions: list[Any] = [
        [{"role": "assistant", "content": t}] if isinstance(p, list) else t
        for p, t in zip(prompts, texts, strict=True)
    ]
    columns = {c: list(dataset[c]) for c in dataset.column_names if c != "prompt"}
    guarded = reward_fn if isinstance(reward_fn, GuardedReward) else GuardedReward(reward_fn, "eval")
    scores = guarded(
        prompts=prompts,
        completions=completions,
        completion_ids=[group[0] for group in rollouts.token_ids],
        **columns,
    )
    n = len(prompts)
    samples = []
    for i in range(min(show, n)):
        prompt = prompts[i][-1]["content"] if isinstance(prompts[i], list) else prompts[i]
        samples.append(
            {
                "prompt": prompt,
                "completion": texts[i],
                "answer": columns.get("answer", [None] * n)[i],
                "reward": scores[i],
            }
        )
    return {**score_summary(scores, threshold, start), "samples": samples}


def score_summary(scores: list[float | None], threshold: float, start: float) -> dict[str, Any]:
    """Accuracy (share of samples scoring >= threshold; unscored ones count as wrong), mean reward of the scored
    ones, counts and seconds since ``start`` (``time.monotonic()``). Shared by text and image evaluation."""
    valid = [s for s in scores if s is not None and math.isfinite(s)]
    n = len(scores)
    return {
        "accuracy": sum(1 for s in valid if s >= threshold) / n if n else 0.0,
        "mean_reward": sum(valid) / len(valid) if valid else None,
        "n": n,
        "unscored": n - len(valid),
        "seconds": round(time.monotonic() - start, 1),
    }
