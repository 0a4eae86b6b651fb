"""What a verifier mixture of 4 cheap members costs in a GRPO step (issue 18's target: <= 5 %), in one run.

Two verirl GRPO trainers are built the way ``verirl train`` builds them, from the same weights and config (learning
rate 0, so both models stay identical and, with the RNG reseeded before every round, generate the same completions):
one rewarded by ``number_match`` alone, one by a ``mixture:`` of four members -- the verifier ``exact_answer``, the
reward ``number_match``, ``regex_format`` as a length check and ``regex_format`` as a constraint (the completion
starts with a number). Rounds alternate (A B B A ...) to spread machine noise over both.

    python bench/mixture_overhead.py            # SmolLM2-135M-Instruct, 4 rounds x 3 steps (~8 min on 2 CPU cores)
    python bench/mixture_overhead.py --quick    # tiny random model, seconds

Prints at the end ``mixture_share=X step_ratio=Y``: X = seconds spent inside the mixture's calls / seconds of the
mixture run's steps (its members, guards, gate, fusion and logging); Y = median s/step with the mixture / with
number_match alone (noisier: it includes machine noise between the runs).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

MIXTURE = {
    "name": "cheap4",
    "members": [
        "exact_answer",
        "number_match",
        {"name": "regex_format", "args": {"pattern": "^.{0,40}$"}, "label": "short"},
        {"name": "regex_format", "args": {"pattern": "^\\s*-?\\d"}, "label": "numeric", "kind": "constraint"},
    ],
    "timeout_s": 30,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--quick", action="store_true", help="tiny random model (smoke run)")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per round")
    args = parser.parse_args()

    import torch
    from transformers import PrinterCallback

    from verirl.data import load_data
    from verirl.models import load_model
    from verirl.recipes import validate
    from verirl.rl.config import build_trainer_config
    from verirl.rl.grpo import build_grpo_trainer

    work = Path(tempfile.mkdtemp(prefix="verirl-bench-"))
    model_spec = args.model
    if args.quick:
        from verirl.testing import tiny_model

        model_spec = str(tiny_model(work / "tiny"))

    def recipe(rewards: list, name: str):
        return validate(
            {
                "trainer": "grpo",
                "model": model_spec,
                "data": {"builtin": "arithmetic", "n_train": 256, "n_eval": 1, "max_operand": 50},
                "rewards": rewards,
                "args": {
                    "learning_rate": 1e-5,  # a recipe's rate must be > 0; the configs below train with 0
                    "max_steps": args.steps,
                    "num_generations": 8,
                    "per_device_train_batch_size": 16,
                    "max_completion_length": 24,
                    "beta": 0.0,
                    "gradient_checkpointing": False,
                    "logging_steps": 1,
                    "save_strategy": "no",
                    "report_to": "none",
                    "disable_tqdm": True,
                },
                "output_dir": str(work / name),
            },
            "bench/mixture_overhead.py",
        )

    single = recipe([{"name": "number_match", "timeout_s": 30}], "single")
    mixed = recipe([{"mixture": MIXTURE}], "mixture")
    train_ds, _ = load_data(single.data)
    model_a, tokenizer, _ = load_model(single.model.name)
    model_b = copy.deepcopy(model_a)
    trainers = {}
    for name, r, model in (("single", single, model_a), ("mixture", mixed, model_b)):
        config = build_trainer_config("grpo", {**r.trainer_args, "learning_rate": 0.0}, str(work / name))
        trainers[name] = build_grpo_trainer(r, model, tokenizer, train_ds, config, [])
        trainers[name].remove_callback(PrinterCallback)
    mixture = trainers["mixture"].reward_funcs[0].fn  # the MixtureReward behind the guard

    per_step: dict[str, list[float]] = {"single": [], "mixture": []}
    total = {"single": 0.0, "mixture": 0.0}
    for round_ in range(args.rounds):
        order = ["single", "mixture"] if round_ % 2 == 0 else ["mixture", "single"]
        for name in order:
            torch.manual_seed(1234 + round_)
            start = time.perf_counter()
            trainers[name].train()
            elapsed = time.perf_counter() - start
            total[name] += elapsed
            per_step[name].append(elapsed / args.steps)
            print(f"round {round_ + 1}/{args.rounds} {name:7s} {per_step[name][-1]:.3f} s/step", flush=True)

    share = mixture.seconds / total["mixture"]
    ratio = statistics.median(per_step["mixture"]) / statistics.median(per_step["single"])
    calls = mixture.members[0].guard.calls
    print(
        f"mixture: {calls} calls, {mixture.seconds * 1000 / max(calls, 1):.2f} ms per call of 16 completions "
        f"({len(mixture.members)} members); steps: {total['mixture']:.1f} s"
    )
    print(f"mixture_share={share:.4f} step_ratio={ratio:.3f}")


if __name__ == "__main__":
    main()
