"""``trainer: online_dpo`` — online (iterative) DPO ranked by verifiers: rounds of *sample K completions per prompt
from the current policy → score them with the recipe's rewards → pairs → TRL's DPOTrainer*, each round starting from
the policy the last one trained.

The method: DPO (Rafailov et al., arXiv 2305.18290) on on-policy pairs, as in iterative DPO (Xiong et al., arXiv
2312.11456) and online AI feedback (Guo et al., arXiv 2402.04792). Our design: the pairs of a group are its best and
worst completion (``pairs: best_worst``), every two whose rewards differ by more than ``min_gap`` (``all``), or the
i-th best with the i-th worst (``disjoint``: each completion in one pair at most, so a round's DPO computes no sequence
twice); groups whose completions all score alike give no pair (counted); the reference is the initial model
(``reference: initial``, the KL anchor of the iterative-DPO objective) or the policy at the start of the round
(``previous``); each round's prompts are the next ``prompts_per_round`` rows of the training data (wrapping around);
each round runs the recipe's ``args`` (epochs or ``max_steps`` per round) with the seed advanced by the round.

Why not TRL's experimental ``OnlineDPOTrainer``: it samples exactly two completions per prompt (``num_generations`` is
fixed at 2 in TRL 1.16) and scores them one by one, so it cannot rank a group of K, build every pair of a group, or
rank K jointly with the FlashEvaluator; its pair per prompt and step is the ``k: 2, pairs: best_worst`` case here.

Outputs: ``rounds.jsonl`` (one line per finished round: pairs kept, groups without a pair, rewards of chosen and
rejected, held-out accuracy), ``round-model/`` (the policy after the last finished round: ``--resume`` continues from
it; a round interrupted mid-way resumes from its own checkpoint in ``round-N/``), ``metrics.jsonl`` (DPO steps,
tagged with their round) and the final model in the output directory.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verirl import outputs
from verirl.cards import CardInfo
from verirl.errors import RecipeError
from verirl.rl.config import cpu_only
from verirl.rl.preference_pairs import PAIR_MODES, PAIRS_HELP, group_pairs
from verirl.rl.recipe_callbacks import callbacks_section
from verirl.rl.registry import register
from verirl.rl.trainer import Section, Trainer
from verirl.rl.trl_bounds import DPO_BOUNDS
from verirl.typecheck import setting

logger = logging.getLogger("verirl")

REFERENCES = ("initial", "previous")
ROUNDS_FILE = "rounds.jsonl"
ROUND_MODEL = "round-model"


@dataclass(frozen=True)
class OnlineDPOSpec:
    """The ``online_dpo:`` section: the rounds and how each round's pairs are made."""

    rounds: int = setting(4, help="sample -> rank -> DPO rounds", ge=1, le=10000)
    k: int = setting(4, help="completions sampled per prompt each round", ge=2, le=256)
    prompts_per_round: int = setting(32, help="prompts sampled each round (the next rows of the data)", ge=1)
    pairs: str = setting("best_worst", help=PAIRS_HELP, choices=PAIR_MODES)
    min_gap: float = setting(0.0, help="a pair's rewards must differ by more than this", ge=0)
    temperature: float = setting(1.0, help="sampling temperature", gt=0)
    max_new_tokens: int = setting(64, help="tokens per sampled completion", ge=1)
    reference: str = setting("initial", help="initial: the starting model; previous: the policy at the round's start",
                             choices=REFERENCES)  # fmt: skip
    eval_every_round: bool = setting(True, help="held-out accuracy after every round (else after the last only)")


def check_recipe(recipe: Any) -> None:
    spec = recipe.section("online_dpo")
    if spec.reference == "previous" and recipe.model.lora is not None:
        raise RecipeError(recipe.file, "online_dpo.reference", "with LoRA the reference is the initial model "
                          "(the adapter disabled): use reference: initial")  # fmt: skip


class WeightedReward:
    """The recipe's guarded rewards as one TRL-style reward: Σ weight × reward over the rewards that scored a
    completion (None when none did)."""

    def __init__(self, rewards: list[Any], weights: list[float]):
        self.rewards = rewards
        self.weights = weights

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        per_reward = [r(prompts=prompts, completions=completions, **kwargs) for r in self.rewards]
        combined: list[float | None] = []
        for i in range(len(completions)):
            scored = [(w, s[i]) for w, s in zip(self.weights, per_reward, strict=True) if s[i] is not None]
            combined.append(sum(w * v for w, v in scored) if scored else None)
        return combined


def round_rows(dataset: Any, round_index: int, n: int) -> Any:
    """The round's prompts: rows ``[round × n, (round + 1) × n)`` of ``dataset``, wrapping around."""
    size = len(dataset)
    return dataset.select([(round_index * n + i) % size for i in range(min(n, size))])


