"""Answer matching for open-domain QA: the normalisation of SQuAD (Rajpurkar et al., arXiv 1606.05250) — lower
case, no punctuation, no articles (a, an, the), single spaces — then exact match, containment and token F1 against
the best of several gold answers (the metrics of Search-R1, arXiv 2503.09516, and s3, arXiv 2505.14146)."""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable

METRICS = ("em", "contains", "f1")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    text = _ARTICLES.sub(" ", str(text).lower().translate(_PUNCT))
    return " ".join(text.split())


def exact_match(prediction: str, golds: Iterable[str]) -> float:
    pred = normalize(prediction)
    return float(any(pred == normalize(g) for g in golds if normalize(g)))


def contains(text: str, golds: Iterable[str]) -> float:
    """1 if a normalised gold answer occurs in the normalised text as whole words."""
    hay = f" {normalize(text)} "
    return float(any(f" {n} " in hay for n in (normalize(g) for g in golds) if n))


def f1(prediction: str, golds: Iterable[str]) -> float:
    pred = normalize(prediction).split()
    best = 0.0
    for gold in golds:
        ref = normalize(gold).split()
        common = sum((Counter(pred) & Counter(ref)).values())
        if common:
            precision, recall = common / len(pred), common / len(ref)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def score(prediction: str, golds: Iterable[str], metric: str = "f1") -> float:
    golds = list(golds)
    if metric == "em":
        return exact_match(prediction, golds)
    if metric == "contains":
        return contains(prediction, golds)
    if metric == "f1":
        return f1(prediction, golds)
    raise ValueError(f"metric: expected one of {', '.join(METRICS)}, got {metric!r}")
