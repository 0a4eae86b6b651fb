"""Option values the plug-in commands share (``verirl rewards check`` / ``verirl verifiers check``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from verirl.errors import VerirlError


def json_args(text: str) -> dict[str, Any]:
    """``--args``: a JSON object, or a one-line :class:`VerirlError`."""
    try:
        bound = json.loads(text)
    except json.JSONDecodeError as exc:
        raise VerirlError(f"--args: expected a JSON object ({exc.msg})") from None
    if not isinstance(bound, dict):
        raise VerirlError("--args: expected a JSON object, e.g. '{\"ignore_case\": true}'")
    return bound


def column_values(items: Sequence[str]) -> dict[str, str]:
    """``--column KEY=VALUE`` options as a dict, or a one-line :class:`VerirlError`."""
    columns = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise VerirlError(f"--column {item}: expected KEY=VALUE")
        columns[key] = value
    return columns


def print_plugins(infos: Sequence[Any]) -> None:
    """``verirl rewards list`` / ``verirl verifiers list``: one aligned line per plug-in."""
    width = max(len(i.name) for i in infos)
    for info in infos:
        summary = f"  {info.summary}" if info.summary else ""
        print(f"{info.name:<{width}}  {info.kind:<10}  {info.origin}{summary}")
