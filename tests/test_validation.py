"""Validation building blocks: finite numbers, declared ranges (``setting``/``check_bounds``), nested dataclasses,
recipe YAML reading (duplicate and non-string keys, aliases), and the ranges of trl's config fields (TRL_BOUNDS)."""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import typing
import warnings
from pathlib import Path

import pytest
import yaml

from verirl.errors import RecipeError
from verirl.recipe_yaml import MAX_EXPANDED_VALUES, read_recipe_file
from verirl.rl.trl_bounds import DPO_BOUNDS, GRPO_BOUNDS, TRL_BOUNDS, TRL_BOUNDS_BY_CONFIG, bounds_for
from verirl.typecheck import build_dataclass, check_bounds, coerce, field_help, setting

ROOT = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------------------------- finite numbers

NON_FINITE = [
    (float("nan"), "nan"),
    (float("inf"), "inf"),
    (float("-inf"), "-inf"),
    ("nan", "nan"),
    ("NaN", "nan"),
    (" inf ", "inf"),
    ("-Infinity", "-inf"),
    ("1e999", "inf"),
    ("-1e999", "-inf"),
]


@pytest.mark.parametrize("annotation", [float, float | None, int, int | None, str | float, list[float]])
@pytest.mark.parametrize("value,shown", NON_FINITE, ids=[repr(v) for v, _ in NON_FINITE])
def test_coerce_rejects_non_finite_numbers(annotation, value, shown):
    if typing.get_origin(annotation) is list:
        value = [1.0, value]
    if annotation == str | float and isinstance(value, str):
        assert coerce(value, annotation, "r.yaml", "k") == value  # a string is a valid str
        return
    with pytest.raises(RecipeError) as info:
        coerce(value, annotation, "r.yaml", "args.learning_rate")
    assert str(info.value) == f"r.yaml: args.learning_rate: expected a finite number, got {shown}"


@pytest.mark.parametrize("text", [".nan", ".NaN", ".inf", "-.inf", "+.Inf", "1.0e+999", "-1.0e+999"])
def test_yaml_non_finite_floats_are_rejected(text):
    value = yaml.safe_load(f"x: {text}")["x"]
    assert isinstance(value, float) and not math.isfinite(value)  # PyYAML reads them as floats
    with pytest.raises(RecipeError, match="expected a finite number"):
        coerce(value, float, "r.yaml", "rewards.0.weight")


def test_an_int_no_float_can_hold_is_not_a_finite_float():
    with pytest.raises(RecipeError, match=r"^r.yaml: args.learning_rate: expected a finite number, got 1000.*\.\.\.$"):
        coerce(10**400, float, "r.yaml", "args.learning_rate")
    assert coerce(10**300, float, None, "k") == 10**300


def test_coerce_still_converts_and_keeps_what_it_did():
    assert coerce("1e-5", float, None, "k") == pytest.approx(1e-5)
    assert coerce(5, float, None, "k") == 5 and isinstance(coerce(5, float, None, "k"), int)
    assert coerce(2.0, int, None, "k") == 2
    assert coerce(1e308, float, None, "k") == 1e308
    assert coerce(10**400, int, None, "k") == 10**400  # huge ints are fine unless a bound says otherwise
    assert coerce(None, float | None, None, "k") is None
    assert coerce("x", str | list[str], None, "k") == "x"
    with pytest.raises(RecipeError, match="expected int, got 2.5"):
        coerce(2.5, int, None, "k")
    with pytest.raises(RecipeError, match="expected float, got 'fast'"):
        coerce("fast", float, None, "k")
    with pytest.raises(RecipeError, match="expected float or null, got True"):
        coerce(True, float | None, None, "k")


def test_error_values_are_shown_on_one_short_line():
    with pytest.raises(RecipeError) as info:
        coerce("x\n" * 10_000, int, "r.yaml", "args.seed")
    message = str(info.value)
    assert "\n" not in message and len(message) < 200 and message.endswith("...")


# --------------------------------------------------------------------------------------- setting / check_bounds


