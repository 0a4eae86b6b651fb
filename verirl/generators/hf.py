"""Rollouts with transformers ``generate``: the fallback backend that runs everywhere."""

from __future__ import annotations

import contextlib
from typing import Any

from verirl.generators.base import Rollouts, SamplingParams, prompt_text, strip_after_eos


class HFGenerator:
    """Batched ``model.generate`` with left padding; chat prompts go through the tokenizer's chat template.

    ``autocast_bf16`` runs generation under bf16 autocast (about 2x faster than fp32 on AVX512-BF16 CPUs).
    """

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 32, autocast_bf16: bool = False):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.autocast_bf16 = autocast_bf16

    def generate(self, prompts: list[Any], n: int = 1, sampling: SamplingParams | None = None) -> Rollouts:
        import torch

        sampling = sampling or SamplingParams()
        texts = [prompt_text(self.tokenizer, p) for p in prompts]
        expanded = [t for t in texts for _ in range(n)]
        pad_side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        out_texts: list[str] = []
        out_ids: list[list[int]] = []
        device = next(self.model.parameters()).device
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if sampling.greedy:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)
        autocast = (
            torch.autocast(device.type, dtype=torch.bfloat16) if self.autocast_bf16 else contextlib.nullcontext()
        )
        was_training = self.model.training
        self.model.eval()
        try:
            for start in range(0, len(expanded), self.batch_size):
                batch = expanded[start : start + self.batch_size]
                enc = self.tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                with torch.no_grad(), autocast:
                    output = self.model.generate(**enc, **kwargs)
                for seq in output[:, enc["input_ids"].shape[1] :].tolist():
                    ids = strip_after_eos(seq, self.tokenizer)
                    out_ids.append(ids)
                    out_texts.append(self.tokenizer.decode(ids, skip_special_tokens=True))
        finally:
            self.tokenizer.padding_side = pad_side
            self.model.train(was_training)
        grouped_texts = [out_texts[i * n : (i + 1) * n] for i in range(len(prompts))]
        grouped_ids = [out_ids[i * n : (i + 1) * n] for i in range(len(prompts))]
        return Rollouts(prompts=list(prompts), texts=grouped_texts, token_ids=grouped_ids)
