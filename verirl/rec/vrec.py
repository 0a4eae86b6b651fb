"""VRec: verifiable latent reasoning for LLM-based generative recommendation (arXiv 2603.07725, SIGIR'26).

**The paper's (as its released code computes it)**: after the prompt the model "thinks" ``thought_steps`` latent
steps. Each step, a single-query attention layer (RATT: query = the last position's last-layer hidden state, keys
and values = every position so far, RoPE with base 1000 over the full hidden size, scale 1/sqrt(hidden)) gives a
thought vector ``r``. K linear verifier heads V_i (one per item-cluster family) give ``p_i = softmax(V_i r)`` with
normalised entropies ``Ĥ_i = H(p_i) / log C_i``; a router ``g = softmax(W_g r + b)``; the uncertainty
``ω = Σ g_i Ĥ_i``; the guidance ``G = Σ g_i · V_i[argmax p_i]`` (the weight row of each head's predicted class, no
bias); the verified thought ``r* = (1 − ω) r + ω G`` is the input embedding of that step's thought position. One raw
thought-token embedding follows the last ``r*`` (VRec's sequence: prompt, r*_1..r*_T, <|Thought|>, title). Loss
``L_rec + β (L_ver + γ L_mono)``: ``L_ver = mean_{t,b} Σ_i g_i · NLL_i(y_i)`` with the router of the last step and
y_i the target item's cluster under family i; ``L_mono = Σ_{t≥2} exp(mean_{i,b} max(0, H_i^t − H_i^{t−1}))`` over raw
entropies. Both are computed on the raw ``r`` (not ``r*``).

**Ours**: the latent steps run with the LM's KV cache (each step appends one position; the final pass appends
``[r*_T, <|Thought|>, completion]``), so a training sample costs about one forward pass instead of VRec's T + 1
full passes — the same values (causal attention), checked by a test; ``thought_steps: 0`` is the plain generative
recommender (BIGRec/D3-style SFT) and ``mixture: false`` the thought-only model (``r* = r``), the issue's baselines.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

THOUGHT_TOKEN = "<|thought|>"
CONFIG_FILE = "vrec_config.json"
HEADS_FILE = "vrec_heads.safetensors"
CLUSTERS_FILE = "clusters.json"


@dataclass
class VRecConfig:
    thought_steps: int = 1  # 0: no thought, no verifiers (a plain generative recommender)
    mixture: bool = True  # False: thought only (r* = r)
    verifier_names: list[str] = field(default_factory=lambda: ["category", "cf"])
    verifier_sizes: list[int] = field(default_factory=lambda: [25, 25])
    rope_base: float = 1000.0
    thought_token: str = THOUGHT_TOKEN
    thought_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)  # how the catalogue is rebuilt (task options)
    verifiers_trained: bool = False  # set once a verifier or joint stage ran (until then r* = r)

    @property
    def uses_mixture(self) -> bool:
        return self.thought_steps > 0 and self.mixture


def rotate(x: torch.Tensor, positions: torch.Tensor, base: float) -> torch.Tensor:
    """RoPE over the last dimension (rotate-half form) at integer ``positions`` (shaped like ``x[..., 0]``)."""
    dim = x.shape[-1]
    inv = 1.0 / (base ** (torch.arange(0, dim, 2, device=x.device, dtype=torch.float32) / dim))
    angles = positions.to(torch.float32)[..., None] * inv
    cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)
    half = dim // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


class ReasoningAttention(nn.Module):
    """RATT: one query (the last position) attending over all positions' last-layer hidden states."""

    def __init__(self, hidden: int, rope_base: float = 1000.0):
        super().__init__()
        self.q = nn.Linear(hidden, hidden)
        self.k = nn.Linear(hidden, hidden)
        self.v = nn.Linear(hidden, hidden)
        self.rope_base = rope_base

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``hidden`` (B, L, H), ``mask`` (B, L) 1 = real, ``positions`` (B, L) -> r (B, H)."""
        q = rotate(self.q(hidden[:, -1]), positions[:, -1], self.rope_base)
        k = rotate(self.k(hidden), positions, self.rope_base)
        scores = torch.einsum("bh,blh->bl", q.float(), k.float()) / math.sqrt(hidden.shape[-1])
        scores = scores.masked_fill(mask == 0, torch.finfo(scores.dtype).min)
        weights = torch.softmax(scores, dim=-1)
        return torch.einsum("bl,blh->bh", weights, self.v(hidden).float())


@dataclass
class Verified:
    """One mixture-of-verifiers step: the verified thought and what the losses need."""

    r_star: torch.Tensor  # (B, H)
    gate: torch.Tensor  # (B, K)
    log_probs: list[torch.Tensor]  # K x (B, C_i)
    entropies: torch.Tensor  # (K, B), raw
    omega: torch.Tensor  # (B,)


def verify(r: torch.Tensor, heads: nn.ModuleList, gate: nn.Linear) -> Verified:
    """VRec's fusion (module docstring): ``r* = (1 − ω) r + ω Σ g_i V_i[argmax p_i]``."""
    g = torch.softmax(gate(r), dim=-1)
    log_probs = [torch.log_softmax(head(r), dim=-1) for head in heads]
    entropies = torch.stack([-(lp.exp() * lp).sum(-1) for lp in log_probs])
    sizes = torch.tensor([max(head.out_features, 2) for head in heads], dtype=r.dtype, device=r.device)
    omega = (g * (entropies.T / torch.log(sizes))).sum(-1)
    guidance = sum(
        g[:, i : i + 1] * head.weight[lp.argmax(-1)] for i, (head, lp) in enumerate(zip(heads, log_probs, strict=True))
    )
    r_star = (1 - omega)[:, None] * r + omega[:, None] * guidance
    return Verified(r_star, g, log_probs, entropies, omega)


