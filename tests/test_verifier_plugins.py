"""Verifier plug-ins: registry, resolution, built-ins, the uncertainty convention, the check, the scaffold, the CLI."""

import argparse
import math
import os
import re
import subprocess
import sys
import textwrap

import pytest

from verirl.cli import verifiers as cli
from verirl.errors import VerirlError
from verirl.rewards.builtin import exact_match
from verirl.verifiers.base import Verdict
from verirl.verifiers.check import check_verifier, format_results
from verirl.verifiers.registry import (
    _REGISTRY,
    ExactAnswer,
    VerifierError,
    available_verifiers,
    from_reward,
    resolve_verifier,
    uncertainty_problem,
    verdict_uncertainty,
    verifier,
)
from verirl.verifiers.scaffold import scaffold

CHAT = [{"role": "assistant", "content": "12 + 34 = 46.0\nmore text 99"}]


def _one_line_error(name, args=None, match=None):
    with pytest.raises(VerifierError) as info:
        resolve_verifier(name, args)
    message = str(info.value)
    assert "\n" not in message and repr(name) in message, message
    if match:
        assert match in message, message
    return message


def _write_module(tmp_path, monkeypatch, name, source):
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))


def _write_dist(tmp_path, dist_name, version, entry_points):
    dist = tmp_path / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (dist / "entry_points.txt").write_text(f"[verirl.verifiers]\n{lines}")


# -- built-ins ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "completion,answer,expected",
    [
        ("12 + 34 = 46", "46", 1.0),
        ("46.0", 46, 1.0),  # canonical forms on both sides
        ("1,234", "1234.0", 1.0),
        (CHAT, "46", 1.0),  # first line, last number, from the last chat message
        ("12 + 34 = 47", "46", 0.0),
        ("no number here", "46", 0.0),
        ("", "46", 0.0),
        (None, "46", 0.0),
        (42, "46", 0.0),  # not a completion at all: no answer, never an exception
        ("46", None, None),  # no answer in the row: not applicable
    ],
)
def test_exact_answer_extracts_and_compares(completion, answer, expected):
    verdict = resolve_verifier("exact_answer").verify("q", completion, answer=answer)
    assert isinstance(verdict, Verdict)
    assert verdict.score == expected
    assert verdict.details["uncertainty"] == 0.0
    assert isinstance(verdict.feedback, str) and verdict.feedback


def test_exact_answer_without_answer_column_and_options():
    assert resolve_verifier("exact_answer").verify("q", "46").score is None
    boxed = resolve_verifier("exact_answer", {"extractor": "boxed"})
    assert boxed.verify("q", r"so \boxed{x^2} and 7", answer="x^2").score == 1.0
    assert boxed.verify("q", "x^2", answer="x^2").score == 0.0
    regex = resolve_verifier("exact_answer", {"extractor": "regex", "extractor_args": {"pattern": r"ANSWER: (\w+)"}})
    assert regex.verify("q", "ANSWER: Paris", answer="paris").score == 0.0
    caseless = resolve_verifier(
        "exact_answer", {"extractor": "regex", "extractor_args": {"pattern": r"ANSWER: (\w+)"}, "ignore_case": True}
    )
    verdict = caseless.verify("q", "ANSWER: Paris", answer="paris")
    assert verdict.score == 1.0 and verdict.details["answer"] == "Paris"


def test_exact_answer_agrees_with_the_exact_match_reward_on_stripped_answers():
    stripped = ExactAnswer(extractor="stripped")
    for completion, gold in [("  Paris \n", "Paris"), ("paris", "Paris"), ("Paris!", "Paris")]:
        (expected,) = exact_match(None, [completion], answer=[gold])
        assert stripped.verify("q", completion, answer=gold).score == expected


def test_reward_adapter_by_name_and_by_function():
    v = resolve_verifier("reward:exact_match", {"ignore_case": True})
    verdict = v.verify("q", "PARIS", answer="paris")
    assert verdict.score == 1.0 and verdict.details == {"reward": 1.0, "uncertainty": 0.0}
    assert "exact_match" in verdict.feedback
    number = resolve_verifier("reward:number_match")
    assert number.verify("q", "46", answer="forty-six").score is None  # the reward's None: not applicable

    def half(prompts, completions, **kwargs):
        return [0.5 for _ in completions]

    verdict = from_reward(half).verify("q", "anything")
    assert verdict.score == 0.5 and verdict.details["reward"] == 0.5 and "half" in verdict.feedback


