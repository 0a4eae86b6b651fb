"""End to end through the real launch path: `verirl train` -> accelerate launch -> worker -> TRL GRPOTrainer."""

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import VERIRL, tiny_grpo_recipe, two_processes
from verirl.cli import main
from verirl.recipes import load_recipe


def _run(*args, timeout=600):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([VERIRL, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)


def _recipe(model_dir, out):
    recipe = tiny_grpo_recipe(model_dir, out)
    # number_match never fires on a random model; a length reward (in characters) always varies within a group,
    # so GRPO has a signal to learn from.
    recipe["rewards"].append(
        {"name": "length_penalty", "weight": 0.5, "args": {"unit": "chars", "max_length": 16, "cache_length": 16}}
    )
    return recipe


@pytest.fixture(scope="module")
def trained(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(_recipe(tiny_model_dir, root / "out")))
    result = _run("train", path)
    return path, root / "out", result


def test_train_writes_model_metrics_eval_and_card(trained, tiny_model_dir):
    path, out, result = trained
    assert result.returncode == 0, result.stderr[-3000:]
    assert "held-out accuracy (4 prompts)" in result.stdout
    assert f"model card: {out}/README.md" in result.stdout
    assert "accelerate launch" in result.stderr
    assert ("--cpu" in result.stderr) is not torch.cuda.is_available()  # accelerate's --cpu only without a GPU

    for name in ("config.json", "model.safetensors", "tokenizer.json", "recipe.yaml", "checkpoint-2"):
        assert (out / name).exists(), name
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(out / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before), "training did not change the weights"

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss" in r]
    assert steps == [1, 2]
    assert records[0]["reward_failures/number_match"] == 0.0
    assert "rewards/length_penalty/mean" in records[0]

    results = json.loads((out / "eval_results.json").read_text())
    assert results["before"]["n"] == results["after"]["n"] == 4
    assert 0.0 <= results["after"]["accuracy"] <= 1.0
    assert results["train"]["steps"] == 2
    assert results["reward_failures"]["number_match"]["failed"] == 0

    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: verirl" in card
    assert "| `length_penalty` | 0.5 |" in card and "before training" in card

    resolved = load_recipe(out / "recipe.yaml")  # the saved recipe is itself a valid recipe
    assert resolved.args["max_steps"] == 2 and [r.name for r in resolved.rewards] == ["number_match", "length_penalty"]


def test_second_run_refuses_to_touch_the_output(trained, capsys):
    path, out, _ = trained
    before = sorted(p.name for p in out.iterdir())
    assert main(["train", str(path)]) == 2
    assert "not empty; pass --resume" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before


def test_resume_continues_from_the_last_complete_checkpoint(trained):
    path, out, first = trained
    assert first.returncode == 0
    torn = out / "checkpoint-3"  # a crash while saving step 3: no trainer_state.json
    torn.mkdir()
    (torn / "config.json").write_text("{")
    result = _run("train", path, "--resume", "--set", "args.max_steps=4")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming from {out}/checkpoint-2" in result.stderr
    state = json.loads((out / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2, 3, 4]  # appended, not overwritten
    results = json.loads((out / "eval_results.json").read_text())
    assert results["train"]["steps"] == 4 and "before" in results
    assert list(out.glob("recipe.*.yaml")), "the previous recipe was not kept"


def test_worker_errors_are_one_line_and_exit_nonzero(tiny_model_dir, tmp_path):
    """A problem found only in the worker (the data lacks a column a reward needs) still reads as one line."""
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}", "solution": "1"}) + "\n" for i in range(8)))
    recipe = tiny_grpo_recipe(tiny_model_dir, tmp_path / "out", data={"path": "json", "data_files": str(data)})
    recipe["eval"] = {"enabled": False}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = _run("train", path)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "needs dataset column(s) ['answer']" in last and "Traceback" not in result.stderr


@two_processes
def test_two_cpu_processes_train_with_gloo(tiny_model_dir, tmp_path):
    """accelerate's `--cpu --num_processes 2` silently runs one process; verirl launches two real ranks."""
    out = tmp_path / "out"
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(_recipe(tiny_model_dir, out)))
    result = _run("train", path, "--num-processes", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--multi_gpu" in result.stderr
    results = json.loads((out / "eval_results.json").read_text())
    assert results["train"]["processes"] == 2 and results["train"]["steps"] == 2
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert len(records) == 2  # logged once (rank 0), not once per rank


def test_worker_leaves_the_process_group_even_when_the_run_fails(tmp_path, capsys):
    """Left to interpreter teardown, a gloo group can abort a finished rank (exit -6); the worker destroys it."""
    import torch.distributed as dist

    from verirl.worker import main as worker_main

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        assert worker_main(["--recipe", str(tmp_path / "missing.yaml")]) == 2
        assert "missing.yaml" in capsys.readouterr().err
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def test_launch_arguments():
    from verirl.launch import launch_argv

    single = launch_argv("r.yaml", cuda=False)
    assert single[: single.index("-m")] == [
        "--num_processes",
        "1",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--cpu",
        "--num_cpu_threads_per_process",
        "1",
    ]
    assert single[single.index("-m") :] == ["-m", "verirl.worker", "--recipe", "r.yaml"]
    assert "--multi_gpu" in launch_argv("r.yaml", num_processes=4, cuda=True)
    assert "--cpu" not in launch_argv("r.yaml", cuda=True)
    custom = launch_argv("r.yaml", accelerate_config="ds.yaml", resume=True, debug=True)
    assert custom[:2] == ["--config_file", "ds.yaml"] and "--cpu" not in custom and "--num_processes" not in custom
    assert custom[-2:] == ["--resume", "--debug"]
    assert launch_argv("r.yaml", num_processes=8, accelerate_config="ds.yaml")[2:4] == ["--num_processes", "8"]


def test_user_accelerate_config_file_is_used(tiny_model_dir, tmp_path):
    config = tmp_path / "accelerate.yaml"
    config.write_text(
        "compute_environment: LOCAL_MACHINE\ndistributed_type: 'NO'\nnum_processes: 1\nnum_machines: 1\n"
        "use_cpu: true\nmixed_precision: 'no'\nmachine_rank: 0\n"
    )
    out = tmp_path / "out"
    recipe = _recipe(tiny_model_dir, out)
    recipe["args"]["max_steps"] = 1
    recipe["eval"] = {"enabled": False}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = _run("train", path, "--accelerate-config", config)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"--config_file {config}" in result.stderr
    assert json.loads((out / "eval_results.json").read_text())["train"]["steps"] == 1


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_sigterm_to_train_stops_the_worker_and_keeps_checkpoints(tiny_model_dir, tmp_path):
    """A scheduler's SIGTERM to `verirl train` used to orphan the worker (accelerate's launcher does not forward
    signals): it trained on, writing into the output directory of a run its user had stopped."""
    out = tmp_path / "out"
    recipe = _recipe(tiny_model_dir, out)
    recipe["args"].update(max_steps=10_000, save_steps=2, save_total_limit=None)
    recipe["eval"] = {"enabled": False}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([VERIRL, "train", str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        _wait_for(lambda: (out / "checkpoint-2").is_dir() or proc.poll() is not None, 240, "checkpoint-2")
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert workers, "no worker process"
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, stderr.decode()[-3000:]
    assert "terminated (SIGTERM); checkpoints already written are kept" in stderr.decode()
    assert "Traceback" not in stderr.decode()
    _wait_for(lambda: not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers), 10, "workers")
    assert (out / "checkpoint-2" / "model.safetensors").is_file()


_ORPHAN = """
import sys, time
from verirl.worker import Terminated, stop_with_launcher
stop_with_launcher()
print("ready", flush=True)
try:
    time.sleep(120)
except Terminated as exc:
    print("terminated", exc, flush=True)
    sys.exit(143)
"""

_LAUNCHER = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=open(sys.argv[2], "w"))
print(child.pid, flush=True)
child.wait()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_worker_dies_with_its_launcher_even_when_the_launcher_is_killed(tmp_path):
    """SIGKILL cannot be forwarded: the kernel's parent-death signal stops the worker, which unwinds cleanly."""
    log = tmp_path / "worker.log"
    launcher = subprocess.Popen(
        [sys.executable, "-c", _LAUNCHER, _ORPHAN, str(log)], stdout=subprocess.PIPE, text=True
    )
    worker = psutil.Process(int(launcher.stdout.readline()))
    _wait_for(lambda: log.is_file() and "ready" in log.read_text(), 60, "the worker to start")
    launcher.kill()
    launcher.wait(timeout=10)
    _wait_for(lambda: not worker.is_running() or worker.status() == psutil.STATUS_ZOMBIE, 20, "the worker to exit")
    assert log.read_text().splitlines()[-1] == "terminated SIGTERM"
