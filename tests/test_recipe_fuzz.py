"""Property test: no recipe crashes validation, and none with an out-of-range value is accepted.

Starting from the valid recipes in ``recipes/`` (and a DPO one), hypothesis mutates them (a leaf replaced by a value
of another type, an out-of-range number -- 0, -1, -1e30, 1e308, nan, inf --, an unknown key, a field the recipe does
not set, a value wrapped in a list or mapping, a deleted key, unicode and huge strings, odd reward names and output
folders, a duplicated YAML line), writes the YAML, and runs ``verirl train RECIPE --dry-run`` in this process. It
must exit 0, or exit 2 with exactly one line ``verirl: error: FILE: KEY: ...`` on stderr: never a traceback. And a
mutation that put a value outside a known range must exit 2. The ranges come from the recipe's spec dataclasses
(their ``setting()`` metadata, found by walking ``dataclasses.fields``) and, for ``args``, from
:mod:`verirl.rl.trl_bounds`: update ``SPEC_CLASSES`` below when a section's dataclass moves.

``VERIRL_FUZZ_EXAMPLES=1500 pytest tests/test_recipe_fuzz.py`` hunts longer (the default is sized for CI).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import io
import math
import os
import tempfile
import typing
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from verirl.errors import RecipeError  # noqa: E402
from verirl.recipe_yaml import read_recipe_file  # noqa: E402
from verirl.rl.trl_bounds import bounds_for  # noqa: E402
from verirl.typecheck import check_bounds, coerce  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RECIPES = [
    "quickstart.yaml",
    "restrain-arithmetic.yaml",
    "flash-evaluator.yaml",
    "search-agent.yaml",
    "search-agent-sft.yaml",
    "online-dpo.yaml",
]
# (glyph-flowgrpo needs a pipeline)
# No shipped recipe trains DPO: this one (its data file is written beside it) covers trainer dpo and DPOConfig's args.
DPO_RECIPE = {
    "trainer": "dpo",
    "model": "smollm2-135m-instruct",
    "data": {"path": "json", "data_files": "prefs.jsonl", "n_eval": 1},
    "args": {"beta": 0.1, "max_steps": 1, "learning_rate": 1.0e-6, "max_length": 64, "report_to": "none"},
    "eval": {"enabled": False},
}
PREFS = '{"prompt": "2+2?", "chosen": "4", "rejected": "5"}\n'
BASES = [*RECIPES, "dpo"]

# recipe section (dotted; "*" = any list index) -> "module:Class", the dataclass whose fields it holds. Nested
# dataclass fields of these classes are followed on their own (a section "evaluator.model" is found from
# "evaluator" when EvaluatorSpec.model is annotated with a dataclass).
SPEC_CLASSES = {
    "data": "verirl.data:DataSpec",
    "model": "verirl.models:ModelSpec",
    "rewards.*": "verirl.rewards.spec:RewardSpec",
    "generator": "verirl.generators.spec:GeneratorSpec",
    "advantage": "verirl.rl.advantages:AdvantageSpec",
    "online_dpo": "verirl.rl.online_dpo:OnlineDPOSpec",
    "eval": "verirl.evaluation:EvalSpec",
    "hub": "verirl.hub:HubSpec",
    "evaluator": "verirl.rl.evaluator:EvaluatorSpec",  # .model, .train: its nested dataclass fields
    "environment": "verirl.search.spec:EnvironmentSpec",
    "vrec": "verirl.rl.vrec:VRecSpec",
    "constrain": "verirl.rl.constrained_rollouts:ConstrainSpec",
}
# trainer -> "module:Class" of its ``args`` (ranges: trl_bounds.bounds_for(cls) on top of the field metadata)
ARGS_CLASSES = {"grpo": "trl:GRPOConfig", "dpo": "trl:DPOConfig", "online_dpo": "trl:DPOConfig"}
TOP_LEVEL = {"trainer", "model", "data", "rewards", "generator", "advantage", "evaluator", "args", "eval", "hub"}
TOP_LEVEL |= {"environment", "vrec", "online_dpo", "constrain", "callbacks"}
TOP_LEVEL |= {"output_dir"}
_BOUND_KEYS = ("ge", "gt", "le", "lt", "sentinels", "choices")

N_EXAMPLES = int(os.environ.get("VERIRL_FUZZ_EXAMPLES", "38"))  # per base recipe (152 in all); more to hunt

# --------------------------------------------------------------------------------------------------- the oracle


def _load(ref: str) -> type:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _hints(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # noqa: BLE001 - unresolvable annotations: no type oracle for this class
        return {}


def _nested(annotation: Any) -> type | None:
    options = [a for a in (typing.get_args(annotation) or (annotation,)) if a is not type(None)]
    if len(options) == 1 and isinstance(options[0], type) and dataclasses.is_dataclass(options[0]):
        return options[0]
    return None


def _pattern(path: tuple) -> str:
    return ".".join("*" if isinstance(p, int) else str(p) for p in path)


def section_class(path: tuple, recipe: dict) -> type | None:
    """The dataclass whose fields the mapping at ``path`` holds (or None when it is free-form)."""
    if path == ("args",):
        trainer = recipe.get("trainer")
        return _load(ARGS_CLASSES[trainer]) if trainer in ARGS_CLASSES else None
    for cut in range(len(path), 0, -1):
        ref = SPEC_CLASSES.get(_pattern(path[:cut]))
        if ref is None:
            continue
        cls = _load(ref)
        for key in path[cut:]:  # follow nested dataclass fields
            cls = _nested(_hints(cls).get(key)) if cls is not None else None
        return cls
    return None


def field_rules(path: tuple, recipe: dict) -> tuple[Any, dict] | None:
    """(annotation, range metadata) of the field at ``path``, when a spec class or trl config declares it."""
    if not path or not isinstance(path[-1], str):
        return None
    cls = section_class(path[:-1], recipe)
    if cls is None:
        return None
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    if path[-1] not in fields:
        return None
    metadata = {k: v for k, v in fields[path[-1]].metadata.items() if k in _BOUND_KEYS}
    if path[:-1] == ("args",):
        metadata = {k: v for k, v in metadata.items() if k != "choices"}  # trl's own; checked by trl
        metadata.update(bounds_for(cls).get(path[-1], {}))
    return _hints(cls).get(path[-1], Any), metadata


def _numbers(annotation: Any) -> tuple[bool, bool]:
    """(whether the annotation admits a number, whether it admits a string)."""
    options = set()
    stack = [annotation]
    while stack:
        a = stack.pop()
        args = typing.get_args(a)
        if args and typing.get_origin(a) is not typing.Literal:
            stack.extend(args)
        else:
            options.add(a)
    return bool({int, float} & options), str in options


def _non_finite(value: Any, strings: bool) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return abs(value) > 1.8e308
    if isinstance(value, str) and not strings:
        try:
            return not math.isfinite(float(value))
        except (ValueError, OverflowError):
            return False
    if isinstance(value, list):
        return any(_non_finite(v, strings) for v in value)
    return False


def _outside(value: Any, bounds: dict) -> bool:
    """Independent of check_bounds: a number outside ge/gt/le/lt, not a listed sentinel."""
    if isinstance(value, list):
        return any(_outside(v, bounds) for v in value)
    if not isinstance(value, int | float) or isinstance(value, bool) or value in bounds.get("sentinels", ()):
        return False
    return (
        ("ge" in bounds and not value >= bounds["ge"])
        or ("gt" in bounds and not value > bounds["gt"])
        or ("le" in bounds and not value <= bounds["le"])
        or ("lt" in bounds and not value < bounds["lt"])
    )


def why_invalid(path: tuple, value: Any, recipe: dict) -> str | None:
    """Why ``value`` at ``path`` must be refused (wrong type, not finite, out of range), or None when nothing is
    known. Finiteness and ranges are judged here, independently of verirl's checks; types by verirl's coerce."""
    rules = field_rules(path, recipe)
    if rules is None:
        return None
    annotation, metadata = rules
    numeric, strings = _numbers(annotation)
    if numeric and _non_finite(value, strings):
        return f"{_pattern(path)}: {value!r:.60} is not a finite number"
    try:
        coerced = coerce(value, annotation, None, _pattern(path))
    except RecipeError as exc:
        return str(exc)
    if _outside(coerced, metadata):
        return f"{_pattern(path)}: {coerced!r:.60} is outside {metadata}"
    try:
        check_bounds(coerced, metadata, None, _pattern(path))  # choices
    except RecipeError as exc:
        return str(exc)
    return None


_MISSING = object()


def get(data: Any, path: tuple) -> Any:
    for key in path:
        if isinstance(data, dict) and key in data:
            data = data[key]
        elif isinstance(data, list) and isinstance(key, int) and key < len(data):
            data = data[key]
        else:
            return _MISSING
    return data


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b


# ---------------------------------------------------------------------------------------------- the mutations

OUT_OF_RANGE = [0, -1, -1e30, 1e308, 0.0, 0.5, 1.5, 2**31, 10**30, -(10**30), 10**400]
NON_FINITE = [math.nan, math.inf, -math.inf, "nan", "-inf", "1e999"]
NUMBER_STRINGS = ["nan", ".nan", "inf", "-inf", "1e999", "-1e-5", "0", " 7 ", "1_000", "0x10", "١٢", "1e-5"]
REWARD_NAMES = ["a:b:c", ":", "os:path", "ünï", "../x", "os.path:", ":join", "a..b:c", "1:2", " ", "", "x:", "\x00"]
REWARD_NAMES += [".x:f", "..:f", "os:path.join", "math:nan", "builtins:type", "os:sep", "-:f", "x" * 300]

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)  # any unicode but lone surrogates
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    _text,
    st.sampled_from(NUMBER_STRINGS),
    st.sampled_from(["x" * 100_000, "ü" * 5000, "line\nbreak", "\t", "{a}", "%s", "${HOME}"]),
)
_values = st.one_of(
    _scalars,
    st.sampled_from(OUT_OF_RANGE + NON_FINITE),
    st.lists(_scalars, max_size=3),
    st.dictionaries(_text, _scalars, max_size=3),
)
_odd_keys = st.one_of(
    _text.map(lambda t: "zz" + t),  # never a real field name
    st.integers(min_value=-5, max_value=5),
    st.none(),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False, width=16),
)


def paths(data: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path in the recipe (to mappings, lists and leaves), outermost first."""
    out = []
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        out.append((*prefix, key))
        out.extend(paths(value, (*prefix, key)))
    return out


