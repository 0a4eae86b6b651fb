"""A trainer is one module that declares itself: a toy trainer defined in tests/ validates, dry-runs, runs through
``accelerate launch`` and pushes, with no edit anywhere in verirl."""

import json
import os
import subprocess

import pytest
import yaml

from tests.conftest import ROOT, VERIRL
from verirl.cli import main
from verirl.errors import RecipeError
from verirl.recipes import load_recipe
from verirl.rl.registry import get_trainer, trainer_names


def _toy(tmp_path, **changes):
    recipe = {
        "trainer": "tests.toy_trainer:TOY",
        "model": "HuggingFaceTB/SmolLM2-135M-Instruct",  # a Hub id: validated, never loaded by the toy
        "data": {"builtin": "arithmetic", "n_train": 12, "n_eval": 4, "max_operand": 9},
        "rewards": [{"name": "number_match"}],
        "args": {"epochs": 2},
        "memory": {"fallback": "7"},
        "output_dir": str(tmp_path / "out"),
    }
    recipe.update(changes)
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_builtin_trainers_are_declarations():
    assert trainer_names()[:5] == ["grpo", "dpo", "online_dpo", "evaluator", "flow_grpo"]
    for name in trainer_names():
        assert get_trainer(name).name == name


def test_toy_trainer_validates_with_its_own_config_and_section(tmp_path):
    recipe = load_recipe(_toy(tmp_path))
    assert recipe.args == {"epochs": 2} and recipe.section("memory").fallback == "7"
    assert recipe.declaration.name == "toy"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"args": {"epochs": 0}}, "args.epochs: expected a positive integer, got 0"),
        ({"args": {"learning_rate": 2}}, "args.learning_rate: expected <= 1, got 2"),
        ({"args": {"epoch": 1}}, "args.epoch: unknown key; did you mean 'epochs'?"),
        ({"memory": {"fallback": " "}}, "memory.fallback: expected a non-empty answer"),
        ({"advantage": "restrain"}, "advantage: only used by trainer grpo"),
        ({"trainer": "tests.toy_trainer:NOPE"}, "trainer: trainer 'tests.toy_trainer:NOPE': module"),
        ({"trainer": "tests.toy_trainer:ToyConfig"}, "trainer: trainer 'tests.toy_trainer:ToyConfig': expected a"),
    ],
)
def test_toy_trainer_recipe_errors_are_one_line(tmp_path, change, message):
    with pytest.raises(RecipeError) as info:
        load_recipe(_toy(tmp_path, **change))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_toy_trainer_dry_run_prints_its_plan(tmp_path, capsys):
    assert main(["train", str(_toy(tmp_path)), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "toy  " in out and "memorise 100% of the rows, 2 epoch(s)" in out
    assert "accelerate launch" in out and "-m verirl.worker" in out
    assert not (tmp_path / "out").exists()


def test_toy_trainer_runs_through_accelerate_and_its_output_is_recognised(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([VERIRL, "train", str(_toy(tmp_path))], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    out = tmp_path / "out"
    results = json.loads((out / "eval_results.json").read_text())
    assert results["before"]["accuracy"] < results["after"]["accuracy"] == 1.0
    assert results["train"]["steps"] == 2
    assert len(json.loads((out / "toy_model.json").read_text())) == 16
    card = (out / "README.md").read_text()
    assert "pipeline_tag: question-answering" in card and "a lookup table" in card
    assert yaml.safe_load((out / "recipe.yaml").read_text())["trainer"] == "tests.toy_trainer:TOY"


def test_recipe_reference_is_generated_from_the_declarations():
    from verirl.cli.reference import full_reference

    assert (ROOT / "docs" / "recipe_reference.md").read_text() == full_reference(), (
        "regenerate: verirl trainers show --all > docs/recipe_reference.md"
    )


def test_trainers_list_and_show(capsys, tmp_path):
    assert main(["trainers", "list"]) == 0
    assert "flow_grpo" in capsys.readouterr().out
    assert main(["trainers", "show", "tests.toy_trainer:TOY"]) == 0
    out = capsys.readouterr().out
    assert "| `epochs` | `1` | passes over the training rows (>= 1) |" in out and "### `memory`" in out
    assert main(["trainers", "show", "nope"]) == 2
    assert "expected one of: grpo, dpo" in capsys.readouterr().err


def test_output_piped_into_a_reader_that_stops_early_is_not_a_traceback():
    """`verirl ... | head`: the reader closes the pipe; the command stops quietly with the shell's SIGPIPE code."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes its first line
    try:
        result = subprocess.run(
            [VERIRL, "trainers", "show", "--all"], stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120
        )
    finally:
        os.close(write_end)
    assert result.returncode == 141, result.stderr[-2000:]
    assert result.stderr == ""
