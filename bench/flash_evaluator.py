"""FlashEvaluator vs the pointwise baseline: throughput at K in {4, 8, 16, 32, 64} and selection accuracy.

Both evaluators have the same backbone and the same parameters (the pointwise baseline is FlashEvaluator with
``cross_candidate=False``): the joint one encodes the context once and scores a group of K in one pass (identical
candidates encoded once), the pointwise one scores each candidate in its own pass (context re-encoded each time).

Groups come from a `verirl evaluator train` run (``--groups-from runs/flash-evaluator``: SmolLM2-135M samples on
held-out arithmetic, labelled by number_match), or, with ``--quick``, from the model-free NoisyArithmeticGenerator
(a smoke run: ~3 minutes on 2 CPU cores). Timing groups are separate prompts with 64 candidates each; smaller K use
their first K candidates. Candidates/s is measured over the same groups for both, alternating, best of 3 repeats.

The last line: ``speedup_k16=X flash_acc=Y pointwise_acc=Z`` (X: joint / pointwise candidates per second at K = 16;
Y, Z: share of held-out groups, among those where the choice matters, in which the evaluator's top-1 has the best
reward). Targets (issue 7): X >= 8, Y >= Z, time(K=64) / time(K=4) <= 4 for the joint evaluator.

    python bench/flash_evaluator.py --groups-from runs/flash-evaluator
    python bench/flash_evaluator.py --quick
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import fields
from pathlib import Path

KS = (4, 8, 16, 32, 64)


def synthetic_groups(n_prompts: int, k: int, seed: int, n_eval: int = 0, max_operand: int = 50):
    """NoisyArithmeticGenerator groups for ``n_prompts`` training prompts (and ``n_eval`` disjoint held-out ones)."""
    from verirl.data import DataSpec, load_data
    from verirl.generators import SamplingParams
    from verirl.rewards.builtin import number_match
    from verirl.testing import NoisyArithmeticGenerator
    from verirl.verifiers.groups import build_groups

    spec = DataSpec(
        builtin="arithmetic", n_train=n_prompts, n_eval=max(1, n_eval), seed=seed, options={"max_operand": max_operand}
    )
    train, held_out = load_data(spec)
    generator, sampling = NoisyArithmeticGenerator(p_correct=0.3, seed=seed), SamplingParams(seed=seed)
    groups = build_groups(generator, train, k, number_match, sampling)
    return (groups, build_groups(generator, held_out, k, number_match, sampling)) if n_eval else groups


def timing_groups_from_model(model: str, n_prompts: int, seed: int):
    """64 SmolLM2 samples per prompt (held-out arithmetic), for realistic duplication in the timing groups."""
    import torch

    from verirl.data import DataSpec, load_data
    from verirl.generators import SamplingParams
    from verirl.generators.hf import HFGenerator
    from verirl.models import load_model
    from verirl.rewards.builtin import number_match
    from verirl.verifiers.groups import build_groups

    lm, tokenizer, _ = load_model(model)
    spec = DataSpec(builtin="arithmetic", n_train=n_prompts, n_eval=1, seed=seed + 100, options={"max_operand": 30})
    data, _ = load_data(spec)
    generator = HFGenerator(lm, tokenizer, batch_size=64, autocast_bf16=not torch.cuda.is_available())
    return build_groups(
        generator, data, max(KS), number_match, SamplingParams(max_new_tokens=24, temperature=0.7, seed=seed)
    )


def throughput(model, groups, k: int, repeats: int = 3) -> float:
    """Candidates scored per second over ``groups`` truncated to K candidates (best of ``repeats``)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for g in groups:
            model.score_group(g.context, g.candidates[:k])
        best = min(best, time.perf_counter() - start)
    return len(groups) * k / best


def trained(config: dict, cross: bool, train_groups, epochs: int, seed: int, init_seed: int | None = None):
    """One evaluator (joint or pointwise) trained on ``train_groups``: (model, training history)."""
    import torch

    from verirl.verifiers.flash_evaluator import FlashEvaluator, FlashEvaluatorConfig
    from verirl.verifiers.flash_training import TrainConfig, train_evaluator

    if init_seed is not None:
        torch.manual_seed(init_seed)
    model = FlashEvaluator(FlashEvaluatorConfig(**config, cross_candidate=cross))
    return model, train_evaluator(model, train_groups, None, TrainConfig(epochs=epochs, seed=seed), log=None)


