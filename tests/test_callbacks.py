"""Trainer callbacks: metrics lines carry the resident memory; freed heap memory goes back to the OS."""

from __future__ import annotations

import json
import platform
from types import SimpleNamespace

import pytest

from verirl.rl.callbacks import MetricsJSONLCallback, ReleaseMemoryCallback, release_free_memory, rss_gib

linux_glibc = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="malloc_trim and /proc are glibc/Linux"
)


@linux_glibc
def test_release_free_memory_returns_fragmented_heap_pages():
    """Many small blocks freed with a few survivors in between: glibc keeps the pages; malloc_trim returns them."""
    blocks = [bytearray(4000) for _ in range(200_000)]  # ~0.8 GB of heap (below the mmap threshold)
    survivors = blocks[::512]
    del blocks
    before = rss_gib()
    assert release_free_memory() is True
    after = rss_gib()
    assert before is not None and after is not None
    assert after < before - 0.3, (before, after)
    assert len(survivors) > 0


@linux_glibc
def test_metrics_lines_carry_the_resident_memory(tmp_path):
    path = tmp_path / "metrics.jsonl"
    state = SimpleNamespace(is_world_process_zero=True, global_step=3)
    MetricsJSONLCallback(path).on_log(None, state, None, logs={"loss": 1.5})
    ReleaseMemoryCallback().on_step_end(None, state, None)
    record = json.loads(path.read_text())
    assert record["step"] == 3 and record["loss"] == 1.5 and 0 < record["memory/rss_gib"] < 1024
