"""A recipe's ``rewards:`` list: each entry names a reward (see :mod:`verirl.rewards.base` for how names resolve),
its weight, its time limit and its bound arguments.

An entry ``{mixture: {...}}`` is a verifier mixture (:mod:`verirl.verifiers.mixture_reward`,
docs/verifier_mixtures.md): the reward ``mixture`` (an entry point of verirl itself, so this module does not import
the verifiers) with the block as its ``args``; the block's ``name`` (default ``mixture``) names its metrics, its
``timeout_s`` bounds each member's call, and the entry's own time limit is lifted (every member, and the gate, has
its own).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from verirl.errors import RecipeError, VerirlError, first_line
from verirl.rewards.base import resolve_reward
from verirl.typecheck import build_dataclass, setting


@dataclass
class RewardSpec:
    name: str = setting(help="a built-in reward, a plug-in (entry point verirl.rewards) or 'package.module:function'")
    weight: float = setting(1.0, help="its weight in the sum of rewards (TRL's reward_weights)")
    label: str | None = setting(None, help="the name its metrics use (default: from the name)")
    timeout_s: float | None = setting(120.0, help="seconds a call may take before its samples score None (null: none)")
    args: dict[str, Any] = field(default_factory=dict, metadata={"help": "keyword arguments bound to the reward"})
    retry_per_sample: bool = setting(True, help="after a failed batch call, score each sample alone")

    @property
    def metric(self) -> str:
        """The name TRL's metrics use (``rewards/<metric>/mean``)."""
        return self.label or metric_name(self.name)


MIXTURE = "mixture"


def _mixture_entry(item: dict[str, Any], file: str, i: int) -> dict[str, Any]:
    """``{mixture: {...}, weight: w}`` as a plain entry: the reward ``mixture`` with the block as its args."""
    block = item[MIXTURE]
    if not isinstance(block, dict):
        shown = f"{block!r:.40}"
        raise RecipeError(file, f"rewards.{i}.mixture", f"expected a mapping (members, gate, alpha, ...), got {shown}")
    clash = sorted(k for k in ("name", "args", "timeout_s", "label") if k in item)
    if clash:
        raise RecipeError(
            file, f"rewards.{i}.{clash[0]}", "set it inside the mixture: block (an entry is either name: or mixture:)"
        )
    label = block.get("name", MIXTURE)
    if not isinstance(label, str) or not label.strip():
        raise RecipeError(file, f"rewards.{i}.mixture.name", f"expected a metric name, got {label!r:.40}")
    rest = {k: v for k, v in item.items() if k != MIXTURE}
    return {"name": MIXTURE, "label": label, "timeout_s": None, "args": dict(block), **rest}


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
        if isinstance(item, dict) and MIXTURE in item:
            item = _mixture_entry(item, file, i)
        spec = build_dataclass(RewardSpec, item, file, f"rewards.{i}.")
        if not math.isfinite(spec.weight):
            raise RecipeError(file, f"rewards.{i}.weight", f"expected a finite number, got {spec.weight}")
        if spec.timeout_s is not None and not (spec.timeout_s > 0 and math.isfinite(spec.timeout_s)):
            raise RecipeError(
                file, f"rewards.{i}.timeout_s", f"expected a positive number or null, got {spec.timeout_s}"
            )
        specs.append(spec)
    names = [s.metric for s in specs]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise RecipeError(
            file, "rewards", f"reward {sorted(dupes)[0]!r} is listed twice (metrics are named by reward; set label:)"
        )
    for i, spec in enumerate(specs):
        key = f"rewards.{i}.mixture" if spec.name == MIXTURE else f"rewards.{i}.name"
        check_resolves(spec.name, spec.args, file, key)
        if spec.name == MIXTURE and spec.args.get("abstain_above") is not None and len(specs) > 1:
            raise RecipeError(
                file,
                f"rewards.{i}.mixture.abstain_above",
                "a mixture that abstains must be the only reward (another reward would score the abstained samples "
                "and their zeros would enter the group baseline); make the other rewards members",
            )
    return specs


def check_resolves(name: str, args: dict[str, Any], file: str, key: str) -> Any:
    """Resolve a reward as the trainer will and return it; whatever that raises is one line naming ``key``."""
    try:
        return resolve_reward(name, args)
    except VerirlError as exc:
        raise RecipeError(file, key, first_line(exc)) from None
    except Exception as exc:  # noqa: BLE001 - a reward class whose constructor fails must not crash validation
        raise RecipeError(file, key, f"reward {name!r} failed to load: {type(exc).__name__}: {exc}") from None


def metric_name(name: str) -> str:
    """Dotted paths make poor metric names: ``pkg.mod:fn`` -> ``fn``."""
    return name.rsplit(":", 1)[-1] if ":" in name else name
