"""The reward guard: exceptions, hangs, NaN/inf, wrong shapes and types become None, are counted and logged."""

import asyncio
import logging
import math
import pickle
import threading
import time

import pytest

from tests.conftest import plain_grpo_config
from verirl.rewards.guard import GuardedReward, RewardTimeout, call_with_timeout


class Metrics:
    def __init__(self):
        self.logged = []

    def __call__(self, name, value):
        self.logged.append((name, value))


def test_healthy_reward_passes_through_and_logs_zero_failures():
    metrics = Metrics()
    guard = GuardedReward(lambda prompts, completions, **kw: [1, 0.5, None, True], "ok")
    assert guard(["p"] * 4, ["a", "b", "c", "d"], log_metric=metrics) == [1.0, 0.5, None, 1.0]
    assert metrics.logged == [("reward_failures/ok", 0.0)]
    assert guard.stats() == {"calls": 1, "samples": 4, "failed": 0}


def test_nan_and_inf_become_none_and_are_counted():
    metrics = Metrics()
    guard = GuardedReward(lambda prompts, completions, **kw: [math.nan, 1.0, math.inf, -math.inf], "nan")
    assert guard(None, list("abcd"), log_metric=metrics) == [None, 1.0, None, None]
    assert metrics.logged == [("reward_failures/nan", 3.0)]
    assert guard.failures["nonfinite"] == 3


def test_exception_is_isolated_to_the_failing_sample():
    def picky(prompts, completions, **kw):
        if any(c == "bad" for c in completions):
            raise ValueError("cannot score 'bad'")
        return [float(len(c)) for c in completions]

    metrics = Metrics()
    guard = GuardedReward(picky, "picky")
    assert guard(["p"] * 3, ["a", "bad", "abc"], answer=["1", "2", "3"], log_metric=metrics) == [1.0, None, 3.0]
    assert metrics.logged == [("reward_failures/picky", 1.0)]
    assert guard.failures["exception"] == 1


def test_exception_without_per_sample_retry_fails_the_batch():
    def boom(prompts, completions, **kw):
        raise RuntimeError("down")

    guard = GuardedReward(boom, "boom", retry_per_sample=False)
    assert guard(None, ["a", "b"]) == [None, None]
    assert guard.failures["exception"] == 2


def test_hanging_reward_times_out_and_the_caller_continues():
    release = threading.Event()

    def hang(prompts, completions, **kw):
        release.wait(30)
        return [1.0] * len(completions)

    metrics = Metrics()
    guard = GuardedReward(hang, "hang", timeout_s=0.3)
    start = time.monotonic()
    assert guard(None, ["a", "b", "c"], log_metric=metrics) == [None, None, None]
    assert time.monotonic() - start < 5
    assert metrics.logged == [("reward_failures/hang", 3.0)]
    assert guard.failures["timeout"] == 3
    release.set()


def test_wrong_length_and_wrong_types():
    short = GuardedReward(lambda prompts, completions, **kw: [1.0], "short")
    assert short(None, ["a", "b"]) == [None, None]
    assert short.failures["bad_shape"] == 2
    scalar = GuardedReward(lambda prompts, completions, **kw: 1.0, "scalar")
    assert scalar(None, ["a"]) == [None]
    typed = GuardedReward(lambda prompts, completions, **kw: ["1.0", {"x": 1}, 2], "typed")
    assert typed(None, ["a", "b", "c"]) == [None, None, 2.0]
    assert typed.failures["bad_type"] == 2


def test_numpy_and_torch_values_are_accepted():
    import numpy as np
    import torch

    guard = GuardedReward(lambda prompts, completions, **kw: np.array([0.25, np.nan]), "np")
    assert guard(None, ["a", "b"]) == [0.25, None]
    guard = GuardedReward(lambda prompts, completions, **kw: [torch.tensor(0.5), np.float32(2)], "mixed")
    assert guard(None, ["a", "b"]) == [0.5, 2.0]


def test_async_reward_is_awaited():
    async def slow_async(prompts, completions, **kw):
        await asyncio.sleep(0.01)
        return [1.0 for _ in completions]

    assert GuardedReward(slow_async, "async")(None, ["a", "b"]) == [1.0, 1.0]


def test_failures_are_logged_as_a_warning(caplog):
    guard = GuardedReward(lambda prompts, completions, **kw: [math.nan], "noisy")
    with caplog.at_level(logging.WARNING, logger="verirl.rewards"):
        guard(None, ["a"])
    assert "reward 'noisy' failed on 1/1 samples (nonfinite=1)" in caplog.text


def test_call_with_timeout_raises_and_passes_errors():
    with pytest.raises(RewardTimeout):
        call_with_timeout(lambda: time.sleep(2), {}, 0.1)
    with pytest.raises(KeyError):
        call_with_timeout(lambda: {}["x"], {}, 1.0)
    assert call_with_timeout(lambda x: x + 1, {"x": 1}, None) == 2


def test_guard_is_picklable_with_a_module_level_reward():
    from verirl.rewards.builtin import number_match

    clone = pickle.loads(pickle.dumps(GuardedReward(number_match, "number_match", timeout_s=5)))
    assert clone(None, ["3"], answer=["3"]) == [1.0]


def _raises(prompts, completions, **kwargs):
    raise RuntimeError("reward service down")


def _hangs(prompts, completions, **kwargs):
    time.sleep(60)


def _nan(prompts, completions, **kwargs):
    return [math.nan for _ in completions]


def test_failing_rewards_do_not_stop_a_real_grpo_run(tiny_model_dir, tmp_path):
    """Real TRL GRPOTrainer, three broken rewards next to a good one: training finishes, failures are logged."""
    from datasets import Dataset
    from trl import GRPOTrainer

    from verirl.rewards.builtin import number_match

    data = Dataset.from_list([{"prompt": [{"role": "user", "content": "What is 1+2?"}], "answer": "3"}] * 8)
    rewards = [
        GuardedReward(number_match, "number_match"),
        GuardedReward(_raises, "raises", retry_per_sample=False),
        GuardedReward(_hangs, "hangs", timeout_s=0.2),
        GuardedReward(_nan, "nan"),
    ]
    args = plain_grpo_config(tmp_path, max_steps=2)
    trainer = GRPOTrainer(model=str(tiny_model_dir), reward_funcs=rewards, args=args, train_dataset=data)
    trainer.train()
    assert trainer.state.global_step == 2
    logged = [entry for entry in trainer.state.log_history if "reward_failures/raises" in entry]
    assert logged, trainer.state.log_history
    assert logged[0]["reward_failures/raises"] == 4.0  # 4 completions per step, all failed
    assert logged[0]["reward_failures/hangs"] == 4.0
    assert logged[0]["reward_failures/nan"] == 4.0
    assert logged[0]["reward_failures/number_match"] == 0.0
    assert rewards[2].failures["timeout"] == 8
