"""Plug-in authoring: scaffold a reward package, install it, run its own test, find it by entry point, check it."""

import os
import subprocess
import sys

import pytest

from tests.conftest import VERIRL
from verirl.cli import main


def _env(extra_path=None):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if extra_path:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def test_scaffolded_plugin_installs_passes_its_test_and_rewards_check(tmp_path):
    created = subprocess.run(
        [VERIRL, "rewards", "new", "has_answer", "--dir", str(tmp_path)], capture_output=True, text=True, env=_env()
    )
    assert created.returncode == 0, created.stderr
    root = tmp_path / "verirl-reward-has-answer"
    assert (root / "pyproject.toml").is_file() and (root / "tests" / "test_reward.py").is_file()

    site = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(root),
        ],
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert install.returncode == 0, install.stderr

    own_tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
        capture_output=True,
        text=True,
        env=_env(site),
        cwd=root,
    )
    assert own_tests.returncode == 0, own_tests.stdout + own_tests.stderr
    assert "2 passed" in own_tests.stdout

    listed = subprocess.run([VERIRL, "rewards", "list"], capture_output=True, text=True, env=_env(site))
    line = next(line for line in listed.stdout.splitlines() if line.startswith("has_answer"))
    assert "plugin" in line and "verirl_reward_has_answer.reward:has_answer" in line

    checked = subprocess.run(
        [VERIRL, "rewards", "check", "has_answer"], capture_output=True, text=True, env=_env(site)
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "0 failed" in checked.stdout
    assert "PASS  sample (chat)" in checked.stdout


def test_scaffold_refuses_bad_names_and_existing_dirs(tmp_path, capsys):
    assert main(["rewards", "new", "Bad-Name", "--dir", str(tmp_path)]) == 2
    assert main(["rewards", "new", "ok_name", "--dir", str(tmp_path)]) == 0
    assert main(["rewards", "new", "ok_name", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a valid name" in err and "already exists" in err


@pytest.mark.parametrize("name", ["number_match", "exact_match", "math_verify", "regex_format"])
def test_builtins_pass_rewards_check(name, capsys):
    assert main(["rewards", "check", name]) == 0, capsys.readouterr().out


def test_rewards_check_reports_broken_rewards(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken_rewards.py").write_text(
        "import math\n"
        "def short(prompts, completions, **kw):\n    return [1.0]\n"
        "def strings(prompts, completions, **kw):\n    return ['1' for _ in completions]\n"
        "def nan(prompts, completions, **kw):\n    return [math.nan for _ in completions]\n"
        "def fragile(prompts, completions, **kw):\n    return [float(len(c.strip())) for c in completions]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["rewards", "check", "broken_rewards:short"]) == 1
    assert "returned 1 values for 2 completions" in capsys.readouterr().out
    assert main(["rewards", "check", "broken_rewards:strings"]) == 1
    assert "returned a str" in capsys.readouterr().out
    assert main(["rewards", "check", "broken_rewards:nan"]) == 1
    assert "NaN or inf" in capsys.readouterr().out
    # Fails on chat completions (lists have no .strip) and warns on wrong types: the report names both.
    assert main(["rewards", "check", "broken_rewards:fragile"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  sample (chat)" in out and "AttributeError" in out
    assert "WARN  wrong types" in out
    assert "PASS  sample (text)" in out


def test_rewards_check_bad_args_are_one_line_errors(capsys):
    assert main(["rewards", "check", "length_penalty", "--args", "{not json"]) == 2
    assert main(["rewards", "check", "length_penalty", "--args", '{"colour": 1}']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("verirl: error: --args: expected a JSON object")
    assert "unknown args ['colour']" in err[1]
