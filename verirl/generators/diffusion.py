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

Supported pipelines: the SD3 family (``StableDiffusion3Pipeline``: two CLIP encoders, optional T5, classifier-free
guidance) and Flux (``FluxPipeline``: packed 2x2 latents, the guidance scale embedded in the transformer as FLUX.1-dev
is guidance-distilled, the pipeline's linear sigmas with its image-size shift). The SDE acts elementwise, so it is the
same on packed latents) and QwenImage (``QwenImagePipeline``: packed latents, masked variable-length prompt
embeddings, true CFG with the negative prompt " " rescaled to the conditional norm, as the pipeline does).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

import torch

from verirl.errors import VerirlError
from verirl.generators.base import Rollouts, SamplingParams

PIPELINE_KINDS = {"StableDiffusion3Pipeline": "sd3", "FluxPipeline": "flux", "QwenImagePipeline": "qwen"}
SUPPORTED_PIPELINES = tuple(PIPELINE_KINDS)
QWEN_NEGATIVE_PROMPT = " "  # QwenImage's unconditional input for true CFG (as in the pipeline's docs and TextPecker)
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
    sd3 = path.exists() and '"StableDiffusion3Pipeline"' in (path / "model_index.json").read_text()
    if sd3 and not (path / "text_encoder_3").is_dir():
        kwargs.update(text_encoder_3=None, tokenizer_3=None)  # SD3 without T5: allowed, and much smaller
    pipe = DiffusionPipeline.from_pretrained(str(path) if path.exists() else name, **kwargs)
    check_pipeline(pipe)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@dataclass
class DiffusionSampling:
    """How images are sampled. ``sde_window``: number of consecutive SDE steps (0 = every step is SDE)."""

    num_inference_steps: int = 10
    guidance_scale: float = 4.5
    noise_level: float = 0.7
    sde_window: int = 0
    height: int | None = None
    width: int | None = None
    max_sequence_length: int = 77


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
    dtype = latents.dtype
    x, v = latents.float(), velocity.float()
    reduce_dims = tuple(range(1, x.ndim))
    mean, std = sde_gaussian(v, x, sigma, sigma_next, noise_level, sigma_below_one)
    if noise_level == 0:  # std 0: the mean is exactly the Euler step x + v dt
        out = mean if prev_sample is None else prev_sample.float()
        return out.to(dtype), torch.zeros(x.shape[0], device=x.device)
    if prev_sample is None:
        gen_device = generator.device if generator is not None else x.device
        noise = torch.randn(x.shape, generator=generator, device=gen_device, dtype=torch.float32).to(x.device)
        prev_sample = mean + std * noise
    prev = prev_sample.float()
    log_prob = -((prev.detach() - mean) ** 2) / (2 * std**2) - torch.log(std) - _LOG_SQRT_2PI
    return prev.to(dtype), log_prob.mean(dim=reduce_dims)


