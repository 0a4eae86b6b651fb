"""An LLM judge on a local causal LM as a verifier: ``llm_judge`` with ``model: ALIAS|DIR|ID`` (an entry point of
verirl in the group ``verirl.verifiers``).

The judge reads a prompt template filled with the sample (``{prompt}``, ``{completion}`` and any dataset column, e.g.
``{answer}``), as a user message under its chat template (``chat: true``), and answers with one token. The verdict is
*read from the answer token's probabilities* in one forward pass, no sampling: ``labels`` map answer words to scores
(default yes -> 1, no -> 0, both cases), each label's probability is that of its first token, and

    q_v  = Σ P(label) over the labels scoring v, renormalised over the labels     mass = Σ P(label) (before that)
    score = Σ_v v q_v                           uncertainty = 1 − (1 − H(q) / log V) · mass

(V: distinct scores). So a judge that splits between yes and no, or that would rather say something that is no label,
is unsure. Numbers work as labels too (``{"0": 0, ..., "9": 1}``: a 0-9 scale read the same way). This reading of
the answer tokens is the common LLM-as-judge practice (e.g. G-Eval's probability-weighted scores, arXiv 2303.16634);
the uncertainty formula is our design (docs/verifier_mixtures.md). A judge that hangs is stopped by the guard of
whatever calls it (a mixture member's ``timeout_s``, a reward's ``timeout_s``).
"""

from __future__ import annotations

import math
import string
from collections.abc import Mapping
from typing import Any

from verirl.verifiers.base import Verdict

DEFAULT_TEMPLATE = (
    "Question: {prompt}\nProposed answer: {completion}\n\nIs the proposed answer correct? Reply with yes or no only."
)
DEFAULT_LABELS = {"yes": 1.0, "Yes": 1.0, "no": 0.0, "No": 0.0}


def _prompt_text(prompt: Any) -> str:
    """A chat prompt's user turns as text; a text prompt as is."""
    if isinstance(prompt, list):
        return "\n".join(
            str(m.get("content", "")) for m in prompt if isinstance(m, Mapping) and m.get("role") != "system"
        )
    return str(prompt)


class LLMJudge:
    """A local LLM as a yes/no (or scale) judge; score and confidence from its answer token's probabilities."""

    def __init__(
        self,
        model: str = "smollm2-135m-instruct",
        template: str = DEFAULT_TEMPLATE,
        labels: Mapping[str, float] | None = None,
        chat: bool = True,
        system_prompt: str | None = None,
        batch_size: int = 8,
        max_length: int = 1024,
    ):
        fields = {name for _, name, _, _ in string.Formatter().parse(template) if name}
        if "completion" not in fields:
            raise ValueError(f"template: expected a {{completion}} field, got {template!r:.80}")
        labels = dict(DEFAULT_LABELS if labels is None else labels)
        if not labels or any(not isinstance(v, int | float) or not 0 <= v <= 1 for v in labels.values()):
            raise ValueError(f"labels: expected a mapping answer -> score in [0, 1], got {labels!r:.80}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
        if not isinstance(model, str) or not model.strip():
            raise ValueError(f"model: expected a built-in alias, a directory or a Hub id, got {model!r}")
        self.template, self.fields, self.chat, self.system_prompt = template, fields, chat, system_prompt
        self.batch_size, self.max_length, self.name, self.labels = batch_size, max_length, model, labels
        self._model: Any = None  # loaded on first use: validating a recipe loads no weights

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        from verirl.models import load_tokenizer, resolve_model

        source = resolve_model(self.name)
        tokenizer = load_tokenizer(source.path)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        label_tokens: dict[int, float] = {}
        for word, value in self.labels.items():
            ids = tokenizer(word, add_special_tokens=False)["input_ids"]
            if not ids:
                raise ValueError(f"labels: {word!r} is no token of {self.name}")
            if ids[0] in label_tokens and label_tokens[ids[0]] != value:
                raise ValueError(f"labels: {word!r} starts with the same token as a label of another score")
            label_tokens[ids[0]] = float(value)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if self.device == "cuda" else torch.float32
        self.tokenizer, self.label_tokens = tokenizer, label_tokens
        self.values = sorted(set(label_tokens.values()))
        self._model = AutoModelForCausalLM.from_pretrained(source.path, dtype=dtype).to(self.device).eval()

    @property
    def model(self) -> Any:
        if self._model is None:
            self._load()
        return self._model

    def judge_text(self, prompt: Any, completion: str, row: Mapping[str, Any]) -> str:
        """The judge's input for one sample (chat template applied, generation prompt added)."""
        values = {k: v for k, v in row.items() if k in self.fields}
        missing = sorted(self.fields - set(values) - {"prompt", "completion"})
        if missing:
            raise KeyError(f"llm_judge: the template needs column(s) {missing}, which the data does not have")
        filled = self.template.format(**{**values, "prompt": _prompt_text(prompt), "completion": completion})
        if not self.chat:
            return filled
        self.model  # noqa: B018 - loads the tokenizer with the model
        messages = ([{"role": "system", "content": self.system_prompt}] if self.system_prompt else []) + [
            {"role": "user", "content": filled}
        ]
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def label_probs(self, texts: list[str]) -> list[dict[int, float]]:
        """For each input, P(first token of each label) at the answer position."""
        import torch

        model = self.model
        out = []
        ids = list(self.label_tokens)
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                texts[start : start + self.batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_length,
                add_special_tokens=not self.chat,
            ).to(self.device)
            with torch.inference_mode():
                logits = model(**batch).logits[:, -1].float()
            probs = torch.softmax(logits, dim=-1)[:, ids].cpu().tolist()
            out.extend(dict(zip(ids, row, strict=True)) for row in probs)
        return out

    def verdict(self, probs: Mapping[int, float]) -> Verdict:
        by_value = dict.fromkeys(self.values, 0.0)
        for token, p in probs.items():
            by_value[self.label_tokens[token]] += p
        mass = sum(by_value.values())
        if not mass > 0:
            return Verdict(None, "llm_judge: no label has any probability", {"uncertainty": 1.0, "mass": 0.0})
        q = {v: p / mass for v, p in by_value.items()}
        score = sum(v * p for v, p in q.items())
        entropy = -sum(p * math.log(p) for p in q.values() if p > 0) / math.log(len(q)) if len(q) > 1 else 0.0
        uncertainty = min(1.0, max(0.0, 1.0 - (1.0 - entropy) * min(mass, 1.0)))
        details = {"uncertainty": uncertainty, "mass": mass, "probs": list(q.values())}
        return Verdict(min(1.0, max(0.0, score)), f"llm_judge: score {score:.3f} (label mass {mass:.2f})", details)

    def verify_batch(self, prompts: list, completions: list[str], **columns: Any) -> list[Verdict]:
        rows = [{k: v[i] for k, v in columns.items() if i < len(v)} for i in range(len(completions))]
        texts = [self.judge_text(p, str(c), r) for p, c, r in zip(prompts, completions, rows, strict=True)]
        return [self.verdict(p) for p in self.label_probs(texts)]

    def verify(self, prompt: Any, completion: Any, **ctx: Any) -> Verdict:
        return self.verify_batch([prompt], [str(completion)], **{k: [v] for k, v in ctx.items()})[0]

    def __repr__(self) -> str:
        return f"LLMJudge({self.name!r}, labels={sorted(self.labels)})"
