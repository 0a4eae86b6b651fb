"""SASRec baseline (verirl/rec/sasrec.py): RecBole's class trained by our loop, on a synthetic catalogue where the
next item is determined by the last one, and (slow) on the real MovieLens-100k split."""

from __future__ import annotations

import random

import pytest
import torch

from verirl.errors import VerirlError
from verirl.rec.metrics import most_popular, ranking_metrics
from verirl.rec.movielens import Item, MovieLens, Sample

sasrec = pytest.importorskip("verirl.rec.sasrec")

N_ITEMS = 30
FAST = dict(epochs=15, batch_size=64, lr=5e-3, hidden_size=32, inner_size=32, dropout=0.1, patience=3, n_valid=100)


def _chain_samples(n: int, seed: int, first_user: int = 0) -> list[Sample]:
    """Users walk the ring 1..N_ITEMS from a random start: the target is always history[-1] + 1 (mod the ring)."""
    rng = random.Random(seed)
    out = []
    for u in range(n):
        start, length = rng.randrange(N_ITEMS), rng.randint(1, 10)
        walk = [(start + j) % N_ITEMS + 1 for j in range(length + 1)]
        out.append(Sample(first_user + u, tuple(walk[:-1]), walk[-1], u, 4.0))
    return out


@pytest.fixture(scope="module")
def chain() -> MovieLens:
    items = {i: Item(i, f"Movie {i} (2000)", ()) for i in range(1, N_ITEMS + 1)}
    return MovieLens(items, _chain_samples(600, 0), _chain_samples(100, 1, 1000), _chain_samples(200, 2, 2000), {})


@pytest.fixture(scope="module")
def chain_model(chain: MovieLens) -> sasrec.SASRecModel:
    return sasrec.train_sasrec(chain, seed=0, **FAST)


def test_learns_the_successor_pattern(chain: MovieLens, chain_model: sasrec.SASRecModel) -> None:
    ranked = sasrec.recommend(chain_model, [s.history for s in chain.test], k=10)
    metrics = ranking_metrics(ranked, [s.target for s in chain.test])
    # MostPop is near chance here (uniform targets: hr@1 ~ 1/30); the pattern is learnable exactly.
    pop = ranking_metrics(
        [most_popular([s.target for s in chain.train])] * len(chain.test), [s.target for s in chain.test]
    )
    assert pop["hr@1"] < 0.1
    assert metrics["hr@1"] >= 0.9, metrics
    assert chain_model.best_epoch >= 1 and chain_model.train_seconds > 0
    assert len(chain_model.valid_curve) >= chain_model.best_epoch


def test_recommend_shapes_and_ids(chain: MovieLens, chain_model: sasrec.SASRecModel) -> None:
    histories = [(1, 2, 3), (5,), tuple(range(1, 16)), ()]  # longer than max_len: the last 10 are used
    ranked = chain_model.recommend(histories, k=7)
    assert [len(r) for r in ranked] == [7, 7, 7, 7]
    for r in ranked:
        assert len(set(r)) == 7 and set(r) <= set(chain.items)
    assert ranked[0][0] == 4 and ranked[1][0] == 6
    assert (
        sasrec.recommend(chain_model, [(1, 2, 3)] * 3, k=5) == [sasrec.recommend(chain_model, [(1, 2, 3)], k=5)[0]] * 3
    )
    assert sasrec.recommend(chain_model, [], k=5) == []
    assert [len(r) for r in sasrec.recommend(chain_model, [(1,)], k=100)] == [N_ITEMS]  # k capped at the catalogue
    with pytest.raises(VerirlError, match="not in the catalogue"):
        sasrec.recommend(chain_model, [(999,)])


def test_exclude_history(chain_model: sasrec.SASRecModel) -> None:
    history = (3, 4, 5, 6)
    full = sasrec.recommend(chain_model, [history], k=N_ITEMS)[0]
    kept = sasrec.recommend(chain_model, [history], k=N_ITEMS, exclude_history=True)[0]
    assert sorted(full) == list(range(1, N_ITEMS + 1))
    assert kept == [i for i in full if i not in history]  # the same order, history items dropped
    assert sasrec.recommend(chain_model, [history], k=3, exclude_history=True)[0] == kept[:3]


def test_seeds_are_reproducible(chain: MovieLens) -> None:
    quick = {**FAST, "epochs": 2, "patience": 5}
    state = torch.random.get_rng_state()
    a = sasrec.train_sasrec(chain, seed=3, **quick)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's random state is left alone
    b = sasrec.train_sasrec(chain, seed=3, **quick)
    c = sasrec.train_sasrec(chain, seed=4, **quick)
    for (name, p), q in zip(a.net.state_dict().items(), b.net.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    assert a.valid_curve == b.valid_curve
    histories = [s.history for s in chain.test[:50]]
    assert a.recommend(histories) == b.recommend(histories)
    assert not torch.equal(a.net.item_embedding.weight, c.net.item_embedding.weight)


def test_evaluate_sasrec_keys(chain: MovieLens) -> None:
    out = sasrec.evaluate_sasrec(chain, n_eval=50, eval_seed=0, seed=0, **{**FAST, "epochs": 1})
    assert set(out) == {f"{m}@{k}" for m in ("ndcg", "hr") for k in (1, 5, 10)} | {"train_seconds", "best_epoch"}
    assert out["best_epoch"] == 1.0 and all(0.0 <= out[f"hr@{k}"] <= 1.0 for k in (1, 5, 10))


def test_import_leaves_torch_and_modules_alone() -> None:
    import sys

    sasrec.recbole_sasrec_class()
    assert not torch.is_anomaly_enabled()  # recbole's sine.py switches it on at import
    for module, _, _ in sasrec._PLACEHOLDERS:
        loaded = sys.modules.get(module)
        assert loaded is None or loaded.__spec__ is not None  # a placeholder (no spec) is removed after the import


def test_without_validation(chain: MovieLens) -> None:
    model = sasrec.train_sasrec(chain, seed=0, **{**FAST, "epochs": 2, "n_valid": 0})
    assert len(model.valid_curve) == 2 and all(v < 0 for v in model.valid_curve)  # minus the training loss
    assert model.best_epoch == 2  # the loss falls from the first epoch to the second


def test_bad_arguments(chain: MovieLens) -> None:
    with pytest.raises(VerirlError, match="must be >= 1"):
        sasrec.train_sasrec(chain, epochs=0)
    empty = MovieLens(chain.items, [], chain.valid, chain.test, {})
    with pytest.raises(VerirlError, match="no training samples"):
        sasrec.train_sasrec(empty)


@pytest.mark.slow
def test_real_split_beats_most_popular() -> None:
    from verirl.rec.movielens import load_movielens
    from verirl.rec.tasks import sample_of

    ml = load_movielens()
    out = sasrec.evaluate_sasrec(ml, n_eval=1000, eval_seed=0, seed=0)
    cases = sample_of(ml.test, 1000, 0)
    pop = ranking_metrics([most_popular([s.target for s in ml.train])] * len(cases), [s.target for s in cases])
    assert out["ndcg@10"] > pop["ndcg@10"] and out["hr@10"] > pop["hr@10"], (out, pop)
