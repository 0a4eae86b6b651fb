"""``trainer: vrec`` end to end on a tiny model (stages, resume, results, card) and ``verirl rec`` on its output."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import VERIRL
from verirl.rec.movielens import load_movielens
from verirl.rec.vrec import load_vrec

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([VERIRL, *args], capture_output=True, text=True, timeout=600, env=env)
    if ok:
        assert result.returncode == 0, result.stderr[-4000:]
    return result


def recipe(model, out, **vrec) -> dict:
    return {
        "trainer": "vrec",
        "model": str(model),
        "data": {"builtin": "ml-100k", "n_train": 16, "n_eval": 6, "seed": 0, "chat": False},
        "vrec": {"thought_steps": 1, "n_category": 4, "n_cf": 5, "beams": 3, **vrec},
        "args": {
            "per_device_train_batch_size": 8,
            "logging_steps": 1,
            "save_steps": 1,
            "seed": 0,
            "report_to": "none",
        },
        "output_dir": str(out),
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from verirl.testing import tiny_model

    root = tmp_path_factory.mktemp("vrec")
    model = tiny_model(root / "tiny", max_positions=1024)
    path = root / "vrec.yaml"
    path.write_text(yaml.safe_dump(recipe(model, root / "out")))
    run("train", str(path))
    return root / "out", path


def test_three_stages_write_models_results_and_card(trained):
    out, _ = trained
    results = json.loads((out / "eval_results.json").read_text())
    assert list(results["stages"]) == ["rec", "verifier", "joint"]
    assert results["stages"]["verifier"]["trainable_parameters"] < results["stages"]["rec"]["trainable_parameters"]
    assert results["test"]["cases"] == 6 and set(results["test"]) >= {"ndcg@10", "hr@10", "users_per_s"}
    assert results["train"]["steps"] == 6  # 16 rows / 8 per step x 3 stages
    for n, stage in enumerate(["rec", "verifier", "joint"], start=1):
        assert (out / f"stage-{n}-{stage}" / "stage_done.json").is_file()
    logs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    by_stage = {int(r["stage"]): r for r in logs if "ver_loss" in r}
    assert by_stage[1]["ver_loss"] == 0 and by_stage[2]["ver_loss"] > 0 and by_stage[3]["mono_loss"] == 0
    card = (out / "README.md").read_text()
    assert "| NDCG@1 |" in card and "reinforcement-learning" not in card
    model, _ = load_vrec(out)  # the top of output_dir holds the last stage's model
    assert model.settings.thought_steps == 1 and model.settings.data == {"window": 10}
    assert json.loads((out / "clusters.json").read_text())["sizes"] == {"category": 4, "cf": 5}


def test_a_stage_resumes_from_its_last_checkpoint(trained, tmp_path):
    """Stage 3 interrupted after its first checkpoint: --resume keeps stages 1-2 and continues stage 3 at step 1."""
    from verirl.worker import train

    out, _ = trained
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    joint = copy / "stage-3-joint"
    for file in joint.iterdir():
        if file.is_file():
            file.unlink()
    shutil.rmtree(joint / "checkpoint-2")
    results = json.loads((copy / "eval_results.json").read_text())
    del results["stages"]["joint"], results["test"]
    (copy / "eval_results.json").write_text(json.dumps(results))
    done_before = (copy / "stage-1-rec" / "stage_done.json").stat().st_mtime
    spec = yaml.safe_load((copy / "recipe.yaml").read_text())
    spec["output_dir"] = str(copy)
    (copy / "recipe.yaml").write_text(yaml.safe_dump(spec))
    resumed = train(str(copy / "recipe.yaml"), resume=True)
    assert resumed["stages"]["joint"]["steps"] == 2  # global step 2, one of them trained now
    assert (copy / "stage-1-rec" / "stage_done.json").stat().st_mtime == done_before
    assert (joint / "checkpoint-2").is_dir() and "test" in resumed


def cli(capsys, *args: str) -> tuple[int, str, str]:
    """``verirl ARGS`` in this process (no interpreter start-up per call)."""
    from verirl.cli import main

    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_rec_eval_and_recommend_on_the_output(trained, capsys):
    out, _ = trained
    code, stdout, _ = cli(capsys, "rec", "eval", "--model", str(out), "--n-eval", "4", "--beams", "3")
    line = stdout.strip().splitlines()[-1]
    assert code == 0 and line.startswith("ndcg@1=") and " hr@10=" in line and "cases=4" in line
    titles = set(load_movielens().titles())
    code, stdout, _ = cli(capsys, "rec", "recommend", "--model", str(out), "--history", "Heat (1995)", "--beams", "3")
    top = json.loads(stdout)
    assert code == 0 and len(top) == 3 and set(top) <= titles
    code, stdout, _ = cli(capsys, "rec", "eval", "--baseline", "mostpop")
    assert code == 0 and stdout.startswith("ndcg@1=") and "cases=1000" in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rec", "recommend", "--model", "{out}", "--history", "Toy Story"], "did you mean 'Toy Story (1995)'"),
        (["rec", "eval", "--model", "/nonexistent"], "--model: /nonexistent is not a directory"),
        (["rec", "eval", "--model", "{out}", "--baseline", "mostpop"], "exactly one of --model"),
        (["rec", "eval", "--model", "{out}", "--beams", "0"], "--beams: expected a positive number"),
        (["rec"], "expected an action"),
    ],
)
def test_rec_cli_errors_are_one_line(trained, capsys, args, message):
    out, _ = trained
    code, _, err = cli(capsys, *[a.replace("{out}", str(out)) for a in args])
    assert code != 0
    assert message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"vrec": {"stages": ["joint", "rec"]}}, "vrec.stages: expected each stage once, in the order"),
        ({"vrec": {"stages": ["verifier"], "mixture": False}}, "the verifier stage needs"),
        ({"vrec": {"stages": ["think"]}}, "vrec.stages: expected stages among"),
        ({"vrec": {"thought_steps": 9}}, "vrec.thought_steps"),
        ({"args": {"learning_rate": 0.1}}, "args.learning_rate: set per stage"),
        ({"data": {"builtin": "arithmetic"}}, "data.builtin: vrec trains on builtin: ml-100k"),
        ({"rewards": [{"name": "exact_match"}]}, "rewards: vrec is supervised"),
        ({"args": {"per_device_train_batch_size": 0}}, "args.per_device_train_batch_size"),
    ],
)
def test_invalid_vrec_recipes_fail_in_one_line(tmp_path, tiny_model_dir, capsys, change, message):
    spec = recipe(tiny_model_dir, tmp_path / "out")
    for key, value in change.items():
        spec[key] = {**spec[key], **value} if isinstance(value, dict) and key in ("vrec", "args") else value
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    code, _, err = cli(capsys, "train", str(path), "--dry-run")
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1


def test_baselines_drop_the_verifier_stage(tmp_path, tiny_model_dir):
    from verirl.recipes import validate

    for change in ({"thought_steps": 0}, {"mixture": False}):
        spec = recipe(tiny_model_dir, tmp_path / "out", **change)
        assert validate(spec, "r.yaml").sections["vrec"].stages == ["rec", "joint"]
