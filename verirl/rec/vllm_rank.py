"""Catalogue-constrained beam search on vLLM: the ranking of :meth:`ConstrainedGenerator.rank
<verirl.generators.constrained.ConstrainedGenerator.rank>` for a plain generative recommender (no latent thought),
with vLLM's own offline beam search (``LLM.beam_search``) and its structured outputs.

What vLLM does here. The engine is verirl's (:class:`~verirl.generators.vllm.VLLMGenerator`, same options). The
catalogue becomes an xgrammar *structural tag* made of token ids: the completions' token trie (each completion
tokenised on its own, ``add_special_tokens=False``, exactly as :class:`~verirl.generators.constrained.CompletionTrie`
does) as nested ``or`` / ``sequence`` / ``token`` formats. ``beam_search(..., BeamSearchParams(structured_outputs=
StructuredOutputsParams(structural_tag=...)))`` then replays each beam's tokens through a fresh grammar matcher at
every step, sends each beam as a one-token request whose ``allowed_token_ids`` are the grammar's next tokens, and
extends it with the allowed tokens among the returned log-probs. After a whole completion the grammar allows only
the EOS token; a beam ends when it takes it, so every result is ``completion ids + EOS``, the same sequences HF's
trie produces, mapped back to completion strings through that trie.

Why not ``StructuredOutputsParams(choice=[...])`` (checked on vLLM 0.32's CPU build): with the engine's default
structured-output backend (``auto``) beam search raises ``ValueError: Unsupported structured output backend:
auto``; with ``xgrammar`` it raises ``grammar is not of valid supported types (StructuredOutputOptions.CHOICE)``
(the choice-to-grammar conversion happens only in request validation, which beam search bypasses); ``guidance``
(or xgrammar with ``grammar=choice_as_grammar(...)``) runs, but a character-level grammar admits every
tokenisation of a title, so beams are spent on non-canonical spellings of titles already found (the same title
came back 2-3 times in a top 10 of SmolLM2-135M) and the scores are not the trie's. The token-id tag admits the
canonical tokenisation only. The backend is chosen on the request (``xgrammar``), because verirl's engine is
started with vLLM's default structured-output config and beam search does not resolve ``auto``.

Limits, and how the scores compare with HF's ``generate(num_beams=k)`` over the trie:

- **No latent prefix**: vLLM's beam search takes token prompts only (embedding prompts raise
  ``NotImplementedError``), so VRec models with thought steps are refused; use the HF path for them.
- **Log-probs**: both score a token by its log-softmax over the *whole* vocabulary (before the constraint), so a
  beam's cumulative log-prob is the same number on both paths (up to kernels and dtype).
- **length_penalty does not mean the same thing.** HF divides a finished hypothesis' sum by
  ``(generated tokens, EOS included) ** length_penalty``; vLLM by ``(prompt tokens + generated tokens, EOS
  excluded) ** length_penalty`` (``get_beam_search_score``: it counts the prompt). They agree only at
  ``length_penalty=0`` (plain sum of log-probs). At 1.0 vLLM's ranking is close to the plain sum (a ~100-250-token
  prompt dominates the denominator), while HF's favours long titles.
- **Candidates per step**: HF extends each beam with any allowed token (top ``2k`` over all beams); vLLM only
  with the allowed tokens among that beam's top ``2k`` log-probs over the whole vocabulary, plus the best allowed
  token (the greedy sample, always returned). Where the model puts little mass on the catalogue, vLLM explores less
  and may return fewer than ``k`` titles; for a trained recommender the two searches mostly coincide.
- **Finished hypotheses**: vLLM keeps every beam that ended on EOS and returns the best ``k`` at the end; HF keeps
  the best ``k`` finished so far, with its early-stopping bound. Orders can differ in the tail of the list.
- **Speed**: every beam step is a fresh request; with prefix caching only whole KV blocks of the prompt are reused
  (128 tokens on a CPU by default), so each step recomputes the prompt's last partial block for every beam.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from verirl.errors import VerirlError
from verirl.generators.constrained import CompletionTrie
from verirl.generators.spec import EngineOptions

BACKEND = "xgrammar"


def check_model_dir(path: str | Path) -> Path:
    """``path`` as a folder vLLM can rank with: a causal-LM folder, or a VRec folder without thought steps."""
    from verirl.rec.vrec import is_vrec_dir, read_config

    path = Path(path)
    if not path.is_dir():
        raise VerirlError(f"vLLM ranking: {path} is not a directory (a model folder)")
    if is_vrec_dir(path) and read_config(path).thought_steps > 0:
        raise VerirlError(
            f"vLLM ranking: {path} is a VRec model with {read_config(path).thought_steps} latent thought step(s); "
            "vLLM's beam search takes token prompts only (no latent prefix), so rank it with the HF path"
        )
    if not (path / "config.json").is_file():
        raise VerirlError(f"vLLM ranking: {path} holds no model (no config.json)")
    return path


def trie_format(trie: CompletionTrie, eos: int) -> dict[str, Any]:
    """The trie as an xgrammar structural-tag format of token ids (EOS left out: the grammar's end allows it)."""

    def node(prefix: tuple[int, ...]) -> dict[str, Any] | None:
        alternatives: list[dict[str, Any]] = []
        for token in sorted(trie.next[prefix]):
            if token == eos:  # a completion ends here (possibly also continuing into a longer one)
                alternatives.append({"type": "const_string", "value": ""})
                continue
            token_format: dict[str, Any] = {"type": "token", "token": token}
            rest = node((*prefix, token))
            alternatives.append(
                token_format if rest is None else {"type": "sequence", "elements": [token_format, rest]}
            )
        if alternatives == [{"type": "const_string", "value": ""}]:
            return None
        return alternatives[0] if len(alternatives) == 1 else {"type": "or", "elements": alternatives}

    root = node(())
    if root is None:
        raise VerirlError("vLLM ranking: every allowed completion is empty")
    return {"type": "structural_tag", "format": root}


class VLLMRanker:
    """``rank(prompts, k, length_penalty)`` like :meth:`ConstrainedGenerator.rank`, on a vLLM engine.

    ``model``: a model folder (a plain causal LM, or a VRec folder with ``thought_steps: 0``); ``completions``:
    the allowed completion strings (for ml-100k, :func:`~verirl.rec.tasks.completion_for` of each title);
    ``options``: the engine's (:class:`~verirl.generators.spec.EngineOptions`; the checkpoint's dtype by default).
    Close it (or use it as a context manager) to shut the engine down."""

    def __init__(self, model: str | Path, completions: Sequence[str], options: EngineOptions | None = None):
        from verirl.generators.vllm import VLLMGenerator

        path = check_model_dir(model)
        self.generator = VLLMGenerator(path, options=options)
        self.tokenizer = self.generator.tokenizer
        self.eos = self.tokenizer.eos_token_id
        self.trie = CompletionTrie.from_texts(self.tokenizer, completions)
        self.structural_tag = json.dumps(trie_format(self.trie, self.eos))

    @property
    def llm(self) -> Any:
        return self.generator.llm

    def beam_search(self, prompt_ids: list[list[int]], k: int, length_penalty: float) -> list[Any]:
        """vLLM's ``BeamSearchOutput`` of each tokenized prompt (``sequences``: prompt + completion ids, best
        first)."""
        from vllm.sampling_params import BeamSearchParams, StructuredOutputsParams

        if self.llm is None:
            raise VerirlError("vLLM ranking: the engine was closed")
        constraint = StructuredOutputsParams(structural_tag=self.structural_tag)
        constraint._backend = BACKEND  # beam search reads the backend from here, else from the engine ("auto": fails)
        params = BeamSearchParams(
            beam_width=k, max_tokens=self.trie.depth, length_penalty=length_penalty, structured_outputs=constraint
        )
        return self.llm.beam_search([{"prompt_token_ids": ids} for ids in prompt_ids], params)

    def completion_of(self, ids: Sequence[int]) -> str | None:
        """The catalogue completion a finished beam spells (its completion ids, ending on a stop token)."""
        if not ids:
            return None
        found = self.trie.complete(ids)
        if found is None and ids[-1] != self.eos:  # ended on another stop token the grammar allows
            found = self.trie.complete([*ids[:-1], self.eos])
        return found

    def rank(self, prompts: list[Any], k: int = 10, length_penalty: float = 1.0) -> list[list[str]]:
        """The top ``k`` allowed completions of each prompt by beam search (``k`` beams), best first, distinct."""
        if not prompts:
            return []
        prompt_ids = self.generator.encode(prompts)  # rendered as the HF path renders them
        ranked = []
        for output, ids in zip(self.beam_search(prompt_ids, k, length_penalty), prompt_ids, strict=True):
            found = [self.completion_of(seq.tokens[len(ids) :]) for seq in output.sequences]
            ranked.append(list(dict.fromkeys(t for t in found if t is not None))[:k])
        return ranked

    def close(self) -> None:
        self.generator.close()

    def __enter__(self) -> VLLMRanker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
