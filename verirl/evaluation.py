"""Held-out evaluation: greedy completions scored by a reward; accuracy = share of samples scoring >= threshold."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from verirl.errors import RecipeError
from verirl.generators.base import Generator, SamplingParams
from verirl.rewards.guard import GuardedReward
from verirl.rewards.spec import check_resolves
from verirl.typecheck import build_dataclass, setting


@dataclass
class EvalSpec:
    """A recipe's ``eval:`` section: held-out accuracy before and after training."""

    enabled: bool = setting(True, help="evaluate held-out prompts (false: no evaluation)")
    reward: str | None = setting(None, help="the reward that decides correctness (default: the recipe's first)")
    reward_args: dict[str, Any] = field(default_factory=dict, metadata={"help": "arguments bound to that reward"})
    threshold: float = setting(1.0, help="a sample is correct when its reward >= threshold")
    max_new_tokens: int | None = setting(None, help="tokens per answer (default: args.max_completion_length)", ge=1)
    batch_size: int = setting(32, help="prompts per generation batch", ge=1)
    before: bool = setting(True, help="also evaluate before training")


def build_eval_spec(value: Any, rewards: list[Any], file: str) -> EvalSpec:
    """``eval:`` of a recipe; when enabled, its reward (given, or the recipe's first) must resolve."""
    spec = build_dataclass(EvalSpec, value if value is not None else {}, file, "eval.")
    if not spec.enabled:
        return spec
    if spec.reward is None and not rewards:
        raise RecipeError(file, "eval.reward", "required when the recipe has no rewards (or set eval.enabled: false)")
    name, args = eval_reward(spec, rewards)
    reward = check_resolves(name, args, file, "eval.reward")
    if getattr(reward, "group_relative", False):  # e.g. a mixture of FlashEvaluators only
        shown = getattr(reward, "__name__", name)  # a mixture's own name
        raise RecipeError(
            file,
            "eval.reward",
            f"{shown!r} only ranks a prompt's completions against each other (a lone held-out answer always scores "
            "1); name a reward that grades one answer, e.g. number_match",
        )
    return spec


def eval_reward(spec: EvalSpec, rewards: list[Any]) -> tuple[str, dict[str, Any]]:
    """The reward (name, args) that defines held-out accuracy: ``eval.reward``, else the recipe's first reward."""
    if spec.reward:
        return spec.reward, spec.reward_args
    first = rewards[0]
    return first.name, spec.reward_args or first.args


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