def test_reward_adapter_errors_name_the_verifier():
    _one_line_error("reward:no_such_reward", match="unknown reward 'no_such_reward'")
    _one_line_error("reward:exact_match", {"colour": 1}, match="unknown args ['colour']")
    _one_line_error("reward:", match="expected 'reward:NAME'")


def test_reward_adapter_rejects_bad_reward_output():
    def two(prompts, completions, **kwargs):
        return [1.0, 1.0]

    def text(prompts, completions, **kwargs):
        return ["1"]

    with pytest.raises(ValueError, match="for one completion"):
        from_reward(two).verify("q", "c")
    with pytest.raises(TypeError, match="returned a str"):
        from_reward(text).verify("q", "c")


# -- registry ---------------------------------------------------------------------------------------------------------


def test_builtins_are_listed():
    infos = {i.name: i for i in available_verifiers()}
    assert infos["exact_answer"].kind == "builtin"
    assert infos["exact_answer"].origin == "verirl.verifiers.registry:ExactAnswer"
    assert infos["exact_answer"].summary.startswith("1.0 if the answer extracted")
    assert infos["reward:NAME"].origin == "verirl.verifiers.registry:from_reward"


def test_register_decorator_duplicates_and_reserved_names():
    @verifier("test_always_half")
    class Half:
        """Always 0.5."""

        def __init__(self, score=0.5):
            self.score = score

        def verify(self, prompt, completion, **ctx):
            return Verdict(self.score)

    try:
        assert resolve_verifier("test_always_half").verify("p", "c").score == 0.5
        assert resolve_verifier("test_always_half", {"score": 0.25}).verify("p", "c").score == 0.25
        info = next(i for i in available_verifiers() if i.name == "test_always_half")
        assert info.kind == "registered" and info.summary == "Always 0.5."
        with pytest.raises(ValueError, match="already registered"):
            verifier("test_always_half")(lambda: None)
        with pytest.raises(ValueError, match="may not contain ':'"):
            verifier("reward:x")(Half)
    finally:
        _REGISTRY.pop("test_always_half")


def test_unknown_name_is_one_line_with_a_hint():
    _one_line_error("exact_anwser", match="did you mean 'exact_answer'")
    _one_line_error("zzzzzz", match="known: ")


def test_bad_args_are_one_line_and_list_the_parameters():
    message = _one_line_error("exact_answer", {"colour": "red"}, match="bad args")
    assert "it takes: extractor, extractor_args, ignore_case" in message
    _one_line_error("exact_answer", {"extractor": "no_such_extractor"}, match="building")


def test_dotted_paths_factories_objects_and_broken_ones(tmp_path, monkeypatch):
    _write_module(
        tmp_path,
        monkeypatch,
        "vp_dotted",
        """
        from verirl.verifiers.base import Verdict

        class Longer:
            def __init__(self, limit=3):
                self.limit = limit
            def verify(self, prompt, completion, **ctx):
                return Verdict(float(len(completion) > self.limit))

        def make_longer(limit=1):
            return Longer(limit)

        READY = Longer(0)

        class NoVerify:
            pass

        class VerifyNotCallable:
            verify = 3

        def returns_none():
            return None

        def explodes():
            raise RuntimeError("model weights not found\\nsecond line")

        CONSTANT = 3
        """,
    )
    assert resolve_verifier("vp_dotted:Longer").verify("p", "abcd").score == 1.0
    assert resolve_verifier("vp_dotted:Longer", {"limit": 4}).verify("p", "abcd").score == 0.0
    assert resolve_verifier("vp_dotted:make_longer", {"limit": 3}).limit == 3
    assert resolve_verifier("vp_dotted:READY").verify("p", "a").score == 1.0
    _one_line_error("vp_dotted:READY", {"limit": 1}, match="takes no args")
    _one_line_error("vp_dotted:NoVerify", match="without a callable verify")
    _one_line_error("vp_dotted:VerifyNotCallable", match="without a callable verify")
    _one_line_error("vp_dotted:returns_none", match="returned a NoneType without a callable verify")
    message = _one_line_error("vp_dotted:explodes", match="RuntimeError: model weights not found")
    assert "second line" not in message
    _one_line_error("vp_dotted:CONSTANT", match="not a verifier factory")
    _one_line_error("vp_dotted:Missing", match="has no attribute 'Missing'")
    _one_line_error("vp_no_such_module:X", match="cannot import module")


