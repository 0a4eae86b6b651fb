"""TextPecker synthesis engine and character anomaly detector."""

from __future__ import annotations

import json
import random
import subprocess
import sys

import numpy as np
import pytest

from verirl.rewards.textpecker.detector import LineEvidence, align, char_spans, f1_scores, plain_ocr_f1

pytest.importorskip("cv2", reason="the ocr extra is not installed")


def test_char_spans_follow_greedy_ctc():
    best = [0, 1, 1, 0, 2, 2, 0, 1, 0, 1]  # "a", "b", "a", "a" (a blank separates the repeated a)
    probs = np.full((len(best), 3), 0.01, dtype=np.float32)
    probs[np.arange(len(best)), best] = 0.98
    assert char_spans(probs) == [(1, 2), (4, 5), (7, 7), (9, 9)]


def test_align_maps_read_in_place_characters():
    assert align("HELL0", "HELLO") == {0: 0, 1: 1, 2: 2, 3: 3, 4: 4}  # misread one for one: still aligned
    assert align("HLLO", "HELLO") == {0: 0, 1: 2, 2: 3, 3: 4}  # E lost
    assert align("", "AB") == {}


def _line(text, labels, decoded, mapping):
    n = len(decoded)
    return LineEvidence(
        text, labels, decoded, np.zeros((n, 32, 32), np.float32), np.zeros((n, 2), np.float32), mapping
    )


def _prf(scores):
    return {k: scores[k] for k in ("precision", "recall", "f1")}


def test_f1_counts_target_characters():
    line = _line("AB CD", [1, 0, 0, 1, 0], "AB CD", {i: i for i in range(5)})
    assert _prf(f1_scores([line], [[0, 4]])) == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})
    assert f1_scores([line], [[0, 3]])["f1"] == pytest.approx(1.0)
    assert f1_scores([line], [[0, 3]])["characters"] == 4  # spaces are not characters


def test_plain_ocr_flags_misreads_and_lost_characters_only_in_scope_all():
    # OCR lost the (anomalous) A and misread the clean D as O; the anomalous C was read fine
    misread = _line("AB CD", [1, 0, 0, 1, 0], "B CO", {0: 1, 1: 2, 2: 3, 3: 4})
    assert _prf(plain_ocr_f1([misread])) == pytest.approx({"precision": 0.0, "recall": 0.0, "f1": 0.0})
    assert plain_ocr_f1([misread])["characters"] == 3  # localised: A is not judged
    assert _prf(plain_ocr_f1([misread], "all")) == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})
    # scope "all" credits every detector with the lost A
    assert f1_scores([misread], [[]], "all")["recall"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------------ synthesis


def test_edited_glyphs_differ_visibly_and_deletions_only_remove_ink():
    from PIL import Image, ImageDraw, ImageFont

    from verirl.rewards.textpecker.synth import MIN_CHANGE, edit_glyph, font_paths

    font = ImageFont.truetype(str(font_paths(("DejaVuSans.ttf",))[0]), 40)

    def mask(ch):
        canvas = Image.new("L", (60, 60), 0)
        ImageDraw.Draw(canvas).text((8, 4), ch, fill=255, font=font)
        return np.asarray(canvas) > 127

    clean, donor = mask("E"), mask("K")
    seen = set()
    for seed in range(40):
        out, applied = edit_glyph(clean, donor, random.Random(seed))
        seen |= set(applied)
        assert applied
        assert (out ^ clean).sum() >= MIN_CHANGE * clean.sum()
        if not {"add", "swap"} & set(applied):
            assert not (out & ~clean).any()  # delete / erase never add ink
    assert seen == {"delete", "add", "swap", "erase"}


def test_synth_labels_match_edits_and_are_reproducible():
    from verirl.rewards.textpecker.synth import synthesize

    lines = synthesize(30, seed=3, p_edit=0.4)
    for line in lines:
        assert len(line.labels) == len(line.text) == len(line.edits)
        for ch, label, edits in zip(line.text, line.labels, line.edits, strict=True):
            assert bool(label) == bool(edits)
            assert not (ch == " " and label)
        assert line.marked.count("<#>") == sum(line.labels)
    assert (
        0.2
        < np.mean([lab for line in lines for ch, lab in zip(line.text, line.labels, strict=True) if ch != " "])
        < 0.6
    )
    again = synthesize(30, seed=3, p_edit=0.4)
    assert [line.marked for line in again] == [line.marked for line in lines]
    assert np.array_equal(np.asarray(again[5].image), np.asarray(lines[5].image))
    clean = synthesize(10, seed=4, p_edit=0.0)
    assert all(sum(line.labels) == 0 for line in clean)


def test_chinese_lines_use_cjk_fonts_and_label_edits():
    from verirl.rewards.textpecker.synth import ZH_HELDOUT_FONTS, synthesize

    for fonts in (None, ZH_HELDOUT_FONTS):
        lines = synthesize(12, seed=5, fonts=fonts, p_edit=0.5, script="zh")
        assert all("\u4e00" <= ch <= "\u9fff" for line in lines for ch in line.text)
        for line in lines:
            assert [bool(e) for e in line.edits] == [bool(lab) for lab in line.labels]
            ink = (np.asarray(line.image.convert("L")) < 128).mean()
            assert ink > 0.02  # glyphs were drawn (a font without CJK glyphs would draw nothing or boxes)
    with pytest.raises(ValueError, match="script"):
        synthesize(1, 0, script="xx")


def test_synth_cli_writes_images_and_labels(tmp_path):
    out = tmp_path / "synth"
    cmd = [sys.executable, "-m", "verirl.cli", "textpecker", "synth", "--out", str(out), "--n", "5", "--seed", "7"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and all((out / r["image"]).is_file() for r in rows)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)  # never overwrites a dataset
    assert again.returncode == 2 and "already holds" in again.stderr and "Traceback" not in again.stderr


# ------------------------------------------------------------------------------------------ learned detector


@pytest.mark.parametrize("script", ["en", "zh"])
def test_shipped_detector_beats_plain_ocr_on_heldout_fonts(script, tmp_path, monkeypatch):
    pytest.importorskip("paddleocr", reason="the ocr extra is not installed")
    from verirl.rewards.textpecker import detector as det
    from verirl.rewards.textpecker.ocr import REC_NAME, CTCRecognizer, prepare_models
    from verirl.rewards.textpecker.synth import SCRIPTS, synthesize

    monkeypatch.setenv("VERIRL_CACHE", str(tmp_path))
    recognizer = CTCRecognizer(prepare_models() / REC_NAME)
    lines = det.read_lines(synthesize(120, seed=99, fonts=SCRIPTS[script][1], script=script), recognizer)
    learned = det.LearnedDetector()
    flags = [
        [j for j, p in enumerate(learned.classify(line.crops, line.evidence)) if p > learned.threshold]
        for line in lines
    ]
    ours, plain = f1_scores(lines, flags), plain_ocr_f1(lines)
    assert ours["f1"] > plain["f1"]
    assert ours["f1"] > 0.6


def test_detector_threshold_comes_from_the_weights_file(tmp_path):
    from safetensors.torch import save_file

    from verirl.rewards.textpecker.detector import LearnedDetector, _classifier

    path = tmp_path / "d.safetensors"
    save_file(_classifier().state_dict(), str(path), metadata={"threshold": "0.7"})
    assert LearnedDetector(path).threshold == 0.7
    assert LearnedDetector(path, threshold=0.5).threshold == 0.5
    with pytest.raises(FileNotFoundError, match="train-detector"):
        LearnedDetector(tmp_path / "missing.safetensors")
