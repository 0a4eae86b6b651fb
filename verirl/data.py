"""Datasets: ``datasets`` loading (``path``/``name``/``data_files``/``split`` exactly as ``load_dataset`` takes them)
and built-in, seeded synthetic tasks with an ``answer`` column for verifiable rewards.

Every dataset leaves here with a ``prompt`` column (a list of chat messages when ``chat`` is on, else a string)
and, for reward-checked tasks, an ``answer`` column; other columns are kept and reach rewards as keyword arguments.
"""

from __future__ import annotations

import inspect
import itertools
import random
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from verirl.errors import RecipeError, VerirlError, first_line
from verirl.typecheck import build_dataclass, coerce, setting

if TYPE_CHECKING:
    from datasets import Dataset


@dataclass
class DataSpec:
    """A recipe's ``data:`` section: a built-in task, or what ``datasets.load_dataset`` takes."""

    builtin: str | None = setting(None, help="a task (arithmetic, glyph, search-2hop, ...); its options go inline")
    options: dict[str, Any] = field(default_factory=dict, metadata={"help": "the built-in task's options"})
    path: str | None = setting(None, help="datasets.load_dataset(path, ...): a Hub dataset id, a folder, or json/csv")
    name: str | None = setting(None, help="the dataset configuration name")
    data_files: Any = setting(None, help="a path, a list of paths, or a mapping split -> paths")
    split: str = setting("train", help="the training split")
    eval_split: str | None = setting(None, help="a held-out split; otherwise n_eval rows are held out of `split`")
    n_train: int | None = setting(None, help="training rows (default: all, or the task's default)", ge=1)
    n_eval: int | None = setting(None, help="held-out rows (default: the task's default)", ge=1)
    seed: int = setting(0, help="seed of the task, the held-out split and the shuffle")
    chat: bool = setting(True, help="wrap text prompts as a user message (the trainer applies the chat template)")
    system_prompt: str | None = setting(None, help="a system message before each prompt (chat only)")
    prompt_column: str = setting("prompt", help="the column holding the prompt")
    prompt_template: str | None = setting(None, help='e.g. "Solve: {question}", formatted with each row\'s columns')
    answer_column: str = setting("answer", help="renamed to `answer`, the column rewards receive")


_OPS: dict[str, Callable[[int, int], int]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
}

ARITHMETIC_TEMPLATE = "What is {a}{op}{b}? Answer with just the number."


