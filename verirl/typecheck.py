"""Check and coerce YAML values against dataclass field annotations, with one-line errors.

YAML is loose in ways that bite recipe authors: ``1e-5`` is a *string* in YAML 1.1 (PyYAML), and a trl config
accepts a string where it wants a float and fails much later. Every recipe section, including the trl config's
own fields, goes through :func:`coerce`, so such values are converted (``"1e-5"`` -> ``1e-05``) or rejected with
the key and the expected type, before anything is loaded.

Numbers must be finite (``.nan``, ``.inf``, ``"nan"`` and ``1e999`` are rejected), and a field declared with
:func:`setting` carries its range (``ge``/``gt``/``le``/``lt``, ``sentinels``) and ``choices`` in its metadata, next
to TRL's ``metadata={"help": ...}``; :func:`build_dataclass` checks them (:func:`check_bounds`) and builds nested
dataclass fields from nested mappings.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import math
import operator
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Union

from verirl.errors import RecipeError


class _Mismatch(Exception):
    pass


class _NonFinite(_Mismatch):
    """A number was expected and the value is nan or +-inf (``.nan``, ``.inf``, ``"nan"``, ``1e999``)."""

    def __init__(self, value: float | int):
        super().__init__(value)
        self.value = value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise _NonFinite(value)
    return value


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
        exact = not (isinstance(value, float) and not math.isfinite(value))
        for option in options:
            if exact and option is not type(None) and isinstance(option, type) and type(value) is option:
                return value
        non_finite = None
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option)
            except _NonFinite as exc:
                non_finite = exc
            except _Mismatch:
                continue
        if non_finite is not None:
            raise non_finite
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
        if isinstance(value, float):
            if value.is_integer():
                return int(value)
            _finite(value)  # "expected a finite number, got nan" rather than "expected int"
            raise _Mismatch
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
            try:
                _finite(float(value.strip()))
            except ValueError:
                pass
            raise _Mismatch
        raise _Mismatch
    if annotation is float:
        if isinstance(value, bool):
            raise _Mismatch
        if isinstance(value, int):
            try:
                float(value)
            except OverflowError:  # 10**400: no float can hold it
                raise _NonFinite(value) from None
            return value  # an int is a valid float; keep 5 as 5 in resolved recipes
        if isinstance(value, float):
            return _finite(value)
        if isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise _Mismatch from None
            return _finite(number)
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
    except _NonFinite as exc:
        raise RecipeError(file, key, f"expected a finite number, got {show(exc.value)}") from None
    except _Mismatch:
        shown = show(value) if not isinstance(value, dict | list) else type(value).__name__
        raise RecipeError(file, key, f"expected {describe(annotation)}, got {shown}") from None


_SHOWN_CHARS = 80


def show(value: Any) -> str:
    """``repr(value)`` for an error message: one line, at most ~80 characters."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - e.g. an int too long for repr(): describe it instead
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def key_text(key: Any) -> str:
    """A key as it appears in a dotted error path: itself when it is a short printable string, else its repr."""
    if isinstance(key, str) and key.isprintable() and 0 < len(key) <= _SHOWN_CHARS:
        return key
    return show(key)


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
            raise RecipeError(file, f"{prefix}{key_text(key)}", f"unknown key{hint}")


# ------------------------------------------------------------------------------------------- declared ranges

MISSING: Any = dataclasses.MISSING
_BOUND_KEYS = ("ge", "gt", "le", "lt")
_BOUND_TEXT = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_BOUND_OPS = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}


