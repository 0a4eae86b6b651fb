"""Recipe validation: every malformed recipe gives ONE line naming the file, the key and what was expected."""

import copy

import pytest
import torch
import yaml

from tests.conftest import tiny_grpo_recipe
from verirl.cli import main
from verirl.errors import RecipeError
from verirl.recipes import apply_overrides, load_recipe


@pytest.fixture()
def base(tiny_model_dir, tmp_path):
    return tiny_grpo_recipe(tiny_model_dir, tmp_path / "out")


def _set(recipe: dict, dotted: str, value):
    recipe = copy.deepcopy(recipe)
    node = recipe
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if value is _DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return recipe


_DELETE = object()

# (dotted key to change, new value, the key the error must name, a fragment of the expected message)
MALFORMED = [
    ("trainer", "ppo", "trainer", "expected one of: grpo, dpo"),
    ("trainer", _DELETE, "trainer", "required key is missing"),
    ("model", _DELETE, "model", "required key is missing"),
    ("model", "./no/such/dir", "model", "no such directory"),
    ("model", "not a valid id!", "model", "not a Hub id"),
    ("model", {"name": "x/y", "dtype": "int8"}, "model.dtype", "expected one of"),
    ("model", {"name": "x/y", "trust_remote_code": "yes"}, "model.trust_remote_code", "expected bool"),
    ("model", {"name": "x/y", "lora": {"r": "eight"}}, "model.lora.r", "expected int"),
    ("model", {"name": "x/y", "lora": {"lora_alpa": 8}}, "model.lora.lora_alpa", "did you mean 'lora_alpha'"),
    ("data", _DELETE, "data", "required key is missing"),
    ("data.builtin", "algebra", "data.builtin", "unknown task 'algebra'"),
    ("data.n_train", "many", "data.n_train", "expected int"),
    ("data.n_train", 0, "data.n_train", "positive integer"),
    ("data.max_operand", -5, "data", "min_operand (0) must be <= max_operand (-5)"),
    ("data.ops", ["^"], "data", "unsupported"),
    ("data.n_train", 5000, "data", "distinct problems"),
    ("data.colour", 1, "data.colour", "unknown key"),
    ("data", {"path": "json", "data_files": "missing.jsonl"}, "data.data_files", "file not found"),
    ("data", {"builtin": "arithmetic", "path": "json"}, "data", "exactly one of data.builtin or data.path"),
    ("rewards", _DELETE, "rewards", "grpo needs at least one reward"),
    ("rewards", "number_match", "rewards", "expected a list"),
    ("rewards", [{"name": "numbr_match"}], "rewards.0.name", "did you mean 'number_match'"),
    ("rewards", [{"name": "no_such_module_xyz:fn"}], "rewards.0.name", "cannot import module"),
    ("rewards", [{"name": "os.path:nonexistent_fn"}], "rewards.0.name", "has no attribute"),
    ("rewards", [{"name": "os.path:join"}], "rewards.0.name", "must accept **kwargs"),
    ("rewards", [{"name": "number_match", "weight": "heavy"}], "rewards.0.weight", "expected float"),
    ("rewards", [{"name": "number_match", "timeout_s": -1}], "rewards.0.timeout_s", "positive number"),
    ("rewards", [{"name": "number_match", "wieght": 1}], "rewards.0.wieght", "did you mean 'weight'"),
    ("rewards", [{"name": "number_match", "args": {"bogus": 1}}], "rewards.0.name", "unknown args ['bogus']"),
    ("rewards", [{"name": "number_match"}, {"name": "number_match"}], "rewards", "listed twice"),
    # a function reward's arg values are checked at load (type hints, then its check_args), not at the first step
    ("rewards", [{"name": "regex_format", "args": {"mode": "exact"}}], "rewards.0.name", "args.mode: expected one of"),
    ("rewards", [{"name": "regex_format", "args": {"pattern": "(a"}}], "rewards.0.name", "args.pattern: not a valid"),
    ("rewards", [{"name": "arithmetic_check", "args": {"missing": 2}}], "rewards.0.name", "args.missing: expected"),
    ("rewards", [{"name": "length_penalty", "args": {"max_length": "long"}}], "rewards.0.name", "an integer"),
    ("rewards", [{"name": "majority_vote", "args": {"extractor": "nope"}}], "rewards.0.name", "unknown extractor"),
    ("args.learning_rat", 1e-5, "args.learning_rat", "did you mean 'learning_rate'"),
    ("args.learning_rate", "fast", "args.learning_rate", "expected float"),
    ("args.max_steps", 2.5, "args.max_steps", "expected int"),
    ("args.num_generations", 3, "args.num_generations", "must be divisible by num_generations (3)"),
    ("args.num_generations", 1, "args", "at least 2 generations"),
    ("args.reward_weights", [1.0], "args.reward_weights", "set each reward's `weight`"),
    ("args.output_dir", "x", "args.output_dir", "top level"),
    ("args.loss_type", "ppo", "args.loss_type", "expected one of: grpo, dr_grpo, dapo"),
    ("args.lr_scheduler_type", "wobbly", "args.lr_scheduler_type", "expected one of"),
    ("args", [1, 2], "args", "expected a mapping"),
    ("generator.backend", "tgi", "generator.backend", "expected one of: hf"),
    ("eval.batch_size", 0, "eval.batch_size", "positive integer"),
    ("eval.reward", "nope", "eval.reward", "unknown reward"),
    ("hub", {"push": True}, "hub.repo_id", "required when hub.push is true"),
    ("hub.private", "no", "hub.private", "expected bool"),
    ("outptu_dir", "x", "outptu_dir", "did you mean 'output_dir'"),
]