def verifier_loss(steps: list[Verified], classes: torch.Tensor) -> torch.Tensor:
    """``mean_{t,b} Σ_i g_i · NLL_i`` with the last step's router; ``classes`` (B, K)."""
    g = steps[-1].gate
    per_step = []
    for step in steps:
        nll = torch.stack([-lp.gather(1, classes[:, i : i + 1]).squeeze(1) for i, lp in enumerate(step.log_probs)], 1)
        per_step.append((g * nll).sum(-1))
    return torch.stack(per_step).mean()


def monotonicity_loss(steps: list[Verified]) -> torch.Tensor:
    """``Σ_{t≥2} exp(mean_{i,b} max(0, H^t − H^{t−1}))`` (0 with a single step)."""
    terms = [torch.exp(F.relu(b.entropies - a.entropies).mean()) for a, b in zip(steps[:-1], steps[1:], strict=True)]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def positions_of(mask: torch.Tensor) -> torch.Tensor:
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


class VRecModel(nn.Module):
    """A causal LM with VRec's latent thought steps and (optionally) its mixture of verifiers."""

    def __init__(self, lm: Any, config: VRecConfig):
        super().__init__()
        self.lm = lm
        self.settings = config
        hidden = lm.config.hidden_size
        if config.thought_steps > 0:
            self.attention = ReasoningAttention(hidden, config.rope_base)
        if config.uses_mixture:
            self.verifiers = nn.ModuleList(nn.Linear(hidden, c) for c in config.verifier_sizes)
            self.gate = nn.Linear(hidden, len(config.verifier_sizes))
        # VRec's stage 1 trains the thought without verifiers (r* = r); they act once trained (or when set)
        self.verifying = config.uses_mixture and config.verifiers_trained

    def head_modules(self) -> dict[str, nn.Module]:
        names = ("attention", "verifiers", "gate")
        return {n: getattr(self, n) for n in names if hasattr(self, n)}

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(ids)

    def _thought(self, batch: int) -> torch.Tensor:
        ids = torch.full((batch, 1), self.settings.thought_id, device=self.lm.device)
        return self._embed(ids)

    @dataclass
    class Latent:
        cache: Any  # the LM's KV cache over the prompt and r*_1..r*_{T-1}
        mask: torch.Tensor  # (B, L) of what the cache holds
        positions: torch.Tensor  # (B, L)
        thoughts: list[torch.Tensor]  # r*_1..r*_T, each (B, H)
        steps: list[Verified]  # the mixture's outputs (empty without the mixture)

    def latent(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> VRecModel.Latent:
        """The T latent steps over a left-padded prompt; r*_T is not yet in the cache (the caller appends it)."""
        decoder = self.lm.get_decoder()
        mask, pos = prompt_mask, positions_of(prompt_mask)
        out = decoder(inputs_embeds=self._embed(prompt_ids), attention_mask=mask, position_ids=pos, use_cache=True)
        hidden, cache = out.last_hidden_state, out.past_key_values
        thoughts: list[torch.Tensor] = []
        steps: list[Verified] = []
        for t in range(self.settings.thought_steps):
            r = self.attention(hidden, mask, pos)
            if self.verifying:
                steps.append(verify(r, self.verifiers, self.gate))
                r = steps[-1].r_star
            thoughts.append(r)
            if t + 1 < self.settings.thought_steps:  # the next step sees r*_t
                new_pos = pos[:, -1:] + 1
                mask, pos = torch.cat([mask, torch.ones_like(mask[:, :1])], 1), torch.cat([pos, new_pos], 1)
                out = decoder(inputs_embeds=r[:, None].to(hidden.dtype), attention_mask=mask, position_ids=new_pos,
                              past_key_values=cache, use_cache=True)  # fmt: skip
                hidden, cache = torch.cat([hidden, out.last_hidden_state], 1), out.past_key_values
        return VRecModel.Latent(cache, mask, pos, thoughts, steps)

    def prefix(self, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``inputs_embeds`` and mask for generation: the prompt, r*_1..r*_T, the raw thought token."""
        emb = self._embed(prompt_ids)
        if self.settings.thought_steps == 0:
            return emb, prompt_mask
        thoughts = torch.stack(self.latent(prompt_ids, prompt_mask).thoughts, 1).to(emb.dtype)
        embeds = torch.cat([emb, thoughts, self._thought(emb.shape[0]).to(emb.dtype)], 1)
        ones = torch.ones((emb.shape[0], thoughts.shape[1] + 1), dtype=prompt_mask.dtype, device=prompt_mask.device)
        return embeds, torch.cat([prompt_mask, ones], 1)

    def forward(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        completion_ids: torch.Tensor,
        completion_mask: torch.Tensor,
        classes: torch.Tensor | None = None,
        v_weight: float = 0.0,
        mono_weight: float = 0.0,
    ) -> dict[str, torch.Tensor]:
        """Loss of a batch: left-padded prompts, right-padded completions (EOS included), target clusters (B, K)."""
        decoder = self.lm.get_decoder()
        c_emb = self._embed(completion_ids)
        n = completion_ids.shape[1]
        if self.settings.thought_steps == 0:
            mask = torch.cat([prompt_mask, completion_mask], 1)
            out = decoder(inputs_embeds=torch.cat([self._embed(prompt_ids), c_emb], 1), attention_mask=mask,
                          position_ids=positions_of(mask))  # fmt: skip
            hidden = out.last_hidden_state[:, prompt_ids.shape[1] - 1 : -1]
            latent = None
        else:
            latent = self.latent(prompt_ids, prompt_mask)
            segment = torch.cat(
                [latent.thoughts[-1][:, None].to(c_emb.dtype), self._thought(c_emb.shape[0]), c_emb], 1
            )
            seg_mask = torch.cat([torch.ones_like(prompt_mask[:, :2]), completion_mask], 1)
            mask = torch.cat([latent.mask, seg_mask], 1)
            start = latent.positions[:, -1:] + 1
            pos = start + torch.arange(segment.shape[1], device=start.device)[None]
            out = decoder(inputs_embeds=segment, attention_mask=mask, position_ids=pos,
                          past_key_values=latent.cache)  # fmt: skip
            hidden = out.last_hidden_state[:, 1 : 1 + n]
        logits = self.lm.get_output_embeddings()(hidden).float()
        labels = completion_ids.masked_fill(completion_mask == 0, -100)
        rec = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
        zero = rec.new_zeros(())
        ver = mono = zero
        if latent is not None and latent.steps and classes is not None:
            ver = verifier_loss(latent.steps, classes)
            mono = monotonicity_loss(latent.steps).to(rec.device)
        loss = (
            rec + v_weight * (ver + mono_weight * mono) if (v_weight and latent is not None and latent.steps) else rec
        )
        return {"loss": loss, "rec_loss": rec.detach(), "ver_loss": ver.detach(), "mono_loss": mono.detach()}


def add_thought_token(lm: Any, tokenizer: Any, config: VRecConfig) -> None:
    """Give the tokenizer VRec's thought token and the LM a row for it (a no-op without thought steps)."""
    if config.thought_steps == 0:
        return
    if config.thought_token not in tokenizer.get_vocab():
        tokenizer.add_special_tokens({"additional_special_tokens": [config.thought_token]})
    config.thought_id = tokenizer.convert_tokens_to_ids(config.thought_token)
    if config.thought_id >= lm.get_input_embeddings().num_embeddings:
        lm.resize_token_embeddings(len(tokenizer))


def save_vrec(model: VRecModel, tokenizer: Any, path: str | Path, clusters: dict | None = None) -> None:
    """A VRec model folder: the LM (``from_pretrained``-loadable on its own), the tokenizer, the heads
    (``vrec_heads.safetensors``), ``vrec_config.json`` and the item clusters it was trained with."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.lm.save_pretrained(path)
    tokenizer.save_pretrained(path)
    heads = {f"{name}.{k}": v.detach().contiguous().cpu() for name, mod in model.head_modules().items()
             for k, v in mod.state_dict().items()}  # fmt: skip
    if heads:
        save_file(heads, str(path / HEADS_FILE))
    (path / CONFIG_FILE).write_text(json.dumps(asdict(model.settings), indent=2) + "\n")
    if clusters is not None:
        (path / CLUSTERS_FILE).write_text(json.dumps(clusters) + "\n")


def is_vrec_dir(path: str | Path) -> bool:
    return (Path(path) / CONFIG_FILE).is_file()


def read_config(path: str | Path) -> VRecConfig:
    data = json.loads((Path(path) / CONFIG_FILE).read_text())
    known = {f for f in VRecConfig.__dataclass_fields__}
    return VRecConfig(**{k: v for k, v in data.items() if k in known})


def load_vrec(path: str | Path, dtype: Any = None) -> tuple[VRecModel, Any]:
    """(model, tokenizer) from :func:`save_vrec`'s folder."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    config = read_config(path)
    lm = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = VRecModel(lm, config)
    if (path / HEADS_FILE).is_file():
        heads = load_file(str(path / HEADS_FILE))
        for name, module in model.head_modules().items():
            module.load_state_dict({k[len(name) + 1 :]: v for k, v in heads.items() if k.startswith(name + ".")})
    return model, tokenizer


def load_weights(model: VRecModel, path: str | Path) -> None:
    """Load a :func:`save_vrec` folder's weights into ``model`` in place (a checkpoint being resumed)."""
    from safetensors.torch import load_file

    path = Path(path)
    state = load_file(str(path / "model.safetensors"))
    missing, unexpected = model.lm.load_state_dict(state, strict=False)
    tied = {"lm_head.weight"} if getattr(model.lm.config, "tie_word_embeddings", False) else set()
    if set(missing) - tied or unexpected:
        raise ValueError(
            f"{path}: weights do not match the model (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    if (path / HEADS_FILE).is_file():
        heads = load_file(str(path / HEADS_FILE))
        for name, module in model.head_modules().items():
            module.load_state_dict({k[len(name) + 1 :]: v for k, v in heads.items() if k.startswith(name + ".")})
