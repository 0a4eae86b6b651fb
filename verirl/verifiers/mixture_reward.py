"""A verifier mixture as one reward: members, constraints, a prompt-only gate, per-member guards and metrics.

The fusion is :func:`verirl.verifiers.mixture.mix` (after VRec, arXiv 2603.07725); everything here is our design
(docs/verifier_mixtures.md), with constraints after CGPO's mixture of judges (arXiv 2409.20370):

* **members** are verifiers, rewards (any verirl reward name, scored one sample at a time) or anything
  :func:`~verirl.verifiers.registry.resolve_verifier` resolves. ``kind: reward`` members are fused by ``mix``;
  ``kind: constraint`` members only gate: when one applies and scores below its ``threshold``, the sample's reward is
  its ``floor`` (the lowest floor of the failed constraints), whatever the others say.
* the **gate** weighs the reward members from the prompt alone: each member's static ``gate`` weight, or a rule
  ``module:function`` called as ``fn(prompt, **row)`` (the row's dataset columns, never the completion) that
  returns one weight per member (a list, or a mapping label -> weight; labels it omits keep their static weight).
* every member runs behind its own failure guard (:class:`~verirl.rewards.guard.GuardedReward`: a time limit, a
  per-sample retry; a member that raises, hangs, returns a score outside [0, 1] or a non-verdict counts as not
  applicable for those samples, and is counted). A member with ``verify_batch(prompts, completions, **columns)``
  is called once per batch (reward models); otherwise ``verify`` per sample.
* a sample whose members all fail or do not apply, or whose uncertainty ω exceeds ``abstain_above``, scores
  ``None``; TRL then keeps it out of its group's baseline *if no other reward scores it*, which is why a recipe
  with an abstaining mixture may hold no other reward (:mod:`verirl.rewards.spec` checks it).

Logged per call through TRL's ``log_metric`` (averaged per logging step): ``mixture/NAME/LABEL/mean`` (over the
samples it applies to), ``mixture/NAME/LABEL/applies``, ``mixture/NAME/LABEL/gate`` (the normalised gate of reward
members), ``mixture/NAME/omega``, ``mixture/NAME/abstained``, ``mixture/NAME/floored`` and
``reward_failures/NAME.LABEL`` (the guard's count).
"""

from __future__ import annotations

import difflib
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from verirl.errors import VerirlError, first_line
from verirl.plugins import import_dotted
from verirl.rewards.base import available_rewards, completion_text
from verirl.rewards.guard import DEFAULT_TIMEOUT_S, GuardedReward, call_with_timeout
from verirl.typecheck import build_dataclass, setting
from verirl.verifiers.base import row_columns
from verirl.verifiers.mixture import GUIDES, mix
from verirl.verifiers.registry import (
    REWARD_PREFIX,
    UnknownVerifierError,
    VerifierError,
    available_verifiers,
    resolve_verifier,
    verdict_uncertainty,
)

logger = logging.getLogger("verirl.rewards")

KINDS = ("reward", "constraint")


@dataclass
class MemberSpec:
    name: str = setting(help="a verifier, a reward (scored one sample at a time) or 'module:attr'")
    args: dict[str, Any] = field(default_factory=dict, metadata={"help": "keyword arguments for the member"})
    label: str | None = setting(None, help="its name in metrics (default: from the name)")
    kind: str = setting(
        "reward", help="reward: fused by the mixture; constraint: floors the sample when failed", choices=KINDS
    )
    gate: float = setting(1.0, help="its static gate weight (reward members)", ge=0.0)
    threshold: float = setting(0.5, help="a constraint passes at a score >= threshold", ge=0.0, le=1.0)
    floor: float = setting(0.0, help="the sample's reward when this constraint fails", ge=0.0, le=1.0)
    timeout_s: float | None = setting(None, help="seconds per batch call (default: the mixture's timeout_s)", gt=0)


@dataclass
class Member:
    spec: MemberSpec
    label: str
    verifier: Any
    guard: GuardedReward


def _label(name: str) -> str:
    """``reward:pkg.mod:fn`` -> ``fn``; anything not a metric-friendly character becomes ``_``."""
    tail = name.rsplit(":", 1)[-1].rsplit(".", 1)[-1] or name
    return re.sub(r"[^A-Za-z0-9_\-]+", "_", tail)


