"""The frozen answer generator: it reads the evidence the planner's searches gathered and writes the answer.

As in M³Searcher (arXiv 2601.09278) and s3 (arXiv 2505.14146), the planner never answers: a separate, frozen model
does, so the planner is rewarded for gathering evidence that lets *that* model answer. Which model: the frozen base
model (``base``, the default: the planner's starting weights, loaded once more and never trained), any model
directory or Hub id, or the URL of an OpenAI-compatible server (``vllm serve`` / ``python -m
vllm.entrypoints.openai.api_server``) for a large model elsewhere.

Design choices (ours): greedy decoding; the prompt lists the evidence passages then the question and asks for a
short answer; the answer is the first line of the output. Answers are cached per (question, evidence titles and
texts): in a GRPO group many rollouts gather the same evidence, and the answerer dominates the reward's cost.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from verirl.errors import VerirlError, first_line
from verirl.search.corpus import Hit

SYSTEM = "You answer questions from the evidence given. Reply with the answer only: a few words, no explanation."
MAX_PASSAGE_CHARS = 500


def answer_messages(question: str, evidence: Sequence[Hit], max_chars: int = MAX_PASSAGE_CHARS) -> list[dict]:
    lines = [f"[{i}] {h.title}: {h.text[:max_chars]}" for i, h in enumerate(evidence, 1)]
    body = ("Evidence:\n" + "\n".join(lines) + "\n\n" if lines else "") + f"Question: {question}\nAnswer:"
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": body}]


def first_answer_line(text: str) -> str:
    for line in str(text).strip().splitlines():
        if line.strip():
            return line.strip()
    return ""


class Answerer:
    """Answers (question, evidence) pairs in batches; subclasses implement :meth:`_generate`."""

    def __init__(self, max_new_tokens: int = 24):
        self.max_new_tokens = max_new_tokens
        self._cache: dict[tuple, str] = {}
        self._lock = threading.Lock()
        self.calls = 0  # answers generated (cache misses)
        self.hits = 0  # answers served from the cache

    def answer(self, items: Sequence[tuple[str, Sequence[Hit]]]) -> list[str]:
        keys = [(q, tuple((h.title, h.text) for h in ev)) for q, ev in items]
        with self._lock:
            todo = list(dict.fromkeys(k for k in keys if k not in self._cache))
            self.hits += len(keys) - len(todo)
        if todo:
            outputs = self._generate([answer_messages(q, [Hit(t, x, 0.0) for t, x in ev]) for q, ev in todo])
            with self._lock:
                self.calls += len(todo)
                for key, text in zip(todo, outputs, strict=True):
                    self._cache[key] = first_answer_line(text)
        return [self._cache[k] for k in keys]

    def _generate(self, prompts: list[list[dict]]) -> list[str]:
        raise NotImplementedError


class GeneratorAnswerer(Answerer):
    """A verirl generator (e.g. :class:`~verirl.generators.hf.HFGenerator` over a frozen model), greedy."""

    def __init__(self, generator: Any, max_new_tokens: int = 24):
        super().__init__(max_new_tokens)
        self.generator = generator

    def _generate(self, prompts: list[list[dict]]) -> list[str]:
        from verirl.generators.base import SamplingParams

        rollouts = self.generator.generate(
            prompts, 1, SamplingParams(max_new_tokens=self.max_new_tokens, temperature=0)
        )
        return [group[0] for group in rollouts.texts]


class ServerAnswerer(Answerer):
    """An OpenAI-compatible chat-completions server (vLLM's), one request per answer, greedy."""

    def __init__(self, url: str, model: str | None = None, max_new_tokens: int = 24, timeout_s: float = 60.0):
        super().__init__(max_new_tokens)
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.model = model or self._served_model()

    def _request(self, path: str, payload: dict | None = None) -> dict:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise VerirlError(f"answerer {self.url}{path}: {first_line(exc)}") from None

    def _served_model(self) -> str:
        models = self._request("/v1/models").get("data") or []
        if not models:
            raise VerirlError(f"answerer {self.url}: the server lists no model (/v1/models)")
        return models[0]["id"]

    def _generate(self, prompts: list[list[dict]]) -> list[str]:
        out = []
        for messages in prompts:
            reply = self._request(
                "/v1/chat/completions",
                {"model": self.model, "messages": messages, "max_tokens": self.max_new_tokens, "temperature": 0},
            )
            out.append(((reply.get("choices") or [{}])[0].get("message") or {}).get("content") or "")
        return out


def is_url(spec: str) -> bool:
    return spec.startswith(("http://", "https://"))


def build_answerer(
    spec: str, base_model: str, dtype: str = "float32", max_new_tokens: int = 24, trust_remote_code: bool = False
) -> Answerer:
    """``base`` (the frozen base model ``base_model``), a model directory / Hub id, or a server URL."""
    if is_url(spec):
        return ServerAnswerer(spec, max_new_tokens=max_new_tokens)
    from verirl.generators.hf import HFGenerator
    from verirl.models import load_model

    model, tokenizer, _ = load_model(base_model if spec == "base" else spec, dtype, trust_remote_code)
    model.eval().requires_grad_(False)
    return GeneratorAnswerer(HFGenerator(model, tokenizer, batch_size=16), max_new_tokens)
