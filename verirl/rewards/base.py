"""Reward protocol, registry and resolution.

A verirl reward is a plain TRL reward function::

    def my_reward(prompts, completions, **kwargs) -> list[float | None]

so it runs unchanged in ``trl grpo``, and any TRL reward runs in verirl. ``None`` means "not applicable to this
sample". TRL passes every dataset column (e.g. ``answer``), ``completion_ids``, ``trainer_state``, ``log_extra`` and
``log_metric`` as keyword arguments: a reward must accept ``**kwargs``.

A reward name in a recipe resolves, in this order, to:

1. a reward registered with ``@reward("name")`` (verirl's built-ins live in :mod:`verirl.rewards.builtin`);
2. an entry point ``name`` in the group ``verirl.rewards`` of an installed package
   (``[project.entry-points."verirl.rewards"] name = "pkg.module:function"``);
3. a dotted path ``pkg.module:function`` (or ``pkg.module:Class``, instantiated with the recipe's ``args``).

This module is light (no torch) so that ``verirl rewards list`` and recipe validation stay fast.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from verirl.answers import completion_text
from verirl.errors import RewardError, VerirlError, first_line
from verirl.plugins import import_dotted as _import_dotted
from verirl.rewards.arg_types import arg_problem

__all__ = ["completion_text", "find_reward", "import_dotted", "resolve_reward", "reward", "required_columns"]

RewardFn = Callable[..., list]

ENTRY_POINT_GROUP = "verirl.rewards"
CHECK_ARGS_ATTR = "verirl_check_args"  # a function reward's load-time argument check (set by @reward(check_args=))

_REGISTRY: dict[str, RewardFn] = {}
_BUILTINS_LOADED = False


def reward(
    name: str | None = None, *, check_args: Callable[..., None] | None = None
) -> Callable[[RewardFn], RewardFn]:
    """Register a reward function (or a reward class) under ``name`` (default: the function's own name).

    ``check_args``, for a function reward, is called with the recipe's ``args`` when the recipe is loaded and raises
    ``ValueError`` on a bad value, so the mistake is reported before training (a class checks in its constructor).
    Type hints are checked without it (:mod:`verirl.rewards.arg_types`).

    >>> @reward("brevity")
    ... def brevity(prompts, completions, **kwargs):
    ...     return [1.0 / (1 + len(str(c))) for c in completions]
    """

    def decorator(fn: RewardFn) -> RewardFn:
        key = name or getattr(fn, "__name__", None)
        if not key:
            raise ValueError("@reward needs a name for a callable without __name__")
        if key in _REGISTRY and _REGISTRY[key] is not fn:
            raise ValueError(f"reward {key!r} is already registered by {origin_of(_REGISTRY[key])}")
        if check_args is not None:
            setattr(fn, CHECK_ARGS_ATTR, check_args)
        _REGISTRY[key] = fn
        return fn

    return decorator


@dataclass(frozen=True)
class PluginInfo:
    """Where a reward (or a verifier) comes from, for ``verirl rewards list`` / ``verirl verifiers list``."""

    name: str
    kind: str  # "builtin" | "registered" | "plugin"
    origin: str  # "module:attr" (and the distribution for plug-ins)
    summary: str = ""


RewardInfo = PluginInfo


def origin_of(obj: Any) -> str:
    """``module:qualname`` of a function or class (how errors and listings name where a plug-in lives)."""
    module = getattr(obj, "__module__", "?")
    qualname = getattr(obj, "__qualname__", type(obj).__name__)
    return f"{module}:{qualname}"


def summary_of(obj: Any) -> str:
    """The first line of ``obj``'s docstring ("" without one)."""
    doc = (inspect.getdoc(obj) or "").strip()
    return doc.splitlines()[0] if doc else ""


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        importlib.import_module("verirl.rewards.builtin")
        _BUILTINS_LOADED = True


def _plugin_entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_rewards() -> list[RewardInfo]:
    """Built-ins, rewards registered by imported code, and installed plug-ins (entry points are not imported)."""
    _load_builtins()
    infos = []
    for name, fn in sorted(_REGISTRY.items()):
        kind = "builtin" if getattr(fn, "__module__", "").startswith("verirl.") else "registered"
        infos.append(RewardInfo(name, kind, origin_of(fn), summary_of(fn)))
    for name, ep in sorted(_plugin_entry_points().items()):
        if name in _REGISTRY:
            continue
        dist = getattr(ep, "dist", None)
        where = f"{ep.value} ({dist.name} {dist.version})" if dist is not None else ep.value
        infos.append(RewardInfo(name, "plugin", where))
    return infos


def import_dotted(path: str, what: str = "reward") -> Any:
    """Import ``package.module:attr``; errors are :class:`RewardError` naming ``what`` was being resolved."""
    return _import_dotted(path, what, RewardError)


def find_reward(name: str) -> Any:
    """The registered object (function or class) behind ``name``, without binding arguments."""
    _load_builtins()
    if name in _REGISTRY:
        return _REGISTRY[name]
    plugins = _plugin_entry_points()
    if name in plugins:
        try:
            return plugins[name].load()
        except Exception as exc:  # a broken plug-in must name itself
            value = plugins[name].value
            raise RewardError(f"reward {name!r}: plug-in entry point {value!r} failed to load ({exc})") from None
    if ":" in name:
        return import_dotted(name)
    known = sorted(set(_REGISTRY) | set(plugins))
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
    raise RewardError(f"unknown reward {name!r} (not built in, not a plug-in, not 'module:function'){hint}")


def check_signature(fn: Callable, name: str) -> None:
    """A reward must be callable with keyword arguments and accept ``**kwargs`` (TRL passes extra columns)."""
    if not callable(fn):
        raise RewardError(f"reward {name!r}: {origin_of(fn)} is not callable")
    target = fn.func if isinstance(fn, functools.partial) else fn
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return  # builtins / C callables: nothing to check
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        raise RewardError(
            f"reward {name!r}: {origin_of(target)} must accept **kwargs "
            "(TRL passes dataset columns, completion_ids, trainer_state, log_metric)"
        )


def resolve_reward(name: str, args: dict[str, Any] | None = None) -> RewardFn:
    """Resolve ``name`` to a callable reward; ``args`` are bound as keyword arguments (a class is instantiated)."""
    obj = find_reward(name)
    args = dict(args or {})
    if inspect.isclass(obj):
        try:
            fn = obj(**args)
        except TypeError as exc:
            raise RewardError(f"reward {name!r}: bad args for {origin_of(obj)}: {exc}") from exc
    elif args:
        target_sig = _safe_signature(obj)
        if target_sig is not None:
            unknown = [k for k in args if k not in target_sig.parameters]
            if unknown:
                params = [p for p in target_sig.parameters if p not in ("prompts", "completions", "kwargs")]
                raise RewardError(f"reward {name!r}: unknown args {unknown} (it takes: {', '.join(params) or 'none'})")
        _check_arg_values(obj, args, name)
        fn = functools.partial(obj, **args)
    else:
        fn = obj
    check_signature(fn, name)
    return fn


def _check_arg_values(fn: Callable[..., Any], args: dict[str, Any], name: str) -> None:
    """A function reward's args against its type hints, then its own ``check_args``: one RewardError naming the arg."""
    problem = arg_problem(fn, args)
    if problem:
        raise RewardError(f"reward {name!r}: {problem}")
    check = getattr(fn, CHECK_ARGS_ATTR, None)
    if callable(check):
        try:
            check(**args)
        except (ValueError, TypeError, VerirlError) as exc:
            raise RewardError(f"reward {name!r}: {first_line(exc)}") from None


def _safe_signature(obj: Any) -> inspect.Signature | None:
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        return None


def required_columns(fn: Callable) -> tuple[str, ...]:
    """Dataset columns a reward needs: keyword parameters without defaults beyond TRL's own arguments."""
    target = fn.func if isinstance(fn, functools.partial) else fn
    bound = set(fn.keywords) if isinstance(fn, functools.partial) else set()
    sig = _safe_signature(target if not inspect.isclass(target) else target.__call__)
    if sig is None:
        return ()
    trl_args = {"self", "prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric"}
    return tuple(
        p.name
        for p in sig.parameters.values()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        and p.default is inspect.Parameter.empty
        and p.name not in trl_args
        and p.name not in bound
    )


def target_texts(kwargs: dict[str, Any], column: str, reward_name: str) -> list[str]:
    """The target text of each sample from a dataset column (image rewards); KeyError naming the column if absent."""
    if column not in kwargs:
        raise KeyError(
            f"{reward_name}: the dataset has no column {column!r} with the target text "
            f"(set the reward's text_column; columns: {', '.join(sorted(kwargs)) or 'none'})"
        )
    return [str(t) for t in kwargs[column]]
