"""GRPO on TRL's ``GRPOTrainer``: verirl supplies guarded rewards, the recipe's config, LoRA and callbacks.

TRL's trainer is used as is (no fork, no monkey-patch), so its losses (grpo, dr_grpo, dapo, ...), reward weighting,
logging and checkpointing behave exactly as documented upstream.
"""

from __future__ import annotations

from typing import Any

from verirl.answers import get_extractor
from verirl.recipes import Recipe
from verirl.rewards.base import resolve_reward
from verirl.rewards.guard import GuardedReward


def guarded_rewards(recipe: Recipe) -> list[GuardedReward]:
    """The recipe's rewards, each behind the failure guard, named as in the recipe (TRL logs rewards/<name>/mean)."""
    return [
        GuardedReward(resolve_reward(r.name, r.args), _metric_name(r.name), r.timeout_s, r.retry_per_sample)
        for r in recipe.rewards
    ]


def _metric_name(name: str) -> str:
    """Dotted paths make poor metric names: ``pkg.mod:fn`` -> ``fn``."""
    return name.rsplit(":", 1)[-1] if ":" in name else name


def build_grpo_trainer(
    recipe: Recipe,
    model: Any,
    tokenizer: Any,
    train_dataset: Any,
    config: Any,
    callbacks: list | None = None,
    peft_config: Any = None,
) -> Any:
    from trl import GRPOTrainer

    kwargs: dict[str, Any] = {}
    trainer_class = GRPOTrainer
    if recipe.advantage.name == "restrain":
        from verirl.rl.restrain import RestrainGRPOTrainer, restrain_config, with_prompt_weights

        kwargs["restrain"] = restrain_config(recipe.advantage)
        kwargs["extractor"] = get_extractor(recipe.advantage.extractor, recipe.advantage.extractor_args)
        if recipe.advantage.prompt_weights:
            train_dataset = with_prompt_weights(recipe, model, tokenizer, train_dataset, config, kwargs["extractor"])
        trainer_class = RestrainGRPOTrainer
    return trainer_class(
        model=model,
        reward_funcs=guarded_rewards(recipe),
        args=config,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
        **kwargs,
    )
