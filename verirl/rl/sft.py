"""``trainer: sft`` — supervised fine-tuning on TRL's ``SFTTrainer``: the cold start of a policy before RL (e.g. the
search agent's planner imitating oracle tool-use trajectories, docs/search_agent.md), or any chat/text SFT.

Data: whatever TRL's SFTTrainer reads (``messages``, ``prompt``/``completion`` or ``text``), or verirl's
``conversation`` column: a chat as a JSON string, with its tools' schemas as a JSON string in ``tools``. verirl
tokenises the latter itself, with TRL's training chat template (``{% generation %}`` markers) and the assistant
tokens as the only ones in the loss (``assistant_masks``). Why not nested columns: Arrow unifies the structs of all
rows, so a tool call without arguments (``image_search()``) would come back as ``{"query": null}`` and the model
would be trained to write it. Tool-using chats get a tool-capable chat template first (as GRPO's ``environment``).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from verirl.cards import CardInfo
from verirl.errors import VerirlError
from verirl.rl.config import cpu_only
from verirl.rl.recipe_callbacks import callbacks_section
from verirl.rl.registry import register
from verirl.rl.trainer import Trainer
from verirl.rl.trl_bounds import TRL_BOUNDS
from verirl.rl.trl_run import Built, Prepared, TrlParts, run_trl

logger = logging.getLogger("verirl")

CONVERSATION = "conversation"


def tokenize_conversations(dataset: Any, tokenizer: Any) -> Any:
    """``conversation`` / ``tools`` JSON columns -> ``input_ids`` and ``assistant_masks`` (assistant tokens only)."""
    from trl.chat_template_utils import get_training_chat_template

    template = get_training_chat_template(tokenizer)

    def encode(row: dict[str, Any]) -> dict[str, Any]:
        messages = json.loads(row[CONVERSATION])
        tools = json.loads(row["tools"]) if row.get("tools") else None
        out = tokenizer.apply_chat_template(
            messages, tools=tools, chat_template=template, tokenize=True, return_dict=True,
            return_assistant_tokens_mask=True,
        )  # fmt: skip
        if 1 not in out["assistant_masks"]:
            raise VerirlError(f"data: a conversation has no assistant turn: {row[CONVERSATION][:80]}")
        return {"input_ids": list(out["input_ids"]), "assistant_masks": list(out["assistant_masks"])}

    return dataset.map(encode, remove_columns=dataset.column_names)


def prepare(ctx: Any, config: Any, model: Any, tokenizer: Any, source: Any, train_ds: Any, eval_ds: Any) -> Prepared:
    columns = set(train_ds.column_names)
    if CONVERSATION in columns:
        from verirl.search.spec import prepare_tokenizer

        if "tools" in columns:
            logger.info("sft: %s", prepare_tokenizer(tokenizer, "auto"))
        train_ds = tokenize_conversations(train_ds, tokenizer)
        eval_ds = tokenize_conversations(eval_ds, tokenizer) if eval_ds is not None and len(eval_ds) else None
    elif "prompt" in columns and ("messages" in columns or "text" in columns):
        train_ds = train_ds.remove_columns("prompt")  # a built-in task's prompt column, not a prompt-completion pair
    return Prepared(train_ds, eval_ds)


def _build(parts: TrlParts) -> Built:
    from trl import SFTTrainer

    trainer = SFTTrainer(
        model=parts.model,
        args=parts.config,
        train_dataset=parts.train_dataset,
        processing_class=parts.tokenizer,
        peft_config=parts.peft_config,
        callbacks=parts.callbacks,
    )
    return Built(trainer)


def run(ctx: Any) -> dict[str, Any]:
    return run_trl(ctx, _build, prepare)


def _sft_config() -> type:
    from trl import SFTConfig

    return SFTConfig


def derive_args(recipe: Any, values: dict[str, Any], num_processes: int, file: str) -> dict[str, Any]:
    return {} if "use_cpu" in values else cpu_only(values)


SFT = register(
    Trainer(
        name="sft",
        summary="supervised fine-tuning on TRL's SFTTrainer (e.g. the search agent's cold start on oracle traces)",
        run=run,
        config=_sft_config,
        arg_bounds={k: v for k, v in TRL_BOUNDS.items() if k != "beta"},
        derive_args=derive_args,
        backends=("hf", "auto"),
        rewards="forbidden",
        rewards_hint="sft imitates its data and takes no rewards",
        evaluates=False,
        sections=(callbacks_section("sft"),),
        card=CardInfo(method="SFT on TRL", reinforcement=False),
    )
)
