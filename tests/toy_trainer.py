"""A trainer declared outside verirl (recipes name it ``tests.toy_trainer:TOY``): it "trains" a lookup table of
the answers it has seen. Nothing in verirl knows about it; tests/test_trainer_registry.py shows that it validates,
dry-runs, runs through ``accelerate launch`` and pushes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from verirl.cards import CardInfo
from verirl.errors import RecipeError
from verirl.rl.trainer import Section, Trainer
from verirl.typecheck import setting


@dataclass
class ToyConfig:
    epochs: int = setting(1, help="passes over the training rows", ge=1)
    learning_rate: float = setting(1.0, help="share of the rows memorised per epoch, in (0, 1]", gt=0, le=1)


@dataclass
class MemorySpec:
    fallback: str = setting("0", help="the answer given to a question never seen")


def check_memory(spec: MemorySpec, given: Any, file: str) -> MemorySpec:
    if not spec.fallback.strip():
        raise RecipeError(file, "memory.fallback", "expected a non-empty answer")
    return spec


def run(ctx: Any) -> dict[str, Any]:
    from verirl.data import load_data

    recipe = ctx.recipe
    config = ctx.config()
    train_ds, eval_ds = load_data(recipe.data)
    fallback = recipe.section("memory").fallback
    table: dict[str, str] = {}

    def held_out() -> dict[str, Any]:
        scorer = ctx.eval_scorer()
        prompts = list(eval_ds["prompt"])
        completions = [table.get(json.dumps(p), fallback) for p in prompts]
        scores = scorer(prompts=prompts, completions=completions, answer=list(eval_ds["answer"]))
        correct = sum(1 for s in scores if s is not None and s >= recipe.eval.threshold)
        return {"accuracy": correct / len(scores), "n": len(scores)}

    ctx.record_model("toy")
    ctx.evaluate("before", held_out)
    rows = list(train_ds) + list(eval_ds)  # a toy: it "learns" the held-out rows too, so accuracy rises
    for _ in range(config.epochs):
        for row in rows[: max(1, int(len(rows) * config.learning_rate))]:
            table[json.dumps(row["prompt"])] = row["answer"]
    (ctx.out / "toy_model.json").write_text(json.dumps(table))
    ctx.evaluate("after", held_out)
    return ctx.finish({"steps": config.epochs, "seconds": 0.0})


def plan(recipe: Any, config: Any, num_processes: int) -> list[tuple[str, str]]:
    return [("toy", f"memorise {config.learning_rate:.0%} of the rows, {config.epochs} epoch(s)")]


TOY = Trainer(
    name="toy",
    summary="memorises answers (a test of the trainer declaration)",
    run=run,
    config=lambda: ToyConfig,
    make_config=lambda cls, values, output_dir: cls(**values),
    sections=(Section("memory", MemorySpec, check=check_memory),),
    rewards="required",
    plan=plan,
    model_files=("toy_model.json",),
    card=CardInfo(task="question-answering", libraries=("verirl",), method="a lookup table"),
)