def test_setting_puts_help_and_only_the_given_bounds_in_metadata():
    @dataclasses.dataclass
    class Spec:
        n: int = setting(8, help="completions per prompt", ge=1)
        p: float = setting(1.0, help="nucleus", gt=0, le=1)
        mode: str = setting("a", help="the mode", choices=("a", "b"))
        steps: int = setting(-1, help="-1: epochs", ge=1, sentinels=[-1])
        tags: list[str] = setting(help="tags", default_factory=list)

    f = {x.name: x for x in dataclasses.fields(Spec)}
    assert dict(f["n"].metadata) == {"help": "completions per prompt", "ge": 1}
    assert dict(f["p"].metadata) == {"help": "nucleus", "gt": 0, "le": 1}
    assert dict(f["mode"].metadata) == {"help": "the mode", "choices": ("a", "b")}
    assert dict(f["steps"].metadata) == {"help": "-1: epochs", "ge": 1, "sentinels": (-1,)}
    assert dict(f["tags"].metadata) == {"help": "tags"}
    spec = Spec()
    assert (spec.n, spec.p, spec.mode, spec.steps, spec.tags) == (8, 1.0, "a", -1, [])
    assert Spec().tags is not spec.tags  # default_factory
    with pytest.raises(TypeError):
        setting(1)  # help is required


BOUND_ERRORS = [
    ({"ge": 1}, 0, "expected a positive integer, got 0"),  # common ranges in words
    ({"ge": 1}, -1e30, "expected >= 1, got -1e+30"),
    ({"gt": 0}, 0, "expected a positive number, got 0"),
    ({"gt": 0}, -1.5, "expected a positive number, got -1.5"),
    ({"ge": 0}, -1, "expected a non-negative number, got -1"),
    ({"ge": 2}, 1, "expected >= 2, got 1"),
    ({"le": 1}, 1.5, "expected <= 1, got 1.5"),
    ({"lt": 0.5}, 0.5, "expected < 0.5, got 0.5"),
    ({"gt": 0, "le": 1}, 0.0, "expected a positive number, got 0.0"),
    ({"gt": 0, "le": 1}, 1e308, "expected <= 1, got 1e+308"),
    ({"ge": 0, "le": 2**32 - 1}, 2**32, "expected <= 4294967295, got 4294967296"),
    ({"ge": 1}, float("nan"), "expected a finite number, got nan"),
    ({"le": 1}, float("-inf"), "expected a finite number, got -inf"),
    ({"ge": 1, "sentinels": [-1]}, 0, "expected a positive integer (or -1), got 0"),
    ({"ge": 1, "sentinels": [-1]}, -2, "expected a positive integer (or -1), got -2"),
    ({"ge": 0, "sentinels": [-1]}, -2, "expected a non-negative number (or -1), got -2"),
    ({"choices": ("a", "b")}, "c", "expected one of: a, b, got 'c'"),
    ({"choices": (1, 2)}, True, "expected one of: 1, 2, got True"),
    ({"choices": ("1", "2")}, 1, "expected one of: 1, 2, got 1"),
]


@pytest.mark.parametrize("metadata,value,message", BOUND_ERRORS, ids=[m for _, _, m in BOUND_ERRORS])
def test_check_bounds_messages(metadata, value, message):
    with pytest.raises(RecipeError) as info:
        check_bounds(value, metadata, "r.yaml", "args.x")
    assert str(info.value) == f"r.yaml: args.x: {message}"


BOUND_PASSES = [
    ({"ge": 1}, 1),
    ({"ge": 1}, 10**400),
    ({"gt": 0}, 1e-300),
    ({"gt": 0, "le": 1}, 1),
    ({"ge": 1, "sentinels": [-1]}, -1),
    ({"ge": 1}, None),
    ({"ge": 1}, "auto"),  # numeric bounds apply to numbers ("auto" | int fields)
    ({"ge": 1}, True),  # a bool is not a number here (the annotation decides whether it may be a bool)
    ({"choices": ("a", "b")}, "b"),
    ({"help": "no bounds"}, -5),
    ({}, float("nan")),  # no bounds: finiteness is coerce's business
]


@pytest.mark.parametrize("metadata,value", BOUND_PASSES, ids=[f"{m}-{v!r}" for m, v in BOUND_PASSES])
def test_check_bounds_passes(metadata, value):
    check_bounds(value, metadata, "r.yaml", "args.x")


