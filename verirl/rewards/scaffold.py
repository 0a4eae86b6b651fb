"""``verirl rewards new NAME``: scaffold a reward plug-in package (pyproject with the entry point, module, test).

The generated reward is a plain TRL reward function and imports nothing from verirl, so the package needs no
dependency on verirl and also works in ``trl grpo``.
"""

from __future__ import annotations

import keyword
import re
from pathlib import Path
from string import Template

from verirl.errors import VerirlError

PYPROJECT = Template("""[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "verirl-reward-$dist"
version = "0.1.0"
description = "A verirl reward plug-in: $name"
requires-python = ">=3.10"
dependencies = []  # a reward is a plain function; add what your reward itself imports

[project.optional-dependencies]
test = ["pytest"]

# verirl finds the reward by this entry point: `rewards: [{name: $name}]` in a recipe.
[project.entry-points."verirl.rewards"]
$name = "$package.reward:$name"

[tool.setuptools.packages.find]
where = ["src"]
""")

MODULE = Template('''"""The `$name` reward (verirl, TRL): 1.0 when the `answer` column appears in the completion."""

from __future__ import annotations

from typing import Any


def _text(completion: Any) -> str:
    """Completions are strings, or lists of chat messages (use the last message's content)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content") or "")
    return ""


def $name(prompts: list, completions: list, answer: list | None = None, **kwargs: Any) -> list[float | None]:
    """One score per completion: 1.0 if str(answer) occurs in the completion text, else 0.0.

    Return None for a sample the reward does not apply to (here: no answer given).
    TRL also passes completion_ids, trainer_state, log_extra and log_metric: keep **kwargs.
    """
    answers = answer if answer is not None else [None] * len(completions)
    scores: list[float | None] = []
    for completion, gold in zip(completions, answers):
        if gold is None:
            scores.append(None)
            continue
        scores.append(1.0 if str(gold).strip() and str(gold).strip() in _text(completion) else 0.0)
    return scores
''')

TEST = Template("""from $package.reward import $name


def test_scores_text_and_chat_completions():
    prompts = ["What is 2+2?"] * 3
    completions = ["2 + 2 = 4", [{"role": "assistant", "content": "It is 4."}], "five"]
    assert $name(prompts, completions, answer=["4", "4", "4"]) == [1.0, 1.0, 0.0]


def test_returns_one_value_per_completion_and_none_without_answer():
    assert $name(["p"], [""], answer=[None]) == [None]
    assert $name([], []) == []
""")

README = Template("""# verirl-reward-$dist

A reward plug-in for [verirl](https://github.com/verirl/verirl).

```bash
pip install -e .            # registers the entry point verirl.rewards:$name
verirl rewards list         # shows `$name` as a plug-in
verirl rewards check $name  # runs it on sample and hostile completions
pytest                      # its own tests
```

Use it in a recipe:

```yaml
rewards:
  - {name: $name, weight: 1.0, timeout_s: 10}
```
""")


def new_package(kind: str, name: str, parent: str | Path) -> tuple[Path, dict[str, str]]:
    """The root ``PARENT/verirl-KIND-NAME`` of a new plug-in package and its template values (``name``, ``dist``,
    ``package``); a one-line error for an invalid name or an existing folder. ``kind``: reward | verifier."""
    command = f"{kind}s new"
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise VerirlError(f"{command}: {name!r} is not a valid name (lowercase letters, digits, underscores)")
    dist = name.replace("_", "-")
    root = Path(parent) / f"verirl-{kind}-{dist}"
    if root.exists():
        raise VerirlError(f"{command}: {root} already exists; choose another name or directory")
    return root, {"name": name, "dist": dist, "package": f"verirl_{kind}_{name}"}


def write_templates(files: dict[Path, Template], values: dict[str, str]) -> None:
    for path, template in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(template.substitute(values))


def scaffold(name: str, parent: str | Path = ".") -> Path:
    """Create ``PARENT/verirl-reward-NAME`` and return its path."""
    root, values = new_package("reward", name, parent)
    package = values["package"]
    write_templates(
        {
            root / "pyproject.toml": PYPROJECT,
            root / "README.md": README,
            root / "src" / package / "__init__.py": Template('"""verirl reward plug-in: $name."""\n'),
            root / "src" / package / "reward.py": MODULE,
            root / "tests" / "test_reward.py": TEST,
        },
        values,
    )
    return root
