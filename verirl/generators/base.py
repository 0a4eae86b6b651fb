"""The generator interface: prompts in, ``n`` completions per prompt out.

Backends: ``hf`` (transformers ``generate``, here); ``vllm`` / ``vllm-server`` (vLLM engines) and the diffusion
generator (images with per-step latents and log-probs) implement the same call. ``Rollouts.extra`` carries what a
backend adds (per-step log-probs, multi-turn tool transcripts, masks for tool output) without changing the contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class SamplingParams:
    max_new_tokens: int = 64
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


@dataclass
class Rollouts:
    """``texts[i][j]`` is the j-th completion of prompt i; ``token_ids`` likewise (completion tokens only)."""

    prompts: list[Any]
    texts: list[list[str]]
    token_ids: list[list[list[int]]]
    logprobs: list[list[list[float]]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def flat(self) -> tuple[list[Any], list[str]]:
        """(prompt, completion) pairs flattened prompt-major, as TRL passes them to rewards."""
        prompts = [p for p, group in zip(self.prompts, self.texts, strict=True) for _ in group]
        return prompts, [t for group in self.texts for t in group]


def prompt_text(tokenizer: Any, prompt: Any) -> str:
    """A plain-text prompt as is; a chat (list of messages) through the tokenizer's chat template."""
    if isinstance(prompt, str):
        return prompt
    return tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)


def strip_after_eos(ids: list[int], tokenizer: Any) -> list[int]:
    """Cut a completion at its first stop token: EOS is kept (it was generated), padding is dropped."""
    stop = {tokenizer.eos_token_id, tokenizer.pad_token_id} - {None}
    for i, token in enumerate(ids):
        if token in stop:
            return ids[: i + 1] if token == tokenizer.eos_token_id else ids[:i]
    return ids


@runtime_checkable
class Generator(Protocol):
    def generate(self, prompts: list[Any], n: int = 1, sampling: SamplingParams | None = None) -> Rollouts: ...
