"""``trainer: grpo`` — GRPO on TRL's ``GRPOTrainer``: verirl supplies guarded rewards, the recipe's config, LoRA,
callbacks, rollouts from any generator backend (:mod:`verirl.rl.rollouts`) and advantage schemes
(:mod:`verirl.rl.advantages`: TRL's own, or RESTRAIN's label-free ones).

TRL's trainer is used as is (no fork, no monkey-patch), so its losses (grpo, dr_grpo, dapo, ...), reward weighting,
logging and checkpointing behave exactly as documented upstream (Shao et al., arXiv 2402.03300).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from verirl.errors import RecipeError
from verirl.rewards.guard import guarded_rewards
from verirl.rl.advantages import AdvantageSpec, advantage_line, check_advantage
from verirl.rl.config import cpu_only, default_of
from verirl.rl.constrained_rollouts import ConstrainSpec, check_constrain, constrain_line
from verirl.rl.recipe_callbacks import callbacks_section
from verirl.rl.registry import register
from verirl.rl.trainer import Section, Trainer
from verirl.rl.trl_bounds import GRPO_BOUNDS
from verirl.rl.trl_run import Built, TrlParts, run_trl
from verirl.search.spec import EnvironmentSpec, check_environment, environment_line

logger = logging.getLogger("verirl")


def build_grpo_trainer(
    recipe: Any,
    model: Any,
    tokenizer: Any,
    train_dataset: Any,
    config: Any,
    callbacks: list | None = None,
    peft_config: Any = None,
    generator: Any = None,
    environment_factory: Any = None,
    constrain_to: list[str] | None = None,
) -> Any:
    """TRL's GRPOTrainer (or RESTRAIN's subclass); with ``generator`` (a vLLM backend) its rollouts come from it;
    with ``environment_factory`` rollouts are multi-turn tool episodes (:mod:`verirl.rl.agent`); with
    ``constrain_to`` every rollout is one of those completions (:mod:`verirl.rl.constrained_rollouts`)."""
    from trl import GRPOTrainer

    from verirl.answers import get_extractor

    kwargs: dict[str, Any] = {}
    rollouts = None
    if generator is not None:
        from verirl.rl.rollouts import GeneratorRollouts

        rollouts = GeneratorRollouts(generator)
    if constrain_to is not None:
        from verirl.rl.constrained_rollouts import ConstrainedRollouts

        rollouts = ConstrainedRollouts(constrain_to, tokenizer, config)
    if environment_factory is not None:
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # environment_factory is "experimental" in TRL 1.16
        kwargs["environment_factory"] = environment_factory
    elif rollouts is not None:
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is "experimental" in TRL 1.16
        kwargs["rollout_func"] = rollouts
    trainer_class = GRPOTrainer
    advantage = recipe.section("advantage")
    if advantage.name == "restrain":
        from verirl.rl.restrain import RestrainGRPOTrainer, restrain_config, with_prompt_weights

        kwargs["restrain"] = restrain_config(advantage)
        kwargs["extractor"] = get_extractor(advantage.extractor, advantage.extractor_args)
        if advantage.prompt_weights:
            train_dataset = with_prompt_weights(recipe, model, tokenizer, train_dataset, config, kwargs["extractor"])
        trainer_class = RestrainGRPOTrainer
    if environment_factory is not None:
        from verirl.rl.agent import EngineTurns

        trainer_class = type(f"EngineTurns{trainer_class.__name__}", (EngineTurns, trainer_class), {})
    trainer = trainer_class(
        model=model,
        reward_funcs=guarded_rewards(recipe.rewards),
        args=config,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
        **kwargs,
    )
    if environment_factory is not None and rollouts is not None:
        trainer.verirl_rollouts = rollouts
    return trainer


def _rollouts_of(trainer: Any) -> Any:
    return getattr(trainer, "verirl_rollouts", None) or getattr(trainer, "rollout_func", None)


def _build(parts: TrlParts) -> Built:
    recipe = parts.ctx.recipe
    engine = None
    if recipe.generator.backend != "hf":
        from verirl.generators.backends import build_generator

        logger.info("starting the %s rollout engine for %s ...", recipe.generator.backend, parts.source.path)
        engine = build_generator(
            recipe.generator,
            model_path=parts.source.path,
            tokenizer=parts.tokenizer,
            model_dtype=recipe.model.dtype,
            seed=parts.config.seed,
        )
    prepared = parts.prepared.state if parts.prepared is not None else None
    constrain = recipe.section("constrain")
    constrain_to = None
    if constrain.enabled:
        from verirl.rl.constrained_rollouts import load_completions

        constrain_to = load_completions(constrain.completions)
    trainer = build_grpo_trainer(
        recipe, parts.model, parts.tokenizer, parts.train_dataset, parts.config, parts.callbacks, parts.peft_config,
        generator=engine, environment_factory=prepared["factory"] if prepared else None, constrain_to=constrain_to,
    )  # fmt: skip

    def rollout_figures() -> dict[str, Any]:
        figures: dict[str, Any] = {}
        if prepared:
            answerer = prepared["answerer"]
            figures["answerer"] = {"answers_generated": answerer.calls, "cache_hits": answerer.hits}
        rollouts = _rollouts_of(trainer)
        if constrain_to is not None:
            return {**figures, "rollouts": {"constrained_to": rollouts.allowed,
                                            "generate_seconds": round(rollouts.seconds["generate"], 1)}}  # fmt: skip
        if engine is None:
            return figures
        return {
            **figures,
            "rollouts": {
                "backend": recipe.generator.backend,
                "engine_start_seconds": round(getattr(engine, "startup_seconds", 0.0), 1),
                "generate_seconds": round(rollouts.seconds["generate"], 1),
                "weight_sync_seconds": round(rollouts.seconds["sync"], 1),
            },
        }

    close = getattr(engine, "close", None)
    return Built(trainer, rewards=trainer.reward_funcs, extra=rollout_figures, close=close)


def run(ctx: Any) -> dict[str, Any]:
    from verirl.rl.agent import prepare_environment

    return run_trl(ctx, _build, prepare_environment)


def _grpo_config() -> type:
    from trl import GRPOConfig

    return GRPOConfig


def derive_args(recipe: Any, values: dict[str, Any], num_processes: int, file: str) -> dict[str, Any]:
    """``reward_weights`` from the rewards' weights; ``use_cpu`` without a GPU; batch divisibility for the launch's
    processes (TRL checks it for the current world size, 1 here)."""
    if "reward_weights" in values:
        raise RecipeError(file, "args.reward_weights", "set each reward's `weight` in `rewards` instead")
    derived: dict[str, Any] = {"reward_weights": [r.weight for r in recipe.rewards]}
    environment = recipe.section("environment")
    if environment.enabled:
        if "max_tool_calling_iterations" in values:
            raise RecipeError(file, "args.max_tool_calling_iterations", "set environment.max_turns instead")
        derived["max_tool_calling_iterations"] = environment.max_turns
    if "use_cpu" not in values:
        derived.update(cpu_only(values))
    check_batches(_grpo_config(), values, num_processes, file)
    return derived


def check_batches(cls: type, values: dict[str, Any], num_processes: int, file: str) -> None:
    per_device = values.get("per_device_train_batch_size", default_of(cls, "per_device_train_batch_size"))
    num_generations = values.get("num_generations", default_of(cls, "num_generations"))
    global_batch = per_device * num_processes
    if values.get("generation_batch_size") is not None:
        generation_batch = values["generation_batch_size"]
        if generation_batch % global_batch:
            raise RecipeError(
                file,
                "args.generation_batch_size",
                f"{generation_batch} must be divisible by per_device_train_batch_size × processes = {global_batch}",
            )
        detail = f"generation_batch_size = {generation_batch}"
    else:
        steps = values.get("steps_per_generation") or values.get(
            "gradient_accumulation_steps", default_of(cls, "gradient_accumulation_steps")
        )
        generation_batch = global_batch * steps
        detail = (
            f"{per_device} per device × {num_processes} processes × {steps} steps = {generation_batch} completions"
        )
    if num_generations and num_generations >= 2 and generation_batch % num_generations:
        raise RecipeError(
            file,
            "args.num_generations",
            f"the generation batch ({detail}) must be divisible by num_generations ({num_generations})",
        )


SEARCH_REWARDS = ("search_accuracy", "search_reasoning", "search_fidelity")


def check_recipe(recipe: Any) -> None:
    """The search rewards read the environment's episodes; an environment needs conversational prompts; constrained
    rollouts are sampled with transformers (backend hf), one turn."""
    environment = recipe.section("environment")
    if recipe.section("constrain").enabled:
        if environment.enabled:
            raise RecipeError(recipe.file, "constrain", "constrained rollouts are single-turn: drop the environment")
        if recipe.generator.backend != "hf":
            backend = recipe.generator.backend
            raise RecipeError(
                recipe.file, "generator.backend", f"constrained rollouts run on backend hf, not {backend}"
            )
    if not environment.enabled:
        for i, r in enumerate(recipe.rewards):
            if r.name in SEARCH_REWARDS:
                raise RecipeError(recipe.file, f"rewards.{i}.name", f"{r.name} needs an `environment: search` section")
        return
    if not recipe.data.chat:
        raise RecipeError(recipe.file, "data.chat", "an environment needs chat prompts (tool calls are messages)")
    if recipe.section("advantage").name != "grpo":
        raise RecipeError(recipe.file, "advantage.name", "an environment works with the grpo advantage only")


def plan(recipe: Any, config: Any, num_processes: int) -> list[tuple[str, str]]:
    generation_batch = config.per_device_train_batch_size * num_processes * config.steps_per_generation
    return [
        (
            "batches",
            f"{config.per_device_train_batch_size} completions/device x {num_processes} process(es), "
            f"{config.num_generations} per prompt, generation batch {generation_batch}, max_steps {config.max_steps}",
        )
    ]


GRPO = register(
    Trainer(
        name="grpo",
        summary="GRPO on TRL's GRPOTrainer: rollouts (hf, vLLM), guarded rewards, TRL's or RESTRAIN's advantages",
        run=run,
        config=_grpo_config,
        arg_bounds={**GRPO_BOUNDS, "num_generations": {"ge": 1}},  # 1: TRL's own message says why 2 are needed
        derive_args=derive_args,
        sections=(
            Section(
                "environment",
                EnvironmentSpec,
                shorthand="name",
                check=check_environment,
                plan=environment_line,
                example="{name: search, tools: [text_search, image_search], max_turns: 3}",
            ),
            Section(
                "constrain",
                ConstrainSpec,
                shorthand="completions",
                check=check_constrain,
                plan=constrain_line,
                example="ml-100k",
            ),
            callbacks_section("grpo", loss_is_signal=False),
            Section(
                "advantage",
                AdvantageSpec,
                shorthand="name",
                check=check_advantage,
                plan=advantage_line,
                example="{name: restrain}",
            ),
        ),
        backends=("hf", "vllm", "vllm-server", "auto"),
        rewards="required",
        rewards_hint="e.g. [{name: number_match}]",
        check=check_recipe,
        plan=plan,
    )
)
