"""FlashEvaluator: one pass per group, shared context and candidates, cross-candidate scoring, training, uses."""

import json

import pytest
import torch
import yaml

from verirl.cli import main
from verirl.errors import RecipeError
from verirl.recipes import load_recipe
from verirl.verifiers.flash_evaluator import FlashEvaluator, FlashEvaluatorConfig, encode_bytes
from verirl.verifiers.flash_training import (
    TrainConfig,
    listwise_loss,
    pairwise_loss,
    pairwise_ranking,
    pick_metrics,
    pointwise_loss,
    selection_accuracy,
    train_evaluator,
)
from verirl.verifiers.groups import (
    Group,
    ListwiseEvaluator,
    RewardEvaluator,
    evaluator_reward,
    load_groups,
    preference_pairs,
    save_groups,
)

SMALL = dict(
    d_model=32,
    heads=2,
    context_layers=1,
    candidate_layers=1,
    cross_layers=1,
    max_context_tokens=64,
    max_candidate_tokens=32,
)


def _model(**overrides):
    torch.manual_seed(0)
    model = FlashEvaluator(FlashEvaluatorConfig(**{**SMALL, **overrides})).eval()
    with torch.no_grad():
        for layer in model.token_cross:  # trained values, not the zero init: the own-candidate bias must matter
            layer.own_bias.normal_()
    return model


# the checks of the joint structure hold without and with the token-level cross-candidate layers
token_cross = pytest.mark.parametrize("token_cross", [0, 1])


def test_awkward_groups_have_defined_results():
    model = _model()
    assert isinstance(model, ListwiseEvaluator)
    assert model.score_group("ctx", []) == [] and model.select("ctx", []) is None
    assert len(model.score_group("ctx", ["only"])) == 1 and model.select("ctx", ["only"]) == 0
    scores = model.score_group([{"role": "user", "content": "q"}], ["", "x" * 10_000, "mixed lengths", None, "é🤖"])
    assert len(scores) == 5 and all(torch.isfinite(torch.tensor(scores)))
    assert encode_bytes("", 8) == [1, 2]  # BOS, EMPTY
    assert len(encode_bytes("x" * 100, 8)) == 8
    assert encode_bytes("abcdef", 4, keep="end")[1:] == [b + 3 for b in b"def"]  # BOS + the last 3 bytes


def test_joint_scoring_is_one_pass_and_pointwise_is_one_per_candidate(monkeypatch):
    calls = {"context": 0}
    for cross in (True, False):
        model = _model(cross_candidate=cross)
        original = model.encode_context

        def counting(*a, _orig=original, **k):
            calls["context"] += 1
            return _orig(*a, **k)

        monkeypatch.setattr(model, "encode_context", counting)
        calls["context"] = 0
        model.score_group("What is 2+2?", [f"2 + 2 = {i}" for i in range(16)])
        assert calls["context"] == (1 if cross else 16)


@token_cross
def test_dedup_gives_the_same_scores_and_keeps_vote_counts(token_cross):
    model = _model(token_cross_layers=token_cross)
    plain = FlashEvaluator(FlashEvaluatorConfig(**{**SMALL, "dedup": False, "token_cross_layers": token_cross})).eval()
    plain.load_state_dict(model.state_dict())
    for candidates in (["4", "5", "4", "4", "3", "5"], ["44", "55", "44", "44", "33", "55"]):  # padded, packed
        assert model.score_group("2+2", candidates) == pytest.approx(plain.score_group("2+2", candidates), abs=1e-5)
    candidates = ["4", "5", "4", "4", "3", "5"]
    assert model.score_group("2+2", candidates) == pytest.approx(plain.score_group("2+2", candidates), abs=1e-5)
    scores = model.score_group("2+2", candidates)
    assert scores[0] == pytest.approx(scores[2], abs=1e-6) and scores[1] == pytest.approx(scores[5], abs=1e-6)


