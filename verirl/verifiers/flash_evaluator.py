"""FlashEvaluator: score K generations jointly, in one forward pass, and choose among them.

Paper: C. Feng, Y. Pu, ..., K. Gai, "FlashEvaluator: Expanding Search Space with Parallel Evaluation",
arXiv:2603.02565 (2026). No code was released and only the abstract and secondary summaries were available
(docs/flash_evaluator.md).

From the paper: in a generator–evaluator setup, an independent evaluator scores each of K candidates on its own
(K forward passes, no comparison between candidates); FlashEvaluator encodes the shared context once, shares
information across the candidates and scores all K in a single pass, so cost is sublinear in K and candidates are
compared directly. Trained listwise (softmax cross-entropy over the K candidates against list-level rewards).

Our design (the architecture details are not published):

* **Backbone: a small byte-level transformer trained from scratch**, not a pretrained LM's hidden states. Scoring
  must cost far less than generating the candidates; a 135M LM's forward pass costs about as much as generation
  itself on a CPU, while a ~1M-parameter encoder scores a group of 16 in milliseconds and trains on a CPU in
  minutes. Byte-level input needs no tokenizer and reads numbers digit by digit. Sizes are configurable; the
  default puts depth where it is shared (3 context layers, 1 candidate layer): at about the size of 2+2 it
  selects about as well and scores a group faster (measurements: docs/benchmarks.md, section FlashEvaluator).
* **Context encoded once**: a transformer encoder over the (chat-flattened) prompt.
* **Candidates encoded jointly**: all K candidates go through one batched pass of decoder layers (self-attention
  within a candidate, cross-attention to the shared context encoding); identical candidates are encoded once and
  shared (``dedup``), which is where sampled LLM outputs (that repeat themselves) make the cost sublinear in K.
* **Cross-candidate stage**: set attention over the K pooled candidate vectors (no positions: the scores are
  permutation-equivariant), so each candidate's score depends on the others, e.g. how many agree with it.
* **Token-level cross-candidate layers** (``token_cross_layers``, default 1): after the candidate layers, every
  candidate token attends to the tokens of all the group's candidates (a learned bias marks its own candidate's
  keys; a deduplicated candidate weighs as often as it occurs, so deduplication changes no score), before pooling —
  the abstract's "candidates share information" taken literally, so a digit of one answer can look at the same
  place in the others. It is the default because it selects better where candidates inform each other, at the
  cost of training time (measurements: docs/benchmarks.md, section FlashEvaluator). ``0`` leaves only the
  pooled-vector stage below. The pointwise baseline runs the same layers within its one candidate (same
  parameters, no comparison).
* **Answer agreement** (optional, ``agreement: <extractor>``): each candidate's vector gets a learned embedding of
  how many candidates of the group give the same final answer (verirl.answers extractors) — the signal majority
  voting uses, handed to the cross-candidate stage directly instead of being learned from bytes. It exists only
  for the joint evaluator: the pointwise baseline computes it on a group of one (constant).
* **One score per candidate** from a linear head; ``select`` is the argmax.
* **Training**: listwise softmax cross-entropy against ``softmax(reward / temperature)`` over the group (ties share
  the target; groups whose rewards are all equal carry no listwise signal and are left out of it), plus, by
  default, the per-candidate loss of the pointwise baseline on every group at weight 0.3 (``pointwise_weight``:
  all-wrong groups still teach what a wrong answer looks like; 0.3 rather than 1.0 leaves more of the objective to
  the comparison; measurements: docs/benchmarks.md, section FlashEvaluator), optionally plus a pairwise logistic
  loss. The epoch that ranks best on a validation split of the training groups is kept (small group sets overfit
  within a few epochs). "Best" is the share of candidate pairs ordered like their rewards (``select_by:
  pairwise``), not top-1 accuracy: a 10 % split holds only a few dozen groups where the choice matters, and
  top-1 on those was too noisy from epoch to epoch and kept early, worse epochs (measurements: docs/benchmarks.md,
  section FlashEvaluator).
* **Pointwise baseline** (``cross_candidate=False``): the same modules and parameter count, but every candidate is
  scored alone (its own forward pass, context re-encoded, the set stage sees a set of one) and trained with
  per-candidate binary cross-entropy (or MSE for non-binary rewards) — an independent evaluator.

Defined behaviour for awkward input: no candidates -> no scores and ``select`` returns None; K = 1 -> one score,
``select`` returns 0; empty candidates are encoded as an explicit EMPTY token; candidates longer than
``max_candidate_tokens`` bytes keep their first bytes, contexts longer than ``max_context_tokens`` keep their last
bytes (where a chat prompt's question is); mixed lengths are padded and masked.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

from verirl.answers import vote_counts
from verirl.verifiers.flash_modules import (
    CandidateLayer,
    FlashEvaluatorConfig,
    GroupTokenLayer,
    Packing,
    encoder_layer,
)
from verirl.verifiers.groups import best_index

PAD, BOS, EMPTY, OFFSET = 0, 1, 2, 3
AGREEMENT_FEATURES = 3
VOCAB = 256 + OFFSET
CONFIG_FILE = "evaluator_config.json"
WEIGHTS_FILE = "model.safetensors"


def context_text(context: Any) -> str:
    """A prompt as text: strings as is, chat messages as ``role: content`` lines."""
    if isinstance(context, str):
        return context
    if isinstance(context, list):
        return "\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in context if isinstance(m, dict))
    return "" if context is None else str(context)


def encode_bytes(text: str, max_len: int, keep: str = "start") -> list[int]:
    """UTF-8 bytes shifted past the special ids, truncated to ``max_len - 1`` (keeping the start or the end)."""
    data = list(text.encode("utf-8", "replace"))
    room = max_len - 1
    data = data[:room] if keep == "start" else data[-room:] if room > 0 else []
    ids = [BOS] + [b + OFFSET for b in data]
    return ids if len(ids) > 1 else [BOS, EMPTY]


def pad_rows(rows: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return ids, ids != PAD


class FlashEvaluator(nn.Module):
    """The joint K-way evaluator (or, with ``cross_candidate=False``, its pointwise baseline)."""

    def __init__(self, config: FlashEvaluatorConfig | None = None):
        super().__init__()
        self.config = config = config or FlashEvaluatorConfig()
        d = config.d_model
        self.embed = nn.Embedding(VOCAB, d, padding_idx=PAD)
        self.position = nn.Embedding(max(config.max_context_tokens, config.max_candidate_tokens), d)
        self.context_encoder = nn.TransformerEncoder(
            encoder_layer(config), config.context_layers, enable_nested_tensor=False
        )
        self.candidate_layers = nn.ModuleList(
            CandidateLayer(d, config.heads, d * config.ff_mult, config.dropout) for _ in range(config.candidate_layers)
        )
        self.token_cross = nn.ModuleList(
            GroupTokenLayer(d, config.heads, d * config.ff_mult, config.dropout)
            for _ in range(config.token_cross_layers)
        )
        self.pool_query = nn.Parameter(torch.randn(d) / math.sqrt(d))
        self.pool_key = nn.Linear(d, d)
        self.cross = nn.TransformerEncoder(encoder_layer(config), config.cross_layers, enable_nested_tensor=False)
        self.agreement = nn.Linear(AGREEMENT_FEATURES, d)
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, 1)
        self._extractor: Any = None

    # --------------------------------------------------------------------------------------------- tensors

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[-1], device=ids.device)
        return self.embed(ids) + self.position(positions)

    def encode_context(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, C) -> (B, C, d): the shared context, encoded once per group."""
        return self.context_encoder(self._embed(ids), src_key_padding_mask=~mask)

    def encode_candidates(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        context: torch.Tensor,
        context_mask: torch.Tensor,
        group: int | None = None,
        key_mask: torch.Tensor | None = None,
        log_count: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(N, L) candidates attending to an encoded context (N or 1, C, d) -> pooled (N, d).

        With one context row, its keys and values are computed once and broadcast to all N candidates. ``group``:
        consecutive rows forming one group for the token-level cross-candidate layers (default: all N), whose keys
        are ``key_mask`` (default ``mask``), each row weighing ``exp(log_count)`` candidates."""
        hidden = self._embed(ids)
        for layer in self.candidate_layers:
            hidden = layer(hidden, mask, layer.memory(context), context_mask)
        if self.token_cross:
            hidden = self._cross_tokens(hidden, mask if key_mask is None else key_mask, group or len(ids), log_count)
        # attention pooling: a learned query picks the bytes that matter (e.g. the final answer), not a plain mean
        logits = (self.pool_key(hidden) @ self.pool_query) / math.sqrt(hidden.shape[-1])
        weights = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
        return (weights.unsqueeze(-1) * hidden).sum(1)

    def _cross_tokens(
        self, hidden: torch.Tensor, key_mask: torch.Tensor, group: int, log_count: torch.Tensor | None
    ) -> torch.Tensor:
        """The token-level cross-candidate layers on (N, L, d) padded candidates, ``group`` consecutive rows per group
        (the pointwise baseline: groups of one)."""
        n, length, d = hidden.shape
        group = group if self.config.cross_candidate else 1
        x = hidden.reshape(n // group, group * length, d)
        rows = torch.arange(group, device=hidden.device).repeat_interleave(length)
        keys = key_mask.reshape(n // group, group * length)
        keys = keys | ~keys.any(-1, keepdim=True)  # a group with no valid key (an empty slot alone): stay finite
        counts = None
        if log_count is not None and group > 1:
            counts = log_count.to(x.dtype).reshape(n // group, group).repeat_interleave(length, dim=1)
        for layer in self.token_cross:
            x = layer(x, rows, keys, counts)
        return x.reshape(n, length, d)

    def encode_candidates_packed(
        self, packing: Packing, context: torch.Tensor, log_count: torch.Tensor | None = None
    ) -> torch.Tensor:
        """:meth:`encode_candidates` for the candidates of one unpadded context (1, C, d), on packed tokens, all of
        them one group (``log_count`` (n,): log multiplicity of each row)."""
        hidden = self.embed(packing.ids) + self.position(packing.positions)
        for layer in self.candidate_layers:
            hidden = layer.forward_packed(hidden, packing, layer.memory(context))
        if self.token_cross:
            x = hidden.unsqueeze(0)
            counts = None if log_count is None else log_count.to(x.dtype)[packing.row].unsqueeze(0)
            for layer in self.token_cross:
                x = layer(x, packing.row, None, counts, own_only=not self.config.cross_candidate)
            hidden = x[0]
        logits = (self.pool_key(hidden) @ self.pool_query) / math.sqrt(hidden.shape[-1])
        weights = torch.softmax(packing.pad(logits.unsqueeze(-1), float("-inf")), dim=1)
        return (weights * packing.pad(hidden)).sum(1)

    def features(self, candidates: list[str]) -> list[list[float]]:
        """Answer agreement within a group, per candidate: the share of the group giving the same answer, whether
        that answer is the most common one, whether there is an answer at all. Zeros without ``agreement``.
        The pointwise baseline sees each candidate alone (a group of one)."""
        if not self.config.agreement:
            return [[0.0] * AGREEMENT_FEATURES for _ in candidates]
        from verirl.answers import extract_all, get_extractor

        if self._extractor is None:
            self._extractor = get_extractor(self.config.agreement)
        rows = []
        for group in [candidates] if self.config.cross_candidate else [[c] for c in candidates]:
            answers = extract_all(self._extractor, group)
            counts = vote_counts(answers)
            top = max(counts.values()) if counts else 0
            rows += [
                [counts[a] / len(group), float(counts[a] == top), 1.0] if a is not None else [0.0, 0.0, 0.0]
                for a in answers
            ]
        return rows

    def score_pooled(
        self, pooled: torch.Tensor, present: torch.Tensor, features: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, K, d) pooled candidates -> (B, K) scores; the set stage compares candidates unless pointwise."""
        # no features (agreement off): the embedding of all-zero features, i.e. the bias, without building them
        pooled = pooled + (self.agreement.bias if features is None else self.agreement(features))
        if self.config.cross_candidate:
            hidden = self.cross(pooled, src_key_padding_mask=~present)
        else:
            b, k, d = pooled.shape
            hidden = self.cross(pooled.reshape(b * k, 1, d)).reshape(b, k, d)
        scores = self.head(self.norm(hidden)).squeeze(-1)
        return scores.masked_fill(~present, float("-inf"))

    def forward(
        self,
        context_ids: torch.Tensor,  # (B, C)
        context_mask: torch.Tensor,
        candidate_ids: torch.Tensor,  # (B, K, L)
        candidate_mask: torch.Tensor,
        present: torch.Tensor,  # (B, K): which of the K slots hold a candidate
        features: torch.Tensor | None = None,  # (B, K, 3) answer-agreement features
    ) -> torch.Tensor:
        b, k, length = candidate_ids.shape
        context = self.encode_context(context_ids, context_mask)
        # Candidates of group i attend to context i: repeat the (small) context rows per candidate slot.
        flat_context = context.repeat_interleave(k, dim=0)
        flat_context_mask = context_mask.repeat_interleave(k, dim=0)
        flat_mask = candidate_mask.reshape(b * k, length) | ~present.reshape(b * k, 1)  # keep empty slots finite
        keys = (candidate_mask & present.unsqueeze(-1)).reshape(b * k, length)  # empty slots are no keys
        pooled = self.encode_candidates(
            candidate_ids.reshape(b * k, length), flat_mask, flat_context, flat_context_mask, group=k, key_mask=keys
        )
        return self.score_pooled(pooled.reshape(b, k, -1), present, features)

    # ------------------------------------------------------------------------------------------- text API

    def _context_tensors(self, context: Any) -> tuple[torch.Tensor, torch.Tensor]:
        ids = encode_bytes(context_text(context), self.config.max_context_tokens, keep="end")
        return pad_rows([ids])

    def _one_group(self, context: Any, candidates: list[str]) -> list[float]:
        device = next(self.parameters()).device
        ctx_ids, ctx_mask = (t.to(device) for t in self._context_tensors(context))
        memory = self.encode_context(ctx_ids, ctx_mask)
        texts = ["" if c is None else str(c) for c in candidates]
        unique = list(dict.fromkeys(texts)) if self.config.dedup else texts
        position = {t: i for i, t in enumerate(unique)}
        index = [position[t] for t in texts] if self.config.dedup else list(range(len(texts)))
        rows = [encode_bytes(t, self.config.max_candidate_tokens) for t in unique]
        log_count = None
        if self.token_cross and len(unique) < len(texts):  # duplicates weigh in token-level attention as often as seen
            counts = Counter(texts)
            log_count = torch.tensor([math.log(counts[t]) for t in unique], device=device)
        if len({len(r) for r in rows}) > 1:  # mixed lengths: pack the tokens rather than pad them
            pooled = self.encode_candidates_packed(Packing(rows, device), memory, log_count)
        else:  # nothing to pad (e.g. the pointwise baseline's one candidate): the plain batch is cheaper
            ids, mask = pad_rows(rows)
            pooled = self.encode_candidates(ids.to(device), mask.to(device), memory, ctx_mask, log_count=log_count)
        # each unique candidate was encoded once, against the one shared context
        pooled = pooled[torch.tensor(index, device=device)].unsqueeze(0)  # (1, K, d): duplicates keep their count
        present = torch.ones(1, len(texts), dtype=torch.bool, device=device)
        features = (
            torch.tensor([self.features(texts)], dtype=pooled.dtype, device=device) if self.config.agreement else None
        )
        return self.score_pooled(pooled, present, features)[0].tolist()

    @torch.no_grad()
    def score_group(self, context: Any, candidates: list[str]) -> list[float]:
        """Scores for the K candidates of one context. Joint: one forward pass; pointwise: one pass per candidate."""
        if not candidates:
            return []
        was_training = self.training
        if was_training:  # switching modes walks every submodule: only when needed
            self.eval()
        try:
            if self.config.cross_candidate:
                return self._one_group(context, list(candidates))
            return [self._one_group(context, [c])[0] for c in candidates]
        finally:
            if was_training:
                self.train()

    def select(self, context: Any, candidates: list[str]) -> int | None:
        """Index of the best candidate (None when there are none)."""
        return best_index(self.score_group(context, candidates))

    # ------------------------------------------------------------------------------------------ save/load

    def save_pretrained(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2) + "\n")
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}, str(out / WEIGHTS_FILE))
        return out

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu") -> FlashEvaluator:
        from safetensors.torch import load_file

        from verirl.errors import VerirlError

        src = Path(path)
        if not (src / CONFIG_FILE).is_file() or not (src / WEIGHTS_FILE).is_file():
            raise VerirlError(f"evaluator {src}: expected {CONFIG_FILE} and {WEIGHTS_FILE} (saved by save_pretrained)")
        raw = json.loads((src / CONFIG_FILE).read_text())
        raw.setdefault("token_cross_layers", 0)  # saved before the option existed: the model had none
        known = {f.name for f in fields(FlashEvaluatorConfig)}
        model = cls(FlashEvaluatorConfig(**{k: v for k, v in raw.items() if k in known}))
        model.load_state_dict(load_file(str(src / WEIGHTS_FILE), device=device))
        return model.to(device).eval()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
