"""Generative recommendation: MovieLens-100k protocol, clusters, catalogue-constrained decoding, the VRec model."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from verirl.errors import VerirlError
from verirl.generators.base import SamplingParams
from verirl.generators.constrained import CompletionTrie, ConstrainedGenerator
from verirl.rec.clusters import build_clusters
from verirl.rec.metrics import most_popular, ranking_metrics
from verirl.rec.movielens import chronological_split, display_title, load_movielens, windows
from verirl.rec.tasks import completion_for, ml_100k, prompt_for, title_of_completion
from verirl.rec.vrec import (
    VRecConfig,
    VRecModel,
    add_thought_token,
    load_vrec,
    monotonicity_loss,
    positions_of,
    save_vrec,
    verifier_loss,
    verify,
)

TITLES = ["Heat (1995)", "Heat 2 (2000)", "Toy Story (1995)", "Casino (1995)", "Se7en (1995)"]


# ---- data --------------------------------------------------------------------------------------------------------


def test_display_titles_move_trailing_articles_and_keep_alternative_titles():
    assert display_title("Usual Suspects, The", "1995") == "The Usual Suspects (1995)"
    assert display_title("Horseman on the Roof, The (Hussard sur le toit, Le)", "1995") == (
        "The Horseman on the Roof (Hussard sur le toit, Le) (1995)"
    )
    assert display_title("Seven (Se7en)", "1995") == "Seven (Se7en) (1995)"
    assert display_title("Toy Story", "") == "Toy Story"


def test_windows_follow_the_d3_protocol_on_hand_made_ratings():
    # user 1 rates items 10, 11 (same second: ordered by id), 12, 13; user 2 rates 20, 21
    ratings = [
        (1, 11, 5.0, 100),
        (1, 10, 4.0, 100),
        (1, 12, 3.0, 200),
        (1, 13, 5.0, 400),
        (2, 20, 5, 50),
        (2, 21, 2, 300),
    ]
    samples = windows(ratings, window=2)
    assert [(s.user, s.history, s.target) for s in samples] == [
        (1, (10,), 11),  # t=100
        (1, (10, 11), 12),  # t=200
        (2, (20,), 21),  # t=300
        (1, (11, 12), 13),  # t=400, window of 2
    ]
    assert [s.target for s in windows(ratings, window=2, min_rating=4)] == [11, 13]
    train, valid, test = chronological_split(list(range(10)))
    assert (train, valid, test) == (list(range(8)), [8], [9])


def test_movielens_100k_from_the_recbole_wheel():
    ml = load_movielens()
    assert len(ml.items) == 1663  # 1682 - 'unknown' - 18 items whose title another item has
    assert ml.duplicates[268] == 246 and 267 not in ml.items  # "Chasing Amy (1997)"
    assert len(set(ml.titles())) == len(ml.titles())
    n = len(ml.train) + len(ml.valid) + len(ml.test)
    assert n == 100_000 - 9 - 943  # every rating after a user's first (item 267's 9 ratings dropped)
    assert len(ml.train) == int(0.8 * n)
    assert ml.train[-1].timestamp <= ml.valid[0].timestamp <= ml.test[0].timestamp
    assert all(1 <= len(s.history) <= 10 for s in ml.test)


def test_ml_100k_task_rows_are_seeded_and_disjoint_in_time():
    train, held_out = ml_100k(n_train=50, n_eval=20, seed=3)
    again, _ = ml_100k(n_train=50, n_eval=20, seed=3)
    assert train == again and len(held_out) == 20
    row = held_out[0]
    assert row["question"].startswith("Below is an instruction")
    assert row["question"].endswith("### Response:\n")
    ml = load_movielens()
    assert row["question"] == prompt_for([ml.items[i].title for i in json.loads(row["history"])])
    assert row["answer"] == ml.items[row["target"]].title
    assert row["completion"] == completion_for(row["answer"])
    assert title_of_completion(row["completion"] + "trailing") == row["answer"]
    with pytest.raises(ValueError, match="held_out"):
        ml_100k(held_out="train")


# ---- metrics and clusters ----------------------------------------------------------------------------------------


def test_ranking_metrics_by_hand():
    ranked = [[5, 7, 9], [1, 2, 3], [4, 4, 8]]
    metrics = ranking_metrics(ranked, [7, 42, 8], ks=(1, 2, 3))
    assert metrics["hr@1"] == 0
    assert metrics["hr@2"] == pytest.approx(2 / 3)  # the repeated 4 counts once: 8 is second
    assert metrics["hr@3"] == pytest.approx(2 / 3)  # 42 is never ranked
    assert metrics["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(3)) / 3)
    assert most_popular([3, 1, 3, 2, 1, 3], k=2) == [3, 1]


def test_clusters_label_every_item_deterministically():
    ml = load_movielens()
    rng = np.random.default_rng(0)
    fake_text = rng.normal(size=(len(ml.items), 16))
    a = build_clusters(ml, n_category=5, n_cf=6, seed=1, embeddings=fake_text)
    b = build_clusters(ml, n_category=5, n_cf=6, seed=1, embeddings=fake_text)
    assert a == b
    assert set(a.labels["category"]) == set(ml.items) == set(a.labels["cf"])
    assert set(a.labels["category"].values()) == set(range(5)) and set(a.labels["cf"].values()) == set(range(6))
    assert a.of(1) == [a.labels["category"][1], a.labels["cf"][1]]


# ---- constrained decoding ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from verirl.testing import tiny_model

    path = tiny_model(tmp_path_factory.mktemp("tiny"), max_positions=1024)
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path), path


def test_trie_allows_only_catalogue_continuations(tiny):
    _, tok, _ = tiny
    completions = [completion_for(t) for t in TITLES]
    trie = CompletionTrie.from_texts(tok, completions)
    eos = tok.eos_token_id
    ids = tok(completions[0], add_special_tokens=False)["input_ids"]
    assert trie.complete([*ids, eos]) == completions[0]
    assert trie.allowed(ids, fallback=-1) == [eos]
    assert trie.allowed([*ids, eos], fallback=-1) == [-1]  # complete: padding only
    assert trie.allowed([12345], fallback=-1) == [-1]
    with pytest.raises(ValueError, match="empty"):
        CompletionTrie([], [])


def test_beam_search_ranks_distinct_catalogue_titles(tiny):
    model, tok, _ = tiny
    completions = [completion_for(t) for t in TITLES]
    gen = ConstrainedGenerator(model, tok, completions, batch_size=2)
    prompts = ["a short prompt", "a much longer prompt than the other one", "x"]
    ranked = gen.rank(prompts, k=5)
    for titles in ranked:  # all five, once each (early stopping would return copies of the first beam)
        assert sorted(titles) == sorted(completions)
    one_by_one = [gen.rank([p], k=5)[0] for p in prompts]
    assert ranked == one_by_one  # left padding does not change a prompt's ranking
    sampled = gen.generate(prompts, n=4, sampling=SamplingParams(temperature=1.0, seed=0))
    assert all(t in completions for group in sampled.texts for t in group)


# ---- the VRec model ------------------------------------------------------------------------------------------------


def test_mixture_of_verifiers_fusion_on_hand_computed_values():
    """Two verifiers over a 2-d thought r = (1, 0): V_1 uniform (entropy 1), V_2 confident; router logits (0, ln 3)."""
    heads = torch.nn.ModuleList([torch.nn.Linear(2, 2), torch.nn.Linear(2, 3)])
    gate = torch.nn.Linear(2, 2)
    with torch.no_grad():
        heads[0].weight.copy_(torch.tensor([[0.0, 1.0], [0.0, 2.0]]))  # logits (0, 0) at r: uniform, argmax 0
        heads[0].bias.zero_()
        heads[1].weight.copy_(torch.tensor([[0.0, 5.0], [2.0, 7.0], [0.0, 1.0]]))  # logits (0, 2, 0): argmax 1
        heads[1].bias.zero_()
        gate.weight.copy_(torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]]))
        gate.bias.zero_()
    out = verify(torch.tensor([[1.0, 0.0]]), heads, gate)
    g = [0.25, 0.75]
    p2 = [1 / (2 + math.e**2), math.e**2 / (2 + math.e**2), 1 / (2 + math.e**2)]
    h2 = -sum(p * math.log(p) for p in p2)
    omega = g[0] * 1.0 + g[1] * h2 / math.log(3)
    guidance = [g[0] * 0.0 + g[1] * 2.0, g[0] * 1.0 + g[1] * 7.0]  # rows V_1[0] = (0, 1), V_2[1] = (2, 7)
    expected = [(1 - omega) * 1.0 + omega * guidance[0], omega * guidance[1]]
    assert out.gate[0].tolist() == pytest.approx(g)
    assert out.entropies[:, 0].tolist() == pytest.approx([math.log(2), h2])
    assert out.omega.item() == pytest.approx(omega)
    assert out.r_star[0].tolist() == pytest.approx(expected)
    # L_ver with targets (1, 2): g_1 * -log p_1(1) + g_2 * -log p_2(2)
    loss = verifier_loss([out], torch.tensor([[1, 2]]))
    assert loss.item() == pytest.approx(g[0] * math.log(2) - g[1] * math.log(p2[2]))
    assert float(monotonicity_loss([out])) == 0.0


def _batch(tok, completions):
    tok.padding_side = "left"
    prompt = tok(["hello there my friend", "x"], return_tensors="pt", padding=True, add_special_tokens=False)
    rows = [tok(c, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for c in completions]
    width = max(map(len, rows))
    ids = torch.tensor([r + [tok.pad_token_id] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    return prompt.input_ids, prompt.attention_mask, ids, mask


def _vrec(tiny, steps, mixture=True, seed=0):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _, _, path = tiny
    lm, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    config = VRecConfig(thought_steps=steps, mixture=mixture, verifier_sizes=[3, 4])
    add_thought_token(lm, tok, config)
    torch.manual_seed(seed)
    model = VRecModel(lm, config)
    model.verifying = config.uses_mixture
    return model, tok


def test_cached_latent_steps_equal_vrec_full_passes(tiny):
    """Our KV-cached thought steps give VRec's loss computed with a full forward pass per step."""
    model, tok = _vrec(tiny, steps=2)
    p_ids, p_mask, c_ids, c_mask = _batch(tok, ['"Heat (1995)"\n', '"A"\n'])
    out = model(p_ids, p_mask, c_ids, c_mask, torch.tensor([[0, 1], [2, 3]]), v_weight=1.0, mono_weight=1.0)
    decoder, embed = model.lm.get_decoder(), model.lm.get_input_embeddings()
    emb, mask = embed(p_ids), p_mask
    for _ in range(2):
        hidden = decoder(inputs_embeds=emb, attention_mask=mask, position_ids=positions_of(mask)).last_hidden_state
        r_star = verify(model.attention(hidden, mask, positions_of(mask)), model.verifiers, model.gate).r_star
        emb, mask = torch.cat([emb, r_star[:, None]], 1), torch.cat([mask, torch.ones_like(mask[:, :1])], 1)
    thought = embed(torch.full((2, 1), model.settings.thought_id))
    emb, mask = torch.cat([emb, thought, embed(c_ids)], 1), torch.cat([mask, torch.ones_like(mask[:, :1]), c_mask], 1)
    hidden = decoder(inputs_embeds=emb, attention_mask=mask, position_ids=positions_of(mask)).last_hidden_state
    n = c_ids.shape[1]
    logits = model.lm.lm_head(hidden[:, -n - 1 : -1])
    reference = torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), c_ids.masked_fill(c_mask == 0, -100).reshape(-1), ignore_index=-100
    )
    assert float(out["rec_loss"]) == pytest.approx(float(reference), rel=1e-5)
    assert float(out["loss"]) == pytest.approx(float(out["rec_loss"] + out["ver_loss"] + out["mono_loss"]), rel=1e-5)
    assert float(out["mono_loss"]) >= 1.0  # exp(.) of a non-negative mean, one term for two steps


