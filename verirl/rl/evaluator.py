"""``trainer: evaluator`` (``verirl evaluator train RECIPE``): groups of K generations -> FlashEvaluator
(arXiv 2603.02565; docs/flash_evaluator.md).

1. sample K candidates per prompt with the recipe's model through its ``generator`` (hf, vllm or vllm-server),
   label them with the recipe's first reward -> ``groups_train.jsonl`` / ``groups_eval.jsonl`` (or reuse them
   from ``evaluator.groups_from``);
2. train the FlashEvaluator (listwise) and, with ``baseline: true``, the pointwise baseline of the same size;
3. report selection on the held-out groups: first sample, majority vote, FlashEvaluator, pointwise, oracle.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verirl import outputs
from verirl.answers import extract_all, get_extractor, majority_answer
from verirl.cards import CardInfo
from verirl.errors import RecipeError, VerirlError
from verirl.rl.labelled_groups import labelled_groups
from verirl.rl.registry import register
from verirl.rl.trainer import Section, Trainer
from verirl.typecheck import setting
from verirl.verifiers.flash_evaluator import FlashEvaluatorConfig
from verirl.verifiers.flash_training import TrainConfig
from verirl.verifiers.groups import Group, best_index

logger = logging.getLogger("verirl")


@dataclass
class EvaluatorSpec:
    """The ``evaluator:`` section: sample K candidates per prompt with ``model``, label them with the first reward,
    train a FlashEvaluator (and the pointwise baseline) on the groups."""

    k: int = setting(8, help="candidates sampled per prompt", ge=1)
    temperature: float = setting(0.7, help="sampling temperature of the candidates", ge=0)
    max_new_tokens: int = setting(32, help="tokens per candidate", ge=1)
    model: FlashEvaluatorConfig = field(
        default_factory=FlashEvaluatorConfig, metadata={"help": "the evaluator's size (FlashEvaluatorConfig)"}
    )
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "how it is trained (TrainConfig)"})
    baseline: bool = setting(True, help="also train the pointwise baseline (same backbone and size)")
    extractor: str = setting("last_number", help="answers for the majority-vote reference in the results")
    groups_from: str | None = setting(None, help="reuse groups_train.jsonl / groups_eval.jsonl from this directory")


def check_evaluator(spec: EvaluatorSpec, given: Mapping[str, Any], file: str) -> EvaluatorSpec:
    if spec.model.d_model % spec.model.heads:
        raise RecipeError(file, "evaluator.model.heads", "must divide evaluator.model.d_model")
    if spec.groups_from is not None and not Path(spec.groups_from).is_dir():
        raise RecipeError(file, "evaluator.groups_from", f"not a directory: {spec.groups_from}")
    try:
        get_extractor(spec.extractor)
    except VerirlError as exc:
        raise RecipeError(file, "evaluator.extractor", str(exc)) from None
    return spec


def majority_pick(candidates: list[str], extractor: Any) -> int | None:
    """Index of the first candidate whose answer is the most common one (None: no candidates)."""
    if not candidates:
        return None
    answers = extract_all(extractor, candidates)
    majority = majority_answer(answers)
    return answers.index(majority) if majority is not None else 0


def reference_picks(groups: list[Group], extractor: Any) -> dict[str, dict[str, float]]:
    """Selection without a learned evaluator on the same groups: one sample, majority vote, and the oracle."""
    from verirl.verifiers.flash_training import pick_metrics

    return {
        "first_sample": pick_metrics(groups, [0 if g.candidates else None for g in groups]),
        "majority_vote": pick_metrics(groups, [majority_pick(g.candidates, extractor) for g in groups]),
        "oracle": pick_metrics(groups, [best_index(g.rewards) for g in groups]),
    }


def _groups(recipe: Any, out: Path) -> tuple[list[Group], list[Group]]:
    spec = recipe.section("evaluator")
    return labelled_groups(recipe, out, spec.k, spec.temperature, spec.max_new_tokens, spec.groups_from)


def run_evaluator_recipe(recipe: Any) -> dict[str, Any]:
    from verirl.verifiers.flash_evaluator import FlashEvaluator
    from verirl.verifiers.flash_training import selection_accuracy, train_evaluator

    out = Path(recipe.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    spec = recipe.section("evaluator")
    train_groups, eval_groups = _groups(recipe, out)
    results: dict[str, Any] = {
        "k": spec.k,
        "train_groups": len(train_groups),
        "eval_groups": len(eval_groups),
        **reference_picks(eval_groups, get_extractor(spec.extractor)),
    }
    variants = [("flash", True)] + ([("pointwise", False)] if spec.baseline else [])
    for name, cross in variants:
        model = FlashEvaluator(dataclasses.replace(spec.model, cross_candidate=cross))
        logger.info("training %s evaluator (%d parameters) ...", name, model.num_parameters())
        history = train_evaluator(model, train_groups, eval_groups, spec.train, log=logger.info)
        directory = out / ("evaluator" if name == "flash" else "pointwise")
        model.save_pretrained(directory)
        results[name] = {
            **selection_accuracy(model, eval_groups),
            "parameters": model.num_parameters(),
            "train_seconds": round(history["seconds"], 1),
            "best_epoch": history["best_epoch"],
            "path": str(directory),
        }
    outputs.write_json_atomic(out / outputs.RESULTS, results)
    (out / outputs.METRICS).write_text(json.dumps(results) + "\n")
    return results


def summary(results: dict[str, Any], out: Path) -> str:
    lines = [
        "",
        "=" * 72,
        f"best-of-{results['k']} on {results['eval_groups']} held-out prompts:",
        "  selector        solved (mean reward of pick)   picks the best candidate (where it matters)",
    ]
    for name in ("first_sample", "majority_vote", "flash", "pointwise", "oracle"):
        if name in results:
            r = results[name]
            lines.append(
                f"  {name:<15} {100 * r['mean_reward']:5.1f}%                        "
                f"{100 * r['decisive_accuracy']:5.1f}% of {r['decisive_groups']}"
            )
    for name in ("flash", "pointwise"):
        if name in results:
            r = results[name]
            lines.append(
                f"{name}: {r['parameters']} parameters, trained in {r['train_seconds']} s, saved in {r['path']}"
            )
    lines.append(f"results: {out / outputs.RESULTS}")
    lines.append("=" * 72)
    return "\n".join(lines)


def run(ctx: Any) -> dict[str, Any]:
    """The whole run in this process (no accelerate launch): groups, then two small models."""
    results = run_evaluator_recipe(ctx.recipe)
    print(summary(results, ctx.out))
    return results


def plan(recipe: Any, config: Any, num_processes: int) -> list[tuple[str, str]]:
    spec = recipe.section("evaluator")
    where = f"groups from {spec.groups_from}" if spec.groups_from else f"{spec.k} candidates per prompt"
    return [
        ("evaluator", f"{where}, FlashEvaluator {spec.model.d_model}d" + (" + pointwise" if spec.baseline else ""))
    ]


EVALUATOR = register(
    Trainer(
        name="evaluator",
        summary="FlashEvaluator: sample K candidates per prompt, label them with a reward, train a K-way scorer",
        run=run,
        sections=(Section("evaluator", EvaluatorSpec, required=True, check=check_evaluator, example="{k: 8}"),),
        backends=("hf", "vllm", "vllm-server", "auto"),
        rewards="required",
        rewards_hint="the first reward labels the candidates, e.g. [{name: number_match}]",
        evaluates=False,
        plan=plan,
        launch="in_process",
        resumable=False,
        model_files=("evaluator/evaluator_config.json",),
        card=CardInfo(
            task="text-classification", libraries=("verirl",), method="FlashEvaluator (listwise K-way scorer)"
        ),
    )
)
