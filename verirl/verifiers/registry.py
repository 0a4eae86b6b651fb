"""Verifier plug-ins: registry, resolution, built-ins, and the uncertainty convention of verdicts.

A verifier is any object with ``verify(prompt, completion, **ctx) -> Verdict`` (:mod:`verirl.verifiers.base`).
What is registered is a *factory*: a class, or a function, that called with the recipe's keyword ``args`` returns
such an object. A verifier name resolves, in this order, to:

1. a factory registered with ``@verifier("name")`` (verirl's built-ins are in this module);
2. an entry point ``name`` in the group ``verirl.verifiers`` of an installed package
   (``[project.entry-points."verirl.verifiers"] name = "pkg.module:Class"``; ``verirl verifiers new`` scaffolds one);
3. ``reward:REWARD``: any verirl reward (built in, plug-in or ``module:function``) as a verifier, the ``args``
   bound to the reward (:func:`from_reward`); this prefix is read first, and registered names may not contain ':';
4. a dotted path ``pkg.module:attr``: a factory, or an object that already has ``verify`` (then no ``args``).

Every failure (unknown name, a plug-in that does not import, bad ``args``, a factory whose product has no callable
``verify``) is one :class:`VerifierError` line naming the verifier.

Built-ins:

* ``exact_answer``: the answer extracted from the completion (``extractor``, default ``last_number``; see
  :mod:`verirl.answers`) equals the row's ``answer`` column; score 1.0 / 0.0, ``None`` without an ``answer``.
* ``reward:NAME``: score = the reward's value for this one sample (``details["reward"]``), uncertainty 0. The reward
  is called with one sample at a time, so group-aware rewards (``majority_vote``) are meaningless here, and rewards
  whose values are not in [0, 1] (``length_penalty``) are not verifiers in the mixture sense (``verirl verifiers
  check`` says so).

Uncertainty. Mixtures (:mod:`verirl.verifiers.mixture`) weigh members by how sure they are of each verdict; a
verdict states it in its ``details``, read by :func:`verdict_uncertainty`, first match wins:

1. ``details["uncertainty"]``: a number in [0, 1] (0: certain);
2. ``details["confidence"]``: a number in [0, 1]; uncertainty = 1 - confidence (an LLM judge's confidence);
3. ``details["probs"]``: a class distribution (a sequence, or a mapping label -> probability); uncertainty = its
   normalised entropy H(p) / log K, in [0, 1] (a classifier or reward model's output);
4. none of these: 0 (a deterministic check).

Values out of range are clamped to [0, 1]; NaN, or a value that is not a number, counts as 1 (unknown = unsure).
"""

from __future__ import annotations

import difflib
import inspect
import math
import numbers
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

from verirl.answers import canonical, extract_all, get_extractor
from verirl.errors import VerirlError, first_line
from verirl.plugins import import_dotted
from verirl.rewards.base import PluginInfo, origin_of, summary_of
from verirl.verifiers.base import Verdict, Verifier

__all__ = [
    "ENTRY_POINT_GROUP",
    "REWARD_PREFIX",
    "ExactAnswer",
    "RewardVerifier",
    "UnknownVerifierError",
    "VerifierError",
    "VerifierInfo",
    "available_verifiers",
    "find_verifier",
    "from_reward",
    "resolve_verifier",
    "uncertainty_problem",
    "verdict_uncertainty",
    "verifier",
]

VerifierFactory = Callable[..., Any]

ENTRY_POINT_GROUP = "verirl.verifiers"
REWARD_PREFIX = "reward:"

_REGISTRY: dict[str, VerifierFactory] = {}


class VerifierError(VerirlError):
    """A verifier that cannot be resolved, built, or has no ``verify``."""


class UnknownVerifierError(VerifierError):
    """No verifier has this name (mixtures then try it as a reward)."""