def test_check_bounds_checks_list_items_by_index():
    check_bounds([1, 2, 3], {"ge": 1}, "r.yaml", "args.w")
    with pytest.raises(RecipeError, match=r"^r.yaml: args.w.1: expected a non-negative number, got -1$"):
        check_bounds([0, -1], {"ge": 0}, "r.yaml", "args.w")


# ------------------------------------------------------------------------------------------ build_dataclass


@dataclasses.dataclass
class Lora:
    r: int = setting(16, help="rank", ge=1)
    alpha: float = setting(32.0, help="scale", gt=0)


@dataclasses.dataclass
class Inner:
    count: int = setting(help="how many", ge=1)
    lora: Lora = setting(help="adapter", default_factory=Lora)


@dataclasses.dataclass
class Outer:
    inner: Inner
    optional: Lora | None = setting(None, help="an optional nested section")
    rate: float = setting(1e-5, help="learning rate", gt=0)
    mode: str = setting("fast", help="mode", choices=("fast", "slow"))
    name: str = "x"  # a plain field: no metadata


def test_build_dataclass_builds_nested_dataclasses():
    built = build_dataclass(Outer, {"inner": {"count": 2, "lora": {"r": "8"}}, "optional": {"alpha": 1}}, "f", "s.")
    assert built == Outer(inner=Inner(count=2, lora=Lora(r=8)), optional=Lora(alpha=1))
    assert build_dataclass(Outer, {"inner": {"count": 1}, "optional": None}, "f", "s.").optional is None
    assert build_dataclass(Outer, {"inner": {"count": 1}}, "f", "s.").inner.lora == Lora()


NESTED_ERRORS = [
    ({"inner": {"count": 0}}, "s.inner.count: expected a positive integer, got 0"),
    ({"inner": {"count": 1, "lora": {"r": 0}}}, "s.inner.lora.r: expected a positive integer, got 0"),
    ({"inner": {"count": 1, "lora": {"alpha": ".nan"}}}, "s.inner.lora.alpha: expected float, got '.nan'"),
    (
        {"inner": {"count": 1, "lora": {"alpha": float("inf")}}},
        "s.inner.lora.alpha: expected a finite number, got inf",
    ),
    ({"inner": {"count": 1, "lora": {"rr": 4}}}, "s.inner.lora.rr: unknown key; did you mean 'r'?"),
    ({"inner": {"count": 1, "lora": {"rank": 4}}}, "s.inner.lora.rank: unknown key; expected one of: alpha, r"),
    ({"inner": {"count": 1, "lora": [1, 2]}}, "s.inner.lora: expected a mapping of Lora fields, got list"),
    ({"inner": {"count": 1, "lora": None}}, "s.inner.lora: expected a mapping of Lora fields, got null"),
    ({"inner": "three"}, "s.inner: expected a mapping of Inner fields, got str"),
    ({"inner": {}}, "s.inner.count: required key is missing"),
    ({}, "s.inner: required key is missing"),
    ({"inner": {"count": 1}, "optional": 5}, "s.optional: expected a mapping of Lora fields, got int"),
    ({"inner": {"count": 1}, "rate": 0}, "s.rate: expected a positive number, got 0"),
    ({"inner": {"count": 1}, "rate": "-1e-5"}, "s.rate: expected a positive number, got -1e-05"),
    ({"inner": {"count": 1}, "mode": "medium"}, "s.mode: expected one of: fast, slow, got 'medium'"),
    ({"inner": {"count": 1}, 7: 1}, "s.7: unknown key; expected one of: inner, mode, name, optional, rate"),
]


@pytest.mark.parametrize("data,message", NESTED_ERRORS, ids=[m.split(":")[0] for _, m in NESTED_ERRORS])
def test_build_dataclass_errors_name_the_nested_key(data, message):
    with pytest.raises(RecipeError) as info:
        build_dataclass(Outer, data, "r.yaml", "s.")
    assert str(info.value) == f"r.yaml: {message}"


