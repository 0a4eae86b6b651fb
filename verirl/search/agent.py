"""Running the search agent outside training: episodes for ``verirl agent ask`` / ``agent eval`` and for the
held-out evaluation of a search-agent recipe, plus the baselines the benchmark compares against.

The loop is the one TRL's ``GRPOTrainer`` runs during training (generate a turn, parse tool calls with the
tokenizer's response parser, call the environment's tools, append the results as tool messages, generate again until
a turn has no tool call or ``max_turns`` tool turns have run), with the same chat template, tools and environment,
so an evaluation sees what training saw. Differences (ours): decoding is greedy by default, and each turn re-renders
the conversation with the chat template (evaluation needs no token-exact continuation; TRL's templates for tool use
are prefix-preserving, so the tokens agree).

Baselines (for ``agent eval --baseline``): ``none`` — the answerer alone; ``naive-rag`` — one text search with the
question (for an image question, the image search's best title is appended to the query and its passage kept as
evidence), as s3's naive RAG (arXiv 2505.14146); ``oracle`` — the gold evidence passages (the ceiling).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from verirl.search.corpus import Corpus, Hit
from verirl.search.environment import Episode, SearchEnvironment
from verirl.search.rewards import fidelity_parts, transcript_checks
from verirl.search.scoring import contains, exact_match, f1

BASELINES = ("none", "naive-rag", "oracle")


@dataclass
class EpisodeResult:
    episode: Episode
    transcript: list[dict[str, Any]]
    answer: str = ""
    seconds: float = 0.0

    def record(self) -> dict[str, Any]:
        """One JSON-able line: the answer, its scores, the turns with their queries and returned titles."""
        ep = self.episode
        checks = transcript_checks(self.transcript, ep) if self.transcript else {}
        parts = fidelity_parts(ep)
        return {
            "question": ep.question,
            "answer": self.answer,
            "gold": ep.answers,
            "correct": bool(contains(self.answer, ep.answers)),
            "em": exact_match(self.answer, ep.answers),
            "f1": round(f1(self.answer, ep.answers), 4),
            "evidence_recall": parts["evidence_recall"],
            "all_evidence": parts["all_evidence"],
            "answer_in_evidence": parts["answer_in_evidence"],
            "tool_calls": int(checks.get("calls", len(ep.calls))),  # with those rejected before the environment
            "malformed_calls": int(checks.get("malformed", 0)),  # tool-call text that did not parse
            "invalid_calls": int(checks.get("malformed", 0) + checks.get("failed", 0)),
            "turns": [{"tool": c.tool, "query": c.query, "titles": c.titles, "outcome": c.outcome} for c in ep.calls],
            "evidence": [h.title for h in ep.evidence],
            "final_note": _final_note(self.transcript),
            "seconds": round(self.seconds, 2),
        }


def _final_note(transcript: list[dict[str, Any]]) -> str:
    last = transcript[-1] if transcript else {}
    return str(last.get("content") or "") if last.get("role") == "assistant" else ""


def tool_schemas(env: SearchEnvironment) -> list[Callable[..., str]]:
    """The environment's tools as TRL exposes them (its public methods but ``reset``)."""
    import inspect

    return [
        getattr(env, name)
        for name, _ in inspect.getmembers(type(env), predicate=inspect.isfunction)
        if name not in ("reset", "get_reward") and not name.startswith("_")
    ]


class Planner:
    """A causal LM driving the tools, turn by turn (batched over episodes)."""

    def __init__(self, model: Any, tokenizer: Any, max_new_tokens: int = 96, temperature: float = 0.0):
        from trl.chat_template_utils import add_response_schema

        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        if (
            getattr(tokenizer, "response_template", None) is None
            and getattr(tokenizer, "response_schema", None) is None
        ):
            add_response_schema(tokenizer)

    def turn(self, conversations: list[list[dict]], tools: list[list[Callable]]) -> list[dict[str, Any]]:
        """One turn of each conversation: the assistant message (tool calls parsed), ``{}`` if it wrote nothing."""
        from trl.chat_template_utils import parse_response

        from verirl.generators.base import strip_after_eos

        tok = self.tokenizer
        prompts = [
            list(tok.apply_chat_template(c, tools=t, add_generation_prompt=True, tokenize=True, return_dict=False))
            for c, t in zip(conversations, tools, strict=True)
        ]
        messages = []
        for row, prompt, t in zip(self._generate(prompts), prompts, tools, strict=True):
            completion = strip_after_eos(row, tok)
            messages.append(parse_response(tok, completion, prefix=prompt, tools=t) if completion else {})
        return messages

    def _generate(self, prompts: list[list[int]]) -> list[list[int]]:
        """New tokens for each tokenized prompt (transformers ``generate``, left-padded batch)."""
        import torch

        width = max(len(p) for p in prompts)
        pad = self.tokenizer.pad_token_id
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "pad_token_id": pad}
        if self.temperature > 0:
            kwargs.update(do_sample=True, temperature=self.temperature, top_p=1.0, top_k=0)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        was_training = self.model.training
        self.model.eval()
        with torch.no_grad():
            out = self.model.generate(input_ids=ids.to(self.model.device), attention_mask=mask.to(self.model.device),
                                      **kwargs)  # fmt: skip
        self.model.train(was_training)
        return out[:, width:].tolist()


