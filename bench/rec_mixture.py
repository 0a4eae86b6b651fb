"""Recommendation GRPO: the exact hit alone vs the verifier mixture of ``recipes/rec-grpo.yaml`` (issue 18).

Both rows start from the same generative recommender (``--sft``: a ``recipes/vrec.yaml`` run with
``vrec.thought_steps=0``; ``--make-sft N`` trains one on N windows first) and train ``--steps`` GRPO steps with the
recipe's settings, per seed: rollouts inside the catalogue (the recipe's ``constrain: ml-100k``), or free text with
``--free-text``. Reported per run, from ``metrics.jsonl``: the share of groups whose rewards were all equal (TRL's
``frac_reward_zero_std``: no advantage, no gradient), the mean reward and the exact-hit rate of the samples; with
``--n-eval N``, NDCG@10 / HR@10 of the starting and of each trained model on N held-out cases (``verirl rec eval``,
constrained beam search).

    OMP_NUM_THREADS=2 .venv/bin/python bench/rec_mixture.py --make-sft 600 --steps 8 --seeds 0 1 2 [--n-eval 200]

Last line: ``zero_std_exact=X zero_std_mixture=Y ratio=Y/X`` (target: ratio <= 0.5) and, with --n-eval, the NDCG@10
of both rows (mean ± sd over seeds; target: the mixture ahead by more than 2 sd).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

from verirl.devices import cpu_has_native_bf16

ROOT = Path(__file__).resolve().parents[1]
VERIRL = str(Path(sys.executable).parent / "verirl")
BF16 = ["--bf16"] if cpu_has_native_bf16() else []  # emulated bf16 autocast is ~100x slower (verirl/devices.py)
EXACT = [{"mixture": {"name": "exact", "members": ["rec_exact"]}}]


def make_sft(n: int, out: Path) -> None:
    if (out / "config.json").is_file():
        return
    sets = ["vrec.thought_steps=0", f"data.n_train={n}", "data.n_eval=1", f"output_dir={out}"]
    command = [VERIRL, "train", str(ROOT / "recipes" / "vrec.yaml"), *(a for s in sets for a in ("--set", s))]
    subprocess.run([*command, "--resume" if out.is_dir() else "--overwrite"], check=True, cwd=ROOT)


def grpo(row: str, seed: int, args: argparse.Namespace) -> dict:
    out = Path(args.runs) / f"{row}-s{seed}"
    if args.free_text:
        out = out.with_name(out.name + "-free")
    recipe = yaml.safe_load((ROOT / "recipes" / "rec-grpo.yaml").read_text())
    recipe["model"] = str(args.sft)
    if row == "exact":
        recipe["rewards"] = EXACT
    recipe["eval"] = {"enabled": False}
    if args.free_text:
        recipe["constrain"] = None
    recipe["args"].update(max_steps=args.steps, seed=seed, logging_steps=1, save_steps=args.steps)
    if args.lr is not None:
        recipe["args"]["learning_rate"] = args.lr
    recipe["output_dir"] = str(out)
    if not (out / "eval_results.json").is_file() or "train" not in json.loads((out / "eval_results.json").read_text()):
        path = out.with_suffix(".yaml")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
        subprocess.run([VERIRL, "train", str(path), "--resume" if out.is_dir() else "--overwrite"], check=True)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "frac_reward_zero_std" in r]
    figures = {
        "zero_std": statistics.fmean(r["frac_reward_zero_std"] for r in steps),
        "reward": statistics.fmean(r["reward"] for r in steps),
        "hit": statistics.fmean(next(v for k, v in r.items() if k.endswith("/rec_exact/mean")) for r in steps),
        "steps": len(steps),
    }
    if args.n_eval:
        figures.update(rank(out, args.n_eval, start=Path(args.sft)))
    return figures


def weights_digest(model: Path) -> str:
    """sha256 of the model's weight files, in name order."""
    digest = hashlib.sha256()
    for path in sorted(model.glob("*.safetensors")):
        with path.open("rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()


def rank(model: Path, n_eval: int, start: Path | None = None) -> dict[str, float]:
    """NDCG/HR of ``model`` on ``n_eval`` held-out cases (cached beside it: the eval is the slow part).

    A run whose weights are byte for byte the starting model's (every group of the exact-hit row scores 0: no
    gradient, and no weight decay) gets the start's figures: the beam search is deterministic."""
    cache = model / f"rec_eval_{n_eval}.txt"
    if not cache.is_file() and start is not None and weights_digest(model) == weights_digest(start):
        start_figures = rank(start, n_eval)
        cache.write_text(" ".join(f"{k}={v}" for k, v in start_figures.items()) + " same_weights_as_start=1")
    if not cache.is_file():
        result = subprocess.run(
            [VERIRL, "rec", "eval", "--model", str(model), "--n-eval", str(n_eval)] + BF16,
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        cache.write_text(result.stdout.strip().splitlines()[-1])
    line = cache.read_text()
    return {k: float(v) for k, v in (p.split("=") for p in line.split() if "=" in p)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sft", default="runs/rec-sft", help="the generative recommender GRPO starts from")
    parser.add_argument("--make-sft", type=int, default=0, help="train --sft first on this many windows")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--n-eval", type=int, default=0, help="held-out cases for NDCG/HR after training (0: skip)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the recipe's)")
    parser.add_argument("--free-text", action="store_true", help="free-text rollouts (the recipe without constrain)")
    parser.add_argument("--runs", default="runs/rec-mixture")
    args = parser.parse_args()

    if args.make_sft:
        make_sft(args.make_sft, Path(args.sft))
    if args.n_eval:
        start = rank(Path(args.sft), args.n_eval)
        print("start: " + " ".join(f"{k}={v:.4g}" for k, v in start.items()), flush=True)
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
        keys = ["zero_std", "reward", "hit"] + (["ndcg@10", "hr@10"] if args.n_eval else [])
        print(f"{row:8s} " + "  ".join(f"{k} {mean_sd(row, k)}" for k in keys))
    exact = statistics.fmean(f["zero_std"] for f in rows["exact"])
    mixture = statistics.fmean(f["zero_std"] for f in rows["mixture"])
    print(f"zero_std_exact={exact:.3f} zero_std_mixture={mixture:.3f} ratio={mixture / max(exact, 1e-9):.3f}")


if __name__ == "__main__":
    main()