def test_build_dataclass_reports_post_init_errors_as_one_line():
    @dataclasses.dataclass
    class Checked:
        heads: int = 2
        width: int = 8

        def __post_init__(self):
            if self.width % self.heads:
                raise ValueError(f"heads must divide width\n(got heads={self.heads}, width={self.width})")
            self.ratio = 1 / (self.width - 8 or 0)  # ZeroDivisionError for width 8

    with pytest.raises(RecipeError) as info:
        build_dataclass(Checked, {"heads": 3}, "r.yaml", "model.")
    assert str(info.value) == "r.yaml: model.heads: heads must divide width"
    with pytest.raises(RecipeError, match=r"^r.yaml: model: division by zero$"):
        build_dataclass(Checked, {}, "r.yaml", "model.")


def test_field_help_lists_every_field_and_nested_ones():
    assert field_help(Outer) == {
        "inner": "",
        "inner.count": "how many",
        "inner.lora": "adapter",
        "inner.lora.r": "rank",
        "inner.lora.alpha": "scale",
        "optional": "an optional nested section",
        "optional.r": "rank",
        "optional.alpha": "scale",
        "rate": "learning rate",
        "mode": "mode",
        "name": "",
    }


@dataclasses.dataclass
class Tree:
    leaf: int = setting(1, help="a leaf", ge=0)
    child: Tree | None = setting(None, help="a subtree")


def test_field_help_and_build_dataclass_on_a_dataclass_that_contains_itself():
    assert field_help(Tree) == {"leaf": "a leaf", "child": "a subtree"}  # not expanded forever
    built = build_dataclass(Tree, {"child": {"child": {"leaf": 3}}}, "r.yaml", "t.")
    assert built == Tree(child=Tree(child=Tree(leaf=3)))
    with pytest.raises(RecipeError, match=r"^r.yaml: t.child.child.leaf: expected a non-negative number, got -1$"):
        build_dataclass(Tree, {"child": {"child": {"leaf": -1}}}, "r.yaml", "t.")


# ---------------------------------------------------------------------------------------------- recipe YAML


@pytest.fixture()
def recipe_file(tmp_path):
    def write(text: str | bytes, name: str = "recipe.yaml") -> str:
        path = tmp_path / name
        (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
        return str(path)

    return write


def test_reads_the_shipped_recipes_like_safe_load():
    for path in sorted((ROOT / "recipes").glob("*.yaml")):
        assert read_recipe_file(path) == yaml.safe_load(path.read_text()), path.name


SAME_AS_BEFORE = [
    (
        "trainer: grpo\nmodel: [unclosed\n",
        "invalid YAML: line 3, column 1: expected ',' or ']', but got '<stream end>'",
    ),
    ("a: 1\n\tb: 2\n", "invalid YAML: line 2, column 1: found character '\\t' that cannot start any token"),
    ("a: *nope\n", "invalid YAML: line 1, column 4: found undefined alias 'nope'"),
    ("a: !!python/object:os.system {}\n", "invalid YAML: line 1, column 4: could not determine a constructor"),
    ("a: 1\n---\nb: 2\n", "invalid YAML: line 2, column 1: but found another document"),
    ("a: b\x00\n", "invalid YAML: unacceptable character #x0000: special characters are not allowed"),
    ("", "the recipe is empty"),
    ("# only a comment\n", "the recipe is empty"),
    ("---\n", "the recipe is empty"),
    ("- just\n- a list\n", "expected a mapping of sections at the top level, got list"),
    ("hello\n", "expected a mapping of sections at the top level, got str"),
    (b"trainer: \xff\xfe grpo\n", "not a UTF-8 text file"),
]


@pytest.mark.parametrize("text,message", SAME_AS_BEFORE, ids=[m[:40] for _, m in SAME_AS_BEFORE])
def test_unreadable_recipes_give_the_messages_they_always_gave(recipe_file, text, message):
    path = recipe_file(text)
    with pytest.raises(RecipeError) as info:
        read_recipe_file(path)
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)
    assert "\n" not in str(info.value)


def test_missing_recipe_file(tmp_path):
    for path in (tmp_path / "nope.yaml", tmp_path):
        with pytest.raises(RecipeError, match=r": recipe file not found$"):
            read_recipe_file(path)


