"""Built-in rewards, the registry, entry-point plug-ins and dotted paths."""

import sys
import textwrap

import pytest

from tests.conftest import plain_grpo_config
from verirl.errors import RewardError
from verirl.rewards import base
from verirl.rewards.arithmetic import arithmetic_check, stated_equations
from verirl.rewards.base import available_rewards, required_columns, resolve_reward, reward
from verirl.rewards.builtin import exact_match, length_penalty, math_verify, number_match, regex_format

CHAT = [{"role": "assistant", "content": "12 + 34 = 46\nand then more text 99"}]


@pytest.mark.parametrize(
    "completion,answer,expected",
    [
        ("12 + 34 = 46", "46", 1.0),
        ("The answer is 46.", "46", 1.0),
        ("\n\n  46\n", 46, 1.0),
        ("46.0", "46", 1.0),
        ("1,234", "1234", 1.0),
        ("-7", "-7", 1.0),
        ("12 + 34 = 47", "46", 0.0),
        ("46 is wrong, 45\n46", "46", 0.0),  # only the first line counts, and its LAST number
        ("", "46", 0.0),
        (CHAT, "46", 1.0),
        ("46", "forty-six", None),  # a non-numeric gold answer: not applicable
    ],
)
def test_number_match(completion, answer, expected):
    assert number_match(None, [completion], answer=[answer]) == [expected]


def test_exact_match_and_case():
    assert exact_match(None, [" Paris \n", "paris"], answer=["Paris", "Paris"]) == [1.0, 0.0]
    assert exact_match(None, ["paris"], answer=["Paris"], ignore_case=True) == [1.0]


def test_regex_format_default_is_think_answer():
    good = "<think>add</think>\n<answer>46</answer>"
    assert regex_format(None, [good, "46", [{"role": "assistant", "content": good}]]) == [1.0, 0.0, 1.0]
    assert regex_format(None, ["46", "x46"], pattern=r"\d+", mode="fullmatch") == [1.0, 0.0]
    with pytest.raises(ValueError, match="mode"):
        regex_format(None, ["x"], mode="contains")


def test_length_penalty_is_dapo_soft_overlong():
    ids = [[0] * 10, [0] * 90, [0] * 150]
    assert length_penalty(None, ["a"] * 3, completion_ids=ids, max_length=100, cache_length=20) == [0.0, -0.5, -1.0]
    assert length_penalty(None, ["x" * 5, "x" * 11], unit="chars", max_length=10, cache_length=0) == [0.0, -1.0]
    with pytest.raises(ValueError, match="completion_ids"):
        length_penalty(None, ["a"])


def test_math_verify_equivalence():
    completions = [r"so \boxed{\frac{1}{2}}", "0.5", "The answer is $3$", "no idea"]
    scores = math_verify(None, completions, answer=["1/2", r"\frac{1}{2}", "3", "3"])
    assert scores == [1.0, 1.0, 1.0, 0.0]


@pytest.mark.parametrize(
    "completion,expected",
    [
        ("9 + 16 = 25", 1.0),
        ("9 + 16 = 154", 0.0),  # the reward model's favourite in docs/benchmarks.md: a false sum
        ("The sum is 9+16=25.", 1.0),
        ("11 + 42 = 11 * 12 = 136", 0.0),  # a chain: every stated result must hold
        ("9 + 16 equals 22.", 0.0),  # said in words: the escape a policy found from the '=' form (docs/benchmarks.md)
        ("9 plus 16 is 25", 1.0),
        ("9 multiplied by 3 makes 28", 0.0),
        ("The answer is 25", None),
        ("9 + 16 = 16 + 9", None),  # an identity states no result: not checked
        ("25 = 25", None),
        ("(2 + 3) × 4 = 20.0 and 10 ÷ 4 = 2.5", 1.0),
        ("1,000 + 24 = 1,024", 1.0),
        ("−3 + 5 = 2", 1.0),
        ("25", None),  # no equation: not applicable (a mixture constraint then does not floor)
        ("The answer is 25.", None),
        ("x - 9 + 16 = 25", None),  # the left side starts in a word: not plain arithmetic
        ("2 + 3 = 5x", None),
        ("2**99999 = 1", None),  # powers are not evaluated
        ("1 / 0 = 5", None),
        ("y = 2 + 3 and 2 + 2 = 5", 0.0),
        ("(" * 300 + "1" + ")" * 300 + " = 1", None),  # too long a side: skipped, not a crash
        ("12 " * 200_000 + "= 5", None),  # a long run: linear time (a backtracking pattern never returned)
        (CHAT, 1.0),
    ],
)
def test_arithmetic_check_is_a_label_free_calculator(completion, expected):
    assert arithmetic_check(None, [completion]) == [expected]


