"""Seconds per Flow-GRPO step on this machine (CUDA when present), fp32 vs bf16 mixed precision, side by side.

Runs `FlowGRPOTrainer.step` on one pipeline with the glyph recipe's sampling settings and the `brightness` reward
(so the figure is the trainer's, not a reward's), after one warm-up step, alternating the two precisions. Prints
`device=... fp32_s_per_step=A bf16_s_per_step=B bf16_speedup=A/B`.

    python bench/flow_grpo_step.py --pipeline runs/glyph-pretrained        # the glyph demo's size
    python bench/flow_grpo_step.py                                         # a random tiny pipeline
    python bench/flow_grpo_step.py --size medium --height 256 --width 256  # a random 12-layer, 768-wide MMDiT
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch


def build(args: argparse.Namespace):
    from verirl.generators.diffusion import load_pipeline
    from verirl.glyph.pipeline import TinySD3Config, build_pipeline

    if args.pipeline:
        return load_pipeline(args.pipeline)
    if args.size == "medium":
        config = TinySD3Config(layers=12, heads=12, head_dim=64, height=args.height, width=args.width,
                               vae_channels=(64, 128, 128, 128), latent_channels=16, patch_size=2)  # fmt: skip
    else:
        config = TinySD3Config(height=args.height, width=args.width)
    return build_pipeline(config)


def time_steps(args: argparse.Namespace) -> list[float]:
    """Warm-up step, then ``args.steps`` timed steps at ``args.precision`` (one process: accelerate's precision is
    fixed per process)."""
    from verirl.rewards.image_stats import brightness
    from verirl.rl.flow_grpo import FlowGRPOConfig, FlowGRPOTrainer

    def reward(prompts, completions, **kwargs):
        return brightness(prompts, completions)

    torch.manual_seed(0)
    config = FlowGRPOConfig(num_inference_steps=10, guidance_scale=3.0, noise_level=0.7, sde_window=4,
                            height=args.height, width=args.width, max_sequence_length=1, group_size=args.group,
                            prompts_per_step=args.prompts, train_batch_size=32, clip_range=1e-3, kl_beta=0.01,
                            mixed_precision=args.precision)  # fmt: skip
    trainer = FlowGRPOTrainer(build(args), config, [reward], lora={"r": 16, "lora_alpha": 32})
    prompts = [str(1000 + 37 * i) for i in range(args.prompts)]
    trainer.step(prompts)
    times = []
    for _ in range(args.steps):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        trainer.step(prompts)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", help="a saved pipeline directory (default: a random one, see --size)")
    parser.add_argument("--size", choices=("tiny", "medium"), default="tiny")
    parser.add_argument("--height", type=int, default=32)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per precision and round")
    parser.add_argument("--rounds", type=int, default=2, help="fp32, bf16 alternated this many times")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--precision", choices=("no", "bf16"), help=argparse.SUPPRESS)  # child process
    args = parser.parse_args()
    if args.precision:
        print(json.dumps(time_steps(args)))
        return 0
    times: dict[str, list[float]] = {"no": [], "bf16": []}
    for _ in range(args.rounds):
        for precision in times:
            cmd = [sys.executable, __file__, *sys.argv[1:], "--precision", precision]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            times[precision] += json.loads(out.strip().splitlines()[-1])
    fp32, bf16 = statistics.median(times["no"]), statistics.median(times["bf16"])
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    print(f"{args.prompts * args.group} images/step at {args.height}x{args.width}, 10 sampling steps, SDE window 4")
    print(f"device={device!r} fp32_s_per_step={fp32:.3f} bf16_s_per_step={bf16:.3f} bf16_speedup={fp32 / bf16:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
