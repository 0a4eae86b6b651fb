"""A trainer declares itself.

``trainer: NAME`` in a recipe selects one :class:`Trainer` declaration. It says what the recipe holds for that
trainer (its config class for ``args``, the sections it owns, the generator backends and the reward rule it accepts),
how it is checked across sections, what ``--dry-run`` prints for it, how it is launched, which files its output
directory holds and what model-card task it is, and the function that runs it. ``verirl.recipes``, ``verirl.cli``
and the worker read declarations and never compare a trainer's name; a new trainer is one module (see
``docs/architecture.md``, "Where things go").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from verirl.cards import CardInfo

# ``recipe`` arguments below are :class:`verirl.recipes.Recipe` objects (the recipe layer sits above this one).
Recipe = Any


@dataclass(frozen=True)
class Section:
    """A recipe section a trainer owns besides the shared ones (model, data, rewards, generator, eval, hub).

    ``spec`` is a dataclass built from the mapping (unknown keys, types and declared ranges checked);
    ``shorthand``: a plain value stands for ``{shorthand: value}`` (``advantage: restrain``); ``check(spec, raw,
    file)`` returns the checked spec (defaults filled in) or raises a one-line :class:`~verirl.errors.RecipeError`;
    ``plan(spec)`` is its ``--dry-run`` line."""

    key: str
    spec: type
    required: bool = False
    shorthand: str | None = None
    check: Callable[[Any, Mapping[str, Any], str], Any] | None = None
    plan: Callable[[Any], str] | None = None
    example: str = ""


@dataclass(frozen=True)
class Trainer:
    """Everything verirl needs to know about one trainer (see the module docstring)."""

    name: str
    summary: str
    run: Callable[[Any], dict[str, Any]]  # run(ctx: verirl.rl.context.RunContext) -> results
    # ``args``: the config class (imported when first needed: trl is heavy) and how an instance is built/checked
    config: Callable[[], type] | None = None
    make_config: Callable[[type, dict[str, Any], str], Any] | None = (
        None  # (cls, values, output_dir); default cls(...)
    )
    arg_bounds: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # ranges of fields the class can't say
    derive_args: Callable[[Recipe, dict[str, Any], int, str], dict[str, Any]] | None = None  # values verirl sets
    sections: tuple[Section, ...] = ()
    # the model: a causal LM (alias, dir, Hub id) unless the trainer checks and describes its own kind
    check_model: Callable[[Any, str], None] | None = None
    model_line: Callable[[Any], str] | None = None
    backends: tuple[str, ...] = ("hf",)  # generator backends accepted; the first is the default
    rewards: Literal["required", "optional", "forbidden"] = "required"
    rewards_hint: str = ""  # why, for "forbidden" (or what to give, for "required")
    evaluates: bool = True  # the ``eval`` section applies (held-out accuracy before/after)
    eval_line: str = "greedy"  # how held-out samples are made, for --dry-run
    check: Callable[[Recipe], None] | None = None  # cross-section checks, after every section is built
    plan: Callable[[Recipe, Any, int], list[tuple[str, str]]] | None = None  # (recipe, config, processes) -> lines
    launch: Literal["accelerate", "in_process"] = "accelerate"
    resumable: bool = True
    model_files: tuple[str, ...] = ("config.json", "adapter_config.json")  # any one of them: the output has a model
    card: CardInfo = field(default_factory=CardInfo)

    def section(self, key: str) -> Section | None:
        return next((s for s in self.sections if s.key == key), None)

    @property
    def has_args(self) -> bool:
        return self.config is not None
