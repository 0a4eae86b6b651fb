"""``trainer: dpo`` — DPO (Rafailov et al., arXiv 2305.18290) on TRL's ``DPOTrainer`` over a preference dataset
(``prompt``, ``chosen``, ``rejected`` columns). The verifier-ranked online loop (sample K, rank, train on pairs,
repeat) is another trainer built on the same pieces."""

from __future__ import annotations

from typing import Any

from verirl.errors import VerirlError
from verirl.rl.config import cpu_only
from verirl.rl.recipe_callbacks import callbacks_section
from verirl.rl.registry import register
from verirl.rl.trainer import Trainer
from verirl.rl.trl_bounds import DPO_BOUNDS
from verirl.rl.trl_run import Built, TrlParts, run_trl

PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")


def build_dpo_trainer(
    model: Any, tokenizer: Any, train_dataset: Any, config: Any, callbacks: list | None = None, peft_config: Any = None
) -> Any:
    from trl import DPOTrainer

    missing = [c for c in PREFERENCE_COLUMNS if c not in train_dataset.column_names]
    if missing:
        raise VerirlError(f"data: dpo needs columns {list(PREFERENCE_COLUMNS)}; missing {missing}")
    return DPOTrainer(
        model=model,
        args=config,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )


def _build(parts: TrlParts) -> Built:
    return Built(
        build_dpo_trainer(
            parts.model, parts.tokenizer, parts.train_dataset, parts.config, parts.callbacks, parts.peft_config
        )
    )


def run(ctx: Any) -> dict[str, Any]:
    return run_trl(ctx, _build)


def _dpo_config() -> type:
    from trl import DPOConfig

    return DPOConfig


def derive_args(recipe: Any, values: dict[str, Any], num_processes: int, file: str) -> dict[str, Any]:
    return {} if "use_cpu" in values else cpu_only(values)


DPO = register(
    Trainer(
        name="dpo",
        summary="DPO on TRL's DPOTrainer over prompt/chosen/rejected preference data",
        run=run,
        config=_dpo_config,
        arg_bounds=DPO_BOUNDS,
        derive_args=derive_args,
        backends=("hf", "auto"),
        rewards="forbidden",
        rewards_hint="dpo trains on prompt/chosen/rejected columns and takes no rewards",
        sections=(callbacks_section("dpo"),),
    )
)
