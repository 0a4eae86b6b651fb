"""Read a recipe file: YAML through PyYAML's safe loader, with what plain ``yaml.safe_load`` lets through as errors.

``yaml.safe_load`` silently keeps the last of two equal keys (``learning_rate`` written twice: the second wins),
accepts any hashable key (``1:``, ``null:``, ``on:`` -> True), builds self-containing values from recursive aliases,
and lets a few constructor errors escape as bare Python exceptions (``2024-13-01`` -> ValueError from ``datetime``;
a 5,000-digit integer -> ValueError; nesting thousands deep -> RecursionError). :func:`read_recipe_file` reads the
node graph PyYAML composes, checks every mapping at every depth, then constructs the data with the same safe
constructors, so every problem is one :class:`~verirl.errors.RecipeError` line:

    recipe.yaml: args.learning_rate: duplicate key (lines 7 and 12)
    recipe.yaml: args.1: keys must be strings, got int 1 (line 9)
    recipe.yaml: invalid YAML: line 3, column 8: expected ',' or ']', but got '<stream end>'

Aliases and merge keys (``<<: *base``) work as in PyYAML; keys that a merge brings in may be overridden by the
mapping's own keys (that is what a merge is for), but a key written twice in one mapping is an error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from verirl.errors import RecipeError
from verirl.typecheck import key_text

__all__ = ["MAX_DEPTH", "MAX_EXPANDED_VALUES", "RecipeLoader", "read_recipe_file"]

STR_TAG = "tag:yaml.org,2002:str"
MERGE_TAG = "tag:yaml.org,2002:merge"
# Aliases share one node, so a "billion laughs" document is small; what it expands to is not (dumps, deep copies,
# messages). A recipe has a few hundred values at most.
MAX_EXPANDED_VALUES = 100_000
# Deeper than any recipe; checked explicitly so the error does not depend on the interpreter's recursion limit
# (PyYAML recurses once per level; a process that raised the limit would otherwise accept, or overflow the C stack).
MAX_DEPTH = 100


class RecipeLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader whose constructor errors of every kind carry the position of the node."""

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except (ValueError, TypeError, ArithmeticError) as exc:  # int('9' * 5000), date(2024, 13, 1), ...
            text = str(exc).strip()
            problem = text.splitlines()[0] if text else type(exc).__name__
            raise ConstructorError(None, None, problem, node.start_mark) from None


# `key: =` is YAML 1.1's "value" type, which SafeLoader resolves but cannot construct: read it as the string "=".
RecipeLoader.add_constructor("tag:yaml.org,2002:value", yaml.SafeLoader.construct_yaml_str)


def _invalid(file: str, exc: BaseException) -> RecipeError:
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(exc, "problem", None) or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return RecipeError(file, None, f"invalid YAML: {where}{problem}")


def _source(node: Node) -> str:
    """The text of a node in the file, on one line (for naming a non-string key)."""
    start, end = node.start_mark, node.end_mark
    buffer = getattr(start, "buffer", None)
    if buffer is not None and end is not None and start.pointer < end.pointer:
        text = " ".join(buffer[start.pointer : end.pointer].split())
        if text:
            return text if len(text) <= 40 else text[:37] + "..."
    return "?"


_KIND = {"tag:yaml.org,2002:int": "int", "tag:yaml.org,2002:float": "float", "tag:yaml.org,2002:bool": "bool"}
_KIND |= {"tag:yaml.org,2002:null": "null", "tag:yaml.org,2002:timestamp": "date"}


def _key_kind(node: Node, shown: str) -> str:
    """What a non-string key is: "a list", "null", "int 1", "bool on", "date 2024-01-01"."""
    if isinstance(node, SequenceNode):
        return "a list"
    if isinstance(node, MappingNode):
        return "a mapping"
    kind = _KIND.get(node.tag, node.tag.rsplit(":", 1)[-1])
    return kind if kind == "null" else f"{kind} {shown}"


class _Checker:
    """Walks the composed node graph once: duplicate and non-string keys, recursive aliases, expansion size."""

    def __init__(self, file: str):
        self.file = file
        self.sizes: dict[int, int] = {}  # id(node) -> number of values it expands to
        self.open: set[int] = set()  # nodes on the current path (an alias back into one is recursive)

    def walk(self, node: Node, path: str) -> int:
        ident = id(node)
        if len(self.open) >= MAX_DEPTH:
            raise RecipeError(self.file, None, "invalid YAML: nested too deeply")
        if ident in self.open:
            raise RecipeError(self.file, path or None, "a recursive YAML alias (a value that contains itself)")
        if ident in self.sizes:  # an alias: checked where its anchor was
            return self.sizes[ident]
        self.open.add(ident)
        size = 1
        if isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                size += self.walk(item, f"{path}.{i}" if path else str(i))
        elif isinstance(node, MappingNode):
            size += self._mapping(node, path)
        self.open.discard(ident)
        self.sizes[ident] = size
        if size > MAX_EXPANDED_VALUES:
            raise RecipeError(
                self.file, path or None, f"YAML aliases expand to more than {MAX_EXPANDED_VALUES:,} values"
            )
        return size

    def _mapping(self, node: MappingNode, path: str) -> int:
        seen: dict[str, Any] = {}  # key -> its first position (a yaml Mark)
        size = 0
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if key_node.tag == MERGE_TAG:  # `<<: *base`: merged keys may be overridden; check the merged nodes
                size += self.walk(value_node, path)
                continue
            if not (isinstance(key_node, ScalarNode) and key_node.tag == STR_TAG):
                shown = _source(key_node)
                where = f"{path}.{shown}" if path else shown
                raise RecipeError(
                    self.file, where, f"keys must be strings, got {_key_kind(key_node, shown)} (line {line})"
                )
            key = key_node.value
            child = f"{path}.{key_text(key)}" if path else key_text(key)
            if key in seen:
                first = seen[key]
                if first.line == key_node.start_mark.line:  # a flow mapping: {name: a, name: b}
                    where = f"line {line}, columns {first.column + 1} and {key_node.start_mark.column + 1}"
                else:
                    where = f"lines {first.line + 1} and {line}"
                raise RecipeError(self.file, child, f"duplicate key ({where})")
            seen[key] = key_node.start_mark
            size += self.walk(value_node, child)
        return size


def read_recipe_file(path: str | os.PathLike) -> dict[str, Any]:
    """The top-level mapping of a recipe file, or a one-line RecipeError naming the file (and key, line)."""
    file = str(path)
    if not Path(file).is_file():
        raise RecipeError(file, None, "recipe file not found")
    try:
        text = Path(file).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RecipeError(file, None, "not a UTF-8 text file") from None
    except OSError as exc:
        raise RecipeError(file, None, f"cannot read the recipe: {exc.strerror or type(exc).__name__}") from None
    loader = None
    try:
        try:
            loader = RecipeLoader(text)  # a string is checked for non-printable characters right here
            node = loader.get_single_node()
            if isinstance(node, MappingNode):
                _Checker(file).walk(node, "")
            data = loader.construct_document(node) if node is not None else None
        except yaml.YAMLError as exc:
            raise _invalid(file, exc) from None
        except RecursionError:
            raise RecipeError(file, None, "invalid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    if data is None:
        raise RecipeError(file, None, "the recipe is empty")
    if not isinstance(data, dict):
        raise RecipeError(file, None, f"expected a mapping of sections at the top level, got {type(data).__name__}")
    return data
