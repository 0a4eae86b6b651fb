"""The search agent's rewards: ``search_accuracy``, ``search_reasoning`` and ``search_fidelity``.

M³Searcher (arXiv 2601.09278) trains its planner on "factual accuracy + reasoning soundness + retrieval fidelity"
but publishes neither formulas nor weights. These three are **our reconstruction**, each usable alone, logged
separately by TRL (``rewards/<name>/mean``) and weighted in the recipe:

* ``search_accuracy`` — the frozen answerer's answer from the gathered evidence, scored against the gold answers
  (``metric``: ``f1`` (default), ``em`` or ``contains``, SQuAD normalisation). This is s3's utility to a frozen
  generator (arXiv 2505.14146); s3's "gain beyond RAG" subtracts a per-question constant, which cancels in a GRPO
  group, so verirl keeps the naive-RAG score as a metric and a data filter instead (``verirl agent eval --baseline
  naive-rag``).
* ``search_reasoning`` — the mean of four rule checks on the transcript (after Search-R1's format state machine,
  arXiv 2503.09516, and StepSearch's redundancy penalty, arXiv 2505.15107): the episode ends with a plain hand-off
  message (no leftover or malformed tool call); the share of tool calls that succeeded (0 when it never searched:
  these tasks need evidence); the share of calls that did not repeat an earlier query; it stopped within the search
  budget. A call that never reached the environment — an unknown tool or wrong arguments, which TRL answers with an
  ``{'error': ...}`` tool message — counts as a failed call: left out, it was a free action, and a policy seen here
  drifted to ``image_search(query=...)`` on text questions (docs/search_agent.md).
* ``search_fidelity`` — retrieval fidelity: the mean of the recall of the gold evidence titles among everything the
  searches returned (when the row names its evidence) and whether a gold answer string occurs in the returned text
  (Search-R1 v0.3's ``retrieval_correct``, AutoRefine's ``information_scores``, arXiv 2505.11277).

Each reads the rollout's :class:`~verirl.search.environment.SearchEnvironment` (TRL passes ``environments=``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

from verirl.search.environment import Episode
from verirl.search.scoring import contains, score

TOOL_CALL_TAG = "<tool_call>"


def _need(environments: Any, name: str) -> Sequence[Any]:
    if not environments:
        raise ValueError(f"{name} needs the search environment: add an `environment:` section to the recipe")
    return environments


def search_accuracy(
    prompts: Any = None,
    completions: Any = None,
    environments: Any = None,
    metric: Literal["f1", "em", "contains"] = "f1",
    **kwargs: Any,
) -> list[float]:
    """Accuracy of the frozen answerer given the evidence the planner gathered."""
    envs = _need(environments, "search_accuracy")
    answerer = envs[0].answerer
    if answerer is None:
        raise ValueError("search_accuracy needs an answerer (the environment section's `answerer`)")
    episodes = [e.episode for e in envs]
    start = time.monotonic()
    predictions = answerer.answer([(ep.question, ep.evidence) for ep in episodes])
    log_metric = kwargs.get("log_metric")
    if callable(log_metric):
        served = answerer.calls + answerer.hits
        log_metric("search/answerer_cache_hit_rate", answerer.hits / served if served else 0.0)
        log_metric("search/answerer_seconds", time.monotonic() - start)
    return [score(p, ep.answers, metric) for p, ep in zip(predictions, episodes, strict=True)]


def transcript_checks(completion: Any, episode: Episode) -> dict[str, float]:
    """The four reasoning checks of one rollout, and the counts behind them."""
    messages = completion if isinstance(completion, list) else [{"role": "assistant", "content": str(completion)}]
    assistant = [m for m in messages if isinstance(m, dict) and m.get("role") == "assistant"]
    malformed = sum(1 for m in assistant if not m.get("tool_calls") and TOOL_CALL_TAG in str(m.get("content") or ""))
    last = messages[-1] if messages else {}
    handed_off = (
        isinstance(last, dict)
        and last.get("role") == "assistant"
        and not last.get("tool_calls")
        and TOOL_CALL_TAG not in str(last.get("content") or "")
    )
    calls = episode.calls
    # every executed call (the environment's or one rejected before it) leaves one tool message; the environment
    # logs only those that reached it (a result TRL rolled back as too long leaves a logged call and no message)
    results = sum(1 for m in messages if isinstance(m, dict) and m.get("role") == "tool")
    rejected = max(0, results - len(calls))
    made = len(calls) + rejected
    ok = sum(1 for c in calls if c.outcome == "ok")
    repeated = sum(1 for c in calls if c.repeated)
    over_budget = any(c.outcome == "budget" for c in calls) or (
        isinstance(last, dict) and bool(last.get("tool_calls"))
    )
    return {
        "format": float(handed_off and malformed == 0),
        "success": ok / made if made else 0.0,
        "no_repeat": 1.0 - repeated / made if made else 1.0,
        "in_budget": float(not over_budget),
        "calls": float(made),
        "malformed": float(malformed),
        "rejected": float(rejected),
        "failed": float(made - ok),
    }


def search_reasoning(prompts: Any = None, completions: Any = None, environments: Any = None, **kwargs: Any) -> list:
    """Reasoning soundness: hand-off format, tool-call success, no repeated queries, stops within budget."""
    envs = _need(environments, "search_reasoning")
    completions = completions if completions is not None else [[] for _ in envs]
    checks = [transcript_checks(c, e.episode) for c, e in zip(completions, envs, strict=True)]
    log_metric = kwargs.get("log_metric")
    if callable(log_metric) and checks:
        calls = sum(c["calls"] for c in checks)
        attempts = calls + sum(c["malformed"] for c in checks)
        log_metric("search/calls_per_episode", calls / len(checks))
        log_metric("search/invalid_call_rate", (sum(c["malformed"] + c["failed"] for c in checks) / attempts)
                   if attempts else 0.0)  # fmt: skip
        log_metric("search/in_budget_rate", sum(c["in_budget"] for c in checks) / len(checks))
        log_metric("search/tool_seconds", sum(c.seconds for e in envs for c in e.episode.calls))
    return [(c["format"] + c["success"] + c["no_repeat"] + c["in_budget"]) / 4 for c in checks]


def fidelity_parts(episode: Episode) -> dict[str, float | None]:
    returned = set(episode.returned_titles)
    gold = [t for t in episode.gold_titles if t]
    recall = sum(1 for t in gold if t in returned) / len(gold) if gold else None
    text = " ".join(f"{h.title} {h.text}" for h in episode.returned)
    answer_in = contains(text, episode.answers) if episode.answers else None
    return {"evidence_recall": recall, "answer_in_evidence": answer_in, "all_evidence": None if recall is None
            else float(recall == 1.0)}  # fmt: skip


def search_fidelity(
    prompts: Any = None, completions: Any = None, environments: Any = None, **kwargs: Any
) -> list[float | None]:
    """Retrieval fidelity: gold evidence titles and the answer string among what the searches returned."""
    envs = _need(environments, "search_fidelity")
    out: list[float | None] = []
    for env in envs:
        parts = fidelity_parts(env.episode)
        values = [v for k, v in parts.items() if k != "all_evidence" and v is not None]
        out.append(sum(values) / len(values) if values else None)
    return out


SEARCH_REWARDS = {"search_accuracy": search_accuracy, "search_reasoning": search_reasoning,
                  "search_fidelity": search_fidelity}  # fmt: skip