DUPLICATES = [
    ("trainer: grpo\nmodel: x\ntrainer: dpo\n", "trainer: duplicate key (lines 1 and 3)"),
    (
        "trainer: grpo\nargs:\n  learning_rate: 1.0e-5\n  max_steps: 3\n  learning_rate: 2.0e-5\n",
        "args.learning_rate: duplicate key (lines 3 and 5)",
    ),
    (
        "model:\n  name: x\n  lora:\n    r: 8\n    lora_alpha: 16\n    r: 4\n",
        "model.lora.r: duplicate key (lines 4 and 6)",
    ),
    (
        "rewards:\n  - name: a\n  - name: b\n    weight: 1\n    weight: 2\n",
        "rewards.1.weight: duplicate key (lines 4 and 5)",
    ),
    ("rewards:\n  - {name: a, weight: 1, name: b}\n", "rewards.0.name: duplicate key (line 2, columns 6 and 26)"),
    ("args: {seed: 1}\nargs: {seed: 2}\n", "args: duplicate key (lines 1 and 2)"),
    ("'a': 1\n\"a\": 2\n", "a: duplicate key (lines 1 and 2)"),  # quoting does not make another key
    ("ünï: 1\nünï: 2\n", "ünï: duplicate key (lines 1 and 2)"),
]


@pytest.mark.parametrize("text,message", DUPLICATES, ids=[m.split(":")[0] for _, m in DUPLICATES])
def test_duplicate_keys_name_the_key_and_both_lines(recipe_file, text, message):
    assert isinstance(yaml.safe_load(text), dict)  # PyYAML alone silently keeps the last one
    path = recipe_file(text)
    with pytest.raises(RecipeError) as info:
        read_recipe_file(path)
    assert str(info.value) == f"{path}: {message}"


NON_STRING_KEYS = [
    ("1: x\n", "1: keys must be strings, got int 1 (line 1)"),
    ("null: y\n", "null: keys must be strings, got null (line 1)"),
    ("~: y\n", "~: keys must be strings, got null (line 1)"),
    ("[a]: b\n", "[a]: keys must be strings, got a list (line 1)"),
    ("? {a: 1}\n: b\n", "{a: 1}: keys must be strings, got a mapping (line 1)"),
    ("args:\n  2.5: x\n", "args.2.5: keys must be strings, got float 2.5 (line 2)"),
    ("args:\n  on: true\n", "args.on: keys must be strings, got bool on (line 2)"),
    ("rewards:\n  - {name: a, 2024-01-01: b}\n", "rewards.0.2024-01-01: keys must be strings, got date 2024-01-01"),
]


@pytest.mark.parametrize("text,message", NON_STRING_KEYS, ids=[m.split(": ")[0] for _, m in NON_STRING_KEYS])
def test_non_string_keys_are_errors_naming_the_key(recipe_file, text, message):
    path = recipe_file(text)
    with pytest.raises(RecipeError) as info:
        read_recipe_file(path)
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)


def test_quoted_numeric_keys_are_strings(recipe_file):
    assert read_recipe_file(recipe_file("'1': x\n!!str 2: y\n")) == {"1": "x", "2": "y"}


def test_aliases_and_merge_keys_work(recipe_file):
    text = (
        "base: &base {learning_rate: 1.0e-5, max_steps: 3}\n"
        "args:\n  <<: *base\n  max_steps: 10\n"  # a merged key may be overridden: not a duplicate
        "other:\n  <<: [*base, {seed: 1}]\n"
        "rewards: &r [{name: a}]\n"
        "again: *r\n"
    )
    data = read_recipe_file(recipe_file(text))
    assert data["args"] == {"learning_rate": 1e-5, "max_steps": 10}
    assert data["other"] == {"learning_rate": 1e-5, "max_steps": 3, "seed": 1}
    assert data["again"] == [{"name": "a"}]


BROKEN_ALIASES = [
    ("a: &x {b: *x}\n", "a.b: a recursive YAML alias"),
    ("a: &x [1, *x]\n", "a.1: a recursive YAML alias"),
    ("args:\n  <<: 5\n", "invalid YAML: line 2, column 7: expected a mapping or list of mappings for merging"),
    (
        "a: &a [x,x,x,x,x,x,x,x,x,x]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]\ne: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]\n",
        f"e: YAML aliases expand to more than {MAX_EXPANDED_VALUES:,} values",
    ),
]


