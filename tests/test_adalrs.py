"""AdaLRS (arXiv 2506.13274): the velocity estimate, the search on a synthetic problem whose best learning rate is
known, backtracking that restores weights and optimizer state exactly, the search window, the recipe section (and
its refusal for GRPO), and a real DPO run through verirl with the callback."""

from __future__ import annotations

import json
import math
import random
from types import SimpleNamespace

import pytest
import torch
from transformers.optimization import get_scheduler

from verirl.errors import RecipeError
from verirl.rl.adalrs import AdaLRS, AdaLRSConfig, velocity


def test_velocity_is_the_negated_least_squares_slope_with_its_error():
    v, e = velocity([10.0, 8.0, 6.0, 4.0])
    assert v == pytest.approx(2.0) and e == pytest.approx(0.0)
    rng = random.Random(0)
    noisy = [10 - 0.5 * i + rng.gauss(0, 0.3) for i in range(30)]
    v, e = velocity(noisy)
    assert abs(v - 0.5) < 3 * e and 0 < e < 0.05
    assert velocity([1.0, 2.0, 3.0])[0] == pytest.approx(-1.0)  # rising loss: negative velocity


def run_synthetic(lr0, seed, steps=3000, curvature=1.0, scheduler="constant", optimizer="sgd", **options):
    """The paper's local model of a step, E[dL] = -lr g^2 (1 - C lr / 2) with g^2 = 1: the best rate is 1 / C.

    The loss is the weight of a one-parameter model trained by a real optimizer whose gradient is set to
    g^2 (1 - C lr / 2); logged with Gaussian noise, as a Trainer logs it."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1000.0)
    opt = torch.optim.SGD(model.parameters(), lr=lr0)
    sched = get_scheduler(scheduler, opt, num_warmup_steps=0, num_training_steps=steps)
    callback = AdaLRS(AdaLRSConfig(**options))
    state = SimpleNamespace(global_step=0, max_steps=steps)
    callback.on_train_begin(None, state, None, lr_scheduler=sched)
    for step in range(1, steps + 1):
        lr = opt.param_groups[0]["lr"]
        model.weight.grad = torch.full_like(model.weight, 1 - curvature * lr / 2)
        opt.step()
        sched.step()
        state.global_step = step
        logs = {"loss": model.weight.item() + rng.gauss(0, 0.05)}
        callback.on_log(None, state, None, logs=logs, model=model, optimizer=opt, lr_scheduler=sched)
    return callback, opt, sched, logs


@pytest.mark.parametrize("start", [0.1, 10.0])  # 10x too small, 10x too large
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_search_ends_within_1_5x_of_the_best_rate(start, seed):
    callback, opt, _, logs = run_synthetic(start, seed)
    found = opt.param_groups[0]["lr"]
    assert 1 / 1.5 <= found <= 1.5, f"from {start}: ended at {found} (best 1.0)"
    assert callback.scale == pytest.approx(found / start)
    assert logs["adalrs/lr_scale"] == callback.scale and logs["adalrs/trials"] == callback.trials > 0
    assert callback.backtracks > 0  # the too-large trials were rolled back


def test_the_base_schedule_keeps_its_shape():
    """A cosine schedule is rescaled, not replaced: after the search the rate is scale x the cosine at that step."""
    callback, opt, sched, _ = run_synthetic(0.1, 0, scheduler="cosine")
    cosine = 0.5 * (1 + math.cos(math.pi * sched.last_epoch / 3000))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * callback.scale * cosine)
    assert sched.base_lrs[0] == pytest.approx(0.1 * callback.scale)


def test_a_failed_trial_restores_weights_and_optimizer_state_exactly():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    sched = get_scheduler("constant", opt, num_training_steps=100)
    x, y = torch.randn(32, 4), torch.randn(32, 1)

    def step():
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        opt.step()
        sched.step()

    step()
    callback = AdaLRS(AdaLRSConfig(window=3))
    callback.baseline = (1.0, 0.0)
    callback.start_trial(model, opt, sched)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    moments = {k: v.clone() for k, v in opt.state[model.weight].items()}
    assert opt.param_groups[0]["lr"] == pytest.approx(0.03)
    for _ in range(3):
        step()
    assert not torch.equal(model.weight, weights["weight"])
    callback.fail(model, opt, sched, "test")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
    assert all(torch.equal(opt.state[model.weight][k], v) for k, v in moments.items())
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01 / (2 * 0.99))  # x 1/(lambda beta): from the rate before
    assert callback.backtracks == 1 and callback.trial is None


def test_after_an_accepted_trial_the_next_waits_for_a_window_at_the_new_rate():
    """The accepted window's fast descent is not the next trial's baseline: a slower window at the new rate is."""
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = get_scheduler("constant", opt, num_training_steps=100)
    callback = AdaLRS(AdaLRSConfig(window=3, start=0.0, end=1.0))

    def window(*losses):
        for loss in losses:
            callback.observe(loss, 0.5, model, opt, sched)

    window(10, 9, 8)  # base: velocity 1 -> trial x3
    window(7, 5, 3)  # trial: velocity 2 -> accepted
    assert (callback.accepted, callback.trial) == (1, None)
    window(2.5, 2.0, 1.5)  # velocity 0.5 at the new rate: a base window, not a failed trial
    assert callback.backtracks == 0 and callback.trial is not None and callback.trials == 2
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1 * 3 * 3 * 0.99)


def test_nothing_changes_outside_the_search_window():
    callback, opt, _, _ = run_synthetic(0.1, 0, steps=3000, start=0.9, end=1.0)
    assert callback.trials > 0  # searched late
    early, opt_early, _, _ = run_synthetic(0.1, 0, steps=250, start=0.95, end=1.0, window=20)
    assert early.trials == 0 and early.scale == 1.0 and opt_early.param_groups[0]["lr"] == pytest.approx(0.1)


def test_a_scheduler_that_cannot_be_rescaled_turns_it_off(caplog):
    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt)
    callback = AdaLRS()
    callback.on_train_begin(None, SimpleNamespace(global_step=0, max_steps=10), None, lr_scheduler=plateau)
    assert not callback.enabled and "cannot be rescaled" in caplog.text
    logs = {"loss": 1.0}
    callback.on_log(None, SimpleNamespace(global_step=5, max_steps=10), None, logs=logs, model=model, optimizer=opt,
                    lr_scheduler=plateau)  # fmt: skip
    assert logs == {"loss": 1.0}


@pytest.mark.parametrize(
    "trainer_change, callbacks, field, message",
    [
        ({}, ["adalrs"], "callbacks.0.name", "grpo's loss is no convergence signal"),
        ({"trainer": "dpo"}, [{"name": "adalrs", "alpha": 0.5}], "callbacks.0.alpha", ""),
        ({"trainer": "dpo"}, [{"name": "adalrs", "start": 0.5, "end": 0.2}], "callbacks.0.start", "less than end"),
        ({"trainer": "dpo"}, ["adalrz"], "callbacks.0.name", "expected one of: adalrs, or module:Class"),
        ({"trainer": "dpo"}, ["json:dumps"], "callbacks.0.name", "not a transformers TrainerCallback class"),
        ({"trainer": "dpo"}, ["no_such_module:X"], "callbacks.0.name", "cannot import"),
        ({"trainer": "dpo"}, [{"name": "transformers:EarlyStoppingCallback", "nope": 1}], "callbacks.0",
         "options do not fit"),
        ({"trainer": "dpo"}, [3], "callbacks.0", "expected a callback name"),
    ],
)  # fmt: skip
def test_bad_callbacks_are_one_line_errors(tiny_model_dir, tmp_path, write_recipe, trainer_change, callbacks, field,
                                           message):  # fmt: skip
    from tests.conftest import tiny_grpo_recipe
    from verirl.recipes import read_yaml, validate

    recipe = tiny_grpo_recipe(tiny_model_dir, tmp_path / "out", callbacks=callbacks)
    if trainer_change:
        recipe.update(trainer_change, rewards=[], eval={"enabled": False}, data={"path": "json", "data_files": "x"})
        recipe["args"] = {"max_steps": 1}
    path = write_recipe(recipe)
    with pytest.raises(RecipeError) as caught:
        validate(read_yaml(path), str(path), check_files=False)
    assert f": {field}: " in str(caught.value) and message in str(caught.value) and "\n" not in str(caught.value)


def test_dpo_with_adalrs_through_a_recipe_logs_the_search(tiny_model_dir, tmp_path, write_recipe):
    from verirl.worker import train

    data = tmp_path / "prefs.jsonl"
    rows = [{"prompt": f"What is {i}+1?", "chosen": str(i + 1), "rejected": str(i + 2)} for i in range(16)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "trainer": "dpo",
        "model": str(tiny_model_dir),
        "data": {"path": "json", "data_files": str(data)},
        "callbacks": [{"name": "adalrs", "window": 3, "start": 0.0, "end": 1.0}],
        "args": {"max_steps": 12, "per_device_train_batch_size": 4, "learning_rate": 1e-4, "bf16": False,
                 "report_to": "none", "save_strategy": "no", "logging_steps": 1, "gradient_checkpointing": False},
        "eval": {"enabled": False},
        "output_dir": str(tmp_path / "dpo"),
    }  # fmt: skip
    results = train(str(write_recipe(recipe)))
    assert results["train"]["steps"] == 12
    logged = [json.loads(line) for line in (tmp_path / "dpo" / "metrics.jsonl").read_text().splitlines()]
    with_search = [r for r in logged if "adalrs/lr_scale" in r]
    assert len(with_search) == 12 and with_search[-1]["adalrs/trials"] >= 2  # a trial at least every other window of 3
    scales = {r["adalrs/lr_scale"] for r in with_search}
    assert len(scales) > 1  # the rate moved
    plain = [1e-4 * (1 - r["step"] / 12) for r in with_search]  # TRL's linear schedule without the search
    assert any(r["learning_rate"] != pytest.approx(p) for r, p in zip(with_search, plain, strict=True))
