"""Flow-GRPO: GRPO for diffusers flow-matching text-to-image pipelines (``trainer: flow_grpo``).

Paper: Liu et al., "Flow-GRPO: Training Flow Matching Models via Online RL" (arXiv 2505.05470); per-backbone
settings from the TextPecker release (arXiv 2602.20903, see ``PRESETS``). TRL has no diffusion trainer, so the loop
is ours; the pieces come from libraries: diffusers pipelines and schedulers, peft LoRA through diffusers'
``add_adapter``, accelerate for processes/mixed precision, diffusers' ``save_lora_weights`` for the output.

From the paper: SDE rollouts with per-step log-probs (:mod:`verirl.generators.diffusion`), per-prompt group
advantages ``(r - mean) / (std + 1e-4)``, the clipped-ratio objective on every SDE step of the window, a KL penalty
to the reference model (here in velocity space, ``mean((v - v_ref)^2)``, as TextPecker's configs use; the
reference is the same transformer with the LoRA disabled), classifier-free guidance in rollouts and training,
gradients accumulated over the window's timesteps, optional EMA of the LoRA weights, optionally one initial noise per
group (``same_initial_noise``, the authors' ``same_latent``).
Our choices: rewards are combined as TRL does (weighted sum; a sample only drops out when every reward is None),
samples without a reward are left out of their group's statistics and of the loss, a group whose rewards are all
equal contributes nothing, advantages are clipped to ``adv_clip_max``.
From GRPO-Guard (Wang et al., arXiv 2510.22319; ``ratio_norm: true``, on in every TextPecker preset as in its
released configs, whose clip ranges assume it): the per-step log-ratio without its negative bias and rescaled by the
step's std (:func:`normalized_log_ratio`), and the step's loss divided by ``|dt|`` so steps weigh alike.
"""

from __future__ import annotations

import contextlib
import math
import statistics
from typing import Any

import torch

from verirl.rl.flow_grpo_config import (
    LORA_BY_TRANSFORMER,
    LORA_DEFAULTS,
    PRESETS,
    SD3_LORA_TARGETS,
    FlowGRPOConfig,
    apply_preset,
    check_config,
)

__all__ = ["LORA_BY_TRANSFORMER", "LORA_DEFAULTS", "PRESETS", "FlowGRPOConfig", "FlowGRPOTrainer", "apply_preset",
           "check_config"]  # fmt: skip


def combine_rewards(per_reward: list[list[float | None]], weights: list[float]) -> list[float | None]:
    """Weighted sum over rewards (a None counts 0); None only when every reward is None for that sample."""
    out: list[float | None] = []
    for values in zip(*per_reward, strict=True):
        present = [(w, v) for w, v in zip(weights, values, strict=True) if v is not None]
        out.append(sum(w * v for w, v in present) if present else None)
    return out


def group_advantages(rewards: list[float | None], group_size: int, clip: float = 5.0) -> tuple[torch.Tensor, list]:
    """Per-prompt advantages ``(r - mean) / (std + 1e-4)`` over each group's scored samples; (advantages, mask)."""
    if len(rewards) % group_size:
        raise ValueError(f"{len(rewards)} rewards do not form groups of {group_size}")
    adv = torch.zeros(len(rewards))
    mask = [r is not None and math.isfinite(r) for r in rewards]
    for start in range(0, len(rewards), group_size):
        idx = [i for i in range(start, start + group_size) if mask[i]]
        if len(idx) < 2:
            for i in idx:
                mask[i] = False  # a lone scored sample has no group to be compared with
            continue
        values = torch.tensor([rewards[i] for i in idx], dtype=torch.float64)
        normed = (values - values.mean()) / (values.std(unbiased=False) + 1e-4)
        adv[idx] = normed.clamp(-clip, clip).float()
    return adv, mask


