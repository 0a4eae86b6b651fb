"""Online DPO vs GRPO on the quickstart task at the same number of sampled completions (issue 19).

Per seed: ``recipes/quickstart.yaml`` (GRPO, 60 steps × 16 completions = 960) and ``recipes/online-dpo.yaml`` (4
rounds × 30 prompts × 8 = 960), both from SmolLM2-135M-Instruct with the same held-out problems; ``--scale F``
multiplies both budgets (steps and rounds) for a quicker look. Reported per run: held-out accuracy before and after,
wall time of training, and seconds per sampled completion; then per row mean ± sd over seeds and

    gain_ratio=X   (online DPO's accuracy gain over GRPO's; target >= 0.9)
    time_per_sample_ratio=Y   (online DPO's training seconds per sample over GRPO's; target <= 1)

The third row, ``online_dpo_flash``, ranks each group with a trained FlashEvaluator instead of ``number_match``
(``--evaluator DIR``, e.g. ``runs/flash-evaluator/evaluator`` from ``recipes/flash-evaluator.yaml``); it runs when
that directory exists. ``online_dpo_rule_flash`` ranks with a mixture of both, 0.8 ``number_match`` + 0.2 the
evaluator (``alpha: 0``, ``guide: mean``): the rule separates right from wrong answers, the evaluator orders answers
the rule scores alike, so groups with no right answer pair too (with ``--set online_dpo.min_gap=0.2`` only
right-against-wrong pairs remain, the evaluator choosing which go together). Finished runs are read back, so rows
can be run separately (``--rows``).

    OMP_NUM_THREADS=2 .venv/bin/python bench/online_dpo_vs_grpo.py [--seeds 0 1 2] [--scale 1.0]
        [--set online_dpo.pairs=disjoint --set "args.loss_type=[sigmoid, sft]" --tag disjoint-rpo]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
FLASH_ROWS = ("online_dpo_flash", "online_dpo_rule_flash")
VERIRL = str(Path(sys.executable).parent / "verirl")


def run(row: str, seed: int, args: argparse.Namespace) -> dict:
    tag = f"-{args.tag}" if args.tag and row != "grpo" else ""
    out = Path(args.runs) / f"{row}{tag}-s{seed}"
    results = out / "eval_results.json"
    if not (results.is_file() and "after" in json.loads(results.read_text())):
        name = "quickstart.yaml" if row == "grpo" else "online-dpo.yaml"
        recipe = yaml.safe_load((ROOT / "recipes" / name).read_text())
        if row == "grpo":
            recipe["args"].update(seed=seed, max_steps=max(1, round(60 * args.scale)), save_steps=10_000)
        else:
            recipe["args"]["seed"] = seed
            recipe["online_dpo"]["rounds"] = max(1, round(4 * args.scale))
            recipe["online_dpo"]["eval_every_round"] = False
            if row in FLASH_ROWS:
                member = {"name": "flash_evaluator", "args": {"model": str(Path(args.evaluator).resolve())}}
                if row == "online_dpo_flash":
                    recipe["rewards"] = [{"mixture": {"name": "flash", "members": [member]}}]
                else:  # R = 0.8 number_match + 0.2 evaluator (alpha 0, guide mean: the plain gated mean)
                    members = [{"name": "number_match", "gate": 0.8}, {**member, "gate": 0.2}]
                    mixture = {"name": "rule_flash", "alpha": 0.0, "guide": "mean", "members": members}
                    recipe["rewards"] = [{"mixture": mixture}]
                # held-out accuracy stays number_match's: a listwise evaluator scores a lone greedy answer 1
                recipe.setdefault("eval", {})["reward"] = "number_match"
            for key, value in args.set:
                section, _, field = key.partition(".")
                recipe.setdefault(section, {})[field] = value
        recipe["output_dir"] = str(out)
        path = out.parent / f"{out.name}.yaml"  # not with_suffix: a tag may hold a dot
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        subprocess.run([VERIRL, "train", str(path), "--overwrite"], check=True, cwd=ROOT)
    data = json.loads(results.read_text())
    if row == "grpo":
        samples = data["train"]["steps"] * 16
    else:
        samples = data["train"]["samples"]
    return {
        "before": 100 * data["before"]["accuracy"],
        "after": 100 * data["after"]["accuracy"],
        "seconds": data["train"]["seconds"],
        "samples": samples,
    }


def override(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or "." not in key:
        raise argparse.ArgumentTypeError(f"expected SECTION.FIELD=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply both sample budgets")
    parser.add_argument("--runs", default="runs/online-dpo-vs-grpo")
    parser.add_argument("--evaluator", default="runs/flash-evaluator/evaluator", help="trained FlashEvaluator")
    parser.add_argument("--rows", nargs="+", default=["grpo", "online_dpo", "online_dpo_flash"])
    parser.add_argument(
        "--set",
        type=override,
        action="append",
        default=[],
        metavar="SECTION.FIELD=YAML",
        help="change the online DPO recipe (e.g. online_dpo.pairs=disjoint); with --tag",
    )
    parser.add_argument("--tag", default="", help="suffix of the online DPO runs' directories (a variant's name)")
    args = parser.parse_args()
    if args.set and not args.tag:
        parser.error("--set needs --tag: a variant's runs must not be read back as the recipe's")
    for row in [r for r in args.rows if r in FLASH_ROWS and not Path(args.evaluator).is_dir()]:
        print(f"no FlashEvaluator at {args.evaluator}: the {row} row is skipped", flush=True)
        args.rows.remove(row)
    rows: dict[str, list[dict]] = {row: [] for row in args.rows}
    for seed in args.seeds:
        for row in rows:
            figures = run(row, seed, args)
            rows[row].append(figures)
            print(f"{row} seed {seed}: held-out {figures['before']:.1f}% -> {figures['after']:.1f}%, "
                  f"{figures['samples']} samples, {figures['seconds']:.0f} s", flush=True)  # fmt: skip

    def mean_sd(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.fmean(values):.1f} ± {sd:.1f}"

    gains, per_sample = {}, {}
    for row, runs in rows.items():
        gains[row] = statistics.fmean(r["after"] - r["before"] for r in runs)
        per_sample[row] = statistics.fmean(r["seconds"] / r["samples"] for r in runs)
        print(f"{row:10s} after {mean_sd([r['after'] for r in runs])} %  gain {gains[row]:+.1f} points  "
              f"{per_sample[row]:.2f} s/sample")  # fmt: skip
    if "grpo" not in rows:
        return
    for row in [r for r in rows if r != "grpo"]:
        print(f"{row}: gain_ratio={gains[row] / gains['grpo'] if gains['grpo'] else float('nan'):.2f} "
              f"time_per_sample_ratio={per_sample[row] / per_sample['grpo']:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
