"""The search agent's question sets as verirl data tasks (entry points ``verirl.tasks``, see
:func:`verirl.data.get_task`): ``search-2hop`` (text 2-hop questions), ``search-flags`` (flag -> country -> fact),
``search-mix`` (both) and ``search-file`` (a user's JSONL files). Each row carries ``question``, ``answers``,
``evidence`` (gold corpus titles, possibly empty) and ``query_image`` (an absolute path or None; not ``image``,
which would switch on TRL's multimodal handling). How the built-in questions were made:
``verirl/search/data/README.md``."""

from __future__ import annotations

import random
from typing import Any

from verirl.search.environment import TOOL_NAMES
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


def search_oracle(
    n_train: int | None = 400,
    n_eval: int | None = None,
    seed: int = 0,
    task: str = "search-mix",
    tools: list[str] | None = None,
    top_k: int = 3,
    max_result_chars: int = 300,
    corpus: str = "wiki-vital",
    images: str = "flags",
    questions: str | None = None,
) -> tuple[list, list]:
    """Oracle tool-use trajectories over the training questions of ``task`` (or a JSONL ``questions`` file) — the
    planner's cold start, for the ``sft`` trainer: real tool results, the same tools and formatting as the
    ``environment:`` section with these options. Rows: ``question``, ``conversation`` and ``tools`` (JSON); no
    held-out rows (``n_eval`` is ignored)."""
    from verirl.search.environment import SearchOptions, environment_class
    from verirl.search.oracle import oracle_rows
    from verirl.search.service import open_retriever

    check_oracle(task, tools, top_k, max_result_chars, questions)
    if questions:
        rows, _ = search_file(train=questions, seed=seed)
    else:
        source = {"search-2hop": search_2hop, "search-flags": search_flags, "search-mix": search_mix}[task]
        rows, _ = source(None, None, seed)
    names = tuple(tools or ("text_search", "image_search"))
    env = environment_class(names)(open_retriever(None, corpus, images), None,
                                   SearchOptions(top_k=top_k, max_chars=max_result_chars, max_calls=8))  # fmt: skip
    out = []
    for start in range(0, len(rows), 64):  # stop early once n_train trajectories are made
        out.extend(oracle_rows(env, rows[start : start + 64]))
        if n_train is not None and len(out) >= n_train:
            break
    return (out if n_train is None else out[:n_train]), []


def check_oracle(
    task: str = "search-mix",
    tools: list[str] | None = None,
    top_k: int = 3,
    max_result_chars: int = 300,
    questions: str | None = None,
    **other: object,
) -> None:
    """:func:`search_oracle`'s options checked without building the indexes (recipe validation calls this instead of
    the task; the ``other`` options need no check beyond their types)."""
    if questions:
        read_questions(questions)
    if task not in ("search-2hop", "search-flags", "search-mix"):
        raise ValueError(f"task: expected search-2hop, search-flags or search-mix, got {task!r}")
    if tools is not None and (not tools or any(t not in TOOL_NAMES for t in tools)):
        raise ValueError(f"tools: expected a non-empty list of text_search, image_search, got {tools}")
    if not 1 <= top_k <= 20:
        raise ValueError(f"top_k: expected 1..20, got {top_k}")
    if not 16 <= max_result_chars <= 4000:
        raise ValueError(f"max_result_chars: expected 16..4000, got {max_result_chars}")


search_oracle.check = check_oracle  # type: ignore[attr-defined]
