"""RESTRAIN: the per-group advantage function on hand-computed cases, prompt weights, and the trainer in GRPO."""

import json
import math

import pytest
import yaml

from tests.conftest import plain_grpo_config, tiny_grpo_recipe
from verirl.errors import RecipeError
from verirl.recipes import load_recipe
from verirl.rl.restrain import (
    PROMPT_WEIGHT_COLUMN,
    RestrainConfig,
    RestrainGRPOTrainer,
    cached_prompt_weights,
    prompt_weights,
    restrain_advantages,
    shaping,
)

KW = {"kappa": 0.375, "delta": 0.5, "sigma": 0.5, "center": 1.0}


def _g(f, sigma=0.5, center=1.0):
    return math.exp(-((f - center) ** 2) / (2 * sigma**2))


def test_unanimous_group_has_zero_advantage():
    assert restrain_advantages(["4"] * 8, **KW) == [0.0] * 8


def test_two_candidates_by_hand():
    # answers: 3 x "A", 1 x "B"; n = 4, shares .75 / .25.
    answers = ["A", "A", "A", "B"]
    w_a, w_b = _g(0.75), _g(0.25)
    w_a, w_b = w_a / (w_a + w_b), w_b / (w_a + w_b)
    # candidate A: r = [1,1,1,0], mean .75, unbiased std .5 -> (+.25/.5, -.75/.5) = (+0.5, -1.5) (eps 1e-4 aside)
    # candidate B: r = [0,0,0,1], mean .25, std .5 -> (-0.5, +1.5)
    s = 0.5 + 1e-4
    expected_a = w_a * (0.25 / s) + w_b * (-0.25 / s)
    expected_b = w_a * (-0.75 / s) + w_b * (0.75 / s)
    got = restrain_advantages(answers, kappa=0.5, delta=0.5, sigma=0.5)
    assert got[:3] == pytest.approx([expected_a] * 3)
    assert got[3] == pytest.approx(expected_b)
    assert got[0] > 0 > got[3]  # the majority is favoured, the minority pushed down


def test_four_candidates_match_a_direct_computation():
    answers = ["A"] * 4 + ["B"] * 2 + ["C", "D"]  # shares .5 .25 .125 .125
    n = 8
    g = {"A": _g(0.5), "B": _g(0.25), "C": _g(0.125), "D": _g(0.125)}
    z = sum(g.values())
    expected = [0.0] * n
    for cand, gj in g.items():
        r = [1.0 if a == cand else 0.0 for a in answers]
        mean = sum(r) / n
        std = math.sqrt(sum((x - mean) ** 2 for x in r) / (n - 1))
        for i in range(n):
            expected[i] += gj / z * (r[i] - mean) / (std + 1e-4)
    got = restrain_advantages(answers, **KW, prompt_weight=0.7)
    assert got == pytest.approx([0.7 * e for e in expected])
    assert got[0] > 0 and got[4] < 0 and got[6] < got[4]  # A > B > C in advantage


def test_low_consistency_group_gets_a_pure_negative_update():
    answers = ["1", "2", "3", "4", "5", "6", "7", "1"]  # majority share 2/8 = .25 < kappa .375
    assert restrain_advantages(answers, **KW) == pytest.approx([-0.5] * 8)
    assert restrain_advantages(answers, **KW, prompt_weight=0.4) == pytest.approx([-0.2] * 8)
    # at kappa 0.25 the same group is not penalised: mixed signs
    mixed = restrain_advantages(answers, **{**KW, "kappa": 0.25})
    assert min(mixed) < 0 < max(mixed)


def test_none_answers_are_never_candidates_and_score_zero():
    answers = ["A", "A", "A", None]
    got = restrain_advantages(answers, kappa=0.5, delta=0.5, sigma=0.5)
    # only candidate A (weight 1): r = [1,1,1,0] -> +0.25/0.5001 for A, -0.75/0.5001 for the unanswered rollout
    assert got == pytest.approx([0.25 / 0.5001] * 3 + [-0.75 / 0.5001])


def test_no_answers_at_all():
    assert restrain_advantages([None] * 4, **KW, prompt_weight=0.5) == [-0.25] * 4
    assert restrain_advantages([None] * 4, **{**KW, "kappa": 0.0}) == [0.0] * 4
    assert restrain_advantages([], **KW) == []


def test_small_sigma_reverts_to_majority_voting():
    answers = ["A"] * 5 + ["B"] * 3
    sharp = restrain_advantages(answers, kappa=0.0, delta=0.0, sigma=0.02)
    r = [1.0] * 5 + [0.0] * 3
    mean = 5 / 8
    std = math.sqrt(sum((x - mean) ** 2 for x in r) / 7)
    assert sharp == pytest.approx([(x - mean) / (std + 1e-4) for x in r], rel=1e-6)


def test_shaping_is_the_gaussian():
    assert shaping(1.0, 1.0, 0.5) == 1.0
    assert shaping(0.5, 1.0, 0.5) == pytest.approx(math.exp(-0.5))


