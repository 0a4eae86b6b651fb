"""Oracle trajectories for the planner's cold start (supervised warm start before GRPO).

SmolLM2-135M-Instruct never emits a valid tool call unprompted (0 of 18 samples in our probe, greedy or sampled,
with or without a one-shot example), so GRPO from it sees no tool use in any group. As R3-RAG (arXiv 2505.23794)
and the agentic-RL practice we follow, the planner first imitates scripted trajectories; GRPO then starts from it.

The oracle (ours) knows the gold evidence titles and runs the **real** tools, so every observation is exactly what
the planner will read during GRPO: a 2-hop question searches the hop-1 title (named in the question), then the
hop-2 title (kept only if that title appears in the first search's results, so the trajectory is one a planner
could follow); an image question calls ``image_search`` and, when the image's best match is the gold country, stops;
the final turn names the articles that hold the answer. Trajectories whose searches miss a gold title are dropped.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from verirl.search.environment import SearchEnvironment
from verirl.search.spec import PLANNER_SYSTEM, planner_prompt


def tool_schemas(env: SearchEnvironment) -> list[dict[str, Any]]:
    """The JSON schemas TRL renders for the environment's tools (transformers' ``get_json_schema``)."""
    from transformers.utils import get_json_schema

    from verirl.search.agent import tool_schemas as tool_methods

    return [get_json_schema(m) for m in tool_methods(env)]


def _call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": "",
            "tool_calls": [{"type": "function", "function": {"name": name, "arguments": arguments}}]}  # fmt: skip


def oracle_trajectory(env: SearchEnvironment, row: dict[str, Any], system: str = PLANNER_SYSTEM) -> list[dict] | None:
    """The chat of one oracle episode (system, user, assistant tool calls, tool results, hand-off), or None when the
    real tools do not return the gold evidence along the oracle's path."""
    env.reset(**row)
    gold = [t for t in row.get("evidence") or [] if t]
    image = row.get("query_image")
    tools = {n for n in ("text_search", "image_search") if callable(getattr(type(env), n, None))}
    messages = planner_prompt(row["question"], bool(image), system)
    if image:
        if "image_search" not in tools or not gold:
            return None
        observation = env.image_search()
        messages += [_call("image_search"), {"role": "tool", "name": "image_search", "content": observation}]
        if not env.episode.evidence or env.episode.evidence[0].title != gold[0]:
            return None
        found = [gold[0]]
    else:
        if "text_search" not in tools or len(gold) < 1:
            return None
        found: list[str] = []
        observation = row["question"]  # hop 1 is named in the question; each next hop in the previous results
        for title in gold:
            if title not in observation:
                return None
            observation = env.text_search(title)
            messages += [_call("text_search", query=title), {"role": "tool", "name": "text_search",
                                                             "content": observation}]  # fmt: skip
            if title not in env.episode.returned_titles:
                return None
            found.append(title)
    messages.append({"role": "assistant", "content": "The answer is in: " + "; ".join(found) + "."})
    return messages


def oracle_rows(env: SearchEnvironment, rows: Sequence[dict[str, Any]], system: str = PLANNER_SYSTEM) -> list[dict]:
    """Rows for verirl's ``sft`` trainer: ``conversation`` and ``tools`` as JSON strings (see :mod:`verirl.rl.sft`
    for why not nested columns), plus the question."""
    tools = json.dumps(tool_schemas(env))
    out = []
    for row in rows:
        messages = oracle_trajectory(env, row, system)
        if messages is not None:
            out.append({"question": row["question"], "conversation": json.dumps(messages), "tools": tools})
    return out
