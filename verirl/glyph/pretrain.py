"""``verirl glyph pretrain``: train the tiny SD3 pipeline from scratch on renders of digit strings (CPU, minutes).

Two phases, both ours: (1) the VAE learns to reconstruct renders (L1 + a small KL), then its latent statistics set
``scaling_factor``/``shift_factor`` as in SD3; (2) the transformer and both CLIP text encoders learn SD3's
rectified-flow objective (x_s = (1 - s) x0 + s eps, target eps - x0, s from a logit-normal) with 10 % empty prompts
so that classifier-free guidance works. The result is saved with ``save_pretrained`` and loads with
``StableDiffusion3Pipeline.from_pretrained`` like any SD3 checkpoint.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from verirl.errors import VerirlError
from verirl.glyph.data import HEIGHT, WIDTH, glyph, render
from verirl.glyph.pipeline import TinySD3Config, build_pipeline

logger = logging.getLogger("verirl")


@dataclass
class PretrainConfig:
    n_train: int = 3000
    n_eval: int = 100
    min_len: int = 2
    max_len: int = 4
    vae_steps: int = 600
    vae_lr: float = 2e-3
    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    cfg_dropout: float = 0.1
    eval_steps: int = 10
    guidance_scale: float = 3.0
    seed: int = 0


def _images(texts: list[str], rng: random.Random) -> torch.Tensor:
    """Renders as a (B, 3, H, W) float tensor in [-1, 1]."""
    arrays = np.stack([render(t, jitter=rng) for t in texts])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def train_vae(vae: Any, texts: list[str], config: PretrainConfig, rng: random.Random) -> float:
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config.vae_lr)
    vae.train()
    loss_value = float("nan")
    for step in range(config.vae_steps):
        x = _images(rng.sample(texts, config.batch_size), rng)
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample()).sample
        loss = (recon - x).abs().mean() + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_value = float(loss.detach())
        if step % 100 == 0:
            logger.info("vae step %d/%d  l1+kl %.4f", step, config.vae_steps, loss_value)
    vae.eval()
    with torch.no_grad():
        sample = texts[:512]
        chunks = [sample[i : i + 64] for i in range(0, len(sample), 64)]
        latents = torch.cat([vae.encode(_images(chunk, rng)).latent_dist.mode() for chunk in chunks])
    vae.register_to_config(scaling_factor=float(1.0 / latents.std()), shift_factor=float(latents.mean()))
    return loss_value


def _encode(pipe: Any, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    embeds, _, pooled, _ = pipe.encode_prompt(
        prompt=prompts, prompt_2=None, prompt_3=None, do_classifier_free_guidance=False, max_sequence_length=1
    )
    return embeds, pooled


def train_flow(pipe: Any, texts: list[str], config: PretrainConfig, rng: random.Random) -> float:
    vae, transformer = pipe.vae, pipe.transformer
    modules = [transformer, pipe.text_encoder, pipe.text_encoder_2]
    params = [p for m in modules for p in m.parameters()]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    warmup = max(1, config.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.05, 1 - s / config.steps)
    )
    for m in modules:
        m.train()
    generator = torch.Generator().manual_seed(config.seed)
    ema_loss = None
    for step in range(config.steps):
        batch = rng.sample(texts, config.batch_size)
        with torch.no_grad():
            x0 = vae.encode(_images(batch, rng)).latent_dist.mode()
            x0 = (x0 - vae.config.shift_factor) * vae.config.scaling_factor
        prompts = ["" if rng.random() < config.cfg_dropout else t for t in batch]
        embeds, pooled = _encode(pipe, prompts)
        sigma = torch.sigmoid(torch.randn(len(batch), generator=generator)).view(-1, 1, 1, 1)
        noise = torch.randn(x0.shape, generator=generator)
        xt = (1 - sigma) * x0 + sigma * noise
        pred = transformer(
            hidden_states=xt,
            timestep=sigma.view(-1) * 1000,
            encoder_hidden_states=embeds,
            pooled_projections=pooled,
            return_dict=False,
        )[0]
        loss = ((pred - (noise - x0)) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        value = float(loss.detach())
        ema_loss = value if ema_loss is None else 0.98 * ema_loss + 0.02 * value
        if step % 100 == 0:
            logger.info("flow step %d/%d  loss %.4f", step, config.steps, ema_loss)
    for m in modules:
        m.eval()
    return float(ema_loss or float("nan"))


def ocr_exact_match(pipe: Any, texts: list[str], steps: int, guidance_scale: float, seed: int = 0) -> dict[str, Any]:
    """Share of ``texts`` whose image (one per text, deterministic ODE sampling) OCR reads back exactly."""
    from verirl.generators.diffusion import DiffusionGenerator, DiffusionSampling
    from verirl.rewards.ocr_match import read_lines

    gen = DiffusionGenerator(
        pipe,
        DiffusionSampling(num_inference_steps=steps, guidance_scale=guidance_scale, noise_level=0.0,
                          max_sequence_length=1, height=HEIGHT, width=WIDTH),
        seed=seed,
    )  # fmt: skip
    images = []
    for i in range(0, len(texts), 50):
        emb = gen.encode(texts[i : i + 50])
        images += gen.decode(gen.sample(emb, seed=seed + i)["latents"])
    reads = read_lines(images)
    exact = [r == t for r, t in zip(reads, texts, strict=True)]
    return {
        "exact_match": sum(exact) / len(texts),
        "n": len(texts),
        "examples": list(zip(texts[:8], reads[:8], strict=True)),
    }


@torch.no_grad()
def vae_exact_match(vae: Any, texts: list[str], rng: random.Random) -> float:
    """Share of renders that OCR still reads exactly after a VAE round trip (an upper bound for the pipeline)."""
    from verirl.rewards.ocr_match import read_lines

    recon = vae.decode(vae.encode(_images(texts, rng)).latent_dist.mode()).sample
    arrays = ((recon.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    return sum(r == t for r, t in zip(read_lines(list(arrays)), texts, strict=True)) / len(texts)


def pretrain(out: str | Path, config: PretrainConfig | None = None, model: TinySD3Config | None = None) -> dict:
    """Train and save the glyph pipeline to ``out``; returns (and writes ``pretrain.json``) the figures."""
    config = config or PretrainConfig()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    try:
        train_rows, eval_rows = glyph(config.n_train, config.n_eval, config.seed, min_len=config.min_len,
                                      max_len=config.max_len)  # fmt: skip
    except ValueError as exc:
        raise VerirlError(f"glyph pretrain: {exc}") from None
    texts = [r["text"] for r in train_rows]
    pipe = build_pipeline(model or TinySD3Config(seed=config.seed))
    start = time.time()
    vae_loss = train_vae(pipe.vae, texts, config, rng)
    vae_seconds = time.time() - start
    flow_loss = train_flow(pipe, texts, config, rng)
    train_seconds = time.time() - start
    pipe.save_pretrained(out)
    (out / "glyph_config.json").write_text(json.dumps(asdict(model or TinySD3Config(seed=config.seed)), indent=2))
    held_out = [r["text"] for r in eval_rows]
    result = {
        "config": asdict(config),
        "vae_l1": vae_loss,
        "flow_loss": flow_loss,
        "vae_seconds": round(vae_seconds, 1),
        "train_seconds": round(train_seconds, 1),
        "vae_reconstruction_exact_match": vae_exact_match(pipe.vae, held_out, rng),
        "held_out": ocr_exact_match(pipe, held_out, config.eval_steps, config.guidance_scale, config.seed),
        "train_sample": ocr_exact_match(pipe, texts[: config.n_eval], config.eval_steps, config.guidance_scale),
    }
    (out / "pretrain.json").write_text(json.dumps(result, indent=2))
    return result