def verifier(name: str | None = None) -> Callable[[VerifierFactory], VerifierFactory]:
    """Register a verifier factory (a class, or a function returning an object with ``verify``) under ``name``
    (default: its own ``__name__``). Names may not contain ':' (kept for ``reward:NAME`` and dotted paths).

    >>> @verifier("non_empty")
    ... class NonEmpty:
    ...     def verify(self, prompt, completion, **ctx):
    ...         return Verdict(float(bool(str(completion).strip())))
    """

    def decorator(factory: VerifierFactory) -> VerifierFactory:
        key = name or getattr(factory, "__name__", None)
        if not key:
            raise ValueError("@verifier needs a name for a factory without __name__")
        if ":" in key:
            raise ValueError(f"@verifier: name {key!r} may not contain ':'")
        if not callable(factory):
            raise ValueError(f"@verifier({key!r}): expected a class or a function, got {type(factory).__name__}")
        if key in _REGISTRY and _REGISTRY[key] is not factory:
            raise ValueError(f"verifier {key!r} is already registered by {origin_of(_REGISTRY[key])}")
        _REGISTRY[key] = factory
        return factory

    return decorator


VerifierInfo = PluginInfo


def _plugin_entry_points() -> dict[str, Any]:
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_verifiers() -> list[VerifierInfo]:
    """Built-ins, verifiers registered by imported code, the ``reward:NAME`` adapter and installed plug-ins
    (entry points are listed, not imported)."""
    infos = []
    for name, factory in sorted(_REGISTRY.items()):
        kind = "builtin" if getattr(factory, "__module__", "").startswith("verirl.") else "registered"
        infos.append(VerifierInfo(name, kind, origin_of(factory), summary_of(factory)))
    infos.append(VerifierInfo(f"{REWARD_PREFIX}NAME", "builtin", origin_of(from_reward), summary_of(from_reward)))
    for name, ep in sorted(_plugin_entry_points().items()):
        if name in _REGISTRY:
            continue
        dist = getattr(ep, "dist", None)
        where = f"{ep.value} ({dist.name} {dist.version})" if dist is not None else ep.value
        kind = "builtin" if ep.value.startswith("verirl.") else "plugin"
        infos.append(VerifierInfo(name, kind, where))
    return infos


def find_verifier(name: str) -> Any:
    """The registered factory (or object) behind ``name``, without calling it. ``reward:NAME`` is not a factory
    lookup: :func:`resolve_verifier` handles it."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    plugins = _plugin_entry_points()
    if name in plugins:
        try:
            return plugins[name].load()
        except Exception as exc:  # noqa: BLE001 - a broken plug-in must name itself, in one line
            value = plugins[name].value
            raise VerifierError(
                f"verifier {name!r}: plug-in entry point {value!r} failed to load "
                f"({type(exc).__name__}: {first_line(exc)})"
            ) from None
    if ":" in name:
        return import_dotted(name, "verifier", VerifierError)
    known = sorted(set(_REGISTRY) | set(plugins))
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
    raise UnknownVerifierError(
        f"unknown verifier {name!r} (not built in, not a plug-in, not 'reward:NAME' or 'module:attr'){hint}"
    )


def resolve_verifier(name: str, args: Mapping[str, Any] | None = None) -> Verifier:
    """Resolve ``name`` to an object with ``verify``: its factory called with ``args`` as keyword arguments."""
    args = dict(args or {})
    if name.startswith(REWARD_PREFIX):  # registered names have no ':'
        return _reward_verifier(name, args)
    obj = find_verifier(name)
    if _has_verify(obj) and not inspect.isclass(obj):
        if args:
            raise VerifierError(f"verifier {name!r}: {origin_of(obj)} is a ready verifier object; it takes no args")
        return obj
    if not callable(obj):
        raise VerifierError(
            f"verifier {name!r}: {origin_of(obj)} is a {type(obj).__name__}, not a verifier factory (a class or "
            "function returning an object with verify(prompt, completion, **ctx))"
        )
    _check_args(name, obj, args)
    try:
        built = obj(**args)
    except Exception as exc:  # noqa: BLE001 - a factory that fails must name itself, in one line
        raise VerifierError(
            f"verifier {name!r}: building {origin_of(obj)} failed: {type(exc).__name__}: {first_line(exc)}"
        ) from exc
    if not _has_verify(built):
        raise VerifierError(
            f"verifier {name!r}: {origin_of(obj)} returned a {type(built).__name__} without a callable "
            "verify(prompt, completion, **ctx)"
        )
    return built


def _has_verify(obj: Any) -> bool:
    return callable(getattr(obj, "verify", None))


def _check_args(name: str, factory: Callable, args: dict[str, Any]) -> None:
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return  # builtins / C callables: let the call say
    try:
        sig.bind(**args)
    except TypeError as exc:
        params = [
            p.name
            for p in sig.parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD, p.POSITIONAL_ONLY)
        ]
        raise VerifierError(
            f"verifier {name!r}: bad args for {origin_of(factory)}: {exc} (it takes: {', '.join(params) or 'none'})"
        ) from None


def _reward_verifier(name: str, args: dict[str, Any]) -> RewardVerifier:
    from verirl.rewards.base import resolve_reward

    reward_name = name[len(REWARD_PREFIX) :]
    if not reward_name:
        raise VerifierError(f"verifier {name!r}: expected 'reward:NAME' with a reward name after the colon")
    try:
        fn = resolve_reward(reward_name, args)
    except VerirlError as exc:
        raise VerifierError(f"verifier {name!r}: {first_line(exc)}") from None
    return from_reward(fn, reward_name)


# -- uncertainty ---------------------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A real number as float (numpy / torch scalars included), else None. Booleans are not numbers here."""
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def _unit(value: float | None) -> float:
    if value is None or math.isnan(value):
        return 1.0
    return min(1.0, max(0.0, value))


