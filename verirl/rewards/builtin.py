"""Built-in verifiable rewards. Each is a plain TRL reward function (``prompts, completions, **kwargs``).

Completions may be strings or conversational message lists; dataset columns arrive as keyword arguments
(``answer`` for the built-in tasks).
"""

from __future__ import annotations

import logging
import re
import threading
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from verirl.answers import completion_text, extract_all, get_extractor, last_number_value, majority_answer
from verirl.rewards.base import reward


def _as_number(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value).strip().replace(",", ""))
    except (InvalidOperation, ValueError):
        return None


@reward("number_match")
def number_match(prompts: list, completions: list, answer: list, **kwargs: Any) -> list[float | None]:
    """1.0 if the last number on the first line equals the `answer` column (numerically), else 0.0."""
    scores: list[float | None] = []
    for completion, gold in zip(completions, answer, strict=True):
        target = _as_number(gold)
        if target is None:
            scores.append(None)  # the gold answer is not a number: not applicable
            continue
        predicted = last_number_value(completion_text(completion))
        scores.append(1.0 if predicted is not None and predicted == target else 0.0)
    return scores


@reward("exact_match")
def exact_match(
    prompts: list, completions: list, answer: list, ignore_case: bool = False, **kwargs: Any
) -> list[float | None]:
    """1.0 if the completion, stripped of surrounding whitespace, equals the `answer` column."""
    scores: list[float | None] = []
    for completion, gold in zip(completions, answer, strict=True):
        text, target = completion_text(completion).strip(), str(gold).strip()
        if ignore_case:
            text, target = text.casefold(), target.casefold()
        scores.append(float(text == target))
    return scores


R1_FORMAT = r"(?s)^\s*<think>.*?</think>\s*<answer>.*?</answer>\s*$"


def _compile_format(pattern: Any = R1_FORMAT, **_: Any) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise ValueError(f"args.pattern: not a valid regular expression ({exc})") from None


@reward("regex_format", check_args=_compile_format)
def regex_format(
    prompts: list,
    completions: list,
    pattern: str = R1_FORMAT,
    mode: Literal["search", "match", "fullmatch"] = "search",
    **kwargs: Any,
) -> list[float]:
    """1.0 if the completion matches `pattern` (default: <think>…</think><answer>…</answer>); mode search|fullmatch."""
    if mode not in ("search", "fullmatch", "match"):
        raise ValueError(f"regex_format: mode must be search, match or fullmatch, got {mode!r}")
    compiled = _compile_format(pattern)
    matcher = getattr(compiled, mode)
    return [float(matcher(completion_text(c)) is not None) for c in completions]


def _check_lengths(max_length: Any = 256, cache_length: Any = 64, **_: Any) -> None:
    if not 0 <= cache_length <= max_length:
        raise ValueError(
            f"args.cache_length: expected 0 <= cache_length <= max_length, got {cache_length} and {max_length}"
        )


@reward("length_penalty", check_args=_check_lengths)
def length_penalty(
    prompts: list,
    completions: list,
    max_length: int = 256,
    cache_length: int = 64,
    unit: Literal["tokens", "chars"] = "tokens",
    **kwargs: Any,
) -> list[float]:
    """DAPO soft overlong penalty: 0 up to max_length-cache_length, then linearly down to -1 at max_length.

    ``unit: tokens`` counts ``completion_ids`` (passed by GRPO); ``unit: chars`` counts characters.
    """
    from trl.rewards import get_soft_overlong_punishment  # TRL's implementation of DAPO Eq. 13

    if unit == "tokens":
        ids = kwargs.get("completion_ids")
        if ids is None:
            raise ValueError(
                "length_penalty with unit=tokens needs completion_ids (GRPO passes them); use unit: chars"
            )
    elif unit == "chars":
        ids = [completion_text(c) for c in completions]
    else:
        raise ValueError(f"length_penalty: unit must be tokens or chars, got {unit!r}")
    _check_lengths(max_length, cache_length)
    if cache_length == 0:  # TRL divides by the cache length: treat 0 as a hard cut-off
        return [0.0 if len(x) <= max_length else -1.0 for x in ids]
    return get_soft_overlong_punishment(max_length, cache_length)(ids)


@reward("math_verify")
def math_verify(prompts: list, completions: list, answer: list, **kwargs: Any) -> list[float | None]:
    """1.0 if math-verify finds the completion's answer equivalent to the `answer` column (LaTeX or plain)."""
    from math_verify import parse, verify

    # math-verify times out with signal.alarm, which only works in the main thread; the reward guard's own
    # timeout covers the other case.
    main = threading.current_thread() is threading.main_thread()
    parse_timeout, verify_timeout = (5, 5) if main else (None, None)
    if not main:  # silence math-verify's "timeout is disabled" warning, which we handle
        logging.getLogger("math_verify").setLevel(logging.ERROR)
    scores: list[float | None] = []
    for completion, gold in zip(completions, answer, strict=True):
        gold_parsed = parse(_latex(str(gold)), parsing_timeout=parse_timeout)
        if not gold_parsed:
            scores.append(None)
            continue
        predicted = parse(completion_text(completion), parsing_timeout=parse_timeout)
        scores.append(float(verify(gold_parsed, predicted, timeout_seconds=verify_timeout)))
    return scores


def _latex(gold: str) -> str:
    return gold if "$" in gold or "\\" in gold else f"${gold}$"


def _check_extractor(extractor: Any = "last_number", **_: Any) -> None:
    get_extractor(extractor)  # an unknown name raises, naming the known ones


@reward("majority_vote", check_args=_check_extractor)
def majority_vote(prompts: list, completions: list, extractor: str = "last_number", **kwargs: Any) -> list[float]:
    """Label-free: 1.0 if the completion's answer is the most common answer among completions of its prompt.

    The majority answer of each prompt's group is the pseudo-label (as in TTRL); completions with no answer score 0.
    Groups are formed by prompt, so every completion of a prompt must be in the same call (TRL's default).
    """
    import json

    answers = extract_all(get_extractor(extractor), completions)
    keys = [json.dumps(p, sort_keys=True, default=str) for p in (prompts or [None] * len(completions))]
    groups: dict[str, list[str | None]] = {}
    for key, answer in zip(keys, answers, strict=True):
        groups.setdefault(key, []).append(answer)
    majority = {key: majority_answer(group) for key, group in groups.items()}  # ties: first seen
    return [float(a is not None and a == majority.get(k)) for k, a in zip(keys, answers, strict=True)]


import verirl.rewards.arithmetic  # noqa: E402,F401  (registers "arithmetic_check")
import verirl.rewards.image_stats  # noqa: E402,F401  (registers "brightness")
import verirl.rewards.ocr_match  # noqa: E402,F401  (registers the image reward "ocr_match"; OCR loads lazily)
import verirl.rewards.textpecker  # noqa: E402,F401  (registers the image reward "textpecker"; heavy deps load lazily)