class EnginePlanner(Planner):
    """The planner's turns generated by a verirl vLLM backend (``generate_ids``: token ids in and out), greedy or
    sampled like :class:`Planner`; the same chat template, parser and tools."""

    def __init__(self, generator: Any, tokenizer: Any, max_new_tokens: int = 96, temperature: float = 0.0):
        super().__init__(None, tokenizer, max_new_tokens, temperature)
        self.generator = generator

    def _generate(self, prompts: list[list[int]]) -> list[list[int]]:
        from verirl.generators.base import SamplingParams

        sampling = SamplingParams(max_new_tokens=self.max_new_tokens, temperature=self.temperature)
        ids, _ = self.generator.generate_ids(prompts, 1, sampling)
        return [list(group[0]) for group in ids]


def call_tools(env: SearchEnvironment, message: dict[str, Any]) -> list[dict[str, Any]]:
    """Run a turn's tool calls as TRL does: unknown tools and bad arguments become an error result."""
    results = []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        name = function.get("name", "unknown")
        method = getattr(type(env), name, None)
        try:
            if (
                call.get("type") != "function"
                or name.startswith("_")
                or name in ("reset", "get_reward")
                or not (callable(method))
            ):
                raise ValueError(f"Tool {name} not found.")
            arguments = function.get("arguments") or {}
            if not isinstance(arguments, dict):
                raise TypeError(f"arguments of {name} must be an object")
            result: Any = getattr(env, name)(**arguments)
        except Exception as exc:  # noqa: BLE001 - as TRL: the model reads the error
            result = {"error": str(exc)}
        results.append({"role": "tool", "name": name, "content": str(result)})
    return results


def run_episodes(
    planner: Planner,
    envs: Sequence[SearchEnvironment],
    rows: Sequence[dict[str, Any]],
    prompts: Sequence[list[dict]],
    max_turns: int,
) -> list[EpisodeResult]:
    """One episode per row, batched turn by turn; the answerer (the environments') answers at the end."""
    start = time.monotonic()
    for env, row in zip(envs, rows, strict=True):
        env.reset(**row)
    conversations = [list(p) for p in prompts]
    transcripts: list[list[dict]] = [[] for _ in envs]
    tools = [tool_schemas(env) for env in envs]
    active = list(range(len(envs)))
    turn = 0
    while active:
        replies = planner.turn([conversations[i] for i in active], [tools[i] for i in active])
        still = []
        for i, reply in zip(active, replies, strict=True):
            if not reply:
                continue
            transcripts[i].append(reply)
            conversations[i].append(reply)
            if reply.get("tool_calls") and turn < max_turns:
                results = call_tools(envs[i], reply)
                transcripts[i].extend(results)
                conversations[i].extend(results)
                still.append(i)
        active = still
        turn += 1
        if turn > max_turns:
            break
    results = [EpisodeResult(env.episode, transcripts[i]) for i, env in enumerate(envs)]
    answer_all(envs[0].answerer, results)
    per = (time.monotonic() - start) / max(len(results), 1)
    for r in results:
        r.seconds = per
    return results


def answer_all(answerer: Any, results: Sequence[EpisodeResult]) -> None:
    answers = answerer.answer([(r.episode.question, r.episode.evidence) for r in results])
    for r, a in zip(results, answers, strict=True):
        r.answer = a


def run_baseline(
    baseline: str, env: SearchEnvironment, rows: Sequence[dict[str, Any]], corpus: Corpus | None
) -> list[EpisodeResult]:
    """``none`` / ``naive-rag`` / ``oracle`` episodes for rows (see the module docstring)."""
    results = []
    for row in rows:
        start = time.monotonic()
        env.reset(**row)
        ep = env.episode
        if baseline == "naive-rag":
            query = ep.question
            if ep.image and hasattr(env, "image_search"):
                env.image_search()
                if ep.evidence:
                    query = f"{query} {ep.evidence[0].title}"
            if hasattr(env, "text_search"):
                env.text_search(query)
        elif baseline == "oracle":
            hits = [corpus.get(t) for t in ep.gold_titles] if corpus is not None else []
            found = [Hit(p.title, p.text, 1.0) for p in hits if p is not None]
            ep.returned.extend(found)
            ep.add_evidence(found)
        elif baseline != "none":
            raise ValueError(f"baseline: expected one of {', '.join(BASELINES)}, got {baseline!r}")
        results.append(EpisodeResult(env.episode, [], seconds=time.monotonic() - start))
        # each episode keeps its own Episode object: reset() replaces it, so results stay intact
    answer_all(env.answerer, results)
    return results


def summary(records: Sequence[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    """The final line of ``agent eval``: accuracy, retrieval fidelity (share of questions with gold evidence whose
    titles were all returned), tool calls, invalid-call rate, wall time."""
    n = len(records)
    with_evidence = [r for r in records if r["all_evidence"] is not None]
    calls = sum(r["tool_calls"] for r in records)
    invalid = sum(r["invalid_calls"] for r in records)
    attempts = calls + sum(r["malformed_calls"] for r in records)
    return {
        "summary": True,
        "questions": n,
        "accuracy": round(sum(r["correct"] for r in records) / n, 4) if n else 0.0,
        "f1": round(sum(r["f1"] for r in records) / n, 4) if n else 0.0,
        "retrieval_fidelity": round(sum(r["all_evidence"] for r in with_evidence) / len(with_evidence), 4)
        if with_evidence
        else None,
        "mean_tool_calls": round(calls / n, 3) if n else 0.0,
        "invalid_call_rate": round(invalid / attempts, 4) if attempts else 0.0,
        "wall_s": round(wall_s, 1),
    }
