"""The verifier mixture as a reward: members, constraints, the gate, guards, metrics, the recipe form, and GRPO's
group baseline with abstentions (a real TRL GRPOTrainer on the tiny model)."""

from __future__ import annotations

import math
import time

import pytest

from verirl.errors import VerirlError
from verirl.verifiers.base import Verdict
from verirl.verifiers.mixture import mix
from verirl.verifiers.mixture_reward import MixtureReward, mixture_line

HERE = "tests.test_mixture_reward"


class Scored:
    """Score and uncertainty read from the completion text: 'score|uncertainty'; None if it has no '|'."""

    def __init__(self, slot: int = 0):
        self.slot = slot

    def verify(self, prompt, completion, **ctx):
        parts = str(completion).split(";")[self.slot]
        if "|" not in parts:
            return Verdict(None)
        score, u = parts.split("|")
        return Verdict(float(score), details={"uncertainty": float(u)})


class Broken:
    def __init__(self, how: str = "raise"):
        self.how = how

    def verify(self, prompt, completion, **ctx):
        if self.how == "raise":
            raise RuntimeError("judge down")
        if self.how == "hang":
            time.sleep(30)
        if self.how == "range":
            return Verdict(3.0)
        if self.how == "nan":
            return Verdict(math.nan)
        return "not a verdict"


class Batched:
    """A batch verifier (as reward models are): one call per batch, counted."""

    calls = 0

    def verify_batch(self, prompts, completions, **columns):
        Batched.calls += 1
        return [Verdict(1.0 if c.startswith("1") else 0.0, details={"probs": [0.9, 0.1]}) for c in completions]

    def verify(self, prompt, completion, **ctx):  # pragma: no cover - verify_batch is preferred
        raise AssertionError("verify_batch should be used")


def topic_gate(prompt, topic=None, **row):
    """A rule gate reading the row's topic (never the completion)."""
    if topic == "math":
        return {"a": 3.0}
    if topic == "bad":
        raise ValueError("gate broken")
    return [1.0, 1.0]


class Metrics:
    def __init__(self):
        self.values: dict[str, list[float]] = {}

    def __call__(self, name, value):
        self.values.setdefault(name, []).append(value)


def members(*specs):
    return [dict(s, name=f"{HERE}:{s['name']}") for s in specs]


def test_fuses_members_exactly_as_mix():
    reward = MixtureReward(
        members(
            {"name": "Scored", "label": "a", "gate": 1.0},
            {"name": "Scored", "label": "b", "gate": 3.0, "args": {"slot": 1}},
        ),
        alpha=1.0,
    )
    completions = ["0.2|0.5;0.9|0", "1|0;0|0", "0.4|0;x"]
    got = reward(["p"] * 3, completions)
    want = [
        mix([0.2, 0.9], [1, 3], [0.5, 0.0])[0],
        mix([1.0, 0.0], [1, 3], [0.0, 0.0])[0],
        mix([0.4, None], [1, 3], [0.0, 0.0])[0],  # b does not apply: a alone
    ]
    assert got == pytest.approx(want)
    assert got[2] == pytest.approx(0.4)


def test_constraint_floors_the_sample_whatever_the_others_say():
    reward = MixtureReward(
        members(
            {"name": "Scored", "label": "quality"},
            {
                "name": "Scored",
                "label": "safe",
                "kind": "constraint",
                "threshold": 0.5,
                "floor": 0.1,
                "args": {"slot": 1},
            },
        )
    )
    metrics = Metrics()
    got = reward(["p"] * 3, ["1|0;0.2|0", "1|0;0.8|0", "0.6|0;x"], log_metric=metrics)
    assert got == pytest.approx([0.1, 1.0, 0.6])  # failed, passed, constraint not applicable
    assert metrics.values["mixture/mixture/floored"] == [pytest.approx(1 / 3)]
    assert metrics.values["mixture/mixture/safe/applies"] == [pytest.approx(2 / 3)]


def test_abstains_when_unsure_and_when_nothing_applies():
    reward = MixtureReward(members({"name": "Scored"}), abstain_above=0.5)
    metrics = Metrics()
    assert reward(["p"] * 3, ["1|0.9", "x", "0.5|0.2"], log_metric=metrics) == [None, None, 0.5 * 0.8 + 0.5 * 0.2]
    assert metrics.values["mixture/mixture/abstained"] == [pytest.approx(2 / 3)]
    assert metrics.values["mixture/mixture/omega"] == [pytest.approx(0.2)]


