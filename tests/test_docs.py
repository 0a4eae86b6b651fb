"""The README's examples stay true: the plug-in snippet passes `rewards check`, the recipe shown is the real one."""

import re
from pathlib import Path

import yaml

from verirl.cli import main

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
ROOT = Path(__file__).resolve().parents[1]


def test_readme_plugin_snippet_is_a_working_reward(tmp_path, monkeypatch, capsys):
    snippet = re.search(r"```python\n# my_rewards.py\n(.*?)```", README, re.S).group(1)
    assert len(snippet.strip().splitlines()) <= 10
    (tmp_path / "my_rewards.py").write_text(snippet)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["rewards", "check", "my_rewards:brevity", "--args", '{"max_words": 10}']) == 0, capsys.readouterr()


def test_readme_shows_the_quickstart_recipe_as_it_is():
    shown = re.search(r"`recipes/quickstart.yaml`:\n\n```yaml\n(.*?)```", README, re.S).group(1)
    real = yaml.safe_load((ROOT / "recipes" / "quickstart.yaml").read_text())
    assert yaml.safe_load(shown) == real


def test_readme_has_the_two_commands():
    assert "make quickstart" in README and "make test" in README
