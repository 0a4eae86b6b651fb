"""Preference pairs from labelled groups (K completions of a prompt with their rewards): what the reward-model and
the online DPO trainers train on. Every two completions whose rewards differ by more than ``min_gap`` make a pair
(``all``), or only the best and the worst of a group (``best_worst``), or each completion at most once: the best with
the worst, the second best with the second worst, ... while their rewards differ (``disjoint``: up to K/2 pairs per
group, no completion's sequence computed twice); equal completions never pair."""

from __future__ import annotations

import itertools
from typing import Any

PAIR_MODES = ("all", "best_worst", "disjoint")
PAIRS_HELP = "all: every two that differ; best_worst: one per group; disjoint: i-th best with i-th worst (each once)"


def group_pairs(
    groups: list[Any], mode: str, min_gap: float, rewards: list[tuple[float, float]] | None = None
) -> list[dict[str, Any]]:
    """Preference pairs (prompt, chosen, rejected) from labelled groups; chat prompts give chat completions.
    ``rewards``, if given, receives each pair's (chosen, rejected) rewards."""
    rows = []
    for g in groups:
        ranked = sorted(zip(g.rewards, g.candidates, strict=True), key=lambda rc: -rc[0])
        if mode == "best_worst":
            candidates = [(ranked[0], ranked[-1])] if ranked else []
        elif mode == "disjoint":
            candidates = [(ranked[i], ranked[-1 - i]) for i in range(len(ranked) // 2)]
        else:
            candidates = list(itertools.combinations(ranked, 2))
        for (r_hi, hi), (r_lo, lo) in candidates:
            if r_hi - r_lo > min_gap and hi != lo:
                rows.append(preference_row(g.context, hi, lo))
                if rewards is not None:
                    rewards.append((r_hi, r_lo))
    return rows


def preference_row(prompt: Any, chosen: str, rejected: str) -> dict[str, Any]:
    if isinstance(prompt, list):
        return {
            "prompt": prompt,
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
        }
    return {"prompt": str(prompt), "chosen": chosen, "rejected": rejected}
