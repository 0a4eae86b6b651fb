"""Search questions: the flag loader's restricted unpickler, user question files, the built-in question sets."""

import json
import os
import pickle
import random

import numpy as np
import pytest
from PIL import Image

from verirl.errors import VerirlError
from verirl.search.corpus import load_corpus
from verirl.search.flags import ArrayUnpickler, flag_names, flag_title, load_array, load_flag
from verirl.search.questions import BUILTIN_TASKS, DATA_DIR, Question, builtin_questions, read_questions


@pytest.fixture(scope="module")
def corpus():
    return load_corpus()


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VERIRL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_unpickler_loads_every_flag(corpus):
    names = flag_names()
    assert len(names) == 195
    for name in names:
        arr = load_flag(name)
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3 and arr.std() > 0
        assert flag_title(name) in corpus, name
    assert flag_title("Antigua_And_Barbuda") == "Antigua and Barbuda"
    assert flag_title("The_Gambia") == "The Gambia" and flag_title("The_United_States") == "United States"
    assert flag_title("Georgia_(Country)") == "Georgia (country)" and flag_title("East_Timor") == "Timor-Leste"
    with pytest.raises(VerirlError, match="unknown flag"):
        load_flag("Atlantis")


def test_unpickler_refuses_other_globals(tmp_path):
    marker = tmp_path / "pwned"
    with pytest.raises(pickle.UnpicklingError, match="refusing global (os|posix).system"):
        load_array(pickle.dumps(_Evil(marker)))
    assert not marker.exists()
    for evil in (pickle.dumps(print), b"cbuiltins\neval\n(S'1+1'\ntR.", b"cnumpy\nload\n(S'x'\ntR."):
        with pytest.raises(pickle.UnpicklingError, match="refusing"):
            load_array(evil)
    with pytest.raises(pickle.UnpicklingError, match="expected a numpy array"):
        load_array(pickle.dumps({"a": 1}))
    assert load_array(pickle.dumps(np.arange(6, dtype=np.uint8).reshape(2, 3))).sum() == 15
    assert issubclass(ArrayUnpickler, pickle.Unpickler)


def _write(tmp_path, lines, name="q.jsonl"):
    path = tmp_path / name
    path.write_bytes(b"\n".join(line if isinstance(line, bytes) else line.encode() for line in lines))
    return path


GOOD = json.dumps({"question": "Q?", "answers": ["A"]})


@pytest.mark.parametrize(
    "line,message",
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('{"answers": ["a"]}', "'question' is missing"),
        ('{"question": 3, "answers": ["a"]}', "'question' must be a non-empty string, got int"),
        ('{"question": "  ", "answers": ["a"]}', "'question' must be a non-empty string"),
        ('{"question": "q"}', "'answers' is missing"),
        ('{"question": "q", "answers": "a"}', "'answers' must be a non-empty list of strings, got str"),
        ('{"question": "q", "answers": []}', "'answers' must be a non-empty list"),
        ('{"question": "q", "answers": ["a", 1]}', "'answers' must be a non-empty list of non-empty strings"),
        ('{"question": "q", "answers": ["a"], "image": 5}', "'image' must be a path"),
        ('{"question": "q", "answers": ["a"], "image": "nope.png"}', "'image' file not found"),
        ('{"question": "q", "answers": ["a"], "image": "x\\u0000y"}', "'image' file not found"),
        ('{"question": "q", "answers": ["a"], "evidence": "France"}', "'evidence' must be a list"),
        ('{"question": "q", "answers": ["a"], "evidence": [1]}', "'evidence' must be a list"),
        ('{"question": "q", "answers": ["a"], "image": "i.png", "flag": "France"}', "not both"),
        ('{"question": "q", "answers": ["a"], "flag": "Atlantis"}', "unknown flag"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_read_questions_errors(tmp_path, line, message):
    path = _write(tmp_path, [GOOD, line])
    with pytest.raises(VerirlError, match=message) as err:
        read_questions(path)
    assert str(err.value).startswith(f"{path}:2: ")
    assert "\n" not in str(err.value)


def test_read_questions_ok(tmp_path, cache):
    Image.new("RGB", (4, 4)).save(tmp_path / "i.png")
    rows = [
        {"question": " Q1? ", "answers": ["a", "b"], "image": "i.png", "evidence": ["France"], "extra": 1},
        {"question": "Q2?", "answers": ["c"], "flag": "France"},
    ]
    path = _write(tmp_path, [json.dumps(rows[0]), "", json.dumps(rows[1]), ""])
    q1, q2 = read_questions(path)
    assert q1 == Question("Q1?", ("a", "b"), str((tmp_path / "i.png").resolve()), ("France",))
    assert q2.image.startswith(str(cache)) and os.path.isfile(q2.image)
    with pytest.raises(VerirlError, match="no questions"):
        read_questions(_write(tmp_path, ["", "  "], "empty.jsonl"))
    with pytest.raises(VerirlError, match="cannot read"):
        read_questions(tmp_path / "missing.jsonl")


def test_read_questions_fuzz(tmp_path, cache):
    """Mangled lines give a one-line VerirlError naming the file, never another exception."""
    rng = random.Random(0)
    values = [None, 1, -1.5, "", "x", [], {}, ["a"], [1], {"a": 1}, True, "1" * 5000]
    templates = [GOOD, json.dumps({"question": "q", "answers": ["a"], "image": "x.png", "evidence": ["t"]})]
    lines = [
        "[" * 100000,
        '"\\ud800"',
        '{"question": "\\ud800", "answers": ["a"], "flag": "France"}',
        "1" * 10000,
        "{}",
        "null",
        b"\x00\x01",
        "\u2028",
    ]
    for _ in range(300):
        base = rng.choice(templates)
        kind = rng.random()
        if kind < 0.4:
            i = rng.randrange(len(base))
            lines.append(base[:i] + rng.choice(["", "}", '"', ",", "\\", "\x00"]) + base[i + 1 :])
        elif kind < 0.8:
            row = json.loads(base)
            row[rng.choice(["question", "answers", "image", "evidence", "flag"])] = rng.choice(values)
            lines.append(json.dumps(row))
        else:
            lines.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))))
    for n, line in enumerate(lines):
        path = _write(tmp_path, [line], f"f{n}.jsonl")
        try:
            read_questions(path)
        except VerirlError as exc:
            assert str(exc).startswith(str(path)) and "\n" not in str(exc)