def arithmetic(
    n_train: int = 512,
    n_eval: int = 100,
    seed: int = 0,
    min_operand: int = 0,
    max_operand: int = 99,
    ops: list[str] | None = None,
    template: str = ARITHMETIC_TEMPLATE,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Integer arithmetic ``a op b`` with operands in [min_operand, max_operand].

    Train and eval problems are distinct (no eval problem appears in train); the same seed gives the same split.
    Rows: ``question`` (text), ``answer`` (the result as a string), ``a``, ``b``, ``op``.
    """
    ops = list(ops or ["+"])
    if min_operand > max_operand:
        raise ValueError(f"min_operand ({min_operand}) must be <= max_operand ({max_operand})")
    bad = [op for op in ops if op not in _OPS]
    if bad:
        raise ValueError(f"ops: unsupported {bad}; expected some of {list(_OPS)}")
    try:
        template.format(a=1, b=2, op="+")
    except (KeyError, IndexError) as exc:
        raise ValueError(f"template: unknown field {exc}; available: {{a}}, {{b}}, {{op}}") from None
    space = (max_operand - min_operand + 1) ** 2 * len(ops)
    total = n_train + n_eval
    if total > space:
        raise ValueError(
            f"only {space} distinct problems for operands {min_operand}..{max_operand}; n_train + n_eval = {total}"
        )
    rng = random.Random(seed)
    seen: set[tuple[int, str, int]] = set()
    rows = []
    while len(rows) < total:
        a, b = rng.randint(min_operand, max_operand), rng.randint(min_operand, max_operand)
        op = rng.choice(ops)
        if (a, op, b) in seen:
            continue
        seen.add((a, op, b))
        rows.append(
            {"question": template.format(a=a, b=b, op=op), "answer": str(_OPS[op](a, b)), "a": a, "b": b, "op": op}
        )
    return rows[:n_train], rows[n_train:]


GLYPH_ALPHABET = "0123456789"
MAX_GLYPH_LEN = 32


def glyph(
    n_train: int = 2000,
    n_eval: int = 100,
    seed: int = 0,
    alphabet: str = GLYPH_ALPHABET,
    min_len: int = 2,
    max_len: int = 3,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Distinct strings of ``min_len``..``max_len`` characters of ``alphabet``; eval strings never appear in train.

    Rows: ``question`` (the prompt: the string itself), ``text`` (the string to draw; the OCR rewards' target) and
    ``answer`` (the same, for rewards that read ``answer``).
    """
    if not alphabet or len(set(alphabet)) != len(alphabet):
        raise ValueError(f"alphabet: expected distinct characters, got {alphabet!r}")
    if any(ch.isspace() or ch.isupper() for ch in alphabet):
        raise ValueError("alphabet: no spaces or upper-case letters (the CLIP tokenizer lower-cases prompts)")
    if not 1 <= min_len <= max_len <= MAX_GLYPH_LEN:
        raise ValueError(
            f"min_len/max_len: expected 1 <= min_len <= max_len <= {MAX_GLYPH_LEN}, got {min_len}, {max_len}"
        )
    space = sum(len(alphabet) ** k for k in range(min_len, max_len + 1))
    if n_train + n_eval > space:
        raise ValueError(f"only {space} distinct strings; n_train + n_eval = {n_train + n_eval}")
    rng = random.Random(seed)
    if space <= 200_000:
        pool = ["".join(p) for k in range(min_len, max_len + 1) for p in itertools.product(alphabet, repeat=k)]
        strings = rng.sample(pool, n_train + n_eval)
    else:
        seen: set[str] = set()
        while len(seen) < n_train + n_eval:
            seen.add("".join(rng.choice(alphabet) for _ in range(rng.randint(min_len, max_len))))
        strings = sorted(seen)
        rng.shuffle(strings)
    rows = [{"question": s, "text": s, "answer": s} for s in strings]
    return rows[n_eval:], rows[:n_eval]


BUILTIN_TASKS: dict[str, Callable[..., tuple[list[dict[str, Any]], list[dict[str, Any]]]]] = {
    "arithmetic": arithmetic,
    "glyph": glyph,
}


TASK_ENTRY_POINTS = "verirl.tasks"


def task_names() -> list[str]:
    """Built-in tasks, then tasks installed packages declare (entry points ``verirl.tasks``), not imported."""
    from importlib.metadata import entry_points

    return list(BUILTIN_TASKS) + sorted(
        ep.name for ep in entry_points(group=TASK_ENTRY_POINTS) if ep.name not in BUILTIN_TASKS
    )


def get_task(name: str) -> Callable[..., tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """A task function: ``(n_train, n_eval, seed, **options) -> (train_rows, eval_rows)``, each row with a
    ``question``. Built-in, or an entry point ``name`` in the group ``verirl.tasks`` (how the search agent's question
    sets plug in, and how a package adds its own)."""
    if name in BUILTIN_TASKS:
        return BUILTIN_TASKS[name]
    from importlib.metadata import entry_points

    for ep in entry_points(group=TASK_ENTRY_POINTS):
        if ep.name == name:
            try:
                return ep.load()
            except Exception as exc:  # noqa: BLE001 - a broken plug-in is one line, not a traceback
                raise VerirlError(
                    f"data.builtin: task {name!r} ({ep.value}) failed to load: {first_line(exc)}"
                ) from None
    raise VerirlError(f"data.builtin: unknown task {name!r}; expected one of: {', '.join(task_names())}")


def task_kwargs(spec: DataSpec) -> dict[str, Any]:
    """The keyword arguments of the built-in task a ``data`` section asks for."""
    kwargs = dict(spec.options, seed=spec.seed)
    if spec.n_train is not None:
        kwargs["n_train"] = spec.n_train
    if spec.n_eval is not None:
        kwargs["n_eval"] = spec.n_eval
    return kwargs


MAX_TASK_ROWS = 1_000_000


def check_task_options(spec: DataSpec) -> None:
    """Impossible options of a built-in task, at validation time: the task itself checks them (ValueError);
    generating a synthetic task takes milliseconds (at most :data:`MAX_TASK_ROWS` rows)."""
    kwargs = task_kwargs(spec)
    task = get_task(spec.builtin)
    check = getattr(task, "check", None)  # a task that is costly to build (e.g. one that runs tools) checks cheaply
    defaults = inspect.signature(task).parameters
    rows = sum(kwargs.get(k, defaults[k].default) or 0 for k in ("n_train", "n_eval"))
    if rows > MAX_TASK_ROWS:
        raise ValueError(f"n_train + n_eval: a built-in task makes at most {MAX_TASK_ROWS:,} rows, got {rows:,}")
    (check or task)(**kwargs)


def _to_prompt(row: dict[str, Any], spec: DataSpec) -> Any:
    if spec.prompt_template is not None:
        try:
            text = spec.prompt_template.format(**row)
        except KeyError as exc:
            raise VerirlError(f"data.prompt_template: column {exc} not in the dataset ({', '.join(row)})") from None
    else:
        text = row[spec.prompt_column]
    if not spec.chat or not isinstance(text, str):
        return text  # already a list of messages, or chat wrapping is off
    messages = [{"role": "user", "content": text}]
    if spec.system_prompt:
        messages.insert(0, {"role": "system", "content": spec.system_prompt})
    return messages


def load_data(spec: DataSpec, with_prompts: bool = True) -> tuple[Dataset, Dataset | None]:
    """Train and held-out eval datasets for a recipe's ``data`` section."""
    from datasets import Dataset

    if spec.builtin is not None:
        train_rows, eval_rows = get_task(spec.builtin)(**task_kwargs(spec))
        for row in train_rows + eval_rows:
            row["prompt"] = _to_prompt({**row, spec.prompt_column: row["question"]}, spec)
        train, held_out = Dataset.from_list(train_rows), Dataset.from_list(eval_rows) if eval_rows else None
        return train, held_out
    train, held_out = _load_files(spec)
    if with_prompts:
        train = _prepare(train, spec, "train")
        held_out = _prepare(held_out, spec, "eval") if held_out is not None else None
    return train, held_out


def _load_files(spec: DataSpec) -> tuple[Dataset, Dataset | None]:
    from datasets import load_dataset

    def load(split: str) -> Dataset:
        try:
            return load_dataset(spec.path, spec.name, data_files=spec.data_files, split=split)
        except Exception as exc:  # noqa: BLE001 - datasets raises many types; the user needs one line
            raise VerirlError(f"data: could not load {spec.path!r} split {split!r}: {first_line(exc)}") from None

    train = load(spec.split)
    held_out = load(spec.eval_split) if spec.eval_split else None
    if held_out is None and spec.n_eval:
        if spec.n_eval >= len(train):
            raise VerirlError(f"data.n_eval: {spec.n_eval} held-out rows requested from {len(train)} rows")
        parts = train.train_test_split(test_size=spec.n_eval, seed=spec.seed)
        train, held_out = parts["train"], parts["test"]
    if spec.n_train is not None:
        train = train.shuffle(seed=spec.seed).select(range(min(spec.n_train, len(train))))
    return train, held_out


def _prepare(ds: Dataset, spec: DataSpec, which: str) -> Dataset:
    columns = set(ds.column_names)
    if spec.prompt_template is None and spec.prompt_column not in columns:
        has = ", ".join(sorted(columns))
        raise VerirlError(f"data.prompt_column: {which} data has no column {spec.prompt_column!r} (has: {has})")
    if spec.answer_column != "answer" and spec.answer_column in columns:
        if "answer" in columns:
            ds = ds.remove_columns("answer")
        ds = ds.rename_column(spec.answer_column, "answer")
    ds = ds.map(lambda row: {"prompt": _to_prompt(row, spec)})
    if {"chosen", "rejected"} <= columns and len(ds) and isinstance(ds[0]["prompt"], list):
        # A chat prompt needs chat completions: wrap plain-text preference answers as assistant messages.
        ds = ds.map(lambda row: {k: _as_assistant(row[k]) for k in ("chosen", "rejected")})
    return ds


def _as_assistant(value: Any) -> Any:
    return [{"role": "assistant", "content": value}] if isinstance(value, str) else value


# ------------------------------------------------------------------------------------------ the recipe section


def build_data_spec(value: Any, file: str, check_files: bool = True) -> DataSpec:
    """``data:`` of a recipe (a plain string names a built-in task); options of a built-in task may be inline."""
    if value is None:
        raise RecipeError(file, "data", "required key is missing (e.g. {builtin: arithmetic} or {path: json, ...})")
    if isinstance(value, str):
        value = {"builtin": value}
    if not isinstance(value, dict):
        raise RecipeError(file, "data", f"expected a mapping, got {type(value).__name__}")
    value = dict(value)
    task_name = value.get("builtin")
    if task_name is not None and (not isinstance(task_name, str) or task_name not in task_names()):
        raise RecipeError(
            file, "data.builtin", f"unknown task {task_name!r}; expected one of: {', '.join(task_names())}"
        )
    if task_name is not None:  # {builtin: arithmetic, max_operand: 50}
        try:
            params = set(inspect.signature(get_task(task_name)).parameters)
        except VerirlError as exc:
            raise RecipeError(file, "data.builtin", str(exc).removeprefix("data.builtin: ")) from None
        inline = {k: value.pop(k) for k in list(value) if k in params and k not in ("n_train", "n_eval", "seed")}
        options = value.get("options") or {}
        if not isinstance(options, dict):
            raise RecipeError(file, "data.options", f"expected a mapping, got {type(options).__name__}")
        value["options"] = {**options, **inline}
    spec = build_dataclass(DataSpec, value, file, "data.")
    if (spec.builtin is None) == (spec.path is None):
        raise RecipeError(file, "data", "expected exactly one of data.builtin or data.path")
    if spec.builtin is not None:
        _check_task_options(spec, file)
    elif check_files:
        _check_data_files(spec, file)
    return spec


def _check_task_options(spec: DataSpec, file: str) -> None:
    task = get_task(spec.builtin)
    sig = inspect.signature(task)
    hints = typing.get_type_hints(task)
    for key, val in spec.options.items():
        if key not in sig.parameters or key in ("n_train", "n_eval", "seed"):
            options = ", ".join(p for p in sig.parameters if p not in ("n_train", "n_eval", "seed"))
            raise RecipeError(
                file, f"data.{key}", f"unknown option of task {spec.builtin!r}; expected one of: {options}"
            )
        spec.options[key] = coerce(val, hints.get(key, Any), file, f"data.{key}")
    try:
        check_task_options(spec)
    except (ValueError, TypeError, OverflowError, MemoryError, VerirlError) as exc:
        raise RecipeError(file, "data", first_line(exc)) from None


def _check_data_files(spec: DataSpec, file: str) -> None:
    files = spec.data_files
    if files is not None:
        flat: list[str] = []
        if isinstance(files, str):
            flat = [files]
        elif isinstance(files, list):
            flat = [str(f) for f in files]
        elif isinstance(files, dict):
            for v in files.values():
                flat.extend([v] if isinstance(v, str) else [str(x) for x in v] if isinstance(v, list) else [str(v)])
        else:
            raise RecipeError(file, "data.data_files", "expected a path, a list of paths or a mapping split -> paths")
        for f in flat:
            if "*" in f or "://" in f:
                continue
            if not _exists(f):  # relative paths are relative to the current directory
                raise RecipeError(file, "data.data_files", f"file not found: {f} (relative to {Path.cwd()})")
    elif spec.path and spec.path.startswith((".", "/", "~")) and not _exists(spec.path):
        raise RecipeError(file, "data.path", f"not found: {spec.path}")


def _exists(path: str) -> bool:
    try:
        return Path(path).expanduser().exists()
    except (OSError, ValueError, RuntimeError):  # a NUL byte, a name too long, an unknown ~user
        return False
