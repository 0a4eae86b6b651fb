"""Check a function reward's recipe ``args`` against its type hints when the recipe is loaded.

A class reward checks its arguments in its constructor, which verirl calls at load time; a function reward is only
called during training, so a wrong value (``mode: 2``, ``metric: acc``) would surface at the first step. This
reads the function's annotations and rejects values that cannot match them: ``Literal[...]`` members, ``bool``,
``int``, ``float`` (an int is a float; a bool is neither), ``str``, ``None`` and unions of these, and the container
kind of ``list[...]``/``dict[...]``. Anything else (a plug-in's own classes, ``Any``) is not judged. Range checks
that types cannot say go in the function's ``check_args`` (``@reward(name, check_args=...)``).

pydantic's ``validate_call`` does this and more, but it wraps the function (changing what TRL calls) and would
convert values silently; here we only want to name the bad field, once, before training starts.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable
from typing import Any

__all__ = ["arg_problem"]


def arg_problem(fn: Callable[..., Any], args: dict[str, Any]) -> str | None:
    """``"args.<key>: expected <type>, got <value>"`` for the first arg that cannot match its hint, else None."""
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations (a plug-in's forward refs): judge nothing
        return None
    for key, value in args.items():
        hint = hints.get(key)
        if hint is not None and _judged(hint) and not _matches(value, hint):
            return f"args.{key}: expected {_describe(hint)}, got {value!r}"
    return None


_SCALARS: dict[Any, Callable[[Any], bool]] = {
    bool: lambda v: isinstance(v, bool),
    int: lambda v: isinstance(v, int) and not isinstance(v, bool),
    float: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    str: lambda v: isinstance(v, str),
    type(None): lambda v: v is None,
}
_CONTAINERS = (list, tuple, dict, set)


def _parts(hint: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(hint)
    return typing.get_args(hint) if origin in (typing.Union, types.UnionType) else None


def _judged(hint: Any) -> bool:
    """Only hints made entirely of kinds we know are judged (``str | MyClass`` is left alone)."""
    parts = _parts(hint)
    if parts is not None:
        return all(_judged(p) for p in parts)
    origin = typing.get_origin(hint)
    return hint in _SCALARS or origin is typing.Literal or (origin or hint) in _CONTAINERS


def _matches(value: Any, hint: Any) -> bool:
    parts = _parts(hint)
    if parts is not None:
        return any(_matches(value, p) for p in parts)
    origin = typing.get_origin(hint)
    if origin is typing.Literal:
        return any(value == member and type(value) is type(member) for member in typing.get_args(hint))
    if hint in _SCALARS:
        return _SCALARS[hint](value)
    kind = origin or hint
    if kind in (list, tuple):  # YAML has no tuples: a list stands for either
        return isinstance(value, list | tuple)
    return isinstance(value, kind)


def _describe(hint: Any) -> str:
    parts = _parts(hint)
    if parts is not None:
        return " or ".join(_describe(p) for p in parts)
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(repr(m) for m in typing.get_args(hint))
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string", type(None): "null"}
    if hint in names:
        return names[hint]
    return f"a {getattr(typing.get_origin(hint) or hint, '__name__', str(hint))}"
