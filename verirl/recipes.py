"""Recipes: read a YAML file, apply ``--set`` overrides, and assemble a checked :class:`Recipe`.

A recipe is one YAML file: what to train (``trainer``: a declaration in :mod:`verirl.rl.registry`), from what
(``model``), on what (``data``), for what (``rewards``), how rollouts are made (``generator``), the trainer's own
config (``args``) and sections, held-out evaluation (``eval``), the Hub (``hub``) and where outputs go
(``output_dir``). Each section is declared and checked by the module that consumes it (:mod:`verirl.models`,
:mod:`verirl.data`, :mod:`verirl.rewards.spec`, :mod:`verirl.generators.spec`, :mod:`verirl.evaluation`,
:mod:`verirl.hub`, the trainer's module); this one only reads, overrides and assembles.

Every problem is reported as ONE line ``file: key: what was expected`` (:class:`verirl.errors.RecipeError`).
Validation loads no weights; it resolves rewards (imports their modules) and builds the trainer's config.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from verirl.data import DataSpec, build_data_spec
from verirl.errors import RecipeError, VerirlError, first_line
from verirl.evaluation import EvalSpec, build_eval_spec
from verirl.generators.spec import GeneratorSpec, build_generator_spec
from verirl.hub import HubSpec, build_hub_spec
from verirl.models import ModelSpec, build_model_spec, check_causal_lm
from verirl.recipe_yaml import read_recipe_file
from verirl.rewards.spec import RewardSpec, build_reward_specs
from verirl.rl.config import build_args
from verirl.rl.registry import get_trainer, trainer_names
from verirl.rl.trainer import Trainer
from verirl.typecheck import build_dataclass, check_keys, coerce

SHARED_SECTIONS = ("trainer", "model", "data", "rewards", "generator", "eval", "hub", "output_dir")


@dataclass
class Recipe:
    trainer: str
    model: ModelSpec
    data: DataSpec
    rewards: list[RewardSpec]
    generator: GeneratorSpec
    eval: EvalSpec
    hub: HubSpec
    output_dir: str
    args: dict[str, Any] = field(default_factory=dict)  # the user's trainer args, after coercion
    derived: dict[str, Any] = field(default_factory=dict)  # trainer args verirl sets: reward_weights, use_cpu
    sections: dict[str, Any] = field(default_factory=dict)  # the trainer's own sections (advantage, evaluator)
    file: str = "<recipe>"
    raw: dict[str, Any] = field(default_factory=dict)  # the merged YAML (after --set)

    @property
    def trainer_args(self) -> dict[str, Any]:
        """What the trainer's config is built from: the recipe's ``args`` plus what verirl derives."""
        return {**self.args, **self.derived}

    @property
    def declaration(self) -> Trainer:
        return get_trainer(self.trainer)

    def section(self, key: str) -> Any:
        """A section the trainer owns (its spec, defaults filled in)."""
        return self.sections[key]

    def __getattr__(self, name: str) -> Any:  # recipe.advantage, recipe.evaluator: the trainer's own sections
        sections = self.__dict__.get("sections") or {}
        if name in sections:
            return sections[name]
        raise AttributeError(name)

    def to_yaml(self) -> str:
        """The resolved recipe, loadable by :func:`load_recipe` (written to the output directory)."""
        data: dict[str, Any] = {
            "trainer": self.trainer,
            "model": _prune(dataclasses.asdict(self.model)),
            "data": _prune(dataclasses.asdict(self.data)),
            "rewards": [_prune(dataclasses.asdict(r)) for r in self.rewards],
            "generator": dataclasses.asdict(self.generator),
        }
        for key, spec in self.sections.items():
            data[key] = _prune(dataclasses.asdict(spec))
        if self.declaration.has_args:
            data["args"] = self.args
        if self.declaration.evaluates:
            data["eval"] = dataclasses.asdict(self.eval)
        data["hub"] = _prune(dataclasses.asdict(self.hub))
        data["output_dir"] = self.output_dir
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _prune(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v not in (None, {}, [])}


# --------------------------------------------------------------------------------------------------- loading


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    return read_recipe_file(path)


def apply_overrides(data: dict[str, Any], overrides: list[str], file: str) -> dict[str, Any]:
    """Apply ``--set key.sub=value`` overrides (values parsed as YAML; list items by index: ``rewards.0.weight``)."""
    data = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise RecipeError(file, f"--set {item}", "expected key=value, e.g. args.max_steps=10")
        key, _, text = item.partition("=")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        parts = key.strip().split(".")
        if not all(parts):
            raise RecipeError(file, f"--set {key}", "expected a dotted key, e.g. args.max_steps")
        node: Any = data
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise RecipeError(file, f"--set {key}", f"{part!r} is not an index of a list of {len(node)}")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    if not isinstance(node.get(part), dict | list):
                        if isinstance(node.get(part), str) and part == "model":
                            node[part] = {"name": node[part]}  # --set model.dtype=... on `model: alias`
                        else:
                            node[part] = {}
                    node = node[part]
            else:
                raise RecipeError(file, f"--set {key}", f"cannot set a key inside {type(node).__name__}")
    return data


def load_recipe(
    path: str | os.PathLike,
    overrides: list[str] | None = None,
    num_processes: int = 1,
    check_files: bool = True,
) -> Recipe:
    """Read, override and validate a recipe. Raises RecipeError (one line) on any problem."""
    file = str(path)
    data = apply_overrides(read_yaml(file), overrides or [], file)
    return validate(data, file, num_processes=num_processes, check_files=check_files)


# -------------------------------------------------------------------------------------------------- assembly


def validate(data: dict[str, Any], file: str, num_processes: int = 1, check_files: bool = True) -> Recipe:
    """Assemble a checked Recipe from the parsed YAML. Anything a library raises on the way is a one-line error."""
    try:
        return _validate(data, file, num_processes, check_files)
    except VerirlError:
        raise
    except RecursionError:
        raise RecipeError(file, None, "the recipe is nested too deeply") from None
    except Exception as exc:  # noqa: BLE001 - validation must never end in a traceback
        raise RecipeError(file, None, f"could not validate: {type(exc).__name__}: {first_line(exc)}") from None


def _trainer(data: dict[str, Any], file: str) -> tuple[str, Trainer]:
    name = data.get("trainer")
    if name is None:
        raise RecipeError(file, "trainer", f"required key is missing; expected one of: {', '.join(trainer_names())}")
    try:
        return name, get_trainer(name)
    except VerirlError as exc:
        raise RecipeError(file, "trainer", str(exc)) from None


def _check_top_level(data: dict[str, Any], trainer: Trainer, file: str) -> None:
    own = [s.key for s in trainer.sections] + (["args"] if trainer.has_args else [])
    for key in data:
        if key in SHARED_SECTIONS or key in own:
            continue
        owners = [n for n in trainer_names() if _owns(n, key)]
        if owners:
            raise RecipeError(
                file, str(key), f"only used by trainer {' or '.join(owners)} (trainer is {data['trainer']})"
            )
    check_keys(data, [*SHARED_SECTIONS, *own], file, "")


def _owns(name: str, key: str) -> bool:
    try:
        other = get_trainer(name)
    except VerirlError:
        return False
    return other.section(key) is not None or (key == "args" and other.has_args)


def _sections(data: dict[str, Any], trainer: Trainer, file: str) -> dict[str, Any]:
    built = {}
    for section in trainer.sections:
        value = data.get(section.key)
        if value is None and section.required:
            example = f" (e.g. {section.example})" if section.example else ""
            raise RecipeError(file, section.key, f"required for trainer {trainer.name}{example}")
        if isinstance(value, str | int | float | bool | list) and section.shorthand:
            value = {section.shorthand: value}
        given = value if isinstance(value, dict) else {}
        spec = build_dataclass(section.spec, value if value is not None else {}, file, f"{section.key}.")
        built[section.key] = section.check(spec, given, file) if section.check else spec
    return built


def _rewards(data: dict[str, Any], trainer: Trainer, file: str) -> list[RewardSpec]:
    rewards = build_reward_specs(data.get("rewards"), file)
    if trainer.rewards == "required" and not rewards:
        hint = f", {trainer.rewards_hint}" if trainer.rewards_hint else ""
        raise RecipeError(file, "rewards", f"{trainer.name} needs at least one reward{hint}")
    if trainer.rewards == "forbidden" and rewards:
        raise RecipeError(file, "rewards", trainer.rewards_hint or f"{trainer.name} takes no rewards")
    return rewards


def _output_dir(value: Any, file: str) -> str:
    """``output_dir`` (default ``runs/<recipe name>``), normalised: ``runs/x/..`` is ``runs``."""
    text = coerce(value if value not in (None, "") else f"runs/{Path(file).stem}", str, file, "output_dir")
    if "\0" in text or not text.strip():
        raise RecipeError(file, "output_dir", f"expected a directory path, got {text[:80]!r}")
    return os.path.normpath(text)


def _validate(data: dict[str, Any], file: str, num_processes: int, check_files: bool) -> Recipe:
    if not isinstance(data, dict):
        raise RecipeError(file, None, f"expected a mapping of sections at the top level, got {type(data).__name__}")
    name, trainer = _trainer(data, file)
    _check_top_level(data, trainer, file)
    model = build_model_spec(data.get("model"), file)
    (trainer.check_model or check_causal_lm)(model, file)
    recipe = Recipe(
        trainer=name,
        model=model,
        data=build_data_spec(data.get("data"), file, check_files),
        rewards=_rewards(data, trainer, file),
        generator=build_generator_spec(data.get("generator"), file, trainer.backends, trainer.name),
        eval=EvalSpec(),
        hub=build_hub_spec(data.get("hub"), file),
        output_dir=_output_dir(data.get("output_dir"), file),
        sections=_sections(data, trainer, file),
        file=file,
        raw=data,
    )
    if trainer.evaluates:
        recipe.eval = build_eval_spec(data.get("eval"), recipe.rewards, file)
    elif data.get("eval") not in (None, {}):
        raise RecipeError(file, "eval", f"not used by trainer {trainer.name} (it reports its own held-out figures)")
    if trainer.has_args:
        recipe.args, recipe.derived = build_args(
            trainer, data.get("args") or {}, recipe, recipe.output_dir, file, num_processes
        )
    elif data.get("args") is not None:
        raise RecipeError(file, "args", f"not used by trainer {trainer.name}")
    if trainer.check is not None:
        trainer.check(recipe)
    return recipe
