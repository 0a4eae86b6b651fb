"""The search agent's question sets as verirl data tasks (entry points ``verirl.tasks``, see
:func:`verirl.data.get_task`): ``search-2hop`` (text 2-hop questions), ``search-flags`` (flag -> country -> fact),
``search-mix`` (both) and ``search-file`` (a user's JSONL files). Each row carries ``question``, ``answers``,
``evidence`` (gold corpus titles, possibly empty) and ``query_image`` (an absolute path or None; not ``image``,
which would switch on TRL's multimodal handling). How the built-in questions were made:
``verirl/search/data/README.md``."""

from __future__ import annotations

import random
from typing import Any

from verirl.search.questions import Question, builtin_questions, read_questions


def as_row(q: Question) -> dict[str, Any]:
    return {"question": q.question, "answers": list(q.answers), "evidence": list(q.evidence), "query_image": q.image}


def _take(questions: list[Question], n: int | None, seed: int) -> list[dict[str, Any]]:
    rows = [as_row(q) for q in questions]
    random.Random(seed).shuffle(rows)
    return rows if n is None else rows[:n]


def _split(task: str, n_train: int | None, n_eval: int | None, seed: int) -> tuple[list[dict], list[dict]]:
    return _take(builtin_questions(task, "train"), n_train, seed), _take(builtin_questions(task, "test"), n_eval, seed)


def search_2hop(n_train: int | None = None, n_eval: int | None = None, seed: int = 0) -> tuple[list, list]:
    """Text 2-hop questions over the Wikipedia vital-article summaries (from BIG-bench qa_wikidata chains)."""
    return _split("search-2hop", n_train, n_eval, seed)


def search_flags(n_train: int | None = None, n_eval: int | None = None, seed: int = 0) -> tuple[list, list]:
    """Image questions: a country's flag (distorted), a fact about the country; the question never names it."""
    return _split("search-flags", n_train, n_eval, seed)


def search_mix(
    n_train: int | None = None, n_eval: int | None = None, seed: int = 0, image_share: float = 0.25
) -> tuple[list, list]:
    """Text and image questions together; ``image_share`` of the training rows are image questions."""
    if not 0.0 <= image_share <= 1.0:
        raise ValueError(f"image_share: expected a share in [0, 1], got {image_share}")
    text_train, text_eval = search_2hop(None, None, seed)
    flag_train, flag_eval = search_flags(None, None, seed)
    total = len(text_train) + len(flag_train) if n_train is None else n_train
    n_flags = min(len(flag_train), round(total * image_share))
    train = text_train[: total - n_flags] + flag_train[:n_flags]
    held_out = text_eval + flag_eval
    rng = random.Random(seed)
    rng.shuffle(train)
    rng.shuffle(held_out)
    return train, held_out if n_eval is None else held_out[:n_eval]


def search_file(
    train: str = "", eval: str | None = None, n_train: int | None = None, n_eval: int | None = None, seed: int = 0
) -> tuple[list, list]:
    """A user's questions: JSONL lines ``{"question", "answers", "image"?, "evidence"?}`` (image paths relative to
    the file); ``eval`` is an optional held-out file."""
    if not train:
        raise ValueError("train: expected the path of a JSONL question file")
    held_out = _take(read_questions(eval), n_eval, seed) if eval else []
    return _take(read_questions(train), n_train, seed), held_out