def put(data: Any, path: tuple, value: Any) -> None:
    node = get(data, path[:-1])
    node[path[-1]] = value


@dataclasses.dataclass
class Mutation:
    kind: str
    path: tuple
    value: Any = None


def mutate(draw, recipe: dict, out_dir: str) -> list[Mutation]:
    """Apply 1-3 random mutations to ``recipe`` in place; what was done, for the oracle."""
    done = []
    for _ in range(draw(st.integers(1, 3))):
        candidates = [p for p in paths(recipe) if p != ("output_dir",)]
        kinds = [
            "range",
            "range",
            "range",
            "type",
            "type",
            "unknown_key",
            "wrap",
            "delete",
            "reward_name",
            "output_dir",
        ]
        kind = draw(st.sampled_from(kinds))
        if kind == "range":
            numeric = [p for p in candidates if isinstance(get(recipe, p), int | float)]
            if not numeric:
                continue
            path = draw(st.sampled_from(numeric))
            value = draw(st.sampled_from(OUT_OF_RANGE) if draw(st.booleans()) else st.sampled_from(NON_FINITE))
        elif kind == "type":
            path = draw(st.sampled_from(candidates))
            value = draw(_values)
        elif kind == "unknown_key":
            mappings = [()] + [p for p in candidates if isinstance(get(recipe, p), dict)]
            parent = draw(st.sampled_from(mappings))
            key = draw(_odd_keys)
            if key in get(recipe, parent):
                continue
            path, value = (*parent, key), draw(_values)
        elif kind == "wrap":
            path = draw(st.sampled_from(candidates))
            old = get(recipe, path)
            value = [old] if draw(st.booleans()) else {"value": old}
        elif kind == "delete":
            deletable = [p for p in candidates if isinstance(get(recipe, p[:-1]), dict)]
            path = draw(st.sampled_from(deletable))
            del get(recipe, path[:-1])[path[-1]]
            done.append(Mutation("delete", path))
            continue
        elif kind == "output_dir":
            odd = draw(st.one_of(_text, st.sampled_from(["o\x00ut", "", ".", "~", "a/../..", "x" * 300])))
            path, value = ("output_dir",), draw(st.one_of(st.just(str(Path(out_dir) / odd)), _values))
            recipe["output_dir"] = value
            done.append(Mutation(kind, path, value))
            return done
        else:  # reward_name
            rewards = recipe.get("rewards")
            if not isinstance(rewards, list) or not rewards or not isinstance(rewards[0], dict):
                continue
            path, value = ("rewards", 0, "name"), draw(st.sampled_from(REWARD_NAMES))
        put(recipe, path, value)
        done.append(Mutation(kind, path, value))
    return done