def resolve_member(name: str, args: Mapping[str, Any] | None = None) -> Any:
    """A verifier by ``name``; failing that, the reward ``name`` as a verifier (``reward:NAME``)."""
    try:
        return resolve_verifier(name, args)
    except UnknownVerifierError:
        pass
    try:
        return resolve_verifier(REWARD_PREFIX + name, args)
    except VerifierError as exc:
        if "unknown reward" not in str(exc):
            raise
    verifiers = [i.name for i in available_verifiers() if ":" not in i.name]
    rewards = [i.name for i in available_rewards() if i.name != "mixture"]
    close = difflib.get_close_matches(name, verifiers + rewards, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise VerifierError(
        f"{name!r} is neither a verifier ({', '.join(verifiers)}) nor a reward ({', '.join(rewards)}), "
        f"nor 'module:attr'{hint}"
    ) from None


def _verdicts(verifier: Any) -> Callable[..., list]:
    """A batch function ``(prompts, completions, **kwargs) -> [Verdict]`` over one verifier (the guard's ``fn``)."""

    def call(prompts: list, completions: list, **kwargs: Any) -> list:
        columns = row_columns(kwargs)
        texts = [completion_text(c) for c in completions]
        batch = getattr(verifier, "verify_batch", None)
        if callable(batch):
            return list(batch(list(prompts), texts, **columns))
        return [
            verifier.verify(p, t, **{k: v[i] for k, v in columns.items() if i < len(v)})
            for i, (p, t) in enumerate(zip(prompts, texts, strict=True))
        ]

    return call


class GuardedVerifier(GuardedReward):
    """The reward guard, checking verdicts: each sample becomes ``(score, uncertainty)`` or None (not applicable or
    failed; failures are counted: ``bad_type``, ``nonfinite``, ``out_of_range`` besides the guard's own)."""

    def _validate(self, raw: Any, n: int) -> tuple[list, Counter[str]]:
        values = list(raw) if isinstance(raw, list | tuple) else None
        if values is None or len(values) != n:
            return [None] * n, Counter({"bad_shape": n})
        out: list[tuple[float, float] | None] = []
        bad: Counter[str] = Counter()
        for verdict in values:
            score = getattr(verdict, "score", verdict)
            if score is None:
                out.append(None)
                continue
            if hasattr(score, "item") and getattr(score, "ndim", 0) == 0:
                score = score.item()
            if isinstance(score, bool) or not isinstance(score, int | float):
                out.append(None)
                bad["bad_type"] += 1
            elif not math.isfinite(score):
                out.append(None)
                bad["nonfinite"] += 1
            elif not 0.0 <= score <= 1.0:
                out.append(None)
                bad["out_of_range"] += 1
            else:
                out.append((float(score), verdict_uncertainty(verdict) if hasattr(verdict, "details") else 0.0))
        return out, bad


class MixtureReward:
    """A TRL reward function fusing verifier members (see the module docstring); ``name`` names its metrics."""

    def __init__(
        self,
        members: Sequence[Any],
        name: str = "mixture",
        alpha: float = 1.0,
        guide: str | float = "min",
        abstain_above: float | None = None,
        gate: str | None = None,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
    ):
        self.__name__ = self.name = str(name)
        self.alpha, self.guide, self.abstain_above = _check_options(alpha, guide, abstain_above)
        if timeout_s is not None and not (isinstance(timeout_s, int | float) and timeout_s > 0):
            raise VerifierError(f"timeout_s: expected a positive number of seconds or null, got {timeout_s!r}")
        self.timeout_s = timeout_s
        self.members = self._build_members(members)
        self.rewards = [m for m in self.members if m.spec.kind == "reward"]
        self.constraints = [m for m in self.members if m.spec.kind == "constraint"]
        if not self.rewards:
            raise VerifierError("members: expected at least one member of kind reward (constraints only floor it)")
        self.gate_rule = None
        if gate is not None:
            if not isinstance(gate, str) or ":" not in gate:
                raise VerifierError(f"gate: expected 'module:function' (a rule reading the prompt), got {gate!r}")
            self.gate_rule = import_dotted(gate, "gate", VerifierError)
            if not callable(self.gate_rule):
                raise VerifierError(f"gate: {gate} is not callable")
        self.gate_failures = 0
        self.seconds = 0.0  # time spent in calls (bench/mixture_overhead.py)

    def _build_members(self, members: Any) -> list[Member]:
        if not isinstance(members, list | tuple) or not members:
            raise VerifierError(f"members: expected a non-empty list of members, got {members!r:.60}")
        built, labels = [], set()
        for i, item in enumerate(members):
            if isinstance(item, str):
                item = {"name": item}
            spec = build_dataclass(MemberSpec, item, None, f"members.{i}.")
            label = spec.label or _label(spec.name)
            if label in labels:
                raise VerifierError(f"members.{i}.label: {label!r} is used twice (set label: to tell them apart)")
            labels.add(label)
            try:
                verifier = resolve_member(spec.name, spec.args)
            except VerirlError as exc:
                raise VerifierError(f"members.{i}.name: {first_line(exc)}") from None
            timeout = spec.timeout_s if spec.timeout_s is not None else self.timeout_s
            guard = GuardedVerifier(_verdicts(verifier), f"{self.name}.{label}", timeout)
            built.append(Member(spec, label, verifier, guard))
        return built

    @property
    def group_relative(self) -> bool:
        """Every reward member scores only relative to the prompt's other completions (e.g. the FlashEvaluator):
        the fused score of a lone completion is then a constant, not a grade."""
        return all(getattr(m.verifier, "group_relative", False) for m in self.rewards)

    def __repr__(self) -> str:
        return f"MixtureReward({self.name!r}, members={[m.label for m in self.members]})"

    @staticmethod
    def plan_line(args: Mapping[str, Any]) -> str:
        """What ``verirl train --dry-run`` says of this reward, from its recipe args (nothing is built)."""
        return mixture_line(args)

    # -- the reward ------------------------------------------------------------------------------------------------

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] | None = None, **kwargs):
        start = time.perf_counter()
        prompts, completions = list(prompts or []), list(completions or [])
        n = len(completions)
        if len(prompts) != n:
            prompts = (prompts + [None] * n)[:n]
        verdicts = {m.label: m.guard(prompts=prompts, completions=completions, **kwargs) for m in self.members}
        gates = self._gates(prompts, kwargs, n)
        out: list[float | None] = []
        omegas, floored, abstained = [], 0, 0
        norm_gates: dict[str, list[float]] = {m.label: [] for m in self.rewards}
        for j in range(n):
            floor = self._floor(verdicts, j)
            scores = [verdicts[m.label][j] for m in self.rewards]
            s = [None if v is None else v[0] for v in scores]
            u = [0.0 if v is None else v[1] for v in scores]
            reward, omega = mix(s, gates[j], u, alpha=self.alpha, guide=self.guide, abstain_above=self.abstain_above)
            applicable = sum(gates[j][i] for i, v in enumerate(s) if v is not None)
            for i, m in enumerate(self.rewards):
                if s[i] is not None and applicable > 0:
                    norm_gates[m.label].append(gates[j][i] / applicable)
            if floor is not None:
                floored += 1
                reward = floor
            elif reward is None:
                abstained += 1
            else:
                omegas.append(omega)
            out.append(reward)
        self._log(kwargs.get("log_metric"), verdicts, norm_gates, omegas, floored, abstained, n)
        self.seconds += time.perf_counter() - start
        return out

    def _floor(self, verdicts: dict[str, list], j: int) -> float | None:
        failed = [
            m.spec.floor
            for m in self.constraints
            if verdicts[m.label][j] is not None and verdicts[m.label][j][0] < m.spec.threshold
        ]
        return min(failed) if failed else None

    def _gates(self, prompts: list, kwargs: dict[str, Any], n: int) -> list[list[float]]:
        static = [m.spec.gate for m in self.rewards]
        if self.gate_rule is None:
            return [static] * n
        columns = row_columns(kwargs)
        gates = []
        for j in range(n):
            row = {k: v[j] for k, v in columns.items() if j < len(v)}
            try:
                weights = call_with_timeout(self.gate_rule, {"prompt": prompts[j], **row}, self.timeout_s)
                gates.append(self._gate_weights(weights, static))
            except Exception as exc:  # noqa: BLE001 - a failing or hanging gate falls back to static weights
                self.gate_failures += 1
                logger.debug("mixture %s: gate failed (%s); static weights used", self.name, first_line(exc))
                gates.append(static)
        return gates

    def _gate_weights(self, weights: Any, static: list[float]) -> list[float]:
        labels = [m.label for m in self.rewards]
        if isinstance(weights, Mapping):
            unknown = [k for k in weights if k not in labels]
            if unknown:
                raise ValueError(f"gate returned unknown members {unknown} (members: {labels})")
            values = [weights.get(label, static[i]) for i, label in enumerate(labels)]
        else:
            values = list(weights)
            if len(values) != len(labels):
                raise ValueError(f"gate returned {len(values)} weights for {len(labels)} reward members")
        values = [float(v) for v in values]
        if any(not (math.isfinite(v) and v >= 0) for v in values):
            raise ValueError(f"gate returned {values}: expected finite weights >= 0")
        return values

    def _log(self, log_metric: Any, verdicts: dict, gates: dict, omegas: list, floored: int, abstained: int, n: int):
        if not callable(log_metric) or n == 0:
            return
        prefix = f"mixture/{self.name}"
        metrics: dict[str, float] = {
            f"{prefix}/abstained": abstained / n,
            f"{prefix}/floored": floored / n,
        }
        if omegas:
            metrics[f"{prefix}/omega"] = sum(omegas) / len(omegas)
        for m in self.members:
            scored = [v[0] for v in verdicts[m.label] if v is not None]
            metrics[f"{prefix}/{m.label}/applies"] = len(scored) / n
            if scored:
                metrics[f"{prefix}/{m.label}/mean"] = sum(scored) / len(scored)
            if gates.get(m.label):
                metrics[f"{prefix}/{m.label}/gate"] = sum(gates[m.label]) / len(gates[m.label])
        try:
            for key, value in metrics.items():
                log_metric(key, float(value))
        except Exception:  # noqa: BLE001 - logging must never break a step
            logger.debug("log_metric failed", exc_info=True)

    def stats(self) -> dict[str, Any]:
        """Failure counts per member and of the gate, for the end-of-run summary."""
        return {
            "gate_failures": self.gate_failures,
            **{f"{m.label}_failed": m.guard.failed for m in self.members},
        }