def round_figures(
    groups: list[Any], pair_rewards: list[tuple[float, float]], k: int, without_pair: int
) -> dict[str, Any]:
    scored = [s for g in groups for s in g.rewards]
    return {
        "prompts": len(groups),
        "samples": len(groups) * k,
        "samples_scored": len(scored),
        "pairs": len(pair_rewards),
        "groups_without_pair": without_pair,
        "reward_mean": statistics.fmean(scored) if scored else None,
        "chosen_reward": statistics.fmean(c for c, _ in pair_rewards) if pair_rewards else None,
        "rejected_reward": statistics.fmean(r for _, r in pair_rewards) if pair_rewards else None,
    }


def read_rounds(out: Path) -> list[dict[str, Any]]:
    path = out / ROUNDS_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []


def save_round_model(model: Any, tokenizer: Any, out: Path) -> None:
    """The policy into ``round-model/``, replacing the previous round's only once the new one is whole."""
    tmp = out / f"{ROUND_MODEL}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    old = out / f"{ROUND_MODEL}.old"
    if (out / ROUND_MODEL).exists():
        (out / ROUND_MODEL).rename(old)
    tmp.rename(out / ROUND_MODEL)
    shutil.rmtree(old, ignore_errors=True)


def run(ctx: Any) -> dict[str, Any]:
    from datasets import Dataset
    from transformers import set_seed
    from trl import DPOTrainer

    from verirl.data import load_data
    from verirl.devices import cpu_autocast_bf16
    from verirl.evaluation import evaluate
    from verirl.generators import SamplingParams
    from verirl.generators.hf import HFGenerator
    from verirl.models import load_model, lora_config
    from verirl.rewards.guard import guarded_rewards
    from verirl.rl.callbacks import MetricsJSONLCallback, ReleaseMemoryCallback
    from verirl.rl.recipe_callbacks import build_callbacks
    from verirl.rl.trl_run import check_columns
    from verirl.verifiers.groups import build_groups

    recipe, spec = ctx.recipe, ctx.recipe.section("online_dpo")
    config = ctx.config()
    set_seed(config.seed)
    train_ds, eval_ds = load_data(recipe.data)
    check_columns(recipe, train_ds.column_names)
    done = read_rounds(ctx.out) if ctx.resume else []
    start_from = ctx.out / ROUND_MODEL if done and (ctx.out / ROUND_MODEL).is_dir() else None
    if done and start_from is None:
        done = []  # rounds recorded without their model: start again
    model, tokenizer, source = load_model(
        recipe.model.name, recipe.model.dtype, recipe.model.trust_remote_code, recipe.model.revision
    )
    ctx.record_model(source.kind, source.base_model)
    peft_config = lora_config(recipe.model.lora, recipe.file) if recipe.model.lora is not None else None
    reference = None
    if peft_config is None and spec.reference == "initial":
        reference = copy.deepcopy(model).eval().requires_grad_(False)
    if start_from is not None:
        model = _load_round_model(start_from, recipe, peft_config is not None)
        logger.info("resuming online DPO after round %d from %s", len(done), start_from)
    rewards = guarded_rewards(recipe.rewards)
    scorer = WeightedReward(rewards, [r.weight for r in recipe.rewards])
    sampling = SamplingParams(max_new_tokens=spec.max_new_tokens, temperature=spec.temperature)  # seeded per round
    autocast = cpu_autocast_bf16(bool(config.bf16))

    def held_out(policy: Any) -> Any:
        generator = HFGenerator(policy, tokenizer, batch_size=recipe.eval.batch_size, autocast_bf16=autocast)
        max_new = recipe.eval.max_new_tokens or spec.max_new_tokens
        return lambda: evaluate(generator, eval_ds, ctx.eval_scorer(), max_new, recipe.eval.threshold)

    has_eval = eval_ds is not None and len(eval_ds) > 0
    if has_eval:
        ctx.evaluate("before", held_out(model))
    wrapped = start_from is not None and peft_config is not None
    engine = None
    if recipe.generator.backend != "hf":
        from verirl.generators.backends import build_generator

        logger.info("starting the %s sampling engine for %s ...", recipe.generator.backend, source.path)
        engine = build_generator(recipe.generator, model_path=source.path, tokenizer=tokenizer,
                                 model_dtype=recipe.model.dtype, seed=config.seed)  # fmt: skip
    started = time.time()
    try:
        for index in range(len(done), spec.rounds):
            round_start = time.time()
            rows = round_rows(train_ds, index, spec.prompts_per_round)
            if engine is not None:
                engine.sync_from(model)  # the current policy (LoRA merged in)
                generator = engine
            else:
                generator = HFGenerator(model, tokenizer, batch_size=64, autocast_bf16=autocast)
            groups = build_groups(
                generator, rows, spec.k, scorer, dataclasses.replace(sampling, seed=config.seed + index)
            )
            pair_rewards: list[tuple[float, float]] = []
            per_group = [group_pairs([g], spec.pairs, spec.min_gap, pair_rewards) for g in groups]
            pairs = [pair for found in per_group for pair in found]
            without_pair = sum(1 for found in per_group if not found)  # all alike, within min_gap, or unscored
            figures = {"round": index + 1, **round_figures(groups, pair_rewards, spec.k, without_pair)}
            figures["sample_seconds"] = round(time.time() - round_start, 1)
            if pairs:
                round_dir = ctx.out / f"round-{index + 1}"
                if spec.reference == "previous":
                    reference = copy.deepcopy(model).eval().requires_grad_(False)
                trainer = DPOTrainer(
                    model=model,
                    ref_model=reference,
                    args=dataclasses.replace(config, output_dir=str(round_dir), seed=config.seed + index),
                    train_dataset=Dataset.from_list(pairs),
                    processing_class=tokenizer,
                    peft_config=None if wrapped else peft_config,
                    callbacks=[
                        *build_callbacks(recipe.section("callbacks")),
                        MetricsJSONLCallback(ctx.out / "metrics.jsonl", {"round": index + 1}),
                        ReleaseMemoryCallback(),
                    ],  # fmt: skip
                )
                checkpoint = outputs.last_complete_checkpoint(round_dir) if ctx.resume else None
                output = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
                model = trainer.accelerator.unwrap_model(trainer.model)
                wrapped = peft_config is not None
                figures.update(steps=trainer.state.global_step, train_loss=getattr(output, "training_loss", None))
                del trainer
            else:
                logger.warning("online DPO round %d: no pair (every group scored alike): policy unchanged", index + 1)
            if has_eval and (spec.eval_every_round or index + 1 == spec.rounds):
                figures["held_out_accuracy"] = held_out(model)()["accuracy"]
            figures["seconds"] = round(time.time() - round_start, 1)
            if ctx.is_main:
                save_round_model(model, tokenizer, ctx.out)
                with (ctx.out / ROUNDS_FILE).open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(figures) + "\n")
                shutil.rmtree(ctx.out / f"round-{index + 1}", ignore_errors=True)  # its checkpoints: superseded
            done.append(figures)
            logger.info("online DPO round %d/%d: %s", index + 1, spec.rounds, figures)
    finally:
        close = getattr(engine, "close", None)
        if callable(close):
            close()
    model.save_pretrained(recipe.output_dir)  # with LoRA the adapter (the model card says how to load it)
    tokenizer.save_pretrained(recipe.output_dir)
    if has_eval:
        ctx.evaluate("after", held_out(model))
    train = {
        "rounds": len(done),
        "pairs": sum(r["pairs"] for r in done),
        "samples": sum(r["samples"] for r in done),
        "steps": sum(r.get("steps", 0) for r in done),
        "seconds": round(time.time() - started, 1),
        "per_round": done,
    }
    return ctx.finish(train, rewards)


