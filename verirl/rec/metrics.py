"""Top-K ranking metrics of next-item recommendation, as BIGRec/D3/VRec compute them: one relevant item per case,
HR@K = 1 if it is in the top K, NDCG@K = 1 / log2(rank + 2) with rank counted from 0; averaged over cases."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

KS = (1, 5, 10)


def ranking_metrics(
    ranked: Sequence[Sequence[int]], targets: Sequence[int], ks: Sequence[int] = KS
) -> dict[str, float]:
    """``ranked[i]``: item ids, best first (duplicates after the first occurrence are ignored)."""
    if len(ranked) != len(targets):
        raise ValueError(f"ranking_metrics: {len(ranked)} ranked lists for {len(targets)} targets")
    sums = {f"{m}@{k}": 0.0 for m in ("ndcg", "hr") for k in ks}
    for items, target in zip(ranked, targets, strict=True):
        seen: list[int] = []
        for item in items:
            if item not in seen:
                seen.append(item)
        if target not in seen:
            continue
        rank = seen.index(target)
        for k in ks:
            if rank < k:
                sums[f"hr@{k}"] += 1.0
                sums[f"ndcg@{k}"] += 1.0 / math.log2(rank + 2)
    n = max(len(targets), 1)
    return {key: value / n for key, value in sums.items()}


def summary_line(metrics: dict[str, float]) -> str:
    """``ndcg@1=0.0100 ndcg@5=... hr@10=...`` (the order of :data:`KS`, NDCG first)."""
    return " ".join(f"{k}={v:.4f}" for k, v in metrics.items())


def most_popular(train_targets: Sequence[int], k: int = 10) -> list[int]:
    """MostPop: the ``k`` items most often a training target (ties by item id)."""
    counts = Counter(train_targets)
    return [item for item, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]
