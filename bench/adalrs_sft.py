"""AdaLRS on a real SFT stage (issue 19): SmolLM2-135M-Instruct fine-tuned on two-digit multiplication, ``23*17=`` ->
``391`` as plain text (no chat template: a pretraining-style stage, and short sequences keep a CPU sweep
affordable).

A sweep of fixed learning rates (``--rates``, cosine schedule, ``--steps`` steps of 8 problems, the same data order)
finds the best fixed rate by held-out loss (the completion tokens' mean NLL on 200 problems never trained on); then
``callbacks: [{name: adalrs, window: 8}]`` (the paper's alpha, beta, lambda and search window) starts from 10x below
and 10x above that rate. Each run is ``verirl train`` on a recipe; finished runs are read back. Prints per run the
held-out loss, the last-window training loss and the final AdaLRS scale; writes the rates' trajectories to ``--plot``;
last line:

    from_small=X from_large=Y   (AdaLRS's held-out loss over the best fixed rate's; target <= 1.05 both)

    OMP_NUM_THREADS=2 .venv/bin/python bench/adalrs_sft.py [--steps 160] [--rates 3e-5 1e-4 3e-4 1e-3] [--window 8]
        [--max-operand 50] [--start 0.1] [--runs runs/adalrs-sft] [--plot docs/adalrs_sft.png]
        [--schedule STEP:SCALE ...]   (replays a search's rates from best / 10, e.g. the search with no wasted trial)
        [--lora R]   (a LoRA adapter of rank R, alpha 2R, on every linear layer, instead of full fine-tuning)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from transformers import TrainerCallback

from verirl.rl.adalrs import rescale_schedule

ROOT = Path(__file__).resolve().parents[1]
VERIRL = str(Path(sys.executable).parent / "verirl")
BATCH = 8
N_HELD_OUT = 200
TEMPLATE = "{a}{op}{b}="


class StepScale(TrainerCallback):
    """A fixed piecewise rescaling of the base schedule, ``{step: scale}`` (the scale from that step on): replays the
    rates a search would have set, without searching (``--schedule``)."""

    def __init__(self, scales: dict[str, float]):
        self.scales = {int(step): float(scale) for step, scale in scales.items()}
        self.scale = 1.0

    def on_step_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None, lr_scheduler: Any = None,
                      **kwargs: Any) -> None:  # fmt: skip
        if state.global_step in self.scales:
            rescale_schedule(self.scales[state.global_step] / self.scale, optimizer, lr_scheduler)
            self.scale = self.scales[state.global_step]


def step_scale(item: str) -> tuple[str, float]:
    """``--schedule``'s STEP:SCALE (a global step, a positive factor on the configured rate)."""
    step, _, scale = item.partition(":")
    try:
        if int(step) >= 0 and float(scale) > 0:
            return step, float(scale)
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected STEP:SCALE (a step >= 0, a scale > 0), got {item!r}")


def write_data(out: Path, steps: int, max_operand: int) -> tuple[Path, list[dict]]:
    from verirl.data import arithmetic

    train, held_out = arithmetic(n_train=steps * BATCH, n_eval=N_HELD_OUT, seed=0, min_operand=2,
                                 max_operand=max_operand, ops=["*"], template=TEMPLATE)  # fmt: skip
    pairs = [{"prompt": r["question"], "completion": r["answer"]} for r in train]
    path = out / "train.jsonl"
    out.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    return path, held_out


