"""Images from a diffusers flow-matching pipeline, with the per-step latents and log-probabilities Flow-GRPO needs.

Flow-GRPO (Liu et al., "Flow-GRPO: Training Flow Matching Models via Online RL", arXiv 2505.05470) turns the
deterministic Euler sampler of a rectified-flow model into an SDE with the same marginals,

    dx_t = (v_t + s_t^2 / (2t) * (x_t + (1 - t) v_t)) dt + s_t dw_t,     s_t = a * sqrt(t / (1 - t)),

so that each denoising step is a Gaussian with a computable log-probability. Discretised on the scheduler's sigmas
(t = sigma, dt = sigma_next - sigma < 0) one step is

    mean = x (1 + s^2 dt / (2 sigma)) + v (1 + s^2 (1 - sigma) / (2 sigma)) dt,   std = s sqrt(-dt).

From the paper: the SDE, its discretisation, the noise level ``a``, log-probs averaged over latent elements (as in
the authors' code, so their clip ranges carry over), SDE sampling only inside a window of early steps (their
"Flow-GRPO-Fast" / MixGRPO variant) with plain Euler (ODE) steps elsewhere, classifier-free guidance during
rollouts and training. Our choices: at sigma = 1 (where s_t is infinite) the first sigma below 1 is used in the
denominator; the window start is drawn per rollout batch from the first half of the steps; a noise level of 0 gives
exactly ``scheduler.step`` (tested) with log-prob 0.

Supported pipelines: SD3, Flux and QwenImage (:mod:`verirl.generators.pipelines`: what differs between them).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from typing import Any

import torch

from verirl.errors import VerirlError
from verirl.generators.base import Rollouts, SamplingParams
from verirl.generators.pipelines import FAMILIES, PromptEmbeddings
from verirl.typecheck import setting

SUPPORTED_PIPELINES = tuple(FAMILIES)
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def check_pipeline(pipe: Any) -> None:
    name = type(pipe).__name__
    if name not in SUPPORTED_PIPELINES:
        raise VerirlError(
            f"pipeline {name}: not supported by Flow-GRPO yet; supported: {', '.join(SUPPORTED_PIPELINES)}"
        )


def load_pipeline(name: str, dtype: torch.dtype | str = torch.float32) -> Any:
    """``DiffusionPipeline.from_pretrained`` of a local directory or a Hub id, checked to be supported
    (``dtype`` "auto": as saved)."""
    from pathlib import Path

    try:
        from diffusers import DiffusionPipeline
    except ImportError:
        raise VerirlError("diffusion needs the `diffusion` extra: pip install 'verirl[diffusion]'") from None
    path = Path(name).expanduser()
    if path.exists() and not (path / "model_index.json").is_file():
        raise VerirlError(f"model {name!r}: directory has no model_index.json (expected a diffusers pipeline)")
    kwargs: dict[str, Any] = {} if dtype == "auto" else {"dtype": dtype}
    sd3 = path.exists() and json.loads((path / "model_index.json").read_text()).get("_class_name") == (
        "StableDiffusion3Pipeline"
    )
    if sd3 and not (path / "text_encoder_3").is_dir():
        kwargs.update(text_encoder_3=None, tokenizer_3=None)  # SD3 without T5: allowed, and much smaller
    pipe = DiffusionPipeline.from_pretrained(str(path) if path.exists() else name, **kwargs)
    check_pipeline(pipe)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@dataclass
class DiffusionSampling:
    """How images are sampled. ``sde_window``: number of consecutive SDE steps (0 = every step is SDE)."""

    num_inference_steps: int = setting(10, help="denoising steps per image")
    guidance_scale: float = setting(4.5, help="classifier-free guidance scale (1: none)", ge=0)
    noise_level: float = setting(0.7, help="SDE noise level a of the Flow-SDE steps (> 0)")
    sde_window: int = setting(0, help="consecutive SDE steps in the first half (0 = every step is SDE)")
    height: int | None = setting(None, help="image height in pixels (default: the pipeline's)")
    width: int | None = setting(None, help="image width in pixels (default: the pipeline's)")
    max_sequence_length: int = setting(77, help="T5 tokens (none when the pipeline has no T5)", ge=1)


def sde_gaussian(
    velocity: torch.Tensor,
    latents: torch.Tensor,
    sigma: torch.Tensor | float,
    sigma_next: torch.Tensor | float,
    noise_level: float,
    sigma_below_one: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Flow-SDE step's Gaussian: mean (float32, shaped like ``latents``) and std (B, 1, ...)."""
    x, v = latents.float(), velocity.float()
    shape = (-1, *([1] * (x.ndim - 1)))
    sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(shape)
    sigma_next = torch.as_tensor(sigma_next, dtype=torch.float32, device=x.device).reshape(shape)
    dt = sigma_next - sigma
    denominator = 1 - torch.where(sigma >= 1, torch.full_like(sigma, sigma_below_one), sigma)
    s = noise_level * torch.sqrt(sigma / denominator)
    mean = x * (1 + s**2 / (2 * sigma) * dt) + v * (1 + s**2 * (1 - sigma) / (2 * sigma)) * dt
    return mean, (s * torch.sqrt(-dt)).expand(x.shape[0], *([1] * (x.ndim - 1)))


