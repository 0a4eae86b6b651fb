"""The pipeline families Flow-GRPO samples from: how each diffusers pipeline encodes prompts, predicts the (guided)
velocity, schedules its sigmas and lays out and decodes its latents.

Everything here follows the pipeline's own ``__call__`` (tested: at zero noise our sampler reproduces it), reusing its
helpers (``encode_prompt``, ``_pack_latents`` ...) rather than re-implementing them. The SDE of
:mod:`verirl.generators.diffusion` acts element-wise, so it is the same for packed and unpacked latents.

* **SD3** (``StableDiffusion3Pipeline``; T5 optional): classifier-free guidance with the empty prompt.
* **Flux** (``FluxPipeline``): latents packed 2x2 into tokens, the guidance scale fed to the transformer's guidance
  embedding (FLUX.1-dev is guidance-distilled: one pass, no negative prompt), timesteps in [0, 1], the pipeline's
  linear sigmas shifted by image size.
* **QwenImage** (``QwenImagePipeline``): packed latents, Qwen2.5-VL prompt embeddings of varying length with masks,
  true CFG with the negative prompt " " rescaled to the conditional velocity's norm, a video VAE (one frame,
  per-channel latent statistics). Our choice: conditional and unconditional rows padded to one length and run in one
  pass (as TextPecker's trainer does), where the pipeline runs two.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from verirl.errors import VerirlError

QWEN_NEGATIVE_PROMPT = " "  # QwenImage's unconditional input for true CFG (the pipeline's docs, TextPecker's training)


@dataclass
class PromptEmbeddings:
    embeds: torch.Tensor  # (B, L, D), conditional
    pooled: torch.Tensor | None = None  # (B, P) (SD3, Flux)
    negative: torch.Tensor | None = None  # unconditional, when guidance > 1 (SD3, QwenImage)
    negative_pooled: torch.Tensor | None = None
    mask: torch.Tensor | None = None  # (B, L) valid text tokens (QwenImage: variable-length prompts)
    negative_mask: torch.Tensor | None = None

    def _map(self, fn: Any) -> PromptEmbeddings:
        return PromptEmbeddings(**{k: None if v is None else fn(v) for k, v in vars(self).items()})

    def repeat(self, n: int) -> PromptEmbeddings:
        return self._map(lambda t: t.repeat_interleave(n, dim=0))

    def select(self, index: torch.Tensor | list[int]) -> PromptEmbeddings:
        return self._map(lambda t: t[index])


class SD3Family:
    """``StableDiffusion3Pipeline``: unpacked latents (B, C, h, w), CFG with the empty prompt in one batched pass."""

    packed = False

    def __init__(self, pipe: Any, height: int | None, width: int | None, max_sequence_length: int):
        self.pipe = pipe
        self.height, self.width = height, width
        self.max_sequence_length = max_sequence_length

    @property
    def device(self) -> torch.device:
        return self.pipe.transformer.device

    def encode(self, prompts: list[str], cfg: bool) -> PromptEmbeddings:
        embeds, negative, pooled, negative_pooled = self.pipe.encode_prompt(
            prompt=prompts,
            prompt_2=None,
            prompt_3=None,
            device=self.device,
            do_classifier_free_guidance=cfg,
            max_sequence_length=self.max_sequence_length,
        )
        return PromptEmbeddings(embeds, pooled, negative if cfg else None, negative_pooled if cfg else None)

    def velocity(
        self, transformer: Any, latents: torch.Tensor, t: torch.Tensor, emb: PromptEmbeddings, guidance: float
    ) -> torch.Tensor:
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

    def set_timesteps(self, steps: int) -> None:
        self.pipe.scheduler.set_timesteps(steps, device=self.device)

    def image_size(self) -> tuple[int, int]:
        """(height, width) in pixels, checked against the VAE factor and the patch size (packed: 2x2)."""
        pipe = self.pipe
        size = pipe.default_sample_size * pipe.vae_scale_factor
        height, width = self.height or size, self.width or size
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
        """Gaussian noise to start from, in the transformer's layout."""
        shape = self.latent_shape(batch)
        latents = torch.randn(shape, generator=generator)
        return self.pipe._pack_latents(latents, *shape) if self.packed else latents

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        latents = latents / vae.config.scaling_factor + vae.config.shift_factor
        return vae.decode(latents.to(vae.dtype), return_dict=False)[0]