def test_arithmetic_check_missing_scores_a_completion_that_states_no_result():
    completions = ["25", "9 + 16 = 25", "9 + 16 = 26"]
    assert arithmetic_check(None, completions, missing=0.0) == [0.0, 1.0, 0.0]
    assert arithmetic_check(None, completions, missing=0.5) == [0.5, 1.0, 0.0]
    for bad in (1.5, -0.1, True, "0"):
        with pytest.raises(ValueError, match="missing"):
            arithmetic_check(None, completions, missing=bad)


def test_stated_equations_lists_each_link_of_a_chain():
    assert stated_equations("3*4 = 12 = 6+6 = 13") == [("3*4 = 12", True), ("12 = 6+6", True), ("6+6 = 13", False)]
    assert stated_equations("2+2 = 1+3 = 4.") == [("1+3 = 4.", True)]


def test_builtins_are_listed_with_their_origin():
    names = {info.name: info for info in available_rewards()}
    for name in ("number_match", "exact_match", "regex_format", "length_penalty", "math_verify"):
        assert names[name].kind == "builtin"
        assert names[name].origin.startswith("verirl.rewards.builtin:")
    assert names["arithmetic_check"].origin.startswith("verirl.rewards.arithmetic:")


def test_register_decorator_and_duplicate_names():
    @reward("test_brevity")
    def brevity(prompts, completions, **kwargs):
        return [1.0 / (1 + len(c)) for c in completions]

    try:
        assert resolve_reward("test_brevity")(None, ["", "a"]) == [1.0, 0.5]
        assert "test_brevity" in {i.name for i in available_rewards()}
        with pytest.raises(ValueError, match="already registered"):
            reward("test_brevity")(lambda prompts, completions, **kw: [])
    finally:
        base._REGISTRY.pop("test_brevity")