@token_cross
@pytest.mark.parametrize("cross", [True, False])
def test_packed_scoring_matches_the_padded_batch_forward(cross, token_cross):
    """score_group packs the candidates' tokens (no padding); training's forward pads them: same scores."""
    from verirl.verifiers.flash_training import group_batch as _batch

    model = _model(cross_candidate=cross, token_cross_layers=token_cross)
    candidates = ["4", "the answer is 17", "", "x" * 100, "4", "five"]
    group = Group(context=[{"role": "user", "content": "What is 2+2?"}], candidates=candidates, rewards=[0.0] * 6)
    short = Group(context="2+3", candidates=["5", "six"], rewards=[1.0, 0.0])  # 4 empty slots in the batch
    ctx_ids, ctx_mask, ids, mask, present, _, features = _batch(model, [group, short])
    with torch.no_grad():
        padded = model(ctx_ids, ctx_mask, ids, mask, present, features)
    assert model.score_group(group.context, candidates) == pytest.approx(padded[0].tolist(), abs=1e-5)
    assert model.score_group(short.context, short.candidates) == pytest.approx(padded[1, :2].tolist(), abs=1e-5)


@token_cross
def test_scores_are_permutation_equivariant(token_cross):
    model = _model(token_cross_layers=token_cross)
    candidates = ["a", "bb", "ccc", "dddd"]
    scores = model.score_group("ctx", candidates)
    reordered = model.score_group("ctx", candidates[::-1])
    assert reordered == pytest.approx(scores[::-1], abs=1e-5)


@token_cross
def test_joint_scores_depend_on_the_other_candidates_pointwise_do_not(token_cross):
    joint, single = (
        _model(token_cross_layers=token_cross),
        _model(cross_candidate=False, token_cross_layers=token_cross),
    )
    for model, depends in ((joint, True), (single, False)):
        a = model.score_group("ctx", ["same", "other"])[0]
        b = model.score_group("ctx", ["same", "something else entirely"])[0]
        assert (abs(a - b) > 1e-6) is depends


@token_cross
def test_joint_and_pointwise_have_the_same_parameter_count(token_cross):
    joint = _model(token_cross_layers=token_cross).num_parameters()
    assert joint == _model(cross_candidate=False, token_cross_layers=token_cross).num_parameters()
    assert (joint > _model(token_cross_layers=0).num_parameters()) is bool(token_cross)


def test_save_and_load_roundtrip(tmp_path):
    model = _model()
    model.save_pretrained(tmp_path / "ev")
    loaded = FlashEvaluator.from_pretrained(tmp_path / "ev")
    assert loaded.config == model.config
    assert loaded.score_group("c", ["x", "y"]) == pytest.approx(model.score_group("c", ["x", "y"]))
    from verirl.errors import VerirlError

    with pytest.raises(VerirlError, match="evaluator_config.json"):
        FlashEvaluator.from_pretrained(tmp_path)


def test_an_evaluator_saved_before_token_cross_layers_existed_still_loads(tmp_path):
    model = _model(token_cross_layers=0)
    model.save_pretrained(tmp_path / "old")
    config_file = tmp_path / "old" / "evaluator_config.json"
    raw = json.loads(config_file.read_text())
    del raw["token_cross_layers"]  # what an evaluator saved by an earlier verirl has
    config_file.write_text(json.dumps(raw))
    loaded = FlashEvaluator.from_pretrained(tmp_path / "old")
    assert loaded.config.token_cross_layers == 0
    assert loaded.score_group("c", ["x", "y"]) == pytest.approx(model.score_group("c", ["x", "y"]))


