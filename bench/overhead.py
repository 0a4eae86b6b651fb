"""verirl's GRPO step vs a plain ``trl.GRPOTrainer`` step: same model, config, reward and samples, in one run.

Both trainers are built in this process from the same weights and the same GRPOConfig. verirl's trainer is built the
way ``verirl train`` builds it (recipe -> guarded rewards -> metrics callback); the plain one gets the raw reward
function and no callbacks. The learning rate is 0 so the two models stay identical, and the RNG is reseeded before
every round, so both generate exactly the same completions: the workloads are equal and the ratio isolates
verirl's overhead. Rounds alternate (A B A B ...) to spread machine noise over both.

    python bench/overhead.py            # SmolLM2-135M-Instruct, 4 rounds x 3 steps (~6 min on 2 CPU cores)
    python bench/overhead.py --quick    # tiny random model, seconds
    python bench/overhead.py --model DIR --fp32 --completion-length 128   # on a GPU: float32, longer completions

Prints one line at the end: ``overhead_ratio=X`` (verirl seconds per step / plain TRL seconds per step).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--quick", action="store_true", help="tiny random model (smoke run)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per round")
    parser.add_argument("--completion-length", type=int, default=24, help="max_completion_length")
    parser.add_argument("--fp32", action="store_true", help="bf16: false (default: TRL's, bf16 where it runs)")
    args = parser.parse_args()

    import torch
    from trl import GRPOTrainer

    from verirl.data import load_data
    from verirl.models import load_model
    from verirl.recipes import validate
    from verirl.rewards.builtin import number_match
    from verirl.rl.callbacks import MetricsJSONLCallback
    from verirl.rl.config import build_trainer_config
    from verirl.rl.grpo import build_grpo_trainer

    work = Path(tempfile.mkdtemp(prefix="verirl-bench-"))
    model_spec = args.model
    if args.quick:
        from verirl.testing import tiny_model

        model_spec = str(tiny_model(work / "tiny"))
    recipe = validate(
        {
            "trainer": "grpo",
            "model": model_spec,
            "data": {"builtin": "arithmetic", "n_train": 256, "n_eval": 1, "max_operand": 50},
            "rewards": [{"name": "number_match", "timeout_s": 30}],
            "args": {
                "learning_rate": 1e-5,  # a recipe's rate must be > 0; the configs below train with 0
                "max_steps": args.steps,
                "num_generations": 8,
                "per_device_train_batch_size": 16,
                "max_completion_length": args.completion_length,
                "beta": 0.0,
                "gradient_checkpointing": False,
                "logging_steps": 1,
                "save_strategy": "no",
                "report_to": "none",
                "disable_tqdm": True,
                **({"bf16": False} if args.fp32 else {}),
            },
            "output_dir": str(work / "verirl"),
        },
        "bench/overhead.py",
    )
    train_ds, _ = load_data(recipe.data)
    model_a, tokenizer, _ = load_model(recipe.model.name)
    model_b = copy.deepcopy(model_a)

    frozen = {**recipe.trainer_args, "learning_rate": 0.0}  # both models stay identical: equal workloads
    config_verirl = build_trainer_config("grpo", frozen, str(work / "verirl"))
    config_plain = build_trainer_config("grpo", frozen, str(work / "plain"))
    (work / "verirl").mkdir(parents=True, exist_ok=True)
    verirl_trainer = build_grpo_trainer(
        recipe, model_a, tokenizer, train_ds, config_verirl, [MetricsJSONLCallback(work / "verirl" / "metrics.jsonl")]
    )
    plain_trainer = GRPOTrainer(
        model=model_b,
        reward_funcs=[number_match],
        args=config_plain,
        train_dataset=train_ds,
        processing_class=tokenizer,
    )

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"device: {device}, bf16: {config_verirl.bf16}, 16 completions per step, <= {args.completion_length} tokens")

    from transformers import PrinterCallback

    for trainer in (verirl_trainer, plain_trainer):
        trainer.remove_callback(PrinterCallback)  # keep the output to the timing lines

    per_step: dict[str, list[float]] = {"verirl": [], "trl": []}
    for round_ in range(args.rounds):
        order = [("trl", plain_trainer), ("verirl", verirl_trainer)]
        if round_ % 2:
            order.reverse()
        for name, trainer in order:
            torch.manual_seed(1234 + round_)
            start = time.perf_counter()
            trainer.train()
            per_step[name].append((time.perf_counter() - start) / args.steps)
            print(f"round {round_ + 1}/{args.rounds} {name:6s} {per_step[name][-1]:.3f} s/step", flush=True)

    verirl_s, trl_s = statistics.median(per_step["verirl"]), statistics.median(per_step["trl"])
    print(f"median s/step: verirl {verirl_s:.3f}, plain trl {trl_s:.3f} ({args.rounds} rounds x {args.steps} steps)")
    print(f"overhead_ratio={verirl_s / trl_s:.3f}")


if __name__ == "__main__":
    main()
