"""Helpers for tests and examples: a tiny random causal LM with a tiny trained tokenizer, built offline in ~1 s, and a
tiny random Flux and QwenImage pipelines.

The tokenizer is a byte-level BPE trained on a small arithmetic/chat corpus (vocabulary 512) with a ChatML chat
template, so conversational prompts, generation and GRPO run exactly as with a real model, only fast: sampling
from a 49k vocabulary costs ~12 ms per token on a CPU, from 512 almost nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "What is {a}+{b}? Answer with just the number.",
    "{a} + {b} = {c}",
    "The answer is {c}.",
    "You are a helpful assistant.",
]


def tiny_tokenizer(vocab_size: int = 512) -> Any:
    """A byte-level BPE tokenizer (ChatML specials, pad = eos) trained in memory on a tiny corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    texts = [t.format(a=a, b=b, c=a + b) for a in range(0, 100, 7) for b in range(0, 100, 11) for t in _CORPUS]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHATML
    return fast


def tiny_model(path: str | Path, seed: int = 0, layers: int = 2, hidden: int = 64, max_positions: int = 512) -> Path:
    """Save a random 2-layer Llama with :func:`tiny_tokenizer` into ``path`` (a ``from_pretrained`` folder)."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    path = Path(path)
    tokenizer = tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


class NoisyArithmeticGenerator:
    """A model-free :class:`~verirl.generators.base.Generator` for tests and quick benchmarks.

    It answers "What is a+b?"-style prompts the way a small LM does: right with probability ``p_correct``, otherwise
    off by a small error, in a few output formats. Deterministic for a given seed. It exists so that code which
    consumes groups of generations (evaluators, best-of-K, DPO pairs) can be exercised in seconds; measurements that
    matter use real models.
    """

    _QUESTION = r"(-?\d+)\s*([+\-*])\s*(-?\d+)"
    _FORMATS = (
        "{a} {op} {b} = {x}",
        "{a} {op} {b} = {x}",
        "The answer is {x}.",
        "{x}",
        "{a}{op}{b}={x}\n\nSo it is {x}.",
    )
    _ERRORS = (-10, -3, -2, -1, 1, 2, 3, 10)

    def __init__(self, p_correct: float = 0.3, seed: int = 0):
        self.p_correct = p_correct
        self.seed = seed

    def generate(self, prompts: list, n: int = 1, sampling: Any = None) -> Any:
        import random
        import re

        from verirl.generators.base import Rollouts
        from verirl.rewards.base import completion_text

        rng = random.Random(self.seed if sampling is None or sampling.seed is None else sampling.seed)
        texts = []
        for prompt in prompts:
            text = completion_text(prompt) if isinstance(prompt, list) else str(prompt)
            match = re.search(self._QUESTION, text)
            group = []
            for _ in range(n):
                if not match:
                    group.append("I don't know.")
                    continue
                a, op, b = int(match.group(1)), match.group(2), int(match.group(3))
                truth = {"+": a + b, "-": a - b, "*": a * b}[op]
                x = truth if rng.random() < self.p_correct else truth + rng.choice(self._ERRORS)
                group.append(rng.choice(self._FORMATS).format(a=a, b=b, op=op, x=x))
            texts.append(group)
        ids = [[list(t.encode()) for t in group] for group in texts]
        return Rollouts(prompts=list(prompts), texts=texts, token_ids=ids)


_SCRIPTED_LM = """
import json
from pathlib import Path

import torch
from transformers import AutoTokenizer, LlamaForCausalLM


class ScriptedLlama(LlamaForCausalLM):
    # A tiny Llama whose generate() writes scripted turns: script.json maps a substring of the prompt to the
    # texts of successive turns; the turn is the number of tool results already in the prompt.

    def _script(self):
        if not hasattr(self, "_turns"):
            root = Path(self.config._name_or_path)
            self._turns = json.loads((root / "script.json").read_text())
            self._tok = AutoTokenizer.from_pretrained(root)
        return self._turns, self._tok

    def generate(self, input_ids=None, attention_mask=None, **kwargs):
        turns, tok = self._script()
        rows = []
        for ids, mask in zip(input_ids.tolist(), attention_mask.tolist()):
            prompt = tok.decode([i for i, m in zip(ids, mask) if m])
            texts = next((t for key, t in turns.items() if key in prompt), turns.get("", ["done"]))
            turn = prompt.count("<tool_response>")
            text = texts[min(turn, len(texts) - 1)]
            rows.append(ids + tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id])
        width = max(len(r) for r in rows)
        pad = tok.pad_token_id
        return torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=input_ids.device)
