"""The verifier interface: ``verify(prompt, completion, **ctx) -> Verdict(score, feedback)``.

A verdict carries feedback text as well as a score, for uses that need more than a scalar (verifier-ranked DPO,
self-correction, mixtures that gate on a verifier's confidence). :func:`verifier_reward` turns any verifier into a
TRL reward function, so it plugs into GRPO like any other reward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from verirl.rewards.base import completion_text


@dataclass(frozen=True)
class Verdict:
    score: float | None  # None: the verifier does not apply to this sample
    feedback: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Verifier(Protocol):
    def verify(self, prompt: Any, completion: Any, **ctx: Any) -> Verdict: ...


TRL_ARGS = frozenset(
    {"prompts", "completions", "trainer_state", "log_extra", "log_metric", "completion_ids", "environments"}
)


def row_columns(kwargs: dict[str, Any]) -> dict[str, list]:
    """The dataset columns among a TRL reward call's keyword arguments (one value per sample; TRL's own dropped)."""
    return {k: v for k, v in kwargs.items() if k not in TRL_ARGS and isinstance(v, list)}


def verifier_reward(verifier: Verifier, name: str | None = None) -> Callable[..., list[float | None]]:
    """A TRL reward that scores each sample with ``verifier.verify``; per-sample columns are passed as ``ctx``.

    Feedback is logged to TRL's completions table (``log_extra``) when the trainer provides it.
    """

    def reward_fn(prompts: list, completions: list, **kwargs: Any) -> list[float | None]:
        columns = row_columns(kwargs)
        verdicts = [
            verifier.verify(p, completion_text(c), **{k: v[i] for k, v in columns.items()})
            for i, (p, c) in enumerate(zip(prompts, completions, strict=True))
        ]
        log_extra = kwargs.get("log_extra")
        if callable(log_extra):
            log_extra(f"{reward_fn.__name__}_feedback", [v.feedback or "" for v in verdicts])
        return [v.score for v in verdicts]

    reward_fn.__name__ = name or type(verifier).__name__
    return reward_fn