def test_entry_point_plugins_are_listed_without_import_and_resolved(tmp_path, monkeypatch):
    pkg = tmp_path / "vp_acme_verifiers"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "from verirl.verifiers.base import Verdict\n"
        "class Shout:\n"
        "    def verify(self, prompt, completion, **ctx):\n"
        "        return Verdict(float(completion.isupper()), 'loud' if completion.isupper() else 'quiet')\n"
    )
    _write_dist(
        tmp_path,
        "vp-acme-verifiers",
        "1.2.3",
        {"shout": "vp_acme_verifiers:Shout", "vp_broken": "vp_not_a_module_xyz:Thing"},
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    infos = {i.name: i for i in available_verifiers()}
    assert infos["shout"].kind == "plugin"
    assert "vp_acme_verifiers:Shout" in infos["shout"].origin and "vp-acme-verifiers 1.2.3" in infos["shout"].origin
    assert "vp_acme_verifiers" not in sys.modules  # listing does not import plug-ins
    verdict = resolve_verifier("shout").verify("p", "HEY")
    assert (verdict.score, verdict.feedback) == (1.0, "loud")
    _one_line_error("vp_broken", match="plug-in entry point 'vp_not_a_module_xyz:Thing' failed to load")


# -- uncertainty ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "details,expected",
    [
        ({}, 0.0),
        ({"uncertainty": 0.3}, 0.3),
        ({"uncertainty": 0.3, "confidence": 0.9, "probs": [0.5, 0.5]}, 0.3),  # uncertainty first
        ({"confidence": 0.9}, 0.1),
        ({"confidence": 0.9, "probs": [0.5, 0.5]}, 0.1),  # then confidence
        ({"uncertainty": None, "confidence": 0.25}, 0.75),  # None is "not given"
        ({"probs": [0.5, 0.5]}, 1.0),
        ({"probs": [1.0, 0.0, 0.0]}, 0.0),
        ({"probs": [0.25, 0.25, 0.25, 0.25]}, 1.0),
        ({"probs": [0.9, 0.1]}, -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2)),
        ({"probs": {"yes": 0.9, "no": 0.1}}, -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2)),
        ({"probs": [2.0, 2.0]}, 1.0),  # unnormalised: normalised first
        ({"probs": [1.0]}, 0.0),  # one class: no doubt
        ({"probs": [0.5, -0.5]}, 1.0),  # not a distribution: unknown
        ({"uncertainty": 1.7}, 1.0),  # clamped
        ({"uncertainty": -0.2}, 0.0),
        ({"confidence": 1.5}, 0.0),
        ({"uncertainty": float("nan")}, 1.0),
        ({"confidence": float("nan")}, 1.0),
        ({"uncertainty": "low"}, 1.0),
        ({"uncertainty": True}, 1.0),  # a bool is not a number here
        ({"probs": "abc"}, 1.0),
        ({"probs": 3}, 1.0),
    ],
)
def test_verdict_uncertainty(details, expected):
    assert verdict_uncertainty(Verdict(1.0, None, details)) == pytest.approx(expected)


def test_verdict_uncertainty_reads_numpy_values_and_tolerates_odd_details():
    np = pytest.importorskip("numpy")
    assert verdict_uncertainty(Verdict(1.0, None, {"uncertainty": np.float32(0.5)})) == pytest.approx(0.5)
    assert verdict_uncertainty(Verdict(1.0, None, {"probs": np.array([0.5, 0.5])})) == pytest.approx(1.0)
    assert verdict_uncertainty(Verdict(1.0, None, None)) == 0.0  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "details,problem",
    [
        ({}, None),
        ({"uncertainty": 0.0}, None),
        ({"confidence": 1.0, "note": "x"}, None),
        ({"probs": [0.2, 0.8]}, None),
        ({"uncertainty": 1.5}, "details['uncertainty']"),
        ({"uncertainty": float("nan")}, "details['uncertainty']"),
        ({"confidence": "high"}, "details['confidence']"),
        ({"probs": [0.5, 0.6]}, "sums to 1.1"),
        ({"probs": [1.5, -0.5]}, "expected probabilities in [0, 1]"),
        ({"probs": 3}, "details['probs'] is a int"),
        ({"uncertainty": 0.2, "probs": [5]}, None),  # probs are not read when uncertainty is given
        ([("uncertainty", 0.1)], "details is a list"),
    ],
)
def test_uncertainty_problem(details, problem):
    found = uncertainty_problem(details)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


# -- check ----------------------------------------------------------------------------------------------------------


class _Fixed:
    def __init__(self, score=0.5, details=None, feedback="ok"):
        self.score, self.details, self.feedback = score, details or {}, feedback

    def verify(self, prompt, completion, **ctx):
        return Verdict(self.score, self.feedback, self.details)


class _Raises:
    def verify(self, prompt, completion, **ctx):
        raise RuntimeError("judge unavailable")


