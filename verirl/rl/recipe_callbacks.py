"""A recipe's ``callbacks:`` section: ``transformers.TrainerCallback``s added to a Trainer-based trainer.

``callbacks: [adalrs]`` or ``[{name: adalrs, alpha: 2}]`` (AdaLRS learning-rate search, :mod:`verirl.rl.adalrs`), or
any ``module:Class`` whose class is a ``TrainerCallback``, its options passed as keyword arguments. Checked when the
recipe is validated (names, options, and AdaLRS refused where the loss is not a convergence signal); built when the
trainer is, ahead of verirl's own metrics callback so that what a callback adds to the logs reaches ``metrics.jsonl``.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from verirl.errors import RecipeError, VerirlError
from verirl.rl.trainer import Section
from verirl.typecheck import build_dataclass

BUILTIN = ("adalrs",)


@dataclass(frozen=True)
class CallbacksSpec:
    """The callbacks (a plain list is ``{use: [...]}``)."""

    use: list[Any] = field(
        default_factory=list,
        metadata={"help": "each adalrs (learning-rate search) or module:Class (a TrainerCallback), a name or "
                          "{name: ..., options}"},
    )  # fmt: skip


def _entries(spec: CallbacksSpec, file: str) -> list[tuple[str, dict[str, Any]]]:
    entries = []
    for i, entry in enumerate(spec.use):
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise RecipeError(file, f"callbacks.{i}", "expected a callback name or {name: ..., options}")
        entries.append((entry["name"], {k: v for k, v in entry.items() if k != "name"}))
    return entries


def _callback_class(name: str) -> type:
    from transformers import TrainerCallback

    module_name, _, attr = name.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise VerirlError(f"cannot import {name} ({exc.__class__.__name__}: {exc})") from None
    if not (inspect.isclass(cls) and issubclass(cls, TrainerCallback)):
        raise VerirlError(f"{name} is not a transformers TrainerCallback class")
    return cls


def check_callbacks(
    spec: CallbacksSpec, given: Mapping[str, Any], file: str, *, trainer: str, loss_is_signal: bool
) -> CallbacksSpec:
    from verirl.rl.adalrs import AdaLRSConfig

    for i, (name, options) in enumerate(_entries(spec, file)):
        where = f"callbacks.{i}"
        if name == "adalrs":
            if not loss_is_signal:
                raise RecipeError(
                    file, f"{where}.name", f"adalrs reads the training loss, and {trainer}'s loss is no convergence "
                    "signal (arXiv 2506.13274): use it on sft, dpo or reward_model stages",
                )  # fmt: skip
            config = build_dataclass(AdaLRSConfig, options, file, f"{where}.")
            if not config.start < config.end:
                raise RecipeError(file, f"{where}.start", f"expected less than end ({config.end}), got {config.start}")
        elif ":" in name:
            try:
                inspect.signature(_callback_class(name)).bind(**options)
            except VerirlError as exc:
                raise RecipeError(file, f"{where}.name", str(exc)) from None
            except TypeError as exc:
                raise RecipeError(file, where, f"options do not fit {name} ({exc})") from None
        else:
            raise RecipeError(file, f"{where}.name", f"expected one of: {', '.join(BUILTIN)}, or module:Class; "
                              f"got {name!r}")  # fmt: skip
    return spec


def build_callbacks(spec: CallbacksSpec) -> list[Any]:
    from verirl.rl.adalrs import AdaLRS, AdaLRSConfig

    built = []
    for name, options in _entries(spec, "<recipe>"):
        if name == "adalrs":
            built.append(AdaLRS(AdaLRSConfig(**options)))
        else:
            built.append(_callback_class(name)(**options))
    return built


def callbacks_line(spec: CallbacksSpec) -> str:
    names = [name for name, _ in _entries(spec, "<recipe>")]
    return ", ".join(names) if names else "none"


def callbacks_section(trainer: str, loss_is_signal: bool = True) -> Section:
    """The section for a trainer; ``loss_is_signal=False`` (an RL policy loss) refuses AdaLRS."""
    return Section(
        "callbacks",
        CallbacksSpec,
        shorthand="use",
        check=functools.partial(check_callbacks, trainer=trainer, loss_is_signal=loss_is_signal),
        plan=callbacks_line,
        example="[adalrs]",
    )
