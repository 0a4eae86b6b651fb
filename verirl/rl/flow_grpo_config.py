"""``args:`` of a ``trainer: flow_grpo`` recipe (:class:`FlowGRPOConfig`), the TextPecker release's per-backbone
presets (arXiv 2602.20903) and LoRA defaults. The sampling fields are :class:`~verirl.generators.diffusion.
DiffusionSampling`'s, declared once there."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from verirl.generators.diffusion import DiffusionSampling
from verirl.typecheck import setting

LORA_DEFAULTS = {"r": 32, "lora_alpha": 64, "init_lora_weights": "gaussian"}  # TextPecker's r/alpha; B = 0 at start
SD3_LORA_TARGETS = [
    "attn.to_q",
    "attn.to_k",
    "attn.to_v",
    "attn.to_out.0",
    "attn.add_q_proj",
    "attn.add_k_proj",
    "attn.add_v_proj",
    "attn.to_add_out",
]
# Per transformer class: TextPecker's LoRA targets and the r/alpha that replace LORA_DEFAULTS' (Flux and QwenImage:
# the attention projections and the dual-stream feed-forwards, r 64, alpha 128)
_WIDE = {"r": 64, "lora_alpha": 128}
LORA_BY_TRANSFORMER: dict[str, tuple[list[str], dict[str, int]]] = {
    "SD3Transformer2DModel": (SD3_LORA_TARGETS, {}),
    "FluxTransformer2DModel": ([*SD3_LORA_TARGETS, "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj",
                                "ff_context.net.2"], _WIDE),
    "QwenImageTransformer2DModel": ([*SD3_LORA_TARGETS, "img_mlp.net.0.proj", "img_mlp.net.2", "txt_mlp.net.0.proj",
                                     "txt_mlp.net.2"], _WIDE),
}  # fmt: skip

# The per-backbone settings of the TextPecker release (arXiv 2602.20903; docs/flow_grpo.md); `preset:` fills the rest.
PRESETS: dict[str, dict[str, Any]] = {
    "sd3.5-medium": dict(num_inference_steps=40, guidance_scale=4.5, noise_level=0.9, sde_window=12, group_size=24,
                         learning_rate=1e-4, clip_range=2e-6, ratio_norm=True, kl_beta=1e-4, ema=True, height=512,
                         width=512),
    "flux.1-dev": dict(num_inference_steps=28, guidance_scale=3.5, noise_level=0.9, sde_window=9, group_size=24,
                       learning_rate=1e-4, clip_range=2e-6, ratio_norm=True, kl_beta=1e-4, ema=True, height=512,
                       width=512),
    "qwen-image": dict(num_inference_steps=20, guidance_scale=4.0, noise_level=1.2, sde_window=5, group_size=16,
                       learning_rate=1e-4, clip_range=2e-5, ratio_norm=True, kl_beta=1e-3, ema=False, height=512,
                       width=512),
}  # fmt: skip


@dataclass
class FlowGRPOConfig(DiffusionSampling):
    """``args:`` of a ``trainer: flow_grpo`` recipe: the rollouts' sampling (:class:`DiffusionSampling`'s fields)
    and the fields below. Ranges that need a custom message or another field are in :func:`check_config`."""

    preset: str | None = setting(None, help="sd3.5-medium | flux.1-dev | qwen-image: fills the fields left unset")
    group_size: int = setting(8, help="images per prompt (at least 2)")
    same_initial_noise: bool = setting(False, help="a group's images share their initial noise (the SDE steps differ)")
    prompts_per_step: int = setting(4, help="prompts per step and process")
    # optimisation
    max_steps: int = setting(100, help="optimizer steps")
    learning_rate: float = setting(1e-4, help="AdamW learning rate of the LoRA")
    weight_decay: float = setting(1e-4, help="AdamW weight decay", ge=0)
    clip_range: float = setting(1e-4, help="PPO clip range of the per-step ratio")
    ratio_norm: bool = setting(False, help="GRPO-Guard: normalised log-ratio per step and 1/|dt| reweighting")
    kl_beta: float = setting(0.0, help="weight of the KL penalty to the reference (velocity space)")
    adv_clip_max: float = setting(5.0, help="advantages are clipped to [-adv_clip_max, adv_clip_max]", gt=0)
    max_grad_norm: float = setting(1.0, help="gradient clipping norm", gt=0)
    train_batch_size: int = setting(16, help="samples per training forward")
    num_iterations: int = setting(1, help="optimizer steps per rollout batch (PPO epochs; > 1 makes the clip bind)")
    ema: bool = setting(False, help="keep an exponential moving average of the LoRA (evaluated and saved)")
    ema_decay: float = setting(0.9, help="EMA decay, in [0, 1)")
    mixed_precision: str = setting("no", help="no | bf16 | fp16 (accelerate)")
    seed: int = setting(0, help="seed of prompts, noise and initialisation")
    # outputs
    logging_steps: int = setting(1, help="metrics every N steps", ge=1)
    image_log_steps: int = setting(10, help="image grid to tensorboard / trackio every N steps (0 = never)", ge=0)
    save_steps: int = setting(0, help="checkpoint-N every N steps (0 = only at the end)", ge=0)
    report_to: list[str] = field(
        default_factory=lambda: ["tensorboard"], metadata={"help": "any of tensorboard, trackio, none"}
    )
    project: str = setting("verirl", help="trackio project (as transformers' TrainingArguments.project)")
    run_name: str | None = setting(None, help="trackio run name (default: the output directory's name)")
    trackio_space_id: str | None = setting(None, help="log to this Hugging Face Space instead of locally")
    eval_seed: int = setting(1234, help="seed of the held-out images")


def apply_preset(values: dict[str, Any]) -> dict[str, Any]:
    preset = values.get("preset")
    if preset is None:
        return values
    if preset not in PRESETS:
        raise ValueError(f"preset: unknown {preset!r}; expected one of: {', '.join(PRESETS)}")
    return {**PRESETS[preset], **values}


def check_config(config: FlowGRPOConfig) -> None:
    """ValueError naming the field for impossible settings."""
    positive = (
        "num_inference_steps",
        "group_size",
        "prompts_per_step",
        "max_steps",
        "train_batch_size",
        "num_iterations",
    )
    for name in positive:
        if getattr(config, name) < 1:
            raise ValueError(f"{name}: expected a positive integer, got {getattr(config, name)}")
    if config.group_size < 2:
        raise ValueError("group_size: GRPO needs at least 2 images per prompt")
    if config.noise_level <= 0:
        raise ValueError(
            f"noise_level: expected > 0 (0 would make every step deterministic), got {config.noise_level}"
        )
    if not 0 <= config.sde_window <= config.num_inference_steps:
        raise ValueError(f"sde_window: expected 0..num_inference_steps, got {config.sde_window}")
    if config.clip_range <= 0 or config.learning_rate <= 0:
        raise ValueError("clip_range and learning_rate: expected positive numbers")
    if config.kl_beta < 0:
        raise ValueError(f"kl_beta: expected >= 0, got {config.kl_beta}")
    if config.mixed_precision not in ("no", "bf16", "fp16"):
        raise ValueError(f"mixed_precision: expected no | bf16 | fp16, got {config.mixed_precision!r}")
    if not 0 <= config.ema_decay < 1:
        raise ValueError(f"ema_decay: expected a value in [0, 1), got {config.ema_decay}")
    for name in ("height", "width"):
        value = getattr(config, name)
        if value is not None and value < 8:
            raise ValueError(f"{name}: expected at least 8 pixels, got {value}")
    if isinstance(config.report_to, str):  # `report_to: trackio`, as transformers accepts it
        config.report_to = [config.report_to]
    unknown = [r for r in config.report_to if r not in ("tensorboard", "trackio", "none")]
    if unknown:
        raise ValueError(f"report_to: expected any of tensorboard, trackio, none; got {unknown[0]!r}")