def clipped_policy_loss(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip_range: float
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO/GRPO clipped surrogate, averaged over samples."""
    ratio = torch.exp(log_prob - old_log_prob)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1 - clip_range, 1 + clip_range)
    loss = torch.maximum(unclipped, clipped).mean()
    stats = {
        "clipfrac": float(((ratio.detach() - 1).abs() > clip_range).float().mean()),
        "ratio": float(ratio.detach().mean()),
        "approx_kl": float(0.5 * ((log_prob.detach() - old_log_prob) ** 2).mean()),
    }
    return loss, stats


def normalized_log_ratio(
    next_latents: torch.Tensor, mean: torch.Tensor, old_mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """GRPO-Guard's RatioNorm (Wang et al., arXiv 2510.22319) for one SDE step, per sample.

    With the step's Gaussian ``N(mean, std^2)`` and the rollout's ``N(old_mean, std^2)``, the plain log-ratio of the
    stored next latent is ``(eps * d - d^2 / (2 std)) / std`` per element, ``d = mean - old_mean``, ``eps`` the
    rollout's standardised noise: the ``-d^2`` term pulls every ratio below 1 and the ``1 / std`` scale differs by
    orders of magnitude between steps, so one clip range fits no step well. RatioNorm removes the bias and the
    scale: ``mean_over_elements(eps * d)``, i.e. ``(log_ratio + mean(d^2) / (2 std^2)) * std``."""
    reduce = tuple(range(1, next_latents.ndim))
    eps = (next_latents.float() - old_mean.float()) / std
    return (eps * (mean - old_mean.float())).mean(dim=reduce)


class EMA:
    """Exponential moving average of the trainable (LoRA) parameters; ``swap()`` exchanges them with the live ones."""

    def __init__(self, params: list[torch.nn.Parameter], decay: float):
        self.params = params
        self.decay = decay
        self.shadow = [p.detach().clone() for p in params]

    @torch.no_grad()
    def update(self) -> None:
        for s, p in zip(self.shadow, self.params, strict=True):
            s.mul_(self.decay).add_(p.detach(), alpha=1 - self.decay)

    @torch.no_grad()
    def swap(self) -> None:
        for s, p in zip(self.shadow, self.params, strict=True):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)


def add_lora(transformer: Any, lora: dict[str, Any] | None) -> list[torch.nn.Parameter]:
    """Freeze the transformer and add a LoRA (peft, through diffusers' ``add_adapter``); returns its parameters.

    Defaults as TextPecker's releases: SD3 r = 32, alpha = 64 on the attention projections; Flux and QwenImage
    r = 64, alpha = 128, also on the feed-forwards; gaussian init (B = 0: the policy starts equal to the reference)."""
    from peft import LoraConfig

    targets, rank = LORA_BY_TRANSFORMER.get(type(transformer).__name__, (SD3_LORA_TARGETS, {}))
    values = {**LORA_DEFAULTS, **rank, **(lora or {})}
    if "target_modules" not in values:
        names = {n for n, _ in transformer.named_modules()}
        values["target_modules"] = [t for t in targets if any(n.endswith(t) for n in names)]
    transformer.requires_grad_(False)
    transformer.add_adapter(LoraConfig(**values))
    return [p for p in transformer.parameters() if p.requires_grad]


def make_accelerator(config: FlowGRPOConfig) -> Any:
    """accelerate for processes and mixed precision; DDP must tolerate LoRA weights without a gradient (SD3's last
    block discards the context stream, so its context-query LoRA never gets one)."""
    from accelerate import Accelerator, DistributedDataParallelKwargs

    return Accelerator(
        mixed_precision=config.mixed_precision,
        cpu=not torch.cuda.is_available(),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )


class FlowGRPOTrainer:
    """Rollouts -> rewards -> group advantages -> clipped-ratio updates over the SDE window, one ``step()`` at a time.

    ``rewards`` are guarded TRL-style reward functions called as ``fn(prompts=..., completions=images, **columns)``.
    """

    def __init__(
        self,
        pipe: Any,
        config: FlowGRPOConfig,
        rewards: list[Any],
        weights: list[float] | None = None,
        lora: dict[str, Any] | None = None,
        accelerator: Any = None,
    ):
        from verirl.generators.diffusion import DiffusionGenerator, DiffusionSampling

        check_config(config)
        self.config = config
        self.accelerator = accelerator or make_accelerator(config)
        self.pipe = pipe.to(self.accelerator.device)
        for name in ("vae", "text_encoder", "text_encoder_2", "text_encoder_3"):
            module = getattr(pipe, name, None)
            if module is not None:
                module.requires_grad_(False)
        self.params = add_lora(pipe.transformer, lora)
        optimizer = torch.optim.AdamW(self.params, lr=config.learning_rate, weight_decay=config.weight_decay)
        self.model, self.optimizer = self.accelerator.prepare(pipe.transformer, optimizer)
        self.ema = EMA(self.params, config.ema_decay) if config.ema else None
        self.rewards = rewards
        self.weights = list(weights) if weights is not None else [1.0] * len(rewards)
        sampling = DiffusionSampling(**{f: getattr(config, f) for f in DiffusionSampling.__dataclass_fields__})
        self.generator = DiffusionGenerator(pipe, sampling, seed=config.seed + self.accelerator.process_index)
        self.global_step = 0

    # ----------------------------------------------------------------------------------------------- rewards
    def score(self, prompts: list[str], images: list[Any], columns: dict[str, list]) -> dict[str, Any]:
        per_reward = [fn(prompts=prompts, completions=images, **columns) for fn in self.rewards]
        total = combine_rewards(per_reward, self.weights)
        return {"per_reward": per_reward, "total": total}

    # ------------------------------------------------------------------------------------------------ a step
    def step(self, prompts: list[str], columns: dict[str, list] | None = None) -> dict[str, Any]:
        """One Flow-GRPO step on ``prompts`` (``group_size`` images each); returns metrics and the images."""
        import time

        c, gen = self.config, self.generator
        columns = columns or {}
        g = c.group_size
        start = time.monotonic()
        emb = gen.encode(list(prompts)).repeat(g)
        self.model.eval()
        with self.accelerator.autocast():
            rollout = gen.sample(emb, shared_noise=g if c.same_initial_noise else 1)
        images = gen.decode(rollout["latents"])
        flat_prompts = [p for p in prompts for _ in range(g)]
        flat_columns = {k: [v for v in values for _ in range(g)] for k, values in columns.items()}
        scores = self.score(flat_prompts, images, flat_columns)
        rollout_seconds = time.monotonic() - start
        advantages, mask = group_advantages(scores["total"], g, c.adv_clip_max)
        train_stats = self._update(emb, rollout, advantages, mask)
        self.global_step += 1
        metrics = {
            "reward": _mean(scores["total"]),
            "reward_std": _std(scores["total"]),
            **{f"rewards/{getattr(fn, '__name__', i)}": _mean(v)
               for i, (fn, v) in enumerate(zip(self.rewards, scores["per_reward"], strict=True))},
            "scored_fraction": sum(mask) / len(mask),
            "rollout_seconds": round(rollout_seconds, 3),
            **train_stats,
            "step_seconds": round(time.monotonic() - start, 3),
        }  # fmt: skip
        return {"metrics": metrics, "images": images, "rewards": scores["total"]}

    def _update(self, emb: Any, rollout: dict[str, Any], advantages: torch.Tensor, mask: list[bool]) -> dict:
        """``num_iterations`` optimizer steps on one rollout batch (the ratio to the rollout policy leaves 1 after
        the first, and the clip bounds it); metrics are those of the last pass."""
        keep = [i for i, m in enumerate(mask) if m and float(advantages[i]) != 0.0]
        if not keep:
            return {"loss": 0.0, "trained_samples": 0}
        self.model.train()
        totals: dict[str, Any] = {}
        for _ in range(self.config.num_iterations):
            totals = self._one_pass(emb, rollout, advantages, keep)
        totals["trained_samples"] = len(keep)
        return totals

    def _one_pass(self, emb: Any, rollout: dict[str, Any], advantages: torch.Tensor, keep: list[int]) -> dict:
        from verirl.generators.diffusion import sde_gaussian, sde_step

        c, gen, acc = self.config, self.generator, self.accelerator
        traj, old_lp = rollout["trajectory"], rollout["log_probs"]
        steps, timesteps, sigmas = rollout["step_indices"].tolist(), rollout["timesteps"], rollout["sigmas"]
        n_terms = len(keep) * len(steps)
        totals: dict[str, Any] = {"loss": 0.0, "policy_loss": 0.0, "kl": 0.0, "clipfrac": 0.0, "ratio": 0.0}
        batches = [keep[i : i + c.train_batch_size] for i in range(0, len(keep), c.train_batch_size)]
        for b, idx in enumerate(batches):
            sub = emb.select(idx)
            adv = advantages[idx].to(acc.device)
            for j, i in enumerate(steps):
                last = b == len(batches) - 1 and j == len(steps) - 1
                with acc.no_sync(self.model) if not last else contextlib.nullcontext():
                    with acc.autocast():
                        x, x_next = traj[idx, j], traj[idx, j + 1]
                        v = gen.velocity(self.model, x, timesteps[i], sub, c.guidance_scale)
                        if c.ratio_norm:
                            mean, std = sde_gaussian(v, x, sigmas[i], sigmas[i + 1], c.noise_level, float(sigmas[1]))
                            log_ratio = normalized_log_ratio(x_next, mean, rollout["means"][idx, j], std)
                            policy, stats = clipped_policy_loss(log_ratio, torch.zeros_like(log_ratio), adv,
                                                                c.clip_range)  # fmt: skip
                            policy = policy / float(sigmas[i] - sigmas[i + 1])  # GRPO-Guard's gradient reweighting
                        else:
                            _, lp = sde_step(v, x, sigmas[i], sigmas[i + 1], c.noise_level, float(sigmas[1]), x_next)
                            policy, stats = clipped_policy_loss(lp, old_lp[idx, j].to(lp.device), adv, c.clip_range)
                        loss = policy
                        kl = torch.zeros(())
                        if c.kl_beta > 0:
                            with torch.no_grad():
                                unwrapped = acc.unwrap_model(self.model)
                                unwrapped.disable_adapters()
                                v_ref = gen.velocity(unwrapped, x, timesteps[i], sub, c.guidance_scale)
                                unwrapped.enable_adapters()
                            kl = ((v.float() - v_ref.float()) ** 2).mean()
                            loss = policy + c.kl_beta * kl
                    share = len(idx) / n_terms
                    acc.backward(loss * share)
                totals["loss"] += float(loss.detach()) * share
                totals["policy_loss"] += float(policy.detach()) * share
                totals["kl"] += float(kl.detach()) * share
                totals["clipfrac"] += stats["clipfrac"] * share
                totals["ratio"] += stats["ratio"] * share
        grad_norm = acc.clip_grad_norm_(self.params, c.max_grad_norm) if c.max_grad_norm > 0 else None
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update()
        totals["grad_norm"] = float(grad_norm) if grad_norm is not None else None
        return totals

    # ------------------------------------------------------------------------------------------------ saving
    def lora_state_dict(self) -> dict[str, torch.Tensor]:
        from peft.utils import get_peft_model_state_dict

        return get_peft_model_state_dict(self.accelerator.unwrap_model(self.model))

    def save_lora(self, directory: Any, use_ema: bool = True) -> None:
        """``pytorch_lora_weights.safetensors`` loadable with ``pipe.load_lora_weights(directory)``."""
        swap = use_ema and self.ema is not None
        if swap:
            self.ema.swap()
        try:
            type(self.pipe).save_lora_weights(str(directory), transformer_lora_layers=self.lora_state_dict())
        finally:
            if swap:
                self.ema.swap()

    def save_state(self, directory: Any) -> None:
        from pathlib import Path

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.save_lora(directory, use_ema=False)
        state = {"optimizer": self.optimizer.state_dict(), "global_step": self.global_step}
        if self.ema is not None:
            state["ema"] = self.ema.shadow
        torch.save(state, directory / "training_state.pt")

    def load_state(self, directory: Any) -> None:
        from pathlib import Path

        from peft.utils import set_peft_model_state_dict
        from safetensors.torch import load_file

        directory = Path(directory)
        weights = load_file(str(directory / "pytorch_lora_weights.safetensors"))
        weights = {k.removeprefix("transformer."): v for k, v in weights.items()}
        set_peft_model_state_dict(self.accelerator.unwrap_model(self.model), weights)
        state = torch.load(directory / "training_state.pt", weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.global_step = int(state["global_step"])
        if self.ema is not None and "ema" in state:
            self.ema.shadow = state["ema"]


def _mean(values: list[float | None]) -> float | None:
    valid = [v for v in values if v is not None]
    return statistics.fmean(valid) if valid else None


def _std(values: list[float | None]) -> float | None:
    valid = [v for v in values if v is not None]
    return statistics.pstdev(valid) if len(valid) > 1 else None
