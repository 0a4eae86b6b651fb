"""DPO on TRL's ``DPOTrainer`` over a preference dataset (``prompt``, ``chosen``, ``rejected`` columns).

The verifier-ranked online loop (sample K, rank with a verifier or evaluator, train on best-vs-worst pairs, repeat)
builds on this with rounds of generation in between.
"""

from __future__ import annotations

from typing import Any

PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")


def build_dpo_trainer(
    model: Any, tokenizer: Any, train_dataset: Any, config: Any, callbacks: list | None = None, peft_config: Any = None
) -> Any:
    from trl import DPOTrainer

    from verirl.errors import VerirlError

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