def _prob_values(probs: Any) -> list[float | None]:
    values = probs.values() if isinstance(probs, Mapping) else probs
    if hasattr(values, "tolist"):
        values = values.tolist()
    return [_number(v) for v in list(values)]


def _entropy(probs: Any) -> float:
    try:
        values = _prob_values(probs)
    except TypeError:
        return 1.0  # not a sequence of numbers
    if any(v is None or not math.isfinite(v) or v < 0 for v in values):
        return 1.0
    total = sum(values)  # type: ignore[arg-type]
    if len(values) <= 1:
        return 0.0
    if total <= 0:
        return 1.0
    h = -sum((v / total) * math.log(v / total) for v in values if v > 0)  # type: ignore[operator]
    return h / math.log(len(values))


def verdict_uncertainty(verdict: Verdict) -> float:
    """How unsure ``verdict`` is, in [0, 1], from its ``details`` (see the module docstring for the convention)."""
    details = getattr(verdict, "details", None)
    if not isinstance(details, Mapping):
        return 0.0
    if details.get("uncertainty") is not None:
        return _unit(_number(details["uncertainty"]))
    if details.get("confidence") is not None:
        confidence = _number(details["confidence"])
        return _unit(None if confidence is None else 1.0 - confidence)
    if details.get("probs") is not None:
        return _unit(_entropy(details["probs"]))
    return 0.0


def uncertainty_problem(details: Any) -> str | None:
    """Why ``details`` breaks the uncertainty convention (a value :func:`verdict_uncertainty` would clamp or
    replace), or None if it keeps it."""
    if not isinstance(details, Mapping):
        return f"details is a {type(details).__name__}, expected a dict"
    for key in ("uncertainty", "confidence"):
        if details.get(key) is None:
            continue
        value = _number(details[key])
        if value is None or not 0.0 <= value <= 1.0:  # NaN fails too
            return f"details[{key!r}] = {details[key]!r:.40}, expected a number in [0, 1]"
    if details.get("uncertainty") is None and details.get("confidence") is None and details.get("probs") is not None:
        try:
            values = _prob_values(details["probs"])
        except TypeError:
            return f"details['probs'] is a {type(details['probs']).__name__}, expected probabilities"
        if not values or any(v is None or not 0.0 <= v <= 1.0 for v in values):
            return f"details['probs'] = {details['probs']!r:.60}, expected probabilities in [0, 1]"
        if abs(sum(values) - 1.0) > 1e-3:  # type: ignore[arg-type]
            return f"details['probs'] sums to {sum(values):.4g}, expected 1"  # type: ignore[arg-type]
    return None


