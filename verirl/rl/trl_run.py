"""The run shared by the trainers that are TRL trainers on a causal LM (GRPO, DPO): load the model and data,
evaluate held-out accuracy, train with the trainer the declaration builds, save, evaluate again, finish."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from verirl.errors import VerirlError
from verirl.rl.context import RunContext

logger = logging.getLogger("verirl")


@dataclass
class TrlParts:
    """What a TRL trainer is built from, handed to the declaration's ``build`` function."""

    ctx: RunContext
    config: Any
    model: Any
    tokenizer: Any
    source: Any  # verirl.models.ModelSource
    train_dataset: Any
    peft_config: Any
    callbacks: list = field(default_factory=list)
    prepared: Any = None  # what the declaration's ``prepare`` returned (e.g. the search environment)


@dataclass
class Prepared:
    """What a declaration's ``prepare`` hook changes before the held-out evaluation and training: the datasets
    (e.g. prompts rewritten for a tool-using agent) and how held-out accuracy is measured (``held_out(policy)``
    returns the evaluation to run; None: greedy single-turn generation scored by the eval reward)."""

    train_dataset: Any
    eval_dataset: Any
    held_out: Callable[[Any], Callable[[], dict[str, Any]]] | None = None
    state: Any = None


@dataclass
class Built:
    """A built TRL trainer, and what the run reports besides its own figures."""

    trainer: Any
    rewards: list | None = None  # guarded reward functions (failure counts go into the results)
    extra: Callable[[], dict[str, Any]] | None = None  # more training figures, asked for after training
    close: Callable[[], None] | None = None  # release what the trainer started (a rollout engine), before teardown


def run_trl(
    ctx: RunContext, build: Callable[[TrlParts], Built], prepare: Callable[..., Prepared | None] | None = None
) -> dict[str, Any]:
    """``prepare(ctx, config, model, tokenizer, source, train_dataset, eval_dataset)``, if given, runs after loading
    and before the held-out evaluation."""
    import torch
    from accelerate import PartialState
    from transformers import set_seed

    from verirl.data import load_data
    from verirl.evaluation import evaluate
    from verirl.generators.hf import HFGenerator
    from verirl.models import load_model, lora_config
    from verirl.rl.callbacks import MetricsJSONLCallback, ReleaseMemoryCallback
    from verirl.rl.recipe_callbacks import build_callbacks

    recipe = ctx.recipe
    state = PartialState()
    ctx.is_main = state.is_main_process
    config = ctx.config()
    set_seed(config.seed)
    model, tokenizer, source = load_model(
        recipe.model.name, recipe.model.dtype, recipe.model.trust_remote_code, recipe.model.revision
    )
    train_ds, eval_ds = load_data(recipe.data)
    check_columns(recipe, train_ds.column_names)
    peft_config = lora_config(recipe.model.lora, recipe.file) if recipe.model.lora is not None else None
    ctx.record_model(source.kind, source.base_model)
    max_new = recipe.eval.max_new_tokens or getattr(config, "max_completion_length", None) or 64
    prepared = prepare(ctx, config, model, tokenizer, source, train_ds, eval_ds) if prepare is not None else None
    if prepared is not None:
        train_ds, eval_ds = prepared.train_dataset, prepared.eval_dataset

    def greedy_held_out(policy: Any) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            generator = HFGenerator(
                policy,
                tokenizer,
                batch_size=recipe.eval.batch_size,
                autocast_bf16=bool(config.bf16) and not torch.cuda.is_available(),
            )
            logger.info("evaluating held-out accuracy on %d samples ...", len(eval_ds))
            return evaluate(generator, eval_ds, ctx.eval_scorer(), max_new, recipe.eval.threshold)

        return run

    held_out = prepared.held_out if prepared is not None and prepared.held_out is not None else greedy_held_out
    has_eval = eval_ds is not None and len(eval_ds) > 0
    if has_eval:
        ctx.evaluate("before", held_out(model))
    state.wait_for_everyone()

    parts = TrlParts(ctx, config, model, tokenizer, source, train_ds, peft_config, prepared=prepared)
    if recipe.declaration.section("callbacks") is not None:  # before the metrics callback: it logs what they add
        parts.callbacks.extend(build_callbacks(recipe.section("callbacks")))
    parts.callbacks.extend([MetricsJSONLCallback(ctx.out / "metrics.jsonl"), ReleaseMemoryCallback()])
    built = build(parts)
    try:
        checkpoint = ctx.last_checkpoint()
        train_start = time.time()
        output = built.trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        train_seconds = time.time() - train_start
        built.trainer.save_model(recipe.output_dir)
        if ctx.is_main:
            tokenizer.save_pretrained(recipe.output_dir)
        if has_eval:
            ctx.evaluate("after", held_out(built.trainer.model))
        train = {
            "processes": state.num_processes,
            "steps": built.trainer.state.global_step,
            "seconds": round(train_seconds, 1),
            "train_loss": getattr(output, "training_loss", None),
            **(built.extra() if built.extra else {}),
        }
        ctx.finish(train, built.rewards)
        state.wait_for_everyone()
    finally:  # after the last barrier: the engine's shutdown may take vLLM's process groups with it
        if built.close is not None:
            built.close()
    return ctx.results


def check_columns(recipe: Any, columns: list[str]) -> None:
    """Fail before training, not at the first reward call, when a reward needs a column the data lacks."""
    from verirl.rewards.base import required_columns, resolve_reward

    have = set(columns)
    for spec in recipe.rewards:
        missing = [c for c in required_columns(resolve_reward(spec.name, spec.args)) if c not in have]
        if missing:
            raise VerirlError(
                f"{recipe.file}: rewards: {spec.name!r} needs dataset column(s) {missing}; "
                f"the data has {sorted(have)} (rename with data.answer_column)"
            )
