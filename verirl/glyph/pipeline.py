"""A tiny SD3 pipeline built from configs: character-level CLIP tokenizers, two small CLIP text encoders, a small
MMDiT (``SD3Transformer2DModel``) and a 4x-downsampling ``AutoencoderKL``. Random weights until trained; the same
class and layout as a real SD3 checkpoint, so everything downstream (``from_pretrained``, LoRA, Flow-GRPO) takes the
real code path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from verirl.glyph.data import DEFAULT_ALPHABET, HEIGHT, WIDTH

SPECIALS = ("<|startoftext|>", "<|endoftext|>")


@dataclass
class TinySD3Config:
    alphabet: str = DEFAULT_ALPHABET
    height: int = HEIGHT
    width: int = WIDTH
    max_prompt_tokens: int = 8  # characters + start/end
    text_hidden: int = 64
    text_layers: int = 2
    layers: int = 4
    heads: int = 4
    head_dim: int = 32
    latent_channels: int = 4
    vae_channels: tuple[int, ...] = (16, 32, 32)  # 3 levels: 4x downsampling
    patch_size: int = 1
    shift: float = 1.0  # FlowMatchEulerDiscreteScheduler shift
    seed: int = 0


def char_tokenizer(alphabet: str, max_length: int) -> Any:
    """A CLIP tokenizer whose tokens are single characters (no merges): ``"40"`` -> ``4``, ``0</w>``."""
    from transformers import CLIPTokenizer

    vocab = {tok: i for i, tok in enumerate(SPECIALS)}
    for ch in alphabet:
        for tok in (ch, ch + "</w>"):
            vocab.setdefault(tok, len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def build_pipeline(config: TinySD3Config | None = None) -> Any:
    """A randomly initialised ``StableDiffusion3Pipeline`` (no T5) of the given size."""
    import torch
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    c = config or TinySD3Config()
    torch.manual_seed(c.seed)
    tokenizers, encoders = [], []
    for _ in range(2):
        tok = char_tokenizer(c.alphabet, c.max_prompt_tokens)
        text_config = CLIPTextConfig(
            vocab_size=len(tok.get_vocab()),
            hidden_size=c.text_hidden,
            intermediate_size=2 * c.text_hidden,
            num_hidden_layers=c.text_layers,
            num_attention_heads=2,
            max_position_embeddings=c.max_prompt_tokens,
            projection_dim=c.text_hidden,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
        tokenizers.append(tok)
        encoders.append(CLIPTextModelWithProjection(text_config))
    factor = 2 ** (len(c.vae_channels) - 1)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * len(c.vae_channels),
        up_block_types=("UpDecoderBlock2D",) * len(c.vae_channels),
        block_out_channels=c.vae_channels,
        layers_per_block=1,
        latent_channels=c.latent_channels,
        norm_num_groups=min(32, c.vae_channels[0]),
        sample_size=c.width,
        scaling_factor=1.0,
        shift_factor=0.0,
    )
    transformer = SD3Transformer2DModel(
        sample_size=c.height // factor,
        patch_size=c.patch_size,
        in_channels=c.latent_channels,
        out_channels=c.latent_channels,
        num_layers=c.layers,
        attention_head_dim=c.head_dim,
        num_attention_heads=c.heads,
        joint_attention_dim=2 * c.text_hidden,
        caption_projection_dim=c.heads * c.head_dim,
        pooled_projection_dim=2 * c.text_hidden,
        pos_embed_max_size=max(c.height, c.width) // factor // c.patch_size,
    )
    pipe = StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=FlowMatchEulerDiscreteScheduler(shift=c.shift),
        vae=vae,
        text_encoder=encoders[0],
        tokenizer=tokenizers[0],
        text_encoder_2=encoders[1],
        tokenizer_2=tokenizers[1],
        text_encoder_3=None,
        tokenizer_3=None,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe
