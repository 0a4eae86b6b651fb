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

    from verirl.rewards.textpecker.damage import MIN_CHANGE, edit_glyph, visible_change
    from verirl.rewards.textpecker.synth import font_paths

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
        assert visible_change(out, clean) >= MIN_CHANGE * clean.sum()
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
            grey = np.asarray(line.image.convert("L")).astype(float)
            ink = (np.abs(grey - np.median(grey)) > 40).mean()  # any ink colour on any ground
            assert ink > 0.01  # glyphs were drawn (a font without CJK glyphs would draw nothing or boxes)
    with pytest.raises(ValueError, match="script"):
        synthesize(1, 0, script="xx")


def _glyph(ch, size=40, font="DejaVuSans.ttf"):
    from PIL import Image, ImageDraw, ImageFont

    from verirl.rewards.textpecker.synth import font_paths

    canvas = Image.new("L", (3 * size, 3 * size), 0)
    ImageDraw.Draw(canvas).text((size, size), ch, fill=255, font=ImageFont.truetype(str(font_paths((font,))[0]), size))
    return np.asarray(canvas) > 127


@pytest.mark.parametrize("kind", ["missing", "spurious", "distort", "misalign", "mirror", "strokes"])
def test_every_mask_damage_is_a_visible_change(kind):
    from verirl.rewards.textpecker.damage import MIN_CHANGE, damage_mask, visible_change

    clean, donor = _glyph("R"), _glyph("K")
    variants = set()
    for seed in range(20):
        out, applied = damage_mask(kind, "R", clean, donor, random.Random(seed))
        assert applied and visible_change(out, clean) >= MIN_CHANGE * clean.sum()
        variants |= {a.split(":")[-1] for a in applied}
        again, _ = damage_mask(kind, "R", clean, donor, random.Random(seed))
        assert np.array_equal(out, again)  # seeded
        if kind == "missing":
            assert not (out & ~clean).any()  # erasures only remove ink
        if kind == "spurious":
            assert not (clean & ~out).any()  # a stray stroke only adds ink
    expected = {
        "missing": {"band", "blob", "fragments"},
        "spurious": {"line", "arc"},
        "distort": {"shear", "wave", "elastic"},
        "misalign": {"shift", "rotate", "scale"},
        "strokes": {"delete", "add", "swap", "erase"},
    }
    assert expected.get(kind, set()) <= variants


def test_a_stray_stroke_stays_in_its_glyphs_columns():
    """Ink spilled over a neighbour would sit on a character labelled clean: strokes keep to the glyph's box,
    widened by STRAY_MARGIN of its size on each side, however long or wherever they start."""
    from verirl.rewards.textpecker.damage import STRAY_MARGIN, add_stray_stroke, glyph_box

    clean = _glyph("i")  # narrow: a stroke as long as the glyph is tall would reach well past it
    y0, y1, x0, x1 = glyph_box(clean)
    margin = max(1, round(STRAY_MARGIN * max(y1 - y0, x1 - x0)))
    reach = []
    for seed in range(40):
        out, _ = add_stray_stroke(clean, random.Random(seed))
        cols = np.nonzero((out & ~clean).any(axis=0))[0]
        if cols.size:
            assert cols.min() >= x0 - margin and cols.max() < x1 + margin
            reach.append(cols.max() - cols.min() + 1)
    assert len(reach) > 30 and max(reach) > x1 - x0  # strokes were drawn, and some do cross the whole glyph


def test_mirror_skips_mirror_pairs_and_symmetric_glyphs():
    from verirl.rewards.textpecker.damage import damage_mask

    for ch in ("b", "O"):  # b mirrors into d; O into itself: both are erased instead
        out, applied = damage_mask("mirror", ch, _glyph(ch), _glyph("K"), random.Random(0))
        assert applied[0].startswith("missing:") and not (out & ~_glyph(ch)).any()
    out, applied = damage_mask("mirror", "R", _glyph("R"), _glyph("K"), random.Random(0))
    assert applied == ["mirror:flip"]


def test_blur_touches_only_the_glyph_box():
    from verirl.rewards.textpecker.damage import blur_region

    pixels = np.full((60, 200, 3), 230.0, dtype=np.float32)
    pixels[20:40, 20:30] = 20.0  # a glyph-like bar
    pixels[20:40, 150:160] = 20.0  # another far away
    before = pixels.copy()
    blur_region(pixels, (20, 40, 20, 30), 24, random.Random(1))
    assert not np.array_equal(pixels[15:45, 15:35], before[15:45, 15:35])
    assert np.array_equal(pixels[:, 100:], before[:, 100:])