@pytest.mark.parametrize("text,message", BROKEN_ALIASES, ids=["map", "list", "merge", "laughs"])
def test_recursive_and_exploding_aliases_are_errors(recipe_file, text, message):
    path = recipe_file(text)
    with pytest.raises(RecipeError) as info:
        read_recipe_file(path)
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)


CONSTRUCTOR_ERRORS = [
    ("seed: 2024-13-45\n", "invalid YAML: line 1, column 7: month must be in 1..12"),  # ValueError from datetime
    ("seed: " + "9" * 5000 + "\n", "invalid YAML: line 1, column 7: Exceeds the limit (4300 digits)"),
    ("seed: !!int abc\n", "invalid YAML: line 1, column 7: invalid literal for int() with base 10: 'abc'"),
    ("a: " + "[" * 500 + "]" * 500 + "\n", "invalid YAML: nested too deeply"),  # RecursionError in PyYAML
]


@pytest.mark.parametrize("text,message", CONSTRUCTOR_ERRORS, ids=["date", "bigint", "tag", "deep"])
def test_what_pyyaml_raises_becomes_one_line(recipe_file, text, message):
    path = recipe_file(text)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)  # CPython's default; libraries loaded by other tests (torch inductor) may raise it
    try:
        with pytest.raises((ValueError, RecursionError)):  # plain safe_load: a bare Python exception, no YAMLError
            yaml.safe_load(text)
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(RecipeError) as info:
        read_recipe_file(path)
    assert str(info.value).startswith(f"{path}: {message}"), str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("recursion_limit", [1000, 20_000])
def test_deep_nesting_is_an_error_whatever_the_recursion_limit(recipe_file, recursion_limit):
    from verirl.recipe_yaml import MAX_DEPTH

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(recursion_limit)
    try:
        for depth in (MAX_DEPTH + 1, 500):
            path = recipe_file("a: " + "[" * depth + "]" * depth + "\n")
            with pytest.raises(RecipeError, match="invalid YAML: nested too deeply"):
                read_recipe_file(path)
        assert read_recipe_file(recipe_file("a: " + "[" * 20 + "]" * 20 + "\n"))["a"] is not None
    finally:
        sys.setrecursionlimit(limit)


def test_yaml_value_tag_reads_as_a_string(recipe_file):
    assert read_recipe_file(recipe_file("prompt_template: =\n")) == {"prompt_template": "="}


# ------------------------------------------------------------------------------------------------ TRL bounds

_ALLOWED_BOUND_KEYS = {"ge", "gt", "le", "lt", "sentinels"}


def _trl_configs() -> dict[str, type]:
    from trl import DPOConfig, GRPOConfig

    return {"GRPOConfig": GRPOConfig, "DPOConfig": DPOConfig}


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls) if f.init}


def _numeric(cls: type, name: str) -> str | None:
    """The kind of a numeric field, 'int' or 'float' (float wins in unions), else None."""
    annotation = typing.get_type_hints(cls)[name]
    options = typing.get_args(annotation) or (annotation,)
    if typing.get_origin(annotation) is list:
        return None
    return "float" if float in options else "int" if int in options else None


def test_trl_bounds_name_fields_of_the_trl_configs():
    configs = _trl_configs()
    assert set(TRL_BOUNDS_BY_CONFIG) == set(configs)
    everything = set(_fields(configs["GRPOConfig"])) | set(_fields(configs["DPOConfig"]))
    assert set(TRL_BOUNDS) - everything == set()
    for name, cls in configs.items():
        bounds = TRL_BOUNDS_BY_CONFIG[name]
        assert set(bounds) - set(_fields(cls)) == set(), name
        for field_name, b in bounds.items():
            assert b and set(b) <= _ALLOWED_BOUND_KEYS, (name, field_name, b)
            assert _numeric(cls, field_name), f"{name}.{field_name} is not a number field"
    assert set(TRL_BOUNDS) == set(GRPO_BOUNDS) | set(DPO_BOUNDS)
    assert bounds_for(configs["GRPOConfig"]) is GRPO_BOUNDS and bounds_for("DPOConfig") is DPO_BOUNDS
    assert bounds_for(dict) == {}