def expected_refusals(mutations: list[Mutation], recipe: dict, text: str, file: Path) -> list[str]:
    """Reasons the final recipe must be refused (exit 2), for the mutations whose effect is still in it."""
    reasons = []
    for m in mutations:
        if m.kind == "delete":
            continue
        current = get(recipe, m.path)
        if current is _MISSING or not (current is m.value or _same(current, m.value)):
            continue  # undone or replaced by a later mutation
        if m.kind == "reward_name":
            reasons.append(f"rewards.0.name: {m.value!r} is not a reward")
        elif m.kind == "unknown_key":
            parent = m.path[:-1]
            if not isinstance(m.path[-1], str):
                reasons.append(f"{_pattern(m.path)}: a non-string key")
            elif parent == () or parent == ("data",) or section_class(parent, recipe) is not None:
                reasons.append(f"{_pattern(m.path)}: an unknown key")
        why = why_invalid(m.path, m.value, recipe)
        if why is not None:
            reasons.append(why)
    try:
        read_recipe_file(file)
    except RecipeError as exc:
        reasons.append(str(exc))
    out = recipe.get("output_dir")
    if isinstance(out, str) and out and "\x00" not in out:  # where the run would write, once the OS resolves it
        resolved = Path(os.path.normpath(file.parent / Path(out).expanduser()))
        with contextlib.suppress(OSError):
            if resolved.is_dir() and any(resolved.iterdir()):
                reasons.append(f"output_dir: {out} is the non-empty directory {resolved}")
    return reasons


