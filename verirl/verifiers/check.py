"""``verirl verifiers check NAME``: run a verifier on sample and hostile completions, one ``verify`` call per sample.

The cases are those of ``verirl rewards check`` (:mod:`verirl.rewards.check`) plus shapes a verifier meets when it
is called directly (chat messages with a ``None`` or missing content, content blocks; numbers written as text;
control characters). Each verdict must be a :class:`~verirl.verifiers.base.Verdict` whose score is None or a number
in [0, 1], whose feedback is text or None and whose ``details`` keep the uncertainty convention
(:func:`verirl.verifiers.registry.uncertainty_problem`), within the timeout.

A FAIL makes the verifier unusable as a mixture member or a reward: a wrong type, a score out of [0, 1], a broken
uncertainty, a timeout, or an exception / NaN on the well-formed samples. Exceptions and NaN on hostile input are
WARN: the reward guard turns them into ``None`` at training time.
"""

from __future__ import annotations

import math
import time
from typing import Any

from verirl.rewards.check import SAMPLE, CaseResult, cases
from verirl.rewards.check import format_results as _format_results
from verirl.rewards.guard import RewardTimeout, call_with_timeout
from verirl.verifiers.base import Verdict, Verifier
from verirl.verifiers.registry import _number, uncertainty_problem, verdict_uncertainty

__all__ = ["CaseResult", "check_verifier", "format_results"]

_TEXT_PROMPTS = [p for p, _ in SAMPLE]


def _verifier_cases() -> list[tuple[str, list[Any], list[Any], bool]]:
    """(name, prompts, completions, well_formed): the reward check's cases, then the verifier-only ones."""
    extra = [
        (
            "chat message shapes",
            [
                [{"role": "assistant", "content": None}],
                [{"role": "assistant"}],
                [{"role": "assistant", "content": [{"type": "text", "text": "42"}]}],
                [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "15"}],
                [None],
            ],
        ),
        ("numbers as text", ["42", "42.0", "4.2e1", "-0", "1,000,000", "NaN", "inf", "٤٢", "0x2A"]),
        ("control characters", ["\x00\x07\x1b[31m42\x1b[0m", "\r\n\t\x0b\x0c", "\u200b42\u200b\ufeff", "\ud800"]),
    ]
    return [*cases(), *((name, _TEXT_PROMPTS, completions, False) for name, completions in extra)]


def _verdict_problem(verdict: Any, well_formed: bool) -> tuple[str, str] | None:
    """(status, why) if ``verdict`` breaks the contract, else None."""
    if not isinstance(verdict, Verdict):
        return "FAIL", f"returned a {type(verdict).__name__} ({verdict!r:.40}), expected a Verdict"
    if verdict.score is not None:
        score = _number(verdict.score)
        if score is None:
            return "FAIL", f"score is a {type(verdict.score).__name__} ({verdict.score!r:.40}), expected float or None"
        if not math.isfinite(score):
            if well_formed:
                return "FAIL", f"score is {score}"
            return "WARN", f"score is {score} (the guard turns this into None)"
        if not 0.0 <= score <= 1.0:
            return "FAIL", f"score {score:.4g} is outside [0, 1]"
    if verdict.feedback is not None and not isinstance(verdict.feedback, str):
        return "FAIL", f"feedback is a {type(verdict.feedback).__name__}, expected str or None"
    problem = uncertainty_problem(verdict.details)
    return ("FAIL", problem) if problem else None


def _run_case(
    verifier: Verifier,
    prompts: list[Any],
    completions: list[Any],
    ctx: list[dict[str, Any]],
    timeout: float | None,
    well_formed: bool,
) -> tuple[str, str]:
    """(status, detail) of one case: the first FAIL, else the first WARN, else the scores and uncertainties."""
    verdicts: list[Verdict] = []
    worst: tuple[str, str] | None = None
    for i, completion in enumerate(completions):
        prompt, row = prompts[i % len(prompts)], ctx[i]

        def call(prompt: Any = prompt, completion: Any = completion, row: dict[str, Any] = row) -> Any:
            return verifier.verify(prompt, completion, **row)

        try:
            verdict = call_with_timeout(call, {}, timeout)
        except RewardTimeout:
            return "FAIL", f"completion {i}: no verdict within {timeout:g} s"
        except Exception as exc:  # noqa: BLE001 - reported
            message = f"completion {i}: raised {type(exc).__name__}: {str(exc)[:120]}"
            if well_formed:
                return "FAIL", message
            worst = worst or ("WARN", f"{message} (the guard turns this into None)")
            continue
        problem = _verdict_problem(verdict, well_formed)
        if problem and problem[0] == "FAIL":
            return problem[0], f"completion {i}: {problem[1]}"
        if problem:
            worst = worst or (problem[0], f"completion {i}: {problem[1]}")
            continue
        verdicts.append(verdict)
    if worst:
        return worst
    scores = ", ".join("None" if v.score is None else f"{float(v.score):.3g}" for v in verdicts)
    uncertain = ", ".join(f"{verdict_uncertainty(v):.2g}" for v in verdicts)
    return "PASS", f"scores [{scores}], uncertainty [{uncertain}]"


def check_verifier(
    verifier: Verifier, ctx_columns: dict[str, Any] | None = None, timeout: float | None = 60.0
) -> list[CaseResult]:
    """Run ``verifier.verify`` on every case, one call per completion with its row's ``answer`` (the sample
    answers) and ``ctx_columns`` (the same value for every sample) as context; ``timeout`` is per call."""
    results = []
    for name, prompts, completions, well_formed in _verifier_cases():
        ctx = [{"answer": SAMPLE[i % len(SAMPLE)][1], **(ctx_columns or {})} for i in range(len(completions))]
        start = time.perf_counter()
        status, detail = _run_case(verifier, prompts, completions, ctx, timeout, well_formed)
        results.append(CaseResult(name, status, detail, time.perf_counter() - start))
    return results


def format_results(name: str, results: list[CaseResult]) -> str:
    """The report: a header naming the verifier, one line per case (status, case, time, detail), a summary line."""
    return _format_results(name, results, what="verifier")