@pytest.mark.parametrize(
    ("how", "reason"), [("raise", "exception"), ("range", "out_of_range"), ("nan", "nonfinite"), ("type", "bad_type")]
)
def test_a_failing_member_counts_as_not_applicable(how, reason):
    reward = MixtureReward(members({"name": "Scored", "label": "good"}, {"name": "Broken", "args": {"how": how}}))
    metrics = Metrics()
    assert reward(["p"] * 2, ["0.7|0", "0.3|0"], log_metric=metrics) == pytest.approx([0.7, 0.3])
    assert reward.members[1].guard.failures[reason] == 2
    assert metrics.values["reward_failures/mixture.Broken"] == [2.0]
    assert reward.stats()["Broken_failed"] == 2


def test_a_hanging_member_times_out_and_the_step_goes_on():
    reward = MixtureReward(members({"name": "Scored"}, {"name": "Broken", "args": {"how": "hang"}, "timeout_s": 0.2}))
    start = time.monotonic()
    assert reward(["p"], ["0.5|0"]) == [0.5]
    assert time.monotonic() - start < 5
    assert reward.members[1].guard.failures["timeout"] == 1


def test_batch_members_are_called_once_per_batch_with_their_confidence():
    Batched.calls = 0
    reward = MixtureReward(members({"name": "Batched"}), guide=0.0)
    got = reward(["p"] * 4, ["1", "0", "1x", "2"])
    assert Batched.calls == 1
    u = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2)  # normalised entropy of (0.9, 0.1)
    assert got == pytest.approx([(1 - u) * 1.0, 0.0, (1 - u) * 1.0, 0.0])


def test_rule_gate_reads_the_row_and_falls_back_on_failure():
    reward = MixtureReward(
        members({"name": "Scored", "label": "a"}, {"name": "Scored", "label": "b", "args": {"slot": 1}}),
        gate=f"{HERE}:topic_gate",
        alpha=0.0,
    )
    metrics = Metrics()
    got = reward(["p"] * 3, ["1|0;0|0"] * 3, topic=["math", "other", "bad"], log_metric=metrics)
    assert got == pytest.approx([0.75, 0.5, 0.5])  # a:b = 3:1, then 1:1, then the static weights
    assert reward.gate_failures == 1
    assert metrics.values["mixture/mixture/a/gate"] == [pytest.approx((0.75 + 0.5 + 0.5) / 3)]


def test_rewards_and_verifiers_are_members_by_name():
    reward = MixtureReward(["exact_answer", {"name": "number_match", "gate": 0.5}], alpha=0.0)
    assert reward(["q", "q"], ["46", "7"], answer=["46", "46"]) == pytest.approx([1.0, 0.0])
    assert [m.label for m in reward.members] == ["exact_answer", "number_match"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"members": []}, "members: expected a non-empty list"),
        ({"members": ["nope"]}, "members.0.name: 'nope' is neither a verifier"),
        ({"members": ["numbr_match"]}, "did you mean 'number_match'"),
        ({"members": [{"name": "exact_answer", "kind": "judge"}]}, "members.0.kind"),
        ({"members": [{"name": "exact_answer", "gate": -1}]}, "members.0.gate"),
        ({"members": [{"name": "exact_answer", "threshold": 2}]}, "members.0.threshold"),
        ({"members": [{"name": "exact_answer", "colour": 2}]}, "members.0.colour"),
        ({"members": ["exact_answer", "exact_answer"]}, "members.1.label: 'exact_answer' is used twice"),
        ({"members": [{"name": "exact_answer", "kind": "constraint"}]}, "at least one member of kind reward"),
        ({"members": ["exact_answer"], "alpha": math.nan}, "alpha"),
        ({"members": ["exact_answer"], "guide": "max"}, "guide"),
        ({"members": ["exact_answer"], "abstain_above": 2}, "abstain_above"),
        ({"members": ["exact_answer"], "gate": "nogate"}, "gate: expected 'module:function'"),
        ({"members": ["exact_answer"], "gate": "verirl.nothing:fn"}, "cannot import module"),
        ({"members": ["exact_answer"], "timeout_s": 0}, "timeout_s"),
    ],
)
def test_bad_mixtures_are_one_line_errors(kwargs, message):
    with pytest.raises(VerirlError, match=message) as info:
        MixtureReward(**kwargs)
    assert "\n" not in str(info.value)


