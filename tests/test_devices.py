"""bf16 on a CPU: kept where the processor has bfloat16 instructions, float32 (with a warning) where it would be
emulated; ``VERIRL_CPU_BF16`` overrides the detection."""

from __future__ import annotations

import pytest

from verirl import devices
from verirl.rl.config import cpu_only

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU fallback applies without a GPU only")


@pytest.fixture
def cpu_bf16(monkeypatch):
    def force(native: bool) -> None:
        monkeypatch.setenv("VERIRL_CPU_BF16", "1" if native else "0")
        devices.cpu_has_native_bf16.cache_clear()

    yield force
    devices.cpu_has_native_bf16.cache_clear()


@pytest.mark.parametrize("native, expected", [(True, {"use_cpu": True}), (False, {"use_cpu": True, "bf16": False})])
def test_bf16_falls_back_to_float32_only_where_emulated(cpu_bf16, native, expected):
    cpu_bf16(native)
    assert cpu_only({"bf16": True}) == expected
    assert cpu_only({}) == expected  # unset: TRL's configs default to bf16, so it is emulated there too
    assert cpu_only({"bf16": None}) == expected
    assert cpu_only({"fp16": True}) == {"use_cpu": True}  # TRL leaves bf16 off beside fp16
    assert cpu_only({"bf16": False}) == {"use_cpu": True}  # nothing asked, nothing changed
    assert devices.cpu_autocast_bf16() is native
    assert devices.cpu_autocast_bf16(requested=False) is False


@pytest.mark.parametrize("native", [True, False])
def test_engine_dtype_is_float32_where_bf16_would_be_emulated(cpu_bf16, native):
    cpu_bf16(native)
    for asked in ("bfloat16", "auto", None):
        assert devices.cpu_engine_dtype(asked) == (asked if native else "float32")
    assert devices.cpu_engine_dtype("float16") == "float16"  # asked for explicitly: kept
    assert devices.cpu_engine_dtype("float32") == "float32"


def test_detection_reads_the_processor_flags(monkeypatch):
    monkeypatch.delenv("VERIRL_CPU_BF16", raising=False)
    devices.cpu_has_native_bf16.cache_clear()
    try:
        flags = open("/proc/cpuinfo").read().split()
    except OSError:
        pytest.skip("no /proc/cpuinfo")
    assert devices.cpu_has_native_bf16() == any(f in flags for f in (*devices.X86_FLAGS, "bf16"))
    devices.cpu_has_native_bf16.cache_clear()


def test_a_recipe_asking_bf16_shows_the_fallback_in_its_derived_args(cpu_bf16, tiny_model_dir, tmp_path, write_recipe):
    from tests.conftest import tiny_grpo_recipe
    from verirl.recipes import read_yaml, validate

    cpu_bf16(False)
    recipe = tiny_grpo_recipe(tiny_model_dir, tmp_path / "out")
    recipe["args"]["bf16"] = True
    path = write_recipe(recipe)
    validated = validate(read_yaml(path), str(path))
    assert validated.args["bf16"] is True and validated.derived["bf16"] is False  # the recipe keeps what it asked


def test_a_recipe_silent_on_bf16_trains_in_float32_where_it_would_be_emulated(cpu_bf16, tmp_path, write_recipe):
    """TRL's configs resolve an unset ``bf16`` to True: on an AVX2-only CPU the quickstart's GRPO step took 333 s."""
    from verirl.recipes import read_yaml, validate
    from verirl.rl.config import build_trainer_config

    cpu_bf16(False)
    path = write_recipe({"trainer": "sft", "model": "smollm2-135m-instruct", "data": {"builtin": "arithmetic"},
                         "args": {"max_steps": 1}, "output_dir": str(tmp_path / "out")})  # fmt: skip
    validated = validate(read_yaml(path), str(path))
    assert "bf16" not in validated.args and validated.derived["bf16"] is False
    config = build_trainer_config("sft", {**validated.args, **validated.derived}, str(tmp_path / "out"))
    assert config.bf16 is False
    cpu_bf16(True)
    assert build_trainer_config("sft", {**validated.args, **cpu_only({})}, str(tmp_path / "o")).bf16 is True