def test_losses_by_hand():
    scores = torch.tensor([[2.0, 0.0, float("-inf")]])
    rewards = torch.tensor([[1.0, 0.0, 0.0]])
    present = torch.tensor([[True, True, False]])
    # target ~ one-hot on the first: loss = -log softmax(2, 0)[0] = log(1 + e^-2)
    assert listwise_loss(scores, rewards, present, 0.01).item() == pytest.approx(
        torch.log1p(torch.exp(torch.tensor(-2.0))).item(), rel=1e-4
    )
    assert pairwise_loss(scores, rewards, present).item() == pytest.approx(
        torch.nn.functional.softplus(torch.tensor(-2.0)).item()
    )
    bce = pointwise_loss(torch.tensor([[0.0, 0.0, 0.0]]), rewards, present)
    assert bce.item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_pick_metrics():
    groups = [
        Group("a", ["x", "y"], [1.0, 0.0]),
        Group("b", ["x", "y"], [0.0, 0.0]),
        Group("c", ["x", "y"], [0.0, 1.0]),
    ]
    metrics = pick_metrics(groups, [0, 1, 0])
    assert metrics["accuracy"] == pytest.approx(2 / 3)  # group b: any pick is "the best"
    assert metrics["decisive_accuracy"] == 0.5 and metrics["decisive_groups"] == 2
    assert metrics["mean_reward"] == pytest.approx(1 / 3)


def test_pairwise_ranking_counts_every_pair_with_different_rewards():
    groups = [
        Group("a", ["x", "y", "z"], [1.0, 0.0, 0.0]),  # pairs (x,y) (x,z): one right, one tied -> 1.5 / 2
        Group("b", ["x", "y"], [0.5, 0.5]),  # no pair with different rewards: left out
        Group("c", ["x", "y", "z"], [0.0, 0.5, 1.0]),  # 3 pairs, ordered backwards -> 0 / 3
    ]
    scores = [[2.0, 1.0, 2.0], [0.0, 1.0], [3.0, 2.0, 1.0]]
    assert pairwise_ranking(groups, scores) == pytest.approx((0.75 + 0.0) / 2)
    assert pairwise_ranking(groups[1:2], scores[1:2]) == 0.0


def test_train_evaluator_rejects_an_unknown_epoch_selection_figure():
    groups = [Group("a", ["x", "y"], [1.0, 0.0])]
    with pytest.raises(ValueError, match="select_by: expected one of"):
        train_evaluator(_model(), groups, config=TrainConfig(select_by="loss"))


def _word_groups(n, seed):
    import random

    rng = random.Random(seed)
    words = ["apple", "river", "stone", "cloud", "green", "tiger"]
    groups = []
    for _ in range(n):
        target = rng.choice(words)
        candidates = rng.sample(words, 4)
        if target not in candidates:
            candidates[rng.randrange(4)] = target
        groups.append(Group(f"pick the word {target}", candidates, [float(c == target) for c in candidates]))
    return groups


def test_training_learns_to_select():
    train, held_out = _word_groups(300, 0), _word_groups(60, 1)
    model = _model()
    before = selection_accuracy(model, held_out)["decisive_accuracy"]
    history = train_evaluator(model, train, held_out, TrainConfig(epochs=8, lr=3e-3, batch_groups=16), log=None)
    after = selection_accuracy(model, held_out)["decisive_accuracy"]
    assert history["history"][-1]["loss"] < history["history"][0]["loss"]
    assert after >= 0.9 > before


def test_groups_from_a_generator_and_roundtrip(tmp_path):
    from verirl.data import DataSpec, load_data
    from verirl.generators import SamplingParams
    from verirl.rewards.builtin import number_match
    from verirl.testing import NoisyArithmeticGenerator
    from verirl.verifiers.groups import build_groups

    data, _ = load_data(DataSpec(builtin="arithmetic", n_train=5, n_eval=1, options={"max_operand": 9}))
    groups = build_groups(NoisyArithmeticGenerator(p_correct=0.5), data, 6, number_match, SamplingParams(seed=1))
    assert len(groups) == 5 and all(len(g.candidates) == 6 for g in groups)
    for g in groups:
        assert g.rewards == number_match(None, g.candidates, answer=[g.meta["answer"]] * 6)
    save_groups(groups, tmp_path / "g.jsonl")
    assert load_groups(tmp_path / "g.jsonl") == groups
    (tmp_path / "bad.jsonl").write_text('{"context": "x"}\n')
    from verirl.errors import VerirlError

    with pytest.raises(VerirlError, match="line 1: expected context, candidates, rewards"):
        load_groups(tmp_path / "bad.jsonl")