def test_dotted_path_function_class_and_bound_args(tmp_path, monkeypatch):
    (tmp_path / "myrewards.py").write_text(
        textwrap.dedent(
            """
            def brevity(prompts, completions, limit=3, **kwargs):
                return [float(len(c) <= limit) for c in completions]

            class Contains:
                def __init__(self, word):
                    self.word = word
                def __call__(self, prompts, completions, **kwargs):
                    return [float(self.word in c) for c in completions]

            def strict(prompts, completions):
                return [0.0 for _ in completions]
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_reward("myrewards:brevity")(None, ["ab", "abcd"]) == [1.0, 0.0]
    assert resolve_reward("myrewards:brevity", {"limit": 4})(None, ["abcd"]) == [1.0]
    assert resolve_reward("myrewards:Contains", {"word": "cat"})(None, ["a cat", "a dog"]) == [1.0, 0.0]
    with pytest.raises(RewardError, match="must accept \\*\\*kwargs"):
        resolve_reward("myrewards:strict")
    with pytest.raises(RewardError, match="bad args"):
        resolve_reward("myrewards:Contains", {"colour": "red"})
    with pytest.raises(RewardError, match="expected 'package.module:function'"):
        resolve_reward("myrewards:")


def test_entry_point_plugins_are_found_and_listed(tmp_path, monkeypatch):
    """A real entry point: an installed distribution's metadata on sys.path, as pip would write it."""
    pkg = tmp_path / "acme_rewards"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "def shout(prompts, completions, **kwargs):\n    return [float(c.isupper()) for c in completions]\n"
    )
    dist = tmp_path / "acme_rewards-1.2.3.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-rewards\nVersion: 1.2.3\n")
    (dist / "entry_points.txt").write_text("[verirl.rewards]\nshout = acme_rewards:shout\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    infos = {i.name: i for i in available_rewards()}
    assert infos["shout"].kind == "plugin"
    assert "acme_rewards:shout" in infos["shout"].origin and "acme-rewards 1.2.3" in infos["shout"].origin
    assert "acme_rewards" not in sys.modules  # listing does not import plug-ins
    assert resolve_reward("shout")(None, ["HEY", "hey"]) == [1.0, 0.0]


def test_broken_plugin_names_itself(tmp_path, monkeypatch):
    dist = tmp_path / "broken-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[verirl.rewards]\nbroken_reward = not_a_module_xyz:fn\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RewardError, match="plug-in entry point 'not_a_module_xyz:fn' failed to load"):
        resolve_reward("broken_reward")


def test_unknown_reward_suggests_the_closest_name():
    with pytest.raises(RewardError, match="did you mean 'exact_match'"):
        resolve_reward("exact_mach")


def test_required_columns():
    assert required_columns(number_match) == ("answer",)
    assert required_columns(regex_format) == ()
    assert required_columns(resolve_reward("exact_match", {"ignore_case": True})) == ("answer",)


def test_builtin_rewards_run_in_plain_trl_grpo(tiny_model_dir, tmp_path):
    """A verirl reward is a TRL reward: TRL's own GRPOTrainer calls it unchanged."""
    from datasets import Dataset
    from trl import GRPOTrainer

    calls = []

    def spy(prompts, completions, **kwargs):
        calls.append(kwargs)
        return number_match(prompts, completions, **kwargs)

    data = Dataset.from_list([{"prompt": [{"role": "user", "content": "What is 1+2?"}], "answer": "3"}] * 4)
    args = plain_grpo_config(tmp_path)
    trainer = GRPOTrainer(model=str(tiny_model_dir), reward_funcs=[spy, math_verify], args=args, train_dataset=data)
    trainer.train()
    assert calls and calls[0]["answer"] == ["3"] * 4
    assert {"completion_ids", "trainer_state", "log_metric"} <= set(calls[0])


@pytest.mark.parametrize(
    "name,args,fragment",
    [
        ("regex_format", {"mode": 1}, "args.mode: expected one of 'search', 'match', 'fullmatch', got 1"),
        ("regex_format", {"pattern": "[unclosed"}, "args.pattern: not a valid regular expression"),
        ("arithmetic_check", {"missing": True}, "args.missing: expected a number or null, got True"),
        ("arithmetic_check", {"missing": 1.5}, "args.missing: expected null or a number in [0, 1], got 1.5"),
        ("length_penalty", {"unit": "bytes"}, "args.unit: expected one of 'tokens', 'chars'"),
        ("length_penalty", {"max_length": 10, "cache_length": 20}, "0 <= cache_length <= max_length"),
        ("majority_vote", {"extractor": "nope"}, "unknown extractor 'nope'"),
        ("search_accuracy", {"metric": "acc"}, "args.metric: expected one of 'f1', 'em', 'contains'"),
    ],
)
def test_function_reward_arg_values_are_checked_when_resolved(name, args, fragment):
    with pytest.raises(RewardError) as err:
        resolve_reward(name, args)
    assert fragment in str(err.value) and str(err.value).startswith(f"reward {name!r}: ")


def test_good_function_reward_args_still_resolve():
    fn = resolve_reward("arithmetic_check", {"missing": 0})  # an int is a number
    assert fn(None, ["no result here"]) == [0.0]
    assert resolve_reward("regex_format", {"mode": "fullmatch", "pattern": "a+"})(None, ["aaa", "ab"]) == [1.0, 0.0]
    assert resolve_reward("search_accuracy", {"metric": "em"}).keywords == {"metric": "em"}


def test_plugin_type_hints_are_checked_and_unknown_kinds_left_alone():
    from verirl.rewards.arg_types import arg_problem

    class Scale:
        pass

    def plug(prompts, completions, k: int = 1, tags: list[str] | None = None, scale: Scale | None = None, **kw):
        return [float(k)] * len(completions)

    assert arg_problem(plug, {"k": "3"}) == "args.k: expected an integer, got '3'"
    assert arg_problem(plug, {"k": 2.0}) == "args.k: expected an integer, got 2.0"
    assert arg_problem(plug, {"tags": "a,b"}) == "args.tags: expected a list or null, got 'a,b'"
    assert arg_problem(plug, {"k": 3, "tags": ["a"], "scale": "anything"}) is None  # Scale is the plug-in's own kind

    def unhinted(prompts, completions, k=1, **kw):
        return [0.0] * len(completions)

    assert arg_problem(unhinted, {"k": "3"}) is None