def test_synth_damage_kinds_label_as_named():
    from verirl.rewards.textpecker.damage import DAMAGE_TYPES
    from verirl.rewards.textpecker.synth import synthesize

    for kind in DAMAGE_TYPES:
        lines = synthesize(8, seed=11, p_edit=0.5, damage=(kind,))
        names = {a.split(":")[0] for line in lines for e in line.edits for a in e}
        assert kind in names
        assert names <= {kind, "missing"}  # a glyph that cannot take the kind is erased instead
    for line in synthesize(10, seed=12, p_edit=0.5, damage=("fuse",)):
        for i, edits in enumerate(line.edits):  # a fused glyph and the neighbour it overlaps are both labelled
            if "fuse:overlap" in edits:
                assert line.labels[i] == line.labels[i - 1] == 1 and "fuse:neighbour" in line.edits[i - 1]
    with pytest.raises(ValueError, match="damage"):
        synthesize(1, 0, damage=("melt",))


def test_synth_draws_a_kind_named_twice_twice_as_often():
    from collections import Counter

    from verirl.rewards.textpecker.synth import synthesize

    def drawn(damage: tuple[str, ...]) -> Counter:
        lines = synthesize(100, seed=5, p_edit=0.5, damage=damage)
        return Counter(edits[0].split(":")[0] for line in lines for edits in line.edits if edits)

    once, twice = drawn(("blur", "spurious")), drawn(("blur", "spurious", "spurious"))
    assert 0.7 < once["spurious"] / once["blur"] < 1.4
    assert twice["spurious"] / twice["blur"] > 1.6


def test_training_and_heldout_fonts_are_installed_and_disjoint():
    from verirl.rewards.textpecker.synth import (
        HELDOUT_FONTS,
        TRAIN_FONTS,
        ZH_HELDOUT_FONTS,
        ZH_TRAIN_FONTS,
        font_paths,
    )

    assert not set(TRAIN_FONTS) & set(HELDOUT_FONTS) and not set(ZH_TRAIN_FONTS) & set(ZH_HELDOUT_FONTS)
    for names in (TRAIN_FONTS, HELDOUT_FONTS, ZH_TRAIN_FONTS, ZH_HELDOUT_FONTS):
        assert [p.name for p in font_paths(names)] == list(names)  # every face ships with the ocr extra