def test_reward_evaluator_best_of_k_and_dpo_pairs():
    from verirl.generators import SamplingParams
    from verirl.rewards.builtin import number_match
    from verirl.testing import NoisyArithmeticGenerator
    from verirl.verifiers.best_of_k import BestOfK

    prompt = [{"role": "user", "content": "What is 12+30? Answer with just the number."}]
    oracle = RewardEvaluator(number_match, {"answer": "42"})
    choice = BestOfK(NoisyArithmeticGenerator(p_correct=0.4), oracle, k=8, sampling=SamplingParams(seed=3)).select(
        [prompt]
    )[0]
    assert "42" in choice.text and choice.scores[choice.index] == 1.0 and len(choice.candidates) == 8
    groups = [
        Group(prompt, ["12 + 30 = 41", "12 + 30 = 42", "12 + 30 = 41"], [0.0, 1.0, 0.0]),
        Group(prompt, ["42", "42"], [1.0, 1.0]),
    ]
    pairs = preference_pairs(oracle, groups)
    assert pairs == [{"prompt": prompt, "chosen": "12 + 30 = 42", "rejected": "12 + 30 = 41", "score_gap": 1.0}]


def test_evaluator_as_a_group_reward_in_real_grpo(tiny_model_dir, tmp_path):
    """One score_group call per prompt group inside TRL's GRPOTrainer (through the guard, no per-sample retry)."""
    from datasets import Dataset
    from trl import GRPOTrainer

    from tests.conftest import plain_grpo_config
    from verirl.rewards.guard import GuardedReward

    calls = []
    model = _model()

    class Counting:
        def score_group(self, context, candidates):
            calls.append(len(candidates))
            return model.score_group(context, candidates)

    reward = GuardedReward(evaluator_reward(Counting(), "flash"), "flash", retry_per_sample=False)
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": f"What is {i}+1?"}]} for i in range(4)])
    trainer = GRPOTrainer(
        model=str(tiny_model_dir),
        reward_funcs=[reward],
        train_dataset=data,
        args=plain_grpo_config(tmp_path, num_generations=4, per_device_train_batch_size=8),
    )
    trainer.train()
    assert calls == [4, 4]  # 8 completions per step = 2 prompts x 4: one call per group
    assert "rewards/flash/mean" in trainer.state.log_history[0]


