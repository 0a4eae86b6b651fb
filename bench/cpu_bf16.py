"""bf16 autocast vs float32 on this CPU: a SmolLM2-135M-shaped MLP matmul, side by side in one run.

Why verirl trains in float32 on CPUs without bfloat16 instructions (verirl/devices.py): PyTorch emulates bf16
autocast there. Prints ``native_bf16=... ratio=T_bf16/T_fp32`` (< 1: bf16 pays; >> 1: emulated).

    OMP_NUM_THREADS=2 .venv/bin/python bench/cpu_bf16.py
"""

from __future__ import annotations

import time

import torch

from verirl.devices import cpu_has_native_bf16


def seconds(bf16: bool, repeats: int) -> float:
    a, b = torch.randn(512, 576), torch.randn(576, 1536)  # 512 tokens x SmolLM2-135M's hidden -> MLP width
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        a @ b  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
    return time.perf_counter() - start


def main() -> None:
    torch.manual_seed(0)
    fp32 = seconds(False, 50)
    bf16 = seconds(True, 50)
    print(f"fp32 {fp32 * 20:.1f} ms/matmul, bf16 autocast {bf16 * 20:.1f} ms/matmul")
    print(f"native_bf16={cpu_has_native_bf16()} ratio={bf16 / fp32:.2f}")


if __name__ == "__main__":
    main()
