"""The FlashEvaluator's configuration and building blocks (:mod:`verirl.verifiers.flash_evaluator`; its docstring
cites the paper and says which parts are ours): candidates packed end to end into one row, the candidate layer
(self-attention within a candidate, cross-attention to the group's context projected once) and the group-token layer
(every candidate token attends to the tokens of the whole group)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from verirl.typecheck import setting


@dataclass
class FlashEvaluatorConfig:
    """The evaluator's size and options (``evaluator.model`` in a recipe)."""

    d_model: int = setting(128, help="width of every layer", ge=8)
    heads: int = setting(4, help="attention heads (must divide d_model)", ge=1)
    context_layers: int = setting(3, help="layers over the prompt, paid once per group", ge=0)
    candidate_layers: int = setting(1, help="layers per unique candidate (pointwise: with the context)", ge=0)
    cross_layers: int = setting(2, help="set layers where the pooled candidates attend to each other", ge=0)
    token_cross_layers: int = setting(1, help="layers where candidate tokens attend to the group's tokens", ge=0)
    ff_mult: int = setting(4, help="feed-forward width as a multiple of d_model", ge=1)
    dropout: float = setting(0.0, help="dropout probability", ge=0, lt=1)
    max_context_tokens: int = setting(192, help="prompt bytes kept (the end of the prompt)", ge=1)
    max_candidate_tokens: int = setting(64, help="candidate bytes kept (the start of each candidate)", ge=1)
    cross_candidate: bool = setting(True, help="score candidates jointly (false: the pointwise baseline)")
    agreement: str | None = setting(None, help="an answer extractor: add answer-agreement features per candidate")
    dedup: bool = setting(True, help="encode identical candidates of a group once")