def test_evaluator_recipe_cli_and_select(tmp_path, capsys):
    from verirl.testing import NoisyArithmeticGenerator  # noqa: F401 - documents where the groups come from

    groups = _word_groups(120, 2)
    src = tmp_path / "groups"
    save_groups(groups[:100], src / "groups_train.jsonl")
    save_groups(groups[100:], src / "groups_eval.jsonl")
    recipe = {
        "trainer": "evaluator",
        "model": "smollm2-135m-instruct",  # not loaded: groups come from groups_from
        "data": {"builtin": "arithmetic", "n_train": 10, "n_eval": 2},
        "rewards": [{"name": "number_match"}],
        "evaluator": {
            "k": 4,
            "model": SMALL,
            "train": {"epochs": 2, "batch_groups": 16},
            "groups_from": str(src),
            "extractor": "stripped",
        },
        "output_dir": str(tmp_path / "out"),
    }
    path = tmp_path / "ev.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["evaluator", "train", str(path)]) == 0
    out = capsys.readouterr().out
    assert "best-of-4 on 20 held-out prompts" in out and "majority_vote" in out and "pointwise" in out
    results = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert results["flash"]["parameters"] == results["pointwise"]["parameters"]
    assert results["oracle"]["mean_reward"] == 1.0
    assert (tmp_path / "out" / "evaluator" / "model.safetensors").is_file()

    save_groups(groups[100:103], tmp_path / "score.jsonl")
    assert (
        main(["select", "--evaluator", str(tmp_path / "out" / "evaluator"), "--groups", str(tmp_path / "score.jsonl")])
        == 0
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3 and all(
        line["choice"] in g.candidates for line, g in zip(lines, groups[100:103], strict=True)
    )
    assert main(["select", "--evaluator", str(tmp_path / "out" / "evaluator")]) == 2
    assert "pass prompts and --model" in capsys.readouterr().err


@pytest.mark.parametrize(
    "section,key,fragment",
    [
        ({"k": 0}, "evaluator.k", "positive integer"),
        ({"model": {"d_model": 30, "heads": 4}}, "evaluator.model.heads", "must divide"),
        ({"model": {"layers": 2}}, "evaluator.model.layers", "unknown key"),
        ({"train": {"epochs": "many"}}, "evaluator.train.epochs", "expected int"),
        ({"train": {"select_by": "loss"}}, "evaluator.train.select_by", "expected one of: pairwise, top1, got 'loss'"),
        ({"extractor": "nope"}, "evaluator.extractor", "unknown extractor"),
        ({"groups_from": "/no/such/dir"}, "evaluator.groups_from", "not a directory"),
    ],
)
def test_evaluator_recipe_validation(tmp_path, section, key, fragment):
    recipe = {
        "trainer": "evaluator",
        "model": "smollm2-135m-instruct",
        "data": "arithmetic",
        "rewards": ["number_match"],
        "evaluator": section,
    }
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    assert str(info.value).startswith(f"{path}: {key}: ") and fragment in str(info.value)


def test_select_generates_k_candidates_with_a_model(tiny_model_dir, tmp_path, capsys):
    _model().save_pretrained(tmp_path / "ev")
    argv = [
        "select",
        "--evaluator",
        str(tmp_path / "ev"),
        "--model",
        str(tiny_model_dir),
        "-k",
        "3",
        "--max-new-tokens",
        "4",
        "What is 1+2?",
        "What is 3+4?",
    ]
    assert main(argv) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["prompt"] for line in lines] == ["What is 1+2?", "What is 3+4?"]
    for line in lines:
        assert len(line["candidates"]) == 3 and line["choice"] == line["candidates"][line["index"]]
        assert line["scores"][line["index"]] == max(line["scores"])
    assert main(["select", "--evaluator", str(tmp_path / "ev"), "--model", str(tiny_model_dir), "-k", "0", "x"]) == 2


def test_agreement_features_are_visible_only_to_the_joint_model():
    joint, single = _model(agreement="last_number"), _model(agreement="last_number", cross_candidate=False)
    candidates = ["2 + 2 = 4", "4", "2 + 2 = 5", "no idea"]
    assert joint.features(candidates) == [[0.5, 1.0, 1.0], [0.5, 1.0, 1.0], [0.25, 0.0, 1.0], [0.0, 0.0, 0.0]]
    assert single.features(candidates) == [[1.0, 1.0, 1.0]] * 3 + [[0.0, 0.0, 0.0]]  # each candidate alone
    assert _model().features(candidates) == [[0.0, 0.0, 0.0]] * 4
    plain = FlashEvaluator(FlashEvaluatorConfig(**{**SMALL, "agreement": "last_number", "dedup": False})).eval()
    plain.load_state_dict(joint.state_dict())
    assert joint.score_group("2+2", candidates + ["4"]) == pytest.approx(
        plain.score_group("2+2", candidates + ["4"]), abs=1e-5
    )


def test_training_uses_agreement(tmp_path):
    """Groups whose best candidate is the majority answer but looks like any other: agreement makes it learnable."""
    import random

    rng = random.Random(0)
    groups = []
    for _ in range(200):
        right = str(rng.randint(10, 99))
        wrong = [str(rng.randint(10, 99)) for _ in range(3)]
        candidates = [right, right, right] + wrong
        rng.shuffle(candidates)
        groups.append(Group("say a number", candidates, [float(c == right) for c in candidates]))
    model = _model(agreement="stripped")
    train_evaluator(model, groups[:160], None, TrainConfig(epochs=6, lr=3e-3, batch_groups=16), log=None)
    assert selection_accuracy(model, groups[160:])["decisive_accuracy"] >= 0.9
