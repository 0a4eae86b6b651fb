"""The glyph demo end to end: pretrain the tiny text-to-image pipeline from scratch, then Flow-GRPO with OCR reward.

Runs `verirl glyph pretrain` (unless --pretrained DIR reuses one) and `verirl train recipes/glyph-flowgrpo.yaml`, and
prints the wall times and held-out OCR exact match (100 strings never seen in pretraining or RL, one deterministic
image each) before and after Flow-GRPO. The last line is
`glyph_before=B glyph_after=A gain_points=G pretrain_seconds=P rl_seconds=R seconds_per_step=S`.
Targets (issue 5): G >= 20 points; pretraining <= 20 minutes on 2 CPU cores.

    python bench/glyph_demo.py                                    # pretrain (~17 min) + RL
    python bench/glyph_demo.py --pretrained runs/glyph-pretrained  # RL only
    python bench/glyph_demo.py --set args.max_steps=5             # any recipe override
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERIRL = str(Path(sys.executable).parent / "verirl")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pretrained", help="reuse this pipeline directory instead of pretraining")
    parser.add_argument("--out", default="runs/bench-glyph", help="where the pipeline and the RL run go")
    parser.add_argument("--set", action="append", default=[], dest="overrides", help="recipe override key=value")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    out = Path(args.out)
    pretrain_seconds = None
    pipeline = Path(args.pretrained) if args.pretrained else out / "pretrained"
    if not args.pretrained:
        start = time.time()
        subprocess.run([VERIRL, "glyph", "pretrain", "--out", str(pipeline)], check=True, env=env)
        pretrain_seconds = time.time() - start
    report = json.loads((pipeline / "pretrain.json").read_text())
    start = time.time()
    run = out / "flowgrpo"
    cmd = [VERIRL, "train", str(ROOT / "recipes" / "glyph-flowgrpo.yaml"), "--overwrite",
           "--set", f"model.name={pipeline}", "--set", f"output_dir={run}"]  # fmt: skip
    for item in args.overrides:
        cmd += ["--set", item]
    subprocess.run(cmd, check=True, env=env)
    rl_seconds = time.time() - start
    results = json.loads((run / "eval_results.json").read_text())
    before, after = results["before"]["accuracy"], results["after"]["accuracy"]
    print(f"pretraining: {report['train_seconds']} s of training; held-out exact match right after pretraining "
          f"{100 * report['held_out']['exact_match']:.1f}% (VAE round trip alone: "
          f"{100 * report['vae_reconstruction_exact_match']:.1f}%)")  # fmt: skip
    print(
        f"Flow-GRPO: {results['train']['steps']} steps, {results['train']['seconds_per_step']} s/step; "
        f"mean held-out ocr_match {results['before']['mean_reward']:.3f} -> {results['after']['mean_reward']:.3f}"
    )
    ps = f"{pretrain_seconds:.0f}" if pretrain_seconds is not None else f"reused({report['train_seconds']})"
    print(
        f"glyph_before={100 * before:.1f} glyph_after={100 * after:.1f} gain_points={100 * (after - before):.1f} "
        f"pretrain_seconds={ps} rl_seconds={rl_seconds:.0f} seconds_per_step={results['train']['seconds_per_step']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
