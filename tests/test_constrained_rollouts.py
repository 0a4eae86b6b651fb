"""GRPO rollouts constrained to a closed set of completions (``constrain:``): every sampled completion is one of
them, in a real TRL GRPOTrainer step through verirl; the section's and the set's bad inputs are one-line errors."""

from __future__ import annotations

import json

import pytest

from verirl.errors import RecipeError, VerirlError
from verirl.rl.constrained_rollouts import check_depth, load_completions

SEEN: list[str] = []


def record_completions(prompts, completions, **kwargs):
    """A reward plug-in that keeps what it was given (the test reads SEEN) and scores nothing."""
    SEEN.extend(completions)
    return [0.0] * len(completions)


def test_sets_load_from_builtin_text_and_json(tmp_path):
    titles = load_completions("ml-100k")
    assert len(titles) == 1663 and titles[0] == '"Toy Story (1995)"\n'  # as the ml-100k task writes completions
    text = tmp_path / "set.txt"
    text.write_text("yes\nno\n\nyes\n")
    assert load_completions(str(text)) == ["yes", "no"]  # blank lines and duplicates dropped, order kept
    listed = tmp_path / "set.json"
    listed.write_text(json.dumps(["a\n", "b"]))
    assert load_completions(str(listed)) == ["a\n", "b"]


@pytest.mark.parametrize(
    "content, name, message",
    [
        (None, "missing.txt", "expected ml-100k or a .txt / .json file"),
        ("\n \n", "blank.txt", "holds no completions"),
        ("[1, 2]", "numbers.json", "expected a JSON list of strings"),
        ("[", "broken.json", "not valid JSON"),
        (b"\xff\xfe", "binary.txt", "cannot be read as UTF-8 text"),
    ],
)
def test_bad_sets_are_one_line_errors(tmp_path, content, name, message):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(VerirlError, match=message):
        load_completions(str(path))


def test_a_completion_longer_than_max_completion_length_is_refused_before_training():
    with pytest.raises(VerirlError, match="args.max_completion_length: the longest allowed completion is 31 tokens"):
        check_depth(31, 24)
    check_depth(31, 31)


@pytest.mark.parametrize(
    "change, field, message",
    [
        ({"constrain": "no-such-file.txt"}, "constrain.completions", "expected ml-100k or a .txt / .json file"),
        ({"constrain": {"completions": "ml-100k", "beams": 2}}, "constrain.beams", ""),
        ({"constrain": "ml-100k", "generator": {"backend": "vllm-server", "url": "http://127.0.0.1:9"}},
         "generator.backend", "constrained rollouts run on backend hf"),
        ({"constrain": "ml-100k", "environment": "search", "data": {"builtin": "search-2hop", "chat": True}},
         "constrain", "single-turn"),
    ],
)  # fmt: skip
def test_recipe_errors_name_the_field(tiny_model_dir, tmp_path, write_recipe, change, field, message):
    from tests.conftest import tiny_grpo_recipe
    from verirl.recipes import read_yaml, validate

    recipe = tiny_grpo_recipe(tiny_model_dir, tmp_path / "out")
    recipe.update(change)
    path = write_recipe(recipe)
    with pytest.raises(RecipeError) as caught:
        validate(read_yaml(path), str(path))
    assert f"{field}:" in str(caught.value) and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_dry_run_line_names_the_set(tiny_model_dir, tmp_path, write_recipe):
    from tests.conftest import tiny_grpo_recipe
    from verirl.recipes import read_yaml, validate
    from verirl.rl.constrained_rollouts import constrain_line

    recipe = tiny_grpo_recipe(tiny_model_dir, tmp_path / "out", constrain="ml-100k")
    path = write_recipe(recipe)
    spec = validate(read_yaml(path), str(path)).section("constrain")
    assert constrain_line(spec) == "rollouts sampled from a token trie over ml-100k (transformers generate)"


def test_every_grpo_rollout_is_an_allowed_completion(tiny_model_dir, tmp_path):
    """A real TRL GRPO step on the ml-100k prompts, constrained to four catalogue titles: the random tiny model
    (which otherwise invents every title: see test_rec_verifiers) writes only those, so no sample is floored."""
    from tests.conftest import one_grpo_step
    from verirl.rec.tasks import completion_for

    titles = ["Heat (1995)", "Casino (1995)", "Babe (1995)", "Twister (1996)"]
    allowed = tmp_path / "titles.json"
    allowed.write_text(json.dumps([completion_for(t) for t in titles]))
    SEEN.clear()
    results, record = one_grpo_step(
        tiny_model_dir,
        tmp_path,
        data={"builtin": "ml-100k", "n_train": 4, "n_eval": 2, "chat": False},
        constrain=str(allowed),
        rewards=[
            {"mixture": {"name": "rec", "members": ["rec_exact", {"name": "rec_valid", "kind": "constraint"}]}},
            {"name": f"{__name__}:record_completions", "label": "seen", "weight": 0.0},
        ],
        args={
            "max_steps": 1, "num_generations": 4, "per_device_train_batch_size": 8, "max_completion_length": 16,
            "learning_rate": 1e-3, "logging_steps": 1, "save_steps": 10, "bf16": False,
            "gradient_checkpointing": False, "report_to": "none", "seed": 0, "temperature": 1.0,
        },
    )  # fmt: skip
    assert results["train"]["steps"] == 1
    assert len(SEEN) == 8 and set(SEEN) <= {completion_for(t) for t in titles}  # decoded without the EOS
    assert len(set(SEEN)) > 1  # sampled, not one beam
    assert record["mixture/rec/floored"] == 0.0 and record["mixture/rec/rec_valid/mean"] == 1.0
    assert results["train"]["rollouts"]["constrained_to"] == 4


def test_max_completion_length_too_short_fails_before_any_step(tiny_model_dir, tmp_path):
    from tests.conftest import one_grpo_step

    allowed = tmp_path / "titles.txt"
    allowed.write_text("a much longer completion than four tokens allow\n")
    with pytest.raises(VerirlError, match="args.max_completion_length: the longest allowed completion is"):
        one_grpo_step(tiny_model_dir, tmp_path, constrain=str(allowed))
    assert not (tmp_path / "out" / "metrics.jsonl").exists()
