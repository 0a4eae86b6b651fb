"""TextPecker detector: clean characters flagged and F1 by flag threshold, in the training fonts and in unseen ones.

``train-detector`` picks the lowest threshold that flags at most 2 % of clean characters on validation lines in the
*training* fonts; on fonts it never saw, clean glyphs are flagged more often. This prints, per script and threshold:
``val_clean`` (clean lines in the training fonts, as train-detector validates), ``heldout_clean`` (clean lines in
the held-out fonts) and ``heldout_f1`` (lines with every damage kind, held-out fonts), all from seeds train-detector
(seed 1) does not use, so the reward's ``threshold`` option can be set with its cost in view (docs/textpecker.md).

    python bench/textpecker_threshold.py [--weights FILE] [--lines 200] [--thresholds 0.8 0.85 0.9 0.95] [--by-font]

``--by-font``: also the clean share flagged in each held-out font alone (``--lines`` clean lines per font), to see
which unseen designs the false flags come from.
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="a detector weights file (default: the shipped one)")
    parser.add_argument("--lines", type=int, default=200, help="clean lines per set and script")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.8, 0.85, 0.9, 0.95])
    parser.add_argument("--by-font", action="store_true", help="clean flags per held-out font as well")
    args = parser.parse_args()

    from verirl.rewards.textpecker import detector as det
    from verirl.rewards.textpecker.ocr import REC_NAME, CTCRecognizer, prepare_models
    from verirl.rewards.textpecker.synth import SCRIPTS, synthesize
    from verirl.rewards.textpecker.training import clean_flagged, learned_flags

    recognizer = CTCRecognizer(prepare_models() / REC_NAME)
    learned = det.LearnedDetector(args.weights)
    print(f"shipped threshold {learned.threshold}", flush=True)
    for k, script in enumerate(("en", "zh")):
        train_fonts, heldout_fonts, _ = SCRIPTS[script]
        validation = det.read_lines(synthesize(args.lines, 2000 + 10 * k, train_fonts, 0.0, script), recognizer)
        clean = det.read_lines(synthesize(args.lines, 7000 + 10 * k, heldout_fonts, 0.0, script), recognizer)
        damaged_lines = synthesize(args.lines * 3 // 4, 8000 + 10 * k, heldout_fonts, script=script)
        damaged = det.read_lines(damaged_lines, recognizer)
        for t in args.thresholds:
            f1 = det.f1_scores(damaged, learned_flags(learned.model, damaged, t))["f1"]
            print(
                f"script={script} threshold={t} val_clean={clean_flagged(learned.model, t, validation):.4f} "
                f"heldout_clean={clean_flagged(learned.model, t, clean):.4f} heldout_f1={f1:.3f}",
                flush=True,
            )
        if args.by_font:
            for f, font in enumerate(heldout_fonts):
                one = det.read_lines(synthesize(args.lines, 9000 + 10 * k + f, (font,), 0.0, script), recognizer)
                shares = " ".join(f"{t}:{clean_flagged(learned.model, t, one):.4f}" for t in args.thresholds)
                print(f"script={script} font={font} heldout_clean {shares}", flush=True)


if __name__ == "__main__":
    main()