def setting(
    default: Any = MISSING,
    *,
    help: str,
    default_factory: Any = MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: typing.Iterable[Any] | None = None,
    sentinels: typing.Iterable[Any] | None = None,
) -> Any:
    """A dataclass field with its help text and range, in TRL's ``metadata={"help": ...}`` convention.

    ``ge``/``gt``/``le``/``lt`` bound a number (``>=``, ``>``, ``<=``, ``<``), ``choices`` enumerates the allowed
    values, ``sentinels`` lists special values allowed outside the bounds (``max_steps: -1`` = "use epochs").
    Only what is given goes into the metadata; :func:`check_bounds` reads it back.
    """
    metadata: dict[str, Any] = {"help": help}
    for name, bound in (("ge", ge), ("gt", gt), ("le", le), ("lt", lt)):
        if bound is not None:
            metadata[name] = bound
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if sentinels is not None:
        metadata["sentinels"] = tuple(sentinels)
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    """Equality that does not confuse True with 1 or "1" with 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def check_bounds(value: Any, metadata: Mapping[str, Any], file: str | None, key: str) -> None:
    """Raise a one-line RecipeError when ``value`` is outside the range or choices declared in ``metadata``.

    ``metadata`` is a field's metadata (see :func:`setting`): ``ge``/``gt``/``le``/``lt``, ``choices``,
    ``sentinels``. ``None`` always passes (nullability is the annotation's business), so do listed sentinels. A list
    value is checked item by item (``key.0``, ``key.1``, ...). Numeric bounds apply to numbers only, and a bounded
    number must be finite.
    """
    if value is None or not metadata:
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_bounds(item, metadata, file, f"{key}.{i}")
        return
    sentinels = metadata.get("sentinels") or ()
    if any(_same(value, s) for s in sentinels):
        return
    choices = metadata.get("choices")
    if choices is not None:
        choices = list(choices)
        if not any(_same(value, c) for c in choices):
            raise RecipeError(file, key, f"expected one of: {', '.join(map(str, choices))}, got {show(value)}")
    bounds = [(name, metadata[name]) for name in _BOUND_KEYS if metadata.get(name) is not None]
    if not bounds or not _is_number(value):
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise RecipeError(file, key, f"expected a finite number, got {show(value)}")
    extra = f" (or {', '.join(map(show, sentinels))})" if sentinels else ""
    for name, bound in bounds:
        if not _BOUND_OPS[name](value, bound):
            raise RecipeError(file, key, f"expected {_bound_phrase(name, bound, value)}{extra}, got {show(value)}")


def _bound_phrase(name: str, bound: Any, value: Any) -> str:
    """The common ranges in words ("a positive integer"), the others as a comparison (">= 2")."""
    if name == "ge" and bound == 1 and isinstance(value, int):
        return "a positive integer"
    if name == "gt" and bound == 0:
        return "a positive number"
    if name == "ge" and bound == 0:
        return "a non-negative number"
    return f"{_BOUND_TEXT[name]} {show(bound)}"


def field_help(cls: type) -> dict[str, str]:
    """Every init field of dataclass ``cls`` -> its help text ("" when it has none), for docs and ``--dry-run``.

    Fields that are themselves dataclasses also list their own fields as ``name.sub``.
    """
    return _field_help(cls, (cls,))


def _field_help(cls: type, seen: tuple[type, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        out[f.name] = str(f.metadata.get("help", "") or "")
        nested = _nested_dataclass(hints.get(f.name))
        if nested is not None and nested not in seen:  # a dataclass that contains itself is listed once
            out.update({f"{f.name}.{k}": v for k, v in _field_help(nested, (*seen, nested)).items()})
    return out


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable forward references: fall back to the raw annotations
        return {f.name: f.type for f in dataclasses.fields(cls)}


def _nested_dataclass(annotation: Any) -> type | None:
    """The dataclass type of a field annotated ``SomeDataclass`` or ``SomeDataclass | None``, else None."""
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return annotation
    if typing.get_origin(annotation) in (Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(options) == 1 and isinstance(options[0], type) and dataclasses.is_dataclass(options[0]):
            return options[0]
    return None


def build_dataclass(cls: type, data: Any, file: str | None, prefix: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping: unknown keys, missing required keys, wrong types and values
    outside a field's declared range (:func:`setting`, :func:`check_bounds`) are errors.

    A field annotated with a dataclass type (or ``SomeDataclass | None``) is built recursively from a nested mapping,
    its keys named ``{prefix}{field}.{key}``. What ``cls.__post_init__`` raises (ValueError, TypeError, arithmetic
    errors) becomes a one-line error naming the field its message mentions.
    """
    if not isinstance(data, dict):
        raise RecipeError(file, prefix.rstrip(".") or None, f"expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    check_keys(data, fields, file, prefix)
    hints = typing.get_type_hints(cls)
    values = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        if name in data:
            nested = _nested_dataclass(hints[name])
            value = data[name]
            if nested is not None and not isinstance(value, nested):
                if value is None and hints[name] is not nested:
                    values[name] = None
                elif isinstance(value, dict):
                    values[name] = build_dataclass(nested, value, file, f"{key}.")
                else:
                    shown = "null" if value is None else type(value).__name__
                    raise RecipeError(file, key, f"expected a mapping of {nested.__name__} fields, got {shown}")
                continue
            values[name] = coerce(value, hints[name], file, key)
            check_bounds(values[name], f.metadata, file, key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(file, key, "required key is missing")
    try:
        return cls(**values)
    except (ValueError, TypeError, ArithmeticError) as exc:
        text = str(exc).strip()
        message = text.splitlines()[0] if text else type(exc).__name__
        named = [n for n in values if re.search(rf"\b{re.escape(n)}\b", message)]
        raise RecipeError(file, f"{prefix}{named[0]}" if named else prefix.rstrip(".") or None, message) from None