def test_prompt_weights_from_the_frozen_model_and_cache(tmp_path):
    from verirl.answers import last_number

    calls = []

    def generate(prompts):
        calls.append(list(prompts))
        return [["2", "2", "2", "3"] if p == "easy" else ["1", "2", "3", "4"] for p in prompts]

    config = RestrainConfig()
    result = prompt_weights(generate, ["easy", "hard"], last_number, config)
    assert [r["majority_share"] for r in result] == [0.75, 0.25]
    assert result[0]["weight"] == pytest.approx(_g(0.75)) and result[0]["majority"] == "2"

    path = tmp_path / "weights.json"
    settings = {"model": "m", "n": 4}

    def compute(ps):
        return prompt_weights(generate, ps, last_number, config)

    first = cached_prompt_weights(path, ["easy", "hard", "easy"], settings, compute)
    assert first == pytest.approx([_g(0.75), _g(0.25), _g(0.75)])
    assert len(calls) == 2 and calls[-1] == ["easy", "hard"]  # duplicates computed once
    again = cached_prompt_weights(path, ["hard", "easy"], settings, compute)
    assert again == pytest.approx([_g(0.25), _g(0.75)]) and len(calls) == 2  # from the cache
    cached_prompt_weights(path, ["easy"], {"model": "other", "n": 4}, compute)
    assert len(calls) == 3  # other settings: recomputed
    assert json.loads(path.read_text())["settings"] == {"model": "other", "n": 4}


def test_trainer_uses_restrain_advantages(tiny_model_dir, tmp_path):
    """Real TRL GRPOTrainer subclass: the advantages fed to the loss are RESTRAIN's, not the rewards'."""
    from datasets import Dataset

    from verirl.answers import get_extractor
    from verirl.rewards.builtin import majority_vote

    seen = {}

    class Spy(RestrainGRPOTrainer):
        def _generate_and_score_completions(self, inputs):
            output = super()._generate_and_score_completions(inputs)
            seen["advantages"] = output["advantages"].tolist()
            seen["weights"] = [x[PROMPT_WEIGHT_COLUMN] for x in inputs]
            ids, mask = output["completion_ids"], output["completion_mask"].bool()
            texts = self.processing_class.batch_decode(
                [r[m].tolist() for r, m in zip(ids, mask, strict=True)], skip_special_tokens=True
            )
            seen["answers"] = [self.extractor(t) for t in texts]
            return output

    rows = [{"prompt": [{"role": "user", "content": f"What is {i}+1?"}], "answer": str(i + 1)} for i in range(4)]
    data = Dataset.from_list(rows).add_column(PROMPT_WEIGHT_COLUMN, [0.5] * 4)
    config = RestrainConfig()
    trainer = Spy(
        model=str(tiny_model_dir),
        reward_funcs=[majority_vote],
        args=plain_grpo_config(tmp_path, num_generations=4, per_device_train_batch_size=8, max_completion_length=4),
        train_dataset=data,
        restrain=config,
        extractor=get_extractor("last_number"),
    )
    trainer.train()
    assert seen["weights"] == [0.5] * 8
    expected = []
    for start in (0, 4):
        expected += restrain_advantages(
            seen["answers"][start : start + 4],
            kappa=config.kappa,
            delta=config.delta,
            sigma=config.sigma,
            center=config.center,
            prompt_weight=0.5,
        )
    assert seen["advantages"] == pytest.approx(expected, abs=1e-6)
    logged = trainer.state.log_history[0]
    for key in (
        "restrain/majority_share",
        "restrain/penalised",
        "restrain/distinct_answers",
        "restrain/prompt_weight",
    ):
        assert key in logged
    assert logged["restrain/prompt_weight"] == pytest.approx(0.5)


def test_recipe_end_to_end_with_cached_prompt_weights(tiny_model_dir, tmp_path):
    from verirl.worker import train

    recipe = tiny_grpo_recipe(tiny_model_dir, tmp_path / "out")
    recipe["advantage"] = {"name": "restrain", "kappa": 0.25}
    recipe["rewards"] = [{"name": "majority_vote"}, {"name": "number_match", "weight": 0.0}]
    recipe["args"].update(num_generations=4, per_device_train_batch_size=8, save_strategy="no")
    recipe["eval"] = {"reward": "number_match", "max_new_tokens": 4}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    results = train(str(path))
    assert results["train"]["steps"] == 2
    cache = json.loads((tmp_path / "out" / "restrain_prompt_weights.json").read_text())
    assert cache["settings"]["n"] == 4 and len(cache["prompts"]) == 16  # one weight per training prompt
    records = [json.loads(line) for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert any("restrain/majority_share" in r for r in records)
    resolved = tmp_path / "resolved.yaml"  # what `verirl train` writes to output_dir/recipe.yaml
    resolved.write_text(load_recipe(path).to_yaml())
    saved = load_recipe(resolved)
    assert saved.advantage.name == "restrain" and saved.advantage.kappa == 0.25 and saved.advantage.sigma == 0.5


@pytest.mark.parametrize(
    "advantage,key,fragment",
    [
        ({"name": "ppo"}, "advantage.name", "expected one of: grpo, restrain"),
        ({"name": "grpo", "kappa": 0.5}, "advantage.kappa", "only used by advantage.name: restrain"),
        ({"name": "restrain", "kappa": 3}, "advantage.kappa", "majority share in [0, 1]"),
        ({"name": "restrain", "sigma": 0}, "advantage.sigma", "positive bandwidth"),
        ({"name": "restrain", "delta": -1}, "advantage.delta", "non-negative"),
        ({"name": "restrain", "extractor": "nope"}, "advantage.extractor", "unknown extractor"),
        (
            {"name": "restrain", "extractor": "regex", "extractor_args": {"pattern": "("}},
            "advantage.extractor",
            "regex",
        ),
        ({"name": "restrain", "kapa": 0.5}, "advantage.kapa", "did you mean 'kappa'"),
    ],
)
def test_advantage_section_validation(tiny_model_dir, tmp_path, advantage, key, fragment):
    recipe = tiny_grpo_recipe(tiny_model_dir, tmp_path / "out")
    recipe["advantage"] = advantage
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert str(info.value).startswith(f"{path}: {key}: ") and fragment in str(info.value)
