"""Training and measuring a :class:`~verirl.verifiers.flash_evaluator.FlashEvaluator` (or its pointwise baseline)
on groups of K candidates with rewards: listwise, pairwise and pointwise losses, the epoch kept by validation
ranking, and selection metrics (docs/flash_evaluator.md)."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
from torch import nn

from verirl.typecheck import setting
from verirl.verifiers.flash_evaluator import (
    AGREEMENT_FEATURES,
    PAD,
    FlashEvaluator,
    context_text,
    encode_bytes,
    pad_rows,
)
from verirl.verifiers.groups import best_index

SelectBy = Literal["pairwise", "top1"]  # validation figures that can pick the epoch to keep


@dataclass
class TrainConfig:
    """How an evaluator is trained (``evaluator.train`` in a recipe)."""

    epochs: int = setting(20, help="passes over the training groups", ge=1)
    lr: float = setting(1e-3, help="AdamW learning rate", gt=0)
    weight_decay: float = setting(0.01, help="AdamW weight decay", ge=0)
    batch_groups: int = setting(32, help="groups per optimizer step", ge=1)
    temperature: float = setting(0.1, help="listwise target softmax(reward / temperature)", gt=0)
    pairwise_weight: float = setting(0.0, help="weight of an added pairwise logistic loss", ge=0)
    pointwise_weight: float = setting(0.3, help="joint model: weight of a per-candidate loss on every group", ge=0)
    validation_fraction: float = setting(0.1, help="groups held out to keep the best epoch (0: the last)", ge=0, lt=1)
    select_by: SelectBy = setting("pairwise", help="the validation figure that picks the epoch: pairwise | top1")
    seed: int = setting(0, help="seed of initialisation, shuffling and the validation split")
    log_every: int = setting(1, help="log every N epochs", ge=1)


def group_batch(model: FlashEvaluator, groups: list[Any]) -> tuple[torch.Tensor, ...]:
    c = model.config
    ctx_ids, ctx_mask = pad_rows(
        [encode_bytes(context_text(g.context), c.max_context_tokens, keep="end") for g in groups]
    )
    k = max(len(g.candidates) for g in groups)
    rows, present, rewards = [], torch.zeros(len(groups), k, dtype=torch.bool), torch.zeros(len(groups), k)
    features = torch.zeros(len(groups), k, AGREEMENT_FEATURES) if c.agreement else None
    for i, g in enumerate(groups):
        if features is not None and g.candidates:
            features[i, : len(g.candidates)] = torch.tensor(model.features(g.candidates))
        for j in range(k):
            if j < len(g.candidates):
                rows.append(encode_bytes(g.candidates[j], c.max_candidate_tokens))
                present[i, j] = True
                rewards[i, j] = float(g.rewards[j])
            else:
                rows.append([PAD])
    ids, mask = pad_rows(rows)
    return ctx_ids, ctx_mask, ids.view(len(groups), k, -1), mask.view(len(groups), k, -1), present, rewards, features


def listwise_loss(
    scores: torch.Tensor, rewards: torch.Tensor, present: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Softmax cross-entropy over each group's candidates against softmax(reward / temperature), averaged over the
    groups whose rewards are not all equal (the others say nothing about which candidate to pick)."""
    target = torch.softmax((rewards / temperature).masked_fill(~present, float("-inf")), dim=-1)
    log_p = torch.log_softmax(scores, dim=-1).masked_fill(~present, 0.0)
    per_group = -(target * log_p).sum(-1)
    low = rewards.masked_fill(~present, float("inf")).amin(-1)
    high = rewards.masked_fill(~present, float("-inf")).amax(-1)
    decisive = high > low
    if not decisive.any():
        return scores.masked_fill(~present, 0.0).sum() * 0.0
    return per_group[decisive].mean()


