"""A recipe's ``rewards:`` list: each entry names a reward (see :mod:`verirl.rewards.base` for how names resolve),
its weight, its time limit and its bound arguments."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from verirl.errors import RecipeError, VerirlError
from verirl.rewards.base import resolve_reward
from verirl.typecheck import build_dataclass, setting


@dataclass
class RewardSpec:
    name: str = setting(help="a built-in reward, a plug-in (entry point verirl.rewards) or 'package.module:function'")
    weight: float = setting(1.0, help="its weight in the sum of rewards (TRL's reward_weights)")
    timeout_s: float | None = setting(120.0, help="seconds a call may take before its samples score None (null: none)")
    args: dict[str, Any] = field(default_factory=dict, metadata={"help": "keyword arguments bound to the reward"})
    retry_per_sample: bool = setting(True, help="after a failed batch call, score each sample alone")


def build_reward_specs(value: Any, file: str) -> list[RewardSpec]:
    """The checked ``rewards:`` list (a plain string is ``{name: ...}``); every reward is resolved (imported)."""
    if value is None:
        value = []
    if not isinstance(value, list):
        raise RecipeError(file, "rewards", f"expected a list of rewards, got {type(value).__name__}")
    specs = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            item = {"name": item}
        spec = build_dataclass(RewardSpec, item, file, f"rewards.{i}.")
        if not math.isfinite(spec.weight):
            raise RecipeError(file, f"rewards.{i}.weight", f"expected a finite number, got {spec.weight}")
        if spec.timeout_s is not None and not (spec.timeout_s > 0 and math.isfinite(spec.timeout_s)):
            raise RecipeError(
                file, f"rewards.{i}.timeout_s", f"expected a positive number or null, got {spec.timeout_s}"
            )
        specs.append(spec)
    names = [s.name for s in specs]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise RecipeError(
            file, "rewards", f"reward {sorted(dupes)[0]!r} is listed twice (metrics are named by reward)"
        )
    for i, spec in enumerate(specs):
        check_resolves(spec.name, spec.args, file, f"rewards.{i}.name")
    return specs


def check_resolves(name: str, args: dict[str, Any], file: str, key: str) -> None:
    """Resolve a reward as the trainer will; whatever that raises is one line naming ``key``."""
    try:
        resolve_reward(name, args)
    except VerirlError as exc:
        raise RecipeError(file, key, str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a reward class whose constructor fails must not crash validation
        raise RecipeError(file, key, f"reward {name!r} failed to load: {type(exc).__name__}: {exc}") from None


def metric_name(name: str) -> str:
    """Dotted paths make poor metric names: ``pkg.mod:fn`` -> ``fn``."""
    return name.rsplit(":", 1)[-1] if ":" in name else name