class _Hangs:
    def verify(self, prompt, completion, **ctx):
        import time

        time.sleep(3)
        return Verdict(1.0)


class _Fragile:
    """Fine on text, raises on anything else (as a text-only verifier does)."""

    def verify(self, prompt, completion, **ctx):
        text = completion if isinstance(completion, str) else completion[-1]["content"]
        return Verdict(float(str(ctx["answer"]) in text), None, {"confidence": 0.8})


def _statuses(results):
    return {r.case: r.status for r in results}


def test_check_passes_a_good_verifier_and_reports_timing():
    results = check_verifier(resolve_verifier("exact_answer"), timeout=30)
    assert len(results) >= 10 and set(_statuses(results).values()) == {"PASS"}, format_results("x", results)
    assert {"empty completions", "very long completions", "chat message shapes", "numbers as text"} <= {
        r.case for r in results
    }
    assert all(r.seconds >= 0 for r in results)
    text = format_results("exact_answer", results)
    assert text.splitlines()[0] == "verifier 'exact_answer':"
    assert "PASS  sample (text)" in text and " ms " in text
    assert text.splitlines()[-1] == f"0 failed, 0 warnings, {len(results)} passed"


@pytest.mark.parametrize(
    "bad,message",
    [
        (_Fixed(1.5), "score 1.5 is outside [0, 1]"),
        (_Fixed(-0.1), "outside [0, 1]"),
        (_Fixed(float("nan")), "score is nan"),
        (_Fixed("1"), "score is a str"),
        (_Fixed(True), "score is a bool"),
        (_Fixed(0.5, {"uncertainty": 2}), "details['uncertainty']"),
        (_Fixed(0.5, {"probs": [0.9, 0.9]}), "sums to 1.8"),
        (_Fixed(0.5, feedback=3), "feedback is a int"),
        (_Raises(), "raised RuntimeError: judge unavailable"),
    ],
)
def test_check_fails_broken_verifiers(bad, message):
    results = check_verifier(bad, timeout=10)
    sample = next(r for r in results if r.case == "sample (text)")
    assert sample.status == "FAIL" and message in sample.detail, sample.detail


def test_check_fails_a_verifier_that_returns_no_verdict():
    class Plain:
        def verify(self, prompt, completion, **ctx):
            return 1.0

    results = check_verifier(Plain(), timeout=10)
    assert all(r.status == "FAIL" and "expected a Verdict" in r.detail for r in results)


def test_check_times_out_a_hanging_verifier():
    results = check_verifier(_Hangs(), timeout=0.05)
    assert all(r.status == "FAIL" and "no verdict within 0.05 s" in r.detail for r in results)
    assert all(r.seconds < 1.0 for r in results)  # one timeout per case, the case stops there


def test_check_warns_on_hostile_input_only():
    results = _statuses(check_verifier(_Fragile(), timeout=10))
    assert results["sample (text)"] == results["sample (chat)"] == "PASS"
    assert results["wrong types"] == "WARN"
    assert "FAIL" not in results.values()


def test_check_passes_context_columns():
    class NeedsTopic:
        def verify(self, prompt, completion, **ctx):
            return Verdict(1.0 if ctx["topic"] == "math" else 0.0)

    assert "FAIL" in _statuses(check_verifier(NeedsTopic(), timeout=10)).values()  # KeyError on the samples
    results = check_verifier(NeedsTopic(), {"topic": "math"}, timeout=10)
    assert set(_statuses(results).values()) == {"PASS"}
    assert "scores [1, 1]" in results[0].detail


# -- scaffold ---------------------------------------------------------------------------------------------------------


def test_scaffolded_package_passes_its_own_tests_and_is_found_by_its_entry_point(tmp_path, monkeypatch):
    root = scaffold("has_answer", tmp_path)
    assert root == tmp_path / "verirl-verifier-has-answer"
    src = root / "src"
    assert (src / "verirl_verifier_has_answer" / "verifier.py").is_file()
    path = os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=path)
    own_tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
        capture_output=True,
        text=True,
        env=env,
        cwd=root,
        timeout=300,
    )
    assert own_tests.returncode == 0, own_tests.stdout + own_tests.stderr
    assert "3 passed" in own_tests.stdout

    # The entry point as pip would install it from the generated pyproject.toml.
    pyproject = (root / "pyproject.toml").read_text()
    section = pyproject.split('[project.entry-points."verirl.verifiers"]\n', 1)[1].split("\n\n", 1)[0]
    points = dict(line.replace('"', "").split(" = ") for line in section.splitlines() if " = " in line)
    assert points == {"has_answer": "verirl_verifier_has_answer.verifier:HasAnswerVerifier"}
    dist_name = re.search(r'^name = "(.+)"$', pyproject, re.M).group(1)
    version = re.search(r'^version = "(.+)"$', pyproject, re.M).group(1)
    site = tmp_path / "site"
    site.mkdir()
    _write_dist(site, dist_name, version, points)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(src))
    info = next(i for i in available_verifiers() if i.name == "has_answer")
    assert info.kind == "plugin" and "verirl-verifier-has-answer 0.1.0" in info.origin
    plugin = resolve_verifier("has_answer", {"ignore_case": True})
    assert plugin.verify("q", "PARIS", answer="paris").score == 1.0
    assert "FAIL" not in _statuses(check_verifier(plugin, timeout=30)).values()
    _one_line_error("has_answer", {"colour": 1}, match="bad args")