def pairwise_loss(scores: torch.Tensor, rewards: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Logistic loss on every ordered pair with r_i > r_j: -log sigmoid(s_i - s_j)."""
    pair = (rewards.unsqueeze(-1) > rewards.unsqueeze(-2)) & present.unsqueeze(-1) & present.unsqueeze(-2)
    if not pair.any():
        return scores.sum() * 0.0
    diff = scores.masked_fill(~present, 0.0).unsqueeze(-1) - scores.masked_fill(~present, 0.0).unsqueeze(-2)
    return nn.functional.softplus(-diff)[pair].mean()


def pointwise_loss(scores: torch.Tensor, rewards: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """Per-candidate BCE for {0, 1} rewards, MSE otherwise (the independent evaluator's natural objective)."""
    s, r = scores[present], rewards[present]
    if bool(((r == 0) | (r == 1)).all()):
        return nn.functional.binary_cross_entropy_with_logits(s, r)
    return nn.functional.mse_loss(s, r)


def _decisive(groups: list[Any]) -> list[Any]:
    return [g for g in groups if len(g.candidates) > 1 and len(set(g.rewards)) > 1]


def pick_metrics(groups: list[Any], picks: list[int | None]) -> dict[str, float]:
    """How good a selector's picks are: ``accuracy`` = the pick has the group's best reward (all groups),
    ``decisive_accuracy`` = the same over groups where the choice matters (rewards not all equal), ``mean_reward``
    = the picked candidates' mean reward (for a 0/1 reward: the best-of-K solve rate)."""
    hits = decisive_hits = decisive = 0
    total_reward = 0.0
    for g, pick in zip(groups, picks, strict=True):
        hit = pick is not None and g.rewards[pick] == max(g.rewards)
        hits += hit
        total_reward += g.rewards[pick] if pick is not None else 0.0
        if len(set(g.rewards)) > 1:
            decisive += 1
            decisive_hits += hit
    n = max(len(groups), 1)
    return {
        "accuracy": hits / n,
        "decisive_accuracy": decisive_hits / decisive if decisive else 0.0,
        "decisive_groups": decisive,
        "mean_reward": total_reward / n,
    }


def pairwise_ranking(groups: list[Any], scores: list[list[float]]) -> float:
    """Share of the candidate pairs with different rewards that the scores order like the rewards (ties count half),
    averaged over the groups that have such pairs (0.0 when none has): a ranking figure with far less sampling noise
    than top-1 on a few dozen groups (every pair counts, not only the winner)."""
    shares = []
    for g, s in zip(groups, scores, strict=True):
        right = total = 0.0
        for i, (ri, si) in enumerate(zip(g.rewards, s, strict=True)):
            for rj, sj in zip(g.rewards[i + 1 :], s[i + 1 :], strict=True):
                if ri != rj:
                    total += 1
                    right += 0.5 if si == sj else float((si > sj) == (ri > rj))
        if total:
            shares.append(right / total)
    return sum(shares) / len(shares) if shares else 0.0


def selection_accuracy(model: FlashEvaluator, groups: list[Any]) -> dict[str, float]:
    """:func:`pick_metrics` of the model's own picks, and its :func:`pairwise_ranking`."""
    scores = [model.score_group(g.context, g.candidates) for g in groups]
    picks = [best_index(s) for s in scores]
    return {**pick_metrics(groups, picks), "pairwise": pairwise_ranking(groups, scores)}


def train_evaluator(
    model: FlashEvaluator,
    train_groups: list[Any],
    eval_groups: list[Any] | None = None,
    config: TrainConfig | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """Train listwise (joint model) or pointwise (baseline) and keep the epoch that ranks best (``select_by``) on a
    validation split of the training groups (``eval_groups`` are only reported). Returns the training history."""
    config = config or TrainConfig()
    if config.select_by not in get_args(SelectBy):  # recipes are checked on load; this is for direct callers
        raise ValueError(f"select_by: expected one of {list(get_args(SelectBy))}, got {config.select_by!r}")
    torch.manual_seed(config.seed)
    pointwise = not model.config.cross_candidate
    use_all = pointwise or config.pointwise_weight > 0  # the per-candidate loss learns from every group
    split = torch.randperm(len(train_groups), generator=torch.Generator().manual_seed(config.seed)).tolist()
    n_val = int(len(train_groups) * config.validation_fraction) if len(train_groups) >= 20 else 0
    validation = [train_groups[i] for i in split[:n_val]]
    train_groups = [train_groups[i] for i in split[n_val:]]
    groups = [g for g in train_groups if g.candidates] if use_all else _decisive(train_groups)
    if not groups:
        raise ValueError("no training groups with a signal (every group has equal rewards)")
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps = config.epochs * math.ceil(len(groups) / config.batch_groups)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr, total_steps=steps, pct_start=0.1)
    generator = torch.Generator().manual_seed(config.seed)
    history = []
    best: tuple[float, int, dict[str, torch.Tensor] | None] = (-1.0, 0, None)
    start = time.monotonic()
    for epoch in range(1, config.epochs + 1):
        model.train()
        order = torch.randperm(len(groups), generator=generator).tolist()
        total = 0.0
        for i in range(0, len(order), config.batch_groups):
            batch = [groups[j] for j in order[i : i + config.batch_groups]]
            ctx_ids, ctx_mask, ids, mask, present, rewards, features = group_batch(model, batch)
            scores = model(ctx_ids, ctx_mask, ids, mask, present, features)
            if pointwise:
                loss = pointwise_loss(scores, rewards, present)
            else:
                loss = listwise_loss(scores, rewards, present, config.temperature)
                if config.pointwise_weight:
                    loss = loss + config.pointwise_weight * pointwise_loss(scores, rewards, present)
                if config.pairwise_weight:
                    loss = loss + config.pairwise_weight * pairwise_loss(scores, rewards, present)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            total += loss.item() * len(batch)
        record: dict[str, Any] = {"epoch": epoch, "loss": total / len(groups), "seconds": time.monotonic() - start}
        if validation:
            metrics = selection_accuracy(model, validation)
            if config.select_by == "pairwise" and metrics["decisive_groups"]:
                score = metrics["pairwise"]
            else:
                score = metrics["decisive_accuracy"] if metrics["decisive_groups"] else metrics["accuracy"]
            record["validation"] = score
            if score > best[0]:
                best = (score, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
        if eval_groups and (epoch % config.log_every == 0 or epoch == config.epochs):
            record.update(selection_accuracy(model, eval_groups))
        history.append(record)
        if log and (epoch % config.log_every == 0 or epoch == config.epochs):
            log(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}))
    if best[2] is not None:
        model.load_state_dict(best[2])
    model.eval()
    return {
        "history": history,
        "train_groups": len(groups),
        "validation_groups": len(validation),
        "best_epoch": best[1] if best[2] is not None else config.epochs,
        "seconds": time.monotonic() - start,
    }
