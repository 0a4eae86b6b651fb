"""A trainer's ``args:``: the fields of its config class (TRL's ``GRPOConfig``/``DPOConfig`` or verirl's own),
checked before anything is loaded.

The config class is the single source of truth for names, types and defaults; verirl adds type coercion (``1e-5``
is a string in YAML 1.1), unknown-key suggestions, ranges (the class's ``setting()`` metadata, or the trainer's
``arg_bounds`` for TRL's classes, which declare none), enumerated choices that TRL checks late (read from its field
help), and whatever the class's own ``__post_init__`` raises, as one line naming the field.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import typing
from typing import Any

from verirl.errors import RecipeError, first_line
from verirl.rl.trainer import Trainer
from verirl.typecheck import check_bounds, check_keys, coerce


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable forward references: skip type checks, keep key checks
        return {}


def build_args(
    trainer: Trainer, raw: Any, recipe: Any, output_dir: str, file: str, num_processes: int = 1
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(values, derived)``: the recipe's checked ``args`` and what the trainer derives from the other sections."""
    cls = trainer.config()
    if not isinstance(raw, dict):
        raise RecipeError(file, "args", f"expected a mapping of {cls.__name__} fields")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    check_keys(raw, fields, file, "args.")
    if "output_dir" in raw and "output_dir" in fields:
        raise RecipeError(file, "args.output_dir", "set output_dir at the top level of the recipe")
    hints = _hints(cls)
    values = {}
    for key, value in raw.items():
        values[key] = coerce(value, hints.get(key, Any), file, f"args.{key}")
        check_bounds(values[key], {**fields[key].metadata, **trainer.arg_bounds.get(key, {})}, file, f"args.{key}")
    check_choices(cls, values, file)
    derived = trainer.derive_args(recipe, values, num_processes, file) if trainer.derive_args else {}
    checked = {**values, **derived}
    if "per_device_train_batch_size" in fields:  # TRL's configs: check batch sizes as for the launch's processes
        checked = as_one_process(checked, num_processes)
    build_config(trainer, checked, output_dir, file)
    return values, derived


def build_config(trainer: Trainer, values: dict[str, Any], output_dir: str, file: str = "<recipe>") -> Any:
    """The trainer's config object; whatever its class raises is a one-line recipe error naming the field."""
    cls = trainer.config()
    try:
        if trainer.make_config is not None:
            return trainer.make_config(cls, dict(values), output_dir)
        return cls(output_dir=output_dir, **values)
    except Exception as exc:  # noqa: BLE001 - TRL/transformers raise ValueError, TypeError, ZeroDivisionError ...
        message = first_line(exc)
        field_name, sep, rest = message.partition(": ")
        if sep and field_name in values:  # our own checks: "field: what"
            raise RecipeError(file, f"args.{field_name}", rest) from None
        named = [k for k in values if re.search(rf"\b{re.escape(k)}\b", message)]
        raise RecipeError(file, f"args.{named[0]}" if named else "args", message) from None


def as_one_process(values: dict[str, Any], num_processes: int) -> dict[str, Any]:
    """Config values that make TRL's world-size-1 checks equal to the checks for ``num_processes``."""
    if num_processes > 1 and "per_device_train_batch_size" in values:
        return {**values, "per_device_train_batch_size": values["per_device_train_batch_size"] * num_processes}
    if num_processes > 1:
        return {**values, "per_device_train_batch_size": 8 * num_processes}
    return values


_SUPPORTED = re.compile(r"(?:Supported values are|Must be one of) ([^.]*)")


def check_choices(cls: type, values: dict[str, Any], file: str) -> None:
    """Enumerated string fields: TRL declares some as argparse ``choices``, others only in their help text
    ("Supported values are 'grpo', 'dapo', ..."), and checks the latter only at the first training step."""
    for f in dataclasses.fields(cls):
        value = values.get(f.name)
        if not isinstance(value, str):
            continue
        choices = f.metadata.get("choices")
        if choices is None:
            found = _SUPPORTED.search(f.metadata.get("help", "") or "")
            choices = re.findall(r"'([^']+)'", found.group(1)) if found else None
        if choices and value not in list(choices):
            raise RecipeError(
                file, f"args.{f.name}", f"expected one of: {', '.join(map(str, choices))}; got {value!r}"
            )


def default_of(cls: type, name: str) -> Any:
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def cpu_only(values: dict[str, Any]) -> dict[str, Any]:
    """No GPU: ``use_cpu`` (TRL configs refuse bf16 otherwise; bf16 autocast works on a CPU), and float32 in place of
    a requested ``bf16`` where this CPU has no native bfloat16 (autocast is emulated there, ~100x slower:
    :mod:`verirl.devices`). Shown as "set by verirl" in ``--dry-run`` and logged at the start of the run."""
    import torch

    from verirl.devices import cpu_has_native_bf16

    if torch.cuda.is_available():
        return {}
    derived: dict[str, Any] = {"use_cpu": True}
    requested = values.get("bf16")
    unset = requested is None  # TRL's configs turn bf16 on when it is not set (unless fp16 is)
    if (requested or (unset and not values.get("fp16"))) and not cpu_has_native_bf16():
        derived["bf16"] = False
        _warn_fp32(unset)
    return derived


@functools.lru_cache(maxsize=2)
def _warn_fp32(unset: bool) -> None:  # once per process (a recipe is validated more than once)
    asked = "TRL's default turns it on" if unset else "asked for"
    logging.getLogger("verirl").warning(
        f"args.bf16: {asked}, but this CPU has no native bfloat16 (emulated autocast is ~100x slower): float32 "
        "instead (VERIRL_CPU_BF16=1 forces bf16)"
    )


def build_trainer_config(
    trainer: str | Trainer, values: dict[str, Any], output_dir: str, file: str = "<recipe>"
) -> Any:
    """:func:`build_config` for a trainer given by name (scripts and tests)."""
    if isinstance(trainer, str):
        from verirl.rl.registry import get_trainer

        trainer = get_trainer(trainer)
    return build_config(trainer, values, output_dir, file)
