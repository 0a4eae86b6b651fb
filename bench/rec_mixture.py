"""Recommendation GRPO: the exact hit alone vs the verifier mixture of ``recipes/rec-grpo.yaml`` (issue 18).

Both rows start from the same generative recommender (``--sft``: a ``recipes/vrec.yaml`` run with
``vrec.thought_steps=0``; ``--make-sft N`` trains one on N windows first) and train ``--steps`` GRPO steps with the
recipe's settings, per seed. Reported per run, from ``metrics.jsonl``: the share of groups whose rewards were all equal
(TRL's ``frac_reward_zero_std``: no advantage, no gradient) and the mean reward; with ``--n-eval N``, NDCG@10 / HR@10
of the trained model on N held-out cases (``verirl rec eval``, constrained beam search).

    OMP_NUM_THREADS=2 .venv/bin/python bench/rec_mixture.py --make-sft 600 --steps 8 --seeds 0 1 2 [--n-eval 200]

Last line: ``zero_std_exact=X zero_std_mixture=Y ratio=Y/X`` (target: ratio <= 0.5) and, with --n-eval, the NDCG@10
of both rows (mean ± sd over seeds; target: the mixture ahead by more than 2 sd).
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
EXACT = [{"mixture": {"name": "exact", "members": ["rec_exact"]}}]


def make_sft(n: int, out: Path) -> None:
    if (out / "config.json").is_file():
        return
    sets = ["vrec.thought_steps=0", f"data.n_train={n}", "data.n_eval=1", f"output_dir={out}"]
    command = [VERIRL, "train", str(ROOT / "recipes" / "vrec.yaml"), *(a for s in sets for a in ("--set", s))]
    subprocess.run([*command, "--resume" if out.is_dir() else "--overwrite"], check=True, cwd=ROOT)


def grpo(row: str, seed: int, args: argparse.Namespace) -> dict:
    out = Path(args.runs) / f"{row}-s{seed}"
    recipe = yaml.safe_load((ROOT / "recipes" / "rec-grpo.yaml").read_text())
    recipe["model"] = str(args.sft)
    if row == "exact":
        recipe["rewards"] = EXACT
    recipe["eval"] = {"enabled": False}
    recipe["args"].update(max_steps=args.steps, seed=seed, logging_steps=1, save_steps=args.steps)
    recipe["output_dir"] = str(out)
    if not (out / "eval_results.json").is_file() or "train" not in json.loads((out / "eval_results.json").read_text()):
        path = Path(args.runs) / f"{row}-s{seed}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        subprocess.run([VERIRL, "train", str(path), "--resume" if out.is_dir() else "--overwrite"], check=True)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "frac_reward_zero_std" in r]
    figures = {
        "zero_std": statistics.fmean(r["frac_reward_zero_std"] for r in steps),
        "reward": statistics.fmean(r["reward"] for r in steps),
        "steps": len(steps),
    }
    if args.n_eval:
        result = subprocess.run(
            [VERIRL, "rec", "eval", "--model", str(out), "--n-eval", str(args.n_eval), "--bf16"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        line = result.stdout.strip().splitlines()[-1]
        figures.update({k: float(v) for k, v in (p.split("=") for p in line.split() if "=" in p)})
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sft", default="runs/rec-sft", help="the generative recommender GRPO starts from")
    parser.add_argument("--make-sft", type=int, default=0, help="train --sft first on this many windows")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--n-eval", type=int, default=0, help="held-out cases for NDCG/HR after training (0: skip)")
    parser.add_argument("--runs", default="runs/rec-mixture")
    args = parser.parse_args()

    if args.make_sft:
        make_sft(args.make_sft, Path(args.sft))
    rows: dict[str, list[dict]] = {"exact": [], "mixture": []}
    for seed in args.seeds:
        for row in rows:
            rows[row].append(grpo(row, seed, args))
            print(f"{row} seed {seed}: " + " ".join(f"{k}={v:.4g}" for k, v in rows[row][-1].items()), flush=True)

    def mean_sd(row: str, key: str) -> str:
        values = [f[key] for f in rows[row]]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.fmean(values):.4f} ± {sd:.4f}"

    for row in rows:
        keys = ["zero_std", "reward"] + (["ndcg@10", "hr@10"] if args.n_eval else [])
        print(f"{row:8s} " + "  ".join(f"{k} {mean_sd(row, k)}" for k in keys))
    exact = statistics.fmean(f["zero_std"] for f in rows["exact"])
    mixture = statistics.fmean(f["zero_std"] for f in rows["mixture"])
    print(f"zero_std_exact={exact:.3f} zero_std_mixture={mixture:.3f} ratio={mixture / max(exact, 1e-9):.3f}")


if __name__ == "__main__":
    main()