# ------------------------------------------------------------------------------------------------ the property


def run_cli(path: Path) -> tuple[int, str, str]:
    """``verirl train PATH --dry-run`` in this process, from the recipe's folder (relative paths land there)."""
    from verirl.cli import main

    out, err = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # library warnings are not the error line
            rc = main(["train", str(path), "--dry-run"])
    finally:
        os.chdir(cwd)
    return rc, out.getvalue(), err.getvalue()


def check_recipe(recipe: dict, mutations: list[Mutation], path: Path, text: str) -> None:
    """The property, for one written recipe: raises AssertionError (or the crash itself) when it does not hold.

    Each kind of failure is asserted on its own line, so that hypothesis reports each with its own minimal example.
    """
    rc, out, err = run_cli(path)  # an exception escaping main() is a crash: hypothesis reports it as it is
    assert "Traceback" not in out + err, f"a traceback was printed:\n{err[-3000:]}"
    assert rc in (0, 2), f"exit {rc}:\n{err[-3000:]}"
    if rc == 2:
        lines = err.splitlines()
        assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{err[-3000:]}"
        line = lines[0]
        prefix = f"verirl: error: {path}: "
        assert line.startswith(prefix), f"the error does not start with the recipe file: {line}"
        rest = line[len(prefix) :]
        assert not rest.startswith("could not validate"), f"a library exception, caught by a catch-all: {line}"
        key, sep, _ = rest.partition(": ")
        assert sep and key, f"no key in: {line}"
        if not key.startswith("invalid YAML"):  # a syntax error has a line and column instead of a key
            known = TOP_LEVEL | {str(k) for k in recipe} | {"null", "true", "false"}
            named = key.startswith(("'", '"')) or any(key == k or key.startswith(f"{k}.") for k in known)
            assert named, f"the error names no key of the recipe: {line}"
    else:
        reasons = expected_refusals(mutations, recipe, text, path)
        assert not reasons, f"exit 0 (accepted) although {reasons[0]}"


_BASE = {name: yaml.safe_load((ROOT / "recipes" / name).read_text()) for name in RECIPES} | {"dpo": DPO_RECIPE}


def _workdir(base: Path) -> Path:
    """A fresh folder for one recipe, with the files the bases refer to."""
    workdir = Path(tempfile.mkdtemp(dir=base))
    (workdir / "prefs.jsonl").write_text(PREFS)
    return workdir


