"""``verirl rewards check NAME``: run a reward on sample prompts and on hostile completions, report problems.

A FAIL is a problem the guard would hide at training time but that makes the reward useless: the wrong number
of values, values that are not numbers, or an exception / non-finite value on well-formed samples. Exceptions on
hostile input (empty, huge, odd unicode, wrong types) are reported as WARN: the guard turns them into ``None``.
"""

from __future__ import annotations

import math
import numbers
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from verirl.rewards.guard import RewardTimeout, call_with_timeout

SAMPLE = [("What is 12+30? Answer with just the number.", "42"), ("What is 7+8? Answer with just the number.", "15")]
_GOOD = ["12 + 30 = 42", "The answer is 14."]


@dataclass
class CaseResult:
    case: str
    status: str  # PASS | WARN | FAIL
    detail: str
    seconds: float


def cases() -> list[tuple[str, list[Any], list[Any], bool]]:
    """(name, prompts, completions, well_formed)."""
    text_prompts = [p for p, _ in SAMPLE]
    chat_prompts = [[{"role": "user", "content": p}] for p, _ in SAMPLE]
    chat = [[{"role": "assistant", "content": c}] for c in _GOOD]
    return [
        ("sample (text)", text_prompts, list(_GOOD), True),
        ("sample (chat)", chat_prompts, chat, True),
        ("empty completions", text_prompts, ["", "   "], False),
        ("very long completions", text_prompts, ["9" * 200_000, "word " * 50_000], False),
        ("unicode", text_prompts, ["١٢ + ٣٠ = ٤٢ 🤖", "数学\u202e24 = 42\u0000\ud7ff"], False),
        ("chat with empty content", chat_prompts, [[{"role": "assistant", "content": ""}], []], False),
        ("wrong types", text_prompts, [None, 42], False),
    ]


def _ids(completion: Any) -> list[int]:
    """Stand-in token ids (UTF-8 bytes) so rewards that read completion_ids get the right shape."""
    from verirl.rewards.base import completion_text

    try:
        return list(completion_text(completion).encode("utf-8", "replace"))
    except TypeError:
        return []


def _problem(value: Any, n: int) -> str | None:
    if not isinstance(value, list | tuple) and not (hasattr(value, "tolist") and getattr(value, "ndim", None) == 1):
        return f"returned {type(value).__name__}, expected a list of {n} floats or None"
    values = list(value.tolist() if hasattr(value, "tolist") else value)
    if len(values) != n:
        return f"returned {len(values)} values for {n} completions"
    for v in values:
        if v is None:
            continue
        if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, numbers.Real):
            return f"returned a {type(v).__name__} ({v!r:.40}), expected float or None"
    return None


def _nonfinite(value: Any) -> bool:
    values = list(value.tolist() if hasattr(value, "tolist") else value)
    return any(v is not None and not math.isfinite(float(v)) for v in values)


def check_reward(fn: Callable, columns: dict[str, Any] | None = None, timeout_s: float = 60.0) -> list[CaseResult]:
    """Run ``fn`` over the built-in cases; ``columns`` are per-sample constants (default: the sample answers)."""
    results = []
    for name, prompts, completions, well_formed in cases():
        n = len(completions)
        kwargs: dict[str, Any] = {
            "prompts": prompts,
            "completions": completions,
            "completion_ids": [_ids(c) for c in completions],
            "answer": [a for _, a in SAMPLE][:n],
            "trainer_state": None,
            "log_extra": lambda *a, **k: None,
            "log_metric": lambda *a, **k: None,
        }
        for key, value in (columns or {}).items():
            kwargs[key] = [value] * n
        start = time.perf_counter()
        try:
            value = call_with_timeout(fn, kwargs, timeout_s)
        except RewardTimeout:
            results.append(CaseResult(name, "FAIL", f"no result within {timeout_s:g} s", time.perf_counter() - start))
            continue
        except Exception as exc:  # noqa: BLE001 - reported
            seconds = time.perf_counter() - start
            message = f"{type(exc).__name__}: {str(exc)[:120]}"
            if well_formed:
                results.append(CaseResult(name, "FAIL", f"raised {message}", seconds))
            else:
                results.append(CaseResult(name, "WARN", f"raised {message} (the guard turns this into None)", seconds))
            continue
        seconds = time.perf_counter() - start
        problem = _problem(value, n)
        if problem:
            results.append(CaseResult(name, "FAIL", problem, seconds))
        elif _nonfinite(value):
            status = "FAIL" if well_formed else "WARN"
            results.append(CaseResult(name, status, "returned NaN or inf (the guard turns this into None)", seconds))
        else:
            shown = ", ".join("None" if v is None else f"{float(v):.3g}" for v in list(value))
            results.append(CaseResult(name, "PASS", f"[{shown}]", seconds))
    return results


def format_results(name: str, results: list[CaseResult], what: str = "reward") -> str:
    width = max(len(r.case) for r in results)
    lines = [f"{what} {name!r}:"]
    for r in results:
        lines.append(f"  {r.status:4}  {r.case:<{width}}  {1000 * r.seconds:8.1f} ms  {r.detail}")
    fails = sum(r.status == "FAIL" for r in results)
    warns = sum(r.status == "WARN" for r in results)
    lines.append(f"{fails} failed, {warns} warnings, {len(results) - fails - warns} passed")
    return "\n".join(lines)
