"""Answer extractors (for voting and RESTRAIN) and the label-free majority_vote reward."""

import pytest

from verirl.answers import canonical, extract_all, get_extractor
from verirl.errors import VerirlError
from verirl.rewards.builtin import majority_vote


@pytest.mark.parametrize(
    "raw,expected",
    [("46", "46"), ("46.0", "46"), ("+46", "46"), ("1,234", "1234"), ("0.50", "0.5"), (" a  b ", "a b")],
)
def test_canonical(raw, expected):
    assert canonical(raw) == expected


def test_builtin_extractors():
    assert get_extractor("last_number")("12 + 34 = 46.0\nmore 7") == "46"
    assert get_extractor("last_number")("no digits") is None
    assert get_extractor("boxed")(r"first \boxed{1} then \boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert get_extractor("boxed")(r"\boxed{unclosed") is None
    assert get_extractor("regex", {"pattern": r"Answer: (\w+)"})("Answer: x ... Answer: 42") == "42"
    assert get_extractor("stripped")("  Paris ") == "Paris" and get_extractor("stripped")("  ") is None


def test_plugin_extractor_and_errors(tmp_path, monkeypatch):
    (tmp_path / "myext.py").write_text("def first_word(text):\n    return text.split()[0] if text.split() else None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    extractor = get_extractor("myext:first_word")
    assert extract_all(extractor, ["hello world", [{"role": "assistant", "content": "chat reply"}], "", None]) == [
        "hello",
        "chat",
        None,
        None,
    ]
    with pytest.raises(VerirlError, match="unknown extractor 'nope'"):
        get_extractor("nope")
    with pytest.raises(VerirlError, match="extractor 'myext:missing'"):
        get_extractor("myext:missing")
    with pytest.raises(VerirlError, match="takes no arguments"):
        get_extractor("boxed", {"x": 1})


def test_extract_all_never_raises():
    def boom(text):
        raise RuntimeError("bad")

    assert extract_all(boom, ["a", "b"]) == [None, None]


def test_majority_vote_groups_by_prompt():
    prompts = ["p"] * 4 + [[{"role": "user", "content": "q"}]] * 3
    completions = ["2", "2.0", "3", "none", "5", "6", "6"]
    assert majority_vote(prompts, completions) == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    assert majority_vote(["p", "p"], ["x", "y"]) == [0.0, 0.0]  # no answers: no pseudo-label
    assert majority_vote(["p"] * 3, [r"\boxed{7}", r"\boxed{7}", "7"], extractor="boxed") == [1.0, 1.0, 0.0]