"""


def scripted_tool_model(path: str | Path, script: dict[str, list[str]], seed: int = 0) -> Path:
    """A tiny model (trust_remote_code) whose ``generate`` follows ``script`` instead of sampling: for a prompt
    containing a key, turn t (t tool results so far) writes ``script[key][t]`` (the last entry repeats; key ``""``
    is the default). Everything else — loading, forward, loss, TRL's tool loop and masking — is the real code path:
    tests of multi-turn tool rollouts use it because a random tiny model never emits a tool call."""
    import json

    path = tiny_model(path, seed=seed, max_positions=8192)  # tool schemas + turns: thousands of byte-level tokens
    (path / "scripted_lm.py").write_text(_SCRIPTED_LM)
    (path / "script.json").write_text(json.dumps(script))
    config_file = path / "config.json"
    config = json.loads(config_file.read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "scripted_lm.ScriptedLlama"}
    config["architectures"] = ["ScriptedLlama"]
    config_file.write_text(json.dumps(config, indent=2))
    return path


def tiny_flux_pipeline(height: int = 32, width: int = 64, seed: int = 0) -> Any:
    """A random ``FluxPipeline`` a few MB in size (character-level CLIP and T5 tokenizers, 1 + 1 Flux blocks, a 4x
    VAE, guidance embedding as FLUX.1-dev): the real pipeline classes, for tests of the Flux code path offline."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel, T5Tokenizer

    from verirl.glyph.data import DEFAULT_ALPHABET
    from verirl.glyph.pipeline import char_tokenizer

    torch.manual_seed(seed)
    clip_tokenizer = char_tokenizer(DEFAULT_ALPHABET, 8)
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(clip_tokenizer.get_vocab()),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=8,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    specials = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    t5_tokenizer = T5Tokenizer(vocab=specials + [(ch, -1.0) for ch in DEFAULT_ALPHABET], extra_ids=0)
    t5 = T5EncoderModel(
        T5Config(vocab_size=len(t5_tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=1, num_heads=2)
    )
    vae = AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=width,
        scaling_factor=1.0,
        shift_factor=0.0,
    )
    transformer = FluxTransformer2DModel(
        in_channels=16,  # 4 latent channels x 2x2 packing
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_image_seq_len=16, max_image_seq_len=256
    )
    pipe = FluxPipeline(scheduler, vae, clip, clip_tokenizer, t5, t5_tokenizer, transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_qwen_image_pipeline(seed: int = 0) -> Any:
    """A random ``QwenImagePipeline`` a few MB in size (byte-level Qwen2 tokenizer without merges, a 1-layer
    Qwen2.5-VL text encoder, a 1-block QwenImage transformer, a 2x video VAE): the real classes, for tests."""
    import torch
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )
    from tokenizers import pre_tokenizers
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2Tokenizer

    torch.manual_seed(seed)
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # the pipeline's prompt template uses ChatML
    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab |= {tok: len(vocab) + i for i, tok in enumerate(specials)}
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], additional_special_tokens=specials[1:])
    text = dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                bos_token_id=vocab["<|endoftext|>"], eos_token_id=vocab["<|im_end|>"],
                rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]})  # fmt: skip
    vision = dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=32,
                  fullatt_block_indexes=[0])  # fmt: skip
    encoder = Qwen2_5_VLForConditionalGeneration(Qwen2_5_VLConfig(text_config=text, vision_config=vision))
    vae = AutoencoderKLQwenImage(base_dim=16, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[False],
                                 latents_mean=[0.0] * 4, latents_std=[1.0] * 4)  # fmt: skip
    transformer = QwenImageTransformer2DModel(patch_size=2, in_channels=16, out_channels=4, num_layers=1,
                                              attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                              axes_dims_rope=(4, 6, 6))  # fmt: skip
    scheduler = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_image_seq_len=16, max_image_seq_len=256
    )
    pipe = QwenImagePipeline(scheduler, vae, encoder, tokenizer, transformer)
    pipe.set_progress_bar_config(disable=True)
    return pipe