# -- built-ins -----------------------------------------------------------------------------------------------------


class RewardVerifier:
    """A verirl reward as a verifier: one sample per call, score = the reward's value, uncertainty 0."""

    def __init__(self, reward_fn: Callable[..., Any], name: str | None = None):
        if not callable(reward_fn):
            raise TypeError(f"from_reward: expected a reward function, got {type(reward_fn).__name__}")
        self.reward_fn = reward_fn
        self.name = name or getattr(reward_fn, "__name__", None) or type(reward_fn).__name__

    def verify(self, prompt: Any, completion: Any, **ctx: Any) -> Verdict:
        values = self.reward_fn(prompts=[prompt], completions=[completion], **{k: [v] for k, v in ctx.items()})
        if hasattr(values, "tolist"):
            values = values.tolist()
        if not isinstance(values, list | tuple) or len(values) != 1:
            raise ValueError(f"reward {self.name!r} returned {values!r:.60} for one completion, expected [value]")
        value = values[0]
        if value is None:
            return Verdict(None, f"{self.name}: not applicable", {"reward": None, "uncertainty": 0.0})
        score = _number(value)
        if score is None:
            raise TypeError(f"reward {self.name!r} returned a {type(value).__name__}, expected a float or None")
        return Verdict(score, f"{self.name}: {score:.4g}", {"reward": score, "uncertainty": 0.0})

    def __repr__(self) -> str:
        return f"RewardVerifier({self.name!r})"


def from_reward(reward_fn: Callable[..., Any], name: str | None = None) -> RewardVerifier:
    """Any verirl reward as a verifier (reward:NAME): score = the reward's value for one sample, uncertainty 0.

    The value is also in ``details["reward"]``; the feedback names the reward. ``reward_fn`` is a TRL reward
    function (``resolve_reward`` binds a recipe's ``args``).
    """
    return RewardVerifier(reward_fn, name)


@verifier("exact_answer")
class ExactAnswer:
    """1.0 if the answer extracted from the completion (extractor, default last_number) equals the `answer` column.

    ``extractor`` is an :mod:`verirl.answers` extractor (``last_number``, ``boxed``, ``regex`` with
    ``extractor_args: {pattern: ...}``, ``stripped`` or ``module:function``); both sides are compared in canonical
    form (46.0 == 46) by the ``exact_match`` reward's rule (stripped; ``ignore_case`` casefolds). The score is None
    when the row has no ``answer``.
    """

    def __init__(
        self, extractor: str = "last_number", extractor_args: dict[str, Any] | None = None, ignore_case: bool = False
    ):
        from verirl.rewards.builtin import exact_match

        self.extractor_name = extractor
        self.extract = get_extractor(extractor, extractor_args)
        self.ignore_case = bool(ignore_case)
        self._match = exact_match

    def verify(self, prompt: Any, completion: Any, **ctx: Any) -> Verdict:
        gold = ctx.get("answer")
        if gold is None:
            return Verdict(None, "no `answer` column: not applicable", {"uncertainty": 0.0})
        expected = canonical(str(gold))
        (found,) = extract_all(self.extract, [completion])
        details = {"answer": found, "expected": expected, "uncertainty": 0.0}
        if found is None:
            return Verdict(0.0, f"no answer found ({self.extractor_name})", details)
        (score,) = self._match(None, [found], answer=[expected], ignore_case=self.ignore_case)
        verdict = "correct" if score == 1.0 else f"wrong: expected {expected!r}"
        return Verdict(float(score), f"answer {found!r:.80}: {verdict:.120}", details)

    def __repr__(self) -> str:
        return f"ExactAnswer(extractor={self.extractor_name!r}, ignore_case={self.ignore_case})"