def train(name: str, rate: float, adalrs: bool, data: Path, args: argparse.Namespace,
          schedule: dict[str, float] | None = None) -> Path:  # fmt: skip
    out = Path(args.runs) / name
    if (out / "model.safetensors").is_file() or (out / "adapter_model.safetensors").is_file():
        return out
    model: Any = "smollm2-135m-instruct"
    if args.lora:
        model = {"name": model, "lora": {"r": args.lora, "lora_alpha": 2 * args.lora, "target_modules": "all-linear"}}
    recipe = {
        "trainer": "sft",
        "model": model,
        "data": {"path": "json", "data_files": str(data), "n_eval": 1, "seed": 0, "chat": False},
        "args": {
            "learning_rate": rate,
            "max_steps": args.steps,
            "per_device_train_batch_size": BATCH,
            "lr_scheduler_type": "cosine",
            "warmup_steps": max(1, args.steps // 20),
            "gradient_checkpointing": False,
            "logging_steps": 1,
            "save_strategy": "no",
            "seed": 0,
            "report_to": "none",
        },  # fmt: skip
        "output_dir": str(out),
    }
    if adalrs:
        recipe["callbacks"] = [{"name": "adalrs", "window": args.window, "start": args.start}]
    if schedule:
        recipe["callbacks"] = [{"name": "adalrs_sft:StepScale", "scales": schedule}]
    path = out.parent / f"{out.name}.yaml"  # not with_suffix: "fixed-0.0001" has a dot
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    paths = [str(ROOT / "bench"), os.environ.get("PYTHONPATH", "")]  # --schedule's callback lives here
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    subprocess.run([VERIRL, "train", str(path), "--overwrite"], check=True, cwd=ROOT, env=env)
    return out


def held_out_loss(model_dir: Path, rows: list[dict]) -> float:
    """Mean NLL per completion token (the answer and the end-of-text TRL's SFTTrainer appends to it)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    # a --lora run's directory holds an adapter: transformers loads its base model and attaches it
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            prompt = tokenizer(row["question"])["input_ids"]
            completion = tokenizer(row["answer"])["input_ids"] + [tokenizer.eos_token_id]
            ids = torch.tensor([prompt + completion])
            logits = model(ids).logits[0, len(prompt) - 1 : -1]
            total += float(torch.nn.functional.cross_entropy(logits, ids[0, len(prompt) :], reduction="sum"))
            count += len(completion)
    return total / count


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]


def summary(out: Path, rows: list[dict], tail: int) -> dict:
    cached = out / "held_out.json"
    if not cached.is_file():
        cached.write_text(json.dumps({"held_out_loss": held_out_loss(out, rows)}))
    logged = metrics(out)
    return {
        "held_out": json.loads(cached.read_text())["held_out_loss"],
        "train_tail": sum(m["loss"] for m in logged[-tail:]) / min(tail, len(logged)),
        "scale": logged[-1].get("adalrs/lr_scale", 1.0),
        "rates": [(m["step"], m["learning_rate"]) for m in logged],
    }


def plot(results: dict[str, dict], best: str, path: Path, steps: int, start: float, lora: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, res in results.items():
        if name.startswith("adalrs") or name == best:
            steps_, rates = zip(*res["rates"], strict=True)
            style = "-" if name.startswith("adalrs") else "--"
            ax.plot(steps_, rates, style, label=f"{name} (held-out {res['held_out']:.3f})")
    ax.axvspan(start * steps, 0.4 * steps, color="0.9", label="AdaLRS search window")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title(f"AdaLRS on SmolLM2-135M {f'LoRA (r={lora}) ' if lora else ''}SFT (multiplication answers)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=160)
    parser.add_argument("--rates", type=float, nargs="+", default=[3e-5, 1e-4, 3e-4, 1e-3])
    parser.add_argument("--window", type=int, default=8, help="AdaLRS: logged losses per velocity estimate")
    parser.add_argument("--max-operand", type=int, default=50, help="factors in 2..N (2..50: 2,401 problems)")
    parser.add_argument("--start", type=float, default=0.1, help="AdaLRS: where the search opens (paper: 0.1)")
    parser.add_argument("--runs", default="runs/adalrs-sft")
    parser.add_argument("--lora", type=int, default=0, metavar="R", help="train a LoRA adapter of rank R (0: full)")
    parser.add_argument("--plot", default="docs/adalrs_sft.png")
    parser.add_argument(
        "--schedule",
        nargs="+",
        type=step_scale,
        metavar="STEP:SCALE",
        help="instead of the searches: one run from "
        "the best rate / 10 whose rate is scaled by SCALE from global step STEP on (replays a search)",
    )
    args = parser.parse_args()
    data, rows = write_data(Path(args.runs), args.steps, args.max_operand)
    tail = max(1, args.steps // 10)
    results: dict[str, dict] = {}
    for rate in args.rates:
        name = f"fixed-{rate:g}"
        results[name] = summary(train(name, rate, False, data, args), rows, tail)
        res = results[name]
        print(f"{name}: held-out {res['held_out']:.4f}  train (last {tail}) {res['train_tail']:.4f}", flush=True)
    best = min((n for n in results), key=lambda n: results[n]["held_out"])
    best_rate = float(best.removeprefix("fixed-"))
    print(f"best fixed rate {best_rate:g}: held-out {results[best]['held_out']:.4f}", flush=True)
    if args.schedule:
        scales = dict(args.schedule)
        name = "schedule-from-small-" + "-".join(f"{k}x{v}" for k, v in scales.items())
        res = summary(train(name, best_rate / 10, False, data, args, schedule=scales), rows, tail)
        print(f"{name}: held-out {res['held_out']:.4f}  train (last {tail}) {res['train_tail']:.4f}")
        print(f"schedule_over_best={res['held_out'] / results[best]['held_out']:.3f}")
        return
    suffix = f"-start{args.start:g}" if args.start != 0.1 else ""  # runs at the paper's opening keep their names
    for start, label in ((best_rate / 10, "small"), (best_rate * 10, "large")):
        name = f"adalrs-from-{label}{suffix}"
        results[name] = summary(train(name, start, True, data, args), rows, tail)
        res = results[name]
        print(f"{name} (start {start:g}): held-out {res['held_out']:.4f}  train (last {tail}) "
              f"{res['train_tail']:.4f}  final rate scale x{res['scale']:.3g} -> {start * res['scale']:.3g}",
              flush=True)  # fmt: skip
    plot(results, best, Path(args.plot), args.steps, args.start, args.lora)
    ratios = {
        k: results[f"adalrs-from-{k}{suffix}"]["held_out"] / results[best]["held_out"] for k in ("small", "large")
    }
    print(" ".join(f"from_{k}={v:.3f}" for k, v in ratios.items()) + "   (target <= 1.05 both)")
    if not all(math.isfinite(v) for v in ratios.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