def test_synth_cli_writes_images_and_labels(tmp_path):
    out = tmp_path / "synth"
    cmd = [sys.executable, "-m", "verirl.cli", "textpecker", "synth", "--out", str(out), "--n", "5", "--seed", "7"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (out / "labels.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and all((out / r["image"]).is_file() for r in rows)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120)  # never overwrites a dataset
    assert again.returncode == 2 and "already holds" in again.stderr and "Traceback" not in again.stderr
    bad = subprocess.run(
        cmd[:-4] + ["--out", str(tmp_path / "x"), "--damage", "blur,melt"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "--damage" in bad.stderr and "Traceback" not in bad.stderr


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


def test_reference_glyphs_are_cut_like_crops_ink_high_and_cached():
    from verirl.rewards.textpecker.reference import CROP, reference_glyph

    a, g, hanzi = reference_glyph("a"), reference_glyph("g"), reference_glyph("国")
    assert a.shape == g.shape == hanzi.shape == (CROP, CROP) and a.dtype == np.float32
    assert 0.05 < a.mean() < 0.6 and 0.05 < hanzi.mean() < 0.6  # ink high on a dark ground
    ink_rows = lambda glyph: np.nonzero(glyph.max(1) > 0.5)[0]  # noqa: E731
    assert ink_rows(a)[0] > 4 and ink_rows(g)[-1] > ink_rows(a)[-1]  # x-height and descender: the line's rows
    assert not reference_glyph(" ").any()
    assert reference_glyph("a") is a  # rendered once


def test_reference_chars_take_the_aligned_target_else_the_character_read():
    from verirl.rewards.textpecker.reference import reference_chars

    assert reference_chars("HFLO", ["H", "E", None, "O"]) == ["H", "E", "L", "O"]
    assert reference_chars("ab", None) == ["a", "b"]
    assert reference_chars("abc", ["x"]) == ["x", "b", "c"]  # shorter alignment: the rest as read


def test_weights_from_before_the_reference_channel_still_load_and_score(tmp_path):
    from safetensors.torch import save_file

    from verirl.rewards.textpecker.detector import CHANNELS, EVIDENCE, LearnedDetector, _classifier, input_channels

    path = tmp_path / "two.safetensors"
    save_file(_classifier(2).state_dict(), str(path), metadata={"threshold": "0.8"})
    old, new = LearnedDetector(path), LearnedDetector()
    assert input_channels(old.model) == 2 and input_channels(new.model) == CHANNELS == 3
    crops = np.random.default_rng(0).random((5, CHANNELS, 32, 32), dtype=np.float32)
    evidence = np.ones((5, EVIDENCE), dtype=np.float32)
    assert old.classify(crops, evidence).shape == new.classify(crops, evidence).shape == (5,)
    changed = crops.copy()
    changed[:, 2] = 0.0  # another reference glyph: the shipped detector looks at it, the old one cannot
    assert np.allclose(old.classify(changed, evidence), old.classify(crops, evidence))
    assert not np.allclose(new.classify(changed, evidence), new.classify(crops, evidence))


def test_weights_of_the_narrower_network_still_load_and_score(tmp_path):
    from safetensors.torch import save_file

    from verirl.rewards.textpecker.detector import CHANNELS, EVIDENCE, WIDTHS, LearnedDetector, _classifier

    path = tmp_path / "narrow.safetensors"
    save_file(_classifier(CHANNELS, (32, 64, 96, 64)).state_dict(), str(path), metadata={"threshold": "0.8"})
    old, new = LearnedDetector(path), LearnedDetector()
    widths = lambda m: (m.conv[0].out_channels, m.conv[3].out_channels, m.conv[6].out_channels, m.head[0].out_features)  # noqa: E731
    assert widths(old.model) == (32, 64, 96, 64) and widths(new.model) == WIDTHS
    assert (
        sum(p.numel() for p in old.model.parameters()) < 0.2e6 < 0.4e6 < sum(p.numel() for p in new.model.parameters())
    )
    crops = np.random.default_rng(0).random((4, CHANNELS, 32, 32), dtype=np.float32)
    scores = old.classify(crops, np.ones((4, EVIDENCE), dtype=np.float32))
    assert scores.shape == (4,) and np.isfinite(scores).all()


def test_train_detector_with_weights_rechooses_the_threshold_and_keeps_the_tensors(tmp_path, monkeypatch):
    pytest.importorskip("paddleocr", reason="the ocr extra is not installed")
    from safetensors import safe_open
    from safetensors.torch import load_file

    from verirl.rewards.textpecker.detector import WEIGHTS
    from verirl.rewards.textpecker.training import run

    monkeypatch.setenv("VERIRL_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "eval"
    results = run(out, n_heldout=6, n_per_damage=2, scripts=("en",), weights=WEIGHTS, n_validation=12, log=str)
    assert "train_lines" not in results and results["evaluated_weights"] == str(WEIGHTS)
    assert results["validation_lines"] == 12 and results["en"]["heldout_lines"] == 6
    copied, shipped = load_file(str(out / "detector.safetensors")), load_file(str(WEIGHTS))
    assert copied.keys() == shipped.keys() and all((copied[k] == shipped[k]).all() for k in shipped)
    with safe_open(str(out / "detector.safetensors"), "pt") as f:
        assert float(f.metadata()["threshold"]) == results["threshold"]
    assert json.loads((out / "detector_metrics.json").read_text())["threshold"] == results["threshold"]
    kind = results["en"]["by_damage"]["blur"]
    assert set(kind["all_characters"]) == {"learned", "plain_ocr"}  # lost characters counted, as the reward does
    assert 0.0 <= results["en"]["clean_unread"] <= 1.0


def test_unread_share_counts_target_characters_no_decoded_one_is_aligned_to():
    from verirl.rewards.textpecker.training import unread_share

    none = np.zeros((0, 1)), np.zeros((0, 1))
    lost_d = LineEvidence("ab cd", [0] * 5, "ab c", *none, mapping={0: 0, 1: 1, 2: 2, 3: 3})
    whole = LineEvidence("xy", [0, 0], "xy", *none, mapping={0: 0, 1: 1})
    assert unread_share([lost_d, whole]) == pytest.approx(1 / 6)  # the space is not a character
    assert unread_share([whole]) == 0.0 and unread_share([]) == 0.0


def test_train_detector_refuses_weights_that_are_not_a_detector_in_one_line(tmp_path):
    bad = tmp_path / "notes.safetensors"
    bad.write_text("not tensors")
    base = [sys.executable, "-m", "verirl.cli", "textpecker", "train-detector", "--out", str(tmp_path / "o")]
    for weights, expected in ((bad, "not TextPecker detector weights"), (tmp_path / "none", "no such file")):
        done = subprocess.run(base + ["--weights", str(weights)], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and expected in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
