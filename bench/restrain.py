"""RESTRAIN vs GRPO with gold labels vs majority-vote pseudo-labels: equal budgets, one model, one task.

Three runs of `recipes/restrain-arithmetic.yaml` through `verirl train` (same model, data, steps, batch, sampling
temperature and seed), differing only in what the advantages come from:

  (a) gold      GRPO with the gold `answer` (number_match reward)              -- the upper bound, uses labels
  (b) majority  GRPO with the group's majority answer as the label (TTRL-like)  -- label-free
  (c) restrain  RESTRAIN advantages (all answers weighted, self-penalisation, prompt weights) -- label-free

Held-out accuracy (greedy, gold answers, 100 prompts never trained on) before and after each run. The last line is
`restrain_vs_gold_gain=X restrain_minus_majority=Y`: X = (c's gain) / (a's gain), Y = (c after) - (b after), in
accuracy points. Targets (issue 6): X >= 0.7 and Y >= 0.

    python bench/restrain.py            # 60 steps per run, ~45 min on 2 CPU cores
    python bench/restrain.py --quick    # 6 steps per run, 50 eval prompts: a smoke run (~6 min)
    python bench/restrain.py --restrain-set advantage.kappa=0.25 --restrain-set advantage.delta=0.25
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
RECIPE = ROOT / "recipes" / "restrain-arithmetic.yaml"

VARIANTS = {
    "gold": ["advantage={name: grpo}", "rewards=[{name: number_match, weight: 1.0}]"],
    "majority": [
        "advantage={name: grpo}",
        "rewards=[{name: majority_vote, weight: 1.0}, {name: number_match, weight: 0.0}]",
    ],
    "restrain": [],
}


def run(name: str, overrides: list[str], out: Path) -> dict:
    verirl = str(Path(sys.executable).parent / "verirl")
    cmd = [verirl, "train", str(RECIPE), "--overwrite", "--set", f"output_dir={out / name}"]
    for item in overrides:
        cmd += ["--set", item]
    start = time.time()
    log = out / f"{name}.log"
    with log.open("w") as handle:
        code = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, env=os.environ.copy()).returncode
    if code != 0:
        raise SystemExit(f"{name}: verirl train failed with exit code {code}; see {log}")
    results = json.loads((out / name / "eval_results.json").read_text())
    results["wall_seconds"] = time.time() - start
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench-restrain"))
    parser.add_argument("--set", dest="extra", action="append", default=[], help="extra --set for every run")
    parser.add_argument("--reuse", action="store_true", help="keep runs in --out that already finished")
    parser.add_argument(
        "--restrain-set", action="append", default=[], help="extra --set for the RESTRAIN run only (kappa, delta, ...)"
    )
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    extra = list(args.extra)
    if args.quick:
        extra += ["args.max_steps=6", "data.n_eval=50", "data.n_train=48"]
    table = {}
    for name, overrides in VARIANTS.items():
        done = out / name / "eval_results.json"
        if args.reuse and done.is_file() and "after" in json.loads(done.read_text()):
            table[name] = json.loads(done.read_text())
            table[name]["wall_seconds"] = table[name].get("worker_seconds", 0.0)
            print(f"reusing {name} from {done}", flush=True)
        else:
            print(f"running {name} ...", flush=True)
            table[name] = run(name, overrides + extra + (args.restrain_set if name == "restrain" else []), out)
        r = table[name]
        print(
            f"  {name:9s} before {100 * r['before']['accuracy']:5.1f}%  after {100 * r['after']['accuracy']:5.1f}%  "
            f"train {r['train']['seconds']:.0f} s  wall {r['wall_seconds']:.0f} s",
            flush=True,
        )
    gain = {k: 100 * (v["after"]["accuracy"] - v["before"]["accuracy"]) for k, v in table.items()}
    print("\n| run | before | after | gain (points) | wall time |")
    print("|---|---|---|---|---|")
    for name, r in table.items():
        print(
            f"| {name} | {100 * r['before']['accuracy']:.1f}% | {100 * r['after']['accuracy']:.1f}% | "
            f"{gain[name]:+.1f} | {r['wall_seconds'] / 60:.1f} min |"
        )
    ratio = gain["restrain"] / gain["gold"] if gain["gold"] > 0 else float("nan")
    diff = 100 * (table["restrain"]["after"]["accuracy"] - table["majority"]["after"]["accuracy"])
    print(f"\nrestrain_vs_gold_gain={ratio:.2f} restrain_minus_majority={diff:+.1f}")


if __name__ == "__main__":
    main()