def test_trl_bounds_flat_table_holds_in_every_config():
    assert TRL_BOUNDS["beta"] == {"ge": 0}  # GRPO: >= 0 (0 = no KL); DPO: > 0
    assert DPO_BOUNDS["beta"] == {"gt": 0}
    assert TRL_BOUNDS["max_steps"] == {"ge": 1, "sentinels": [-1]}
    for name, bounds in TRL_BOUNDS.items():
        for per_config in TRL_BOUNDS_BY_CONFIG.values():
            if name in per_config and per_config[name] != bounds:  # the flat range must be the looser one
                assert ("ge" in bounds or "gt" in bounds) <= ("ge" in per_config[name] or "gt" in per_config[name])


# Numeric fields of the trl configs that deliberately have no range (finite is all that is required).
UNBOUNDED = {
    "f_alpha_divergence_coef": "any real alpha (1 falls back to reverse KL)",
}


def test_every_numeric_trl_field_is_bounded_or_known_unbounded():
    for name, cls in _trl_configs().items():
        bounds = TRL_BOUNDS_BY_CONFIG[name]
        missing = [f for f in _fields(cls) if _numeric(cls, f) and f not in bounds and f not in UNBOUNDED]
        assert missing == [], f"{name}: numeric fields without a range (add to TRL_BOUNDS or UNBOUNDED): {missing}"


# Other fields an in-range value needs to build (cross-field rules of the configs; ignored where a config lacks them).
COMPANIONS = {
    "per_device_train_batch_size": {"steps_per_generation": 8},  # the generation batch must hold whole groups of 8
    "dataloader_prefetch_factor": {"dataloader_num_workers": 1},
    "generation_batch_size": {"per_device_train_batch_size": 1, "num_generations": 2},
    "vllm_importance_sampling_clip_max": {"vllm_importance_sampling_clip_min": None},
}
# Other fields an out-of-range value is built with (so that the outcome is about the value itself).
VIOLATION_COMPANIONS = {"dataloader_prefetch_factor": {"dataloader_num_workers": 1}}
# Where the lowest in-range value cannot build for a cross-field reason, the value tested instead.
LOWEST = {"generation_batch_size": 2}  # >= 1, and a multiple of num_generations (>= 2)


def _edges(bounds: dict, kind: str) -> list[float]:
    """In-range values at each end of a range."""
    tiny = 1e-9
    out = list(bounds.get("sentinels", []))
    if "ge" in bounds:
        out.append(bounds["ge"])
    if "gt" in bounds:
        out.append(bounds["gt"] + (1 if kind == "int" else tiny))
    if "le" in bounds:
        out.append(bounds["le"])
    if "lt" in bounds:
        out.append(bounds["lt"] - (1 if kind == "int" else tiny))
    return out


def _violations(bounds: dict, kind: str) -> list[float]:
    """Out-of-range values: just past each end, 0, -1 and far out (as ints for int fields)."""
    big = 10**30 if kind == "int" else 1e30
    out = []
    if "ge" in bounds or "gt" in bounds:
        low = bounds.get("ge", bounds.get("gt"))
        step = 1 if kind == "int" else 0.5
        out += [low - step if "ge" in bounds else low, 0, -1, -big]
    if "le" in bounds or "lt" in bounds:
        high = bounds.get("le", bounds.get("lt"))
        out += [high + 1 if "le" in bounds else high, big]

    def outside(v):
        if v in bounds.get("sentinels", []):
            return False
        return (
            ("ge" in bounds and v < bounds["ge"])
            or ("gt" in bounds and v <= bounds["gt"])
            or ("le" in bounds and v > bounds["le"])
            or ("lt" in bounds and v >= bounds["lt"])
        )

    return [v for v in dict.fromkeys(out) if outside(v)]


def _build(cls: type, name: str, value, tmp_path, companions: dict) -> str:
    """The outcome of building the config: 'accepted', or the type of the exception it raises."""
    fields = _fields(cls)
    extra = {k: v for k, v in companions.get(name, {}).items() if k in fields}
    kwargs = {"output_dir": str(tmp_path), "use_cpu": True, "report_to": "none", **extra}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            cls(**kwargs, **{name: value})
        except Exception as exc:  # noqa: BLE001 - the outcome is what is recorded
            return type(exc).__name__
    return "accepted"


