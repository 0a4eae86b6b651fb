"""``trainer: reward_model`` — a sequence-classification reward model on TRL's ``RewardTrainer`` (Bradley-Terry
loss over chosen/rejected pairs), used as a verifier (``reward_model`` with ``model: DIR``; docs/verifier_mixtures.md).

Pairs come from either

* the data: ``prompt`` (optional) / ``chosen`` / ``rejected`` columns, TRL's preference format; or
* verifier-labelled groups: the recipe's model samples ``k`` completions per prompt (``generator``), the first reward
  labels them (:mod:`verirl.rl.labelled_groups`), and every two completions of a group whose rewards differ by more
  than ``min_gap`` make a pair (``pairs: all``), or only the best and the worst (``pairs: best_worst``).

The model is the recipe's ``model`` with a fresh one-logit head (``AutoModelForSequenceClassification``). After
training, verirl scores the training completions and saves their mean and standard deviation beside the model
(``verirl_reward_model.json``): the verifier's calibration (our design; see :mod:`verirl.verifiers.reward_model`).
Held out: pair accuracy, and with sampled groups best-of-K selection (the reward model's pick vs the first sample and
the oracle, in the labelling reward).
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from verirl import outputs
from verirl.cards import CardInfo
from verirl.errors import RecipeError, VerirlError
from verirl.rl.config import cpu_only
from verirl.rl.preference_pairs import PAIR_MODES, PAIRS_HELP, group_pairs, preference_row
from verirl.rl.recipe_callbacks import callbacks_section
from verirl.rl.registry import register
from verirl.rl.trainer import Section, Trainer
from verirl.rl.trl_bounds import TRAINING_ARGUMENTS_BOUNDS
from verirl.typecheck import setting

logger = logging.getLogger("verirl")


@dataclass
class RewardModelSpec:
    """The ``reward_model:`` section: how pairs are made when the data has no chosen/rejected columns."""

    k: int = setting(8, help="completions sampled per prompt (labelled by the first reward)", ge=2)
    temperature: float = setting(1.0, help="sampling temperature of the completions", ge=0)
    max_new_tokens: int = setting(32, help="tokens per completion", ge=1)
    pairs: str = setting("all", help=PAIRS_HELP, choices=PAIR_MODES)
    min_gap: float = setting(0.0, help="a pair's rewards must differ by more than this", ge=0)
    groups_from: str | None = setting(None, help="reuse groups_train.jsonl / groups_eval.jsonl from this directory")
    calibration_samples: int = setting(512, help="training completions scored for the verifier's center/scale", ge=2)


def check_spec(spec: RewardModelSpec, given: Mapping[str, Any], file: str) -> RewardModelSpec:
    from pathlib import Path

    if spec.groups_from is not None and not Path(spec.groups_from).is_dir():
        raise RecipeError(file, "reward_model.groups_from", f"not a directory: {spec.groups_from}")
    return spec


def _text(value: Any) -> str:
    """A completion as text (a chat completion: its last message's content)."""
    return str(value[-1]["content"]) if isinstance(value, list) and value else str(value)


def _preference_rows(ds: Any) -> list[dict[str, Any]]:
    """Rows of a preference dataset in one format: a chat prompt (``data.chat``) gets chat completions."""
    return [preference_row(r.get("prompt", ""), _text(r["chosen"]), _text(r["rejected"])) for r in ds]


def _pairs(ctx: Any) -> tuple[list[dict], list[dict], list[Any]]:
    """(train pairs, held-out pairs, held-out groups) from the data's columns or from labelled groups."""
    from verirl.data import load_data
    from verirl.rl.labelled_groups import labelled_groups

    recipe, spec = ctx.recipe, ctx.recipe.section("reward_model")
    if not spec.groups_from:
        train_ds, eval_ds = load_data(recipe.data)
        if {"chosen", "rejected"} <= set(train_ds.column_names):
            return _preference_rows(train_ds), _preference_rows(eval_ds) if eval_ds is not None else [], []
        if not recipe.rewards:
            raise VerirlError(
                f"{recipe.file}: data: no chosen/rejected columns ({', '.join(train_ds.column_names)}); "
                "give a rewards: entry to label sampled completions, or preference data"
            )
    train_groups, eval_groups = labelled_groups(
        recipe, ctx.out, spec.k, spec.temperature, spec.max_new_tokens, spec.groups_from
    )
    train = group_pairs(train_groups, spec.pairs, spec.min_gap)
    held_out = group_pairs(eval_groups, "all", spec.min_gap)
    return train, held_out, eval_groups


def _completions(rows: list[dict], limit: int) -> tuple[list[Any], list[str]]:
    prompts, texts = [], []
    for row in rows:
        for side in ("chosen", "rejected"):
            prompts.append(row.get("prompt", ""))
            texts.append(_text(row[side]))
    return prompts[:limit], texts[:limit]


def held_out_figures(scorer: Any, pairs: list[dict], groups: list[Any]) -> dict[str, Any]:
    """Pair accuracy (chosen scored above rejected; ties half) and best-of-K selection on the held-out groups."""
    from verirl.verifiers.flash_training import pick_metrics
    from verirl.verifiers.groups import best_index

    figures: dict[str, Any] = {"pairs": len(pairs)}
    if pairs:
        prompts, texts = _completions(pairs, 2 * len(pairs))
        rewards = scorer.rewards(prompts, texts)
        wins = [1.0 if c > r else 0.5 if c == r else 0.0 for c, r in zip(rewards[::2], rewards[1::2], strict=True)]
        figures["pair_accuracy"] = sum(wins) / len(wins)
    if groups:
        picks = []
        for g in groups:
            scores = scorer.rewards([g.context] * len(g.candidates), list(g.candidates)) if g.candidates else []
            picks.append(best_index(scores) if scores else None)
        figures["best_of_k"] = {
            "reward_model": pick_metrics(groups, picks),
            "first_sample": pick_metrics(groups, [0 if g.candidates else None for g in groups]),
            "oracle": pick_metrics(groups, [best_index(g.rewards) for g in groups]),
        }
    return figures


def run(ctx: Any) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, set_seed
    from trl import RewardTrainer

    from verirl.models import load_tokenizer, lora_config, resolve_model, torch_dtype
    from verirl.rl.callbacks import MetricsJSONLCallback, ReleaseMemoryCallback
    from verirl.rl.recipe_callbacks import build_callbacks
    from verirl.verifiers.reward_model import CALIBRATION_FILE, RewardModelVerifier

    recipe, spec = ctx.recipe, ctx.recipe.section("reward_model")
    config = ctx.config()
    set_seed(config.seed)
    train_pairs, eval_pairs, eval_groups = _pairs(ctx)
    if not train_pairs:
        raise VerirlError(
            f"{recipe.file}: no training pairs (every group's completions scored alike); sample more (reward_model.k, "
            "temperature) or lower reward_model.min_gap"
        )
    logger.info("reward model: %d training pairs, %d held-out pairs", len(train_pairs), len(eval_pairs))
    source = resolve_model(recipe.model.name)
    tokenizer = load_tokenizer(source.path, recipe.model.trust_remote_code, recipe.model.revision)
    model = AutoModelForSequenceClassification.from_pretrained(
        source.path,
        num_labels=1,
        dtype=torch_dtype(recipe.model.dtype),
        trust_remote_code=recipe.model.trust_remote_code,
        revision=recipe.model.revision,
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    ctx.record_model(source.kind, source.base_model)
    lora = recipe.model.lora
    peft = lora_config(lora, recipe.file, {"task_type": "SEQ_CLS"}) if lora is not None else None
    trainer = RewardTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(train_pairs),
        processing_class=tokenizer,
        callbacks=[
            *build_callbacks(recipe.section("callbacks")),
            MetricsJSONLCallback(ctx.out / "metrics.jsonl"),
            ReleaseMemoryCallback(),
        ],  # fmt: skip
        peft_config=peft,
    )
    checkpoint = ctx.last_checkpoint()
    start = time.monotonic()
    output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.monotonic() - start
    if peft is not None:
        trainer.model = trainer.model.merge_and_unload()  # a plain classifier: the verifier loads it directly
    trainer.model.save_pretrained(recipe.output_dir)
    tokenizer.save_pretrained(recipe.output_dir)

    scorer = RewardModelVerifier(str(ctx.out), center=0.0, scale=1.0)
    rewards = scorer.rewards(*_completions(train_pairs, spec.calibration_samples))
    calibration = {"center": statistics.fmean(rewards), "scale": max(statistics.pstdev(rewards), 1e-6)}
    (ctx.out / CALIBRATION_FILE).write_text(json.dumps(calibration, indent=1) + "\n")
    ctx.results["held_out"] = held_out_figures(scorer, eval_pairs, eval_groups)
    outputs.write_json_atomic(ctx.out / outputs.RESULTS, ctx.results)
    train = {
        "steps": trainer.state.global_step,
        "seconds": round(seconds, 1),
        "train_loss": getattr(output, "training_loss", None),
        "pairs": len(train_pairs),
        "calibration": calibration,
    }
    return ctx.finish(train)


def _reward_config() -> type:
    from trl import RewardConfig

    return RewardConfig


def derive_args(recipe: Any, values: dict[str, Any], num_processes: int, file: str) -> dict[str, Any]:
    return {} if "use_cpu" in values else cpu_only(values)


def plan(recipe: Any, config: Any, num_processes: int) -> list[tuple[str, str]]:
    spec = recipe.section("reward_model")
    if spec.groups_from:
        source = f"pairs from the groups in {spec.groups_from}"
    elif recipe.rewards:
        source = f"pairs ({spec.pairs}) from {spec.k} completions per prompt labelled by {recipe.rewards[0].metric}"
    else:
        source = "pairs from the data's chosen/rejected columns"
    return [("reward_model", f"{source}; held out: pair accuracy" + (", best-of-K" if recipe.rewards else ""))]


REWARD_MODEL = register(
    Trainer(
        name="reward_model",
        summary="a reward model on TRL's RewardTrainer, from preference pairs or reward-labelled samples",
        run=run,
        config=_reward_config,
        arg_bounds={**TRAINING_ARGUMENTS_BOUNDS, "max_length": {"ge": 1}, "center_rewards_coefficient": {"ge": 0}},
        derive_args=derive_args,
        sections=(
            Section("reward_model", RewardModelSpec, check=check_spec, example="{k: 8, pairs: all}"),
            callbacks_section("reward_model"),
        ),
        backends=("hf", "vllm", "vllm-server", "auto"),
        rewards="optional",
        rewards_hint="the first reward labels sampled completions (none: the data has chosen/rejected columns)",
        evaluates=False,
        plan=plan,
        model_files=("config.json",),
        card=CardInfo(task="text-classification", method="reward model on TRL's RewardTrainer", reinforcement=False),
    )
)
