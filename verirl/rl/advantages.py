"""GRPO's ``advantage:`` section: TRL's reward-derived group advantages (``grpo``) or RESTRAIN's label-free ones
(``restrain``, arXiv 2510.02172; :mod:`verirl.rl.restrain`). RESTRAIN's parameters are declared once, in
:class:`RestrainConfig`, which the section extends with the answer extractor and the prompt-weight switch."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from verirl.answers import get_extractor
from verirl.errors import RecipeError, VerirlError
from verirl.typecheck import setting

SCHEMES = ("grpo", "restrain")


@dataclass(frozen=True)
class RestrainConfig:
    """RESTRAIN's parameters (the paper's defaults; docs/restrain.md)."""

    kappa: float = setting(0.375, help="restrain: majority share below which a group is penalised, in [0, 1]")
    delta: float = setting(0.5, help="restrain: negative offset of the advantages of a penalised group, >= 0")
    sigma: float = setting(0.5, help="restrain: bandwidth of the Gaussian shaping of answer frequencies, > 0")
    center: float = setting(1.0, help="restrain: centre of the Gaussian shaping")
    eps: float = setting(1e-4, help="restrain: added to a group's standard deviation", gt=0)


@dataclass(frozen=True)
class AdvantageSpec(RestrainConfig):
    """How GRPO turns rollouts into advantages (a plain string is ``{name: ...}``)."""

    name: str = setting("grpo", help="grpo (TRL's reward-derived advantages) | restrain (label-free)")
    extractor: str = setting("last_number", help="restrain: last_number | boxed | regex | stripped | module:function")
    extractor_args: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "restrain: the extractor's options"}
    )
    prompt_weights: bool = setting(True, help="restrain: weight prompts by the frozen base model's consistency")


RESTRAIN_FIELDS = tuple(f.name for f in dataclasses.fields(RestrainConfig))


def restrain_config(spec: AdvantageSpec) -> RestrainConfig:
    return RestrainConfig(**{name: getattr(spec, name) for name in RESTRAIN_FIELDS})


def check_advantage(spec: AdvantageSpec, given: Mapping[str, Any], file: str) -> AdvantageSpec:
    if spec.name not in SCHEMES:
        raise RecipeError(file, "advantage.name", f"expected one of: {', '.join(SCHEMES)}, got {spec.name!r}")
    if spec.name == "grpo":
        defaults = AdvantageSpec()
        for key in RESTRAIN_FIELDS:
            if key in given and getattr(spec, key) != getattr(defaults, key):
                raise RecipeError(file, f"advantage.{key}", "only used by advantage.name: restrain")
        return spec
    if not 0.0 <= spec.kappa <= 1.0:
        raise RecipeError(file, "advantage.kappa", f"expected a majority share in [0, 1], got {spec.kappa}")
    if not spec.delta >= 0:
        raise RecipeError(file, "advantage.delta", f"expected a non-negative offset, got {spec.delta}")
    if not spec.sigma > 0:
        raise RecipeError(file, "advantage.sigma", f"expected a positive bandwidth, got {spec.sigma}")
    try:
        get_extractor(spec.extractor, spec.extractor_args)
    except VerirlError as exc:
        raise RecipeError(file, "advantage.extractor", str(exc)) from None
    return spec


def advantage_line(spec: AdvantageSpec) -> str:
    if spec.name == "grpo":
        return "grpo (TRL's reward-derived group advantages)"
    weights = "prompt weights from the frozen model" if spec.prompt_weights else "no prompt weights"
    return (
        f"restrain (label-free): kappa={spec.kappa:g}, delta={spec.delta:g}, sigma={spec.sigma:g}, "
        f"center={spec.center:g}, extractor {spec.extractor}, {weights}"
    )
