"""The search tools as a TRL environment (``GRPOTrainer(environment_factory=...)``, TRL >= 1.16).

One :class:`SearchEnvironment` instance serves one rollout: TRL calls ``reset(**row)`` with the dataset row, exposes
every public method as a tool the model may call (``text_search``, ``image_search``), masks the tool results out of
the loss (``tool_mask``) and hands the instances to the reward functions (``environments=``). Nothing here depends on
verirl's trainer, so the same class runs in plain TRL::

    env = environment_factory(open_retriever(None), tools=("text_search", "image_search"))
    GRPOTrainer(..., environment_factory=env, reward_funcs=[search_accuracy, search_fidelity])

Robustness (ours): a tool never raises into the rollout. An empty or repeated query, a failing or slow retriever
(per-call timeout), an empty result, a missing or corrupt image, a call past the search budget — each becomes a
short observation the model reads (``error: ...``) and an outcome counted in the episode's log
(:class:`ToolCall`), which the ``search_reasoning`` reward and the metrics read. Malformed tool calls (TRL parses
them as plain text) and calls to an unknown tool or with wrong arguments (TRL answers them with an error) never reach
the environment; :mod:`verirl.search.rewards` counts those from the transcript.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from verirl.errors import first_line
from verirl.rewards.guard import RewardTimeout, call_with_timeout
from verirl.search.corpus import Hit

TOOL_NAMES = ("text_search", "image_search")
OUTCOMES = ("ok", "empty", "error", "timeout", "budget")


@dataclass
class SearchOptions:
    """How the tools behave (the recipe's ``environment:`` section sets these)."""

    top_k: int = 3
    max_calls: int = 4
    timeout_s: float = 10.0
    max_chars: int = 300
    image_evidence: int = 1  # image-search hits that become evidence (the best match)


@dataclass
class ToolCall:
    tool: str
    query: str | None
    titles: list[str]
    outcome: str  # one of OUTCOMES
    seconds: float
    repeated: bool = False


@dataclass
class Episode:
    """What one rollout did: the question, the gold data, every tool call and the evidence gathered."""

    question: str = ""
    answers: list[str] = field(default_factory=list)
    gold_titles: list[str] = field(default_factory=list)
    image: str | None = None
    calls: list[ToolCall] = field(default_factory=list)
    evidence: list[Hit] = field(default_factory=list)  # unique titles, in retrieval order
    returned: list[Hit] = field(default_factory=list)  # every hit the searches returned

    @property
    def returned_titles(self) -> list[str]:
        return list(dict.fromkeys(h.title for h in self.returned))

    def add_evidence(self, hits: Sequence[Hit]) -> None:
        have = {h.title for h in self.evidence}
        for hit in hits:
            if hit.title not in have:
                self.evidence.append(hit)
                have.add(hit.title)


class SearchEnvironment:
    """Base of the environment classes (:func:`environment_factory` adds the chosen tools as methods)."""

    def __init__(self, retriever: Any, answerer: Any = None, options: SearchOptions | None = None):
        self._retriever = retriever
        self._answerer = answerer
        self._options = options or SearchOptions()
        self._episode = Episode()

    def reset(self, **row: Any) -> None:
        """Start an episode for a dataset row (``question``, ``answers``, ``evidence``, ``query_image``, ...)."""
        answers = row.get("answers") or row.get("answer") or []
        self._episode = Episode(
            question=str(row.get("question") or ""),
            answers=[answers] if isinstance(answers, str) else [str(a) for a in answers],
            gold_titles=[str(t) for t in row.get("evidence") or []],
            image=row.get("query_image") or None,
        )
        return None

    @property
    def episode(self) -> Episode:
        return self._episode

    @property
    def answerer(self) -> Any:
        return self._answerer

    # ------------------------------------------------------------------ shared by the tools (private: not tools)

    def _run(self, tool: str, query: str | None, search: Callable[[], list[Hit]], evidence: int | None) -> str:
        ep, opts = self._episode, self._options
        repeated = query is not None and any(c.tool == tool and c.query == query for c in ep.calls)
        if len(ep.calls) >= opts.max_calls:
            return self._log(tool, query, [], "budget", 0.0, repeated, f"error: the search budget ({opts.max_calls} "
                             "calls) is used up; stop searching and write your final note")  # fmt: skip
        start = time.monotonic()
        try:
            hits = list(call_with_timeout(search, {}, opts.timeout_s))
        except RewardTimeout:
            return self._log(tool, query, [], "timeout", opts.timeout_s, repeated,
                             f"error: {tool} timed out after {opts.timeout_s:g} s")  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - a failing tool is an observation, never a crash
            return self._log(tool, query, [], "error", time.monotonic() - start, repeated, f"error: {first_line(exc)}")
        seconds = time.monotonic() - start
        if not hits:
            return self._log(tool, query, [], "empty", seconds, repeated, "no results")
        ep.returned.extend(hits)
        ep.add_evidence(hits if evidence is None else hits[:evidence])
        text = self._format(hits)
        return self._log(tool, query, [h.title for h in hits], "ok", seconds, repeated, text)

    def _log(self, tool: str, query: str | None, titles: list[str], outcome: str, seconds: float, repeated: bool,
             observation: str) -> str:  # fmt: skip
        self._episode.calls.append(ToolCall(tool, query, titles, outcome, round(seconds, 4), repeated))
        return observation

    def _format(self, hits: Sequence[Hit]) -> str:
        limit = self._options.max_chars
        lines = []
        for i, hit in enumerate(hits, 1):
            text = hit.text if len(hit.text) <= limit else hit.text[: limit - 3].rstrip() + "..."
            lines.append(f"[{i}] {hit.title}: {text}" if text else f"[{i}] {hit.title}")
        return "\n".join(lines)


def text_search(self, query: str) -> str:  # noqa: ANN001 - no hint on self: TRL builds the schema from hints
    """Search an encyclopedia and return the top passages, each with its article title.

    Args:
        query: A few keywords or a short question naming what to look up.
    """
    query = str(query).strip() if query is not None else ""
    if not query:
        return self._log("text_search", "", [], "error", 0.0, False, "error: the query is empty")
    return self._run("text_search", query, lambda: self._retriever.text_search(query, self._options.top_k), None)


def image_search(self) -> str:  # noqa: ANN001 - see text_search
    """Reverse image search: find what the question's image shows and return the best matches with their articles."""
    image = self._episode.image
    if not image:
        return self._log("image_search", None, [], "error", 0.0, False, "error: this question has no image")
    return self._run(
        "image_search",
        None,
        lambda: self._retriever.image_search(image, self._options.top_k),
        self._options.image_evidence,
    )


TOOLS: dict[str, Callable[..., str]] = {"text_search": text_search, "image_search": image_search}


@functools.cache
def environment_class(tools: tuple[str, ...]) -> type[SearchEnvironment]:
    """A :class:`SearchEnvironment` subclass whose public methods are exactly ``tools`` (TRL exposes every public
    method of an environment as a tool)."""
    unknown = [t for t in tools if t not in TOOLS]
    if unknown or not tools:
        raise ValueError(f"tools: expected a non-empty list of {', '.join(TOOL_NAMES)}, got {list(tools)}")
    name = "SearchEnvironment" if len(tools) > 1 else "".join(p.title() for p in tools[0].split("_")) + "Environment"
    return type(name, (SearchEnvironment,), {t: TOOLS[t] for t in tools})


def environment_factory(
    retriever: Any, answerer: Any = None, tools: Sequence[str] = TOOL_NAMES, options: SearchOptions | None = None
) -> Callable[[], SearchEnvironment]:
    """What ``GRPOTrainer(environment_factory=...)`` takes: a no-argument callable making one environment."""
    cls = environment_class(tuple(tools))
    return functools.partial(cls, retriever, answerer, options or SearchOptions())
