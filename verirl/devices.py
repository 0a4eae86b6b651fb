"""What this machine's processor does fast: whether bfloat16 autocast on the CPU is native or emulated.

PyTorch's CPU autocast to bfloat16 is fast on processors with bfloat16 instructions (x86 AVX512-BF16 or AMX, Arm's
BF16 extension) and emulated elsewhere: a SmolLM2-sized matmul measured 120x slower than float32 on a 2-core AMD EPYC
with AVX2 only (docs/benchmarks.md). Recipes ask for ``bf16: true`` for GPUs and such CPUs (and TRL's configs turn
``bf16`` on when a recipe does not set it); on the others verirl trains and generates in float32 instead, and says so
(vLLM engines too). ``VERIRL_CPU_BF16=1`` (or ``0``) overrides the detection.
"""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path

X86_FLAGS = ("avx512_bf16", "amx_bf16")


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    forced = os.environ.get("VERIRL_CPU_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: trust bf16 (Apple silicon has it; an old Intel Mac user sets VERIRL_CPU_BF16=0)
        return True
    words = set(info.split())
    if platform.machine().lower() in ("aarch64", "arm64"):
        return "bf16" in words
    return any(flag in words for flag in X86_FLAGS)


def cpu_autocast_bf16(requested: bool = True) -> bool:
    """Whether a generation asked to run in bfloat16 should autocast on the CPU (no GPU; the CPU does it natively)."""
    import torch

    return requested and not torch.cuda.is_available() and cpu_has_native_bf16()


def cpu_engine_dtype(requested: str | None) -> str | None:
    """The dtype for an inference engine (vLLM) running on this CPU: float32 in place of ``bfloat16`` or ``auto`` (a
    bf16 checkpoint such as SmolLM2's) where bfloat16 would be emulated -- measured 4x slower or worse than float32
    with vLLM 0.32's CPU backend on AVX2 (docs/benchmarks.md); float16 and float32 are kept as asked."""
    if requested in (None, "auto", "bfloat16") and not cpu_has_native_bf16():
        return "float32"
    return requested
