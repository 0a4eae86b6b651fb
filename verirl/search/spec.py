"""A GRPO recipe's ``environment:`` section: multi-turn tool rollouts with the search agent's tools.

It turns a ``trainer: grpo`` recipe into a search-agent recipe: the planner (the recipe's model) calls the tools
over up to ``max_turns`` turns (TRL's ``max_tool_calling_iterations``), the frozen ``answerer`` answers from the
evidence, and the ``search_*`` rewards score the rollout (docs/search_agent.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from verirl.errors import RecipeError, VerirlError
from verirl.search.corpus import BUILTIN_CORPUS
from verirl.search.environment import TOOL_NAMES, SearchOptions
from verirl.typecheck import setting

ENVIRONMENTS = ("search",)
BUILTIN_IMAGES = "flags"
CHAT_TEMPLATES = ("auto", "qwen2.5", "keep")

PLANNER_SYSTEM = (
    "You are a search planner. Gather the evidence needed to answer the user's question by calling the search "
    "tools, one call per turn; for a question about an image, start with image_search. You never answer the "
    "question yourself: once the results hold what is needed, reply with one short line naming the articles "
    "that hold the answer."
)


@dataclass(frozen=True)
class EnvironmentSpec:
    """Tools the policy may call over several turns (a plain string is ``{name: ...}``)."""

    name: str | None = setting(None, help="search (the search agent: text/image search tools) | null: single turn")
    tools: list[str] = field(
        default_factory=lambda: list(TOOL_NAMES), metadata={"help": "the tools offered: text_search, image_search"}
    )
    retriever: str | None = setting(None, help="URL of a `verirl serve-retriever` service (null: in this process)")
    corpus: str = setting(BUILTIN_CORPUS, help="passages for text_search: wiki-vital or a JSONL file {title, text}")
    images: str = setting(BUILTIN_IMAGES, help="images for image_search: flags, a JSONL file {image, title}, or none")
    top_k: int = setting(3, help="hits per search", ge=1, le=20)
    max_turns: int = setting(3, help="tool-calling turns per episode (TRL's max_tool_calling_iterations)", ge=1, le=16)
    tool_timeout_s: float = setting(10.0, help="seconds a tool call may take before it returns an error", gt=0)
    max_result_chars: int = setting(300, help="characters of each hit's passage the model reads", ge=16, le=4000)
    answerer: str = setting("base", help="the frozen answer generator: base (the frozen base model), a model "
                            "directory or Hub id, or an OpenAI-compatible server URL")  # fmt: skip
    answerer_max_new_tokens: int = setting(24, help="tokens the answerer may write", ge=1, le=512)
    chat_template: str = setting(
        "auto",
        help="auto (keep the tokenizer's if it renders tool calls, else TRL's Qwen2.5 template) | qwen2.5 | keep",
        choices=CHAT_TEMPLATES,
    )
    system_prompt: str = setting(PLANNER_SYSTEM, help="the planner's system message (the tools' schema follows it)")

    @property
    def enabled(self) -> bool:
        return self.name is not None

    def options(self) -> SearchOptions:
        return SearchOptions(
            top_k=self.top_k, max_calls=self.max_turns, timeout_s=self.tool_timeout_s, max_chars=self.max_result_chars
        )


def check_environment(spec: EnvironmentSpec, given: Mapping[str, Any], file: str) -> EnvironmentSpec:
    if spec.name is None:  # a resolved recipe (to_yaml) lists every field at its default: only changes count
        defaults = EnvironmentSpec()
        extra = sorted(k for k in given if k != "name" and getattr(spec, k, None) != getattr(defaults, k, None))
        if extra:
            raise RecipeError(file, f"environment.{extra[0]}", "set environment.name (search) to use an environment")
        return spec
    if spec.name not in ENVIRONMENTS:
        raise RecipeError(file, "environment.name", f"expected one of: {', '.join(ENVIRONMENTS)}, got {spec.name!r}")
    tools = spec.tools
    if not tools or any(t not in TOOL_NAMES for t in tools) or len(set(tools)) != len(tools):
        raise RecipeError(
            file, "environment.tools", f"expected a non-empty list of distinct {', '.join(TOOL_NAMES)}, got {tools}"
        )
    if spec.retriever is not None and not spec.retriever.startswith(("http://", "https://")):
        raise RecipeError(file, "environment.retriever", f"expected an http(s):// URL, got {spec.retriever!r}")
    if spec.retriever is None:
        for key, builtin in (("corpus", BUILTIN_CORPUS), ("images", BUILTIN_IMAGES)):
            value = getattr(spec, key)
            if value != builtin and not (key == "images" and value == "none") and not Path(value).is_file():
                raise RecipeError(
                    file, f"environment.{key}", f"expected {builtin} or a JSONL file; {value!r} is neither"
                )
    if not spec.answerer.strip():
        raise RecipeError(file, "environment.answerer", "expected base, a model directory or Hub id, or a URL")
    if not spec.system_prompt.strip():
        raise RecipeError(file, "environment.system_prompt", "expected a non-empty system message")
    return spec


def check_environment_args(tools: tuple[str, ...], max_turns: int, top_k: int) -> None:
    """The command-line counterparts of the section's checks (``verirl agent``)."""
    if not tools or any(t not in TOOL_NAMES for t in tools) or len(set(tools)) != len(tools):
        raise VerirlError(f"--tools: expected distinct names among {', '.join(TOOL_NAMES)}, got {','.join(tools)!r}")
    if not 1 <= max_turns <= 16:
        raise VerirlError(f"--max-turns: expected 1..16, got {max_turns}")
    if not 1 <= top_k <= 20:
        raise VerirlError(f"--top-k: expected 1..20, got {top_k}")


def environment_line(spec: EnvironmentSpec) -> str:
    if not spec.enabled:
        return "none (single-turn rollouts)"
    where = spec.retriever or f"in process ({spec.corpus}, images: {spec.images})"
    return (
        f"{spec.name}: tools {', '.join(spec.tools)}, <= {spec.max_turns} turns, top {spec.top_k}, retriever {where}, "
        f"answerer {spec.answerer}"
    )


def planner_prompt(question: str, has_image: bool, system: str = PLANNER_SYSTEM) -> list[dict[str, str]]:
    """The planner's chat prompt for a question (the image itself is reached through ``image_search``)."""
    user = f"{question}\n(An image comes with this question; image_search looks it up.)" if has_image else question
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def prepare_tokenizer(tokenizer: Any, mode: str = "auto") -> str:
    """Give the tokenizer a chat template that renders tool calls, as TRL's tool loop needs; returns what was done.

    SmolLM2's ChatML template drops ``tool_calls`` and tool messages, so TRL refuses it. ``auto`` keeps a template
    TRL accepts and otherwise installs TRL's exact Qwen2.5 template (``<tool_call>{json}</tool_call>`` calls, tool
    results as ``<tool_response>`` in a user turn), which TRL recognises (response parser, prefix-preserving).
    """
    from trl.chat_template_utils import qwen2_5_chat_template, supports_tool_calling

    if mode == "keep" or (mode == "auto" and tokenizer.chat_template and supports_tool_calling(tokenizer)):
        return "kept the tokenizer's chat template"
    tokenizer.chat_template = qwen2_5_chat_template
    return "installed TRL's Qwen2.5 tool-calling chat template"