@pytest.fixture()
def quiet_transformers():
    logger = logging.getLogger("transformers")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def test_in_range_values_build_the_trl_configs(tmp_path, quiet_transformers):
    failures = []
    for config_name, cls in _trl_configs().items():
        for name, bounds in TRL_BOUNDS_BY_CONFIG[config_name].items():
            kind = _numeric(cls, name)
            values = _edges(bounds, kind)
            if name in LOWEST:
                values = [LOWEST[name] if v == bounds.get("ge") else v for v in values]
            for value in values:
                check_bounds(value, bounds, "r.yaml", f"args.{name}")  # in range for verirl
                outcome = _build(cls, name, value, tmp_path, COMPANIONS)
                if outcome != "accepted":
                    failures.append(f"{config_name}({name}={value!r}): {outcome}")
    assert failures == []


# What the trl configs themselves do with each out-of-range value: "accepted" unless listed here. Accepted values
# fail later or misbehave (measured with GRPOTrainer on a tiny model, trl 1.16):
#   gradient_accumulation_steps / steps_per_generation / per_device_train_batch_size 0 -> ValueError from the
#   DataLoader at the first step; pad_to_multiple_of 0 -> ZeroDivisionError at the first step; temperature 0,
#   top_k -1, repetition_penalty 0, adam_beta1 1.5, adam_epsilon -1, learning_rate -1 -> ValueError at the first
#   step; seed -1 -> ValueError from numpy when the trainer is built; max_completion_length 0 -> ValueError when
#   the trainer is built; num_iterations 0 and num_train_epochs 0 (with max_steps -1) train 0 steps and "succeed";
#   learning_rate 0, top_p 0, sapo_temperature_pos 0, epsilon -1 and logging_steps -1 run and learn nothing or
#   compute nonsense without a word; DPO beta 0 makes the sigmoid loss constant and IPO's 1 / (2 * beta) raise.
TRL_REJECTS = {
    ("GRPOConfig", "num_generations", 0): "ZeroDivisionError",  # generation_batch_size % num_generations
    ("GRPOConfig", "num_generations", 1): "ValueError",
    ("GRPOConfig", "num_generations", -1): "ValueError",
    ("GRPOConfig", "num_generations", -(10**30)): "ValueError",
    ("GRPOConfig", "per_device_train_batch_size", -1): "ValueError",  # divisibility, not a range check
    ("GRPOConfig", "generation_batch_size", -1): "ValueError",
    ("GRPOConfig", "logging_steps", 0): "ValueError",
    ("DPOConfig", "logging_steps", 0): "ValueError",
    **{(c, "warmup_steps", v): "ValueError" for c in ("GRPOConfig", "DPOConfig") for v in (-0.5, -1, -1e30)},
    **{
        (c, "torch_empty_cache_steps", v): "ValueError"
        for c in ("GRPOConfig", "DPOConfig")
        for v in (0, -1, -(10**30))
    },
}


def test_out_of_range_values_are_refused_by_check_bounds_and_what_trl_does_with_them(tmp_path, quiet_transformers):
    differences = []
    accepted = 0
    for config_name, cls in _trl_configs().items():
        for name, bounds in TRL_BOUNDS_BY_CONFIG[config_name].items():
            violations = _violations(bounds, _numeric(cls, name))
            assert violations, (config_name, name)
            for value in violations:
                with pytest.raises(RecipeError, match=rf"^r.yaml: args.{name}: expected "):
                    check_bounds(value, bounds, "r.yaml", f"args.{name}")
                outcome = _build(cls, name, value, tmp_path, VIOLATION_COMPANIONS)
                expected = TRL_REJECTS.get((config_name, name, value), "accepted")
                accepted += outcome == "accepted"
                if outcome != expected:
                    differences.append(f"{config_name}({name}={value!r}): {outcome}, documented {expected}")
    assert differences == []
    assert accepted > 200  # most out-of-range values pass trl's configs: only these bounds catch them
