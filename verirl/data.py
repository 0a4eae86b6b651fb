"""Datasets: ``datasets`` loading (``path``/``name``/``data_files``/``split`` exactly as ``load_dataset`` takes them)
and built-in, seeded synthetic tasks with an ``answer`` column for verifiable rewards.

Every dataset leaves here with a ``prompt`` column (a list of chat messages when ``chat`` is on, else a string)
and, for reward-checked tasks, an ``answer`` column; other columns are kept and reach rewards as keyword arguments.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from verirl.errors import VerirlError

if TYPE_CHECKING:
    from datasets import Dataset

    from verirl.recipes import DataSpec

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


def glyph(
    n_train: int = 2000,
    n_eval: int = 100,
    seed: int = 0,
    alphabet: str = "0123456789",
    min_len: int = 2,
    max_len: int = 3,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Short strings to draw (the glyph text-to-image demo): ``question``/``text``/``answer`` = the string."""
    from verirl.glyph.data import glyph as make

    return make(n_train, n_eval, seed, alphabet, min_len, max_len)


BUILTIN_TASKS: dict[str, Callable[..., tuple[list[dict[str, Any]], list[dict[str, Any]]]]] = {
    "arithmetic": arithmetic,
    "glyph": glyph,
}


def task_kwargs(spec: DataSpec) -> dict[str, Any]:
    """The keyword arguments of the built-in task a ``data`` section asks for."""
    kwargs = dict(spec.options, seed=spec.seed)
    if spec.n_train is not None:
        kwargs["n_train"] = spec.n_train
    if spec.n_eval is not None:
        kwargs["n_eval"] = spec.n_eval
    return kwargs


def check_task_options(spec: DataSpec) -> None:
    """Impossible options of a built-in task, at validation time: the task itself checks them (ValueError);
    generating a synthetic task takes milliseconds."""
    BUILTIN_TASKS[spec.builtin](**task_kwargs(spec))


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
        train_rows, eval_rows = BUILTIN_TASKS[spec.builtin](**task_kwargs(spec))
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
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise VerirlError(f"data: could not load {spec.path!r} split {split!r}: {first}") from None

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