def _check_options(alpha: Any, guide: Any, abstain_above: Any) -> tuple[float, str | float, float | None]:
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not (math.isfinite(alpha) and alpha >= 0):
        raise VerifierError(f"alpha: expected a finite number >= 0, got {alpha!r}")
    if isinstance(guide, str):
        if guide not in GUIDES:
            raise VerifierError(f"guide: expected min, mean or a number in [0, 1], got {guide!r}")
    elif isinstance(guide, bool) or not isinstance(guide, int | float) or not 0.0 <= guide <= 1.0:
        raise VerifierError(f"guide: expected min, mean or a number in [0, 1], got {guide!r}")
    if abstain_above is not None and (
        isinstance(abstain_above, bool) or not isinstance(abstain_above, int | float) or not 0 <= abstain_above <= 1
    ):
        raise VerifierError(f"abstain_above: expected a number in [0, 1] or null, got {abstain_above!r}")
    return float(alpha), guide if isinstance(guide, str) else float(guide), abstain_above


def mixture_line(args: Mapping[str, Any]) -> str:
    """One line for ``verirl train --dry-run``: the members, their kinds and gates, and the fusion's options."""
    parts = []
    for item in args.get("members") or []:
        item = {"name": item} if isinstance(item, str) else dict(item)
        text = str(item.get("name")) + (f" as {item['label']}" if item.get("label") else "")
        if item.get("kind") == "constraint":
            text += f" (constraint: >= {item.get('threshold', 0.5):g} else {item.get('floor', 0.0):g})"
        elif item.get("gate", 1.0) != 1.0:
            text += f" (gate {item['gate']:g})"
        parts.append(text)
    options = [f"alpha {args.get('alpha', 1.0):g}", f"guide {args.get('guide', 'min')}"]
    if args.get("abstain_above") is not None:
        options.append(f"abstains above omega {args['abstain_above']:g}")
    if args.get("gate"):
        options.append(f"gate rule {args['gate']}")
    return f"mixture of {', '.join(parts)}; {', '.join(options)}"
