"""AdaLRS: loss-guided adaptive learning-rate search during training (Dong et al., arXiv 2506.13274), as a
``transformers.TrainerCallback``.

The paper's: the loss-descent velocity v(η) — the least-squares slope of the training loss over a window of k steps,
negated so that faster descent is larger — shares its optimum with the loss; every window the learning rate is
tentatively scaled up by α′ = max(λ^t α, 1) and the trial's velocity compared with the window before it:

    η ← α′η  if v(α′η) > v(η) + 2e        (faster: keep the larger rate)
    η ← β′η  if v(α′η) < v(η) − 2e        (slower: restore the weights and optimizer state of before the trial, decay)
    η ← η    otherwise

with β′ = 1 / max(λ^t β, 1); a trial is aborted (restored, decayed) as soon as the loss exceeds the largest loss seen;
two consecutive windows of rising loss decay the rate; the search runs only in the [10 %, 40 %] window of training,
and rescales the base scheduler (warm-up, cosine, ... keep their shape). Defaults α = 3, β = 2, λ = 0.99.

Our design choices, where the paper (no official code) is silent: ``t`` counts the trials so far (not steps); the error
e is the larger of the two windows' slope standard errors (ordinary least squares) and ``margin`` is the 2; a window is
``window`` *logged* losses (``args.logging_steps`` apart: the callback reads the losses the Trainer logs, so it works
with any Trainer); an "otherwise" trial keeps its weights and returns to η; after an accepted trial the next trial
waits for a window at the new rate (the accepted window's velocity holds the scale-up's transient, and on a
decelerating loss curve any later window is slower: compared against it, the next trial would fail whatever its rate);
a trial still open when the search window closes returns to η. Backtracking snapshots the trainable parameters and the
optimizer state (on the CPU); it assumes each process holds whole parameters (DDP or one process, not FSDP/DeepSpeed
sharding). Only schedulers that scale ``base_lrs`` by a factor (every ``lr_scheduler_type`` but
``reduce_lr_on_plateau``) can be rescaled. The paper's caveat: a loss that does not track progress (an RL policy loss)
is no signal: verirl refuses AdaLRS for GRPO.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from transformers import TrainerCallback

from verirl.typecheck import setting

logger = logging.getLogger("verirl")


@dataclass(frozen=True)
class AdaLRSConfig:
    """AdaLRS's settings (the paper's defaults; the window and margin are ours)."""

    alpha: float = setting(3.0, help="scale-up factor of a trial (> 1)", gt=1)
    beta: float = setting(2.0, help="decay factor after a failed trial (> 1)", gt=1)
    decay: float = setting(0.99, help="lambda: the factors shrink toward 1 as lambda^trials", gt=0, le=1)
    window: int = setting(10, help="logged losses per velocity estimate", ge=3)
    start: float = setting(0.1, help="fraction of max_steps where the search begins", ge=0, lt=1)
    end: float = setting(0.4, help="fraction of max_steps where the search ends", gt=0, le=1)
    margin: float = setting(2.0, help="the 2 in v > v0 + 2e (e: a window slope's standard error)", ge=0)


def velocity(losses: list[float]) -> tuple[float, float]:
    """(descent velocity, its standard error): minus the least-squares slope of ``losses`` per logged step."""
    n = len(losses)
    mean_x = (n - 1) / 2
    mean_y = sum(losses) / n
    sxx = sum((i - mean_x) ** 2 for i in range(n))
    slope = sum((i - mean_x) * (y - mean_y) for i, y in enumerate(losses)) / sxx
    residual = sum((y - mean_y - slope * (i - mean_x)) ** 2 for i, y in enumerate(losses))
    error = math.sqrt(residual / (n - 2) / sxx) if n > 2 else math.inf
    return -slope, error


class AdaLRS(TrainerCallback):
    """The search (see the module docstring); ``adalrs/*`` figures join the Trainer's logs."""

    def __init__(self, config: AdaLRSConfig | None = None, **options: Any):
        self.config = config or AdaLRSConfig(**options)
        if not self.config.start < self.config.end:
            raise ValueError(f"start: expected less than end ({self.config.end}), got {self.config.start}")
        self.scale = 1.0  # the current rate over the configured one
        self.trials = self.accepted = self.backtracks = 0
        self.history_max = -math.inf
        self.window: list[float] = []
        self.baseline: tuple[float, float] | None = None  # velocity and error of the last window at the base rate
        self.rising = 0  # consecutive base windows whose loss rose
        self.trial: dict[str, Any] | None = None  # while scaled up: the factor and the snapshot to restore
        self.enabled = True

    # -- the Trainer's events -------------------------------------------------------------------------------------

    def on_train_begin(self, args: Any, state: Any, control: Any, lr_scheduler: Any = None, **kwargs: Any) -> None:
        if lr_scheduler is None or not hasattr(lr_scheduler, "base_lrs") or not hasattr(lr_scheduler, "lr_lambdas"):
            self.enabled = False
            logger.warning("adalrs: the learning-rate scheduler cannot be rescaled; AdaLRS is off for this run")

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not self.enabled or not logs or "loss" not in logs:
            return
        loss = float(logs["loss"])
        if math.isfinite(loss):
            self.observe(loss, state.global_step / max(state.max_steps, 1), kwargs["model"], kwargs["optimizer"],
                         kwargs["lr_scheduler"])  # fmt: skip
        logs.update({"adalrs/lr_scale": self.scale, "adalrs/trials": self.trials, "adalrs/accepted": self.accepted,
                     "adalrs/backtracks": self.backtracks})  # fmt: skip

    # -- the search ------------------------------------------------------------------------------------------------

    def factors(self) -> tuple[float, float]:
        shrink = self.config.decay**self.trials
        return max(shrink * self.config.alpha, 1.0), 1.0 / max(shrink * self.config.beta, 1.0)

    def observe(self, loss: float, progress: float, model: Any, optimizer: Any, scheduler: Any) -> None:
        """One logged loss at ``progress`` (fraction of max_steps) of training."""
        active = self.config.start <= progress <= self.config.end
        if not active:
            if self.trial is not None and progress > self.config.end:  # the search closes: back to the base rate
                self.rescale(1.0 / self.trial["factor"], optimizer, scheduler)
                self.trial = None
            self.history_max = max(self.history_max, loss)
            return
        if self.trial is not None and loss > self.history_max:  # the trial blew up: restore and decay at once
            self.fail(model, optimizer, scheduler, f"loss {loss:.4g} above the largest seen {self.history_max:.4g}")
            self.history_max = max(self.history_max, loss)
            return
        self.history_max = max(self.history_max, loss)
        self.window.append(loss)
        if len(self.window) < self.config.window:
            return
        current = velocity(self.window)
        self.window = []
        if self.trial is None:
            self.after_base_window(current, model, optimizer, scheduler)
        else:
            self.after_trial_window(current, model, optimizer, scheduler)

    def after_base_window(self, current: tuple[float, float], model: Any, optimizer: Any, scheduler: Any) -> None:
        self.rising = self.rising + 1 if current[0] < -self.config.margin * current[1] else 0
        if self.rising >= 2:  # the loss rose over two windows: too large already
            _, beta = self.factors()
            self.trials += 1
            self.rising = 0
            self.rescale(beta, optimizer, scheduler)
            logger.info("adalrs: the loss rose over two windows: rate x%.3g (scale %.3g)", beta, self.scale)
            self.baseline = None
            return
        self.baseline = current
        self.start_trial(model, optimizer, scheduler)

    def start_trial(self, model: Any, optimizer: Any, scheduler: Any) -> None:
        alpha, _ = self.factors()
        self.trial = {"factor": alpha, "snapshot": snapshot(model, optimizer)}
        self.trials += 1
        self.rescale(alpha, optimizer, scheduler)

    def after_trial_window(self, current: tuple[float, float], model: Any, optimizer: Any, scheduler: Any) -> None:
        assert self.trial is not None and self.baseline is not None
        base_v, base_e = self.baseline
        margin = self.config.margin * max(base_e, current[1])
        if current[0] > base_v + margin:
            self.accepted += 1
            logger.info("adalrs: x%.3g accepted (velocity %.4g > %.4g)", self.trial["factor"], current[0], base_v)
            self.trial = None  # the scaled rate is the new base: its velocity is measured afresh before a trial
            self.baseline = None
        elif current[0] < base_v - margin:
            self.fail(model, optimizer, scheduler, f"velocity {current[0]:.4g} < {base_v:.4g}")
        else:
            self.rescale(1.0 / self.trial["factor"], optimizer, scheduler)
            self.trial = None
            self.baseline = None

    def fail(self, model: Any, optimizer: Any, scheduler: Any, why: str) -> None:
        assert self.trial is not None
        _, beta = self.factors()
        restore(model, optimizer, self.trial["snapshot"])
        self.backtracks += 1
        self.rescale(beta / self.trial["factor"], optimizer, scheduler)
        logger.info("adalrs: x%.3g failed (%s): restored, rate x%.3g (scale %.3g)", self.trial["factor"], why,
                    beta, self.scale)  # fmt: skip
        self.trial = None
        self.baseline = None
        self.window = []

    def rescale(self, factor: float, optimizer: Any, scheduler: Any) -> None:
        self.scale *= factor
        rescale_schedule(factor, optimizer, scheduler)


def rescale_schedule(factor: float, optimizer: Any, scheduler: Any) -> None:
    """Multiply a ``LambdaLR``-style scheduler's base rates by ``factor`` and set each group's rate where the schedule
    is now (warm-up, cosine, ... keep their shape)."""
    scheduler.base_lrs = [base * factor for base in scheduler.base_lrs]
    step = scheduler.last_epoch
    schedules = zip(optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True)
    for group, base, schedule in schedules:
        group["lr"] = base * schedule(step)
        if "initial_lr" in group:
            group["initial_lr"] = base
    scheduler._last_lr = [group["lr"] for group in optimizer.param_groups]


def snapshot(model: Any, optimizer: Any) -> dict[str, Any]:
    """The trainable parameters and the optimizer state, copied to the CPU."""
    params = {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}
    return {"params": params, "optimizer": _to_cpu(optimizer.state_dict())}


def restore(model: Any, optimizer: Any, saved: dict[str, Any]) -> None:
    import torch

    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in saved["params"]:
                p.copy_(saved["params"][name])
    groups = [dict(g) for g in optimizer.param_groups]  # the rates are set by rescale, not by the snapshot
    optimizer.load_state_dict(saved["optimizer"])
    for group, now in zip(optimizer.param_groups, groups, strict=True):
        group["lr"] = now["lr"]
        if "initial_lr" in now:
            group["initial_lr"] = now["initial_lr"]


def _to_cpu(value: Any) -> Any:
    """A copy of a state dict with every tensor copied to the CPU (a CPU tensor is copied too: training goes on)."""
    if hasattr(value, "detach"):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_cpu(v) for v in value]
    return value