def test_scaffold_refuses_bad_names_and_existing_dirs(tmp_path):
    with pytest.raises(VerirlError, match="not a valid name"):
        scaffold("Bad-Name", tmp_path)
    with pytest.raises(VerirlError, match="not a valid name"):
        scaffold("class", tmp_path)
    scaffold("ok_name", tmp_path)
    with pytest.raises(VerirlError, match="already exists"):
        scaffold("ok_name", tmp_path)


# -- CLI --------------------------------------------------------------------------------------------------------------


def _run_cli(argv):
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true")
    parser = argparse.ArgumentParser(prog="verirl", parents=[common])
    cli.add_parser(parser.add_subparsers(dest="command"), [common])
    return cli.cmd_verifiers(parser.parse_args(argv))


def test_cli_list_check_and_new(tmp_path, capsys):
    assert _run_cli(["verifiers", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    line = next(x for x in lines if x.startswith("exact_answer "))
    assert "builtin" in line and "verirl.verifiers.registry:ExactAnswer" in line
    assert any(x.startswith("reward:NAME ") for x in lines)

    assert _run_cli(["verifiers", "check", "exact_answer", "--args", '{"extractor": "last_number"}']) == 0
    out = capsys.readouterr().out
    assert out.startswith("verifier 'exact_answer':") and "0 failed" in out

    assert _run_cli(["verifiers", "check", "reward:length_penalty", "--args", '{"unit": "chars"}']) == 1
    out = capsys.readouterr().out
    assert "FAIL  very long completions" in out and "outside [0, 1]" in out

    assert _run_cli(["verifiers", "new", "my_check", "--dir", str(tmp_path)]) == 0
    assert "created" in capsys.readouterr().out
    assert (tmp_path / "verirl-verifier-my-check" / "tests" / "test_verifier.py").is_file()


def test_cli_check_uses_columns_and_fails_broken_verifiers(tmp_path, monkeypatch, capsys):
    _write_module(
        tmp_path,
        monkeypatch,
        "vp_cli_verifiers",
        """
        from verirl.verifiers.base import Verdict

        class Topic:
            def verify(self, prompt, completion, **ctx):
                return Verdict(1.0 if ctx["topic"] == "math" else 0.0)

        class TooHigh:
            def verify(self, prompt, completion, **ctx):
                return Verdict(1.5)
        """,
    )
    assert _run_cli(["verifiers", "check", "vp_cli_verifiers:Topic", "--column", "topic=math"]) == 0
    assert "0 failed" in capsys.readouterr().out
    assert _run_cli(["verifiers", "check", "vp_cli_verifiers:TooHigh", "--timeout", "5"]) == 1
    assert "score 1.5 is outside [0, 1]" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["verifiers", "check", "exact_answer", "--args", "{not json"], "--args: expected a JSON object"),
        (["verifiers", "check", "exact_answer", "--args", "[1]"], "--args: expected a JSON object"),
        (["verifiers", "check", "exact_answer", "--args", '{"colour": 1}'], "bad args"),
        (["verifiers", "check", "exact_answer", "--column", "topic"], "--column topic: expected KEY=VALUE"),
        (["verifiers", "check", "exact_answer", "--timeout", "0"], "--timeout: expected a positive number"),
        (["verifiers", "check", "exact_anwser"], "did you mean 'exact_answer'"),
        (["verifiers", "new", "Bad-Name", "--dir", "."], "not a valid name"),
        (["verifiers"], "verifiers: expected an action"),
    ],
)
def test_cli_errors_are_one_line(argv, message):
    with pytest.raises(VerirlError) as info:
        _run_cli(argv)
    assert message in str(info.value) and "\n" not in str(info.value)
