"""Groups of K generations for one context, labelled by a reward — and the ways a listwise evaluator is used.

* :func:`build_groups`: K generations per prompt from any :class:`~verirl.generators.base.Generator`, scored by any
  verirl reward (called exactly as TRL calls it, through the reward guard) -> training data for an evaluator.
* :class:`ListwiseEvaluator`: ``score_group(context, candidates) -> scores`` and ``select``; FlashEvaluator
  implements it, :class:`RewardEvaluator` wraps any reward as a (pointwise) evaluator.
* :func:`evaluator_reward`: a listwise evaluator as a GRPO reward that scores each prompt's whole group in one call.
* :func:`preference_pairs`: best-vs-worst pairs per group for DPO.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from verirl.rewards.base import completion_text


@dataclass
class Group:
    context: Any  # the prompt: text or chat messages
    candidates: list[str]
    rewards: list[float]
    meta: dict[str, Any] = field(default_factory=dict)  # dataset columns (e.g. the gold answer)


@runtime_checkable
class ListwiseEvaluator(Protocol):
    def score_group(self, context: Any, candidates: list[str]) -> list[float]: ...

    def select(self, context: Any, candidates: list[str]) -> int | None: ...


def save_groups(groups: list[Group], path: str | Path) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for g in groups:
            handle.write(json.dumps(asdict(g), ensure_ascii=False, default=str) + "\n")
    return out


def load_groups(path: str | Path) -> list[Group]:
    from verirl.errors import VerirlError

    src = Path(path)
    if not src.is_file():
        raise VerirlError(f"groups file {src}: not found")
    groups = []
    for n, line in enumerate(src.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            groups.append(
                Group(row["context"], list(row["candidates"]), [float(r) for r in row["rewards"]], row.get("meta", {}))
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise VerirlError(f"groups file {src}: line {n}: expected context, candidates, rewards ({exc})") from None
    return groups


def build_groups(
    generator: Any,
    dataset: Any,
    k: int,
    reward_fn: Callable,
    sampling: Any,
    batch_prompts: int = 64,
    log: Callable[[str], None] | None = None,
) -> list[Group]:
    """K generations for every row of ``dataset`` (a ``prompt`` column plus the reward's columns), scored by
    ``reward_fn`` with TRL's calling convention. Candidates the reward could not score are dropped from the group."""
    from verirl.rewards.guard import GuardedReward

    guarded = reward_fn if isinstance(reward_fn, GuardedReward) else GuardedReward(reward_fn, "groups")
    columns = [c for c in dataset.column_names if c != "prompt"]
    groups: list[Group] = []
    for start in range(0, len(dataset), batch_prompts):
        rows = dataset.select(range(start, min(start + batch_prompts, len(dataset))))
        prompts = list(rows["prompt"])
        rollouts = generator.generate(prompts, n=k, sampling=sampling)
        flat_prompts, flat_texts = rollouts.flat()
        completions = [
            [{"role": "assistant", "content": t}] if isinstance(p, list) else t
            for p, t in zip(flat_prompts, flat_texts, strict=True)
        ]
        kwargs = {c: [v for v in rows[c] for _ in range(k)] for c in columns}
        scores = guarded(
            prompts=flat_prompts,
            completions=completions,
            completion_ids=[ids for group in rollouts.token_ids for ids in group],
            **kwargs,
        )
        for i, prompt in enumerate(prompts):
            pairs = [
                (t, s) for t, s in zip(rollouts.texts[i], scores[i * k : (i + 1) * k], strict=True) if s is not None
            ]
            groups.append(
                Group(prompt, [t for t, _ in pairs], [s for _, s in pairs], {c: rows[c][i] for c in columns})
            )
        if log:
            log(f"groups: {len(groups)}/{len(dataset)} prompts x {k} candidates")
    return groups


class RewardEvaluator:
    """Any reward as a (pointwise) listwise evaluator: each candidate scored by the reward, no comparison.

    ``columns`` are the per-context dataset values the reward needs (e.g. ``{"answer": "42"}``).
    """

    def __init__(self, reward_fn: Callable, columns: dict[str, Any] | None = None):
        from verirl.rewards.guard import GuardedReward

        self.reward = reward_fn if isinstance(reward_fn, GuardedReward) else GuardedReward(reward_fn, "evaluator")
        self.columns = dict(columns or {})

    def score_group(self, context: Any, candidates: list[str], **columns: Any) -> list[float]:
        values = {**self.columns, **columns}
        n = len(candidates)
        scores = self.reward(
            prompts=[context] * n, completions=list(candidates), **{k: [v] * n for k, v in values.items()}
        )
        return [float("-inf") if s is None else s for s in scores]

    def select(self, context: Any, candidates: list[str], **columns: Any) -> int | None:
        return best_index(self.score_group(context, candidates, **columns))


def best_index(scores: list[float]) -> int | None:
    """Index of the highest score (the first on ties); None for no scores. The pick of every selector here."""
    return max(range(len(scores)), key=scores.__getitem__) if scores else None


def _group_indices(prompts: list[Any]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(json.dumps(p, sort_keys=True, default=str), []).append(i)
    return groups


def evaluator_reward(evaluator: ListwiseEvaluator, name: str = "evaluator") -> Callable[..., list[float]]:
    """A GRPO reward from a listwise evaluator: one ``score_group`` call per prompt scores its whole group.

    Group-aware: use it with ``retry_per_sample: false`` (a recipe reward option), since a lone completion would be
    scored without its group.
    """

    def reward_fn(prompts: list, completions: list, **kwargs: Any) -> list[float]:
        scores = [0.0] * len(completions)
        for indices in _group_indices(list(prompts)).values():
            texts = [completion_text(completions[i]) for i in indices]
            for i, s in zip(indices, evaluator.score_group(prompts[indices[0]], texts), strict=True):
                scores[i] = float(s)
        return scores

    reward_fn.__name__ = name
    return reward_fn


def preference_pairs(evaluator: ListwiseEvaluator, groups: list[Group], min_gap: float = 0.0) -> list[dict[str, Any]]:
    """Best-vs-worst pairs for DPO: per group, the candidate the evaluator scores highest as ``chosen`` and the
    lowest as ``rejected``; groups of one, identical texts, or a score gap <= ``min_gap`` give no pair."""
    pairs = []
    for g in groups:
        if len(g.candidates) < 2:
            continue
        scores = evaluator.score_group(g.context, g.candidates)
        best = best_index(scores)
        worst = min(range(len(scores)), key=scores.__getitem__)
        if g.candidates[best] == g.candidates[worst] or scores[best] - scores[worst] <= min_gap:
            continue
        pairs.append(
            {
                "prompt": g.context,
                "chosen": g.candidates[best],
                "rejected": g.candidates[worst],
                "score_gap": scores[best] - scores[worst],
            }
        )
    return pairs