def test_no_thought_is_the_plain_language_model_loss(tiny):
    model, tok = _vrec(tiny, steps=0)
    assert not model.head_modules() and model.settings.thought_id is None
    p_ids, p_mask, c_ids, c_mask = _batch(tok, ['"Heat (1995)"\n', '"A"\n'])
    out = model(p_ids, p_mask, c_ids, c_mask)
    ids, mask = torch.cat([p_ids, c_ids], 1), torch.cat([p_mask, c_mask], 1)
    labels = torch.cat([torch.full_like(p_ids, -100), c_ids.masked_fill(c_mask == 0, -100)], 1)
    reference = model.lm(input_ids=ids, attention_mask=mask, position_ids=positions_of(mask), labels=labels).loss
    assert float(out["loss"]) == pytest.approx(float(reference), rel=1e-5)


def test_vrec_learns_recommendations_and_round_trips(tiny, tmp_path):
    """A few steps on two (history -> title) pairs: constrained search then ranks each target first; saved and
    loaded, the model ranks the same."""
    model, tok = _vrec(tiny, steps=1)
    prompts = ["A likes: Heat", "B likes: Toy Story, Se7en"]  # short: the tiny model learns them in a few steps
    targets = ["Casino (1995)", "Heat 2 (2000)"]
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    _, _, c_ids, c_mask = _batch(tok, [completion_for(t) for t in targets])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    classes = torch.tensor([[0, 1], [2, 3]])
    for _ in range(60):
        loss = model(enc.input_ids, enc.attention_mask, c_ids, c_mask, classes, v_weight=1.0)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    from verirl.rec.evaluate import constrained_generator, rank_titles

    ranked = rank_titles(constrained_generator(model, tok, TITLES), prompts, 3, 1.0)
    assert [r[0] for r in ranked] == targets
    save_vrec(model, tok, tmp_path / "m", clusters={"sizes": {}, "labels": {}})
    loaded, tok2 = load_vrec(tmp_path / "m")
    assert rank_titles(constrained_generator(loaded, tok2, TITLES), prompts, 3, 1.0) == ranked


def test_any_language_model_folder_is_a_plain_recommender(tiny):
    from verirl.rec.evaluate import evaluate_ranking, invalid_title_rate, load_recommender

    _, _, path = tiny
    model, tok = load_recommender(path)
    assert model.settings.thought_steps == 0 and not model.head_modules()
    rows = [{"question": "A likes: Heat", "answer": TITLES[0]}, {"question": "B", "answer": "Not In (2000)"}]
    result = evaluate_ranking(model, tok, rows, TITLES, beams=5, batch_size=2)
    assert result["cases"] == 2 and result["hr@5"] == pytest.approx(0.5)  # 5 beams over 5 titles: all of them
    assert 0.0 <= invalid_title_rate(model, tok, rows, TITLES) <= 1.0
    with pytest.raises(VerirlError, match="not a directory"):
        load_recommender(path / "missing")
