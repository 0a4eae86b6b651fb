"""Rollout throughput and GRPO step time: HF generate vs vLLM, same model, prompts and sampling, in one run.

Each measurement runs in its own subprocess, one after the other (vLLM binds the CPU threads of the process that
hosts it, so an HF measurement must not share a process with an engine):

1. ``hf``: :class:`verirl.generators.hf.HFGenerator` (bf16 autocast on a CPU, the fastest HF setting measured),
   all completions in batches of ``--hf-batch``;
2. ``vllm``: one engine; rounds alternate verirl's :class:`~verirl.generators.vllm.VLLMGenerator` and the raw
   ``vllm.LLM.generate`` on the same token ids and sampling (the wrapper's cost);
3. ``grpo-hf`` / ``grpo-vllm``: TRL's GRPOTrainer with ``recipes/quickstart.yaml``'s arguments, rollouts from TRL's
   own generate vs from the vLLM engine (weights synced every step); seconds per step after the first.

Prompts: the built-in arithmetic task's chat prompts; each prompt gets ``--n`` samples (a GRPO group).

    python bench/rollouts.py            # SmolLM2-135M-Instruct, 64 prompts x 8 x 64 tokens, 6 GRPO steps
    python bench/rollouts.py --quick    # 16 prompts x 8 x 64 tokens, 4 GRPO steps (<= 10 minutes on 2 cores)

Ends with one line: ``vllm_vs_hf_speedup=X wrapper_overhead=Y grpo_step_speedup=Z``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def prompts(count: int) -> list:
    from verirl.data import arithmetic

    _, rows = arithmetic(n_train=0, n_eval=count, max_operand=50, seed=123)
    return [[{"role": "user", "content": row["question"]}] for row in rows]


def phase_hf(args: argparse.Namespace) -> dict:
    import torch

    from verirl.generators.base import SamplingParams
    from verirl.generators.hf import HFGenerator
    from verirl.models import load_model

    model, tokenizer, _ = load_model(args.model)
    generator = HFGenerator(model, tokenizer, batch_size=args.hf_batch, autocast_bf16=not torch.cuda.is_available())
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=1.0, seed=0)
    generator.generate(prompts(2), n=2, sampling=SamplingParams(max_new_tokens=4))  # warm-up
    start = time.time()
    out = generator.generate(prompts(args.prompts), n=args.n, sampling=sampling)
    seconds = time.time() - start
    tokens = sum(len(ids) for group in out.token_ids for ids in group)
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


def phase_vllm(args: argparse.Namespace) -> dict:
    from verirl.generators.base import SamplingParams
    from verirl.generators.vllm import EngineOptions, VLLMGenerator, vllm_sampling
    from verirl.models import resolve_model

    path = resolve_model(args.model).path
    generator = VLLMGenerator(path, options=EngineOptions(dtype=args.vllm_dtype, kv_cache_gib=4))
    sampling = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=1.0, seed=0)
    generator.generate(prompts(2), n=2, sampling=SamplingParams(max_new_tokens=4))  # warm-up
    chats = prompts(args.prompts)
    ids = generator.encode(chats)
    wrapper, raw = [], []
    for _ in range(args.rounds):
        start = time.time()
        out = generator.generate(chats, n=args.n, sampling=sampling)
        seconds = time.time() - start
        wrapper.append(sum(len(c) for group in out.token_ids for c in group) / seconds)

        start = time.time()
        params = [vllm_sampling(sampling, args.n, sampling.seed + i) for i in range(len(ids))]
        outputs = generator.llm.generate([{"prompt_token_ids": p} for p in ids], params, use_tqdm=False)
        seconds = time.time() - start
        raw.append(sum(len(c.token_ids) for o in outputs for c in o.outputs) / seconds)
    return {
        "startup_seconds": generator.startup_seconds,
        "tokens_per_s": max(wrapper),
        "raw_tokens_per_s": max(raw),
        "rounds": {"wrapper": wrapper, "raw": raw},
    }


def phase_grpo(args: argparse.Namespace, backend: str) -> dict:
    from transformers import TrainerCallback

    from verirl.data import load_data
    from verirl.models import load_model
    from verirl.recipes import load_recipe
    from verirl.rl.config import build_trainer_config
    from verirl.rl.grpo import build_grpo_trainer

    out_dir = tempfile.mkdtemp(prefix="bench-rollouts-")
    overrides = [
        f"model={args.model}",
        f"args.max_steps={args.steps}",
        'args.save_strategy="no"',
        "args.logging_steps=1000",
        f"args.max_completion_length={args.max_new_tokens}",
        f"output_dir={out_dir}",
    ]
    recipe = load_recipe(ROOT / "recipes" / "quickstart.yaml", overrides)
    config = build_trainer_config(recipe.trainer, recipe.trainer_args, recipe.output_dir, recipe.file)
    model, tokenizer, source = load_model(recipe.model.name, recipe.model.dtype)
    train_ds, _ = load_data(recipe.data)
    engine, startup = None, 0.0
    if backend == "vllm":
        from verirl.generators.vllm import EngineOptions, VLLMGenerator

        engine = VLLMGenerator(source.path, tokenizer, EngineOptions(dtype=args.vllm_dtype, kv_cache_gib=4))
        startup = engine.startup_seconds

    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            stamps.append(time.time())

    trainer = build_grpo_trainer(recipe, model, tokenizer, train_ds, config, [Clock()], generator=engine)
    start = time.time()
    trainer.train()
    steps = [b - a for a, b in zip([start, *stamps], stamps, strict=False)]
    return {"startup_seconds": startup, "step_seconds": steps, "seconds_per_step": sum(steps[1:]) / len(steps[1:])}


def run_phase(name: str, argv: list[str]) -> dict:
    env = dict(os.environ, TRL_EXPERIMENTAL_SILENCE="1", TOKENIZERS_PARALLELISM="false")
    env.pop("OMP_NUM_THREADS", None)  # every phase uses all cores
    result = subprocess.run(
        [sys.executable, __file__, "--phase", name, *argv], capture_output=True, text=True, env=env, cwd=ROOT
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    if result.returncode != 0 or not lines:
        sys.exit(f"phase {name} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--prompts", type=int, default=None, help="default 64 (16 with --quick)")
    parser.add_argument("--n", type=int, default=8, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--hf-batch", type=int, default=128, help="sequences per HF generate call")
    parser.add_argument("--vllm-dtype", default="bfloat16")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=None, help="GRPO steps per backend (default 6, 4 with --quick)")
    parser.add_argument("--only", choices=["generate", "grpo"], default=None, help="run one of the two comparisons")
    parser.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.prompts = args.prompts or (16 if args.quick else 64)
    args.steps = args.steps or (4 if args.quick else 6)

    if args.phase:
        phases = {
            "hf": phase_hf,
            "vllm": phase_vllm,
            "grpo-hf": lambda a: phase_grpo(a, "hf"),
            "grpo-vllm": lambda a: phase_grpo(a, "vllm"),
        }
        print("RESULT " + json.dumps(phases[args.phase](args)), flush=True)
        return

    from verirl.models import resolve_model

    resolve_model(args.model)  # prepare a built-in model once, before the timed phases
    argv = [
        f"--{name.replace('_', '-')}={getattr(args, name)}"
        for name in ("model", "prompts", "n", "max_new_tokens", "hf_batch", "vllm_dtype", "rounds", "steps")
    ]
    print(f"model {args.model}: {args.prompts} prompts x {args.n} samples x <= {args.max_new_tokens} tokens")
    line = ""
    if args.only != "grpo":
        hf = run_phase("hf", argv)
        print(f"HF generate     {hf['tokens_per_s']:7.1f} tokens/s ({hf['tokens']} tokens in {hf['seconds']:.1f} s)")
        vl = run_phase("vllm", argv)
        print(
            f"vLLM (verirl)   {vl['tokens_per_s']:7.1f} tokens/s   raw vllm.LLM {vl['raw_tokens_per_s']:7.1f} "
            f"tokens/s   engine start {vl['startup_seconds']:.1f} s"
        )
        speedup = vl["tokens_per_s"] / hf["tokens_per_s"]
        overhead = vl["raw_tokens_per_s"] / vl["tokens_per_s"] - 1
        line = f"vllm_vs_hf_speedup={speedup:.2f} wrapper_overhead={overhead:.3f}"
    if args.only != "generate":
        g_hf = run_phase("grpo-hf", argv)
        g_vl = run_phase("grpo-vllm", argv)
        print(
            f"GRPO step (quickstart args, max_completion_length {args.max_new_tokens}): "
            f"HF {g_hf['seconds_per_step']:.2f} s, vLLM {g_vl['seconds_per_step']:.2f} s "
            f"(engine start {g_vl['startup_seconds']:.1f} s, once)"
        )
        line += f" grpo_step_speedup={g_hf['seconds_per_step'] / g_vl['seconds_per_step']:.2f}"
    print(line.strip())


if __name__ == "__main__":
    main()
