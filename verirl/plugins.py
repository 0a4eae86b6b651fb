"""Plug-ins named by a dotted path, ``package.module:attribute``: the one importer behind rewards, verifiers,
extractors and trainers given that way in a recipe."""

from __future__ import annotations

import importlib
from typing import Any

from verirl.errors import VerirlError, first_line


def import_dotted(path: str, what: str = "reward", error: type[VerirlError] = VerirlError) -> Any:
    """Import ``package.module:attr`` (``attr`` may be dotted). Whatever the import raises (a missing module, a
    relative or malformed name, an error inside the module) becomes one ``error`` naming ``what`` and ``path``."""
    module_name, _, attr = str(path).partition(":")
    if not module_name.strip() or not attr.strip() or module_name.startswith("."):
        raise error(f"{what} {path!r}: expected 'package.module:function'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise error(f"{what} {path!r}: cannot import module {module_name!r} ({first_line(exc)})") from exc
    except Exception as exc:  # noqa: BLE001 - a module that fails while importing must name itself, in one line
        raise error(
            f"{what} {path!r}: importing module {module_name!r} failed: {type(exc).__name__}: {first_line(exc)}"
        ) from exc
    for part in attr.split("."):
        if not part or not hasattr(obj, part):
            raise error(f"{what} {path!r}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj
