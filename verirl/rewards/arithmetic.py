"""``arithmetic_check``: a calculator that checks the equations a completion states, without any label.

A label-free rule verifier (our design, for verifier mixtures, docs/verifier_mixtures.md): it finds every stated
result ``a + b = c`` (an '=' between a computation and a bare number, also inside chains ``x * y = z = w + 1``),
evaluates both sides as plain arithmetic (numbers, ``+ - * /``, ``× ÷``, parentheses; no powers, no names) and scores
1.0 when every stated result holds, 0.0 when one does not, and ``None`` (not applicable) when the completion states
none. It reads results said in words too ("9 plus 16 equals 25", "9 + 16 is 25", "makes", "gives"). Identities
("9 + 16 = 16 + 9", "25 = 25") state no result and are not checked. It never sees the answer
column: "2 + 2 = 4" passes under any prompt. So it cannot say that an answer is right, only that the arithmetic the
completion wrote down is. Beside a learnt reward model it marks down the "9 + 16 = 154" answers a reward model may
learn to like; but a policy can learn to leave it nothing to check (docs/benchmarks.md, "Reward hacking with a
calculator"), which ``missing`` closes.
"""

from __future__ import annotations

import ast
import re
from decimal import Decimal
from typing import Any

from verirl.answers import completion_text
from verirl.rewards.base import reward

__all__ = ["arithmetic_check", "stated_equations"]

_RUN = re.compile(r"[\d\s.+\-*/()=]+")  # a maximal stretch of arithmetic characters: linear time on any text
_NUMBER = re.compile(r"-?\s*\d+(\.\d+)?")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_SYMBOLS = str.maketrans({"×": "*", "÷": "/", "−": "-"})
_SAID_EQUALS = re.compile(r"\b(?:is\s+equal\s+to|equals?|is|makes|gives)\b", re.IGNORECASE)  # "9 + 16 equals 25"
_SAID_OPERATOR = {"plus": "+", "minus": "-", "times": "*", "multiplied by": "*", "divided by": "/"}
_OPERATOR_WORDS = re.compile(r"\b(" + "|".join(_SAID_OPERATOR) + r")\b", re.IGNORECASE)
_MAX_SIDE = 80  # characters; longer sides are not checked (no pathological expressions)
_OPS = {ast.Add: Decimal.__add__, ast.Sub: Decimal.__sub__, ast.Mult: Decimal.__mul__, ast.Div: Decimal.__truediv__}


def _value(node: ast.AST) -> Decimal:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return Decimal(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _value(node.operand)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_value(node.left), _value(node.right))
    raise ValueError("not plain arithmetic")


def _evaluate(side: str) -> Decimal | None:
    side = side.strip().strip("+*/.").strip()
    if not side or len(side) > _MAX_SIDE or not any(c.isdigit() for c in side):
        return None
    try:
        return _value(ast.parse(side, mode="eval").body)
    except (SyntaxError, ValueError, ArithmeticError, RecursionError):  # Decimal's errors are ArithmeticErrors
        return None


def _glued(text: str, start: int, end: int) -> tuple[bool, bool]:
    """Whether the run's first / last side goes on into the words around it ("x - 9 + 16 = 25", "= 5x")."""
    run = text[start:end]
    before, after = text[:start].rstrip()[-1:], text[end:].lstrip()[:1]
    first, last = run.strip()[:1], run.strip()[-1:]
    left = before.isalnum() and (not run[:1].isspace() or first in "+-*/")
    right = after.isalnum() and (not run[-1:].isspace() or last in "+-*/")
    return left, right


def _is_number(side: str) -> bool:
    return _NUMBER.fullmatch(side.strip().rstrip(".").strip()) is not None


def stated_equations(text: str) -> list[tuple[str, bool]]:
    """Every stated result in the text, as ``(equation, holds)``: an '=' between a computation and a bare number.

    A chain gives one entry per such '='. An equality of two computations ("9 + 16 = 16 + 9") or of two numbers
    ("25 = 25") states no result and is not checked, so an identity cannot buy a pass.
    """
    text = _THOUSANDS.sub("", text.translate(_SYMBOLS))
    text = _OPERATOR_WORDS.sub(lambda m: _SAID_OPERATOR[m.group(1).lower()], text)
    text = _SAID_EQUALS.sub("=", text)
    found = []
    for match in _RUN.finditer(text):
        if "=" not in match.group():
            continue
        sides = [(side.strip(), _evaluate(side)) for side in match.group().split("=")]
        glued_left, glued_right = _glued(text, match.start(), match.end())
        if glued_left:
            sides[0] = (sides[0][0], None)
        if glued_right:
            sides[-1] = (sides[-1][0], None)
        for (left, a), (right, b) in zip(sides, sides[1:], strict=False):
            if a is not None and b is not None and _is_number(left) != _is_number(right):
                found.append((f"{left} = {right}", abs(a - b) <= Decimal("1e-9") * max(1, abs(a))))
    return found


def _check_missing(missing: Any = None, **_: Any) -> None:
    """``missing`` must be null or a number in [0, 1] (checked when the recipe loads and on every call)."""
    if missing is not None and (
        isinstance(missing, bool) or not isinstance(missing, int | float) or not 0 <= missing <= 1
    ):
        raise ValueError(f"args.missing: expected null or a number in [0, 1], got {missing!r}")


@reward("arithmetic_check", check_args=_check_missing)
def arithmetic_check(
    prompts: list, completions: list, missing: float | None = None, **kwargs: Any
) -> list[float | None]:
    """Label-free calculator: 1.0 if every result the completion states holds, 0.0 if one fails.

    A completion that states no result scores ``missing``: ``None`` (not applicable, the default) or a number in
    [0, 1]; ``missing: 0`` asks for the work to be shown, and closes the exit of answering in a form the calculator
    cannot read (docs/verifier_mixtures.md).
    """
    _check_missing(missing)
    scores: list[float | None] = []
    for completion in completions:
        equations = stated_equations(completion_text(completion))
        if not equations:
            scores.append(None if missing is None else float(missing))
        else:
            scores.append(float(all(holds for _, holds in equations)))
    return scores
