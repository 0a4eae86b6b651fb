"""Held-out ranking of a generative recommender: top-K titles by beam search constrained to the catalogue
(transformers' ``prefix_allowed_tokens_fn`` over a title trie, :mod:`verirl.generators.constrained`), exact title
match, NDCG/HR@{1,5,10}; and, as a side figure, how often unconstrained greedy decoding names no catalogue title."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from verirl.errors import VerirlError
from verirl.generators.constrained import ConstrainedGenerator
from verirl.rec.metrics import ranking_metrics
from verirl.rec.tasks import completion_for, title_of_completion
from verirl.rec.vrec import VRecConfig, VRecModel, is_vrec_dir, load_vrec


def prompt_of(row: dict[str, Any]) -> str:
    """A task row's prompt as text (a chat-wrapped prompt gives its last message's content)."""
    prompt = row["prompt"] if "prompt" in row else row["question"]
    if isinstance(prompt, list) and prompt and isinstance(prompt[-1], dict):
        return str(prompt[-1].get("content", ""))
    return str(prompt)


def load_recommender(path: str | Path, dtype: Any = None) -> tuple[VRecModel, Any]:
    """A VRec folder, or any causal-LM folder (taken as a plain generative recommender, no thought)."""
    import torch

    path = Path(path)
    if not path.is_dir():
        raise VerirlError(f"--model: {path} is not a directory (a VRec run's output_dir or a model folder)")
    if is_vrec_dir(path):
        return load_vrec(path, dtype)
    if not (path / "config.json").is_file():
        raise VerirlError(f"--model: {path} holds no model (no vrec_config.json or config.json)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    lm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
    return VRecModel(lm, VRecConfig(thought_steps=0)), AutoTokenizer.from_pretrained(path)


def constrained_generator(
    model: VRecModel, tokenizer: Any, titles: Sequence[str], batch_size: int = 8, bf16: bool = False
) -> ConstrainedGenerator:
    prefix = model.prefix if model.settings.thought_steps > 0 else None
    return ConstrainedGenerator(
        model.lm, tokenizer, [completion_for(t) for t in titles], batch_size, bf16, prefix_embeddings=prefix
    )


def rank_titles(generator: ConstrainedGenerator, prompts: list[str], k: int, length_penalty: float) -> list[list[str]]:
    return [[title_of_completion(t) for t in ranked] for ranked in generator.rank(prompts, k, length_penalty)]


def evaluate_ranking(
    model: VRecModel,
    tokenizer: Any,
    rows: Sequence[dict[str, Any]],
    titles: Sequence[str],
    beams: int = 10,
    batch_size: int = 8,
    length_penalty: float = 1.0,
    bf16: bool = False,
) -> dict[str, Any]:
    """NDCG/HR@{1,5,10} of ``beams``-beam constrained search over ``rows`` (``prompt`` and ``answer`` title)."""
    if not rows:
        raise VerirlError("rec eval: no held-out rows to evaluate")
    generator = constrained_generator(model, tokenizer, titles, batch_size, bf16)
    start = time.monotonic()
    ranked = rank_titles(generator, [prompt_of(r) for r in rows], beams, length_penalty)
    seconds = time.monotonic() - start
    index = {t: i for i, t in enumerate(titles)}
    metrics = ranking_metrics([[index[t] for t in r] for r in ranked], [index.get(r["answer"], -1) for r in rows])
    return {
        **metrics,
        "cases": len(rows),
        "beams": beams,
        "users_per_s": round(len(rows) / max(seconds, 1e-9), 3),
        "seconds": round(seconds, 1),
    }


def invalid_title_rate(
    model: VRecModel, tokenizer: Any, rows: Sequence[dict[str, Any]], titles: Sequence[str], batch_size: int = 8
) -> float:
    """Share of greedy, unconstrained completions that are not a catalogue title (the "CC" figure of D3/VRec)."""
    import torch

    known = set(titles)
    tok = tokenizer
    pad_side, tok.padding_side = tok.padding_side, "left"
    invalid = 0
    model.eval()
    try:
        for begin in range(0, len(rows), batch_size):
            batch = [prompt_of(r) for r in rows[begin : begin + batch_size]]
            enc = tok(batch, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                embeds, mask = model.prefix(enc["input_ids"], enc["attention_mask"])
                out = model.lm.generate(
                    inputs_embeds=embeds, attention_mask=mask, max_new_tokens=48, do_sample=False,
                    pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
                )  # fmt: skip
            for seq in out.tolist():
                invalid += title_of_completion(tok.decode(seq, skip_special_tokens=True)) not in known
    finally:
        tok.padding_side = pad_side
    return invalid / max(len(rows), 1)