class FluxFamily(SD3Family):
    """``FluxPipeline``: packed latents (B, h/2 * w/2, 4C), the guidance scale embedded, shifted linear sigmas."""

    packed = True

    def encode(self, prompts: list[str], cfg: bool) -> PromptEmbeddings:
        embeds, pooled, _ = self.pipe.encode_prompt(
            prompt=prompts, prompt_2=None, device=self.device, max_sequence_length=self.max_sequence_length
        )
        return PromptEmbeddings(embeds, pooled)  # guidance-distilled: no unconditional pass

    def velocity(
        self, transformer: Any, latents: torch.Tensor, t: torch.Tensor, emb: PromptEmbeddings, guidance: float
    ) -> torch.Tensor:
        n, device, dtype = latents.shape[0], latents.device, latents.dtype
        _, _, h, w = self.latent_shape(1)
        embedded = self.pipe.transformer.config.guidance_embeds
        scale = torch.full((n,), guidance, device=device, dtype=torch.float32) if embedded else None
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

    def set_timesteps(self, steps: int) -> None:
        """The pipeline's linear sigmas, shifted by the image's token count when the scheduler shifts dynamically."""
        import numpy as np
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        scheduler, mu = self.pipe.scheduler, None
        if scheduler.config.get("use_dynamic_shifting"):
            _, _, h, w = self.latent_shape(1)
            c = scheduler.config
            bounds = (c.get("base_image_seq_len", 256), c.get("max_image_seq_len", 4096))
            mu = calculate_shift((h // 2) * (w // 2), *bounds, c.get("base_shift", 0.5), c.get("max_shift", 1.15))
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), device=self.device, mu=mu)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        latents = self.pipe._unpack_latents(latents, *self.image_size(), self.pipe.vae_scale_factor)
        return super().decode_latents(latents)


class QwenImageFamily(FluxFamily):
    """``QwenImagePipeline``: packed latents, masked prompt embeddings, true CFG rescaled to the conditional norm."""

    def encode(self, prompts: list[str], cfg: bool) -> PromptEmbeddings:
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

    def velocity(
        self, transformer: Any, latents: torch.Tensor, t: torch.Tensor, emb: PromptEmbeddings, guidance: float
    ) -> torch.Tensor:
        n, dtype = latents.shape[0], latents.dtype
        _, _, h, w = self.latent_shape(1)
        cfg = emb.negative is not None and guidance > 1
        out = transformer(
            hidden_states=torch.cat([latents, latents]) if cfg else latents,
            timestep=(torch.cat([t, t]) if cfg else t).to(dtype) / 1000,
            encoder_hidden_states=torch.cat([emb.embeds, emb.negative]) if cfg else emb.embeds,
            encoder_hidden_states_mask=torch.cat([emb.mask, emb.negative_mask]) if cfg else emb.mask,
            img_shapes=[[(1, h // 2, w // 2)]] * (2 * n if cfg else n),
            return_dict=False,
        )[0]
        if not cfg:
            return out
        cond, uncond = out.chunk(2)
        guided = uncond + guidance * (cond - uncond)
        return guided * (cond.norm(dim=-1, keepdim=True) / guided.norm(dim=-1, keepdim=True))

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.pipe.vae
        latents = self.pipe._unpack_latents(latents, *self.image_size(), self.pipe.vae_scale_factor)  # (B, C, 1, h, w)
        std, mean = (torch.tensor(v, device=latents.device).view(1, -1, 1, 1, 1)
                     for v in (vae.config.latents_std, vae.config.latents_mean))  # fmt: skip
        return vae.decode((latents.float() * std + mean).to(vae.dtype), return_dict=False)[0][:, :, 0]


FAMILIES: dict[str, type[SD3Family]] = {
    "StableDiffusion3Pipeline": SD3Family,
    "FluxPipeline": FluxFamily,
    "QwenImagePipeline": QwenImageFamily,
}
