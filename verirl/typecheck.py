"""Check and coerce YAML values against dataclass field annotations, with one-line errors.

YAML is loose in ways that bite recipe authors: ``1e-5`` is a *string* in YAML 1.1 (PyYAML), and a trl config
accepts a string where it wants a float and fails much later. Every recipe section, including the trl config's
own fields, goes through :func:`coerce`, so such values are converted (``"1e-5"`` -> ``1e-05``) or rejected with
the key and the expected type, before anything is loaded.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import types
import typing
from typing import Any, Literal, Union

from verirl.errors import RecipeError


class _Mismatch(Exception):
    pass


def describe(annotation: Any) -> str:
    """A short human name for a type annotation ("float", "int or null", "one of: a, b")."""
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return "any value"
    if origin is Literal:
        return "one of: " + ", ".join(str(a) for a in typing.get_args(annotation))
    if origin in (Union, types.UnionType):
        parts = [describe(a) for a in typing.get_args(annotation) if a is not type(None)]
        nullable = type(None) in typing.get_args(annotation)
        return " or ".join(parts) + (" or null" if nullable else "")
    if origin in (list, tuple, typing.Sequence):
        args = typing.get_args(annotation)
        return f"a list of {describe(args[0])}" if args else "a list"
    if origin is dict or annotation is dict:
        return "a mapping"
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return "one of: " + ", ".join(str(m.value) for m in annotation)
    return getattr(annotation, "__name__", str(annotation))


def _coerce(value: Any, annotation: Any) -> Any:
    if annotation is Any or annotation is typing.Any:
        return value
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None:
            if type(None) in options:
                return None
            raise _Mismatch
        # "SomeEnum | str" (transformers' style) means the enum or one of its string values.
        enums = [o for o in options if isinstance(o, type) and issubclass(o, enum.Enum)]
        if enums and isinstance(value, str):
            return _coerce(value, enums[0])
        # Exact type matches first, so that "str | list[str]" keeps a string a string.
        for option in options:
            if option is not type(None) and isinstance(option, type) and type(value) is option:
                return value
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option)
            except _Mismatch:
                continue
        raise _Mismatch
    if origin is Literal:
        if value in typing.get_args(annotation):
            return value
        raise _Mismatch
    if origin in (list, tuple, typing.Sequence) or annotation in (list, tuple):
        if not isinstance(value, list | tuple):
            raise _Mismatch
        args = typing.get_args(annotation)
        item = args[0] if args else Any
        return [_coerce(v, item) for v in value]
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise _Mismatch
        return value
    if value is None:
        raise _Mismatch
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise _Mismatch
    if annotation is int:
        if isinstance(value, bool):
            raise _Mismatch
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if annotation is float:
        if isinstance(value, bool):
            raise _Mismatch
        if isinstance(value, int):
            return value  # an int is a valid float; keep 5 as 5 in resolved recipes
        if isinstance(value, float):
            return value
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                raise _Mismatch from None
        raise _Mismatch
    if annotation is str:
        if isinstance(value, str):
            return value
        raise _Mismatch
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        if isinstance(value, annotation):
            return value
        values = {str(m.value): m for m in annotation}
        if str(value) in values:
            return values[str(value)].value
        raise _Mismatch
    return value  # a type we do not model: leave it to the consumer


def coerce(value: Any, annotation: Any, file: str | None, key: str) -> Any:
    """Coerce ``value`` to ``annotation`` or raise a one-line RecipeError naming ``file`` and ``key``."""
    try:
        return _coerce(value, annotation)
    except _Mismatch:
        shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
        raise RecipeError(file, key, f"expected {describe(annotation)}, got {shown}") from None


def check_keys(data: dict, allowed: typing.Iterable[str], file: str | None, prefix: str) -> None:
    """Unknown keys are errors, with a did-you-mean suggestion."""
    allowed = list(allowed)
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            if close:
                hint = f"; did you mean {close[0]!r}?"
            elif len(allowed) <= 16:
                hint = f"; expected one of: {', '.join(sorted(allowed))}"
            else:
                hint = f"; expected one of {len(allowed)} known keys (e.g. {', '.join(sorted(allowed)[:8])}, ...)"
            raise RecipeError(file, f"{prefix}{key}", f"unknown key{hint}")


def build_dataclass(cls: type, data: Any, file: str | None, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping: unknown keys, missing required keys and wrong types are errors."""
    if not isinstance(data, dict):
        raise RecipeError(file, prefix.rstrip(".") or None, f"expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    check_keys(data, fields, file, prefix)
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        if name in data:
            values[name] = coerce(data[name], hints[name], file, f"{prefix}{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(file, f"{prefix}{name}", "required key is missing")
    return cls(**values)
