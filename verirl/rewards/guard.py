"""The one guard around every reward call.

A reward that raises, hangs, returns NaN/inf, the wrong type or the wrong number of values must not kill a
training run. :class:`GuardedReward` wraps any TRL-style reward and turns each of these into ``None`` for the
samples concerned (TRL treats ``None`` as "not applicable": NaN in its reward matrix, ignored by the group
statistics), counts them, logs them (``reward_failures/<name>`` through TRL's ``log_metric``; a rate-limited warning)
and lets the run continue.

Design choices (ours):

* The timeout is per call (one batch). The call runs in a daemon thread; on timeout the thread is abandoned
  (Python cannot kill a thread) and every sample of the batch becomes ``None``. A reward that blocks inside C code
  without releasing the GIL cannot be interrupted this way; give such rewards their own process.
* When a batch call raises, the reward is retried one sample at a time (within the same deadline) so that one bad
  completion costs one ``None``, not the whole batch. Group-aware rewards, whose score depends on the other samples,
  should turn this off (``retry_per_sample: false`` in a recipe).
* ``async def`` rewards are run to completion inside the guard (TRL would otherwise gather them concurrently).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import numbers
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger("verirl.rewards")

DEFAULT_TIMEOUT_S = 120.0
_WARN_INTERVAL_S = 30.0


class RewardTimeout(Exception):
    """A reward call did not return within its timeout."""


def _run(fn: Callable, kwargs: dict[str, Any]) -> Any:
    result = fn(**kwargs)
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    return result


async def _await(awaitable: Any) -> Any:
    return await awaitable


def call_with_timeout(fn: Callable, kwargs: dict[str, Any], timeout_s: float | None) -> Any:
    """Call ``fn(**kwargs)``; raise :class:`RewardTimeout` after ``timeout_s`` seconds (None or <= 0: no limit)."""
    if not timeout_s or timeout_s <= 0:
        return _run(fn, kwargs)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = _run(fn, kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="verirl-reward")
    thread.start()
    thread.join(timeout_s)
    if thread.is_alive():
        raise RewardTimeout(f"no result after {timeout_s:g} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _to_score(value: Any) -> tuple[float | None, str | None]:
    """A returned element as a float or None, and the failure reason if it was not acceptable."""
    if value is None:
        return None, None
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()  # numpy / torch scalars
    if isinstance(value, bool | numbers.Real):
        score = float(value)
        return (score, None) if math.isfinite(score) else (None, "nonfinite")
    return None, "bad_type"


def _as_list(output: Any) -> list | None:
    if isinstance(output, list | tuple):
        return list(output)
    if hasattr(output, "tolist") and getattr(output, "ndim", None) == 1:
        return output.tolist()
    return None


class GuardedReward:
    """Wrap a reward so that failures become ``None`` per sample, are counted and are logged.

    The wrapper keeps TRL's signature and exposes ``__name__`` (TRL names its metrics ``rewards/<name>/mean``).
    It is picklable when the wrapped reward is (TRL's async rollout worker pickles rewards).
    """

    def __init__(
        self,
        fn: Callable,
        name: str,
        timeout_s: float | None = DEFAULT_TIMEOUT_S,
        retry_per_sample: bool = True,
    ):
        self.fn = fn
        self.__name__ = name
        self.name = name
        self.timeout_s = timeout_s
        self.retry_per_sample = retry_per_sample
        self.calls = 0
        self.samples = 0
        self.failures: Counter[str] = Counter()
        self._last_warning = 0.0

    def __repr__(self) -> str:
        return f"GuardedReward({self.name!r}, timeout_s={self.timeout_s})"

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] | None = None, **kwargs):
        completions = list(completions or [])
        n = len(completions)
        kwargs = dict(kwargs, prompts=prompts, completions=completions)
        start = time.monotonic()
        reasons: Counter[str] = Counter()
        first_error = ""
        try:
            raw = call_with_timeout(self.fn, kwargs, self.timeout_s)
            scores, bad = self._validate(raw, n)
            reasons.update(bad)
        except RewardTimeout as exc:
            scores, first_error = [None] * n, str(exc)
            reasons["timeout"] += n
        except Exception as exc:  # noqa: BLE001 - the point of the guard
            first_error = f"{type(exc).__name__}: {exc}"
            if self.retry_per_sample and n > 1:
                scores, bad = self._per_sample(kwargs, n, start)
                reasons.update(bad)
            else:
                scores = [None] * n
                reasons["exception"] += n
        self._account(n, reasons, first_error, kwargs.get("log_metric"))
        return scores

    def _validate(self, raw: Any, n: int) -> tuple[list[float | None], Counter[str]]:
        values = _as_list(raw)
        if values is None or len(values) != n:
            got = f"{len(values)} values" if values is not None else type(raw).__name__
            logger.debug("reward %s returned %s for %d completions", self.name, got, n)
            return [None] * n, Counter({"bad_shape": n})
        scores, bad = [], Counter()
        for value in values:
            score, reason = _to_score(value)
            scores.append(score)
            if reason:
                bad[reason] += 1
        return scores, bad

    def _per_sample(self, kwargs: dict[str, Any], n: int, start: float) -> tuple[list[float | None], Counter]:
        scores: list[float | None] = []
        bad: Counter[str] = Counter()
        for i in range(n):
            remaining = None if not self.timeout_s else self.timeout_s - (time.monotonic() - start)
            if remaining is not None and remaining <= 0:
                scores.extend([None] * (n - i))
                bad["timeout"] += n - i
                break
            one = {k: (v[i : i + 1] if isinstance(v, list | tuple) and len(v) == n else v) for k, v in kwargs.items()}
            try:
                value, more = self._validate(call_with_timeout(self.fn, one, remaining), 1)
                scores.extend(value)
                bad.update(more)
            except RewardTimeout:
                scores.append(None)
                bad["timeout"] += 1
            except Exception:  # noqa: BLE001
                scores.append(None)
                bad["exception"] += 1
        return scores, bad

    def _account(self, n: int, reasons: Counter[str], error: str, log_metric: Any) -> None:
        self.calls += 1
        self.samples += n
        self.failures.update(reasons)
        failed = sum(reasons.values())
        if callable(log_metric):
            try:
                log_metric(f"reward_failures/{self.name}", float(failed))
            except Exception:  # noqa: BLE001 - logging must never break a step
                logger.debug("log_metric failed", exc_info=True)
        now = time.monotonic()
        if failed and now - self._last_warning >= _WARN_INTERVAL_S:
            self._last_warning = now
            detail = ", ".join(f"{k}={v}" for k, v in sorted(reasons.items()))
            logger.warning(
                "reward %r failed on %d/%d samples (%s)%s; %d failures in %d samples so far; the run continues",
                self.name,
                failed,
                n,
                detail,
                f": {error[:200]}" if error else "",
                self.failed,
                self.samples,
            )

    def stats(self) -> dict[str, Any]:
        """Counts for the end-of-run summary."""
        return {"calls": self.calls, "samples": self.samples, "failed": self.failed, **dict(self.failures)}


def guarded_rewards(specs: Sequence[Any]) -> list[GuardedReward]:
    """A recipe's rewards (:class:`~verirl.rewards.spec.RewardSpec`), each behind the failure guard, named as in the
    recipe (TRL logs rewards/<name>/mean)."""
    from verirl.rewards.base import resolve_reward

    return [GuardedReward(resolve_reward(r.name, r.args), r.metric, r.timeout_s, r.retry_per_sample) for r in specs]
