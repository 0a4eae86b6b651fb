"""The glyph demo: its task, its renders read back by the real PP-OCRv5 recognizer, and a short pretraining run."""

import json
import subprocess

import numpy as np
import pytest

from tests.conftest import VERIRL
from verirl.glyph.data import glyph, render
from verirl.rewards.base import resolve_reward


def test_glyph_task_is_seeded_and_held_out_strings_are_unseen():
    train, held_out = glyph(n_train=300, n_eval=50, seed=3, min_len=2, max_len=3)
    assert glyph(n_train=300, n_eval=50, seed=3, min_len=2, max_len=3) == (train, held_out)
    assert not {r["text"] for r in train} & {r["text"] for r in held_out}
    assert all(r["question"] == r["text"] == r["answer"] and 2 <= len(r["text"]) <= 3 for r in train + held_out)
    with pytest.raises(ValueError, match="only 1100 distinct strings"):
        glyph(n_train=1100, n_eval=1, max_len=3)
    with pytest.raises(ValueError, match="upper-case"):
        glyph(alphabet="AB")


def test_ocr_match_reads_renders_and_scores_edit_distance():
    texts = ["4071", "25", "938"]
    images = [render(t) for t in texts] + [np.zeros((0, 0, 3), dtype=np.uint8)]
    exact = resolve_reward("ocr_match", {"mode": "exact"})
    assert exact(prompts=[""] * 4, completions=images, text=texts + ["1"]) == [1.0, 1.0, 1.0, None]
    soft = resolve_reward("ocr_match")
    scores = soft(prompts=[""] * 3, completions=images[:3], text=["4077", "25", "12345"])
    assert scores[0] == pytest.approx(0.75) and scores[1] == 1.0 and scores[2] < 0.5
    likely = resolve_reward("ocr_match", {"mode": "likelihood"})
    right, wrong = likely(prompts=[""] * 2, completions=images[:1] * 2, text=["4071", "4077"])
    assert 0.9 < right <= 1.0 and wrong < 0.5 * right  # the CTC probability of the target, per character
    with pytest.raises(KeyError, match="no column 'text'"):
        soft(prompts=[""], completions=images[:1], answer=["1"])


def test_brightness_reward():
    white, black = np.full((8, 8, 3), 255, np.uint8), np.zeros((8, 8, 3), np.uint8)
    fn = resolve_reward("brightness")
    assert fn(prompts=["", ""], completions=[white, black]) == [1.0, 0.0]
    assert resolve_reward("brightness", {"target": 0.25})(prompts=[""], completions=[black]) == [0.75]


def test_glyph_pretrain_writes_a_loadable_pipeline(tmp_path):
    out = tmp_path / "glyph"
    args = ["--out", out, "--steps", "3", "--vae-steps", "2", "--batch-size", "4", "--n-train", "50"]
    proc = subprocess.run([VERIRL, "glyph", "pretrain", *map(str, args)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "held-out OCR exact match" in proc.stdout
    report = json.loads((out / "pretrain.json").read_text())
    assert report["held_out"]["n"] == 100 and 0 <= report["held_out"]["exact_match"] <= 1
    from verirl.generators.diffusion import load_pipeline

    pipe = load_pipeline(str(out))
    assert pipe.vae.config.scaling_factor != 1.0  # set from the trained VAE's latent statistics
    again = subprocess.run([VERIRL, "glyph", "pretrain", "--out", str(out)], capture_output=True, text=True)
    assert again.returncode != 0 and "already holds a pipeline" in again.stderr
