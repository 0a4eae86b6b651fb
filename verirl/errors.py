"""User-facing errors: one line, naming the file and key, what was expected. The CLI prints them and exits 2."""

from __future__ import annotations


class VerirlError(Exception):
    """An error caused by the user's input. Printed as one line, without a traceback (unless --debug)."""

    exit_code = 2


class RecipeError(VerirlError):
    """A malformed recipe: ``file: key: message``."""

    def __init__(self, file: str | None, key: str | None, message: str):
        self.file, self.key, self.message = file, key, message
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(f"{where}: {message}" if where else message)


class RewardError(VerirlError):
    """A reward that cannot be resolved or has the wrong signature."""


class HubError(VerirlError):
    """A push to the Hub that failed; the message says how to retry."""

    exit_code = 1


def first_line(exc: BaseException | str) -> str:
    """The first non-empty line of an exception's message (its type name when it has none), for one-line errors."""
    text = str(exc).strip()
    if text:
        return text.splitlines()[0]
    return type(exc).__name__ if isinstance(exc, BaseException) else ""