class Packing:
    """Where the tokens of candidates packed into one row (T, ...) sit in the padded batch (n, width, ...).

    Scoring a group packs its candidates' tokens end to end, so the per-token work (norms, projections, the
    feed-forward, cross-attention to the shared context) skips the padding a batch of mixed lengths carries (about a
    third of the positions for sampled LLM answers); only self-attention within a candidate runs padded."""

    def __init__(self, rows: list[list[int]], device: torch.device | str = "cpu"):
        lengths = torch.tensor([len(r) for r in rows], device=device)
        self.n, self.width = len(rows), int(lengths.max())
        self.ids = torch.tensor([i for r in rows for i in r], dtype=torch.long, device=device)
        self.row = row = torch.repeat_interleave(torch.arange(self.n, device=device), lengths)
        starts = torch.repeat_interleave(lengths.cumsum(0) - lengths, lengths)
        self.positions = torch.arange(len(self.ids), device=device) - starts
        self.index = row * self.width + self.positions  # flat position in the (n * width) padded layout
        padded = bool((lengths < self.width).any())
        self.mask = torch.arange(self.width, device=device) < lengths[:, None] if padded else None  # (n, width)

    def pad(self, x: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """(T, f) packed -> (n, width, f) padded with ``fill``."""
        out = x.new_full((self.n * self.width, x.shape[-1]), fill)
        return out.index_copy_(0, self.index, x).view(self.n, self.width, -1)

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """(n, width, f) padded -> (T, f) packed."""
        return x.reshape(self.n * self.width, -1).index_select(0, self.index)


def encoder_layer(config: FlashEvaluatorConfig) -> nn.Module:
    return nn.TransformerEncoderLayer(
        config.d_model,
        config.heads,
        config.d_model * config.ff_mult,
        config.dropout,
        batch_first=True,
        norm_first=True,
    )


class CandidateLayer(nn.Module):
    """Pre-norm block: self-attention within a candidate, cross-attention to the context, feed-forward.

    Unlike ``nn.TransformerDecoderLayer`` the context's keys and values are projected once per group
    (:meth:`memory`) and shared by all candidates, instead of once per candidate.
    """

    def __init__(self, d: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm_self, self.norm_cross, self.norm_ff = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.cross_q = nn.Linear(d, d)
        self.cross_kv = nn.Linear(d, 2 * d)
        self.cross_out = nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff, d))
        self.dropout = dropout

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        n, length, d = x.shape
        return x.view(n, length, self.heads, d // self.heads).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        n, h, length, dh = x.shape
        return x.transpose(1, 2).reshape(n, length, h * dh)

    def memory(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, d) encoded context -> keys and values (B, heads, C, d/heads), computed once per group."""
        k, v = self.cross_kv(context).chunk(2, dim=-1)
        return self._heads(k), self._heads(v)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor, memory: tuple[torch.Tensor, torch.Tensor], memory_mask: torch.Tensor
    ) -> torch.Tensor:
        """x (N, L, d) with mask (N, L); memory keys/values (N or 1, heads, C, dh) with memory_mask (N or 1, C)."""
        drop = self.dropout if self.training else 0.0
        q, k, v = (self._heads(t) for t in self.qkv(self.norm_self(x)).chunk(3, dim=-1))
        attn = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask[:, None, None, :], dropout_p=drop)
        x = x + self.out(self._merge(attn))
        q = self._heads(self.cross_q(self.norm_cross(x)))
        n = q.shape[0]
        k, v = (t.expand(n, -1, -1, -1) for t in memory)
        cross_mask = memory_mask[:, None, None, :].expand(n, -1, -1, -1)
        attn = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=cross_mask, dropout_p=drop)
        x = x + self.cross_out(self._merge(attn))
        return x + self.ff(self.norm_ff(x))

    def forward_packed(
        self, x: torch.Tensor, packing: Packing, memory: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        """The same block on packed tokens x (T, d) of candidates that share one unpadded context (memory keys/values
        (1, heads, C, dh)): all T queries attend to the context in one call, without per-candidate copies."""
        qkv = packing.pad(self.qkv(self.norm_self(x)))
        q, k, v = (self._heads(t) for t in qkv.chunk(3, dim=-1))
        mask = None if packing.mask is None else packing.mask[:, None, None, :]
        attn = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.out(packing.unpad(self._merge(attn)))
        q = self._heads(self.cross_q(self.norm_cross(x)).unsqueeze(0))
        attn = nn.functional.scaled_dot_product_attention(q, *memory)
        x = x + self.cross_out(self._merge(attn)[0])
        return x + self.ff(self.norm_ff(x))


class GroupTokenLayer(nn.Module):
    """Pre-norm block: every candidate token attends to the tokens of all the candidates of its group, then a
    feed-forward — the cross-candidate interaction at token level, before pooling (e.g. a digit of one answer can
    look at the same place in the others). A learned per-head bias marks the keys of the query's own candidate;
    a candidate encoded once for several identical ones weighs as many times as it occurs (``log_count`` bias), so
    deduplication does not change the result. The pointwise baseline runs the same block on groups of one (plain
    self-attention within the candidate): same parameters, no comparison."""

    def __init__(self, d: int, heads: int, ff: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.norm_attn, self.norm_ff = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.out = nn.Linear(d, d)
        self.own_bias = nn.Parameter(torch.zeros(heads))
        self.ff = nn.Sequential(nn.Linear(d, ff), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff, d))
        self.dropout = dropout

    def forward(
        self,
        x: torch.Tensor,
        rows: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        log_count: torch.Tensor | None = None,
        own_only: bool = False,
    ) -> torch.Tensor:
        """x (G, N, d): the tokens of G groups; rows (N,): which candidate each position belongs to; key_mask
        (G, N): positions that may be attended to; log_count (G or 1, N): log multiplicity of each key's candidate;
        ``own_only``: attend within the own candidate only (pointwise)."""
        g, n, d = x.shape
        q, k, v = (
            t.view(g, n, self.heads, d // self.heads).transpose(1, 2) for t in self.qkv(self.norm_attn(x)).chunk(3, -1)
        )
        own = rows[:, None] == rows[None, :]
        own_bias = self.own_bias.to(x.dtype)[None, :, None, None]
        if log_count is None:
            bias = own_bias * own.to(x.dtype)  # (1, heads, N, N)
        else:  # a key row standing for c copies: the query's own copy (weight e^bias) and c - 1 other ones
            counts = log_count[:, None, None, :]
            bias = torch.where(own, torch.logaddexp(own_bias, torch.log(torch.expm1(counts))), counts)
        if key_mask is not None:
            bias = bias.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        if own_only:
            bias = bias.masked_fill(~own, float("-inf"))
        drop = self.dropout if self.training else 0.0
        attn = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=drop)
        x = x + self.out(attn.transpose(1, 2).reshape(g, n, d))
        return x + self.ff(self.norm_ff(x))