def test_recipe_form_names_the_field(write_recipe):
    from verirl.recipes import load_recipe

    base = {
        "trainer": "grpo",
        "model": "smollm2-135m-instruct",
        "data": {"builtin": "arithmetic"},
        "rewards": [{"mixture": {"name": "mathmix", "members": ["exact_answer", "number_match"]}, "weight": 2.0}],
    }
    recipe = load_recipe(write_recipe(base))
    (spec,) = recipe.rewards
    assert (spec.name, spec.metric, spec.weight, spec.timeout_s) == ("mixture", "mathmix", 2.0, None)
    assert "exact_answer, number_match; alpha 1, guide min" in mixture_line(spec.args)

    bad = dict(base, rewards=[{"mixture": {"members": ["exact_answer", "nope"]}}])
    with pytest.raises(VerirlError, match=r"rewards\.0\.mixture: members\.1\.name: 'nope'"):
        load_recipe(write_recipe(bad))
    bad = dict(base, rewards=[{"mixture": {"members": ["exact_answer"]}, "name": "x"}])
    with pytest.raises(VerirlError, match=r"rewards\.0\.name: set it inside the mixture: block"):
        load_recipe(write_recipe(bad))
    abstaining = {"mixture": {"members": ["exact_answer"], "abstain_above": 0.5}}
    bad = dict(base, rewards=[abstaining, "number_match"])
    with pytest.raises(VerirlError, match=r"rewards\.0\.mixture\.abstain_above: a mixture that abstains must be"):
        load_recipe(write_recipe(bad))
    two = dict(base, rewards=[{"mixture": {"members": ["exact_answer"]}}, {"mixture": {"members": ["number_match"]}}])
    with pytest.raises(VerirlError, match="'mixture' is listed twice"):
        load_recipe(write_recipe(two))


class LengthParity:
    """Sure of even-length completions, unsure of odd ones; the score is the length's last digit / 9."""

    def verify(self, prompt, completion, **ctx):
        n = len(str(completion))
        return Verdict((n % 10) / 9, details={"uncertainty": 0.0 if n % 2 == 0 else 1.0})


def test_abstentions_stay_out_of_trls_group_baseline(tiny_model_dir, tmp_path):
    """A real GRPOTrainer: the abstained samples get advantage 0 and the others are normalised among themselves."""
    from datasets import Dataset
    from trl import GRPOTrainer

    from tests.conftest import plain_grpo_config
    from verirl.rewards.guard import GuardedReward

    mixture = MixtureReward(members({"name": "LengthParity"}), name="parity", abstain_above=0.5)
    seen: list[list] = []

    def recorded(prompts, completions, **kwargs):
        out = mixture(prompts, completions, **kwargs)
        seen.append(out)
        return out

    reward = GuardedReward(recorded, "parity", timeout_s=None)
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": "Say something."}]}] * 8)
    args = plain_grpo_config(tmp_path, num_generations=8, per_device_train_batch_size=8, max_completion_length=9)
    trainer = GRPOTrainer(model=str(tiny_model_dir), reward_funcs=[reward], args=args, train_dataset=data)
    for _ in range(10):  # until a batch has both kinds (random tiny model: lengths vary; P(fail) ~ 0.008 ** 10)
        out = trainer._generate_and_score_completions([dict(data[0]) for _ in range(8)])
        rewards = seen[-1]
        kept = [r for r in rewards if r is not None]
        if 2 <= len(kept) < 8:
            break
    else:
        pytest.fail(f"no batch with both abstained and at least two scored samples in 10 tries: {seen}")
    advantages = out["advantages"].tolist()
    mean = sum(kept) / len(kept)
    std = (sum((r - mean) ** 2 for r in kept) / (len(kept) - 1)) ** 0.5
    for r, a in zip(rewards, advantages, strict=True):
        assert a == pytest.approx(0.0 if r is None else (r - mean) / (std + 1e-4), abs=1e-4)


def test_a_recipe_mixture_trains_and_logs_per_member(tiny_model_dir, tmp_path):
    """Through verirl's worker (recipe -> entry point 'mixture' -> GRPOTrainer): the mixture's metrics reach
    metrics.jsonl under its name (the launch path itself is tests/test_train.py's)."""
    from tests.conftest import one_grpo_step

    mixture = {
        "name": "mathmix",
        "members": ["number_match", {"name": "regex_format", "args": {"pattern": "^\\S{0,6}$"}, "label": "short"}],
        "timeout_s": 20,
    }
    results, record = one_grpo_step(tiny_model_dir, tmp_path, rewards=[{"mixture": mixture}])
    assert results["train"]["steps"] == 1
    assert "rewards/mathmix/mean" in record
    assert record["mixture/mathmix/number_match/applies"] == 1.0
    assert record["reward_failures/mathmix.short"] == 0.0
    assert 0.0 <= record["mixture/mathmix/short/mean"] <= 1.0
    assert record["mixture/mathmix/abstained"] == 0.0