def sde_step(
    velocity: torch.Tensor,
    latents: torch.Tensor,
    sigma: torch.Tensor | float,
    sigma_next: torch.Tensor | float,
    noise_level: float,
    sigma_below_one: float,
    prev_sample: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One Flow-SDE step: (next latents, log-prob of them per sample, averaged over latent elements).

    ``prev_sample`` given: its log-prob under the step's Gaussian (recomputation during training); otherwise a new
    sample is drawn. ``noise_level`` 0: the Euler (ODE) step, log-prob 0.
    """
    mean, std = sde_gaussian(velocity, latents, sigma, sigma_next, noise_level, sigma_below_one)
    return gaussian_step(mean, std, latents.dtype, noise_level == 0, prev_sample, generator)


def gaussian_step(
    mean: torch.Tensor,
    std: torch.Tensor,
    dtype: torch.dtype,
    deterministic: bool = False,
    prev_sample: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`sde_step` from the step's Gaussian (:func:`sde_gaussian`); ``deterministic``: std 0, the mean is
    exactly the Euler step x + v dt, log-prob 0."""
    if deterministic:
        out = mean if prev_sample is None else prev_sample.float()
        return out.to(dtype), torch.zeros(mean.shape[0], device=mean.device)
    if prev_sample is None:
        gen_device = generator.device if generator is not None else mean.device
        noise = torch.randn(mean.shape, generator=generator, device=gen_device, dtype=torch.float32)
        prev_sample = mean + std * noise.to(mean.device)
    prev = prev_sample.float()
    log_prob = -((prev.detach() - mean) ** 2) / (2 * std**2) - torch.log(std) - _LOG_SQRT_2PI
    return prev.to(dtype), log_prob.mean(dim=tuple(range(1, mean.ndim)))


@dataclass
class ImageRollouts(Rollouts):
    """Rollouts whose completions are images. ``extra`` holds, flattened prompt-major (row = i * n + j):
    ``trajectory`` (B, W+1, C, h, w) before/after each SDE step, ``log_probs`` (B, W), ``means`` (B, W, C, h, w) of
    each step's Gaussian, ``step_indices`` (W,)."""

    images: list[list[Any]] = field(default_factory=list)

    def flat_images(self) -> tuple[list[Any], list[Any]]:
        prompts = [p for p, group in zip(self.prompts, self.images, strict=True) for _ in group]
        return prompts, [im for group in self.images for im in group]


class DiffusionGenerator:
    """Sample images with per-step log-probs from a supported pipeline (``transformer`` may carry a LoRA)."""

    def __init__(self, pipe: Any, sampling: DiffusionSampling | None = None, seed: int = 0):
        check_pipeline(pipe)
        self.pipe = pipe
        self.sampling = sampling = sampling or DiffusionSampling()
        self.family = FAMILIES[type(pipe).__name__](
            pipe, sampling.height, sampling.width, sampling.max_sequence_length
        )
        self.rng = random.Random(seed)
        limit = getattr(pipe, "tokenizer_max_length", None) or getattr(pipe.tokenizer, "model_max_length", 77)
        self.max_prompt_tokens = int(limit)

    # ----------------------------------------------------------------------------------------------- prompts
    def check_prompts(self, prompts: list[str], where: str = "prompt") -> None:
        """One-line error for a prompt the CLIP tokenizers would silently truncate."""
        for i, prompt in enumerate(prompts):
            if not isinstance(prompt, str):
                raise VerirlError(f"{where} {i}: expected a text prompt, got {type(prompt).__name__}")
        lengths = [len(ids) for ids in self.pipe.tokenizer(list(prompts)).input_ids] if prompts else []
        for i, (prompt, n) in enumerate(zip(prompts, lengths, strict=True)):
            if n > self.max_prompt_tokens:
                raise VerirlError(
                    f"{where} {i}: {n} tokens, the pipeline's tokenizer allows {self.max_prompt_tokens} "
                    f"({prompt[:40]!r}...)"
                )

    @torch.no_grad()
    def encode(self, prompts: list[str], guidance_scale: float | None = None) -> PromptEmbeddings:
        cfg = (self.sampling.guidance_scale if guidance_scale is None else guidance_scale) > 1
        return self.family.encode(prompts, cfg)

    # ------------------------------------------------------------------------------------------------ model
    @property
    def device(self) -> torch.device:
        return self.pipe.transformer.device

    def velocity(
        self, transformer: Any, latents: torch.Tensor, timestep: torch.Tensor, emb: PromptEmbeddings, guidance: float
    ) -> torch.Tensor:
        """The (guided) velocity at ``latents``; differentiable when called with grad enabled."""
        t = timestep.to(latents.device).reshape(-1).expand(latents.shape[0])
        return self.family.velocity(transformer, latents, t, emb, guidance)

    def schedule(self, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(timesteps (steps,), sigmas (steps + 1,)) of the pipeline's flow-matching scheduler, set as its pipeline
        sets them."""
        self.family.set_timesteps(steps)
        scheduler = self.pipe.scheduler
        return scheduler.timesteps.clone(), scheduler.sigmas.clone().float()

    def window(self, steps: int) -> list[int]:
        """The SDE steps of one rollout batch: ``sde_window`` consecutive steps starting in the first half."""
        size = self.sampling.sde_window
        if size <= 0 or size >= steps:
            return list(range(steps))
        last_start = max(0, steps // 2 - size)
        start = self.rng.randint(0, last_start)
        return list(range(start, start + size))

    def latent_shape(self, batch: int) -> tuple[int, int, int, int]:
        """The unpacked latent shape (batch, channels, h, w)."""
        return self.family.latent_shape(batch)

    def initial_latents(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Gaussian noise to start from, in the transformer's layout (Flux, QwenImage: packed)."""
        return self.family.initial_latents(batch, generator)

    # --------------------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(
        self,
        emb: PromptEmbeddings,
        seed: int | None = None,
        noise_level: float | None = None,
        window: list[int] | None = None,
        shared_noise: int = 1,
    ) -> dict[str, Any]:
        """Denoise from noise for each row of ``emb``: final latents plus the SDE window's latents and log-probs.
        ``shared_noise`` = n: each run of n consecutive rows starts from the same initial noise (a GRPO group then
        differs only by its SDE steps' noise)."""
        s = self.sampling
        noise_level = s.noise_level if noise_level is None else noise_level
        timesteps, sigmas = self.schedule(s.num_inference_steps)
        window = self.window(len(timesteps)) if window is None else window
        generator = torch.Generator(device="cpu").manual_seed(seed if seed is not None else self.rng.randrange(2**31))
        rows = emb.embeds.shape[0]
        if rows % shared_noise:
            raise ValueError(f"shared_noise: {rows} rows do not form runs of {shared_noise}")
        latents = self.initial_latents(rows // shared_noise, generator).repeat_interleave(shared_noise, dim=0)
        latents = latents.to(self.device, emb.embeds.dtype)
        sigma_below_one = float(sigmas[1]) if len(sigmas) > 1 else 0.999
        trajectory, log_probs, means = [], [], []
        for i, t in enumerate(timesteps):
            v = self.velocity(self.pipe.transformer, latents, t, emb, s.guidance_scale)
            level = noise_level if i in window else 0.0
            if window and i == window[0]:
                trajectory.append(latents)
            mean, std = sde_gaussian(v, latents, sigmas[i], sigmas[i + 1], level, sigma_below_one)
            latents, lp = gaussian_step(mean, std, latents.dtype, level == 0, generator=generator)
            if i in window:
                means.append(mean)  # the step's Gaussian mean, for GRPO-Guard's ratio normalisation in training
                trajectory.append(latents)
                log_probs.append(lp)
        return {
            "latents": latents,
            "trajectory": torch.stack(trajectory, dim=1) if trajectory else None,
            "log_probs": torch.stack(log_probs, dim=1) if log_probs else None,
            "means": torch.stack(means, dim=1) if means else None,
            "step_indices": torch.tensor(window),
            "timesteps": timesteps,
            "sigmas": sigmas,
            "sigma_below_one": sigma_below_one,
        }

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> list[Any]:
        return self.pipe.image_processor.postprocess(self.family.decode_latents(latents), output_type="pil")

    def generate(self, prompts: list[Any], n: int = 1, sampling: SamplingParams | None = None) -> ImageRollouts:
        """The generator interface: ``n`` images per prompt (``sampling.seed`` seeds the noise; the
        temperature/top-p of text sampling have no meaning here and are ignored)."""
        self.check_prompts(prompts)
        emb = self.encode(list(prompts)).repeat(n)
        seed = sampling.seed if sampling is not None else None
        out = self.sample(emb, seed=seed)
        images = self.decode(out["latents"])
        grouped = [images[i * n : (i + 1) * n] for i in range(len(prompts))]
        return ImageRollouts(
            prompts=list(prompts),
            texts=[[""] * n for _ in prompts],
            token_ids=[[[] for _ in range(n)] for _ in prompts],
            extra={k: out[k] for k in ("trajectory", "log_probs", "means", "step_indices", "timesteps", "sigmas")},
            images=grouped,
        )
