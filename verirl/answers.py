"""Final-answer extractors: completion text -> a canonical answer string, or None when there is no answer.

Used where answers are compared with each other rather than with a gold label (majority voting, RESTRAIN's
pseudo-labels). Numbers are canonicalised ("46.0", "46" and "+46" are the same answer).

Names in recipes: ``last_number`` (the last number on the first non-empty line, as ``number_match`` reads it),
``boxed`` (the content of the last ``\\boxed{...}``), ``regex`` (first group of the last match of ``pattern``),
``stripped`` (the whole text, stripped), or a plug-in ``package.module:function`` taking ``(text) -> str | None``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from verirl.errors import VerirlError
from verirl.plugins import import_dotted

Extractor = Callable[[str], "str | None"]

_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|[-+]?\.\d+")


def completion_text(completion: Any) -> str:
    """The text of a completion: a string, or a conversational list of messages (the last message's content)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list | tuple):
        if not completion:
            return ""
        last = completion[-1]
        if isinstance(last, dict):
            content = last.get("content", "")
            if isinstance(content, list):  # content blocks
                return "".join(part.get("text", "") for part in content if isinstance(part, dict))
            return str(content)
    if completion is None:
        return ""
    raise TypeError(f"completion must be a string or a list of messages, got {type(completion).__name__}")


def first_nonempty_line(text: str) -> str:
    for line in text.strip().splitlines():
        if line.strip():
            return line
    return ""


def last_number_value(text: str) -> Decimal | None:
    """The last number on the first non-empty line of ``text`` ("12 + 34 = 46" -> 46), or None."""
    found = _NUMBER.findall(first_nonempty_line(text))
    if not found:
        return None
    try:
        return Decimal(found[-1].replace(",", ""))
    except InvalidOperation:
        return None


def vote_counts(answers: Sequence[str | None]) -> Counter[str]:
    """How many times each answer occurs (None, no answer, is not a vote)."""
    return Counter(a for a in answers if a is not None)


def majority_answer(answers: Sequence[str | None]) -> str | None:
    """The most common answer (ties: the first seen), None when no candidate has an answer."""
    counts = vote_counts(answers)
    return counts.most_common(1)[0][0] if counts else None


def canonical(answer: str) -> str:
    """Numbers in one canonical form (46.0 -> 46, 1,234 -> 1234); other answers stripped and whitespace-collapsed."""
    text = " ".join(answer.strip().split())
    try:
        number = Decimal(text.replace(",", ""))
    except (InvalidOperation, ValueError):
        return text
    if not number.is_finite():
        return text
    normal = number.normalize()
    return format(normal, "f") if normal != normal.to_integral() else str(normal.to_integral())


def last_number(text: str) -> str | None:
    value = last_number_value(text)
    return None if value is None else canonical(str(value))


def boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (nested braces allowed)."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 1, start + len("\\boxed{")
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            content = text[i:j].strip()
            return canonical(content) if content else None
    return None


def stripped(text: str) -> str | None:
    return canonical(text) if text.strip() else None


def regex(pattern: str) -> Extractor:
    """First group (or the whole match) of the last match of ``pattern``."""
    compiled = re.compile(pattern)

    def extract(text: str) -> str | None:
        matches = list(compiled.finditer(text))
        if not matches:
            return None
        found = matches[-1].group(1) if compiled.groups else matches[-1].group(0)
        return canonical(found) if found and found.strip() else None

    return extract


EXTRACTORS: dict[str, Callable[..., Any]] = {"last_number": last_number, "boxed": boxed, "stripped": stripped}
FACTORIES: dict[str, Callable[..., Extractor]] = {"regex": regex}


def get_extractor(name: str, args: dict[str, Any] | None = None) -> Extractor:
    """Resolve an extractor by name (built-in) or ``module:function``; ``args`` configure factories (regex)."""
    args = dict(args or {})
    if name in FACTORIES:
        try:
            return FACTORIES[name](**args)
        except (TypeError, re.error) as exc:
            raise VerirlError(f"extractor {name!r}: {exc}") from None
    if name in EXTRACTORS:
        if args:
            raise VerirlError(f"extractor {name!r} takes no arguments, got {sorted(args)}")
        return EXTRACTORS[name]
    if ":" in name:
        fn = import_dotted(name, what="extractor")
        if not callable(fn):
            raise VerirlError(f"extractor {name!r} is not callable")
        return fn(**args) if args else fn
    known = ", ".join([*EXTRACTORS, *FACTORIES])
    raise VerirlError(f"unknown extractor {name!r}; expected one of: {known}, or 'package.module:function'")


def extract_all(extractor: Extractor, completions: list[Any]) -> list[str | None]:
    """Apply an extractor to completions (strings or chat messages); an extractor that raises gives None."""
    answers: list[str | None] = []
    for completion in completions:
        try:
            answers.append(extractor(completion_text(completion)))
        except Exception:  # noqa: BLE001 - a bad completion is "no answer", never a crash
            answers.append(None)
    return answers