@dataclass
class PromptEmbeddings:
    embeds: torch.Tensor  # (B, L, D), conditional
    pooled: torch.Tensor | None = None  # (B, P) (SD3, Flux)
    negative: torch.Tensor | None = None  # unconditional (empty prompt), when guidance > 1
    negative_pooled: torch.Tensor | None = None
    mask: torch.Tensor | None = None  # (B, L) valid text tokens (QwenImage: variable-length prompts)
    negative_mask: torch.Tensor | None = None

    def _map(self, fn: Any) -> PromptEmbeddings:
        return PromptEmbeddings(**{k: None if v is None else fn(v) for k, v in vars(self).items()})

    def repeat(self, n: int) -> PromptEmbeddings:
        return self._map(lambda t: t.repeat_interleave(n, dim=0))

    def select(self, index: torch.Tensor | list[int]) -> PromptEmbeddings:
        return self._map(lambda t: t[index])


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
    """Sample images with per-step log-probs from an SD3, Flux or QwenImage pipeline (``transformer`` may carry a
    LoRA)."""

    def __init__(self, pipe: Any, sampling: DiffusionSampling | None = None, seed: int = 0):
        check_pipeline(pipe)
        self.pipe = pipe
        self.kind = PIPELINE_KINDS[type(pipe).__name__]
        self.flux = self.kind == "flux"
        self.packed = self.kind in ("flux", "qwen")  # latents packed 2x2 into tokens, as these pipelines do
        self.sampling = sampling or DiffusionSampling()
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
        if self.flux:  # guidance-distilled: the scale is a transformer input, there is no unconditional pass
            embeds, pooled, _ = self.pipe.encode_prompt(
                prompt=prompts,
                prompt_2=None,
                device=self.device,
                max_sequence_length=self.sampling.max_sequence_length,
            )
            return PromptEmbeddings(embeds, pooled)
        if self.kind == "qwen":
            return self._qwen_encode(prompts, guidance_scale)
        cfg = (self.sampling.guidance_scale if guidance_scale is None else guidance_scale) > 1
        embeds, negative, pooled, negative_pooled = self.pipe.encode_prompt(
            prompt=prompts,
            prompt_2=None,
            prompt_3=None,
            device=self.device,
            do_classifier_free_guidance=cfg,
            max_sequence_length=self.sampling.max_sequence_length,
        )
        return PromptEmbeddings(embeds, pooled, negative if cfg else None, negative_pooled if cfg else None)

    # ------------------------------------------------------------------------------------------------ model
    @property
    def device(self) -> torch.device:
        return self.pipe.transformer.device

    def velocity(
        self, transformer: Any, latents: torch.Tensor, timestep: torch.Tensor, emb: PromptEmbeddings, guidance: float
    ) -> torch.Tensor:
        """The (guided) velocity at ``latents``; differentiable when called with grad enabled."""
        t = timestep.to(latents.device).reshape(-1).expand(latents.shape[0])
        if self.flux:
            return self._flux_velocity(transformer, latents, t, emb, guidance)
        if self.kind == "qwen":
            return self._qwen_velocity(transformer, latents, t, emb, guidance)
        if emb.negative is None or guidance <= 1:
            return transformer(
                hidden_states=latents,
                timestep=t,
                encoder_hidden_states=emb.embeds,
                pooled_projections=emb.pooled,
                return_dict=False,
            )[0]
        out = transformer(
            hidden_states=torch.cat([latents, latents]),
            timestep=torch.cat([t, t]),
            encoder_hidden_states=torch.cat([emb.negative, emb.embeds]),
            pooled_projections=torch.cat([emb.negative_pooled, emb.pooled]),
            return_dict=False,
        )[0]
        uncond, cond = out.chunk(2)
        return uncond + guidance * (cond - uncond)

    def _flux_velocity(
        self, transformer: Any, latents: torch.Tensor, t: torch.Tensor, emb: PromptEmbeddings, guidance: float
    ) -> torch.Tensor:
        """Flux: packed latents (B, h/2 * w/2, 4C), timesteps in [0, 1], the guidance scale embedded (FLUX.1-dev)."""
        n, device, dtype = latents.shape[0], latents.device, latents.dtype
        _, _, h, w = self.latent_shape(1)
        config = self.pipe.transformer.config
        scale = torch.full((n,), guidance, device=device, dtype=torch.float32) if config.guidance_embeds else None
        return transformer(
            hidden_states=latents,
            timestep=t.to(dtype) / 1000,
            guidance=scale,
            pooled_projections=emb.pooled,
            encoder_hidden_states=emb.embeds,
            txt_ids=torch.zeros(emb.embeds.shape[1], 3, device=device, dtype=dtype),
            img_ids=self.pipe._prepare_latent_image_ids(n, h // 2, w // 2, device, dtype),
            return_dict=False,
        )[0]

    def _qwen_encode(self, prompts: list[str], guidance_scale: float | None) -> PromptEmbeddings:
        """QwenImage: variable-length Qwen2.5-VL hidden states with masks; the negative prompt " " for true CFG; both
        padded to one length so that a guided velocity is one batched pass."""
        cfg = (self.sampling.guidance_scale if guidance_scale is None else guidance_scale) > 1

        def encode(texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
            embeds, mask = self.pipe.encode_prompt(prompt=texts, device=self.device)
            if mask is None:  # the pipeline drops an all-ones mask
                mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
            return embeds, mask

        embeds, mask = encode(prompts)
        if not cfg:
            return PromptEmbeddings(embeds, mask=mask)
        negative, negative_mask = encode([QWEN_NEGATIVE_PROMPT] * len(prompts))
        length = max(embeds.shape[1], negative.shape[1])

        def pad(t: torch.Tensor) -> torch.Tensor:
            extra = length - t.shape[1]
            return torch.cat([t, t.new_zeros(t.shape[0], extra, *t.shape[2:])], dim=1) if extra else t

        return PromptEmbeddings(pad(embeds), negative=pad(negative), mask=pad(mask), negative_mask=pad(negative_mask))

    def _qwen_velocity(
        self, transformer: Any, latents: torch.Tensor, t: torch.Tensor, emb: PromptEmbeddings, guidance: float
    ) -> torch.Tensor:
        """QwenImage: packed latents, timesteps in [0, 1], true CFG rescaled to the conditional velocity's norm (as
        the pipeline does), conditional and unconditional rows in one pass."""
        n, dtype = latents.shape[0], latents.dtype
        _, _, h, w = self.latent_shape(1)
        cfg = emb.negative is not None and guidance > 1
        rows = 2 * n if cfg else n
        out = transformer(
            hidden_states=torch.cat([latents, latents]) if cfg else latents,
            timestep=(torch.cat([t, t]) if cfg else t).to(dtype) / 1000,
            encoder_hidden_states=torch.cat([emb.embeds, emb.negative]) if cfg else emb.embeds,
            encoder_hidden_states_mask=torch.cat([emb.mask, emb.negative_mask]) if cfg else emb.mask,
            img_shapes=[[(1, h // 2, w // 2)]] * rows,
            return_dict=False,
        )[0]
        if not cfg:
            return out
        cond, uncond = out.chunk(2)
        guided = uncond + guidance * (cond - uncond)
        return guided * (cond.norm(dim=-1, keepdim=True) / guided.norm(dim=-1, keepdim=True))

    def schedule(self, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(timesteps (steps,), sigmas (steps + 1,)) of the pipeline's flow-matching scheduler (Flux: the pipeline's
        linear sigmas, shifted by image size when the scheduler uses dynamic shifting)."""
        scheduler = self.pipe.scheduler
        if self.packed:
            import numpy as np
            from diffusers.pipelines.flux.pipeline_flux import calculate_shift

            mu = None
            if scheduler.config.get("use_dynamic_shifting"):
                _, _, h, w = self.latent_shape(1)
                c = scheduler.config
                mu = calculate_shift((h // 2) * (w // 2), c.get("base_image_seq_len", 256),
                                     c.get("max_image_seq_len", 4096), c.get("base_shift", 0.5),
                                     c.get("max_shift", 1.15))  # fmt: skip
            scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), device=self.device, mu=mu)
        else:
            scheduler.set_timesteps(steps, device=self.device)
        return scheduler.timesteps.clone(), scheduler.sigmas.clone().float()

    def window(self, steps: int) -> list[int]:
        """The SDE steps of one rollout batch: ``sde_window`` consecutive steps starting in the first half."""
        size = self.sampling.sde_window
        if size <= 0 or size >= steps:
            return list(range(steps))
        last_start = max(0, steps // 2 - size)
        start = self.rng.randint(0, last_start)
        return list(range(start, start + size))

    def image_size(self) -> tuple[int, int]:
        """(height, width) in pixels, checked against the VAE factor and the patch size (Flux: 2x2 packing)."""
        pipe = self.pipe
        size = pipe.default_sample_size * pipe.vae_scale_factor
        height = self.sampling.height or size
        width = self.sampling.width or size
        multiple = pipe.vae_scale_factor * (2 if self.packed else pipe.patch_size)
        if height % multiple or width % multiple:
            raise VerirlError(
                f"sampling: height and width must be multiples of {multiple} for this pipeline, got {height}x{width}"
            )
        return height, width

    def latent_shape(self, batch: int) -> tuple[int, int, int, int]:
        """The unpacked latent shape (batch, channels, h, w)."""
        height, width = self.image_size()
        f = self.pipe.vae_scale_factor
        channels = self.pipe.transformer.config.in_channels // (4 if self.packed else 1)
        return batch, channels, height // f, width // f

    def initial_latents(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Gaussian noise to start from, in the transformer's layout (Flux: packed)."""
        shape = self.latent_shape(batch)
        latents = torch.randn(shape, generator=generator)
        return self.pipe._pack_latents(latents, *shape) if self.packed else latents

    # --------------------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(
        self,
        emb: PromptEmbeddings,
        seed: int | None = None,
        noise_level: float | None = None,
        window: list[int] | None = None,
    ) -> dict[str, Any]:
        """Denoise from noise for each row of ``emb``: final latents plus the SDE window's latents and log-probs."""
        s = self.sampling
        noise_level = s.noise_level if noise_level is None else noise_level
        timesteps, sigmas = self.schedule(s.num_inference_steps)
        window = self.window(len(timesteps)) if window is None else window
        generator = torch.Generator(device="cpu").manual_seed(seed if seed is not None else self.rng.randrange(2**31))
        latents = self.initial_latents(emb.embeds.shape[0], generator).to(self.device, emb.embeds.dtype)
        sigma_below_one = float(sigmas[1]) if len(sigmas) > 1 else 0.999
        trajectory, log_probs, means = [], [], []
        for i, t in enumerate(timesteps):
            v = self.velocity(self.pipe.transformer, latents, t, emb, s.guidance_scale)
            level = noise_level if i in window else 0.0
            if window and i == window[0]:
                trajectory.append(latents)
            if i in window:  # the step's Gaussian mean, for GRPO-Guard's ratio normalisation in training
                means.append(sde_gaussian(v, latents, sigmas[i], sigmas[i + 1], level, sigma_below_one)[0])
            latents, lp = sde_step(v, latents, sigmas[i], sigmas[i + 1], level, sigma_below_one, generator=generator)
            if i in window:
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
        vae = self.pipe.vae
        if self.packed:
            latents = self.pipe._unpack_latents(latents, *self.image_size(), self.pipe.vae_scale_factor)
        if self.kind == "qwen":  # a video VAE: per-channel statistics, one frame
            stats = vae.config.latents_std, vae.config.latents_mean
            std, mean = (torch.tensor(v, device=latents.device).view(1, -1, 1, 1, 1) for v in stats)
            image = vae.decode((latents.float() * std + mean).to(vae.dtype), return_dict=False)[0][:, :, 0]
        else:
            latents = latents / vae.config.scaling_factor + vae.config.shift_factor
            image = vae.decode(latents.to(vae.dtype), return_dict=False)[0]
        return self.pipe.image_processor.postprocess(image, output_type="pil")

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