def test_builtin_text_questions(corpus):
    train, test = builtin_questions("search-2hop", "train"), builtin_questions("search-2hop", "test")
    assert len(test) >= 300 and len(train) >= 1000
    for q in train + test:
        assert len(q.evidence) == 2 and all(t in corpus for t in q.evidence), q
        assert q.image is None and q.answers
        a, b = q.evidence
        assert b.casefold() not in q.question.casefold()
        assert any(ans.casefold() in corpus.get(b).text.casefold() for ans in q.answers), q
    test_entities = {t for q in test for t in q.evidence}
    assert not {q.evidence[1] for q in train} & {q.evidence[1] for q in test}
    assert not {t for q in train for t in q.evidence} & test_entities
    with pytest.raises(VerirlError, match="unknown built-in search task"):
        builtin_questions("search-nope", "train")
    with pytest.raises(VerirlError, match="unknown split"):
        builtin_questions("search-2hop", "dev")
    assert BUILTIN_TASKS == ("search-2hop", "search-flags")


def test_builtin_flag_questions(corpus, cache):
    title_of = {flag_title(name): name for name in flag_names()}
    test = builtin_questions("search-flags", "test")
    assert len(test) >= 100
    train_rows = [json.loads(line) for line in (DATA_DIR / "flags_train.jsonl").read_text().splitlines()]
    train_titles = {row["evidence"][0] for row in train_rows}
    assert len(train_rows) >= 200 and not train_titles & {q.evidence[0] for q in test}
    readme = (DATA_DIR / "README.md").read_text()
    assert "Apache" in readme and "qa_wikidata" in readme and "No corpus text" in readme
    for q in test:
        (title,) = q.evidence
        assert title in corpus and q.answers
        name = title_of[title]
        for word in {title, name, name.replace("_", " "), title.split(" (")[0]}:
            assert word.casefold() not in q.question.casefold(), q
        shown = np.asarray(Image.open(q.image).convert("RGB"))
        clean = load_flag(name)
        assert shown.shape != clean.shape and shown.shape[0] >= 0.5 * clean.shape[0]
        resized = np.asarray(Image.fromarray(clean).resize((shown.shape[1], shown.shape[0])), dtype=np.float32)
        diff = np.abs(resized - shown).mean()
        assert 1.0 < diff < 80.0, (q, diff)
    again = builtin_questions("search-flags", "test")
    assert [q.image for q in again] == [q.image for q in test]
    assert len({q.image for q in test}) == len(test)
    assert not [p for p in (cache / "search" / "flags").iterdir() if p.suffix != ".png"]
