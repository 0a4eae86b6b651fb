"""The worker in-process: LoRA GRPO with a Hub push from the recipe, and DPO on a preference file."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.conftest import tiny_grpo_recipe
from tests.hub_server import FakeHub
from verirl.worker import train


def _write(recipe: dict, tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_lora_grpo_saves_an_adapter_and_pushes_it(tiny_model_dir, tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    out = tmp_path / "lora"
    recipe = tiny_grpo_recipe(tiny_model_dir, out)
    recipe["model"] = {
        "name": str(tiny_model_dir),
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
    }
    recipe["rewards"].append(
        {"name": "length_penalty", "args": {"unit": "chars", "max_length": 16, "cache_length": 16}}
    )
    recipe["args"]["save_steps"] = 10
    recipe["hub"] = {"push": True, "repo_id": "me/tiny-lora", "private": False}
    with FakeHub("tok") as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", "tok")
        results = train(str(_write(recipe, tmp_path)))
        files = hub.repos["me/tiny-lora"]["files"]
        private = hub.repos["me/tiny-lora"]["private"]
    assert results["hub_url"] == f"{hub.url}/me/tiny-lora"
    assert private is False
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "eval_results.json"} <= set(files)
    adapter = load_file(out / "adapter_model.safetensors")
    assert adapter and any("lora_B" in k and v.abs().sum() > 0 for k, v in adapter.items())  # B starts at zero
    card = files["README.md"].decode()
    assert "library_name: verirl" in card and "AutoPeftModelForCausalLM" in card


def test_dpo_trains_on_a_preference_file(tiny_model_dir, tmp_path):
    data = tmp_path / "prefs.jsonl"
    rows = [{"prompt": f"What is {i}+1?", "chosen": str(i + 1), "rejected": str(i + 2)} for i in range(8)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "dpo"
    recipe = {
        "trainer": "dpo",
        "model": str(tiny_model_dir),
        "data": {"path": "json", "data_files": str(data)},
        "args": {
            "max_steps": 2,
            "per_device_train_batch_size": 4,
            "learning_rate": 1e-3,
            "bf16": False,
            "report_to": "tensorboard",
            "save_strategy": "no",
            "logging_steps": 1,
            "gradient_checkpointing": False,
        },
        "eval": {"enabled": False},
        "output_dir": str(out),
    }
    results = train(str(_write(recipe, tmp_path)))
    assert results["train"]["steps"] == 2
    before = load_file(tiny_model_dir / "model.safetensors")
    after = load_file(out / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("rewards/margins" in r or "loss" in r for r in logged)
    assert "dpo" in (out / "README.md").read_text()
    assert list(out.rglob("events.out.tfevents.*")), "report_to: tensorboard did not reach TRL"


@pytest.mark.parametrize("bad", [{"prompt": "q", "good": "a", "bad": "b"}])
def test_dpo_without_preference_columns_is_a_clear_error(tiny_model_dir, tmp_path, bad):
    from verirl.errors import VerirlError

    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps(bad) + "\n")
    recipe = {
        "trainer": "dpo",
        "model": str(tiny_model_dir),
        "data": {"path": "json", "data_files": str(data)},
        "args": {"max_steps": 1, "bf16": False},
        "eval": {"enabled": False},
        "output_dir": str(tmp_path / "o"),
    }
    with pytest.raises(VerirlError, match=r"dpo needs columns \['prompt', 'chosen', 'rejected'\]"):
        train(str(_write(recipe, tmp_path)))
