"""TRL's ``rollout_func`` over a verirl generator: GRPO rollouts from the vLLM backends (in-process engine or a
``verirl serve`` server), with the trainer's weights synced into the engine after each optimizer step."""

from __future__ import annotations

import logging
import time
from typing import Any

logger = logging.getLogger("verirl")


class GeneratorRollouts:
    """TRL's ``rollout_func`` over a verirl generator (the vLLM backends).

    TRL hands over this process's prompts with each prompt repeated once per sample of its group; each run of equal
    prompts becomes one request for that many samples (one prefill, shared by the group). Before the first rollout
    after an optimizer step, the trainer's weights (LoRA merged) are synced into the engine; with a shared server only
    the main process pushes them and the others wait for it. Sampling settings come from the trainer's arguments
    (``temperature``, ``top_p``, ``top_k``, ``max_completion_length``).
    """

    def __init__(self, generator: Any):
        self.generator = generator
        self.synced_step: int | None = None
        self.seconds = {"sync": 0.0, "generate": 0.0}

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, list]:
        from verirl.generators.base import SamplingParams

        self._sync(trainer)
        args = trainer.args
        sampling = SamplingParams(
            max_new_tokens=args.max_completion_length,
            temperature=args.temperature,
            top_p=args.top_p,
            top_k=args.top_k or 0,
        )
        runs = _runs(prompts)
        prompt_ids = self.generator.encode([prompt for prompt, _ in runs])
        start = time.time()
        groups: list[tuple[list, list]] = [([], [])] * len(runs)  # (ids, logprobs) per run, filled below
        for n in {n for _, n in runs}:  # one request per group size (usually one: num_generations)
            chosen = [i for i, (_, count) in enumerate(runs) if count == n]
            ids, logprobs = self.generator.generate_ids([prompt_ids[i] for i in chosen], n, sampling)
            for i, group in zip(chosen, zip(ids, logprobs, strict=True), strict=True):
                groups[i] = group
        self.seconds["generate"] += time.time() - start
        # TRL's order: the runs in order, each run's samples together
        return {
            "prompt_ids": [prompt_ids[i] for i, (ids, _) in enumerate(groups) for _ in ids],
            "completion_ids": [c for ids, _ in groups for c in ids],
            "logprobs": [lp for _, lps in groups for lp in lps],
        }

    def _sync(self, trainer: Any) -> None:
        step = trainer.state.global_step
        if step == self.synced_step:
            return
        start = time.time()
        accelerator = trainer.accelerator
        if accelerator.is_main_process or not self.generator.shared:
            self.generator.sync_from(accelerator.unwrap_model(trainer.model))
        if self.generator.shared:
            accelerator.wait_for_everyone()
        self.synced_step = step
        self.seconds["sync"] += time.time() - start
        logger.debug("rollout engine weights synced at step %d in %.2f s", step, time.time() - start)


def _runs(prompts: list[Any]) -> list[tuple[Any, int]]:
    """Consecutive equal prompts as ``(prompt, count)``: ``[a, a, b, b, b] -> [(a, 2), (b, 3)]``."""
    runs: list[tuple[Any, int]] = []
    for prompt in prompts:
        if runs and runs[-1][0] == prompt:
            runs[-1] = (prompt, runs[-1][1] + 1)
        else:
            runs.append((prompt, 1))
    return runs
