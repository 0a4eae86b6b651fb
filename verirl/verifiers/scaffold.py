"""``verirl verifiers new NAME``: scaffold a verifier plug-in package (pyproject with the entry point, module, test).

The generated verifier is a class: the recipe's ``args`` are its constructor's keyword arguments, and ``verify``
returns a :class:`~verirl.verifiers.base.Verdict`, so the package depends on verirl (a reward plug-in does not).
Its own test runs ``verirl verifiers check``'s cases on it.
"""

from __future__ import annotations

from pathlib import Path
from string import Template

from verirl.rewards.scaffold import new_package, write_templates

PYPROJECT = Template("""[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "verirl-verifier-$dist"
version = "0.1.0"
description = "A verirl verifier plug-in: $name"
requires-python = ">=3.10"
dependencies = ["verirl"]  # for Verdict; add what your verifier itself imports

[project.optional-dependencies]
test = ["pytest"]

# verirl finds the verifier by this entry point: `verirl verifiers check $name`, resolve_verifier("$name", args).
[project.entry-points."verirl.verifiers"]
$name = "$package.verifier:$cls"

[tool.setuptools.packages.find]
where = ["src"]
""")

MODULE = Template('''"""The `$name` verifier (verirl): 1.0 when the `answer` column appears in the completion."""

from __future__ import annotations

from typing import Any

from verirl.verifiers import Verdict


def _text(completion: Any) -> str:
    """Completions are strings, or lists of chat messages (use the last message's content)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        content = completion[-1].get("content")
        return content if isinstance(content, str) else ""
    return ""


class $cls:
    """1.0 if str(answer) occurs in the completion text, else 0.0; None without an answer."""

    def __init__(self, ignore_case: bool = False):
        # The recipe's (or `verirl verifiers check $name --args JSON`) args arrive here as keyword arguments.
        self.ignore_case = ignore_case

    def verify(self, prompt: Any, completion: Any, **ctx: Any) -> Verdict:
        """One verdict per call. ctx holds the row's dataset columns (here: answer).

        Score: None when the verifier does not apply, else a number in [0, 1]. details["uncertainty"] in [0, 1]
        says how sure the verdict is (0 for a deterministic check; or give details["confidence"] or
        details["probs"]), so that verifier mixtures can weigh it.
        """
        gold = ctx.get("answer")
        if gold is None or not str(gold).strip():
            return Verdict(None, "no answer to compare with", {"uncertainty": 0.0})
        text, target = _text(completion), str(gold).strip()
        if self.ignore_case:
            text, target = text.casefold(), target.casefold()
        found = target in text
        feedback = f"found {target!r}" if found else f"{target!r} does not appear in the completion"
        return Verdict(1.0 if found else 0.0, feedback, {"uncertainty": 0.0})
''')

TEST = Template("""from $package.verifier import $cls


def test_scores_text_and_chat_completions():
    verifier = $cls()
    assert verifier.verify("What is 2+2?", "2 + 2 = 4", answer="4").score == 1.0
    assert verifier.verify("What is 2+2?", [{"role": "assistant", "content": "It is 4."}], answer="4").score == 1.0
    assert verifier.verify("What is 2+2?", "five", answer="4").score == 0.0
    assert $cls(ignore_case=True).verify("Capital of France?", "PARIS", answer="paris").score == 1.0


def test_not_applicable_without_answer():
    assert $cls().verify("p", "anything").score is None


def test_passes_verirl_verifiers_check():
    from verirl.verifiers.check import check_verifier, format_results

    results = check_verifier($cls(), timeout=10)
    assert not [r for r in results if r.status == "FAIL"], format_results("$name", results)
""")

README = Template("""# verirl-verifier-$dist

A verifier plug-in for [verirl](https://github.com/verirl/verirl).

```bash
pip install -e .              # registers the entry point verirl.verifiers:$name
verirl verifiers list         # shows `$name` as a plug-in
verirl verifiers check $name  # runs it on sample and hostile completions
pytest                        # its own tests
```

Use it from Python:

```python
from verirl.verifiers.registry import resolve_verifier
from verirl.verifiers import verifier_reward

verifier = resolve_verifier("$name", {"ignore_case": True})
reward_fn = verifier_reward(verifier, "$name")  # a TRL reward function
```
""")


def class_name(name: str) -> str:
    """The generated class: ``has_answer`` -> ``HasAnswerVerifier``."""
    return "".join(part.capitalize() for part in name.split("_")) + "Verifier"


def scaffold(name: str, parent: str | Path = ".") -> Path:
    """Create ``PARENT/verirl-verifier-NAME`` and return its path."""
    root, values = new_package("verifier", name, parent)
    values["cls"] = class_name(name)
    package = values["package"]
    write_templates(
        {
            root / "pyproject.toml": PYPROJECT,
            root / "README.md": README,
            root / "src" / package / "__init__.py": Template('"""verirl verifier plug-in: $name."""\n'),
            root / "src" / package / "verifier.py": MODULE,
            root / "tests" / "test_verifier.py": TEST,
        },
        values,
    )
    return root
