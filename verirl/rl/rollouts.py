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
        self.sync(trainer)
        sampling = trainer_sampling(trainer.args)
        runs = runs_of(prompts)
        prompt_ids = self.generator.encode([prompt for prompt, _ in runs])
        groups = self.generate_groups(prompt_ids, [n for _, n in runs], sampling)
        # TRL's order: the runs in order, each run's samples together
        return {
            "prompt_ids": [prompt_ids[i] for i, (ids, _) in enumerate(groups) for _ in ids],
            "completion_ids": [c for ids, _ in groups for c in ids],
            "logprobs": [lp for _, lps in groups for lp in lps],
        }

    def generate_groups(
        self, prompt_ids: list[list[int]], counts: list[int], sampling: Any
    ) -> list[tuple[list, list]]:
        """``counts[i]`` samples of tokenized prompt i: (completion ids, log-probs) per prompt, one engine request per
        distinct count (usually one: num_generations, or 1 for the turns after tool calls). Timed."""
        start = time.time()
        groups: list[tuple[list, list]] = [([], [])] * len(prompt_ids)
        for n in set(counts):
            chosen = [i for i, count in enumerate(counts) if count == n]
            ids, logprobs = self.generator.generate_ids([prompt_ids[i] for i in chosen], n, sampling)
            for i, group in zip(chosen, zip(ids, logprobs, strict=True), strict=True):
                groups[i] = group
        self.seconds["generate"] += time.time() - start
        return groups

    def sync(self, trainer: Any) -> None:
        """The trainer's weights into the engine, once per optimizer step."""
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


def trainer_sampling(args: Any) -> Any:
    """The trainer's sampling settings as verirl's :class:`~verirl.generators.base.SamplingParams`."""
    from verirl.generators.base import SamplingParams

    top_k = args.top_k or 0
    return SamplingParams(args.max_completion_length, args.temperature, args.top_p, top_k)


def runs_of(prompts: list[Any]) -> list[tuple[Any, int]]:
    """Consecutive equal prompts as ``(prompt, count)``: ``[a, a, b, b, b] -> [(a, 2), (b, 3)]``."""
    runs: list[tuple[Any, int]] = []
    for prompt in prompts:
        if runs and runs[-1][0] == prompt:
            runs[-1] = (prompt, runs[-1][1] + 1)
        else:
            runs.append((prompt, 1))
    return runs
