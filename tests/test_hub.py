"""Hub push end to end against a local server implementing the Hub API calls of create_repo and upload_folder."""

import hashlib
import json
import shutil
import socket

import pytest
import yaml

from tests.conftest import tiny_grpo_recipe
from tests.hub_server import FakeHub
from verirl.cli import main
from verirl.errors import HubError
from verirl.hub import push_folder

TOKEN = "hf_test_token"


@pytest.fixture(autouse=True)
def online(monkeypatch):
    """The suite runs with HF_HUB_OFFLINE=1; these tests talk to a local server, so switch it off here only."""
    import huggingface_hub.constants

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


@pytest.fixture()
def run_dir(tiny_model_dir, tmp_path):
    """A finished run as `verirl train` leaves it: model, recipe, eval results, a checkpoint."""
    out = tmp_path / "run"
    shutil.copytree(tiny_model_dir, out)
    (out / "recipe.yaml").write_text(yaml.safe_dump(tiny_grpo_recipe(tiny_model_dir, out)))
    results = {
        "model": {
            "spec": "smollm2-135m-instruct",
            "kind": "builtin",
            "base_model": "HuggingFaceTB/SmolLM2-135M-Instruct",
        },
        "before": {"accuracy": 0.25, "mean_reward": 0.25, "n": 4, "reward": "number_match"},
        "after": {"accuracy": 0.75, "mean_reward": 0.75, "n": 4, "reward": "number_match"},
        "train": {"steps": 2, "seconds": 1.0},
    }
    (out / "eval_results.json").write_text(json.dumps(results))
    (out / "checkpoint-2").mkdir()
    (out / "checkpoint-2" / "optimizer.pt").write_bytes(b"x" * 100)
    return out


def _snapshot(path):
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file() and p.name != "README.md"
    }


def test_push_cli_uploads_run_with_model_card(run_dir, monkeypatch, capsys):
    with FakeHub(TOKEN) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        assert main(["push", str(run_dir), "--repo-id", "me/tiny-grpo"]) == 0
        repo = hub.repos["me/tiny-grpo"]
    out = capsys.readouterr()
    assert f"{hub.url}/me/tiny-grpo" in out.out
    assert TOKEN not in out.out + out.err
    assert repo["private"] is True
    files = repo["files"]
    assert {"config.json", "model.safetensors", "tokenizer.json", "recipe.yaml", "README.md"} <= set(files)
    assert not any(name.startswith("checkpoint-") for name in files)
    card = files["README.md"].decode()
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["library_name"] == "verirl"
    assert meta["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "verirl" in meta["tags"] and "number_match" in meta["tags"]
    assert meta["model-index"][0]["results"][0]["metrics"][0]["value"] == 0.75
    assert "| before training | 25.0% |" in card and "| after training | 75.0% |" in card
    assert 'from_pretrained("me/tiny-grpo")' in card
    assert hub.validated and hub.validated[0] == card
    assert (run_dir / "README.md").read_text() == card  # the local copy holds the same card


def test_transient_errors_are_retried(run_dir):
    with FakeHub(TOKEN) as hub:
        hub.fail_next = [503, 502]
        push_folder(run_dir, "me/retry", token=TOKEN, endpoint=hub.url, backoff_s=0.01)
        creates = [r for r in hub.requests if r[1] == "/api/repos/create"]
        assert len(creates) == 3
        assert "model.safetensors" in hub.repos["me/retry"]["files"]


def test_bad_token_fails_fast_keeps_local_output_and_says_how_to_retry(run_dir, monkeypatch, capsys):
    before = _snapshot(run_dir)
    with FakeHub(TOKEN) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", "hf_wrong_secret_value")
        assert main(["push", str(run_dir), "--repo-id", "me/denied"]) == 1
        assert [r for r in hub.requests if r[1] == "/api/repos/create"] == [("POST", "/api/repos/create")]  # no retry
    err = capsys.readouterr().err
    assert "not authorised (HTTP 401); set HF_TOKEN" in err
    assert f"retry with: verirl push {run_dir} --repo-id me/denied" in err
    assert "hf_wrong_secret_value" not in err
    assert len(err.strip().splitlines()) == 1
    assert _snapshot(run_dir) == before


def test_persistent_server_errors_give_up_after_the_retries(run_dir):
    with FakeHub(TOKEN) as hub:
        hub.fail_next = [500] * 10
        with pytest.raises(HubError, match="failed after 3 attempt"):
            push_folder(run_dir, "me/down", token=TOKEN, endpoint=hub.url, attempts=3, backoff_s=0.01)
        assert len(hub.requests) == 3


def test_unreachable_hub_is_retried_then_reported(run_dir):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket closes
    before = _snapshot(run_dir)
    with pytest.raises(HubError, match="create_repo me/x failed after 2 attempt"):
        push_folder(run_dir, "me/x", token=TOKEN, endpoint=f"http://127.0.0.1:{port}", attempts=2, backoff_s=0.01)
    assert _snapshot(run_dir) == before


def test_offline_mode_is_reported_without_retrying(run_dir, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HubError, match="failed after 1 attempt.*offline mode is enabled"):
        push_folder(run_dir, "me/x", token=TOKEN, endpoint="http://127.0.0.1:9", backoff_s=0.01)


def test_push_refuses_a_directory_without_a_model(tmp_path, capsys):
    assert main(["push", str(tmp_path), "--repo-id", "me/empty"]) == 2
    assert "holds no model" in capsys.readouterr().err


@pytest.fixture()
def flow_run_dir(tmp_path):
    """A finished Flow-GRPO run: its output holds the LoRA in diffusers' format, no config.json."""
    out = tmp_path / "flow-run"
    out.mkdir()
    (out / "pytorch_lora_weights.safetensors").write_bytes(b"lora")
    recipe = {"trainer": "flow_grpo", "model": "me/pipe", "data": {"builtin": "glyph"}, "rewards": ["ocr_match"]}
    (out / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    (out / "eval_results.json").write_text(json.dumps({"train": {"steps": 2, "seconds": 1.0}}))
    return out


def test_push_of_a_flow_grpo_run_finds_its_lora(flow_run_dir, monkeypatch, capsys):
    with FakeHub(TOKEN) as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        assert main(["push", str(flow_run_dir), "--repo-id", "me/glyph-lora"]) == 0, capsys.readouterr().err
        files = hub.repos["me/glyph-lora"]["files"]
    assert "pytorch_lora_weights.safetensors" in files
    meta = yaml.safe_load(files["README.md"].decode().split("---")[1])
    assert meta["pipeline_tag"] == "text-to-image" and "diffusers" in meta["tags"]


def test_push_of_a_flow_grpo_run_without_its_lora_names_the_file(flow_run_dir, capsys):
    (flow_run_dir / "pytorch_lora_weights.safetensors").unlink()
    assert main(["push", str(flow_run_dir), "--repo-id", "me/glyph-lora"]) == 2
    assert "holds no model (pytorch_lora_weights.safetensors)" in capsys.readouterr().err
