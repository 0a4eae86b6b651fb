"""Generation constrained to a closed set of completions (a catalogue of titles, labels, commands).

A token trie over the allowed completions drives transformers' own ``generate(prefix_allowed_tokens_fn=...)`` —
beam search for ranked lists (generative recommendation: D3, VRec), sampling for RL rollouts — so every output is
one of the allowed strings. The trie is keyed on completion tokens only (from the first generated position), not on
the prompt's last tokens as D3's and VRec's released code key it, so it does not depend on how the prompt's end
tokenises. Each completion is tokenised on its own (``add_special_tokens=False``) and ends with the EOS token;
training data must tokenise completions the same way (prompt ids + completion ids).

A model that needs its own prefix (VRec's latent thought vectors) passes ``prefix_embeddings``: it turns the
tokenised prompts into ``inputs_embeds``; generation then starts from those embeddings.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from verirl.generators.base import Rollouts, SamplingParams, prompt_text, strip_after_eos

PrefixEmbeddings = Callable[[Any, Any], tuple[Any, Any]]  # (input_ids, attention_mask) -> (inputs_embeds, mask)


class CompletionTrie:
    """Allowed next tokens after any prefix of the allowed token sequences."""

    def __init__(self, sequences: Sequence[Sequence[int]], texts: Sequence[str]):
        if not sequences:
            raise ValueError("constrained generation: the set of allowed completions is empty")
        self.next: dict[tuple[int, ...], set[int]] = {}
        self.text_of: dict[tuple[int, ...], str] = {}
        for seq, text in zip(sequences, texts, strict=True):
            seq = tuple(seq)
            for i in range(len(seq)):
                self.next.setdefault(seq[:i], set()).add(seq[i])
            self.text_of.setdefault(seq, text)
        self.depth = max(len(s) for s in sequences)
        self._lists = {k: sorted(v) for k, v in self.next.items()}

    @classmethod
    def from_texts(cls, tokenizer: Any, texts: Sequence[str]) -> CompletionTrie:
        eos = tokenizer.eos_token_id
        if eos is None:
            raise ValueError("constrained generation: the tokenizer has no EOS token to end a completion with")
        unique = list(dict.fromkeys(texts))
        ids = tokenizer(unique, add_special_tokens=False)["input_ids"]
        return cls([[*seq, eos] for seq in ids], unique)

    def allowed(self, prefix: Sequence[int], fallback: int) -> list[int]:
        """Tokens that continue ``prefix`` inside the trie; ``[fallback]`` (EOS/padding) once it is complete."""
        return self._lists.get(tuple(prefix)) or [fallback]

    def prefix_fn(self, start: int, fallback: int) -> Callable[[int, Any], list[int]]:
        """For ``generate``: the row's tokens from position ``start`` on are the completion so far."""

        def allowed(_batch_id: int, ids: Any) -> list[int]:
            return self.allowed(ids[start:].tolist(), fallback)

        return allowed

    def complete(self, ids: Sequence[int]) -> str | None:
        """The allowed completion ``ids`` spell (EOS included), else None."""
        return self.text_of.get(tuple(ids))


class ConstrainedGenerator:
    """``generate(prompts, n, sampling)`` (the verirl generator contract) and ``rank(prompts, k)`` over a trie.

    Greedy sampling parameters mean beam search with ``n`` beams returning ``n`` distinct completions; otherwise
    ``n`` samples per prompt from the masked distribution."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        completions: Sequence[str],
        batch_size: int = 8,
        autocast_bf16: bool = False,
        prefix_embeddings: PrefixEmbeddings | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.trie = CompletionTrie.from_texts(tokenizer, completions)
        self.batch_size = batch_size
        self.autocast_bf16 = autocast_bf16
        self.prefix_embeddings = prefix_embeddings

    def _generate(self, texts: list[str], **kwargs: Any) -> list[list[int]]:
        """Completion token ids (EOS kept, padding dropped) for every returned sequence, prompt-major."""
        import torch

        tok = self.tokenizer
        pad_side, tok.padding_side = tok.padding_side, "left"
        fallback = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        device = next(self.model.parameters()).device
        autocast = (
            torch.autocast(device.type, dtype=torch.bfloat16) if self.autocast_bf16 else contextlib.nullcontext()
        )
        was_training = self.model.training
        self.model.eval()
        out: list[list[int]] = []
        try:
            for begin in range(0, len(texts), self.batch_size):
                enc = tok(texts[begin : begin + self.batch_size], return_tensors="pt", padding=True,
                          add_special_tokens=False).to(device)  # fmt: skip
                with torch.no_grad(), autocast:
                    if self.prefix_embeddings is not None:  # generation from embeddings returns new tokens only
                        embeds, mask = self.prefix_embeddings(enc["input_ids"], enc["attention_mask"])
                        inputs: dict[str, Any] = {"inputs_embeds": embeds, "attention_mask": mask}
                        start = 0
                    else:
                        inputs = dict(enc)
                        start = enc["input_ids"].shape[1]
                    output = self.model.generate(
                        **inputs,
                        prefix_allowed_tokens_fn=self.trie.prefix_fn(start, fallback),
                        max_new_tokens=self.trie.depth,
                        pad_token_id=fallback,
                        eos_token_id=tok.eos_token_id,
                        **kwargs,
                    )
                out.extend(strip_after_eos(seq, tok) for seq in output[:, start:].tolist())
        finally:
            tok.padding_side = pad_side
            self.model.train(was_training)
        return out

    def rank(self, prompts: list[Any], k: int = 10, length_penalty: float = 1.0) -> list[list[str]]:
        """The top ``k`` allowed completions of each prompt by beam search (``k`` beams), best first."""
        texts = [prompt_text(self.tokenizer, p) for p in prompts]
        ids = self._generate(
            texts,
            num_beams=k,
            num_return_sequences=k,
            do_sample=False,
            length_penalty=length_penalty,
            early_stopping=False,
            temperature=None,
            top_p=None,
            top_k=None,
        )  # fmt: skip  (early_stopping=True would count the -1e9 copies of the first beam as finished hypotheses)
        ranked = []
        for i in range(len(prompts)):
            found = [self.trie.complete(seq) for seq in ids[i * k : (i + 1) * k]]
            ranked.append(list(dict.fromkeys(t for t in found if t is not None)))
        return ranked

    def generate(self, prompts: list[Any], n: int = 1, sampling: SamplingParams | None = None) -> Rollouts:
        import torch

        sampling = sampling or SamplingParams()
        texts = [prompt_text(self.tokenizer, p) for p in prompts]
        if sampling.greedy:
            kwargs: dict[str, Any] = dict(num_beams=n, num_return_sequences=n, do_sample=False, temperature=None,
                                          top_p=None, top_k=None)  # fmt: skip
        else:
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            kwargs = dict(num_return_sequences=n, do_sample=True, temperature=sampling.temperature,
                          top_p=sampling.top_p, top_k=sampling.top_k)  # fmt: skip
        ids = self._generate(texts, **kwargs)
        decoded = [self.tokenizer.decode(seq, skip_special_tokens=True) for seq in ids]
        return Rollouts(
            prompts=list(prompts),
            texts=[decoded[i * n : (i + 1) * n] for i in range(len(prompts))],
            token_ids=[ids[i * n : (i + 1) * n] for i in range(len(prompts))],
        )