def _load_round_model(path: Path, recipe: Any, lora: bool) -> Any:
    from verirl.models import load_model

    if lora:
        from peft import PeftModel

        base, _, _ = load_model(recipe.model.name, recipe.model.dtype, recipe.model.trust_remote_code,
                                recipe.model.revision)  # fmt: skip
        return PeftModel.from_pretrained(base, str(path), is_trainable=True)
    model, _, _ = load_model(str(path), recipe.model.dtype)
    return model


def _dpo_config() -> type:
    from trl import DPOConfig

    return DPOConfig


def derive_args(recipe: Any, values: dict[str, Any], num_processes: int, file: str) -> dict[str, Any]:
    return {} if "use_cpu" in values else cpu_only(values)


def plan(recipe: Any, config: Any, num_processes: int) -> list[tuple[str, str]]:
    spec = recipe.section("online_dpo")
    per_round = spec.prompts_per_round * spec.k
    rewards = " + ".join(f"{r.weight:g}×{r.metric}" for r in recipe.rewards)
    return [
        (
            "rounds",
            f"{spec.rounds} × ({spec.prompts_per_round} prompts × {spec.k} samples = {per_round} completions, "
            f"ranked by {rewards}, pairs {spec.pairs} (gap > {spec.min_gap:g}), DPO against the {spec.reference} "
            f"model)",
        )
    ]


ONLINE_DPO = register(
    Trainer(
        name="online_dpo",
        summary="online DPO: rounds of sampling K completions, ranking them by rewards, DPO on the pairs",
        run=run,
        config=_dpo_config,
        arg_bounds=DPO_BOUNDS,
        derive_args=derive_args,
        sections=(
            Section("online_dpo", OnlineDPOSpec, example="{rounds: 4, k: 4, prompts_per_round: 32}"),
            callbacks_section("online_dpo"),
        ),
        backends=("hf", "vllm", "vllm-server", "auto"),
        rewards="required",
        rewards_hint="e.g. [{name: number_match}]: they rank the sampled completions",
        check=check_recipe,
        plan=plan,
        card=CardInfo(method="online DPO on TRL's DPOTrainer"),
    )
)
