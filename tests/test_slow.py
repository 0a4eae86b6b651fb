"""Real-model runs with the embedded SmolLM2-135M-Instruct (run with `make test-slow` or `pytest -m slow`)."""

import json
import os
import subprocess

import pytest
import yaml

from tests.conftest import VERIRL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A fresh cache, so the GGUF -> HF conversion itself is exercised."""
    return tmp_path_factory.mktemp("cache")


def test_prepare_builtin_converts_the_gguf_once(cache, monkeypatch):
    import torch

    from verirl.generators import SamplingParams
    from verirl.generators.hf import HFGenerator
    from verirl.models import load_model, prepare_builtin

    monkeypatch.setenv("VERIRL_CACHE", str(cache))
    path = prepare_builtin("smollm2-135m-instruct")
    assert (path / ".verirl-ready").read_text().strip() == "HuggingFaceTB/SmolLM2-135M-Instruct"
    config = json.loads((path / "config.json").read_text())
    assert "quantization_config" not in config and config["num_hidden_layers"] == 30
    mtime = (path / "model.safetensors").stat().st_mtime
    assert prepare_builtin("smollm2-135m-instruct") == path  # cached: not converted again
    assert (path / "model.safetensors").stat().st_mtime == mtime

    model, tokenizer, source = load_model("smollm2-135m-instruct")
    assert source.kind == "builtin" and sum(p.numel() for p in model.parameters()) > 130e6
    assert model.dtype == torch.float32
    pairs = [(1, 1), (2, 3), (10, 5), (4, 4)]
    prompts = [[{"role": "user", "content": f"What is {a}+{b}? Answer with just the number."}] for a, b in pairs]
    texts = HFGenerator(model, tokenizer).generate(prompts, sampling=SamplingParams(max_new_tokens=16, temperature=0))
    answers = [t[0] for t in texts.texts]
    assert sum(str(a + b) in t for (a, b), t in zip(pairs, answers, strict=True)) >= 2, answers


def test_two_grpo_steps_on_the_real_model_through_the_cli(cache, tmp_path):
    recipe = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "recipes", "quickstart.yaml")))
    recipe["output_dir"] = str(tmp_path / "out")
    recipe["data"]["n_eval"] = 8
    recipe["args"].update(max_steps=2, per_device_train_batch_size=8, max_completion_length=12, save_steps=2)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    env = dict(os.environ, VERIRL_CACHE=str(cache), OMP_NUM_THREADS="2")
    result = subprocess.run([VERIRL, "train", str(path)], capture_output=True, text=True, env=env, timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    assert results["train"]["steps"] == 2 and results["before"]["n"] == 8
    assert results["model"]["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    card = (tmp_path / "out" / "README.md").read_text()
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in card
