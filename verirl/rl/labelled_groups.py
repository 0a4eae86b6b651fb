"""K sampled generations per prompt, labelled by the recipe's first reward: the training data of the trainers that
learn a judge from a rule (``trainer: evaluator``, ``trainer: reward_model``).

The recipe's ``model`` samples through its ``generator`` (hf, vllm or vllm-server); each group is scored by the first
reward behind the failure guard, exactly as TRL calls a reward. Groups are written to ``groups_train.jsonl`` /
``groups_eval.jsonl`` in the output directory, and read back from ``groups_from`` instead of sampling.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from verirl.errors import VerirlError
from verirl.verifiers.groups import Group, build_groups, load_groups, save_groups

logger = logging.getLogger("verirl")


def labelled_groups(
    recipe: Any, out: Path, k: int, temperature: float, max_new_tokens: int, groups_from: str | None = None
) -> tuple[list[Group], list[Group]]:
    """(train groups, held-out groups) sampled with the recipe's model and labelled by its first reward."""
    if groups_from:
        src = Path(groups_from)
        logger.info("reusing groups from %s", src)
        return load_groups(src / "groups_train.jsonl"), load_groups(src / "groups_eval.jsonl")
    from verirl.data import load_data
    from verirl.devices import cpu_autocast_bf16
    from verirl.generators import SamplingParams
    from verirl.generators.backends import build_generator
    from verirl.models import load_model
    from verirl.rewards.base import resolve_reward
    from verirl.rewards.guard import GuardedReward

    model, tokenizer, source = load_model(  # vLLM backends hold their own weights
        recipe.model.name,
        recipe.model.dtype,
        recipe.model.trust_remote_code,
        recipe.model.revision,
        weights=recipe.generator.backend == "hf",
    )
    train_ds, eval_ds = load_data(recipe.data)
    if eval_ds is None:
        raise VerirlError(
            f"{recipe.file}: data: trainer {recipe.trainer} needs held-out data (data.n_eval or eval_split)"
        )
    first = recipe.rewards[0]
    reward = GuardedReward(
        resolve_reward(first.name, first.args), first.metric, first.timeout_s, first.retry_per_sample
    )
    generator = build_generator(
        recipe.generator,
        model_path=source.path,
        tokenizer=tokenizer,
        model=model,
        model_dtype=recipe.model.dtype,
        seed=recipe.data.seed,
        batch_size=64,
        autocast_bf16=cpu_autocast_bf16(),
    )
    sampling = SamplingParams(max_new_tokens=max_new_tokens, temperature=temperature, seed=recipe.data.seed)
    groups = {}
    try:
        for name, ds in (("train", train_ds), ("eval", eval_ds)):
            start = time.monotonic()
            groups[name] = build_groups(generator, ds, k, reward, sampling, log=logger.info)
            save_groups(groups[name], out / f"groups_{name}.jsonl")
            logger.info("%s groups: %d in %.0f s", name, len(groups[name]), time.monotonic() - start)
    finally:  # a vLLM engine holds its KV cache until closed; what trains next needs the memory
        close = getattr(generator, "close", None)
        if callable(close):
            close()
    return groups["train"], groups["eval"]