@pytest.mark.parametrize("name", BASES)
@settings(
    max_examples=N_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
@given(data=st.data())
def test_mutated_recipes_exit_0_or_2_with_one_line(name, data, tmp_path_factory):
    recipe = copy.deepcopy(_BASE[name])
    workdir = _workdir(tmp_path_factory.getbasetemp())
    recipe["output_dir"] = str(workdir / "out")
    mutations = mutate(data.draw, recipe, str(workdir / "out"))
    text = yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True, width=10**6)
    if data.draw(st.integers(0, 5), label="duplicate a line if 0") == 0:
        lines = text.splitlines(keepends=True)
        i = data.draw(st.integers(0, len(lines) - 1), label="line")
        text = "".join([*lines[: i + 1], lines[i], *lines[i + 1 :]])
        mutations.append(Mutation("duplicate_line", ("line", i)))
    path = workdir / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    data.draw(st.just(text), label="recipe.yaml")
    check_recipe(recipe, mutations, path, text)


def test_the_unmutated_recipes_are_valid(tmp_path):
    for name in BASES:
        recipe = copy.deepcopy(_BASE[name])
        workdir = _workdir(tmp_path)
        recipe["output_dir"] = str(workdir / "out")
        path = workdir / "recipe.yaml"
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        rc, _, err = run_cli(path)
        assert rc == 0, err


def test_the_oracle_knows_the_ranges():
    recipe = copy.deepcopy(_BASE["quickstart.yaml"])
    assert why_invalid(("args", "learning_rate"), 0, recipe) is not None
    assert why_invalid(("args", "learning_rate"), 1e-5, recipe) is None
    assert why_invalid(("args", "max_steps"), -1, recipe) is None  # a sentinel
    assert why_invalid(("args", "max_steps"), 0, recipe) is not None
    assert why_invalid(("args", "temperature"), math.nan, recipe) is not None
    assert why_invalid(("data", "n_train"), 0, recipe) is not None
    assert why_invalid(("rewards", 0, "weight"), math.inf, recipe) is not None
    assert why_invalid(("rewards", 0, "weight"), -2.5, recipe) is None  # a negative weight is allowed
    assert why_invalid(("eval", "batch_size"), 0, recipe) is not None
    assert why_invalid(("data", "max_operand"), -5, recipe) is None  # a task option: no declared range
    dpo = copy.deepcopy(_BASE["dpo"])
    assert why_invalid(("args", "beta"), 0, dpo) is not None  # DPOConfig's range, not GRPOConfig's (0 = no KL)
    assert why_invalid(("args", "beta"), 0, recipe) is None
    evaluator = copy.deepcopy(_BASE["flash-evaluator.yaml"])
    assert why_invalid(("evaluator", "k"), 0, evaluator) is not None
    assert why_invalid(("evaluator", "train", "lr"), 0, evaluator) is not None  # a nested dataclass field
    assert why_invalid(("rewards", 0, "weight"), "nan", recipe) is not None
    assert why_invalid(("rewards", 0, "weight"), 10**400, recipe) is not None
    for section in SPEC_CLASSES:
        assert section_class(tuple(0 if p == "*" else p for p in section.split(".")), evaluator) is not None, section


# Minimal examples hypothesis found (VERIRL_FUZZ_EXAMPLES=1500), kept as regression cases (all four were bugs:
# an ENAMETOOLONG traceback, an unnormalised output_dir that let a non-empty directory pass, an output_dir error
# that named no recipe file, DPO's beta 0 accepted). (base recipe, key, value from the work folder)
FOUND = [
    pytest.param(
        "quickstart.yaml",
        ("output_dir",),
        lambda work: "x" * 300,
        id="output_dir-name-too-long",
    ),
    pytest.param(
        "quickstart.yaml",
        ("output_dir",),
        lambda work: str(work / "missing" / ".."),
        id="output_dir-through-a-missing-folder",
    ),
    pytest.param(
        "quickstart.yaml",
        ("output_dir",),
        lambda work: str(work),
        id="output_dir-non-empty",
    ),
    pytest.param(
        "dpo",
        ("args", "beta"),
        lambda work: 0,
        id="dpo-beta-0",
    ),
]


@pytest.mark.parametrize("base,key,value", FOUND)
def test_found_by_fuzzing(base, key, value, tmp_path):
    recipe = copy.deepcopy(_BASE[base])
    work = _workdir(tmp_path)
    recipe["output_dir"] = str(work / "out")
    put(recipe, key, value(work))
    path = work / "recipe.yaml"
    text = yaml.safe_dump(recipe, sort_keys=False)
    path.write_text(text)
    check_recipe(recipe, [Mutation("found", key, get(recipe, key))], path, text)