@pytest.mark.parametrize("key,value,named,fragment", MALFORMED, ids=[f"{m[0]}={m[1]!r}"[:60] for m in MALFORMED])
def test_malformed_recipe_gives_one_line_naming_file_and_key(base, write_recipe, key, value, named, fragment):
    path = write_recipe(_set(base, key, value))
    with pytest.raises(RecipeError) as info:
        load_recipe(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: {named}: "), message
    assert fragment in message, message


def test_valid_recipe_builds_and_derives(base, write_recipe):
    recipe = load_recipe(write_recipe(base))
    assert recipe.trainer == "grpo"
    assert recipe.derived["reward_weights"] == [1.0]
    # without a GPU verirl sets use_cpu (trl refuses bf16 on CPU otherwise); with one it leaves it to trl
    assert recipe.derived.get("use_cpu") is (None if torch.cuda.is_available() else True)
    assert recipe.data.options == {"max_operand": 9}


def test_yaml_1e5_string_is_coerced_to_float(base, write_recipe):
    text = yaml.safe_dump(base).replace("learning_rate: 0.001", "learning_rate: 1e-5")
    assert "1e-5" in text  # PyYAML reads this as a string
    recipe = load_recipe(write_recipe(text))
    assert recipe.args["learning_rate"] == pytest.approx(1e-5)


def test_batch_divisibility_accounts_for_processes(base, write_recipe):
    recipe = _set(base, "args.per_device_train_batch_size", 3)
    recipe = _set(recipe, "args.num_generations", 2)
    path = write_recipe(recipe)
    with pytest.raises(RecipeError, match="3 per device × 1 processes"):
        load_recipe(path)
    load_recipe(path, num_processes=2)  # 3 x 2 = 6 completions: divisible by 2


@pytest.mark.parametrize(
    "text,fragment",
    [
        ("trainer: grpo\nmodel: [unclosed\n", "invalid YAML: line"),
        ("", "the recipe is empty"),
        ("- just\n- a list\n", "expected a mapping of sections"),
    ],
)
def test_unparseable_files(write_recipe, text, fragment):
    path = write_recipe(text)
    with pytest.raises(RecipeError, match=fragment):
        load_recipe(path)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_overrides_set_nested_values_and_list_items():
    data = {"args": {"max_steps": 5}, "rewards": [{"name": "a"}], "model": "alias"}
    out = apply_overrides(
        data, ["args.max_steps=10", "rewards.0.weight=0.5", "data.builtin=arithmetic", "model.dtype=bfloat16"], "f"
    )
    assert out["args"]["max_steps"] == 10
    assert out["rewards"][0]["weight"] == 0.5
    assert out["data"] == {"builtin": "arithmetic"}
    assert out["model"] == {"name": "alias", "dtype": "bfloat16"}
    assert data["args"]["max_steps"] == 5  # the input is not mutated
    with pytest.raises(RecipeError, match="expected key=value"):
        apply_overrides(data, ["args.max_steps"], "f")
    with pytest.raises(RecipeError, match="not an index"):
        apply_overrides(data, ["rewards.3.weight=1"], "f")


def test_cli_bad_recipe_exits_2_with_one_line_and_no_traceback(base, write_recipe, capsys):
    path = write_recipe(_set(base, "args.learning_rate", "fast"))
    code = main(["train", str(path), "--dry-run"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == f"verirl: error: {path}: args.learning_rate: expected float, got 'fast'"


def test_cli_debug_shows_the_traceback(base, write_recipe):
    path = write_recipe(_set(base, "args.learning_rate", "fast"))
    with pytest.raises(RecipeError):
        main(["train", str(path), "--dry-run", "--debug"])


def test_dry_run_prints_plan_and_writes_nothing(base, write_recipe, capsys, tmp_path):
    path = write_recipe(base)
    assert main(["train", str(path), "--dry-run", "--set", "args.max_steps=7"]) == 0
    out = capsys.readouterr().out
    assert "max_steps 7" in out and "number_match x1" in out and "accelerate launch" in out
    assert not (tmp_path / "out").exists()


def test_dry_run_refuses_a_non_empty_output_dir(base, write_recipe, capsys, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "precious.txt").write_text("keep me")
    path = write_recipe(base)
    assert main(["train", str(path), "--dry-run"]) == 2
    assert "not empty; pass --resume" in capsys.readouterr().err
    assert (tmp_path / "out" / "precious.txt").read_text() == "keep me"


def test_cli_rejects_bad_process_count_and_missing_accelerate_config(base, write_recipe, capsys):
    path = write_recipe(base)
    assert main(["train", str(path), "--dry-run", "--num-processes", "0"]) == 2
    assert main(["train", str(path), "--dry-run", "--accelerate-config", "/no/such.yaml"]) == 2
    err = capsys.readouterr().err
    assert "--num-processes: expected a positive integer" in err
    assert "--accelerate-config: file not found" in err


def test_dpo_recipe_validates_with_dpo_config(tiny_model_dir, write_recipe, tmp_path):
    data = tmp_path / "prefs.jsonl"
    data.write_text('{"prompt": "2+2?", "chosen": "4", "rejected": "5"}\n')
    recipe = {
        "trainer": "dpo",
        "model": str(tiny_model_dir),
        "data": {"path": "json", "data_files": str(data)},
        "args": {"beta": 0.2, "max_steps": 1},
        "eval": {"enabled": False},
        "output_dir": str(tmp_path / "dpo"),
    }
    assert load_recipe(write_recipe(recipe)).args["beta"] == 0.2
    with pytest.raises(RecipeError, match="args.num_generations: unknown key"):
        load_recipe(write_recipe(_set(recipe, "args.num_generations", 4)))
    with pytest.raises(RecipeError, match="takes no rewards"):
        load_recipe(write_recipe(_set(recipe, "rewards", [{"name": "number_match"}])))
