"""The recommendation verifiers (rec_exact, rec_genre, rec_cf, rec_valid, rec_new) on real ML-100k rows, alone and as
one mixture with constraints, and a GRPO step on the ml-100k task rewarded by that mixture."""

from __future__ import annotations

import json

import pytest

from verirl.rec.movielens import load_movielens
from verirl.rec.tasks import completion_for, ml_100k
from verirl.verifiers.mixture_reward import MixtureReward
from verirl.verifiers.registry import resolve_verifier

MIXTURE = [
    {"name": "rec_exact", "gate": 2.0},
    "rec_genre",
    "rec_cf",
    {"name": "rec_valid", "kind": "constraint"},
    {"name": "rec_new", "kind": "constraint", "floor": 0.0},
]


@pytest.fixture(scope="module")
def case():
    (row,), _ = ml_100k(n_train=1, n_eval=1, seed=3)
    ml = load_movielens()
    history = json.loads(row["history"])
    other = next(i for i in sorted(ml.items) if i != row["target"] and i not in history)
    return row, ml, history, other


def test_each_verifier_on_a_real_row(case):
    row, ml, history, other = case
    ctx = {k: row[k] for k in ("target", "history", "answer")}
    target_text, other_text = row["completion"], completion_for(ml.items[other].title)
    watched_text = completion_for(ml.items[history[0]].title)
    invented = '"Not A Movie (2031)"\n'

    exact = resolve_verifier("rec_exact")
    assert [exact.verify("", t, **ctx).score for t in (target_text, other_text, invented)] == [1.0, 0.0, 0.0]

    genre = resolve_verifier("rec_genre")
    mine, theirs = set(ml.items[other].genres), set(ml.items[row["target"]].genres)
    assert genre.verify("", other_text, **ctx).score == pytest.approx(len(mine & theirs) / len(mine | theirs))
    assert genre.verify("", target_text, **ctx).score == 1.0
    assert genre.verify("", invented, **ctx).score is None

    cf = resolve_verifier("rec_cf")
    assert cf.verify("", target_text, **ctx).score == 1.0
    assert cf.verify("", other_text, **ctx).score in (0.0, 1.0)
    assert cf.verify("", invented, **ctx).score is None

    valid, new = resolve_verifier("rec_valid"), resolve_verifier("rec_new")
    assert [valid.verify("", t, **ctx).score for t in (target_text, invented)] == [1.0, 0.0]
    assert [new.verify("", t, **ctx).score for t in (other_text, watched_text, invented)] == [1.0, 0.0, None]
    assert exact.verify("", target_text).score is None  # no target column: not applicable


def test_the_mixture_rewards_near_misses_and_floors_invented_and_watched_titles(case):
    row, ml, history, other = case
    n = 4
    texts = [row["completion"], completion_for(ml.items[other].title), '"Not A Movie (2031)"\n',
             completion_for(ml.items[history[0]].title)]  # fmt: skip
    columns = {k: [row[k]] * n for k in ("target", "history", "answer")}
    mixture = MixtureReward(MIXTURE, name="rec", alpha=0.0, guide="mean")
    hit, near, invented, watched = mixture([row["question"]] * n, texts, **columns)
    assert hit == pytest.approx(1.0)
    assert 0.0 <= near < 1.0
    assert invented == 0.0 and watched == 0.0  # constraints: the floor, whatever the others say
    genre = resolve_verifier("rec_genre").verify("", texts[1], **{k: v[0] for k, v in columns.items()}).score
    cf = resolve_verifier("rec_cf").verify("", texts[1], **{k: v[0] for k, v in columns.items()}).score
    assert near == pytest.approx((2 * 0.0 + genre + cf) / 4)  # gate 2:1:1, all certain


def test_bad_rec_verifier_args_are_one_line():
    from verirl.errors import VerirlError

    with pytest.raises(VerirlError, match="window: expected an integer >= 1"):
        resolve_verifier("rec_genre", {"window": 0})
    with pytest.raises(VerirlError, match="n_cf: expected an integer >= 2"):
        resolve_verifier("rec_cf", {"n_cf": 1})


def test_grpo_on_ml100k_with_the_recommendation_mixture(tiny_model_dir, tmp_path):
    """A real TRL GRPO step through verirl on the ml-100k prompts; the per-member metrics are logged."""
    from tests.conftest import one_grpo_step

    results, record = one_grpo_step(
        tiny_model_dir,
        tmp_path,
        data={"builtin": "ml-100k", "n_train": 4, "n_eval": 2, "chat": False},
        rewards=[{"mixture": {"name": "rec", "members": MIXTURE}}],
    )
    assert results["train"]["steps"] == 1
    assert record["mixture/rec/rec_valid/applies"] == 1.0
    assert record["rewards/rec/mean"] == 0.0  # a random model invents titles: all floored by rec_valid
    assert record["mixture/rec/floored"] == 1.0


@pytest.mark.parametrize("name", ["rec-grpo.yaml", "reward-model.yaml"])
def test_the_shipped_mixture_recipes_validate(name, tiny_model_dir):
    from pathlib import Path

    from verirl.recipes import read_yaml, validate

    path = Path(__file__).resolve().parents[1] / "recipes" / name
    data = read_yaml(path)
    if name == "rec-grpo.yaml":  # its model is a run of recipes/vrec.yaml (absent, or half-written, here)
        data["model"] = str(tiny_model_dir)
    recipe = validate(data, str(path), check_files=False)
    assert recipe.rewards
