"""The ``ml-100k`` data task: next-movie recommendation prompts in the BIGRec/D3/VRec format.

Rows: ``question`` (the prompt; plain text, no chat template: the format VRec (arXiv 2603.07725) and D3 train
their base models on; its typos are corrected), ``completion`` (``"Title (Year)"`` + newline; the trainer adds the
end-of-sequence token), ``answer`` (the target's title), ``target`` (item id), ``history`` (JSON list of item ids,
oldest first), ``user``. Training rows are a seeded sample of the chronological training split; held-out rows a
seeded sample of the test split (the same seed gives the same rows for every trainer and baseline).
"""

from __future__ import annotations

import json
import random
from typing import Any

from verirl.rec.movielens import MovieLens, Sample, load_movielens

INSTRUCTION = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\nGiven a list of movies the user has watched recently, recommend a new movie the user may "
    "like.\n### User Input:\nThe user has watched the following movies before: {history}\n\n### Response:\n"
)


def prompt_for(titles: list[str]) -> str:
    return INSTRUCTION.format(history=", ".join(f'"{t}"' for t in titles))


def completion_for(title: str) -> str:
    return f'"{title}"\n'


def title_of_completion(text: str) -> str:
    """``'"Heat (1995)"\\n...'`` -> ``'Heat (1995)'`` (the first line, quotes and spaces stripped)."""
    return text.strip().split("\n", 1)[0].strip().strip('"').strip()


def row(ml: MovieLens, sample: Sample) -> dict[str, Any]:
    titles = [ml.items[i].title for i in sample.history]
    target = ml.items[sample.target].title
    return {
        "question": prompt_for(titles),
        "completion": completion_for(target),
        "answer": target,
        "target": sample.target,
        "history": json.dumps(list(sample.history)),
        "user": sample.user,
    }


def sample_of(samples: list[Sample], n: int | None, seed: int) -> list[Sample]:
    """A seeded sample of ``n`` samples in their original (chronological) order; all of them if ``n`` is None."""
    if n is None or n >= len(samples):
        return list(samples)
    keep = sorted(random.Random(seed).sample(range(len(samples)), n))
    return [samples[i] for i in keep]


def ml_100k(
    n_train: int | None = 4000,
    n_eval: int | None = 1000,
    seed: int = 0,
    window: int = 10,
    min_rating: float | None = None,
    held_out: str = "test",
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """MovieLens-100k next-movie prompts (docs/recommendation.md); ``held_out``: the held-out split (test | valid)."""
    check(window=window, held_out=held_out)
    ml = load_movielens(window, min_rating)
    cases = ml.test if held_out == "test" else ml.valid
    train = [row(ml, s) for s in sample_of(ml.train, n_train, seed)]
    return train, [row(ml, s) for s in sample_of(cases, n_eval, seed)]


def check(**options: Any) -> None:
    """Cheap validation of the options (the recipe check calls it instead of building the rows)."""
    if options.get("held_out", "test") not in ("test", "valid"):
        raise ValueError(f"held_out: expected test or valid, got {options['held_out']!r}")
    window = options.get("window", 10)
    if not isinstance(window, int) or isinstance(window, bool) or window < 1:
        raise ValueError(f"window: expected an integer >= 1, got {window!r}")


ml_100k.check = check  # type: ignore[attr-defined]
