"""VRec against its baselines on one MovieLens-100k split (docs/benchmarks.md, "Generative recommendation").

Trains ``recipes/vrec.yaml`` as three rows -- ``sft`` (thought_steps 0: the plain generative recommender),
``thought`` (mixture false) and ``vrec`` -- for each seed (``args.seed``: initialisation and data order; the
training subset and the 1,000 test cases are the same for every run), through ``verirl train`` into
``runs/rec-bench/ROW-sSEED`` (a finished run is reused, an unfinished one resumed), then prints one line per run and
the mean ± sd of every metric per row, MostPop on the same cases, and the unconstrained invalid-title rate of each
row's first seed.

    OMP_NUM_THREADS=2 .venv/bin/python bench/rec_vrec.py [--seeds 0 1 2] [--rows sft thought vrec] [--set K=V ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VERIRL = str(Path(sys.executable).parent / "verirl")
ROWS = {"sft": ["vrec.thought_steps=0"], "thought": ["vrec.mixture=false"], "vrec": []}
KEYS = ("ndcg@1", "ndcg@5", "ndcg@10", "hr@1", "hr@5", "hr@10")


def train(row: str, seed: int, extra: list[str], out: Path) -> dict:
    results = out / "eval_results.json"
    if results.is_file() and "test" in json.loads(results.read_text()):
        return json.loads(results.read_text())
    sets = [*ROWS[row], f"args.seed={seed}", f"output_dir={out}", *extra]
    command = [VERIRL, "train", str(ROOT / "recipes" / "vrec.yaml"), *(a for s in sets for a in ("--set", s))]
    command.append("--resume" if out.is_dir() else "--overwrite")
    subprocess.run(command, check=True, cwd=ROOT)
    return json.loads(results.read_text())


def invalid_rate(out: Path, n: int) -> float:
    from verirl.rec.evaluate import invalid_title_rate, load_recommender
    from verirl.rec.movielens import load_movielens
    from verirl.rec.tasks import ml_100k

    model, tokenizer = load_recommender(out)
    _, rows = ml_100k(n_train=1, n_eval=n, seed=0)
    return invalid_title_rate(model, tokenizer, rows, load_movielens().titles())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS))
    parser.add_argument("--set", action="append", default=[], help="more recipe overrides (all rows)")
    parser.add_argument("--runs", default="runs/rec-bench")
    parser.add_argument("--invalid-cases", type=int, default=200, help="cases for the unconstrained figure (0: skip)")
    args = parser.parse_args()

    from verirl.rec.metrics import most_popular, ranking_metrics, summary_line
    from verirl.rec.movielens import load_movielens
    from verirl.rec.tasks import sample_of

    table: dict[str, list[dict]] = {}
    for row in args.rows:
        for seed in args.seeds:
            out = ROOT / args.runs / f"{row}-s{seed}"
            results = train(row, seed, args.set, out)
            test, stages = results["test"], results.get("stages", {})
            times = " ".join(f"{k}={v['seconds']:.0f}s" for k, v in stages.items())
            line = summary_line({k: test[k] for k in KEYS})
            print(f"{row} seed={seed} {line} users_per_s={test['users_per_s']} {times}")
            table.setdefault(row, []).append(test)
    print()
    for row, runs in table.items():
        cells = []
        for key in KEYS:
            values = [r[key] for r in runs]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            cells.append(f"{key}={statistics.mean(values):.4f}±{sd:.4f}")
        print(f"{row} ({len(runs)} seeds): {' '.join(cells)}")
    ml = load_movielens()
    cases = sample_of(ml.test, 1000, 0)
    pop = ranking_metrics([most_popular([s.target for s in ml.train])] * len(cases), [s.target for s in cases])
    print(f"mostpop: {summary_line(pop)}")
    if args.invalid_cases:
        for row in table:
            rate = invalid_rate(ROOT / args.runs / f"{row}-s{args.seeds[0]}", args.invalid_cases)
            print(f"{row} unconstrained greedy: invalid_title_rate={rate:.3f} ({args.invalid_cases} cases)")


if __name__ == "__main__":
    main()