def accuracy_over_seeds(config: dict, train_groups, eval_groups, epochs: int, seeds: list[int]) -> None:
    """Decisive selection accuracy of both evaluators per seed (init and training), and the means."""
    from verirl.verifiers.flash_training import selection_accuracy

    results: dict[str, list[float]] = {"flash": [], "pointwise": []}
    for seed in seeds:
        for name, cross in (("flash", True), ("pointwise", False)):
            model, _ = trained(config, cross, train_groups, epochs, seed, init_seed=seed)
            results[name].append(selection_accuracy(model, eval_groups)["decisive_accuracy"])
        print(f"seed {seed}: flash {results['flash'][-1]:.3f} pointwise {results['pointwise'][-1]:.3f}", flush=True)
    wins = sum(f >= p for f, p in zip(results["flash"], results["pointwise"], strict=True))
    mean = {name: sum(v) / len(v) for name, v in results.items()}
    print(
        f"mean over {len(seeds)} seeds: flash_acc={mean['flash']:.3f} pointwise_acc={mean['pointwise']:.3f}; "
        f"flash >= pointwise in {wins} of {len(seeds)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="model-free synthetic groups; a few minutes")
    parser.add_argument("--groups-from", default=None, help="a `verirl evaluator train` output dir")
    parser.add_argument("--model", default="smollm2-135m-instruct", help="generator for the timing groups")
    parser.add_argument("--timing-prompts", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an evaluator setting, e.g. --set candidate_layers=1 or --set agreement=last_number",
    )
    parser.add_argument(
        "--seeds",
        default=None,
        help="accuracy only, over these seeds (e.g. 0,1,2,3,4): model init and training seeded, no timing",
    )
    args = parser.parse_args()

    import torch

    from verirl.verifiers.flash_evaluator import FlashEvaluator, FlashEvaluatorConfig
    from verirl.verifiers.flash_training import selection_accuracy
    from verirl.verifiers.groups import load_groups

    start = time.time()
    if args.quick:
        train_groups, eval_groups = synthetic_groups(1200, 8, args.seed, n_eval=200)
        timing = [] if args.seeds else synthetic_groups(args.timing_prompts, max(KS), args.seed + 2)
        epochs, source = args.epochs or 10, "synthetic (NoisyArithmeticGenerator)"
    elif args.groups_from:
        src = Path(args.groups_from)
        train_groups, eval_groups = load_groups(src / "groups_train.jsonl"), load_groups(src / "groups_eval.jsonl")
        timing = [] if args.seeds else timing_groups_from_model(args.model, args.timing_prompts, args.seed)
        epochs, source = args.epochs or 12, f"{src} ({args.model} samples)"
    else:
        raise SystemExit("pass --groups-from DIR (a `verirl evaluator train` run) or --quick")
    print(f"groups: {len(train_groups)} train, {len(eval_groups)} held-out, {len(timing)} timing; from {source}")

    config = dict(
        d_model=64,
        heads=4,
        context_layers=3,
        candidate_layers=1,
        cross_layers=2,
        max_context_tokens=96,
        max_candidate_tokens=48,
    )
    settable = {f.name for f in fields(FlashEvaluatorConfig)} - {"cross_candidate"}
    words = {"none": None, "true": True, "false": False}
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in settable or not value:
            raise SystemExit(f"--set {item}: expected KEY=VALUE with KEY one of {sorted(settable)}")
        config[key] = int(value) if value.isdigit() else words.get(value.lower(), value)
    print(f"evaluator: {config}")
    if args.seeds:
        return accuracy_over_seeds(config, train_groups, eval_groups, epochs, [int(s) for s in args.seeds.split(",")])
    models = {}
    for name, cross in (("flash", True), ("pointwise", False)):
        model, history = trained(config, cross, train_groups, epochs, args.seed)
        models[name] = model
        acc = selection_accuracy(model, eval_groups)
        print(
            f"{name:9s} {model.num_parameters()} parameters, trained {history['seconds']:.0f} s: "
            f"decisive accuracy {100 * acc['decisive_accuracy']:.1f}% of {acc['decisive_groups']}, "
            f"all groups {100 * acc['accuracy']:.1f}%, mean reward of pick {acc['mean_reward']:.3f}",
            flush=True,
        )

    torch.manual_seed(0)
    unique = {k: sum(len(set(g.candidates[:k])) for g in timing) / len(timing) for k in KS}
    print("\n| K | unique candidates | joint cand/s | pointwise cand/s | speedup | joint ms/group |")
    print("|---|---|---|---|---|---|")
    rates = {}
    for k in KS:
        joint = throughput(models["flash"], timing, k)
        single = throughput(models["pointwise"], timing, k)
        rates[k] = (joint, single)
        print(
            f"| {k} | {unique[k]:.1f} | {joint:.0f} | {single:.0f} | {joint / single:.1f}x | {1000 * k / joint:.1f} |",
            flush=True,
        )
    no_dedup = FlashEvaluator(FlashEvaluatorConfig(**config, dedup=False))
    no_dedup.load_state_dict(models["flash"].state_dict())
    raw16 = throughput(no_dedup, timing, 16)
    scaling = (max(KS) / rates[max(KS)][0]) / (min(KS) / rates[min(KS)][0])
    print(
        f"\njoint time per group K=64 / K=4: {scaling:.2f}; speedup at K=16 without dedup: "
        f"{raw16 / rates[16][1]:.1f}x; total {time.time() - start:.0f} s"
    )
    flash = selection_accuracy(models["flash"], eval_groups)["decisive_accuracy"]
    point = selection_accuracy(models["pointwise"], eval_groups)["decisive_accuracy"]
    print(json.dumps({"speedup_k16": rates[16][0] / rates[16][1], "scaling_k64_k4": scaling}))
    print(f"speedup_k16={rates[16][0] / rates[16][1]:.1f} flash_acc={flash:.3f} pointwise_acc={point:.3f}")


if __name__ == "__main__":
    main()
