"""`trainer: reward_model` (TRL's RewardTrainer) and the reward model as a verifier and as a mixture member."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from verirl.errors import VerirlError
from verirl.rl.preference_pairs import group_pairs
from verirl.verifiers.groups import Group
from verirl.worker import train


def _write(recipe: dict, tmp_path, name: str = "recipe.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def test_group_pairs_all_and_best_worst():
    chat = [{"role": "user", "content": "q"}]
    groups = [Group(chat, ["a", "b", "c"], [1.0, 0.0, 0.5]), Group("text", ["x", "y"], [0.2, 0.2])]
    pairs = group_pairs(groups, "all", 0.0)
    assert [(p["chosen"][0]["content"], p["rejected"][0]["content"]) for p in pairs] == [
        ("a", "c"), ("a", "b"), ("c", "b"),
    ]  # fmt: skip
    assert pairs[0]["prompt"] == chat  # a tie makes no pair
    (best,) = group_pairs(groups, "best_worst", 0.0)
    assert (best["chosen"][0]["content"], best["rejected"][0]["content"]) == ("a", "b")
    assert len(group_pairs(groups, "all", 0.6)) == 1  # only the 1.0 vs 0.0 pair differs by more than 0.6
    (text,) = group_pairs([Group("p: ", ["hi", "lo"], [1.0, 0.0])], "all", 0.0)
    assert text == {"prompt": "p: ", "chosen": "hi", "rejected": "lo"}


def test_disjoint_pairs_use_each_completion_once():
    group = Group("q", ["a", "b", "c", "d", "e", "f"], [1.0, 0.0, 1.0, 0.0, 1.0, 1.0])
    pairs = group_pairs([group], "disjoint", 0.0)
    assert [(p["chosen"], p["rejected"]) for p in pairs] == [("a", "d"), ("c", "b")]  # e vs f: a tie, no pair
    used = [c for p in pairs for c in (p["chosen"], p["rejected"])]
    assert len(used) == len(set(used))
    assert group_pairs([Group("q", ["x", "y", "z"], [0.0, 1.0, 0.5])], "disjoint", 0.6) == [
        {"prompt": "q", "chosen": "y", "rejected": "x"}
    ]


@pytest.fixture(scope="module")
def preference_rm(tiny_model_dir, tmp_path_factory):
    """A reward model trained on a trivially learnable preference: 'yes' over 'no'."""
    root = tmp_path_factory.mktemp("rm")
    data = root / "prefs.jsonl"
    rows = [{"prompt": f"Question {i}?", "chosen": "yes", "rejected": "no"} for i in range(24)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    recipe = {
        "trainer": "reward_model",
        "model": str(tiny_model_dir),
        "data": {"path": "json", "data_files": str(data), "n_eval": 4},
        "args": {
            "max_steps": 12,
            "per_device_train_batch_size": 4,
            "learning_rate": 3e-3,
            "bf16": False,
            "report_to": "none",
            "save_strategy": "no",
            "logging_steps": 4,
            "gradient_checkpointing": False,
        },
        "output_dir": str(root / "rm"),
    }
    return train(_write(recipe, root)), root / "rm"


def test_reward_model_learns_a_preference_and_calibrates(preference_rm):
    results, out = preference_rm
    assert results["train"]["steps"] == 12 and results["train"]["pairs"] == 20
    assert results["held_out"]["pairs"] == 4
    assert results["held_out"]["pair_accuracy"] == 1.0
    calibration = json.loads((out / "verirl_reward_model.json").read_text())
    assert calibration["scale"] > 0 and math.isfinite(calibration["center"])
    assert "reward model" in (out / "README.md").read_text()


def test_reward_model_is_a_verifier_and_a_mixture_member(preference_rm):
    from verirl.verifiers.mixture_reward import MixtureReward
    from verirl.verifiers.registry import resolve_verifier, verdict_uncertainty

    _, out = preference_rm
    rm = resolve_verifier("reward_model", {"model": str(out), "batch_size": 2})
    prompts = [[{"role": "user", "content": "Question 99?"}]] * 3
    verdicts = rm.verify_batch(prompts, ["yes", "no", "yes"])
    yes, no, again = (v.score for v in verdicts)
    assert 0.0 <= no < 0.5 < yes <= 1.0 and again == pytest.approx(yes)
    assert verdict_uncertainty(verdicts[0]) == pytest.approx(
        -(yes * math.log(yes) + (1 - yes) * math.log(1 - yes)) / math.log(2), abs=1e-6
    )
    assert rm.verify(prompts[0], "yes").score == pytest.approx(yes, abs=1e-5)  # one at a time == batched

    mixture = MixtureReward([{"name": "reward_model", "args": {"model": str(out)}, "label": "rm"}], guide=0.0)
    expected = [(1 - verdict_uncertainty(v)) * v.score for v in verdicts[:2]]  # guide 0: R = (1 - u) s
    assert mixture(prompts[:2], ["yes", "no"]) == pytest.approx(expected)


def test_reward_model_from_reward_labelled_samples(tiny_model_dir, tmp_path):
    """No preference columns: the model samples k completions per prompt and the first reward labels them."""
    recipe = {
        "trainer": "reward_model",
        "model": str(tiny_model_dir),
        "data": {"builtin": "arithmetic", "n_train": 6, "n_eval": 3, "max_operand": 9},
        "rewards": [{"name": "regex_format", "args": {"pattern": "^\\S{0,8}$"}}],
        "reward_model": {"k": 6, "max_new_tokens": 6, "temperature": 1.0},
        "args": {"max_steps": 2, "per_device_train_batch_size": 4, "bf16": False, "report_to": "none",
                 "save_strategy": "no", "gradient_checkpointing": False},
        "output_dir": str(tmp_path / "rm"),
    }  # fmt: skip
    results = train(_write(recipe, tmp_path))
    assert (tmp_path / "rm" / "groups_train.jsonl").is_file()
    assert results["train"]["pairs"] > 0
    figures = results["held_out"]["best_of_k"]
    assert set(figures) == {"reward_model", "first_sample", "oracle"}
    assert figures["oracle"]["mean_reward"] >= figures["reward_model"]["mean_reward"]


def test_reward_model_without_pairs_or_rewards_is_one_line(tiny_model_dir, tmp_path):
    recipe = {
        "trainer": "reward_model",
        "model": str(tiny_model_dir),
        "data": {"builtin": "arithmetic", "n_train": 4, "n_eval": 2},
        "args": {"max_steps": 1, "bf16": False},
        "output_dir": str(tmp_path / "rm"),
    }
    with pytest.raises(VerirlError, match="no chosen/rejected columns .* give a rewards: entry") as info:
        train(_write(recipe, tmp_path))
    assert "\n" not in str(info.value)


def test_reward_model_section_is_validated(write_recipe):
    from verirl.recipes import load_recipe

    base = {"trainer": "reward_model", "model": "smollm2-135m-instruct", "data": {"builtin": "arithmetic"}}
    for section, message in [
        ({"k": 1}, r"reward_model\.k: expected >= 2"),
        ({"pairs": "some"}, r"reward_model\.pairs: expected one of: all, best_worst, disjoint"),
        ({"groups_from": "/nonexistent"}, r"reward_model\.groups_from: not a directory"),
    ]:
        with pytest.raises(VerirlError, match=message):
            load_recipe(write_recipe(dict(base, reward_model=section)))


def test_validating_a_recipe_loads_no_reward_model_weights(preference_rm, tmp_path):
    from verirl.verifiers.mixture_reward import MixtureReward

    _, out = preference_rm
    mixture = MixtureReward([{"name": "reward_model", "args": {"model": str(out)}}])
    assert mixture.members[0].verifier._model is None  # built (as validation builds it) but not loaded
    with pytest.raises(VerirlError, match=r"members\.0\.name: .*no such directory"):
        MixtureReward([{"name": "reward_model", "args": {"model": str(tmp_path / "missing")}}])
