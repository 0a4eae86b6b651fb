"""Reward hacking: GRPO on the quickstart task rewarded by a learnt reward model alone vs the same model in a verifier
mixture with a rule and a constraint (issue 18), measured against the gold rule the reward model was learnt from.

The reward model comes from ``verirl train recipes/reward-model.yaml`` (SmolLM2-135M with a one-logit head, trained on
pairs of SmolLM2's own answers labelled by ``number_match``). Rows, per seed, both from ``recipes/quickstart.yaml``
with its ``rewards`` replaced:

* ``rm``: a mixture of the reward model alone (one member: its reward is the model's calibrated probability);
* ``mixture``: the reward model, the rule ``format`` (the answer is a bare number, as the prompt asks; gate 0.5) and
  the constraint ``short`` (at most 40 characters, else the reward is 0), guide ``mean``;
* ``calc``: the reward model and the label-free calculator ``arithmetic_check`` (every result the completion states,
  "a + b = c", must hold; not applicable without one) as reward members at equal gates, guide ``min``, and the
  constraint ``number`` (the completion holds a digit; the start's samples nearly all do);
* ``shown``: ``calc`` with the calculator's ``missing: 0``: a completion that states no result it can check scores 0
  with it (in ``calc`` the policy learnt to state none, seed 0);
* ``checked``: the reward model with two constraints and no other reward member: the label-free calculator
  ``arithmetic_check`` (every equation the completion states must hold, else the reward is 0; not applicable to a
  completion without one) and ``short``. Only the reward model gives credit; the constraints only floor (seed 1:
  the policy escaped the calculator by dropping the '=', docs/benchmarks.md);
* ``mixture-min``: the first design, kept for the record: the same rule at gate 1, a 12-character constraint and
  guide ``min`` (docs/benchmarks.md: the rule almost never held, so the guide pulled every reward toward 0).

Every row also carries ``number_match`` with weight 0: it does not train, but TRL logs it per step
(``rewards/number_match/mean``: gold accuracy of the policy's own samples), next to the reward model's mean score.
Held-out gold accuracy (100 problems, greedy) before and after comes from verirl's eval (``eval.reward:
number_match``).

    OMP_NUM_THREADS=2 .venv/bin/python bench/reward_hacking.py --rm runs/reward-model [--seeds 0 1 2] [--steps 30] \
        [--rows rm shown] [--scale-rewards group|batch|none]

Prints per run the reward-model score and the gold accuracy every 5 steps, then per row the held-out gold accuracy
(mean ± sd over seeds) and ``gold_gain[ROW]=X`` (ROW minus rm, points). Target: X >= 10.
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
VERIRL = str(Path(sys.executable).parent / "verirl")
ROWS = ("rm", "mixture", "calc", "shown", "checked", "mixture-min")


def rewards(row: str, rm: str) -> list[dict]:
    model = {"name": "reward_model", "args": {"model": rm}, "label": "rm"}
    members: list = [model]
    options: dict = {}
    if row == "mixture":  # a soft rule and a loose length guard; the guide is the gate-weighted mean
        members += [
            {"name": "regex_format", "args": {"pattern": "^\\s*-?\\d+\\s*$"}, "label": "format", "gate": 0.5},
            {"name": "regex_format", "args": {"pattern": "^.{0,40}$"}, "label": "short", "kind": "constraint"},
        ]
        options = {"guide": "mean"}
    elif row in ("calc", "shown"):  # the label-free calculator as a reward member, a constraint the start meets
        # shown: a completion that states no result scores 0 with the calculator (show the work), not None
        calculator = {"name": "arithmetic_check", "label": "arithmetic"}
        if row == "shown":
            calculator["args"] = {"missing": 0.0}
        members += [
            calculator,
            {"name": "regex_format", "args": {"pattern": "\\d"}, "label": "number", "kind": "constraint"},
        ]
    elif row == "checked":  # constraints only: the calculator floors false equations, the length guard garbage
        members += [
            {"name": "arithmetic_check", "label": "arithmetic", "kind": "constraint"},
            {"name": "regex_format", "args": {"pattern": "^.{0,40}$"}, "label": "short", "kind": "constraint"},
        ]
    elif row == "mixture-min":  # the first design: guide min, the rule at full gate, a 12-character constraint
        members += [
            {"name": "regex_format", "args": {"pattern": "^\\s*-?\\d+\\s*$"}, "label": "format"},
            {"name": "regex_format", "args": {"pattern": "^.{0,12}$"}, "label": "short", "kind": "constraint"},
        ]
    return [{"mixture": {"name": row, "members": members, **options}}, {"name": "number_match", "weight": 0.0}]


def name(row: str, seed: int, args: argparse.Namespace) -> str:
    return f"{row}-s{seed}" if args.scale_rewards == "group" else f"{row}-{args.scale_rewards}-s{seed}"


def run(row: str, seed: int, args: argparse.Namespace) -> dict:
    out = Path(args.runs) / name(row, seed, args)
    results = out / "eval_results.json"
    if results.is_file() and "after" in json.loads(results.read_text()):
        return json.loads(results.read_text())
    recipe = yaml.safe_load((ROOT / "recipes" / "quickstart.yaml").read_text())
    recipe["rewards"] = rewards(row, args.rm)
    recipe["eval"] = {**recipe.get("eval", {}), "reward": "number_match"}
    recipe["args"].update(max_steps=args.steps, seed=seed, logging_steps=1, save_steps=args.steps)
    if args.scale_rewards != "group":
        recipe["args"]["scale_rewards"] = args.scale_rewards
    recipe["output_dir"] = str(out)
    path = Path(args.runs) / f"{name(row, seed, args)}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    subprocess.run([VERIRL, "train", str(path), "--resume" if out.is_dir() else "--overwrite"], check=True)
    return json.loads(results.read_text())


def curve(out: Path, row: str, every: int) -> list[str]:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    lines = []
    for r in records:
        step = r.get("step")
        if "rewards/number_match/mean" in r and step and step % every == 0:
            lines.append(
                f"  step {step:3d}: rm score {r.get(f'mixture/{row}/rm/mean', float('nan')):.3f}  "
                f"gold (own samples) {r['rewards/number_match/mean']:.3f}  reward {r.get('reward', float('nan')):.3f}"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rm", default="runs/reward-model", help="a trained reward model (trainer: reward_model)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", default=["rm", "mixture"], choices=list(ROWS))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--runs", default="runs/reward-hacking")
    parser.add_argument(
        "--scale-rewards",
        default="group",
        choices=["group", "batch", "none"],
        help="GRPOConfig.scale_rewards for every row (none: Dr. GRPO's unscaled advantages); runs named ROW-SCALE-sN",
    )
    args = parser.parse_args()

    after: dict[str, list[float]] = {row: [] for row in args.rows}
    before = []
    for seed in args.seeds:
        for row in args.rows:
            results = run(row, seed, args)
            after[row].append(100 * results["after"]["accuracy"])
            before.append(100 * results["before"]["accuracy"])
            print(f"{row} seed {seed}: held-out gold {before[-1]:.1f}% -> {after[row][-1]:.1f}%")
            print("\n".join(curve(Path(args.runs) / name(row, seed, args), row, 5)))

    def summary(values: list[float]) -> str:
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.fmean(values):.1f} ± {sd:.1f}"

    print(f"held-out gold accuracy before: {summary(before)} %")
    for row in args.rows:
        print(f"{row:8s} after {args.steps} steps: {summary(after[row])} % (seeds {args.seeds})")
    for row in args.rows:
        if row != "rm" and "rm" in args.rows:
            print(f"gold_gain[{row}]={statistics.fmean(after[row]) - statistics.fmean(after['rm']):.1f}")


if __name__ == "__main__":
    main()
