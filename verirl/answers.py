"""Final-answer extractors: completion text -> a canonical answer string, or None when there is no answer.

Used where answers are compared with each other rather than with a gold label (majority voting, RESTRAIN's
pseudo-labels). Numbers are canonicalised ("46.0", "46" and "+46" are the same answer).

Names in recipes: ``last_number`` (the last number on the first non-empty line, as ``number_match`` reads it),
``boxed`` (the content of the last ``\\boxed{...}``), ``regex`` (first group of the last match of ``pattern``),
``stripped`` (the whole text, stripped), or a plug-in ``package.module:function`` taking ``(text) -> str | None``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from verirl.errors import VerirlError
from verirl.rewards.base import completion_text

Extractor = Callable[[str], "str | None"]


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
    from verirl.rewards.builtin import last_number as parse

    value = parse(text)
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
        from verirl.rewards.base import import_dotted

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
