import os
import shutil
import sys
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["HF_HUB_OFFLINE"] = "1"  # tests never reach the Hub; the Hub push tests use a local server
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
# The console script beside this interpreter (a venv), else the one on PATH (e.g. a `pip install --target` layout)
_BESIDE = Path(sys.executable).parent / "verirl"
VERIRL = str(_BESIDE) if _BESIDE.exists() else shutil.which("verirl") or str(_BESIDE)


def _one_gpu() -> bool:
    import torch

    return torch.cuda.is_available() and torch.cuda.device_count() < 2


# Two ranks: gloo on a CPU machine, one GPU each on a GPU machine (accelerate's --multi_gpu); a single GPU cannot
# hold two NCCL ranks, so there the test is skipped rather than failed.
two_processes = pytest.mark.skipif(_one_gpu(), reason="two ranks need two GPUs on a GPU machine (or no GPU)")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random 2-layer Llama with a tiny tokenizer, saved as a from_pretrained folder (built once per session)."""
    from verirl.testing import tiny_model

    return tiny_model(tmp_path_factory.mktemp("models") / "tiny")


@pytest.fixture()
def write_recipe(tmp_path):
    """Write a recipe YAML (text or dict) into tmp_path and return its path."""
    import yaml

    def write(content, name: str = "recipe.yaml") -> Path:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
        return path

    return write


def plain_grpo_config(output_dir, **overrides):
    """A trl GRPOConfig for a few fast CPU steps on the tiny model (for tests that use TRL directly)."""
    from trl import GRPOConfig

    values = dict(
        output_dir=str(output_dir),
        use_cpu=True,
        bf16=False,
        max_steps=1,
        num_generations=2,
        per_device_train_batch_size=4,
        max_completion_length=3,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        gradient_checkpointing=False,
    )
    values.update(overrides)
    return GRPOConfig(**values)


def tiny_grpo_recipe(model_dir, output_dir, **overrides) -> dict:
    """A complete, valid GRPO recipe on the tiny model that trains in seconds."""
    recipe = {
        "trainer": "grpo",
        "model": str(model_dir),
        "data": {"builtin": "arithmetic", "n_train": 16, "n_eval": 4, "max_operand": 9},
        "rewards": [{"name": "number_match", "weight": 1.0, "timeout_s": 20}],
        "args": {
            "max_steps": 2,
            "num_generations": 2,
            "per_device_train_batch_size": 4,
            "max_completion_length": 4,
            "learning_rate": 1e-3,
            "logging_steps": 1,
            "save_steps": 1,
            "bf16": False,
            "gradient_checkpointing": False,
            "report_to": "none",
            "seed": 0,
        },
        "eval": {"max_new_tokens": 4},
        "output_dir": str(output_dir),
    }
    for key, value in overrides.items():
        recipe[key] = value
    return recipe


def one_grpo_step(model_dir, tmp_path, **overrides) -> tuple[dict, dict]:
    """Train ``tiny_grpo_recipe`` (with ``overrides``) for one step through verirl's worker, in this process:
    (the run's results, the first metrics.jsonl record)."""
    import json

    import yaml

    from verirl.worker import train

    recipe = tiny_grpo_recipe(model_dir, tmp_path / "out", **overrides)
    recipe["args"].update(max_steps=1, save_steps=10)
    recipe["eval"] = {"enabled": False}
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    results = train(str(path))
    return results, json.loads((tmp_path / "out" / "metrics.jsonl").read_text().splitlines()[0])


@pytest.fixture(scope="session")
def tiny_pipeline_dir(tmp_path_factory) -> Path:
    """A random tiny SD3 pipeline (glyph layout, 32x64 images), saved with save_pretrained (built once)."""
    from verirl.glyph.pipeline import TinySD3Config, build_pipeline

    path = tmp_path_factory.mktemp("pipelines") / "tiny-sd3"
    build_pipeline(TinySD3Config(layers=2, heads=2, head_dim=16)).save_pretrained(path)
    return path
